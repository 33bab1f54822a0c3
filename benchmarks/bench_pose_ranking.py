"""Pose ranking on held-out targets: does a scoring function pick a near-native pose?

For the first ``--ligands-per-series`` ligands of every series of the Schrödinger public FEP+
benchmark (``fep_benchmark_inputs/structure_inputs``) whose target is one of
:data:`get_md.train.affinity.HELD_OUT_TARGETS` (targets reserved for independent evaluation,
marked ``EXCLUDED`` by :func:`get_md.datasets.affinity.schrodinger_series`, are never read):

1. The ligand (RDKit, with hydrogens) is re-embedded with ETKDG (seeded), so the native
   coordinates are not given to the docking, and docked with AutoDock Vina 1.2 (python
   ``vina``) into the receptor: box centred on the native pose, edges = ligand extent +
   ``--box-padding`` (10 Å), ``--exhaustiveness`` (4), up to 9 poses (Vina keeps only those
   within ``--energy-range``, 3 kcal/mol, of the best), fixed ``--seed`` (ETKDG; Vina gets
   ``seed + 1``: Vina draws a random seed for 0). The receptor and ligand PDBQT are prepared
   with ``benchmarks/affinity_baselines.py`` (meeko); docked poses are turned back into RDKit
   molecules with meeko's ``RDKitMolCreate`` (all hydrogens).
2. The native pose (the SDF record) is added as one more candidate. Every candidate is
   labelled by its heavy-atom RMSD to the native pose, symmetry-aware and without alignment
   (``rdMolAlign.CalcRMS``); near-native means RMSD < 2 Å.
3. The candidates of each ligand are written to one SDF (tags ``rmsd``,
   ``vina_docking_score``, ``vina_score_only``, ``is_native``) so any scorer can rescore them.
4. Every candidate is scored by each method:

   * ``vina``: Vina's docking score for docked poses, plain ``score_only`` for the native
     pose (kcal/mol, lower is better);
   * ``vina_score_only``: ``score_only`` for every candidate (one consistent function: the
     docking score of a pose differs from its ``score_only`` by Vina's intramolecular terms);
   * ``get``: ``get_md.workflows.poses.rescore_poses`` with ``--model`` (pocket = union of
     the candidates, no hydrogens added); column ``pose_score`` for a score model with pose
     members (and its ``score`` as method ``get_affinity``), ``score`` for one without
     (higher is better), ``interaction_energy_eV`` (lower is better) for a potential;
   * ``gnina`` (optional): gnina's CNNscore (higher is better) via gninatorch in its own venv
     (``affinity_baselines.run_gnina_scoring``).

Reported per method: top-1 success, the fraction of ligands whose best-ranked candidate is
within 2 Å of the native pose, "with native" (native pose among the candidates) and "docked
only" (native left out); and the ceiling: the fraction of ligands for which docking produced
any near-native pose at all (docked-only success cannot exceed it).

    python benchmarks/bench_pose_ranking.py --schrodinger DIR [--model M] \\
        [--ligands-per-series 2] [--exhaustiveness 4] [--methods vina get gnina] [--reuse-poses]

``--reuse-poses`` rescores the candidate SDFs of an earlier run instead of docking again
(the docking is most of the time). The training decoys of the pose members are made the
same way, from training targets only, by ``benchmarks/pose_decoys.py``.

Result: ``benchmarks/results/bench_pose_ranking.json`` (per-ligand rows, summary, command,
timings); candidate SDFs under ``--poses-dir`` (default ``runs/bench_pose_ranking_poses``).

Docking and scoring live in ``pose_ranking_docking.py``, the success statistics in
``pose_ranking_summary.py``; their public names are re-exported here.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
import affinity_baselines  # noqa: E402
from pose_ranking_docking import (  # noqa: E402,F401  (re-exported: the old names)
    N_POSES,
    Candidate,
    dock_ligand,
    embed_start,
    heavy_rmsd,
    read_candidates,
    score_get,
    split_pdbqt_models,
    vina_seed,
    write_candidates,
)
from pose_ranking_summary import (  # noqa: E402,F401
    NEAR_NATIVE_A,
    ligand_row,
    markdown,
    summarise,
    top1,
)

DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "bench_pose_ranking.json"
DEFAULT_POSES_DIR = REPO_ROOT / "runs" / "bench_pose_ranking_poses"
METHODS = ("vina", "get", "gnina")
"""Methods selectable with ``--methods`` (``vina`` also reports ``vina_score_only``)."""


def held_out_series(root: str, targets: Sequence[str]) -> list[Any]:
    """Series of the benchmark folder whose target is one of ``targets``.

    Args:
        root: The ``structure_inputs`` folder.
        targets: Canonical target keys (excluded targets never match: they are ``EXCLUDED``).

    Returns:
        :class:`get_md.datasets.affinity.Series` objects, in folder order.
    """
    from get_md.datasets.affinity import schrodinger_series

    wanted = set(targets) - {"EXCLUDED"}
    return [s for s in schrodinger_series(root) if s.target in wanted]


def _slug(text: str) -> str:
    """Makes a file-name-safe string.

    Args:
        text: Any string.

    Returns:
        The string with runs of unsafe characters replaced by ``_``.
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _versions() -> dict[str, str]:
    """Versions of the packages the benchmark depends on.

    Returns:
        Package name -> version (``"missing"`` when not installed).
    """
    out = {"python": platform.python_version()}
    for pkg in ("vina", "meeko", "rdkit", "torch", "get-md"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def run_series(
    series: Any, args: argparse.Namespace, methods: Sequence[str], log: Any
) -> list[dict[str, Any]]:
    """Docks, labels and scores the first ligands of one series.

    Args:
        series: A :class:`get_md.datasets.affinity.Series`.
        args: Parsed command line.
        methods: Requested methods (``vina``, ``get``, ``gnina``).
        log: Stream for progress messages.

    Returns:
        One row per ligand (``error`` set when the ligand could not be docked).
    """
    base = {"target": series.target, "series": series.name}
    records = affinity_baselines.read_pose_records(series.ligands)[: args.ligands_per_series]
    clean_pdb, _ = affinity_baselines.clean_receptor_pdb(
        Path(series.protein).read_text(errors="replace")
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_pose_ranking_") as tmp:
        rec_path = Path(tmp) / "receptor.pdbqt"
        t0 = time.perf_counter()
        try:
            rec_pdbqt, rec_info = affinity_baselines.prepare_receptor_pdbqt(clean_pdb)
            rec_path.write_text(rec_pdbqt)
        except Exception as exc:  # noqa: BLE001
            msg = f"receptor preparation: {affinity_baselines._one_line(exc)}"
            return [{**base, "record": r.index, "name": r.name, "error": msg} for r in records]
        receptor_s = time.perf_counter() - t0
        print(
            f"[{series.name}] receptor PDBQT {receptor_s:.1f} s "
            f"(dropped {rec_info['dropped_unknown_residues']})",
            file=log,
            flush=True,
        )
        all_cands: dict[int, list[Candidate]] = {}
        for rec in records:
            row: dict[str, Any] = {
                **base,
                "record": rec.index,
                "name": rec.name,
                "heavy_atoms": rec.heavy_atoms,
                "error": "",
            }
            rows.append(row)
            if rec.mol is None:
                row["error"] = "; ".join(rec.errors) or "unreadable record"
                continue
            from rdkit.Chem import rdMolDescriptors

            row["rotatable_bonds"] = int(rdMolDescriptors.CalcNumRotatableBonds(rec.mol))
            sdf = args.poses_dir / _slug(series.name) / f"{rec.index:03d}_{_slug(rec.name)}.sdf"
            if args.reuse_poses and sdf.is_file():
                # the docking of an earlier run with the same settings: rescore only (no
                # docking timings for this ligand, so the means cover docked ligands only)
                cands = read_candidates(sdf)
                info = {"box_center": None, "box_size": None}
                row["poses_reused"] = True
            else:
                try:
                    cands, info = dock_ligand(rec.mol, str(rec_path), args)
                except Exception as exc:  # noqa: BLE001
                    row["error"] = f"docking: {affinity_baselines._one_line(exc)}"
                    print(f"[{series.name}] {rec.name}: {row['error']}", file=log, flush=True)
                    continue
                write_candidates(cands, sdf)
            row["timings"] = {k: info[k] for k in ("prep_s", "maps_s", "dock_s") if k in info}
            row["box_center"], row["box_size"] = info["box_center"], info["box_size"]
            for c in cands:
                c.scores["vina"] = -c.vina_docking
                c.scores["vina_score_only"] = -c.vina_score_only
            row["candidates_sdf"] = str(sdf)
            if "get" in methods:
                try:
                    values, ginfo = score_get(series.protein, sdf, args.model, args.cpu)
                    for method, vals in values.items():
                        for c, val in zip(cands, vals, strict=True):
                            c.scores[method] = val
                    row["get"] = ginfo
                    row["timings"]["get_s"] = ginfo["seconds"]
                except Exception as exc:  # noqa: BLE001
                    row["get"] = {"error": affinity_baselines._one_line(exc)}
                    print(f"[get] {rec.name}: {row['get']['error']}", file=log, flush=True)
            all_cands[rec.index] = cands
            best = min((c.rmsd for c in cands if not c.is_native), default=math.nan)
            print(
                f"[{series.name}] {rec.name}: {len(cands) - 1} poses "
                + (f"docked in {info['dock_s']:.1f} s" if "dock_s" in info else "reused")
                + f", best RMSD {best:.2f} Å",
                file=log,
                flush=True,
            )

        if "gnina" in methods and all_cands:
            flat = [(i, j, c) for i, cs in all_cands.items() for j, c in enumerate(cs)]
            mols = {k: c.mol for k, (_, _, c) in enumerate(flat)}
            try:
                got, _errs, ginfo = affinity_baselines.run_gnina_scoring(
                    clean_pdb, mols, venv=args.gnina_venv, threads=args.cpu
                )
                for k, (_, _, c) in enumerate(flat):
                    c.scores["gnina"] = got[k][0] if k in got else math.nan
                per_lig = ginfo["subprocess_s"] / max(len(all_cands), 1)
                for row in rows:
                    if row["record"] in all_cands:
                        row.setdefault("timings", {})["gnina_s"] = per_lig
            except Exception as exc:  # noqa: BLE001
                print(
                    f"[gnina] {series.name}: {affinity_baselines._one_line(exc)}",
                    file=log,
                    flush=True,
                )

    report = ["vina", "vina_score_only"] if "vina" in methods else []
    report += [m for m in ("get", "gnina") if m in methods]
    if any("get_affinity" in c.scores for cs in all_cands.values() for c in cs):
        report.append("get_affinity")
    for row in rows:
        if row["record"] in all_cands:
            cands = all_cands[row["record"]]
            row.update(ligand_row(cands, report))
            row["candidate_labels"] = [c.label for c in cands]
    return rows


def _jsonable(obj: Any) -> Any:
    """Replaces NaN/inf by None so that the JSON is standard.

    Args:
        obj: Nested dicts/lists/scalars.

    Returns:
        The same structure with non-finite floats as None.
    """
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        Exit status: 0, or 1 when no ligand could be docked.
    """
    from get_md.train.affinity import HELD_OUT_TARGETS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--schrodinger", required=True, help="structure_inputs folder")
    ap.add_argument(
        "--model",
        default=None,
        help="GET model file or shipped name (default: the workflow's default)",
    )
    ap.add_argument("--ligands-per-series", type=int, default=2)
    ap.add_argument("--exhaustiveness", type=int, default=4)
    ap.add_argument(
        "--box-padding",
        type=float,
        default=10.0,
        help="Å added to each box edge beyond the ligand extent (half per side)",
    )
    ap.add_argument(
        "--energy-range",
        type=float,
        default=3.0,
        help="kcal/mol above the best pose within which Vina's poses are kept (Vina's default 3)",
    )
    ap.add_argument(
        "--seed", type=int, default=0, help="ETKDG seed; Vina gets seed + 1 (0 is random to Vina)"
    )
    ap.add_argument("--cpu", type=int, default=2, help="Vina / torch / gnina threads")
    ap.add_argument("--methods", nargs="+", default=["vina", "get"], choices=list(METHODS))
    ap.add_argument(
        "--targets",
        nargs="+",
        default=list(HELD_OUT_TARGETS),
        help="held-out targets to use (others are ignored)",
    )
    ap.add_argument(
        "--series", nargs="+", default=None, help="only these series names (e.g. gpcrs/a2a_hip278)"
    )
    ap.add_argument(
        "--gnina-venv",
        default=None,
        help=f"gninatorch venv (default {affinity_baselines.DEFAULT_GNINA_VENV})",
    )
    ap.add_argument(
        "--poses-dir", type=Path, default=DEFAULT_POSES_DIR, help="folder of the candidate SDFs"
    )
    ap.add_argument(
        "--reuse-poses",
        action="store_true",
        help="rescore the candidate SDFs an earlier run left in --poses-dir instead of docking again",
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)

    not_held_out = sorted(set(args.targets) - set(HELD_OUT_TARGETS))
    if not_held_out:
        ap.error(f"not held-out targets: {not_held_out}; choose from {HELD_OUT_TARGETS}")
    if "get" in args.methods:
        import torch

        torch.set_num_threads(args.cpu)
    t_start = time.perf_counter()
    series = held_out_series(args.schrodinger, args.targets)
    if args.series:
        series = [s for s in series if s.name in set(args.series)]
    rows: list[dict[str, Any]] = []
    for s in series:
        rows.extend(run_series(s, args, args.methods, sys.stderr))
    total_s = time.perf_counter() - t_start

    report = ["vina", "vina_score_only"] if "vina" in args.methods else []
    report += [m for m in ("get", "gnina") if m in args.methods]
    if any("get_affinity" in r.get("methods", {}) for r in rows):
        report.append("get_affinity")
    summary = summarise(rows, report)
    docked = [r for r in rows if "timings" in r]
    timing_keys = sorted({k for r in docked for k in r["timings"]})
    mean_timings = {
        k: float(np.mean([r["timings"][k] for r in docked if k in r["timings"]]))
        for k in timing_keys
    }
    get_models = sorted(
        {(r["get"]["model"], r["get"]["task"]) for r in rows if "model" in r.get("get", {})}
    )
    argv_list = list(sys.argv[1:] if argv is None else argv)
    result = {
        "command": shlex.join(["python", "benchmarks/bench_pose_ranking.py", *argv_list]),
        "settings": {
            "exhaustiveness": args.exhaustiveness,
            "n_poses": N_POSES,
            "seed": args.seed,
            "vina_seed": vina_seed(args.seed),
            "cpu": args.cpu,
            "energy_range": args.energy_range,
            "box_padding_A": args.box_padding,
            "ligands_per_series": args.ligands_per_series,
            "near_native_A": NEAR_NATIVE_A,
            "get_model_arg": args.model,
            "get_models_used": [{"model": m, "task": t} for m, t in get_models],
        },
        "versions": _versions(),
        "series": [{"target": s.target, "series": s.name} for s in series],
        "timings": {"total_s": total_s, "mean_per_ligand_s": mean_timings},
        "summary": summary,
        "ligands": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_jsonable(result), indent=1) + "\n")
    print(markdown(summary))
    if get_models:
        print("get model: " + ", ".join(f"{m} ({t})" for m, t in get_models))
    print("mean per ligand: " + ", ".join(f"{k} {v:.1f} s" for k, v in mean_timings.items()))
    print(f"written {args.out}; candidate SDFs under {args.poses_dir}")
    return 0 if summary["n_ligands"] else 1


if __name__ == "__main__":
    sys.exit(main())
