"""Bootstrap intervals for the held-out ranking figures: how sure is "GET beats the
heavy-atom count"?

Reads per-ligand CSVs of ``benchmarks/bench_affinity.py`` (columns ``target``, ``pK`` and
one per method, signs of ``bench_affinity.SIGNS``) and gives, for each file, every method's
mean Spearman over targets with two 95 % intervals (ligands resampled within targets;
targets resampled, then ligands: see ``get_md.train.ranking``) and its paired difference
from ``--baseline``, on the ligands both scored (Vina fails on a few poses: its row then
has fewer ligands, and the baseline's figure it is compared with is taken on those too).

    python benchmarks/ranking_intervals.py benchmarks/results/bench_affinity_v4.csv \\
        benchmarks/results/bench_affinity_plb.csv benchmarks/results/bench_affinity_mcompchem.csv \\
        benchmarks/results/bench_affinity_openfe.csv \\
        --add benchmarks/results/bench_affinity.csv   # gnina's columns of the same 191 poses

``--other CSV=LABEL`` adds another model's ``get`` column of the same ligands as method
LABEL, so that two score models are compared with intervals on their difference (e.g.
two ``dataset_scores.py`` CSVs of the validation split, ``--group series --baseline
LABEL``). ``--group series`` ranks within series of at least ``--min-ligands`` ligands
instead of targets.

``--poses JSON...`` does the same for the pose-ranking benchmark
(``bench_pose_ranking.py``'s JSON): each method's top-1 success on docked poses only, with
its paired difference from Vina's docking score, ligands resampled:

    python benchmarks/ranking_intervals.py --poses \
        benchmarks/results/bench_pose_ranking_8_per_series.json --out benchmarks/results/pose_intervals.json

``--concat`` ranks the CSVs as one table: the out-of-fold scores of a cross-validation by
target (``python -m get_md.train.affinity folds``), one CSV per fold.

``--add CSV`` fills the columns a file lacks (or has empty) from another CSV of the same
ligands, matched by target, series and name (pK must agree): the v4 run did not score gnina,
and the first file's run scored it on the same poses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_affinity import SIGNS  # noqa: E402
from plugin_common import command_line, write_result  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "ranking_intervals.json"
DEFAULT_METHODS = ("get", "heavy_atoms", "vina", "gnina_cnnaffinity")
KEYS = ["target", "series", "name"]


def _merge(table: pd.DataFrame, columns: pd.DataFrame, source: str) -> pd.DataFrame:
    """``table`` with ``columns`` (KEYS, pK and new columns of the same ligands) joined on
    target, series and name; the two files' pK must agree."""
    merged = table.merge(columns.rename(columns={"pK": "_pK"}), on=KEYS, how="left")
    same = merged["_pK"].isna() | np.isclose(merged["pK"], merged["_pK"])
    if not same.all():
        raise SystemExit(f"{source}: pK differs from the table's for {int((~same).sum())} ligands")
    return merged.drop(columns="_pK")


def fill_columns(table: pd.DataFrame, other: pd.DataFrame, source: str) -> pd.DataFrame:
    """``table`` with its missing or all-empty method columns taken from ``other``."""
    wanted = [m for m in SIGNS if m in other and other[m].notna().any()
              and (m not in table or table[m].isna().all())]
    if not wanted or not set(KEYS) <= set(table) or not set(KEYS) <= set(other):
        return table
    merged = _merge(table.drop(columns=[m for m in wanted if m in table]), other[KEYS + ["pK"] + wanted], source)
    print(f"  columns {', '.join(wanted)} from {source} ({int(merged[wanted[0]].notna().sum())} ligands)")
    return merged


def add_model(table: pd.DataFrame, other: pd.DataFrame, label: str, source: str) -> pd.DataFrame:
    """``table`` with ``other``'s ``get`` column as ``label`` (same ligands, matched by
    target, series and name; pK must agree)."""
    if "get" not in other:
        raise SystemExit(f"{source}: no 'get' column")
    merged = _merge(table, other[KEYS + ["pK", "get"]].rename(columns={"get": label}), source)
    print(f"  {label} from {source} ({int(merged[label].notna().sum())} of {len(merged)} ligands)")
    return merged


def intervals(table: pd.DataFrame, methods: list[str], baseline: str, n_boot: int, seed: int,
              group: str = "target") -> dict:
    """Each method's figures on the ligands it and the baseline both scored (all the
    baseline's for the baseline itself), so that a method's failures elsewhere do not move
    another method's figure."""
    from get_md.train.ranking import bootstrap_ranking

    methods = [m for m in methods if m in table and table[m].notna().any()]
    result = {}
    for m in methods:
        compared = [m] if m == baseline else [m, baseline]
        ok = table.dropna(subset=compared)
        scores = {c: SIGNS.get(c, 1.0) * ok[c].to_numpy(float) for c in compared}
        entry = {"n_ligands": int(len(ok)), "n_dropped": int(len(table) - len(ok)),
                 f"ligands_per_{group}": ok[group].value_counts().sort_index().to_dict()}
        for resample in ("ligands", "groups"):
            entry[resample] = bootstrap_ranking(ok["pK"].to_numpy(float), scores, ok[group].to_numpy(),
                                                baseline=baseline if m != baseline else None,
                                                resample=resample, n_boot=n_boot, seed=seed)
        result[m] = entry
    return result


