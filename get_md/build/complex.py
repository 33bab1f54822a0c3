"""Receptor-ligand complexes: join two graphs, add cofactors to a receptor, cut a binding pocket.

Example:
    >>> from get_md.build import from_pdb, from_sdf, pocket_complex
    >>> rec = from_pdb("tests/data/posebusters/1ia1/1ia1_protein_one_lig_removed.pdb")# doctest: +SKIP
    >>> lig = from_sdf("tests/data/posebusters/1ia1/1ia1_ligand.sdf")[0]# doctest: +SKIP
    >>> cplx = pocket_complex(rec, lig, radius=8.0)          # doctest: +SKIP
    >>> cplx.segment_ids.unique().tolist()                   # doctest: +SKIP
    [0, 1]
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

from get_md.graph import GraphError, MolecularGraph
from get_md.vocab import ELEMENTS

RECEPTOR_SEGMENT = 0
LIGAND_SEGMENT = 1
#: Receptor atoms compared with the ligand per step of the distance computation.
_CHUNK_ELEMENTS = 1 << 22


def _single(graph: MolecularGraph, role: str) -> None:
    if not isinstance(graph, MolecularGraph):
        raise GraphError(f"{role}: expected a MolecularGraph, got {type(graph).__name__}")
    if graph.num_graphs != 1:
        raise GraphError(f"{role} {graph.label()}: expected one structure, got a batch of {graph.num_graphs}")


def _min_distances(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For every row of ``a`` [N, 3], the distance to and index of the closest row of ``b`` [M, 3].

    Computed in chunks of ``a`` so that memory stays bounded for large receptors.
    """
    b = b.to(a.dtype)
    step = max(1, _CHUNK_ELEMENTS // max(1, b.shape[0]))
    dists, idx = [], []
    for start in range(0, a.shape[0], step):
        d = torch.cdist(a[start:start + step], b)
        m = d.min(dim=1)
        dists.append(m.values)
        idx.append(m.indices)
    return torch.cat(dists), torch.cat(idx)


def make_complex(
    receptor: MolecularGraph,
    ligand: MolecularGraph,
    *,
    name: Optional[str] = None,
    overlap_tolerance: float = 0.01,
) -> MolecularGraph:
    """One graph with the receptor's blocks (segment 0) followed by the ligand's (segment 1).

    The receptor's cell and pbc are kept (the ligand's when the receptor has none).

    Args:
        receptor: one structure.
        ligand: one structure.
        name: graph name (default "receptor + ligand" names).
        overlap_tolerance: a ligand atom closer than this (Å) to a receptor atom is an
            error: usually the ligand is also present in the receptor file.

    Raises:
        GraphError: batches instead of single structures, a ligand with no atoms,
            a ligand atom on top of a receptor atom.

    Example:
        >>> import torch
        >>> rec = MolecularGraph.from_atoms(torch.tensor([[0.0, 0, 0], [1.5, 0, 0]]), torch.tensor([6, 8]))
        >>> lig = MolecularGraph.from_atoms(torch.tensor([[4.0, 0, 0]]), torch.tensor([7]))
        >>> make_complex(rec, lig).segment_ids.tolist()
        [0, 0, 1]
    """
    _single(receptor, "receptor")
    _single(ligand, "ligand")
    who = name or f"{receptor.label()} + {ligand.label()}"
    if ligand.num_atoms == 0:
        raise GraphError(f"{who}: ligand {ligand.label()} has no atoms")
    return _join(receptor, ligand, LIGAND_SEGMENT, who, "ligand", overlap_tolerance)


def _join(receptor: MolecularGraph, other: MolecularGraph, segment: int, who: str, role: str,
          overlap_tolerance: float, labels_of_other: Optional[list] = None) -> MolecularGraph:
    """``receptor``'s blocks followed by ``other``'s, all of ``other`` in ``segment``; an atom of
    ``other`` within ``overlap_tolerance`` Å of a receptor atom is an error naming both."""
    dev = receptor.device
    other_pos = other.positions.to(device=dev, dtype=receptor.positions.dtype)
    if overlap_tolerance > 0 and receptor.num_atoms > 0:
        d, j = _min_distances(other_pos, receptor.positions)
        close = d < overlap_tolerance
        if bool(close.any()):
            i = int(torch.nonzero(close)[0])
            rec_atom = int(j[i])
            rb = int(receptor.block_ids[rec_atom])
            rec_label = receptor.block_labels[rb] if receptor.block_labels else f"block {rb + 1}"
            raise GraphError(
                f"{who}: {role} atom {i + 1} of {other.label()} lies {float(d[i]):.3f} Å from receptor atom "
                f"{rec_atom + 1} ({rec_label}) of {receptor.label()}; is the {role} also in the receptor file?"
            )
    rec_cell_set = bool(receptor.pbc.any()) or bool(receptor.cell.abs().sum() > 0)
    cell, pbc = (receptor.cell, receptor.pbc) if rec_cell_set else (
        other.cell.to(device=dev, dtype=receptor.cell.dtype), other.pbc.to(dev)
    )
    other_labels = labels_of_other if labels_of_other is not None else other.block_labels
    labels = None
    if receptor.block_labels is not None or other_labels is not None:
        labels = list(receptor.block_labels or [f"R{i + 1}" for i in range(receptor.num_blocks)])
        labels += list(other_labels or [f"L{i + 1}" for i in range(other.num_blocks)])
    out = MolecularGraph(
        positions=torch.cat([receptor.positions, other_pos]),
        atomic_numbers=torch.cat([receptor.atomic_numbers, other.atomic_numbers.to(dev)]),
        block_ids=torch.cat([receptor.block_ids, other.block_ids.to(dev) + receptor.num_blocks]),
        atom_positions=torch.cat([receptor.atom_positions, other.atom_positions.to(dev)]),
        block_types=torch.cat([receptor.block_types, other.block_types.to(dev)]),
        segment_ids=torch.cat([
            torch.full((receptor.num_blocks,), RECEPTOR_SEGMENT, dtype=torch.long, device=dev),
            torch.full((other.num_blocks,), segment, dtype=torch.long, device=dev),
        ]),
        batch_ids=torch.zeros(receptor.num_blocks + other.num_blocks, dtype=torch.long, device=dev),
        cell=cell,
        pbc=pbc,
        names=[who],
        block_labels=labels,
    )
    return out.validate()


def add_cofactors(receptor: MolecularGraph, cofactors: list, *, overlap_tolerance: float = 0.01) -> MolecularGraph:
    """The receptor with cofactors (ions, nucleotides, heme, ... given as separate molecules,
    e.g. the ``cofactor.sdf`` of a prepared benchmark) joined to it: their atoms become
    receptor blocks (segment 0), one per atom, as a hetero group read from a PDB file is,
    labelled ``COF:<k>:<record name>:<atom>``.

    Args:
        receptor: one structure.
        cofactors: graphs, e.g. ``read_poses("cofactor.sdf", segment_id=0)``.
        overlap_tolerance: a cofactor atom closer than this (Å) to a receptor atom (or to
            an earlier cofactor's) is an error: usually the cofactor is in the receptor file too.

    Raises:
        GraphError: a batch instead of one structure, a cofactor with no atoms, a cofactor
            atom on top of a receptor atom (naming both).

    Example:
        >>> import torch
        >>> rec = MolecularGraph.from_atoms(torch.tensor([[0.0, 0, 0], [1.5, 0, 0]]), torch.tensor([6, 8]))
        >>> mg = MolecularGraph.from_atoms(torch.tensor([[5.0, 0, 0]]), torch.tensor([12]), name="MG")
        >>> g = add_cofactors(rec, [mg])
        >>> g.segment_ids.tolist(), g.block_labels[-1]
        ([0, 0, 0], 'COF:1:MG:Mg1')
    """
    _single(receptor, "receptor")
    out = receptor
    for k, cof in enumerate(cofactors, start=1):
        _single(cof, "cofactor")
        if cof.num_atoms == 0:
            raise GraphError(f"cofactor {cof.label()}: no atoms")
        record = cof.label().split(" (")[-1].rstrip(")") if " (" in cof.label() else cof.label()
        record = record.replace(":", "_").strip() or "COF"
        if cof.block_labels is not None:
            atom_names = [lab.split(":")[-1] for lab in cof.block_labels]
        else:  # one block per atom: element and number, as RDKit names atoms without PDB names
            first = torch.zeros(cof.num_blocks, dtype=torch.long).scatter_reduce(
                0, cof.block_ids.cpu(), torch.arange(cof.num_atoms), "amin", include_self=False)
            atom_names = [f"{ELEMENTS[int(cof.atomic_numbers[a])]}{b + 1}" for b, a in enumerate(first.tolist())]
        labels = [f"COF:{k}:{record}:{a}" for a in atom_names]
        out = _join(out, cof, RECEPTOR_SEGMENT, receptor.label(), "cofactor", overlap_tolerance, labels)
    return out


def select_pocket(
    receptor: MolecularGraph,
    ligand_positions: Union[MolecularGraph, torch.Tensor, np.ndarray],
    radius: float = 10.0,
) -> MolecularGraph:
    """Receptor blocks with any atom within ``radius`` Å of any ligand atom.

    Whole blocks (residues) are kept; distances are plain Euclidean (no periodic
    images: unwrap the complex first).

    Args:
        receptor: one structure.
        ligand_positions: [M, 3] Å, or the ligand graph.
        radius: cutoff in Å.

    Raises:
        GraphError: no ligand atoms, non-positive radius, or an empty pocket
            (the message names receptor and ligand and the closest distance).

    Example:
        >>> import torch
        >>> rec = MolecularGraph.from_atoms(torch.tensor([[0.0, 0, 0], [20.0, 0, 0]]), torch.tensor([6, 6]))
        >>> select_pocket(rec, torch.tensor([[3.0, 0, 0]]), radius=5.0).num_atoms
        1
    """
    _single(receptor, "receptor")
    lig_name = "ligand"
    if isinstance(ligand_positions, MolecularGraph):
        lig_name = ligand_positions.label()
        lig = ligand_positions.positions
    elif isinstance(ligand_positions, torch.Tensor):
        lig = ligand_positions
    else:
        lig = torch.as_tensor(np.asarray(ligand_positions, dtype=np.float64))
    lig = lig.to(device=receptor.device, dtype=receptor.positions.dtype).reshape(-1, 3)
    who = f"pocket of {receptor.label()} around {lig_name}"
    if lig.shape[0] == 0:
        raise GraphError(f"{who}: ligand has no atoms")
    if not bool(torch.isfinite(lig).all()):
        raise GraphError(f"{who}: ligand has non-finite coordinates")
    if not radius > 0:
        raise GraphError(f"{who}: radius must be positive, got {radius}")
    d, _ = _min_distances(receptor.positions, lig)
    within = (d <= radius).to(receptor.positions.dtype)
    keep = torch.zeros(receptor.num_blocks, dtype=within.dtype, device=receptor.device)
    keep = keep.scatter_reduce(0, receptor.block_ids, within, reduce="amax") > 0
    if not bool(keep.any()):
        raise GraphError(
            f"{who}: pocket is empty, no receptor atom within {radius} Å of the ligand "
            f"(closest {float(d.min()):.2f} Å); are receptor and ligand in the same frame?"
        )
    return receptor.select_blocks(keep)


def pocket_complex(
    receptor: MolecularGraph, ligand: MolecularGraph, radius: float = 10.0, **kwargs
) -> MolecularGraph:
    """Pocket of ``receptor`` around ``ligand`` (see :func:`select_pocket`) joined with the ligand.

    Args:
        receptor: one structure.
        ligand: one structure.
        radius: pocket cutoff in Å.
        **kwargs: passed to :func:`make_complex`.

    Example:
        >>> cplx = pocket_complex(rec, lig, radius=8.0)  # doctest: +SKIP
    """
    _single(ligand, "ligand")
    return make_complex(select_pocket(receptor, ligand, radius), ligand, **kwargs)
