"""Docked poses labelled by how close they lie to the native binding mode: the pose head's data.

Input: the folders written by ``benchmarks/pose_decoys.py`` (one SDF per ligand under a folder
named after its series; records tagged ``rmsd``, the heavy-atom RMSD to the native pose in Å,
and ``is_native``). Each pose becomes one complex built like the rescoring workflow builds it
(receptor from :func:`get_md.build.from_pdb`, residues within ``pocket_radius`` of *any* pose
of that ligand, ligand in segment 1), labelled

    near-native label = 1 / (1 + exp((RMSD - 2 Å) / 0.5 Å))

(≈ 0.98 at 0 Å, 0.5 at the usual 2 Å success threshold, 0.02 at 4 Å): the target of the pose
members' ``pose_score``. Native poses are left out by default: they carry the set's own bond
geometry while docked poses carry RDKit's, a difference a network could learn instead of the
binding mode.

Series of targets held out or excluded never get here (:func:`build_pose_dataset` checks
:func:`get_md.datasets.targets.is_excluded` again).

Example:
    >>> round(near_native_label(2.0), 3), round(near_native_label(0.0), 3)
    (0.5, 0.982)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch

from get_md.datasets.targets import is_excluded
from get_md.errors import DatasetError

#: RMSD (Å) below which a pose counts as near-native.
NEAR_NATIVE_A = 2.0
#: Width (Å) of the logistic step of :func:`near_native_label`.
LABEL_WIDTH_A = 0.5


def near_native_label(rmsd: float, threshold: float = NEAR_NATIVE_A, width: float = LABEL_WIDTH_A) -> float:
    """Soft near-native label of a pose ``rmsd`` Å from the native one (1 near, 0 far)."""
    x = (float(rmsd) - threshold) / width
    return 1.0 / (1.0 + math.exp(min(x, 60.0)))


def series_slug(name: str) -> str:
    """The folder name ``pose_decoys.py`` gives a series (unsafe characters -> ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


@dataclass
class PoseEntry:
    """One labelled pose of a :func:`build_pose_dataset` dataset (same order as its samples)."""

    name: str
    target: str
    ligand: str
    rmsd: float
    is_native: bool
    vina_docking_score: float


@dataclass
class PoseReport:
    """What :func:`build_pose_dataset` read and left out."""

    ligands: int = 0
    poses: int = 0
    failures: list[str] = field(default_factory=list)
    skipped_series: list[str] = field(default_factory=list)


def _float_tag(props: dict, key: str) -> float:
    try:
        return float(props[key])
    except (KeyError, TypeError, ValueError):
        return math.nan


def build_pose_dataset(series: Iterable, decoys: str, pocket_radius: float = 6.0,
                       include_native: bool = False, name: str = "poses") -> tuple:
    """Labelled complexes of every docked pose under ``decoys`` whose series is in ``series``.

    Args:
        series: :class:`get_md.datasets.affinity.Series` objects (their protein PDBs are the
            receptors; series whose folder is absent are skipped).
        decoys: root folder of ``benchmarks/pose_decoys.py``.
        pocket_radius: Å, residues within this distance of any pose of the ligand.
        include_native: also add the native pose of each ligand.
        name: dataset name.

    Returns:
        ``(MolecularDataset, list[PoseEntry], PoseReport)``; sample targets
        ``{"score": [near-native label]}``, names ``"TARGET|series|ligand|pose"``.

    Raises:
        DatasetError: a series of a target reserved for independent evaluation.
    """
    from get_md.build import from_pdb, iter_poses, make_complex, select_pocket
    from get_md.train.data import MolecularDataset, Sample

    samples, entries, report = [], [], PoseReport()
    root = Path(decoys)
    for s in series:
        folder = root / series_slug(s.name)
        if s.target == "EXCLUDED" or not folder.is_dir():
            report.skipped_series.append(s.name)
            continue
        if is_excluded(s.target, s.name):
            raise DatasetError(f"{s.name}: target {s.target} is reserved for independent evaluation")
        try:
            receptor = from_pdb(s.protein, segment_id=0)
        except Exception as e:  # noqa: BLE001 - one unreadable receptor must not stop the build
            report.failures.append(f"{s.protein}: {e}")
            continue
        for sdf in sorted(folder.glob("*.sdf")):
            records = list(iter_poses(sdf, segment_id=1))
            good = [r for r in records if r.error is None and r.graph is not None]
            for r in records:
                if r.error is not None or r.graph is None:
                    report.failures.append(f"{sdf}: record {r.index}: {r.error}")
            if not good:
                continue
            union = torch.cat([r.graph.positions for r in good])
            pocket = select_pocket(receptor, union, pocket_radius)
            ligand = sdf.stem
            report.ligands += 1
            for r in good:
                native = str(r.properties.get("is_native", "0")) == "1"
                if native and not include_native:
                    continue
                rmsd = _float_tag(r.properties, "rmsd")
                if not (math.isfinite(rmsd) and rmsd >= 0):  # had been skipped without a word
                    given = r.properties.get("rmsd")
                    report.failures.append(f"{sdf}: record {r.index}: " + (
                        "no rmsd tag" if given is None else f"rmsd tag {given} is not a distance in Å"))
                    continue
                label = str(r.properties.get("_Name", r.index))
                sample_name = f"{s.target}|{s.name}|{ligand}|{label}"
                try:
                    cplx = make_complex(pocket, r.graph, name=sample_name)
                except Exception as e:  # noqa: BLE001 - one bad pose must not stop the build
                    report.failures.append(f"{sdf}: record {r.index}: {e}")
                    continue
                samples.append(Sample(cplx, {"score": torch.tensor([near_native_label(rmsd)])}))
                entries.append(PoseEntry(sample_name, s.target, f"{s.name}|{ligand}", rmsd, native,
                                         _float_tag(r.properties, "vina_docking_score")))
                report.poses += 1
    return MolecularDataset(samples, name=name), entries, report


def top1_success(entries: list, scores, threshold: float = NEAR_NATIVE_A) -> dict:
    """Fraction of ligands whose highest-scored pose lies within ``threshold`` Å, and the ceiling
    (ligands with any such pose).

    Example:
        >>> e = [PoseEntry("a", "T", "L", 0.5, False, -9.0), PoseEntry("b", "T", "L", 6.0, False, -10.0)]
        >>> top1_success(e, [0.9, 0.1])["top1"], top1_success(e, [0.1, 0.9])["top1"]
        (1.0, 0.0)
    """
    best: dict[str, tuple[float, float]] = {}
    ceiling: dict[str, bool] = {}
    for e, sc in zip(entries, scores, strict=True):
        if e.ligand not in best or sc > best[e.ligand][0]:
            best[e.ligand] = (float(sc), e.rmsd)
        ceiling[e.ligand] = ceiling.get(e.ligand, False) or e.rmsd < threshold
    n = len(best)
    hits = sum(r < threshold for _, r in best.values())
    return {"n_ligands": n, "top1": hits / n if n else math.nan,
            "ceiling": sum(ceiling.values()) / n if n else math.nan}


def entries_to_json(entries: list) -> list[dict]:
    """Plain dicts of :class:`PoseEntry` objects (for the dataset's ``poses.json``)."""
    return [vars(e).copy() for e in entries]


def entries_from_json(rows: list[dict]) -> list[PoseEntry]:
    """Inverse of :func:`entries_to_json`."""
    return [PoseEntry(**r) for r in rows]


__all__ = ["LABEL_WIDTH_A", "NEAR_NATIVE_A", "PoseEntry", "PoseReport", "build_pose_dataset",
           "entries_from_json", "entries_to_json", "near_native_label", "series_slug", "top1_success"]
