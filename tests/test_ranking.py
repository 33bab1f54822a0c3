"""Bootstrap intervals of ranking figures (get_md.train.ranking) and the benchmark script
that applies them to bench_affinity.py's CSVs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from get_md.errors import ConfigError
from get_md.train.affinity import ranking_metrics
from get_md.train.ranking import bootstrap_ranking

ROOT = Path(__file__).resolve().parents[1]


def _data(seed: int = 0, groups: int = 6, per_group: int = 15, noise: float = 1.5):
    rng = np.random.default_rng(seed)
    g = np.repeat([f"T{k}" for k in range(groups)], per_group)
    y = rng.normal(size=len(g))
    return g, y, y + noise * rng.normal(size=len(g)), rng.normal(size=len(g))


@pytest.mark.parametrize("resample", ["ligands", "groups"])
def test_point_estimate_is_the_mean_spearman_over_groups(resample):
    g, y, good, _ = _data()
    g[:3] = "tiny"  # a group of 3 ligands still counts; one of 2 would not
    out = bootstrap_ranking(y, {"good": good}, g, resample=resample, n_boot=50)
    assert out["methods"]["good"]["mean_spearman"] == pytest.approx(ranking_metrics(y, good, g)["mean_spearman"])
    lo, hi = out["methods"]["good"]["ci"]
    assert lo < out["methods"]["good"]["mean_spearman"] < hi


def test_paired_difference_of_a_method_with_itself_is_exactly_zero():
    g, y, good, _ = _data()
    out = bootstrap_ranking(y, {"a": good, "b": good.copy()}, g, baseline="b", n_boot=200)
    assert out["versus"]["a"]["difference"] == 0.0
    assert out["versus"]["a"]["ci"] == [0.0, 0.0]
    assert out["versus"]["a"]["fraction_above"] == 0.0


def test_a_real_difference_is_resolved_and_target_resampling_is_wider():
    # groups that differ a lot in how well the score ranks: resampling groups must say so
    g, y, good, noise = _data(groups=8, per_group=20)
    good = good.copy()
    good[g == "T0"] = -good[g == "T0"]
    lig = bootstrap_ranking(y, {"good": good, "noise": noise}, g, baseline="noise", n_boot=1000)
    grp = bootstrap_ranking(y, {"good": good, "noise": noise}, g, baseline="noise", resample="groups", n_boot=1000)
    assert lig["versus"]["good"]["ci"][0] > 0 and lig["versus"]["good"]["fraction_above"] > 0.99
    width = {k: np.diff(r["methods"]["good"]["ci"])[0] for k, r in (("lig", lig), ("grp", grp))}
    assert width["grp"] > width["lig"]


def test_seeded_and_reproducible():
    g, y, good, noise = _data()
    a = bootstrap_ranking(y, {"m": good, "n": noise}, g, baseline="n", n_boot=100, seed=3)
    b = bootstrap_ranking(y, {"m": good, "n": noise}, g, baseline="n", n_boot=100, seed=3)
    c = bootstrap_ranking(y, {"m": good, "n": noise}, g, baseline="n", n_boot=100, seed=4)
    assert a == b
    assert a["methods"]["m"]["ci"] != c["methods"]["m"]["ci"]


def test_intervals_cover_the_population_spearman():
    """Over 150 data sets drawn from one model, the 95 % interval (ligands resampled within
    6 groups of 15) holds the population's Spearman about 95 % of the time (percentile
    intervals of small groups run a little short: ~0.92 measured)."""
    rng = np.random.default_rng(123)
    big = rng.normal(size=200_000)
    truth = spearmanr(big, big + 1.5 * rng.normal(size=big.size))[0]
    hits = 0
    for k in range(150):
        g, y, good, _ = _data(seed=1000 + k)
        lo, hi = bootstrap_ranking(y, {"m": good}, g, n_boot=300, seed=k)["methods"]["m"]["ci"]
        hits += lo <= truth <= hi
    assert 0.85 <= hits / 150 <= 0.99


@pytest.mark.parametrize("kwargs, match", [
    ({"resample": "series"}, "resample must be one of"),
    ({"baseline": "missing"}, "baseline 'missing'"),
    ({"n_boot": 0}, "n_boot must be"),
    ({"level": 1.0}, "level in"),
])
def test_bad_arguments_are_refused(kwargs, match):
    g, y, good, _ = _data()
    with pytest.raises(ConfigError, match=match):
        bootstrap_ranking(y, {"m": good}, g, **kwargs)


def test_non_finite_scores_and_length_mismatch_are_refused():
    g, y, good, _ = _data()
    bad = good.copy()
    bad[4] = np.nan
    with pytest.raises(ConfigError, match="finite"):
        bootstrap_ranking(y, {"m": bad}, g)
    with pytest.raises(ConfigError, match="lengths differ"):
        bootstrap_ranking(y[:-1], {"m": good[:-1]}, g)


def test_script_on_bench_affinity_csvs(tmp_path):
    """benchmarks/ranking_intervals.py on a CSV in bench_affinity.py's format: each method
    on the ligands it and the baseline both scored, Vina's sign flipped, gnina's column
    taken from --add, another model's 'get' from --other."""
    g, y, good, noise = _data(groups=4, per_group=12)
    table = pd.DataFrame({"name": [f"l{k}" for k in range(len(g))], "target": g, "series": g, "pK": y,
                          "get": good, "heavy_atoms": noise, "vina": -good})
    table.loc[0, "vina"] = np.nan
    main_csv, extra_csv, other_csv = tmp_path / "main.csv", tmp_path / "extra.csv", tmp_path / "other.csv"
    table.to_csv(main_csv, index=False)
    table.assign(gnina_cnnaffinity=noise)[["name", "target", "series", "pK", "gnina_cnnaffinity"]].to_csv(
        extra_csv, index=False)
    table.assign(get=noise).to_csv(other_csv, index=False)
    out = tmp_path / "ri.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ranking_intervals.py"), str(main_csv),
                    "--add", str(extra_csv), "--other", f"{other_csv}=second", "--n-boot", "200",
                    "--out", str(out)], check=True, capture_output=True, text=True, cwd=tmp_path)
    figures = json.loads(out.read_text())["inputs"][str(main_csv)]
    assert figures["vina"]["n_ligands"] == len(g) - 1 and figures["get"]["n_ligands"] == len(g)
    lig = figures["vina"]["ligands"]
    assert lig["methods"]["vina"]["mean_spearman"] == pytest.approx(
        ranking_metrics(y[1:], good[1:], g[1:])["mean_spearman"])
    assert figures["gnina_cnnaffinity"]["ligands"]["versus"]["gnina_cnnaffinity"]["difference"] == 0.0
    assert figures["second"]["ligands"]["versus"]["second"]["difference"] == 0.0
    assert figures["get"]["ligands"]["versus"]["get"]["difference"] > 0


