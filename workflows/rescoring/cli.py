"""The ``get-md rescore-poses`` and ``get-md rescore-traj`` subcommands: their parsers
(:func:`register_poses_cli`, :func:`register_trajectory_cli`) and what they run."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

from get_md.perf import set_threads

from .ligands import PICK_CHOICES, check_ligand_key, per_ligand
from .options import RunOptions, add_drop_unsupported_option, add_run_options
from .outputs import OutputLock, check_outputs, write_csv_atomic
from .poses import OWN_COLUMNS, POSEBUSTERS_CONFIGS, SORT_CHOICES, rescore_poses
from .receptor import HYDROGEN_CHOICES
from .trajectory import rescore_trajectory


def setup_cli_logging(quiet: bool) -> None:
    """Info messages of get_md on stderr as ``get-md: ...`` (warnings only when ``quiet``);
    other libraries' loggers (Dask's) are left alone."""
    log = logging.getLogger("get_md")
    ours = [h for h in log.handlers if getattr(h, "_get_md_cli", False)]
    if not ours:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("get-md: %(message)s"))
        handler._get_md_cli = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    for handler in ours:  # a later main() call in the same process: today's sys.stderr
        if isinstance(handler, logging.StreamHandler):
            handler.stream = sys.stderr  # not setStream(): it flushes the old, maybe closed, one
    log.setLevel(logging.WARNING if quiet else logging.INFO)


def _default_out(poses: str, suffix: str) -> str:
    name = Path(poses).name
    for ext in (".gz",):
        if name.endswith(ext):
            name = name[: -len(ext)]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return f"{stem}_rescored{suffix}"


def _cmd_poses(args: argparse.Namespace) -> int:
    setup_cli_logging(args.quiet)
    set_threads(args.threads)
    out_csv = args.out_csv or _default_out(args.poses, ".csv")
    out_sdf = args.out_sdf or _default_out(args.poses, ".sdf")
    with contextlib.ExitStack() as claims:
        if args.out_ligands:
            check_outputs({"--out-csv": out_csv, "--out-sdf": out_sdf, "--out-ligands": args.out_ligands,
                           "--plot": args.plot},
                          {"RECEPTOR": args.receptor, "POSES": args.poses, "--reference": args.reference,
                           "--cofactors": args.cofactors, "--model": args.model})
            check_ligand_key(args.ligand_key, args.poses, OWN_COLUMNS)
            # held for the whole run, like --out-csv / --out-sdf inside rescore_poses
            claims.enter_context(OutputLock(args.out_ligands))
        return _rescore_poses_cli(args, out_csv, out_sdf)


def _rescore_poses_cli(args: argparse.Namespace, out_csv: str, out_sdf: str) -> int:
    table = rescore_poses(
        args.receptor, args.poses, reference=args.reference, cofactors=args.cofactors,
        add_hydrogens=args.add_hydrogens,
        out_sdf=out_sdf, out_residues=args.out_residues, plot=args.plot, sort=args.sort,
        per_residue=args.per_residue, posebusters=args.posebusters or False,
        options=RunOptions.from_args(args, out_csv=out_csv),
    )
    n = len(table)
    ok = int((table["status"] == "ok").sum())
    col = "score" if table.attrs["task"] == "score" else "interaction_energy_kcal_mol"
    msg = f"scored {ok} of {n} pose(s)"
    if ok < n:
        msg += f" ({n - ok} skipped, see the 'error' column)"
    if ok:
        best = table[table["rank"] == 1].iloc[0]
        msg += f"; best: pose {int(best['pose'])} ({col} {float(best[col]):.3f})"
    print(msg)
    print(f"wrote {out_csv}, {out_sdf}")
    if ok == 0:
        print("get-md: error: no pose could be scored", file=sys.stderr)
        return 2
    if not args.out_ligands and not args.quiet and table.attrs["task"] == "score":
        names = table.loc[table["status"] == "ok", "name"].astype(str)
        repeated = int((names[names.str.strip() != ""].value_counts() > 1).sum())
        if repeated:
            print(f"note: {repeated} ligand(s) have several poses; the score ranks ligands better than one "
                  "ligand's poses (docs/affinity.md#pose-ranking): --out-ligands FILE keeps the docking "
                  "program's pose of each")
    if args.out_ligands:
        ligands = per_ligand(table, pick=args.pick, key=args.ligand_key)
        write_csv_atomic(ligands, args.out_ligands)
        picked = ", ".join(f"{k} {v}" for k, v in ligands["picked_by"].value_counts().items())
        print(f"wrote {args.out_ligands}: {len(ligands)} ligand(s), pose picked by {picked}")
    return 0


def register_poses_cli(sub: Any) -> None:
    """Add the ``rescore-poses`` subcommand to the ``get-md`` parser."""
    p = sub.add_parser(
        "rescore-poses",
        help="rescore docking poses (interaction energy or score) against a receptor",
        description=(
            "Rescore docking poses with a GET / GeoMFormer model. With a potential: "
            "interaction energy E(complex) - E(pocket) - E(ligand) (eV, kcal/mol); with a "
            "score model: score (pK). Writes a CSV (one row per input record; unreadable "
            "poses reported and skipped) and an SDF with get_* tags. Rerunning the same "
            "command after an interruption resumes."
        ),
    )
    p.add_argument("receptor", metavar="RECEPTOR", help="receptor .pdb/.cif/.bcif/.pdbqt")
    p.add_argument("poses", metavar="POSES", help="poses .sdf/.sdf.gz/.mol2/.pdbqt (Vina)")
    p.add_argument("--reference", metavar="LIG", help="ligand defining the pocket (default: all poses)")
    p.add_argument("--cofactors", metavar="FILE",
                   help="molecules that belong to the receptor but are not in its file (SDF, MOL2, PDB; "
                        "e.g. a prepared benchmark's cofactor.sdf): joined to the receptor before the "
                        "pocket is cut")
    p.add_argument("--model", metavar="NAME_OR_PATH",
                   help="model file or shipped name (default: shipped score model, else potential)")
    p.add_argument("--pocket-radius", type=float, metavar="Å",
                   help="receptor residues within this distance of the ligand(s) (default: the "
                        "model's training radius, 6 for the shipped score model; else 10)")
    add_drop_unsupported_option(p)
    p.add_argument("--add-hydrogens", choices=HYDROGEN_CHOICES, default="auto",
                   help="auto (default): with a potential, add hydrogens to a receptor that has none "
                        "(OpenMM, pH 7) and to SDF/MOL2 poses that have none (RDKit); yes: complete "
                        "missing hydrogens everywhere; no: score the files as they are")
    p.add_argument("--out-csv", metavar="F", help="result table (default POSES_rescored.csv)")
    p.add_argument("--plot", metavar="PNG", help="score (± members' spread) or interaction energy of each pose, "
                                                 "one colour per ligand")
    p.add_argument("--out-sdf", metavar="F", help="scored poses with tags (default POSES_rescored.sdf)")
    p.add_argument("--sort", choices=SORT_CHOICES, default="score",
                   help="order of the outputs and of the rank column: score (best first), pose (most "
                        "native-like pose first: pose_score), energy, none (input order)")
    p.add_argument("--per-residue", action="store_true",
                   help="also write per-residue contributions (OUT.residues.csv)")
    p.add_argument("--out-residues", metavar="F", help="per-residue table (default OUT.residues.csv)")
    p.add_argument("--out-ligands", metavar="F",
                   help="also write one row per ligand (poses grouped by --ligand-key), best first")
    p.add_argument("--pick", choices=PICK_CHOICES, default="docking",
                   help="the pose that stands for a ligand in --out-ligands: docking (default: lowest "
                        "docking score of the input tags, e.g. minimizedAffinity; else the first pose), "
                        "first (first pose in the file), score (the model's best)")
    p.add_argument("--ligand-key", default="name", metavar="COLUMN",
                   help="column of the pose table that names a pose's ligand (default: name, the record name)")
    p.add_argument("--posebusters", nargs="?", const="dock", choices=POSEBUSTERS_CONFIGS,
                   metavar="CONFIG", help="add PoseBusters validity flags (config: dock [default], "
                   "dock_fast, redock, redock_fast); needs the posebusters package")
    add_run_options(p, "poses")
    p.set_defaults(func=_cmd_poses)


def _cmd_trajectory(args: argparse.Namespace) -> int:
    setup_cli_logging(args.quiet)
    set_threads(args.threads)
    out_csv = args.out_csv
    if out_csv is None:
        name = Path(args.trajectory).name
        out_csv = (name.rsplit(".", 1)[0] if "." in name else name) + "_rescored.csv"
    df = rescore_trajectory(
        args.topology, args.trajectory, receptor=args.receptor, ligand=args.ligand,
        stride=args.stride, start=args.start, stop=args.stop, chunk=args.chunk, plot=args.plot,
        ligand_charge=args.ligand_charge, options=RunOptions.from_args(args, out_csv=out_csv),
    )
    col = "score" if df.attrs["task"] == "score" else "interaction_energy_kcal_mol"
    n, ok = len(df), int(df.attrs["n_scored"])
    msg = f"scored {ok} of {n} frame(s)"
    if ok < n:
        msg += f" ({n - ok} skipped, see the 'error' column)"
    if ok:
        values = df.loc[df["status"] == "ok", col]
        msg += f": {col} mean {values.mean():.3f}, min {values.min():.3f}, max {values.max():.3f}"
    print(msg)
    print(f"wrote {out_csv}" + (f", {args.plot}" if args.plot and ok else ""), file=sys.stdout)
    if ok == 0:
        print("get-md: error: no frame could be scored (see the 'error' column of "
              f"{out_csv})", file=sys.stderr)
        return 2
    return 0


def register_trajectory_cli(sub: Any) -> None:
    """Add the ``rescore-traj`` subcommand to the ``get-md`` parser."""
    p = sub.add_parser(
        "rescore-traj",
        help="score every frame of an MD trajectory (interaction energy or score)",
        description=(
            "Score trajectory frames with a GET / GeoMFormer model: interaction energy "
            "E(complex) - E(pocket) - E(ligand) with a potential, or the score of a score "
            "model. The pocket is chosen once, from the first analysed frame. Writes a CSV "
            "(frame, time_ps, status, error, values; frames with broken coordinates are "
            "reported and skipped) and optionally a PNG; rerunning the same command "
            "after an interruption resumes."
        ),
    )
    p.add_argument("topology", metavar="TOPOLOGY", help="topology (PDB, PSF, prmtop, GRO, HDF5, ...)")
    p.add_argument("trajectory", metavar="TRAJ", help="trajectory (DCD, XTC, TRR, NetCDF, HDF5, PDB, ...)")
    p.add_argument("--receptor", default="protein", help="mdtraj selection of the receptor (default 'protein')")
    p.add_argument("--ligand", default="resname LIG", help="mdtraj selection of the ligand (default 'resname LIG')")
    p.add_argument("--stride", type=int, default=1, metavar="K", help="every K-th frame (default 1)")
    p.add_argument("--start", type=int, default=0, metavar="I", help="first frame, 0-based (default 0)")
    p.add_argument("--stop", type=int, metavar="J", help="stop before this frame (default: the end)")
    p.add_argument("--chunk", type=int, default=100, metavar="N", help="frames read at a time (default 100)")
    p.add_argument("--pocket-radius", type=float, metavar="Å",
                   help="receptor residues within this distance of the ligand in the first frame "
                        "(default: the model's training radius, 6 for the shipped score model; else 10)")
    add_drop_unsupported_option(p)
    p.add_argument("--ligand-charge", type=int, metavar="Q",
                   help="the ligand's net charge, for a score model with ligand chemistry (bond orders "
                        "are perceived from the topology; default: searched, with a warning if several fit)")
    p.add_argument("--model", metavar="NAME_OR_PATH",
                   help="model file or shipped name (default: shipped score model, else potential)")
    p.add_argument("--out-csv", metavar="F", help="result table (default TRAJ_rescored.csv)")
    p.add_argument("--plot", metavar="F.png", help="plot of the values against time")
    add_run_options(p, "frames")
    p.set_defaults(func=_cmd_trajectory)
