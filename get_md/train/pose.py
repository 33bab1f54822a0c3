"""Train the pose members of the score model and ship them inside ``get-affinity``.

Pose members are GET score models of the affinity members' architecture, regressed (MSE)
onto the soft near-native label of docked poses (:mod:`get_md.datasets.pose_quality`), so
that ``pose_score`` ranks the poses of one ligand. Four resumable steps::

    # 0. docked decoys of the training targets' ligands (Vina; hours on one core; resumes)
    python benchmarks/pose_decoys.py --schrodinger DIR --out data/pose_decoys --shard 0/2 &
    python benchmarks/pose_decoys.py --schrodinger DIR --out data/pose_decoys --shard 1/2
    # 1. labelled complexes, split by target like the affinity data
    python -m get_md.train.pose data --schrodinger DIR --decoys data/pose_decoys --out data/poses
    # 2. members (one process each: --seeds 0, --seeds 1, ...); --init RUN/best.pt starts
    #    from an affinity member with its architecture, --ligand-weight W adds a loss
    #    that ranks the poses of one ligand (see docs/affinity.md for what each gave)
    python -m get_md.train.pose train --data data/poses --out runs/poses --seeds 0
    # 3. the affinity model file with the pose members added
    python -m get_md.train.pose attach --runs runs/poses --data data/poses \\
        --model get_md/zoo/get-affinity.pt --out get_md/zoo/get-affinity.pt

Targets: the same split as :mod:`get_md.train.affinity` (held-out targets are never read:
their decoys are made by ``benchmarks/bench_pose_ranking.py``, which gives the reported
figures; ``VALID_TARGETS`` early-stop).

Example:
    >>> from get_md.train.pose import member_config
    >>> member_config("data/poses", "runs/poses", 0).model["task"]
    'score'
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from get_md.perf import set_threads
from get_md.train.affinity import (
    DEFAULT_TRAIN,
    HELD_OUT_TARGETS,
    POCKET_RADIUS,
    VALID_TARGETS,
    load_members,
    train_configs,
)
from get_md.train.affinity import member_config as affinity_member_config
from get_md.train.config import TrainConfig

#: Training settings of pose members (the affinity recipe, fewer epochs: ~8 poses a ligand).
POSE_TRAIN = dict(DEFAULT_TRAIN, max_epochs=8, patience=3)


def training_series(schrodinger: Optional[str], posed: Sequence[str] = ()) -> list:
    """Series of the Schrödinger ``structure_inputs`` folder and of ``posed`` folders
    (:mod:`get_md.datasets.reference_poses`, e.g. Uni-FEP series) whose target may be
    trained on or used for early stopping: neither held out (:data:`HELD_OUT_TARGETS`)
    nor excluded.

    Example:
        >>> [s.target for s in training_series("structure_inputs")][:2]  # doctest: +SKIP
        ['BRD4', 'FTASE']
    """
    from get_md.datasets.affinity import collect_series
    from get_md.datasets.targets import canonical_target, is_excluded

    held = {canonical_target(t) for t in HELD_OUT_TARGETS}
    return [s for s in collect_series(schrodinger, posed)
            if s.target != "EXCLUDED" and not is_excluded(s.target) and s.target not in held]


def build_splits(schrodinger: Optional[str], decoys: str, out: str, pocket_radius: float = POCKET_RADIUS,
                 posed: Sequence[str] = ()) -> dict:
    """``train.pt``, ``valid.pt`` (+ ``*_poses.json``: RMSD of each sample) and ``report.json``
    from the decoys of the series of :func:`training_series` (``schrodinger``, ``posed``).

    Example:
        >>> build_splits("structure_inputs", "data/pose_decoys", "data/poses")  # doctest: +SKIP
    """
    from get_md.datasets.pose_quality import build_pose_dataset, entries_to_json
    from get_md.datasets.targets import canonical_target
    from get_md.errors import DatasetError

    if not Path(decoys).is_dir():
        raise DatasetError(f"{decoys}: decoys folder not found (benchmarks/pose_decoys.py writes it)")
    valid = {canonical_target(t) for t in VALID_TARGETS}
    series = training_series(schrodinger, posed)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"pocket_radius": pocket_radius, "n": {}, "ligands": {}, "targets": {},
                               "failures": []}
    for split, chosen in (("train", [s for s in series if s.target not in valid]),
                          ("valid", [s for s in series if s.target in valid])):
        ds, entries, report = build_pose_dataset(chosen, decoys, pocket_radius, name=f"poses[{split}]")
        if split == "train" and len(ds) == 0:  # had written empty datasets and a report
            first = f"; first failure: {report.failures[0]}" if report.failures else ""
            raise DatasetError(f"{decoys}: no training poses from {len(chosen)} series "
                               f"({len(report.failures)} failures{first})")
        ds.save(out_dir / f"{split}.pt")
        (out_dir / f"{split}_poses.json").write_text(json.dumps(entries_to_json(entries)) + "\n")
        summary["n"][split] = len(ds)
        summary["ligands"][split] = report.ligands
        summary["targets"][split] = sorted({e.target for e in entries})
        summary["failures"] += report.failures
    (out_dir / "report.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def member_config(data: str, out: str, seed: int, **overrides: Any) -> TrainConfig:
    """The ``get-md train`` config of pose member ``seed``: an affinity member's
    (:func:`get_md.train.affinity.member_config`) with :data:`POSE_TRAIN` settings."""
    return affinity_member_config(data, out, seed, **dict(POSE_TRAIN, **overrides))


def init_architecture(path: str) -> Optional[dict]:
    """The model configuration recorded with the weights at ``path`` (a run's ``best.pt`` or
    ``checkpoint.pt``: ``model_config``), or None for a bare ``{"model": state_dict}``: pose
    members started from an affinity member keep its architecture, as :func:`attach` needs.
    Raises ``TrainError`` naming ``path`` for a file that is not such a checkpoint."""
    from get_md.train.checkpoint import read_init

    config = read_init(path).get("model_config")
    return dict(config) if config else None


def train_members(data: str, out: str, seeds: Sequence[int], **overrides: Any) -> list[Path]:
    """Train (or resume) pose members ``seeds``; each writes its ``config.json`` first."""
    return train_configs([member_config(data, out, seed, **overrides) for seed in seeds])


def evaluate(model: torch.nn.Module, data: str, split: str = "valid", key: str = "score") -> dict:
    """Top-1 success (< 2 Å) of ``model``'s ``key`` output on ``data/<split>.pt``, next to
    Vina's docking score on the same poses."""
    from get_md.datasets.pose_quality import entries_from_json, top1_success
    from get_md.train.affinity import predict
    from get_md.train.data import MolecularDataset

    ds = MolecularDataset.load(Path(data) / f"{split}.pt")
    entries = entries_from_json(json.loads((Path(data) / f"{split}_poses.json").read_text()))
    pred = predict(model, ds)[key]
    return {"model": top1_success(entries, pred),
            "vina": top1_success(entries, [-e.vina_docking_score for e in entries])}


