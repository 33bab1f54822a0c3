"""Molecular dynamics with a get_md potential: ``get-md md`` and :func:`run_md`.

One structure (XYZ, SDF/MOL/MOL2 or PDB) is integrated with ASE's or OpenMM's
integrators on the shipped potential or a model file: Langevin (NVT) or velocity Verlet
(NVE). Frames, energies and a checkpoint are written every ``interval`` steps, so a run
that is killed resumes where it stopped and a finished one can be extended. One module
per job:

* :mod:`.structure`: ``read_structure`` (the starting structure as ``ase.Atoms``, checked);
* :mod:`.engines`: ``AseEngine``, ``OpenMMEngine`` (same units, same snapshot);
* :mod:`.store`: ``RunFolder`` (``md.csv``, ``trajectory.extxyz``, ``checkpoint.npz``,
  ``run.json``; resume);
* :mod:`.run`: ``MDSettings``, ``run_md``;
* :mod:`.plots`: ``plot_run`` (``--plot``);
* :mod:`.cli`: ``register_cli`` (``get-md md``).

Example:
    >>> from get_md.workflows.md import MDSettings, run_md
    >>> res = run_md("ethanol.xyz", "md_out", steps=1000,
    ...              settings=MDSettings(timestep_fs=0.5, temperature_K=300))  # doctest: +SKIP
"""

from __future__ import annotations

from .cli import register_cli
from .engines import AseEngine, OpenMMEngine, Snapshot, temperature
from .run import MDResult, MDSettings, run_md
from .store import RunFolder
from .structure import read_structure

__all__ = ["AseEngine", "MDResult", "MDSettings", "OpenMMEngine", "RunFolder", "Snapshot", "read_structure",
           "register_cli", "run_md", "temperature"]
