"""Compatibility module: ``get-md rescore-poses`` now lives in
:mod:`get_md.workflows.rescoring` (:mod:`~get_md.workflows.rescoring.poses`,
``receptor``, ``pose_records``, ``sdf_output``, ``cli``). This module re-exports its
public names, and ``register_cli`` for the ``get_md.commands`` entry point.

Patching a name here (``monkeypatch.setattr``) changes nothing: patch it in the module
that uses it (e.g. ``get_md.workflows.rescoring.poses.environment_cache``).

Example:
    >>> from get_md.workflows.poses import rescore_poses
    >>> df = rescore_poses("rec.pdb", "vina_out.sdf", model="potential.pt",
    ...                    out_csv="rescored.csv", out_sdf="rescored.sdf")  # doctest: +SKIP
"""

from __future__ import annotations

from .rescoring.cli import register_poses_cli as register_cli
from .rescoring.ligands import PICK_CHOICES, per_ligand
from .rescoring.options import RunOptions
from .rescoring.pocket import union_pocket
from .rescoring.pose_records import count_records
from .rescoring.poses import (
    POSEBUSTERS_CONFIGS,
    SORT_CHOICES,
    pocket_index,
    rescore_poses,
    score_batch,
)
from .rescoring.receptor import (
    HYDROGEN_CHOICES,
    check_receptor,
    load_receptor,
    load_reference,
    receptor_with_hydrogens,
)
from .rescoring.sdf_output import write_pose_sdf

__all__ = [
    "HYDROGEN_CHOICES", "PICK_CHOICES", "POSEBUSTERS_CONFIGS", "SORT_CHOICES", "RunOptions", "check_receptor",
    "count_records", "load_receptor", "load_reference", "per_ligand", "pocket_index", "receptor_with_hydrogens",
    "register_cli", "rescore_poses", "score_batch", "union_pocket", "write_pose_sdf",
]
