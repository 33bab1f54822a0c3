"""Classical affinity baselines: score protein-ligand poses in place with Vina, Vinardo and gnina.

For one receptor (PDB, may contain hydrogens, waters, ions and cofactors) and one SDF of 3D
ligand poses already placed in the pocket, every SDF record is scored without any docking or
minimisation:

* ``vina`` / ``vinardo``: AutoDock Vina 1.2 ``score()`` (the ``--score_only`` total, kcal/mol,
  lower is better) with ``Vina(sf_name="vina")`` and ``Vina(sf_name="vinardo")``. The receptor
  PDBQT is prepared with meeko's polymer API (waters removed, missing hydrogens added from
  meeko's residue templates); ligands with ``MoleculePreparation`` + ``PDBQTWriterLegacy``
  after ``Chem.AddHs(addCoords=True)``. One box covers every pose (ligand extent + padding).
* ``gnina_cnnscore`` / ``gnina_cnnaffinity``: gnina's CNN pose score (0-1) and affinity (pK,
  higher is better) from ``gninatorch`` (the trained gnina weights in PyTorch). gninatorch
  needs ``molgrid``, which imports only with ``numpy<2``, so it runs in its own virtual
  environment (created on first use) through a small worker script, as a subprocess.
* ``heavy_atoms``: ligand heavy-atom count (RDKit).

A record that fails (unparsable, no 3D coordinates, preparation or scoring error) keeps NaN
scores and an explanation in the ``error`` column; it never stops the run. If gnina cannot be
run at all, its columns are NaN and the reason is printed and written to ``error``.

Usage::

    python benchmarks/affinity_baselines.py RECEPTOR.pdb LIGANDS.sdf --out scores.csv
    python benchmarks/affinity_baselines.py rec.pdb poses.sdf --out s.csv --methods vina vinardo
    python benchmarks/affinity_baselines.py rec.pdb poses.sdf --out s.csv --gnina-cnn \
        crossdock_default2018 --gnina-venv /tmp/my_gnina_venv

As a module::

    from benchmarks.affinity_baselines import score_poses, last_timings
    df = score_poses("rec.pdb", "poses.sdf", methods=("vina", "gnina"))
    print(last_timings()["vina"]["score_rate_poses_per_s"])

The pieces live in sibling modules, all re-exported here: ``baseline_records`` (SDF
records, receptor cleaning), ``baseline_vina`` (meeko preparation, Vina scoring) and
``baseline_gnina`` (gninatorch venv and worker).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # sibling modules, as the other benchmarks import theirs
    sys.path.insert(0, _HERE)
from baseline_gnina import (  # noqa: E402,F401  (re-exported: the old import path)
    _GNINA_WORKER,
    DEFAULT_GNINA_CNN,
    DEFAULT_GNINA_VENV,
    GNINA_PACKAGES,
    _default_torch_requirements,
    _file_lock,
    _gnina_venv_ok,
    _venv_python,
    ensure_gnina_venv,
    run_gnina_scoring,
)
from baseline_records import (  # noqa: E402,F401
    WATER_RESNAMES,
    PoseRecord,
    _one_line,
    _split_sdf_blocks,
    clean_receptor_pdb,
    read_pose_records,
)
from baseline_vina import (  # noqa: E402,F401
    ligand_pdbqt,
    pose_box,
    prepare_receptor_pdbqt,
    run_vina_scoring,
)

ALL_METHODS: tuple[str, ...] = ("vina", "vinardo", "gnina")
"""Scoring methods understood by :func:`score_poses`."""

OUTPUT_COLUMNS: tuple[str, ...] = (
    "record",
    "name",
    "heavy_atoms",
    "vina",
    "vinardo",
    "gnina_cnnscore",
    "gnina_cnnaffinity",
    "gnina_model",
    "error",
)
"""Columns of the DataFrame returned by :func:`score_poses`, in order."""

_LAST_TIMINGS: dict[str, Any] = {}


def _rate(n: int, seconds: float) -> float:
    """Returns ``n / seconds`` (NaN when undefined).

    Args:
        n: Number of poses.
        seconds: Elapsed time.

    Returns:
        Poses per second.
    """
    return n / seconds if n > 0 and seconds > 0 else float("nan")


def score_poses_with_timings(
    receptor: str,
    ligands_sdf: str,
    methods: Sequence[str] = ALL_METHODS,
    gnina_venv: str | None = None,
    *,
    padding: float = 8.0,
    gnina_cnn: str = DEFAULT_GNINA_CNN,
    gnina_threads: int = 0,
    vina_cpu: int = 0,
    log: Any = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Scores every SDF pose in place and returns the scores and the timings.

    Args:
        receptor: Receptor PDB file.
        ligands_sdf: SDF file of posed ligands.
        methods: Any of ``"vina"``, ``"vinardo"``, ``"gnina"``.
        gnina_venv: Directory of gnina's venv (default :data:`DEFAULT_GNINA_VENV`).
        padding: Vina box margin around all poses (Å).
        gnina_cnn: gninatorch model (``default``: gnina's 5-model ensemble).
        gnina_threads: Torch threads for gnina (0: torch's default).
        vina_cpu: Threads for Vina's grid maps (0: all).
        log: Stream for progress messages (None: silent).

    Returns:
        The DataFrame described in :func:`score_poses` and a timing dict with one entry per
        method (``n_scored``, ``score_s``, ``end_to_end_s``, ``score_rate_poses_per_s``,
        ``end_to_end_rate_poses_per_s`` and method details, or ``error``), plus ``receptor``
        (preparation details) and ``n_records``. Vina end-to-end time counts what the method
        would cost alone: reading poses, receptor and ligand preparation, grid maps, scoring.
        gnina's counts reading poses, writing the inputs, starting the worker, loading the
        model and scoring, but not creating the venv (``venv_setup_s``).

    Raises:
        ValueError: If a method name is unknown.
    """
    methods = tuple(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {ALL_METHODS}")

    def say(msg: str) -> None:
        if log is not None:
            print(msg, file=log, flush=True)

    t_start = time.perf_counter()
    records = read_pose_records(ligands_sdf)
    read_s = time.perf_counter() - t_start
    usable = {r.index: r.mol for r in records if r.mol is not None}
    timings: dict[str, Any] = {"n_records": len(records), "read_s": read_s}
    t0 = time.perf_counter()
    clean_pdb, receptor_info = clean_receptor_pdb(Path(receptor).read_text(errors="replace"))
    clean_s = time.perf_counter() - t0
    timings["receptor"] = dict(receptor_info)
    scores: dict[str, dict[int, Any]] = {m: {} for m in methods}
    say(f"[read] {len(records)} records, {len(usable)} usable, {read_s:.2f} s")

    vina_methods = [m for m in methods if m in ("vina", "vinardo")]
    if vina_methods:
        shared_s = read_s + clean_s
        prep_error = ""
        ligands: dict[int, str] = {}
        with tempfile.TemporaryDirectory(prefix="get_md_vina_") as tmp:
            rec_path = str(Path(tmp) / "receptor.pdbqt")
            t0 = time.perf_counter()
            try:
                rec_pdbqt, info = prepare_receptor_pdbqt(clean_pdb)
                Path(rec_path).write_text(rec_pdbqt)
                timings["receptor"].update(info)
            except Exception as exc:  # noqa: BLE001
                prep_error = f"receptor preparation failed: {_one_line(exc)}"
            timings["receptor"]["meeko_s"] = time.perf_counter() - t0
            shared_s += timings["receptor"]["meeko_s"]
            say(f"[vina] receptor PDBQT: {timings['receptor']['meeko_s']:.2f} s {prep_error}")
            t0 = time.perf_counter()
            if not prep_error:
                for idx, mol in usable.items():
                    try:
                        ligands[idx] = ligand_pdbqt(mol)
                    except Exception as exc:  # noqa: BLE001
                        records[idx].errors.append(f"vina ligand prep: {_one_line(exc)}")
            ligand_prep_s = time.perf_counter() - t0
            shared_s += ligand_prep_s
            center: list[float] = []
            size: list[float] = []
            if not prep_error:
                try:
                    center, size = pose_box([usable[i] for i in ligands], padding)
                except ValueError as exc:
                    prep_error = str(exc)
            for sf in vina_methods:
                if prep_error:
                    timings[sf] = {"error": prep_error, "n_scored": 0}
                    say(f"[{sf}] unavailable: {prep_error}")
                    continue
                try:
                    got, errs, tim = run_vina_scoring(sf, rec_path, ligands, center, size, vina_cpu)
                except Exception as exc:  # noqa: BLE001
                    timings[sf] = {"error": _one_line(exc), "n_scored": 0}
                    say(f"[{sf}] failed: {_one_line(exc)}")
                    continue
                scores[sf] = got
                for idx, msg in errs.items():
                    records[idx].errors.append(f"{sf}: {msg}")
                e2e = shared_s + tim["maps_s"] + tim["score_s"]
                timings[sf] = {
                    "n_scored": len(got),
                    "score_s": tim["score_s"],
                    "maps_s": tim["maps_s"],
                    "ligand_prep_s": ligand_prep_s,
                    "end_to_end_s": e2e,
                    "score_rate_poses_per_s": _rate(len(got), tim["score_s"]),
                    "end_to_end_rate_poses_per_s": _rate(len(got), e2e),
                    "box_center": center,
                    "box_size": size,
                }
                say(f"[{sf}] {len(got)} poses, score {tim['score_s']:.3f} s, e2e {e2e:.2f} s")
        if prep_error:
            for r in records:
                if r.mol is not None:
                    r.errors.append(f"vina/vinardo: {prep_error}")

    gnina_model = ""
    if "gnina" in methods:
        try:
            t0 = time.perf_counter()
            got, errs, info = run_gnina_scoring(
                clean_pdb, usable, venv=gnina_venv, cnn=gnina_cnn, threads=gnina_threads
            )
            e2e = time.perf_counter() - t0 - info["venv_setup_s"] + read_s + clean_s
            scores["gnina"] = got
            for idx, msg in errs.items():
                records[idx].errors.append(f"gnina: {msg}")
            members = "5-model ensemble" if info["ensemble"] else "single model"
            gnina_model = f"{info['cnn']} ({members}, gninatorch 0.0.2)"
            timings["gnina"] = {
                **info,
                "model": gnina_model,
                "n_scored": len(got),
                "end_to_end_s": e2e,
                "score_rate_poses_per_s": _rate(len(got), info["score_s"]),
                "end_to_end_rate_poses_per_s": _rate(len(got), e2e),
            }
            say(f"[gnina] {gnina_model}: {len(got)} poses, score {info['score_s']:.2f} s")
        except Exception as exc:  # noqa: BLE001
            reason = _one_line(exc)
            timings["gnina"] = {"error": reason, "n_scored": 0}
            print(f"[gnina] unavailable, columns left NaN: {reason}", file=sys.stderr, flush=True)
            for r in records:
                if r.mol is not None:
                    r.errors.append(f"gnina: {reason}")

    rows = []
    nan = float("nan")
    for r in records:
        g = scores.get("gnina", {}).get(r.index)
        rows.append(
            {
                "record": r.index,
                "name": r.name,
                "heavy_atoms": r.heavy_atoms if r.heavy_atoms is not None else pd.NA,
                "vina": scores.get("vina", {}).get(r.index, nan),
                "vinardo": scores.get("vinardo", {}).get(r.index, nan),
                "gnina_cnnscore": g[0] if g else nan,
                "gnina_cnnaffinity": g[1] if g else nan,
                "gnina_model": gnina_model,
                "error": "; ".join(r.errors),
            }
        )
    df = pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))
    df["heavy_atoms"] = df["heavy_atoms"].astype("Int64")
    df.attrs["timings"] = copy.deepcopy(timings)
    _LAST_TIMINGS.clear()
    _LAST_TIMINGS.update(copy.deepcopy(timings))
    return df, timings


