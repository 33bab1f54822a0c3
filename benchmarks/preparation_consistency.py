"""Does a score depend on who prepared the complex? The same ligands, same measurements,
scored in two preparations.

Reads a CSV of ``dataset_scores.py`` (column ``preparation``) and compares every other
preparation with the default one (Schrödinger's files) on the ligands both hold (same
target and ligand name): the mean and largest |Δ score|, the rank correlation of the two
preparations' scores, and — per series of at least ``--min-ligands`` of those common
ligands — the Spearman with pK and the ranking beyond size (``size_adjusted_ranking.py``'s
residuals) in each preparation, so that a change of the beyond-size figure between
preparations is measured on the same ligands rather than on different series.

    python benchmarks/preparation_consistency.py benchmarks/results/dataset_scores_test_get-affinity.csv \\
        benchmarks/results/dataset_scores_test_multi.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plugin_common import command_line, write_result  # noqa: E402
from size_adjusted_ranking import series_figures  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "preparation_consistency.json"


def compare(table: pd.DataFrame, other: str, min_ligands: int) -> dict:
    """The default preparation against ``other`` on their common ligands."""
    from scipy.stats import spearmanr

    def by_ligand(prep: str) -> pd.DataFrame:
        part = table[table["preparation"] == prep]
        return part.drop_duplicates(["target", "name"]).set_index(["target", "name"])

    base, alt = by_ligand("default"), by_ligand(other)
    common = base.index.intersection(alt.index)
    if len(common) < 3:
        return {"n_common": int(len(common))}
    a, b = base.loc[common, "get"].to_numpy(float), alt.loc[common, "get"].to_numpy(float)
    out = {"n_common": int(len(common)), "mean_abs_score_difference": float(np.mean(np.abs(a - b))),
           "max_abs_score_difference": float(np.max(np.abs(a - b))),
           "spearman_between_preparations": float(spearmanr(a, b)[0]),
           "mean_abs_pk_difference": float(np.mean(np.abs(base.loc[common, "pK"].to_numpy(float)
                                                           - alt.loc[common, "pK"].to_numpy(float))))}
    # per series of the default preparation, the same ligands in each: size_adjusted_ranking's figures
    by_series: dict[str, dict] = {}
    for name, source in (("default", base), (other, alt)):
        same = source.loc[common].assign(series=base.loc[common, "series"].to_numpy())
        for row in series_figures(same, "get", min_ligands):
            mine = by_series.setdefault(row["series"], {"series": row["series"], "n": row["n"]})
            mine[f"{name}_spearman"], mine[f"{name}_beyond_size"] = row["spearman"], row["beyond_size"]
    out["series"] = [r for r in by_series.values() if len(r) == 6]  # figures in both preparations
    for key in ("default_spearman", "default_beyond_size", f"{other}_spearman", f"{other}_beyond_size"):
        values = [r[key] for r in out["series"]]
        out[f"mean_{key}"] = float(np.mean(values)) if values else float("nan")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", nargs="+", type=Path, help="CSVs of dataset_scores.py")
    ap.add_argument("--min-ligands", type=int, default=8)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    result = {"command": command_line("preparation_consistency.py", argv), "inputs": {}}
    for path in args.csv:
        table = pd.read_csv(path)
        figures = {}
        for other in sorted(set(table["preparation"]) - {"default"}):
            f = figures[other] = compare(table, other, args.min_ligands)
            if "series" not in f:
                print(f"{path.name} {other}: {f['n_common']} ligands in common with the default preparation")
                continue
            print(f"{path.name} {other}: {f['n_common']} common ligands, |Δ score| mean "
                  f"{f['mean_abs_score_difference']:.3f} max {f['max_abs_score_difference']:.2f}, rank correlation "
                  f"{f['spearman_between_preparations']:.3f}; {len(f['series'])} series: beyond size "
                  f"{f['mean_default_beyond_size']:+.2f} (default) / {f[f'mean_{other}_beyond_size']:+.2f} ({other})")
        result["inputs"][str(path)] = figures
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