def attach(runs: str, data: str, model: str, out: str, command: Optional[str] = None) -> dict:
    """Write ``model`` (an affinity ensemble file) with the pose members of ``runs`` added.

    The affinity members keep the file's weights (pose members it already had are replaced);
    the pose members' validation top-1 success is stored under ``training.metrics.pose_valid``.
    """
    from get_md import export
    from get_md.errors import ModelFileError
    from get_md.models.ensemble import ScoreEnsemble, build_ensemble
    from get_md.runtime import resolve_model_path

    module, meta = export.load(resolve_model_path(model, task="score"))  # a path or a shipped name
    config = {k: v for k, v in dict(meta["config"]).items() if k not in ("members", "pose_members")}
    base = build_ensemble(meta["family"], members=int(meta["config"]["members"]), **config)
    state = {k: v for k, v in module.state_dict().items() if not k.startswith("pose_members.")}
    base.load_state_dict(state)
    poses = load_members(runs)
    ens = ScoreEnsemble(list(base.members), pose_members=poses)
    training = dict(meta.get("training") or {})
    metrics = dict(training.get("metrics") or {})
    metrics["pose_valid"] = evaluate(ens, data, "valid", key="pose_score")
    training["metrics"] = metrics
    report = json.loads((Path(data) / "report.json").read_text())
    training["pose_members"] = {
        "dataset": {"n": report["n"], "ligands": report["ligands"], "targets": report["targets"]},
        "command": command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    keep = export.carried_metadata(meta)
    keep.pop("rescripted_from", None)
    keep["outputs"] = ["score", "score_std", "member_scores", "block_scores", "pose_score"]
    keep["training"] = training
    keep["units"] = dict(meta.get("units") or {}, pose_score="near-native label (1 at the binding mode, 0.5 at 2 A)")
    keep["description"] = str(meta.get("description", "")) + (
        f"; pose_score: mean of {len(poses)} pose members trained on Vina-docked decoys "
        "(near-native label, 1 within 2 Å of the binding mode)")
    written = export.save(ens, out, keep)
    if int(export.read_metadata(out)["config"].get("pose_members", 0)) != len(poses):
        raise ModelFileError(f"{out}: written without its pose members")
    return {"path": str(out), "pose_valid": metrics["pose_valid"], "weights_sha256": written["weights_sha256"]}


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m get_md.train.pose", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    d = sub.add_parser("data", help="label docked poses and split them by target")
    d.add_argument("--schrodinger", help="structure_inputs folder of the Schrödinger FEP+ benchmark")
    d.add_argument("--posed", nargs="*", default=[], help="folders of get_md.datasets.reference_poses "
                                                          "(e.g. Uni-FEP series) whose decoys were made too")
    d.add_argument("--decoys", required=True, help="folder of benchmarks/pose_decoys.py")
    d.add_argument("--out", required=True)
    d.add_argument("--pocket-radius", type=float, default=POCKET_RADIUS)
    t = sub.add_parser("train", help="train (or resume) pose members")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    t.add_argument("--epochs", type=int, default=POSE_TRAIN["max_epochs"])
    t.add_argument("--lr", type=float, default=POSE_TRAIN["lr"])
    t.add_argument("--threads", type=int, help="torch CPU threads (1 when members train side by side)")
    t.add_argument("--init", help="start from these weights ({'model': state_dict}, e.g. an affinity member's)")
    t.add_argument("--ligand-weight", type=float, default=0.0,
                   help="weight of a within-ligand loss: each pose's label error minus the mean over the "
                        "poses of its ligand in the batch (score_series; batches of one ligand's poses "
                        "each), so that members learn to rank one ligand's poses; 0: pointwise MSE only")
    a = sub.add_parser("attach", help="add the pose members to an affinity model file")
    a.add_argument("--runs", required=True)
    a.add_argument("--data", required=True)
    a.add_argument("--model", required=True, help="affinity score-model file or shipped name (get-affinity)")
    a.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.step == "data":
        if not args.schrodinger and not args.posed:
            p.error("data: give --schrodinger, --posed or both")
        summary = build_splits(args.schrodinger, args.decoys, args.out, args.pocket_radius, args.posed)
        print(json.dumps({k: summary[k] for k in ("n", "ligands", "targets")}, indent=1))
    elif args.step == "train":
        set_threads(args.threads)
        extra: dict[str, Any] = {}
        if args.ligand_weight:
            extra["loss_weights"] = {"score": 1.0, "score_series": args.ligand_weight}
        if args.init:  # the architecture of the weights started from (attach needs the affinity members')
            extra["model"] = init_architecture(args.init)
        train_members(args.data, args.out, args.seeds, max_epochs=args.epochs, lr=args.lr,
                      init_from=args.init, **extra)
    else:
        res = attach(args.runs, args.data, args.model, args.out)
        print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    from get_md.cli import run_module

    sys.exit(run_module(main, "python -m get_md.train.pose"))
