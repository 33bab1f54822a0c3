"""Docking and scoring the candidate poses of one ligand, for ``bench_pose_ranking.py``
(which re-exports every public name): re-embedding, Vina docking, RMSD labels, candidate
SDFs and GET scores (steps 1-4 of that benchmark); also the moved-and-relaxed decoys of
``pose_decoys.py --method perturb`` (:func:`perturb_ligand`)."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # sibling modules, as the other benchmarks import theirs
    sys.path.insert(0, _HERE)
import affinity_baselines  # noqa: E402

N_POSES = 9
"""Poses asked from Vina per docking."""


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


def pose_candidate(v: Any, mol: Any, label: str, ref_heavy: Any, docking: float) -> Candidate:
    """A docked or relaxed pose as a candidate: labelled by its RMSD to the native pose and
    scored with Vina's ``score_only`` of the ligand ``v`` currently holds (that pose).

    Args:
        v: ``Vina`` object whose current ligand is this pose.
        mol: The pose (RDKit, one conformer).
        label: Record name.
        ref_heavy: The native pose without hydrogens (RMSD reference).
        docking: Vina's docking (or relaxed) energy of the pose, kcal/mol.

    Returns:
        The candidate.
    """
    return Candidate(
        mol=mol,
        label=label,
        is_native=False,
        rmsd=heavy_rmsd(mol, ref_heavy),
        vina_docking=docking,
        vina_score_only=float(v.score()[0]),
    )


def native_candidate(v: Any, native: Any, native_pdbqt: str, ref_heavy: Any, name: str) -> Candidate:
    """The native pose as a candidate, scored with Vina's ``score_only`` (its "docking" score
    too: the native pose is not docked).

    Args:
        v: ``Vina`` object with the receptor and maps set (its ligand is replaced).
        native: Native pose (explicit hydrogens).
        native_pdbqt: Its PDBQT string.
        ref_heavy: The native pose without hydrogens (RMSD reference).
        name: Ligand name (the label is ``{name}_native``).

    Returns:
        The candidate.
    """
    v.set_ligand_from_string(native_pdbqt)
    score = float(v.score()[0])
    return Candidate(
        mol=_single_conformer(native, native.GetConformer().GetId()),
        label=f"{name}_native",
        is_native=True,
        rmsd=heavy_rmsd(native, ref_heavy),
        vina_docking=score,
        vina_score_only=score,
    )


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
        candidates.append(pose_candidate(v, mol, f"{name}_dock{i + 1}", ref_heavy, float(energies[i, 0])))
    candidates.append(native_candidate(v, native, native_pdbqt, ref_heavy, name))
    return candidates, info


def rotatable_dihedrals(mol: Any) -> list[tuple[int, int, int, int]]:
    """One dihedral (four atom indices) per rotatable bond: a single, non-ring bond between
    two atoms that each have another heavy neighbour.

    Args:
        mol: RDKit molecule (hydrogens allowed).

    Returns:
        ``(a, b, c, d)`` per rotatable bond ``b-c``, with ``a`` and ``d`` heavy neighbours.
    """
    from rdkit import Chem

    out = []
    for bond in mol.GetBonds():
        if bond.GetBondType() != Chem.BondType.SINGLE or bond.IsInRing():
            continue
        b, c = bond.GetBeginAtom(), bond.GetEndAtom()
        a = [n.GetIdx() for n in b.GetNeighbors() if n.GetAtomicNum() > 1 and n.GetIdx() != c.GetIdx()]
        d = [n.GetIdx() for n in c.GetNeighbors() if n.GetAtomicNum() > 1 and n.GetIdx() != b.GetIdx()]
        if a and d:
            out.append((a[0], b.GetIdx(), c.GetIdx(), d[0]))
    return out


def perturbed_pose(native: Any, scale: float, rng: np.random.Generator) -> Any:
    """A copy of the native pose moved away from it by an amount set by ``scale``.

    Each rotatable bond turns, with probability 1/2, by up to ``60° * scale``; then the whole
    ligand rotates about its centroid by up to ``40° * scale`` (random axis) and shifts by up
    to ``1.5 Å * scale`` (random direction). ``scale = 0`` returns the native pose.

    Args:
        native: Native pose (explicit hydrogens, one conformer).
        scale: Size of the move (0 to ~3 gives heavy-atom RMSDs of 0 to ~6 Å).
        rng: Random generator.

    Returns:
        A new molecule with one conformer; bond lengths and angles are the native ones.
    """
    from rdkit import Chem
    from rdkit.Chem import rdMolTransforms

    mol = Chem.Mol(native)
    conf = mol.GetConformer()
    if scale > 0:
        for a, b, c, d in rotatable_dihedrals(mol):
            if rng.random() < 0.5:
                angle = rdMolTransforms.GetDihedralDeg(conf, a, b, c, d)
                rdMolTransforms.SetDihedralDeg(conf, a, b, c, d, angle + rng.uniform(-60, 60) * scale)
        xyz = np.asarray(conf.GetPositions(), dtype=float)
        centre = xyz.mean(axis=0)
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        theta = np.radians(rng.uniform(0.0, 40.0 * scale))
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        rot = np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * (k @ k)  # Rodrigues
        shift = rng.normal(size=3)
        shift *= rng.uniform(0.0, 1.5 * scale) / np.linalg.norm(shift)
        xyz = (xyz - centre) @ rot.T + centre + shift
        for i, (x, y, z) in enumerate(xyz):
            conf.SetAtomPosition(i, (float(x), float(y), float(z)))
    return mol


def inside_box(mol: Any, center: Sequence[float], size: Sequence[float], margin: float = 1.0) -> Any:
    """Shifts a pose (in place) so that every atom lies ``margin`` Å inside a box, per axis
    as far as the pose's extent allows (Vina refuses a ligand outside its grid).

    Args:
        mol: Molecule with one conformer.
        center: Box centre (Å).
        size: Box edges (Å).
        margin: Distance kept from the faces (Å).

    Returns:
        ``mol``.
    """
    conf = mol.GetConformer()
    xyz = np.asarray(conf.GetPositions(), dtype=float)
    lo = np.asarray(center, dtype=float) - np.asarray(size, dtype=float) / 2 + margin
    hi = np.asarray(center, dtype=float) + np.asarray(size, dtype=float) / 2 - margin
    shift = np.maximum(lo - xyz.min(axis=0), 0.0) - np.maximum(xyz.max(axis=0) - hi, 0.0)
    if np.any(shift != 0):
        for i, (x, y, z) in enumerate(xyz + shift):
            conf.SetAtomPosition(i, (float(x), float(y), float(z)))
    return mol


#: Vina local-optimisation steps of a perturbed pose (Vina's default, ~20 for a drug-sized
#: ligand, leaves clashes of the larger moves unresolved).
OPTIMIZE_STEPS = 200

#: Move sizes of :func:`perturb_ligand`'s poses (one pose each, in this order).
PERTURB_SCALES = (0.0, 0.3, 0.6, 0.9, 1.2, 1.6, 2.0, 2.5)


def perturb_ligand(
    native: Any,
    receptor_pdbqt: str,
    args: argparse.Namespace,
    scales: Sequence[float] = PERTURB_SCALES,
) -> tuple[list[Candidate], dict[str, Any]]:
    """Decoys of one ligand made by moving its native pose and relaxing it with Vina.

    A cheaper alternative to :func:`dock_ligand` for training data: every pose is
    :func:`perturbed_pose` of the native one, then locally optimised in the receptor with
    Vina (``Vina.optimize``: rigid-body moves and torsions, so bond lengths and angles stay
    the native ones and the poses of one ligand differ in binding mode only). ``scale = 0``
    gives the native pose relaxed in Vina's function. Scores and labels as for docked poses.

    Args:
        native: Native pose (explicit hydrogens, 3D).
        receptor_pdbqt: Path of the rigid receptor PDBQT.
        args: Parsed command line (``seed``, ``cpu``, ``box_padding``).
        scales: Move sizes, one pose each.

    Returns:
        The relaxed poses followed by the native one, and a dict of timings (s) and box.
    """
    from meeko import PDBQTMolecule, RDKitMolCreate
    from rdkit import Chem
    from vina import Vina

    info: dict[str, Any] = {}
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    native_pdbqt = affinity_baselines.ligand_pdbqt(native)
    center, size = affinity_baselines.pose_box([native], args.box_padding / 2.0)
    v = Vina(sf_name="vina", cpu=args.cpu, seed=vina_seed(args.seed), verbosity=0)
    v.set_receptor(rigid_pdbqt_filename=receptor_pdbqt)
    v.set_ligand_from_string(native_pdbqt)
    v.compute_vina_maps(center=center, box_size=size)
    info["maps_s"] = time.perf_counter() - t0
    info["box_center"], info["box_size"] = center, size

    t0 = time.perf_counter()
    ref_heavy = Chem.RemoveHs(native)
    name = native.GetProp("_Name") if native.HasProp("_Name") else "ligand"
    candidates: list[Candidate] = []
    out_pdbqt = Path(receptor_pdbqt).with_suffix(f".pose_{os.getpid()}.pdbqt")
    for i, scale in enumerate(scales):
        moved = inside_box(perturbed_pose(native, float(scale), rng), center, size)
        try:
            v.set_ligand_from_string(affinity_baselines.ligand_pdbqt(moved))
            energy = float(v.optimize(max_steps=OPTIMIZE_STEPS)[0])
        except Exception:  # noqa: BLE001 - a move that leaves Vina's box: skip that pose only
            info["skipped"] = info.get("skipped", 0) + 1
            continue
        v.write_pose(str(out_pdbqt), overwrite=True)
        text = out_pdbqt.read_text()
        mols = RDKitMolCreate.from_pdbqt_mol(PDBQTMolecule(text, skip_typing=True))
        if len(mols) != 1 or mols[0] is None:
            continue
        mol = _single_conformer(mols[0], mols[0].GetConformers()[0].GetId())
        candidates.append(pose_candidate(v, mol, f"{name}_pert{i + 1}", ref_heavy, energy))
    out_pdbqt.unlink(missing_ok=True)
    info["optimize_s"] = time.perf_counter() - t0
    candidates.append(native_candidate(v, native, native_pdbqt, ref_heavy, name))
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


def read_candidates(path: Path) -> list[Candidate]:
    """Reads back the candidates of one ligand written by :func:`write_candidates`.

    Args:
        path: Candidates SDF.

    Returns:
        The candidates in file order, with their tags (``rmsd``, Vina scores, ``is_native``).

    Raises:
        RuntimeError: If a record cannot be read.
    """
    from rdkit import Chem

    out: list[Candidate] = []
    for i, mol in enumerate(Chem.SDMolSupplier(str(path), removeHs=False)):
        if mol is None:
            raise RuntimeError(f"{path}: record {i + 1} is unreadable")
        out.append(
            Candidate(
                mol=mol,
                label=mol.GetProp("_Name"),
                is_native=mol.GetProp("is_native") == "1",
                rmsd=float(mol.GetProp("rmsd")),
                vina_docking=float(mol.GetProp("vina_docking_score")),
                vina_score_only=float(mol.GetProp("vina_score_only")),
            )
        )
    return out


def score_get(
    protein: str, sdf: Path, model: str | None, threads: int
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Scores the candidates of one SDF with get_md's pose rescoring workflow.

    Args:
        protein: Receptor PDB file.
        sdf: Candidates SDF (hydrogens present).
        model: Model file or shipped name (None: the workflow's default).
        threads: Batches scored at once.

    Returns:
        Method -> one signed score per SDF record (higher is better; NaN where the pose
        failed): ``get`` is the model's ``pose_score`` where it has pose members, else its
        ``score`` (or minus the interaction energy of a potential); ``get_affinity`` is the
        ``score`` of a model with pose members. And a dict with ``model``, ``task``,
        ``column`` and ``seconds``.
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
    if task == "score" and "pose_score" in df:
        column, sign = "pose_score", 1.0
    elif task == "score" and "score" in df:
        column, sign = "score", 1.0
    elif "interaction_energy_eV" in df:
        column, sign = "interaction_energy_eV", -1.0
    else:
        raise RuntimeError(f"rescore_poses returned neither score nor interaction energy: {task}")
    df = df.sort_values("pose")

    def signed(col: str, s: float) -> list[float]:
        return [
            s * float(val) if status == "ok" and val is not None and np.isfinite(val) else math.nan
            for val, status in zip(df[col], df["status"], strict=True)
        ]

    values = {"get": signed(column, sign)}
    if column == "pose_score":
        values["get_affinity"] = signed("score", 1.0)
    info = {"model": str(df.attrs.get("model")), "task": task, "column": column, "seconds": seconds}
    return values, info
