"""Per-ligand scores of a score model on one split of an affinity data folder, as a CSV in
``bench_affinity.py``'s format (``series``, ``pK``, ``heavy_atoms``, ``get``, ``get_std``,
plus ``preparation``), for ``size_adjusted_ranking.py``.

``bench_affinity.py`` scores the source files through the rescoring workflow a user runs;
this scores the complexes ``python -m get_md.train.affinity data`` built (the same
pockets the members trained and early-stopped on), one CSV per preparation with
``--by-preparation``, so that a model trained on several preparations can be compared
with another on each of them, and on the validation split, where recipes are chosen.

    python benchmarks/dataset_scores.py --model get-affinity --data data/affinity_multi --split valid \\
        --out benchmarks/results/dataset_scores_valid.csv --by-preparation

``--element-baseline`` adds ``element_counts``: pK from a least-squares line in the ligand's
heavy atoms per element fitted on the folder's ``train.pt`` (what the members start from),
so that the network's gain over its own ligand-only start can be ranked too (the folds of
``python -m get_md.train.affinity folds``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch


def preparation_of(series: str) -> str:
    """``plb:cdk8`` -> ``plb``; a series of Schrödinger's own files or of the Uni-FEP poses -> ``default``."""
    head = series.split("|", 1)[1] if "|" in series else series
    return head.split(":", 1)[0] if ":" in head else "default"


def score_split(model: str, data: str, split: str, threads: int = 1) -> pd.DataFrame:
    """One row per complex of ``data/split.pt`` with the model's score and the measured pK."""
    from get_md.datasets.affinity import sample_series, sample_target
    from get_md.runtime import load_model
    from get_md.train.affinity import ligand_heavy_atoms, predict, score_labels
    from get_md.train.data import MolecularDataset

    torch.set_num_threads(threads)
    ds = MolecularDataset.load(Path(data) / f"{split}.pt")
    pred = predict(load_model(model, task="score")[0], ds)
    series = [sample_series(s) for s in ds]
    return pd.DataFrame({
        "name": [s.graph.names[0].rsplit("|", 1)[-1] for s in ds],
        "get": pred["score"], "get_std": pred.get("score_std", np.full(len(ds), np.nan)),
        "pK": score_labels(ds), "target": [sample_target(s) for s in ds], "series": series,
        "heavy_atoms": [ligand_heavy_atoms(s.graph) for s in ds],
        "preparation": [preparation_of(s) for s in series],
    })


def ligand_element_counts(dataset, elements: list[int]) -> np.ndarray:
    """[samples, elements] heavy-atom counts of each ligand (segments other than 0)."""
    out = np.zeros((len(dataset), len(elements)))
    column = {z: k for k, z in enumerate(elements)}
    for i, s in enumerate(dataset):
        z = s.graph.atomic_numbers[(s.graph.atom_segment_ids != 0) & (s.graph.atomic_numbers != 1)]
        for value, n in zip(*np.unique(z.numpy(), return_counts=True), strict=True):
            if int(value) in column:
                out[i, column[int(value)]] = n
    return out


def element_baseline(data: str, split: str) -> np.ndarray:
    """pK of ``data/split.pt`` predicted by a least-squares line in the ligand's heavy-atom
    counts per element (and a constant), fitted on ``data/train.pt``: the ligand-only
    start the members' network corrects, as a baseline of its own."""
    from get_md.train.affinity import score_labels
    from get_md.train.data import MolecularDataset

    train = MolecularDataset.load(Path(data) / "train.pt")
    elements = sorted({int(z) for s in train for z in s.graph.atomic_numbers.tolist() if z != 1})
    x = ligand_element_counts(train, elements)
    coef, *_ = np.linalg.lstsq(np.c_[x, np.ones(len(x))], score_labels(train), rcond=None)
    other = MolecularDataset.load(Path(data) / f"{split}.pt")
    return np.c_[ligand_element_counts(other, elements), np.ones(len(other))] @ coef


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="score-model file or shipped name")
    ap.add_argument("--data", required=True, help="folder of python -m get_md.train.affinity data")
    ap.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    ap.add_argument("--out", required=True, type=Path, help="CSV (with --by-preparation: OUT_<prep>.csv too)")
    ap.add_argument("--by-preparation", action="store_true", help="also one CSV per preparation")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--element-baseline", action="store_true",
                    help="add column element_counts: least squares in the ligand's heavy atoms per element, "
                         "fitted on train.pt of --data")
    args = ap.parse_args(argv)
    table = score_split(args.model, args.data, args.split, args.threads)
    if args.element_baseline:
        table["element_counts"] = element_baseline(args.data, args.split)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(f"wrote {args.out} ({len(table)} complexes)")
    if args.by_preparation:
        for prep, part in table.groupby("preparation"):
            path = args.out.with_name(f"{args.out.stem}_{prep}.csv")
            part.to_csv(path, index=False)
            print(f"wrote {path} ({len(part)} complexes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
