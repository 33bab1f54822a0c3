"""GET's graphs: which atom pairs its layers see, as plain TorchScript-able functions.

* :func:`knn_unit_pairs`, score mode: the k-nearest-neighbour block graph
  (:func:`get_md.nn.neighbors.knn_block_edges`) and, per block edge, each atom's
  ``sparse_k`` nearest atoms of the other block;
* :func:`radius_unit_pairs`, potential mode: every atom pair within the cutoff, grouped
  by block edge and source atom;
* :func:`contact_weights`: the switch that lets a receptor block's score count only near
  the ligand (``contact_radius``);
* :func:`near_ligand_blocks`: the receptor blocks a score model sees
  (``receptor_radius``: its own pocket, whatever the caller cut);
* :func:`kept_blocks`: the blocks left after dropping atoms (hydrogens, far residues).

All run without gradients and return index tensors (``[src, dst, pair_group,
group_atom, group_edge, edge_row, edge_type]`` as :class:`~get_md.models.get_layers.GETEncoder`
takes them).
"""

from typing import Tuple

import torch

from get_md.models.get_layers import unit_edges_from_block_edges
from get_md.nn.neighbors import knn_block_edges, query_pairs, radius_graph


def knn_unit_pairs(
    positions: torch.Tensor,
    block_ids: torch.Tensor,
    batch_ids: torch.Tensor,
    segment_ids: torch.Tensor,
    k_neighbors: int,
    knn_radius: float,
    sparse_k: int,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Score-mode unit pairs: k-NN block edges (``knn_radius`` Å search), then per edge
    the ``sparse_k`` nearest atom pairs of each source atom."""
    with torch.no_grad():
        edges, etype = knn_block_edges(positions, block_ids, batch_ids, segment_ids, k_neighbors, knn_radius)
        ps, pd, pg, ga, ge, er = unit_edges_from_block_edges(block_ids, edges, positions.unsqueeze(1), sparse_k)
    return ps, pd, pg, ga, ge, er, etype


def radius_unit_pairs(
    positions: torch.Tensor,
    block_ids: torch.Tensor,
    segment_ids: torch.Tensor,
    atom_batch: torch.Tensor,
    cell: torch.Tensor,
    pbc: torch.Tensor,
    cutoff: float,
    singleton_shortcut: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """Radius-graph unit pairs grouped by block edge and source atom, plus the pairs'
    cell shifts.

    The last value says whether every block edge holds exactly one pair (one atom
    per block, no periodic image counted twice); groups and edges are then numbered
    as the pairs are (``pair_group == group_edge == arange``), which lets
    :class:`~get_md.models.get_attention.GETLayer` skip its reductions over single members
    (only with ``singleton_shortcut``).
    """
    n_atoms = positions.shape[0]
    n_blocks = segment_ids.shape[0]
    with torch.no_grad():
        center, neighbor, shifts = radius_graph(positions, atom_batch, cutoff, cell, pbc)
        bi, bj = block_ids.index_select(0, center), block_ids.index_select(0, neighbor)
        edge_keys, pair_edge = bi, bi  # (set below where needed)
        if singleton_shortcut and n_blocks == n_atoms and not bool(pbc.any()):
            # one atom per block and no periodic images: every pair is its own block edge
            singleton = True
        else:
            edge_keys, pair_edge = torch.unique(bi * n_blocks + bj, return_inverse=True)
            singleton = singleton_shortcut and edge_keys.shape[0] == center.shape[0]
        if singleton:
            pair_group = torch.arange(center.shape[0], device=center.device)
            group_edge, group_atom, edge_row, edge_col = pair_group, center, bi, bj
        else:
            edge_row = edge_keys // n_blocks
            edge_col = edge_keys % n_blocks
            group_keys, pair_group = torch.unique(pair_edge * n_atoms + center, return_inverse=True)
            group_edge = group_keys // n_atoms
            group_atom = group_keys % n_atoms
        etype = (segment_ids.index_select(0, edge_row) != segment_ids.index_select(0, edge_col)).long()
    return center, neighbor, pair_group, group_atom, group_edge, edge_row, etype, shifts, singleton


def receptor_and_ligand_atoms(
    block_ids: torch.Tensor, segment_ids: torch.Tensor, batch_ids: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each atom's structure, and the indices of the receptor (segment 0) and the ligand
    (any other segment) atoms."""
    atom_seg = segment_ids[block_ids]
    rec = torch.nonzero(atom_seg == 0).squeeze(1)
    lig = torch.nonzero(atom_seg != 0).squeeze(1)
    return batch_ids[block_ids], rec, lig


def contact_weights(
    pos: torch.Tensor, block_ids: torch.Tensor, segment_ids: torch.Tensor, batch_ids: torch.Tensor,
    contact_radius: float,
) -> torch.Tensor:
    """Weight [B] of each block's score: 1 for blocks of segments other than 0, and for
    segment-0 blocks a cosine switch of their closest atom's distance to an atom of
    another segment in the same structure: 1 within ``contact_radius`` Å, 0 beyond
    ``contact_radius + 2`` Å."""
    n_blocks = batch_ids.shape[0]
    pos = pos.detach()
    atom_batch, rec, lig = receptor_and_ligand_atoms(block_ids, segment_ids, batch_ids)
    closest = torch.full((rec.shape[0],), 1e9, dtype=pos.dtype, device=pos.device)
    if lig.shape[0] > 0 and rec.shape[0] > 0:
        # only pairs inside the switch's range matter (weight 0 beyond): a cell-list query,
        # linear in the atoms, where all receptor-ligand distances of a batch grow with its square
        li, ri = query_pairs(pos[lig], atom_batch[lig], pos[rec], atom_batch[rec], contact_radius + 2.0)
        d = torch.linalg.vector_norm(pos[rec[ri]] - pos[lig[li]], dim=-1)
        closest = closest.scatter_reduce(0, ri, d, reduce="amin", include_self=True)
    block_d = torch.full((n_blocks,), 1e9, dtype=pos.dtype, device=pos.device)
    block_d = block_d.scatter_reduce(0, block_ids[rec], closest, reduce="amin", include_self=True)
    x = ((block_d - contact_radius) / 2.0).clamp(0.0, 1.0)
    switch = 0.5 * (1.0 + torch.cos(3.141592653589793 * x))
    weight = torch.where(segment_ids == 0, switch, torch.ones_like(switch))
    return weight


def near_ligand_blocks(
    positions: torch.Tensor, block_ids: torch.Tensor, segment_ids: torch.Tensor, batch_ids: torch.Tensor,
    radius: float,
) -> torch.Tensor:
    """Blocks [B] (bool) within ``radius`` Å of the ligand: every block of a segment other
    than 0, and each segment-0 (receptor) block with an atom closer than ``radius`` to an
    atom of another segment of the same structure. In a structure with no other segment
    every block is kept. This is :func:`get_md.build.select_pocket`'s rule applied to each
    structure on its own, over the atoms given (``block_ids`` of a subset of the atoms,
    e.g. the heavy ones, is fine: blocks are counted by ``batch_ids``)."""
    n_blocks = batch_ids.shape[0]
    pos = positions.detach()
    atom_batch, rec, lig = receptor_and_ligand_atoms(block_ids, segment_ids, batch_ids)
    near = torch.zeros(n_blocks, dtype=torch.bool, device=block_ids.device)
    with torch.no_grad():
        _, ri = query_pairs(pos[lig], atom_batch[lig], pos[rec], atom_batch[rec], radius)
    near[block_ids[rec[ri]]] = True
    # indexed by structure; a structure has at least one block, so n_blocks rows suffice
    has_ligand = torch.zeros(n_blocks, dtype=torch.bool, device=block_ids.device)
    has_ligand[atom_batch[lig]] = True
    return near | (segment_ids != 0) | ~has_ligand[batch_ids]


def kept_blocks(keep: torch.Tensor, block_ids: torch.Tensor, n_blocks: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Blocks with an atom in ``keep`` [B] (bool) and each block's index among them."""
    present = torch.zeros(n_blocks, dtype=torch.bool, device=block_ids.device)
    present[block_ids[keep]] = True
    return present, torch.cumsum(present.long(), 0) - 1