def score_poses(
    receptor: str,
    ligands_sdf: str,
    methods: Sequence[str] = ALL_METHODS,
    gnina_venv: str | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Scores every pose of an SDF file in place against a receptor with classical baselines.

    Args:
        receptor: Receptor PDB file (hydrogens, waters, ions and cofactors allowed; waters are
            removed).
        ligands_sdf: SDF file of 3D poses already placed in the pocket, with or without
            hydrogens.
        methods: Any of ``"vina"``, ``"vinardo"``, ``"gnina"``; columns of methods not run
            stay NaN.
        gnina_venv: Directory of the venv that runs gninatorch (default
            :data:`DEFAULT_GNINA_VENV`, created on first use).
        **kwargs: Passed to :func:`score_poses_with_timings` (``padding``, ``gnina_cnn``,
            ``gnina_threads``, ``vina_cpu``, ``log``).

    Returns:
        One row per SDF record with columns :data:`OUTPUT_COLUMNS`: ``record`` (0-based),
        ``name`` (``_Name``), ``heavy_atoms``, ``vina`` and ``vinardo`` (kcal/mol, lower is
        better), ``gnina_cnnscore`` (0-1) and ``gnina_cnnaffinity`` (pK, higher is better),
        ``gnina_model`` (the CNN used) and ``error`` (empty when everything worked). The
        timings are in ``df.attrs["timings"]`` and from :func:`last_timings`.
    """
    df, _ = score_poses_with_timings(receptor, ligands_sdf, methods, gnina_venv, **kwargs)
    return df


def last_timings() -> dict[str, Any]:
    """Returns the timing dict of the latest :func:`score_poses` call.

    Returns:
        A copy of the dict described in :func:`score_poses_with_timings` (empty before any
        call). Rates are poses per second: ``score_rate_poses_per_s`` (scoring calls alone)
        and ``end_to_end_rate_poses_per_s`` (preparation included).
    """
    return copy.deepcopy(_LAST_TIMINGS)


def _format_timings(timings: dict[str, Any]) -> str:
    """Formats the per-method rates for the command line.

    Args:
        timings: The dict from :func:`score_poses_with_timings`.

    Returns:
        One line per method.
    """
    out = []
    for method in ALL_METHODS:
        t = timings.get(method)
        if t is None:
            continue
        if "error" in t:
            out.append(f"{method}: unavailable ({t['error']})")
            continue
        extra = f", model {t['model']}" if method == "gnina" else ""
        out.append(
            f"{method}: {t['n_scored']} poses, score {t['score_s']:.3f} s "
            f"({t['score_rate_poses_per_s']:.2f} poses/s), end-to-end {t['end_to_end_s']:.2f} s "
            f"({t['end_to_end_rate_poses_per_s']:.2f} poses/s){extra}"
        )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        Exit status (0 also when some records failed; see the ``error`` column).
    """
    parser = argparse.ArgumentParser(
        description="Score protein-ligand poses in place with Vina, Vinardo and gnina's CNN."
    )
    parser.add_argument("receptor", help="receptor PDB file")
    parser.add_argument("ligands", help="SDF file of posed ligands")
    parser.add_argument("--out", required=True, help="output CSV file")
    parser.add_argument(
        "--methods", nargs="+", default=list(ALL_METHODS), choices=list(ALL_METHODS)
    )
    parser.add_argument("--gnina-venv", default=None, help=f"default {DEFAULT_GNINA_VENV}")
    parser.add_argument(
        "--gnina-cnn",
        default=DEFAULT_GNINA_CNN,
        help="gninatorch model: default (5-model ensemble), crossdock_default2018, dense, ...",
    )
    parser.add_argument("--gnina-threads", type=int, default=0, help="0: torch default")
    parser.add_argument("--padding", type=float, default=8.0, help="Vina box margin (Å)")
    parser.add_argument("--timings-json", default=None, help="also write the timings here")
    args = parser.parse_args(argv)

    df, timings = score_poses_with_timings(
        args.receptor,
        args.ligands,
        methods=args.methods,
        gnina_venv=args.gnina_venv,
        padding=args.padding,
        gnina_cnn=args.gnina_cnn,
        gnina_threads=args.gnina_threads,
        log=sys.stderr,
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    if args.timings_json:
        Path(args.timings_json).write_text(json.dumps(timings, indent=2, default=str) + "\n")
    print(_format_timings(timings))
    failed = df[df["error"] != ""]
    for _, row in failed.iterrows():
        print(f"record {row['record']} ({row['name']}): {row['error']}")
    n_ok = int((df["error"] == "").sum())
    print(f"{n_ok}/{len(df)} records scored without error; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
