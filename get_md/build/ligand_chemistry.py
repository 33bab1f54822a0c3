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

from dataclasses import replace

import numpy as np
import torch

from get_md import vocab
from get_md.graph import GraphError, MolecularGraph


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
