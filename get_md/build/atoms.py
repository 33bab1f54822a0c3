"""In-memory systems: ASE ``Atoms`` and OpenMM ``Topology`` + positions.

ASE works in Å already; OpenMM in nm, converted here to Å (x 10), box vectors too.

Example:
    >>> from ase.build import molecule
    >>> from get_md.build import from_ase
    >>> from_ase(molecule("H2O")).num_blocks
    3
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from get_md.build._common import (
    AtomTable,
    SegmentSpec,
    assemble,
    residue_kind,
    table_from_residues,
)
from get_md.graph import GraphError, MolecularGraph
from get_md.units import NM_TO_ANGSTROM


def _ase_table(atoms, blocks, block_names, who: str) -> AtomTable:
    n = len(atoms)
    z = np.asarray(atoms.numbers, dtype=np.int64)
    symbols = atoms.get_chemical_symbols()
    names = atoms.arrays.get("atomtypes")
    if names is None or len(names) != n:
        names = np.array([f"{s}{i + 1}" for i, s in enumerate(symbols)])
    names = np.asarray(names).astype(str)
    if blocks is None:
        return AtomTable(
            z=z, atom_names=names, res_index=np.arange(n), res_names=np.full(n, "MOL"),
            chain_ids=np.full(n, ""), res_ids=np.full(n, "1"), serials=np.arange(1, n + 1),
            kinds=np.full(n, "ligand"),
        )
    blk = torch.as_tensor(blocks).cpu().numpy().astype(np.int64).reshape(-1)
    if blk.shape[0] != n:
        raise GraphError(f"{who}: {blk.shape[0]} block ids given for {n} atoms")
    starts = np.flatnonzero(np.r_[True, blk[1:] != blk[:-1]])
    if np.unique(blk).size != starts.size:
        first = blk[starts]
        _, counts = np.unique(first, return_counts=True)
        bad = np.unique(first)[counts > 1][0]
        raise GraphError(f"{who}: atoms of block {bad} are not contiguous; order atoms block by block")
    run = np.cumsum(np.r_[True, blk[1:] != blk[:-1]]) - 1
    if block_names is None:
        res_names_blk = ["UNK_HET"] * starts.size
    else:
        res_names_blk = [str(x) for x in block_names]
        if len(res_names_blk) != starts.size:
            raise GraphError(f"{who}: {len(res_names_blk)} block names given for {starts.size} blocks")
    ends = np.r_[starts[1:], n]
    kinds_blk = []
    for name, s, e in zip(res_names_blk, starts.tolist(), ends.tolist(), strict=True):
        kind = residue_kind(name, z[s:e].tolist()) if block_names is not None else "group"
        kinds_blk.append("group" if kind == "ligand" and e - s > 1 else kind)
    return AtomTable(
        z=z,
        atom_names=names,
        res_index=run,
        res_names=np.asarray(res_names_blk, dtype=str)[run],
        chain_ids=np.full(n, ""),
        res_ids=blk.astype(str),
        serials=np.arange(1, n + 1),
        kinds=np.asarray(kinds_blk, dtype=str)[run],
    )


def from_ase(
    atoms,
    blocks: Optional[Sequence[int]] = None,
    *,
    block_names: Optional[Sequence[str]] = None,
    segment_ids: SegmentSpec = None,
    name: Optional[str] = None,
    check_duplicates: bool = True,
    dtype: Optional[torch.dtype] = None,
) -> MolecularGraph:
    """Graph of an ASE ``Atoms`` object (Å); the cell is kept when any direction is periodic.

    Args:
        atoms: ase.Atoms.
        blocks: optional per-atom block ids (atoms of a block contiguous); default one
            block per atom.
        block_names: optional residue name of each block (e.g. "ALA", "HOH"), giving its
            block type; unnamed blocks are typed UNK_HET. Atom names for polymer atom
            positions come from ``atoms.arrays["atomtypes"]`` (set by ASE's PDB reader).
        segment_ids: one segment for all atoms, or one per atom.
        name: name used in messages (default the chemical formula).
        check_duplicates: reject atoms with identical coordinates.
        dtype: floating dtype (default torch's default).

    Raises:
        GraphError: no atoms, dummy atoms (Z = 0), NaN or duplicate positions,
            periodic direction without a cell vector, bad blocks.

    Example:
        >>> from ase.build import bulk
        >>> g = from_ase(bulk("Cu", cubic=True))
        >>> g.pbc.tolist(), g.num_atoms
        ([[True, True, True]], 4)
    """
    who = name or f"ase.Atoms {atoms.get_chemical_formula()}"
    if len(atoms) == 0:
        raise GraphError(f"{who}: no atoms")
    z = np.asarray(atoms.numbers)
    if (z <= 0).any():
        i = int(np.flatnonzero(z <= 0)[0])
        raise GraphError(f"{who}: atom {i + 1} has atomic number {int(z[i])} (dummy atom)")
    table = _ase_table(atoms, blocks, block_names, who)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.asarray(atoms.cell.array) if pbc.any() else None
    return assemble(
        table, np.asarray(atoms.positions), who, segment=segment_ids, cell=cell,
        pbc=pbc if pbc.any() else None, check_duplicates=check_duplicates, dtype=dtype,
        check_names=False,
    )


def _nm_array(value, who: str, what: str) -> np.ndarray:
    """Plain float64 array in nm from an OpenMM Quantity, list of Vec3 or array (nm)."""
    try:
        from openmm import unit

        if unit.is_quantity(value):
            value = value.value_in_unit(unit.nanometer)
    except ImportError:  # pragma: no cover - openmm is optional
        pass
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        try:
            arr = np.asarray([[float(c) for c in v] for v in value], dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise GraphError(f"{who}: cannot read {what} as [N, 3] numbers in nm ({e})") from e
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise GraphError(f"{who}: {what} have shape {arr.shape}, expected [N, 3] in nm")
    return arr


def from_openmm(
    topology,
    positions,
    *,
    box_vectors=None,
    atom_indices: Optional[Sequence[int]] = None,
    segment_ids: SegmentSpec = None,
    name: str = "openmm topology",
    check_duplicates: bool = True,
    dtype: Optional[torch.dtype] = None,
) -> MolecularGraph:
    """Graph of an OpenMM Topology with positions (nm, Quantity or array) -> Å.

    Residues become blocks as for PDB files; the topology's periodic box (or
    ``box_vectors``) becomes the cell, with ``pbc`` all True.

    Args:
        topology: openmm.app.Topology.
        positions: [n_atoms, 3] in nm: a Quantity (any length unit), a list of Vec3 or an array.
        box_vectors: optional box (nm or Quantity), e.g. ``state.getPeriodicBoxVectors()``;
            default the topology's.
        atom_indices: atoms to keep (sorted; default all), e.g. to drop virtual sites.
        segment_ids: one segment for all atoms or one per kept atom.
        name: name used in messages.
        check_duplicates: reject atoms with identical coordinates.
        dtype: floating dtype (default torch's default).

    Example:
        >>> from openmm.app import PDBFile                              # doctest: +SKIP
        >>> pdb = PDBFile("top.pdb")                                     # doctest: +SKIP
        >>> g = from_openmm(pdb.topology, pdb.positions)                 # doctest: +SKIP
    """
    n_atoms = topology.getNumAtoms()
    order = np.fromiter((a.index for r in topology.residues() for a in r.atoms()), dtype=np.int64)
    if order.size != n_atoms or (order != np.arange(n_atoms)).any():
        raise GraphError(f"{name}: topology atoms are not ordered residue by residue")
    idx = np.arange(n_atoms)
    if atom_indices is not None:
        idx = np.unique(np.asarray(atom_indices, dtype=np.int64).reshape(-1))
        if idx.size == 0:
            raise GraphError(f"{name}: selection is empty (atom_indices has no atoms)")
        if idx[0] < 0 or idx[-1] >= n_atoms:
            raise GraphError(f"{name}: atom_indices out of range 0..{n_atoms - 1}")
    keep = np.zeros(n_atoms, dtype=bool)
    keep[idx] = True

    def residues():
        for res in topology.residues():
            atoms = [
                (a.name, None if a.element is None else a.element.atomic_number,
                 int(a.id) if str(a.id).isdigit() else a.index + 1)
                for a in res.atoms()
                if keep[a.index]
            ]
            if atoms:
                yield res.chain.id, f"{res.id}{(res.insertionCode or '').strip()}", res.name, None, atoms

    table = table_from_residues(residues(), name)
    xyz = _nm_array(positions, name, "positions")
    if xyz.shape != (n_atoms, 3):
        raise GraphError(f"{name}: positions have shape {xyz.shape}, expected ({n_atoms}, 3)")
    box = box_vectors if box_vectors is not None else topology.getPeriodicBoxVectors()
    cell = None if box is None else _nm_array(box, name, "box vectors") * NM_TO_ANGSTROM
    return assemble(
        table, xyz[idx] * NM_TO_ANGSTROM, name, segment=segment_ids, cell=cell,
        check_duplicates=check_duplicates, dtype=dtype, check_names=False,
    )
