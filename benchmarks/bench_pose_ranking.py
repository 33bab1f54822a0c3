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
     the candidates, no hydrogens added); column ``score`` (higher is better) for a score
     model, ``interaction_energy_eV`` (lower is better) when the workflow falls back to a
     potential (no default score model shipped, or ``--model`` names a potential);
   * ``gnina`` (optional): gnina's CNNscore (higher is better) via gninatorch in its own venv
     (``affinity_baselines.run_gnina_scoring``).

Reported per method: top-1 success, the fraction of ligands whose best-ranked candidate is
within 2 Å of the native pose, "with native" (native pose among the candidates) and "docked
only" (native left out); and the ceiling: the fraction of ligands for which docking produced
any near-native pose at all (docked-only success cannot exceed it).

    python benchmarks/bench_pose_ranking.py --schrodinger DIR [--model M] \\
        [--ligands-per-series 2] [--exhaustiveness 4] [--methods vina get gnina]

Result: ``benchmarks/results/bench_pose_ranking.json`` (per-ligand rows, summary, command,
timings); candidate SDFs under ``--poses-dir`` (default ``runs/bench_pose_ranking_poses``).
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
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
import affinity_baselines  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "bench_pose_ranking.json"
DEFAULT_POSES_DIR = REPO_ROOT / "runs" / "bench_pose_ranking_poses"
NEAR_NATIVE_A = 2.0
"""RMSD threshold (Å) below which a pose counts as near-native."""
N_POSES = 9
"""Poses asked from Vina per docking."""
METHODS = ("vina", "get", "gnina")
"""Methods selectable with ``--methods`` (``vina`` also reports ``vina_score_only``)."""


@dataclass
class Candidate:
    """One pose of a ligand to be ranked.

    Attributes:
        mol: RDKit molecule (all hydrogens, one conformer).
        label: Record name in the candidates SDF.
        is_native: True for the reference pose from the benchmark SDF.
        rmsd: Heavy-atom RMSD to the native pose (Å, symmetry-aware, no alignment).
        vina_docking: Vina's docking score (native: its ``score_only``), kcal/mol.
        vina_score_only: Vina ``score_only`` of the pose, kcal/mol.
        scores: Method name -> score signed so that higher is better (NaN: not scored).
    """

    mol: Any
    label: str
    is_native: bool
    rmsd: float
    vina_docking: float = math.nan
    vina_score_only: float = math.nan
    scores: dict[str, float] = field(default_factory=dict)


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


def _single_conformer(mol: Any, conf_id: int) -> Any:
    """Copies a molecule keeping only one of its conformers.

    Args:
        mol: RDKit molecule.
        conf_id: Conformer to keep.

    Returns:
        A new molecule with that conformer only (id 0) and no properties.
    """
    from rdkit import Chem

    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    out.AddConformer(Chem.Conformer(mol.GetConformer(conf_id)), assignId=True)
    for name in list(out.GetPropNames()):
        out.ClearProp(name)
    return out


def heavy_rmsd(probe: Any, ref_heavy: Any) -> float:
    """Symmetry-aware heavy-atom RMSD without alignment.

    Args:
        probe: Pose (any hydrogens, any atom order).
        ref_heavy: Native pose without hydrogens.

    Returns:
        RMSD in Å (NaN if the molecules do not match).
    """
    from rdkit import Chem
    from rdkit.Chem import rdMolAlign

    try:
        return float(rdMolAlign.CalcRMS(Chem.RemoveHs(probe), ref_heavy))
    except Exception:  # noqa: BLE001
        return math.nan


