"""Compatibility module: ``get-md rescore-traj`` now lives in
:mod:`get_md.workflows.rescoring` (:mod:`~get_md.workflows.rescoring.trajectory`,
``frames``, ``pocket``, ``cli``). This module re-exports its public names, and
``register_cli`` for the ``get_md.commands`` entry point.

Patching a name here (``monkeypatch.setattr``) changes nothing: patch it in the module
that uses it (e.g. ``get_md.workflows.rescoring.trajectory.build_environment``).

Example:
    >>> from get_md.workflows.trajectory import rescore_trajectory
    >>> df = rescore_trajectory("top.pdb", "traj.xtc", model="potential.pt",
    ...                         ligand="resname LIG", out_csv="traj.csv")  # doctest: +SKIP
"""

from __future__ import annotations

from .rescoring.cli import register_trajectory_cli as register_cli
from .rescoring.options import RunOptions
from .rescoring.pocket import choose_pocket
from .rescoring.trajectory import plot_scores, rescore_trajectory, score_frames, score_input

__all__ = [
    "RunOptions", "choose_pocket", "plot_scores", "register_cli", "rescore_trajectory",
    "score_frames", "score_input",
]