def test_success_rates_paired_intervals():
    from get_md.train.ranking import bootstrap_success

    rng = np.random.default_rng(0)
    base = rng.random(60) < 0.5
    better = base | (rng.random(60) < 0.5)          # succeeds wherever the baseline does, and more
    out = bootstrap_success({"base": base, "better": better, "same": base.copy()}, baseline="base", n_boot=1000)
    assert out["methods"]["better"]["rate"] == pytest.approx(better.mean())
    assert out["versus"]["better"]["ci"][0] > 0 and out["versus"]["better"]["fraction_above"] == 1.0
    assert out["versus"]["same"]["ci"] == [0.0, 0.0]
    lo, hi = out["methods"]["base"]["ci"]
    assert lo < base.mean() < hi
    with pytest.raises(ConfigError, match="baseline"):
        bootstrap_success({"a": base}, baseline="b")


def test_script_on_a_pose_ranking_json(tmp_path):
    """--poses: top-1 success on docked poses only per method, ligands any method could not
    score left out for all, the difference from Vina paired."""
    def row(vina_rmsd, get_rmsd, error=""):
        return {"error": error, "methods": {"vina": {"top1_rmsd_docked_only": vina_rmsd},
                                            "get": {"top1_rmsd_docked_only": get_rmsd}}}
    rows = [row(0.5, 3.0)] * 6 + [row(0.5, 0.7)] * 2 + [row(4.0, 4.0)] * 2 + [row(0.5, float("nan"))] \
        + [row(0.1, 0.1, error="docking failed")]
    path = tmp_path / "poses.json"
    path.write_text(json.dumps({"ligands": rows, "summary": {"methods": {"vina": {}, "get": {}}}}))
    out = tmp_path / "pi.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ranking_intervals.py"), "--poses", str(path),
                    "--n-boot", "300", "--out", str(out)], check=True, capture_output=True, text=True)
    figures = json.loads(out.read_text())["poses"][str(path)]
    assert figures["n"] == 10
    assert figures["methods"]["vina"]["rate"] == pytest.approx(0.8)
    assert figures["methods"]["get"]["rate"] == pytest.approx(0.2)
    assert figures["versus"]["get"]["difference"] == pytest.approx(-0.6)
    assert figures["versus"]["get"]["ci"][1] < 0
