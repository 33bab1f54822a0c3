"""Ligand chemistry as atom position codes, for score models built with ``ligand_chemistry``.

A heavy-atom model sees elements and coordinates; it cannot tell an N-H donor from an
N acceptor, or a charged amine from a neutral one. For ligands read with RDKit (SDF,
MOL2: bond orders known) each heavy atom's code instead says whether it is aromatic,
how many hydrogens it carries (explicit or implicit, so a crystal ligand without
hydrogens and a protonated pose agree) and the sign of its formal charge
(:data:`get_md.vocab.LIGAND_CHEMISTRY_POSITIONS`). Hydrogens keep the plain
small-molecule code: heavy-atom models drop them anyway.

Example:
    >>> from rdkit import Chem
    >>> from get_md import vocab
    >>> codes = chemistry_positions(Chem.MolFromSmiles("c1ccncc1N"))
    >>> [vocab.LIGAND_CHEMISTRY_POSITIONS[c - vocab.NUM_ATOM_POSITIONS] for c in codes[3:7]]
    ['sm:ar:H0:0', 'sm:ar:H1:0', 'sm:ar:H0:0', 'sm:al:H2:0']
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Optional, Sequence

import numpy as np
import torch

from get_md import vocab
from get_md.graph import GraphError, MolecularGraph

logger = logging.getLogger("get_md.build")


def chemistry_positions(mol) -> np.ndarray:
    """Atom position code of each atom of an RDKit molecule ([n_atoms] int64).

    Heavy atoms get :func:`get_md.vocab.ligand_chemistry_position` of (aromatic, total
    hydrogens, formal charge); hydrogens get :data:`get_md.vocab.SMALL_MOLECULE_POSITION`.
    """
    out = np.full(mol.GetNumAtoms(), vocab.SMALL_MOLECULE_POSITION, dtype=np.int64)
    for i in range(mol.GetNumAtoms()):
        atom = mol.GetAtomWithIdx(i)
        if atom.GetAtomicNum() > 1:
            out[i] = vocab.ligand_chemistry_position(
                atom.GetIsAromatic(), atom.GetTotalNumHs(includeNeighbors=True), atom.GetFormalCharge())
    return out


#: Net charges tried, in this order, when perceiving bond orders without a given charge.
#: With every hydrogen explicit, electron parity leaves every other one; of those, more than
#: one can fit (a phenolate next to an amino-triazine as -1, or as a +1 quinoid iminium):
#: the first is taken, with a warning naming the others.
PERCEIVED_CHARGES = (0, 1, -1, 2, -2, 3, -3)


def perceive_molecule(atomic_numbers: Sequence[int], positions: np.ndarray,
                      bonds: Optional[Sequence[tuple[int, int]]] = None, charge: Optional[int] = None,
                      name: str = "ligand"):
    """An RDKit molecule with bond orders and formal charges perceived from an all-atom
    structure (an MD topology's ligand, which gives elements and at most bonds).

    Bonds are taken from ``bonds`` (atom index pairs, e.g. the topology's CONECT records)
    or, when None or empty, from the coordinates (RDKit ``DetermineConnectivity``); bond
    orders and charges from the valences (RDKit ``DetermineBondOrders``), which needs every
    hydrogen explicit. ``charge``: the ligand's net charge; None tries
    :data:`PERCEIVED_CHARGES` and takes the first that fits, with a warning (logger
    ``get_md.build``) when others fit too. On the Schrödinger FEP+ benchmark's 889 ligands
    the codes of the perceived molecule equal those of the SDF's for 97.5 % with the charge
    searched, more with it given (``docs/rescoring.md``).

    Raises:
        GraphError: no hydrogens, no bond orders fit, or they fit only as no drug-like
            molecule would (hydrogens missing; naming ``name``).

    Example:
        >>> from rdkit import Chem
        >>> from rdkit.Chem import AllChem
        >>> mol = Chem.AddHs(Chem.MolFromSmiles("C[NH3+]"))
        >>> _ = AllChem.EmbedMolecule(mol, randomSeed=1)
        >>> z = [a.GetAtomicNum() for a in mol.GetAtoms()]
        >>> Chem.MolToSmiles(Chem.RemoveHs(perceive_molecule(z, mol.GetConformer().GetPositions())))
        'C[NH3+]'
    """
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    z = [int(v) for v in atomic_numbers]
    xyz = np.asarray(positions, dtype=np.float64).reshape(len(z), 3)
    if 1 not in z:
        raise GraphError(f"{name}: no hydrogens, so its bond orders and charges cannot be perceived; a model "
                         "with ligand chemistry needs an all-atom ligand (or its poses as SDF / MOL2)")
    rw = Chem.RWMol()
    for number in z:
        atom = Chem.Atom(number)
        atom.SetNoImplicit(True)
        rw.AddAtom(atom)
    conf = Chem.Conformer(len(z))
    for i, p in enumerate(xyz):
        conf.SetAtomPosition(i, p.tolist())
    rw.AddConformer(conf, assignId=True)
    for i, j in bonds or ():
        if rw.GetBondBetweenAtoms(int(i), int(j)) is None:
            rw.AddBond(int(i), int(j), Chem.BondType.SINGLE)
    mol = rw.GetMol()
    if not bonds:
        rdDetermineBonds.DetermineConnectivity(mol)
    tried = PERCEIVED_CHARGES if charge is None else (int(charge),)
    fits, odd = [], None
    for q in tried:
        candidate = Chem.Mol(mol)
        try:
            rdDetermineBonds.DetermineBondOrders(candidate, charge=q, allowChargedFragments=True)
            Chem.SanitizeMol(candidate)
        except (ValueError, RuntimeError):  # RDKit: "could not find valid bond ordering"
            continue
        if Chem.GetFormalCharge(candidate) != q:  # RDKit can return another net charge
            continue
        problem = implausible_atom(candidate)
        if problem is not None:  # valences filled with charges and ring multiple bonds: hydrogens missing
            odd = odd or (problem, Chem.MolToSmiles(Chem.RemoveHs(candidate, sanitize=False)))
            continue
        fits.append((q, candidate))
    if not fits and odd is not None:
        raise GraphError(f"{name}: its bond orders do not look like a molecule's ({odd[0]}: {odd[1]}); are "
                         "hydrogens missing? Perception needs every hydrogen explicit")
    if not fits:
        raise GraphError(f"{name}: no bond orders fit its {len(z)} atoms and {mol.GetNumBonds()} bonds at net "
                         f"charge {', '.join(map(str, tried))} (missing hydrogens, or bonds the topology lacks?)")
    if len(fits) > 1:
        logger.warning("%s: bond orders fit net charges %s; took %+d (%s): give the ligand's net charge if "
                       "it is another", name, ", ".join(f"{q:+d}" for q, _ in fits), fits[0][0],
                       Chem.MolToSmiles(Chem.RemoveHs(fits[0][1], sanitize=False)))
    return fits[0][1]


def implausible_atom(mol) -> Optional[str]:
    """The first atom of a perceived molecule that no drug-like ligand has (a charged carbon,
    a charge beyond ±1, a positive oxygen, a ring atom with a triple or two double ring bonds),
    described; None if every atom is plausible. Such atoms are what bond-order perception
    makes of a structure with hydrogens missing."""
    from rdkit import Chem

    for atom in mol.GetAtoms():
        q, sym = atom.GetFormalCharge(), atom.GetSymbol()
        ring_bonds = [b.GetBondType() for b in atom.GetBonds() if b.IsInRing()]
        ring_multiple = Chem.BondType.TRIPLE in ring_bonds or ring_bonds.count(Chem.BondType.DOUBLE) > 1
        if (sym == "C" and q) or abs(q) > 1 or (sym == "O" and q > 0) or ring_multiple:
            what = "ring atom with a triple or two double ring bonds" if ring_multiple else f"charge {q:+d}"
            return f"atom {atom.GetIdx() + 1} ({sym}, {what})"
    return None


def with_ligand_chemistry(graph: MolecularGraph, mol) -> MolecularGraph:
    """``graph`` (a ligand built from ``mol`` by :func:`get_md.build.from_rdkit`, same
    atoms in the same order) with its atoms' chemistry codes.

    Raises:
        GraphError: no molecule (a format without bond orders), or the graph's atoms are
            not the molecule's (naming the graph).

    Example:
        >>> lig = with_ligand_chemistry(record.graph, record.mol)  # doctest: +SKIP
    """
    if mol is None:
        raise GraphError(f"{graph.label()}: no bond orders (a PDB or PDBQT pose); a model with ligand "
                         "chemistry needs the ligand as SDF or MOL2")
    n = mol.GetNumAtoms()
    z = np.array([mol.GetAtomWithIdx(i).GetAtomicNum() for i in range(n)], dtype=np.int64)
    if graph.num_atoms != n or not np.array_equal(graph.atomic_numbers.cpu().numpy(), z):
        raise GraphError(f"{graph.label()}: its {graph.num_atoms} atoms are not the molecule's {n} "
                         "(ligand chemistry needs the graph built from this molecule)")
    codes = torch.as_tensor(chemistry_positions(mol), device=graph.atom_positions.device)
    return replace(graph, atom_positions=codes)
