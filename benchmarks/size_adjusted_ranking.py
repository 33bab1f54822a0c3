"""Ranking beyond ligand size: each method's per-series Spearman after the heavy-atom
count is taken out of both the score and the measured pK.

The score models follow ligand size (within a series `get-affinity`'s score and the
heavy-atom count correlate at r ≈ 0.9), and size alone ranks held-out series about as well
as they do. What a score knows *beyond* size is the rank correlation, within each series,
between the part of the score and the part of pK that a straight line in the heavy-atom
count does not explain (least squares per series, on both): 0 for a score that is size
and nothing else, the plain Spearman's sign and more for a score that knows the rest.

Reads the per-ligand CSVs of ``benchmarks/bench_affinity.py`` (columns ``series``,
``pK``, ``heavy_atoms`` and one per method; signs of ``bench_affinity.SIGNS``), series of
at least ``--min-ligands``; writes the per-series figures and their means to ``--out``.

    python benchmarks/size_adjusted_ranking.py benchmarks/results/bench_affinity_191.csv \\
        benchmarks/results/bench_affinity_plb.csv benchmarks/results/bench_affinity_mcompchem.csv \\
        benchmarks/results/bench_affinity_openfe.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_affinity import SIGNS  # noqa: E402
from plugin_common import command_line, write_result  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "size_adjusted_ranking.json"


def residual(y: np.ndarray, size: np.ndarray) -> np.ndarray:
    """``y`` minus its least-squares line in ``size``."""
    x = np.c_[np.ones(len(size)), size]
    return y - x @ np.linalg.lstsq(x, y, rcond=None)[0]


def series_figures(table: pd.DataFrame, method: str, min_ligands: int) -> list[dict]:
    """Per series: plain Spearman of the (signed) score with pK, and of their size residuals."""
    from scipy.stats import spearmanr

    out = []
    for series, g in table[table[method].notna()].groupby("series"):
        if len(g) < min_ligands or g["heavy_atoms"].nunique() < 2:
            continue
        score = SIGNS[method] * g[method].to_numpy(float)
        pk, size = g["pK"].to_numpy(float), g["heavy_atoms"].to_numpy(float)
        out.append({"series": series, "n": len(g), "spearman": float(spearmanr(score, pk)[0]),
                    "beyond_size": float(spearmanr(residual(score, size), residual(pk, size))[0]),
                    "pearson_with_size": float(np.corrcoef(score, size)[0, 1])})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", nargs="+", type=Path, help="per-ligand CSVs of bench_affinity.py")
    ap.add_argument("--min-ligands", type=int, default=8)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)

    result = {"command": command_line("size_adjusted_ranking.py", argv),
              "metric": "mean over series of the Spearman of score and pK residuals after a per-series "
                        "least-squares line in the heavy-atom count", "inputs": {}}
    for path in args.csv:
        table = pd.read_csv(path)
        figures = {}
        print(f"{path.name}")
        for method in SIGNS:
            if method not in table or method == "heavy_atoms" or table[method].isna().all():
                continue
            rows = series_figures(table, method, args.min_ligands)
            if not rows:
                continue
            beyond = [r["beyond_size"] for r in rows]
            figures[method] = {"mean_spearman": float(np.mean([r["spearman"] for r in rows])),
                               "mean_beyond_size": float(np.mean(beyond)),
                               "mean_pearson_with_size": float(np.mean([r["pearson_with_size"] for r in rows])),
                               "series_positive": int(sum(b > 0 for b in beyond)), "n_series": len(rows),
                               "series": rows}
            print(f"  {method:18s} series {len(rows):2d}  Spearman {figures[method]['mean_spearman']:+.2f}  "
                  f"beyond size {figures[method]['mean_beyond_size']:+.2f} "
                  f"({figures[method]['series_positive']} of {len(rows)} positive)  "
                  f"r with size {figures[method]['mean_pearson_with_size']:+.2f}")
        result["inputs"][str(path)] = figures
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
