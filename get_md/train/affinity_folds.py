"""Cross-validation by target for the affinity recipe: many held-out targets instead of six.

The held-out split of :mod:`get_md.train.affinity` has six targets, and a mean Spearman over
six targets moves by about ±0.1 between resamplings (:mod:`get_md.train.ranking`): too
little to tell the score from the ligands' size, or one recipe from another.
:func:`make_folds` splits the *training* targets of an ``affinity data`` folder into K
folds; fold k is a data folder of its own whose ``test.pt`` holds the k-th fold's targets
and whose ``train.pt`` holds every other training target. ``valid.pt`` (the validation
targets that stop training early) is the same in every fold, and the held-out targets of
the source folder are in none. Each fold then trains and scores with the recipe's own
commands; the K ``test.pt`` scores together give an out-of-fold score for every training
ligand, ranked within each of its ~80 targets::

    python -m get_md.train.affinity folds --data data/affinity --out data/affinity_cv --folds 5
    python -m get_md.train.affinity train --data data/affinity_cv/fold0 --out runs/cv/fold0 --seeds 0 \\
        --set k_neighbors=6 sparse_k=2 --threads 1          # and fold1 ... fold4
    python -m get_md.train.affinity ensemble --runs runs/cv/fold0 --data data/affinity_cv/fold0 --out cv0.pt
    python benchmarks/dataset_scores.py --model cv0.pt --data data/affinity_cv/fold0 --split test \
        --element-baseline --out cv0.csv
    python benchmarks/ranking_intervals.py cv0.csv cv1.csv ... --concat \
        --methods get heavy_atoms element_counts --out cv.json

Targets are dealt to the folds largest first, each to the fold with the fewest ligands so
far (ties: the lower fold), after a seeded shuffle that decides among targets of equal size,
so that the folds hold about equal numbers of ligands.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from get_md.errors import ConfigError


def assign_folds(target_sizes: dict[str, int], n_folds: int, seed: int = 0) -> dict[str, int]:
    """Fold of each target: largest first, each to the fold with the fewest ligands so far.

    Example:
        >>> assign_folds({"A": 10, "B": 6, "C": 5, "D": 1}, 2)
        {'A': 0, 'B': 1, 'C': 1, 'D': 0}
    """
    if n_folds < 2:
        raise ConfigError(f"--folds must be >= 2, got {n_folds}")
    if len(target_sizes) < n_folds:
        raise ConfigError(f"{len(target_sizes)} training targets cannot fill {n_folds} folds")
    names = sorted(target_sizes)
    order = np.random.default_rng(seed).permutation(len(names))
    ranked = sorted((names[i] for i in order), key=lambda t: -target_sizes[t])   # stable: shuffle breaks ties
    load = [0] * n_folds
    fold = {}
    for target in ranked:
        k = min(range(n_folds), key=lambda f: (load[f], f))
        fold[target] = k
        load[k] += target_sizes[target]
    return dict(sorted(fold.items()))


def make_folds(data: str, out: str, n_folds: int = 5, seed: int = 0) -> dict:
    """Write ``out/fold0`` … ``out/fold{K-1}``, each a data folder of the recipe (``train.pt``,
    ``valid.pt``, ``test.pt``, ``report.json``), and ``out/folds.json`` (target -> fold).

    Example:
        >>> make_folds("data/affinity", "data/affinity_cv", 5)  # doctest: +SKIP
    """
    from get_md.datasets.affinity import sample_target, split_by_target
    from get_md.train.data import MolecularDataset

    src, dst = Path(data), Path(out)
    for name in ("train.pt", "valid.pt", "report.json"):
        if not (src / name).is_file():
            raise ConfigError(f"{src}: no {name} (make it with `python -m get_md.train.affinity data`)")
    train = MolecularDataset.load(src / "train.pt")
    sizes = Counter(sample_target(s) for s in train)
    fold_of = assign_folds(dict(sizes), n_folds, seed)
    report = json.loads((src / "report.json").read_text())
    summary = {"source": str(src), "n_folds": n_folds, "seed": seed, "folds": []}
    for k in range(n_folds):
        held = [t for t, f in fold_of.items() if f == k]
        rest, test = split_by_target(train, held)
        fold_dir = dst / f"fold{k}"
        fold_dir.mkdir(parents=True, exist_ok=True)
        rest.save(fold_dir / "train.pt")
        test.save(fold_dir / "test.pt")
        shutil.copyfile(src / "valid.pt", fold_dir / "valid.pt")
        fold_report = dict(report, n={"train": len(rest), "valid": report["n"]["valid"], "test": len(test)},
                           targets={"train": sorted(set(sizes) - set(held)),
                                    "valid": report["targets"]["valid"], "test": sorted(held)},
                           cross_validation={"source": str(src), "fold": k, "n_folds": n_folds, "seed": seed})
        (fold_dir / "report.json").write_text(json.dumps(fold_report, indent=1) + "\n")
        summary["folds"].append({"fold": k, "train": len(rest), "test": len(test), "targets": sorted(held)})
    (dst / "folds.json").write_text(json.dumps(dict(summary, fold_of=fold_of), indent=1) + "\n")
    return summary
