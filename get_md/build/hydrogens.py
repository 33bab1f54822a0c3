"""Adding missing hydrogens to receptors (OpenMM's Modeller) and ligands (RDKit).

Potentials are trained on all-atom structures; crystal structures and many docking
inputs carry heavy atoms only. These helpers complete them:

* :func:`protonate_receptor`: hydrogens of standard residues (amino acids, nucleotides)
  from OpenMM's residue templates at a given pH (``Modeller.addHydrogens``; histidine
  tautomers chosen from hydrogen bonds), relaxed with Amber14. Residues OpenMM has no
  template for (ligands, cofactors, ions) are left as they are and reported.
* :func:`ligand_with_hydrogens`: RDKit's ``AddHs(addCoords=True)`` on a molecule with bond
  orders (SDF, MOL2): hydrogens for the valences as the file states them (formal
  charges as given; no pKa model).
"""

from __future__ import annotations

import io
import logging
import random
from typing import Any

from get_md.build._common import PathLike, base_suffix, check_file, normalize_resname, open_text
from get_md.graph import GraphError

logger = logging.getLogger("get_md.build.hydrogens")

def protonate_receptor(path: PathLike, out_path: PathLike, pH: float = 7.0, *, relax: bool = True,
                       seed: int = 20240101) -> list[str]:
    """Write ``path`` (PDB, mmCIF or AutoDock PDBQT, optionally gzipped) with hydrogens
    added to ``out_path`` (PDB); return the labels (``chain:number:name``) of residues
    left without templates.

    Waters are removed first (the rescoring workflows drop them anyway). Hydrogens
    already present are kept; missing ones are added to the residues OpenMM has
    templates for, and relaxed with the Amber14 force field with the heavy atoms fixed
    (hydrogen bonds orient OH and NH3+ groups: on PoseBusters' 1ia1 the interaction
    energy of its ligand spread over 3.7 kcal/mol for 5 random starts, against 9.5
    kcal/mol, and a mean 32 kcal/mol lower, with OpenMM's force-field-free placement).
    Residues Amber14 cannot type (missing heavy atoms, ...) make the whole structure
    fall back to that placement, with a warning. Other residues (ligands, cofactors, ions) are copied unchanged, after the
    rest. The result is reproducible (fixed ``seed``, one CPU thread); ``relax=False``
    skips Amber14 and uses the force-field-free placement throughout.

    Raises:
        GraphError: OpenMM cannot read the file or build its hydrogens (message names
            the file and OpenMM's reason).

    Example:
        >>> skipped = protonate_receptor("rec_noH.pdb", "rec_H.pdb", pH=7.0)  # doctest: +SKIP
    """
    src = check_file(path)
    try:
        from openmm.app import ForceField, Modeller, PDBFile, PDBxFile
    except ImportError as e:
        raise GraphError(f"{src}: adding hydrogens needs OpenMM: pip install openmm (or "
                         "'get-md[openmm]'), or pass --add-hydrogens no") from e
    ext = base_suffix(src)
    try:
        with open_text(src) as fh:
            text = fh.read()
        if ext == ".pdbqt":  # AutoDock types -> elements; partial charges dropped
            from get_md.build.structure import pdbqt_to_pdb_text

            text = pdbqt_to_pdb_text(text, str(src))
        structure = PDBxFile(io.StringIO(text)) if ext == ".cif" else PDBFile(io.StringIO(text))
    except GraphError:
        raise
    except Exception as e:  # OpenMM raises plain Exceptions / ValueErrors on odd records
        raise GraphError(f"{src}: OpenMM cannot read it to add hydrogens ({e})") from e
    full = Modeller(structure.topology, structure.positions)
    # waters as the builders define them (they drop them from receptors)
    full.delete([r for r in full.topology.residues() if normalize_resname(r.name) == "HOH"])
    known = _templated_residues()
    other = [r for r in full.topology.residues() if r.name not in known]
    skipped = [f"{r.chain.id}:{r.id}:{r.name}" for r in other]

    def standard_part() -> Modeller:
        m = Modeller(full.topology, full.positions)
        m.delete(other)
        return m

    main = standard_part()
    placed = False
    if relax:
        try:
            _add_hydrogens(main, pH, ForceField("amber14-all.xml"), seed)
            placed = True
        except Exception as e:  # no Amber14 template for a residue, ...
            logger.warning("%s: Amber14 cannot relax the added hydrogens (%s); placing them without a "
                           "force field", src, str(e).splitlines()[0])
            main = standard_part()
    if not placed:
        try:
            _add_hydrogens(main, pH, None, seed)
        except Exception as e:
            raise GraphError(f"{src}: OpenMM could not add hydrogens ({e}); protonate the receptor "
                             "yourself (pdbfixer, reduce, PDB2PQR) or pass --add-hydrogens no") from e
    if other:
        rest = Modeller(full.topology, full.positions)
        rest.delete([r for r in full.topology.residues() if r.name in known])
        main.add(rest.topology, rest.positions)
    with open(out_path, "w") as fh:
        PDBFile.writeFile(main.topology, main.positions, fh, keepIds=True)
    return skipped


def _add_hydrogens(modeller, pH: float, forcefield, seed: int) -> None:
    """``modeller.addHydrogens``, reproducibly: Modeller starts new hydrogens at random
    positions, so Python's ``random`` gets a fixed seed (its state is restored after),
    and the relaxation runs on OpenMM's CPU platform with one thread."""
    from openmm import Platform

    platform = Platform.getPlatformByName("CPU")
    threads = platform.getPropertyDefaultValue("Threads")
    state = random.getstate()
    random.seed(seed)
    platform.setPropertyDefaultValue("Threads", "1")
    try:
        modeller.addHydrogens(forcefield, pH=pH, platform=platform)
    finally:
        random.setstate(state)
        platform.setPropertyDefaultValue("Threads", threads)


def _templated_residues() -> set[str]:
    """Residue names with hydrogen templates in OpenMM's Modeller."""
    from openmm.app import Modeller

    Modeller._loadStandardHydrogenDefinitions()
    return set(Modeller._residueHydrogens)


def ligand_with_hydrogens(mol: Any) -> Any:
    """``mol`` with its implicit hydrogens made explicit, with 3D coordinates (RDKit).

    SDF tags and the molecule name are kept. Returns ``mol`` itself when it has no
    implicit hydrogen.

    Example:
        >>> from rdkit import Chem
        >>> m = Chem.MolFromMolBlock(Chem.MolToMolBlock(Chem.MolFromSmiles("CO")))
        >>> ligand_with_hydrogens(m).GetNumAtoms()
        6
    """
    from rdkit import Chem

    if not any(a.GetTotalNumHs() > 0 for a in mol.GetAtoms()):
        return mol
    out = Chem.AddHs(mol, addCoords=mol.GetNumConformers() > 0)
    for key, value in mol.GetPropsAsDict(includePrivate=True, includeComputed=False).items():
        if not out.HasProp(key):
            out.SetProp(key, str(value))
    return out


def hydrogen_counts(graph) -> tuple[int, int]:
    """``(hydrogens, heavy atoms)`` of a MolecularGraph.

    Example:
        >>> import torch
        >>> from get_md.graph import MolecularGraph
        >>> hydrogen_counts(MolecularGraph.from_atoms(torch.eye(3), torch.tensor([8, 1, 1])))
        (2, 1)
    """
    n_h = int((graph.atomic_numbers == 1).sum())
    return n_h, graph.num_atoms - n_h
