"""The main job: rescore the bundled example poses and trajectory with the shipped model.

``get-md demo --out DIR`` rescoring, with the shipped default score model (the GET
affinity ensemble: ``score`` in pK, ``score_std`` the members' spread, per-residue
contributions; ``--model get-xtb-organic`` gives the potential's interaction energy
E(complex) − E(pocket) − E(ligand) instead):

* the 9 AutoDock Vina poses of prolif's GPCR ligand against its receptor
  -> ``DIR/poses.sdf`` (score tags), ``DIR/poses.csv``, ``DIR/poses_residues.csv``;
* the 250-frame MD trajectory of the same complex
  -> ``DIR/trajectory.csv`` and ``DIR/trajectory.png``.

The data ship in ``get_md/data/examples`` (see SOURCES.md there). Rerunning resumes.

Example:
    >>> from get_md.workflows.demo import run_demo
    >>> poses, frames = run_demo("demo_out")   # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional, Union


def _examples_dir() -> Path:
    from importlib.resources import files

    return Path(str(files("get_md") / "data" / "examples"))


def example_file(name: str) -> Path:
    """Path of a bundled example file (``rec.pdb``, ``vina_output.sdf``, ``top.pdb``, ``traj.xtc``)."""
    path = _examples_dir() / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: bundled example file missing (broken installation?)")
    return path


def check_options(out: Path, stride: int, threads: Optional[int]) -> None:
    """Reject bad ``--out`` / ``--stride`` / ``--threads`` before any work (WorkflowError).

    Example:
        >>> check_options(Path("demo_out"), 0, None)
        Traceback (most recent call last):
        ...
        get_md.errors.WorkflowError: --stride must be >= 1, got 0
    """
    from get_md.errors import WorkflowError

    if out.exists() and not out.is_dir():
        raise WorkflowError(f"--out {out} is a file; give a folder")
    if stride < 1:
        raise WorkflowError(f"--stride must be >= 1, got {stride}")
    if threads is not None and threads < 1:
        raise WorkflowError(f"--threads must be >= 1, got {threads}")


def run_demo(out: Union[str, os.PathLike] = "get_md_demo", model: Optional[str] = None,
             stride: int = 1, threads: Optional[int] = None, progress: Optional[bool] = None) -> tuple[Any, Any]:
    """Rescore the bundled poses and trajectory; returns the two DataFrames."""
    import torch
    from get_md.workflows.poses import rescore_poses
    from get_md.workflows.trajectory import rescore_trajectory

    out = Path(out)
    check_options(out, stride, threads)
    if threads is not None:
        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    poses = rescore_poses(
        example_file("rec.pdb"), example_file("vina_output.sdf"), model,
        out_csv=out / "poses.csv", out_sdf=out / "poses.sdf", out_residues=out / "poses_residues.csv",
        per_residue=True, sort="score", progress=progress,
    )
    t1 = time.time()
    frames = rescore_trajectory(
        example_file("top.pdb"), example_file("traj.xtc"), model, receptor="protein",
        ligand="resname LIG", stride=stride, out_csv=out / "trajectory.csv", plot=out / "trajectory.png",
        progress=progress,
    )
    t2 = time.time()
    print(f"poses: {len(poses)} rows in {t1 - t0:.1f} s -> {out / 'poses.sdf'}, {out / 'poses.csv'}")
    print(f"trajectory: {len(frames)} frames in {t2 - t1:.1f} s -> {out / 'trajectory.csv'}, {out / 'trajectory.png'}")
    return poses, frames


def _cmd(args: Any) -> int:
    run_demo(args.out, args.model, args.stride, args.threads, progress=False if args.quiet else None)
    return 0


def register_cli(sub: Any) -> None:
    """Add the ``demo`` subcommand to the ``get-md`` parser."""
    p = sub.add_parser("demo", help="rescore the bundled example poses and trajectory (the main job)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="get_md_demo", help="output folder (default get_md_demo)")
    p.add_argument("--model", metavar="NAME_OR_PATH", help="model (default: the shipped score model)")
    p.add_argument("--stride", type=int, default=1, help="every K-th trajectory frame (default 1)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd)