def embed_start(native: Any, seed: int) -> Any:
    """Makes a docking start conformation that does not carry the native coordinates.

    Args:
        native: Native pose with explicit hydrogens.
        seed: ETKDG random seed.

    Returns:
        A copy of ``native`` with one ETKDGv3 conformer (MMFF-relaxed when possible).

    Raises:
        RuntimeError: If embedding fails.
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.Mol(native)
    mol.RemoveAllConformers()
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    if AllChem.EmbedMolecule(mol, params) != 0:
        params.useRandomCoords = True
        if AllChem.EmbedMolecule(mol, params) != 0:
            raise RuntimeError("ETKDG embedding failed")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=500)
    return mol


def vina_seed(seed: int) -> int:
    """Maps the benchmark seed to Vina's: Vina draws a random seed when given 0.

    Args:
        seed: The ``--seed`` value (also ETKDG's).

    Returns:
        ``seed + 1``, never 0, so that every seed (0 included) gives a reproducible docking.
    """
    return seed + 1 if seed + 1 != 0 else 1


def split_pdbqt_models(text: str) -> list[str]:
    """Splits Vina's multi-model PDBQT output into one PDBQT string per pose.

    Args:
        text: ``Vina.poses()`` output (``MODEL``/``ENDMDL`` blocks).

    Returns:
        The blocks without their ``MODEL``/``ENDMDL`` lines, in order.
    """
    blocks: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("MODEL"):
            current = []
        elif line.startswith("ENDMDL"):
            blocks.append("\n".join(current) + "\n")
        else:
            current.append(line)
    return blocks


def dock_ligand(
    native: Any,
    receptor_pdbqt: str,
    args: argparse.Namespace,
) -> tuple[list[Candidate], dict[str, Any]]:
    """Docks one ligand from an ETKDG start and builds its labelled candidates.

    Args:
        native: Native pose (explicit hydrogens, 3D).
        receptor_pdbqt: Path of the rigid receptor PDBQT.
        args: Parsed command line (``seed``, ``cpu``, ``exhaustiveness``, ``box_padding``,
            ``energy_range``).

    Returns:
        The docked candidates followed by the native one, and a dict of timings (s) and box.
    """
    from meeko import PDBQTMolecule, RDKitMolCreate
    from rdkit import Chem
    from vina import Vina

    info: dict[str, Any] = {}
    t0 = time.perf_counter()
    start = embed_start(native, args.seed)
    start_pdbqt = affinity_baselines.ligand_pdbqt(start)
    native_pdbqt = affinity_baselines.ligand_pdbqt(native)
    center, size = affinity_baselines.pose_box([native], args.box_padding / 2.0)
    info["prep_s"] = time.perf_counter() - t0
    info["box_center"], info["box_size"] = center, size

    t0 = time.perf_counter()
    v = Vina(sf_name="vina", cpu=args.cpu, seed=vina_seed(args.seed), verbosity=0)
    v.set_receptor(rigid_pdbqt_filename=receptor_pdbqt)
    v.set_ligand_from_string(start_pdbqt)
    v.compute_vina_maps(center=center, box_size=size)
    info["maps_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    v.dock(exhaustiveness=args.exhaustiveness, n_poses=N_POSES)
    info["dock_s"] = time.perf_counter() - t0
    poses_text = v.poses(n_poses=N_POSES, energy_range=args.energy_range)
    energies = np.asarray(v.energies(n_poses=N_POSES, energy_range=args.energy_range), dtype=float)

    mols = RDKitMolCreate.from_pdbqt_mol(PDBQTMolecule(poses_text, skip_typing=True))
    if len(mols) != 1 or mols[0] is None:
        raise RuntimeError(f"meeko returned {len(mols)} molecules for the docked poses")
    docked = mols[0]
    blocks = split_pdbqt_models(poses_text)
    if not (docked.GetNumConformers() == len(blocks) == len(energies)):
        raise RuntimeError(
            f"pose count mismatch: {docked.GetNumConformers()} conformers, "
            f"{len(blocks)} PDBQT models, {len(energies)} energies"
        )
    ref_heavy = Chem.RemoveHs(native)
    name = native.GetProp("_Name") if native.HasProp("_Name") else "ligand"
    candidates: list[Candidate] = []
    for i, conf in enumerate(docked.GetConformers()):
        mol = _single_conformer(docked, conf.GetId())
        v.set_ligand_from_string(blocks[i])
        candidates.append(
            Candidate(
                mol=mol,
                label=f"{name}_dock{i + 1}",
                is_native=False,
                rmsd=heavy_rmsd(mol, ref_heavy),
                vina_docking=float(energies[i, 0]),
                vina_score_only=float(v.score()[0]),
            )
        )
    v.set_ligand_from_string(native_pdbqt)
    native_score = float(v.score()[0])
    candidates.append(
        Candidate(
            mol=_single_conformer(native, native.GetConformer().GetId()),
            label=f"{name}_native",
            is_native=True,
            rmsd=heavy_rmsd(native, ref_heavy),
            vina_docking=native_score,
            vina_score_only=native_score,
        )
    )
    return candidates, info


def write_candidates(candidates: Sequence[Candidate], path: Path) -> None:
    """Writes the candidates of one ligand to an SDF file with their labels as tags.

    Args:
        candidates: Candidates in ranking-input order.
        path: Output SDF path (parent folders are created).
    """
    from rdkit import Chem

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = Chem.SDWriter(str(path))
    try:
        for c in candidates:
            mol = Chem.Mol(c.mol)
            mol.SetProp("_Name", c.label)
            mol.SetProp("rmsd", f"{c.rmsd:.4f}")
            mol.SetProp("vina_docking_score", f"{c.vina_docking:.4f}")
            mol.SetProp("vina_score_only", f"{c.vina_score_only:.4f}")
            mol.SetProp("is_native", "1" if c.is_native else "0")
            writer.write(mol)
    finally:
        writer.close()


def score_get(
    protein: str, sdf: Path, model: str | None, threads: int
) -> tuple[list[float], dict[str, Any]]:
    """Scores the candidates of one SDF with get_md's pose rescoring workflow.

    Args:
        protein: Receptor PDB file.
        sdf: Candidates SDF (hydrogens present).
        model: Model file or shipped name (None: the workflow's default).
        threads: Batches scored at once.

    Returns:
        One signed score per SDF record (higher is better; NaN where the pose failed) and a
        dict with ``model``, ``task``, ``column`` and ``seconds``.
    """
    from get_md.workflows.poses import rescore_poses

    t0 = time.perf_counter()
    df = rescore_poses(
        protein,
        sdf,
        model=model,
        add_hydrogens="no",
        sort="none",
        progress=False,
        parallel=threads,
    )
    seconds = time.perf_counter() - t0
    task = df.attrs.get("task")
    if task == "score" and "score" in df:
        column, sign = "score", 1.0
    elif "interaction_energy_eV" in df:
        column, sign = "interaction_energy_eV", -1.0
    else:
        raise RuntimeError(f"rescore_poses returned neither score nor interaction energy: {task}")
    df = df.sort_values("pose")
    values = [
        sign * float(val) if status == "ok" and val is not None and np.isfinite(val) else math.nan
        for val, status in zip(df[column], df["status"], strict=True)
    ]
    info = {"model": str(df.attrs.get("model")), "task": task, "column": column, "seconds": seconds}
    return values, info


def top1(candidates: Sequence[Candidate], method: str, with_native: bool) -> Candidate | None:
    """The best-ranked candidate of one method.

    Args:
        candidates: The ligand's candidates.
        method: Key of :attr:`Candidate.scores`.
        with_native: Whether the native pose competes.

    Returns:
        The candidate with the highest signed score (earliest on ties), or None when the method
        scored none of them.
    """
    best: Candidate | None = None
    for c in candidates:
        if c.is_native and not with_native:
            continue
        s = c.scores.get(method, math.nan)
        if not np.isfinite(s):
            continue
        if best is None or s > best.scores[method]:
            best = c
    return best


def ligand_row(candidates: Sequence[Candidate], methods: Sequence[str]) -> dict[str, Any]:
    """Per-ligand ranking outcome of every method.

    Args:
        candidates: The ligand's candidates (docked ones and the native one).
        methods: Method keys present in the candidates' scores.

    Returns:
        ``rmsd``/score lists, the ceiling flag and, per method, the RMSD of the top-1 candidate
        with and without the native pose and the native pose's rank (1 = best).
    """
    docked = [c for c in candidates if not c.is_native]
    finite = [c.rmsd for c in docked if np.isfinite(c.rmsd)]
    row: dict[str, Any] = {
        "n_docked": len(docked),
        "docked_rmsd": [round(c.rmsd, 3) for c in docked],
        "best_docked_rmsd": min(finite) if finite else math.nan,
        "any_near_native": bool(finite and min(finite) < NEAR_NATIVE_A),
        "vina_docking_scores": [c.vina_docking for c in docked],
        "native_vina_score_only": next(c.vina_score_only for c in candidates if c.is_native),
        "methods": {},
    }
    for m in methods:
        entry: dict[str, Any] = {
            "scores": [c.scores.get(m, math.nan) for c in candidates],
        }
        for key, with_native in (("with_native", True), ("docked_only", False)):
            best = top1(candidates, m, with_native)
            entry[f"top1_rmsd_{key}"] = best.rmsd if best is not None else math.nan
            entry[f"top1_is_native_{key}"] = bool(best is not None and best.is_native)
        native = next(c for c in candidates if c.is_native)
        ns = native.scores.get(m, math.nan)
        scored = [c.scores[m] for c in candidates if np.isfinite(c.scores.get(m, math.nan))]
        entry["native_rank"] = int(1 + sum(s > ns for s in scored)) if np.isfinite(ns) else None
        row["methods"][m] = entry
    return row


def summarise(rows: Sequence[dict[str, Any]], methods: Sequence[str]) -> dict[str, Any]:
    """Top-1 success per method over the ligands that were docked.

    Args:
        rows: Per-ligand rows (those with an ``error`` are left out).
        methods: Method keys.

    Returns:
        ``n_ligands``, ``ceiling`` (fraction with any docked pose < 2 Å) and, per method,
        ``with_native`` / ``docked_only`` success, ``docked_only_given_ceiling`` (success among
        the ligands whose docking found a near-native pose), ``native_top1`` (native ranked
        first) and ``n_missing`` (ligands the method could not score; left out of its
        fractions).
    """
    ok = [r for r in rows if not r.get("error")]
    out: dict[str, Any] = {
        "n_ligands": len(ok),
        "n_failed": len(rows) - len(ok),
        "near_native_A": NEAR_NATIVE_A,
        "ceiling": _frac([r["any_near_native"] for r in ok]),
        "methods": {},
    }
    for m in methods:
        scored = [
            r
            for r in ok
            if np.isfinite(r["methods"].get(m, {}).get("top1_rmsd_with_native", math.nan))
        ]
        hit = [r for r in scored if r["any_near_native"]]
        out["methods"][m] = {
            "n": len(scored),
            "n_missing": len(ok) - len(scored),
            "with_native": _frac([_success(r, m, "with_native") for r in scored]),
            "docked_only": _frac([_success(r, m, "docked_only") for r in scored]),
            "docked_only_given_ceiling": _frac([_success(r, m, "docked_only") for r in hit]),
            "native_top1": _frac([r["methods"][m]["top1_is_native_with_native"] for r in scored]),
        }
    return out


def _success(row: dict[str, Any], method: str, key: str) -> bool:
    """Whether the method's top-1 candidate is near-native.

    Args:
        row: Per-ligand row.
        method: Method key.
        key: ``with_native`` or ``docked_only``.

    Returns:
        True when the top-1 RMSD is below :data:`NEAR_NATIVE_A`.
    """
    value = row["methods"][method][f"top1_rmsd_{key}"]
    return bool(np.isfinite(value) and value < NEAR_NATIVE_A)


def _frac(flags: Sequence[bool]) -> float:
    """Fraction of True values (NaN for an empty sequence).

    Args:
        flags: Booleans.

    Returns:
        The fraction.
    """
    return float(np.mean(flags)) if len(flags) else math.nan


def markdown(summary: dict[str, Any]) -> str:
    """Formats the summary as a markdown table.

    Args:
        summary: Output of :func:`summarise`.

    Returns:
        The table, with the docking ceiling as last row.
    """
    lines = [
        "| method | top-1 < 2 Å, with native | top-1 < 2 Å, docked only | native ranked 1st | n |",
        "|---|---|---|---|---|",
    ]
    for m, s in summary["methods"].items():
        lines.append(
            f"| {m} | {s['with_native']:.2f} | {s['docked_only']:.2f} | {s['native_top1']:.2f} "
            f"| {s['n']} |"
        )
    lines.append(
        f"| *ceiling: any docked pose < 2 Å* | | {summary['ceiling']:.2f} | "
        f"| {summary['n_ligands']} |"
    )
    return "\n".join(lines)


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
            try:
                cands, info = dock_ligand(rec.mol, str(rec_path), args)
            except Exception as exc:  # noqa: BLE001
                row["error"] = f"docking: {affinity_baselines._one_line(exc)}"
                print(f"[{series.name}] {rec.name}: {row['error']}", file=log, flush=True)
                continue
            row["timings"] = {k: info[k] for k in ("prep_s", "maps_s", "dock_s")}
            row["box_center"], row["box_size"] = info["box_center"], info["box_size"]
            for c in cands:
                c.scores["vina"] = -c.vina_docking
                c.scores["vina_score_only"] = -c.vina_score_only
            sdf = args.poses_dir / _slug(series.name) / f"{rec.index:03d}_{_slug(rec.name)}.sdf"
            write_candidates(cands, sdf)
            row["candidates_sdf"] = str(sdf)
            if "get" in methods:
                try:
                    values, ginfo = score_get(series.protein, sdf, args.model, args.cpu)
                    for c, val in zip(cands, values, strict=True):
                        c.scores["get"] = val
                    row["get"] = ginfo
                    row["timings"]["get_s"] = ginfo["seconds"]
                except Exception as exc:  # noqa: BLE001
                    row["get"] = {"error": affinity_baselines._one_line(exc)}
                    print(f"[get] {rec.name}: {row['get']['error']}", file=log, flush=True)
            all_cands[rec.index] = cands
            best = min((c.rmsd for c in cands if not c.is_native), default=math.nan)
            print(
                f"[{series.name}] {rec.name}: docked {len(cands) - 1} poses in "
                f"{info['dock_s']:.1f} s, best RMSD {best:.2f} Å",
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
