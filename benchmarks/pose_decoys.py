"""Docked decoy poses of training ligands, made exactly as ``bench_pose_ranking.py`` makes the
held-out ones: the training data of the pose head (``python -m get_md.train.pose``).

For ``--per-series`` ligands of every series of the Schrödinger public FEP+ benchmark (and of
``--posed`` folders of :mod:`get_md.datasets.reference_poses`, e.g. Uni-FEP series, whose
reference-posed ligands stand for the native poses) whose target is *not* held out (neither
:data:`get_md.train.affinity.HELD_OUT_TARGETS` nor a target excluded from all training,
:func:`get_md.datasets.targets.is_excluded`; those series are never read), evenly spaced
through the series' SDF, the ligand is re-embedded with ETKDG and
docked with AutoDock Vina into its receptor (``pose_ranking_docking.dock_ligand``: same box,
exhaustiveness, seeds and pose count as the benchmark). One SDF per ligand holds the docked
poses and the native one, tagged ``rmsd`` (heavy-atom, symmetry-aware, no alignment),
``vina_docking_score``, ``vina_score_only`` and ``is_native``.

``--method perturb`` makes cheaper decoys instead (about 4x): the native pose moved by eight
amounts and relaxed with Vina's local optimiser (``pose_ranking_docking.perturb_ligand``;
tagged alike, ``vina_docking_score`` being the relaxed energy). Pose members trained on them
did not rank docked poses (docs/affinity.md, "Perturbation decoys").

Resumable: a ligand whose SDF exists is skipped (files are written whole, then renamed).
``--shard i/n`` splits the ligands between processes (one Vina thread each)::

    python benchmarks/pose_decoys.py --schrodinger structure_inputs --out data/pose_decoys --shard 0/2 &
    python benchmarks/pose_decoys.py --schrodinger structure_inputs --out data/pose_decoys --shard 1/2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
import affinity_baselines  # noqa: E402
from pose_ranking_docking import dock_ligand, perturb_ligand, write_candidates  # noqa: E402


def spaced(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them when ``k >= n``).

    Example:
        >>> spaced(10, 3)
        [0, 4, 9]
    """
    if k >= n:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, k)})


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    from get_md.datasets.pose_quality import series_slug
    from get_md.train.pose import training_series

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--schrodinger", help="structure_inputs folder")
    ap.add_argument("--posed", nargs="*", default=[],
                    help="folders of get_md.datasets.reference_poses (e.g. Uni-FEP series: protein.pdb "
                         "and ligands.sdf with the reference-posed ligands as native poses)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-series", type=int, default=3)
    ap.add_argument("--exhaustiveness", type=int, default=4)
    ap.add_argument("--box-padding", type=float, default=10.0)
    ap.add_argument("--energy-range", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cpu", type=int, default=1)
    ap.add_argument("--shard", default="0/1", help="i/n: this process docks ligand jobs i, i+n, ...")
    ap.add_argument(
        "--method",
        choices=("dock", "perturb"),
        default="dock",
        help="dock: Vina docking from an ETKDG start; perturb: the native pose moved and "
        "relaxed with Vina (pose_ranking_docking.perturb_ligand, ~4x cheaper)",
    )
    ap.add_argument("--targets", nargs="+", metavar="T",
                    help="only the series of these targets (e.g. the validation targets)")
    args = ap.parse_args(argv)
    if not args.schrodinger and not args.posed:
        ap.error("give --schrodinger, --posed or both")
    shard, n_shards = (int(x) for x in args.shard.split("/"))
    from get_md.datasets.targets import canonical_target

    wanted = None if not args.targets else {canonical_target(t) for t in args.targets}

    # round by round (each series' first ligand, then each one's second, ...), so that a run
    # stopped early has covered every target
    rounds: list[list] = []
    for s in training_series(args.schrodinger, args.posed):
        if wanted is not None and s.target not in wanted:
            continue
        records = affinity_baselines.read_pose_records(s.ligands)
        for k, i in enumerate(spaced(len(records), args.per_series)):
            if k == len(rounds):
                rounds.append([])
            rounds[k].append((s, records[i]))
    jobs = [job for r in rounds for job in r]
    mine = jobs[shard::n_shards]
    print(f"{len(jobs)} ligands in all, {len(mine)} in shard {args.shard}", flush=True)
    receptors: dict[str, str] = {}
    tmpdir = args.out / f".receptors_{shard}"
    tmpdir.mkdir(parents=True, exist_ok=True)
    for s, rec in mine:
        # the folder name get_md.datasets.pose_quality looks for
        slug = series_slug(s.name)
        path = args.out / slug / f"{rec.index:03d}_{series_slug(rec.name)}.sdf"
        if path.exists() or rec.mol is None:
            continue
        if s.name not in receptors:
            try:
                clean, _ = affinity_baselines.clean_receptor_pdb(Path(s.protein).read_text(errors="replace"))
                pdbqt, _ = affinity_baselines.prepare_receptor_pdbqt(clean)
            except Exception as exc:  # noqa: BLE001 - one receptor meeko cannot type must not stop the rest
                print(f"[{s.name}] receptor preparation failed, series skipped: {exc}", flush=True)
                receptors[s.name] = ""
                continue
            receptors[s.name] = str(tmpdir / f"{slug}.pdbqt")
            Path(receptors[s.name]).write_text(pdbqt)
        if not receptors[s.name]:
            continue
        t0 = time.perf_counter()
        try:
            make = perturb_ligand if args.method == "perturb" else dock_ligand
            cands, _ = make(rec.mol, receptors[s.name], args)
        except Exception as exc:  # noqa: BLE001
            print(f"[{s.name}] {rec.name}: docking failed: {exc}", flush=True)
            continue
        tmp = path.with_suffix(".sdf.tmp")
        write_candidates(cands, tmp)
        os.replace(tmp, path)
        best = min(c.rmsd for c in cands if not c.is_native)
        print(f"[{s.name}] {rec.name}: {len(cands) - 1} poses, best RMSD {best:.2f} Å, "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
