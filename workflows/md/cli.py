"""``get-md md``: argparse wiring of :func:`.run.run_md`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from .engines import ENGINES
from .run import MDSettings, run_md


def _cmd_md(args: argparse.Namespace) -> int:
    from get_md.workflows.rescoring.cli import setup_cli_logging

    from get_md.perf import set_threads

    setup_cli_logging(args.quiet)
    set_threads(args.threads)
    if args.plot:  # before any work: the plot must not overwrite the structure
        from get_md.workflows.rescoring.outputs import check_outputs

        check_outputs({"--plot": args.plot}, {"structure": args.structure})
    settings = MDSettings(
        model=args.model, engine=args.engine, timestep_fs=args.timestep, temperature_K=args.temperature,
        friction_per_ps=args.friction, interval=args.interval, seed=args.seed, device=args.device,
        dtype=args.dtype, charge=args.charge, record=args.record, periodic=args.periodic,
        max_temperature_K=args.max_temperature, minimize_steps=args.minimize, minimize_fmax=args.minimize_fmax,
    )
    res = run_md(args.structure, args.out, args.steps, settings, resume=not args.no_resume,
                 progress=not args.quiet)
    if args.plot:
        from pathlib import Path

        from .plots import plot_run

        plot_run(Path(res.out) / "md.csv", args.plot, f"{Path(args.structure).name}: {res.steps} steps")
    print(json.dumps({"out": res.out, "steps": res.steps, "resumed_from": res.started_at,
                      "seconds": round(res.seconds, 2), "steps_per_s": round(res.steps_per_s, 1),
                      **{k: round(v, 6) for k, v in res.final.items()}}))
    return 0


def register_cli(sub: Any) -> None:
    """Add ``get-md md`` to the argparse sub-parsers."""
    d = MDSettings()
    p = sub.add_parser(
        "md", help="run MD of a structure with a potential (ASE or OpenMM; resumable)",
        description="Molecular dynamics of one structure with a get_md potential (default: the shipped "
                    "one): Langevin (NVT) or, with --friction 0, velocity Verlet (NVE). Writes OUT/md.csv "
                    "(step, time_ps, energies in eV, temperature_K), OUT/trajectory.extxyz (Å) and a "
                    "checkpoint every --interval steps; rerunning the same command resumes, a larger "
                    "--steps extends the run.")
    p.add_argument("structure", help="starting structure: .xyz/.extxyz, .sdf/.mol/.mol2 or .pdb (Å; with "
                                     "hydrogens)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--steps", type=int, required=True, help="total MD steps")
    p.add_argument("--model", default=None, help="potential: shipped name or model file (default: the "
                                                 "shipped default potential)")
    p.add_argument("--engine", choices=ENGINES, default=d.engine, help=f"integrators of (default {d.engine})")
    p.add_argument("--timestep", type=float, default=d.timestep_fs, help=f"fs (default {d.timestep_fs})")
    p.add_argument("--temperature", type=float, default=d.temperature_K,
                   help=f"K: thermostat and initial velocities (default {d.temperature_K:g})")
    p.add_argument("--friction", type=float, default=d.friction_per_ps,
                   help=f"Langevin friction, 1/ps (default {d.friction_per_ps:g}); 0: NVE")
    p.add_argument("--interval", type=int, default=d.interval,
                   help=f"steps between recorded frames and rows (default {d.interval})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"initial velocities and thermostat (default {d.seed})")
    p.add_argument("--device", default=d.device, help=f"torch device (default {d.device})")
    p.add_argument("--dtype", default=d.dtype, choices=["float32", "float64"],
                   help=f"model precision (default {d.dtype}: energy conservation)")
    p.add_argument("--charge", type=float, default=None,
                   help="total charge (e) for models that read it (default: an SDF/MOL2 record's formal "
                        "charges, else 0)")
    p.add_argument("--record", type=int, default=1, help="record of a multi-record file, 1-based (default 1)")
    p.add_argument("--periodic", action="store_true", help="use a PDB file's CRYST1 box")
    p.add_argument("--max-temperature", type=float, default=None,
                   help="K: stop when the run exceeds it (default 10 x --temperature, at least 3000)")
    p.add_argument("--minimize", type=int, default=0, metavar="STEPS",
                   help="minimise the energy first, at most STEPS steps (default 0: no); step 0 is the result")
    p.add_argument("--minimize-fmax", type=float, default=d.minimize_fmax, metavar="EV_PER_A",
                   help=f"the minimiser (ASE's BFGS) stops when the largest force is below this, eV/Å (default "
                        f"{d.minimize_fmax})")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="energies and temperature against time, as a PNG (the whole run, resumed parts included)")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT holds a run")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_md)


__all__ = ["register_cli"]