def markdown(name: str, result: dict, baseline: str, group: str = "target") -> str:
    lines = [f"{name}", f"| method (ligands, {group} groups) | mean Spearman | 95 % CI, ligands | 95 % CI, groups | "
             f"minus {baseline} | 95 % CI, ligands | 95 % CI, groups |", "|---" * 7 + "|"]
    for m, entry in result.items():
        lig, grp = entry["ligands"], entry["groups"]
        a, b = lig["methods"][m], grp["methods"][m]
        row = f"| {m} ({entry['n_ligands']}, {lig['n_groups']}) | {a['mean_spearman']:+.2f} | " \
              f"{a['ci'][0]:+.2f} … {a['ci'][1]:+.2f} | {b['ci'][0]:+.2f} … {b['ci'][1]:+.2f} |"
        if m in lig["versus"]:
            d, e = lig["versus"][m], grp["versus"][m]
            row += f" {d['difference']:+.2f} | {d['ci'][0]:+.2f} … {d['ci'][1]:+.2f} | " \
                   f"{e['ci'][0]:+.2f} … {e['ci'][1]:+.2f} |"
        else:
            row += " — | | |"
        lines.append(row)
    return "\n".join(lines)


def pose_intervals(path: Path, n_boot: int, seed: int, baseline: str = "vina") -> dict:
    """Top-1 success on docked poses only (< ``NEAR_NATIVE_A``) of each method of a
    bench_pose_ranking.py JSON, on the ligands every method scored, with paired intervals."""
    from get_md.datasets.pose_quality import NEAR_NATIVE_A
    from get_md.train.ranking import bootstrap_success

    data = json.loads(path.read_text())
    rows = [r for r in data["ligands"] if not r.get("error")]
    methods = list(data["summary"]["methods"])
    rows = [r for r in rows if all(np.isfinite(r["methods"].get(m, {}).get("top1_rmsd_docked_only", np.nan))
                                   for m in methods)]
    hits = {m: [r["methods"][m]["top1_rmsd_docked_only"] < NEAR_NATIVE_A for r in rows] for m in methods}
    out = bootstrap_success(hits, baseline=baseline if baseline in hits else None, n_boot=n_boot, seed=seed)
    print(f"{path.name} ({out['n']} ligands)\n| method | top-1 < 2 Å, docked only | 95 % CI | minus {baseline} | 95 % CI |"
          "\n|---|---|---|---|---|")
    for m in methods:
        a = out["methods"][m]
        row = f"| {m} | {a['rate']:.2f} | {a['ci'][0]:.2f} … {a['ci'][1]:.2f} |"
        v = out["versus"].get(m)
        row += f" {v['difference']:+.2f} | {v['ci'][0]:+.2f} … {v['ci'][1]:+.2f} |" if v else " — | |"
        print(row)
    print()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", nargs="*", type=Path, help="per-ligand CSVs of bench_affinity.py")
    ap.add_argument("--poses", nargs="+", type=Path, default=[], help="JSONs of bench_pose_ranking.py")
    ap.add_argument("--concat", action="store_true",
                    help="rank the CSVs as one table (the folds of a cross-validation: each fold's "
                         "test.pt scores, python -m get_md.train.affinity folds)")
    ap.add_argument("--add", type=Path, help="a CSV of the same ligands to fill missing method columns from")
    ap.add_argument("--other", action="append", default=[], metavar="CSV=LABEL",
                    help="another model's per-ligand CSV; its 'get' column becomes method LABEL")
    ap.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                    help=f"columns to rank (default {' '.join(DEFAULT_METHODS)}; --other labels are added)")
    ap.add_argument("--baseline", default="heavy_atoms")
    ap.add_argument("--group", choices=("target", "series"), default="target")
    ap.add_argument("--min-ligands", type=int, default=8, help="with --group series: smallest series ranked")
    ap.add_argument("--n-boot", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)

    result = {"command": command_line("ranking_intervals.py", argv), "baseline": args.baseline,
              "group": args.group,
              "metric": "mean over groups of the per-group Spearman of score and pK; paired percentile "
                        "bootstrap (get_md.train.ranking.bootstrap_ranking)", "inputs": {}}
    tables = [(path, pd.read_csv(path)) for path in args.csv]
    if args.concat and tables:
        tables = [(Path(f"concat of {len(tables)} files"), pd.concat([t for _, t in tables], ignore_index=True))]
        result["concatenated"] = [str(p) for p in args.csv]
    for path, table in tables:
        print(path.name)
        if args.add is not None:
            table = fill_columns(table, pd.read_csv(args.add), args.add.name)
        methods = list(args.methods)
        for spec in args.other:
            source, _, label = spec.rpartition("=")
            if not source or not label:
                ap.error(f"--other takes CSV=LABEL, got {spec!r}")
            table = add_model(table, pd.read_csv(source), label, Path(source).name)
            methods.append(label)
        missing = [m for m in methods if m not in table]
        if missing or args.baseline not in methods:
            ap.error(f"{path}: no column {', '.join(missing) or args.baseline} (columns: {', '.join(table.columns)}; "
                     "the baseline must be one of --methods or an --other label)")
        if args.group == "series":
            sizes = table["series"].map(table["series"].value_counts())
            table = table[sizes >= args.min_ligands]
        figures = intervals(table, methods, args.baseline, args.n_boot, args.seed, args.group)
        result["inputs"][str(path)] = figures
        print(markdown(path.name, figures, args.baseline, args.group), end="\n\n")
    for path in args.poses:
        result.setdefault("poses", {})[str(path)] = pose_intervals(path, args.n_boot, args.seed)
    if not args.csv and not args.poses:
        ap.error("give CSVs of bench_affinity.py and/or --poses JSONs of bench_pose_ranking.py")
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
