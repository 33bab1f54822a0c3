"""Pose records of ``rescore-poses`` as work items: counted (:func:`count_records`),
hydrogens completed (:func:`pose_items`, :func:`pose_with_hydrogens`), and RDKit
molecules for poses read without bonds (:func:`mol_from_graph`).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Optional, Sequence

from .options import PathLike

# messages keep the logger name they had in get_md.workflows.poses
logger = logging.getLogger("get_md.workflows.poses")


def count_records(path: PathLike) -> Optional[int]:
    """Number of records of a pose file by a cheap text scan (for progress bars)."""
    from get_md.build import base_suffix, open_text

    ext = base_suffix(path)
    marker = {".sdf": "$$$$", ".sd": "$$$$", ".mol": "$$$$", ".mol2": "@<TRIPOS>MOLECULE",
              ".pdbqt": "MODEL", ".pdb": "MODEL"}.get(ext)
    if marker is None:
        return None
    n = 0
    try:
        with open_text(path) as fh:
            for line in fh:
                if line.startswith(marker):
                    n += 1
    except (OSError, ValueError, EOFError):  # EOFError: truncated .gz; the reader reports it
        return None
    if ext in (".pdbqt", ".pdb"):
        return max(n, 1)
    return n or None


def mol_from_graph(graph, name: str):
    """RDKit molecule from a pose graph without bonds in the file (PDBQT / PDB poses):
    elements and coordinates, connectivity from distances."""
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    rw = Chem.RWMol()
    for z in graph.atomic_numbers.tolist():
        rw.AddAtom(Chem.Atom(int(z)))
    conf = Chem.Conformer(graph.num_atoms)
    for i, (x, y, z) in enumerate(graph.positions.tolist()):
        conf.SetAtomPosition(i, Point3D(x, y, z))
    conf.Set3D(True)
    mol = rw.GetMol()
    mol.AddConformer(conf, assignId=True)
    try:
        from rdkit.Chem import rdDetermineBonds

        bonded = Chem.Mol(mol)
        rdDetermineBonds.DetermineConnectivity(bonded)
        # single bonds only: a four-bonded N / three-bonded O is a cation
        for atom in bonded.GetAtoms():
            deg = atom.GetDegree()
            if (atom.GetAtomicNum(), deg) in ((7, 4), (8, 3)):
                atom.SetFormalCharge(1)
        Chem.SanitizeMol(bonded)
        mol = bonded
    except Exception:  # noqa: BLE001 - bonds are a courtesy; keep atoms and coordinates
        logger.debug("%s: no connectivity for the SDF output", name)
    mol.SetProp("_Name", name)
    return mol


def plain_value(value: Any) -> Any:
    """JSON-friendly value of an RDKit property."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def is_nan(v) -> bool:
    try:
        return v is None or (isinstance(v, float) and math.isnan(v))
    except TypeError:
        return False


def pose_items(records: Sequence, ligand_hydrogens: str = "no", ligand_chemistry: bool = False) -> list:
    """Work items of pose records; ``ligand_hydrogens``: "yes" adds missing hydrogens to
    every pose read with bond orders (SDF, MOL2), "missing" to those with none, "no".
    ``ligand_chemistry`` (a score model built with it): each pose's atoms get their
    chemistry codes (:mod:`get_md.build.ligand_chemistry`); for a PDB pose, which has no
    bond orders, they are perceived from its hydrogens (``perceive_molecule``); a PDBQT
    pose (no hydrogens on carbon) or a PDB pose they cannot be perceived for becomes a
    failed item that says so."""
    from get_md.build import base_suffix
    from get_md.build.ligand_chemistry import perceive_molecule, with_ligand_chemistry
    from get_md.graph import GraphError

    out = []
    for rec in records:
        name = str(rec.properties.get("_Name", "") or "")
        graph, mol = pose_with_hydrogens(rec) if adds_hydrogens(rec, ligand_hydrogens) else (rec.graph, rec.mol)
        props = dict(rec.properties)
        if graph is not rec.graph:
            props["_hydrogens_added"] = graph.num_atoms - rec.graph.num_atoms
        err = None if rec.error is None else str(rec.error)
        if ligand_chemistry and err is None and graph is not None:
            try:
                if mol is None and base_suffix(rec.source) != ".pdbqt":
                    mol = perceive_molecule(graph.atomic_numbers.tolist(), graph.positions.cpu().numpy(),
                                            name=f"{rec.source}: record {rec.index}")
                graph = with_ligand_chemistry(graph, mol)
            except GraphError as e:
                err = str(e)
        out.append((rec.index, rec.source, name, graph, err, props, mol))
    return out


def adds_hydrogens(rec, ligand_hydrogens: str) -> bool:
    """Whether a pose record gets hydrogens under ``ligand_hydrogens`` (see :func:`pose_items`)."""
    from get_md.build.hydrogens import hydrogen_counts

    if ligand_hydrogens == "no" or rec.graph is None or rec.mol is None:
        return False
    return ligand_hydrogens == "yes" or hydrogen_counts(rec.graph)[0] == 0


def warn_fragments(records: Sequence) -> bool:
    """Warn (and return True) at the first record read with bonds (SDF, MOL2) that holds
    several molecules (a salt's counter-ion, a solvent molecule): they are scored as one
    ligand."""
    from rdkit import Chem

    for rec in records:
        if rec.graph is None or rec.mol is None:
            continue
        if len(Chem.GetMolFrags(rec.mol)) > 1:  # atom indices: cheap on every pose; molecules only to name them
            from rdkit.Chem.rdMolDescriptors import CalcMolFormula

            frags = Chem.GetMolFrags(rec.mol, asMols=True, sanitizeFrags=False)
            formulas = ", ".join(CalcMolFormula(f) for f in frags[:4]) + (", ..." if len(frags) > 4 else "")
            logger.warning("%s: record %d holds %d separate molecules (%s), scored together as one ligand: strip "
                           "counter-ions and solvent from the poses (e.g. RDKit's SaltRemover) if they are not part "
                           "of the binding mode", rec.source, rec.index, len(frags), formulas)
            return True
    return False


def warn_sparse_hydrogens(records: Sequence) -> bool:
    """Warn (and return True) if a pose without bond orders (PDBQT, PDB) has fewer
    hydrogens than a third of its heavy atoms: they cannot be completed here."""
    from get_md.build.hydrogens import hydrogen_counts

    for rec in records:
        if rec.graph is None or rec.mol is not None:
            continue
        n_h, n_heavy = hydrogen_counts(rec.graph)
        if n_h < n_heavy / 3:
            logger.warning("%s: record %d has %d hydrogens for %d heavy atoms (Vina PDBQT poses carry polar "
                           "ones only) and no bond orders to add the rest from; the potential was trained "
                           "with all of them: convert the poses to SDF with hydrogens (e.g. meeko, Open Babel) "
                           "for meaningful energies", rec.source, rec.index, n_h, n_heavy)
            return True
    return False


def pose_with_hydrogens(rec):
    """(graph, mol) of a pose record with its implicit hydrogens made explicit."""
    from get_md.build import from_rdkit
    from get_md.build.hydrogens import ligand_with_hydrogens

    mol = ligand_with_hydrogens(rec.mol)
    if mol is rec.mol:
        return rec.graph, rec.mol
    graph = from_rdkit(mol, name=f"{rec.source}: record {rec.index}", segment_id=1)
    graph.names = [f"{n} (hydrogens added)" for n in rec.graph.names]
    return graph, mol
