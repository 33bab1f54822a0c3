"""Neighbour lists on the device, in pure torch (TorchScript-able).

``radius_graph`` is a cell list: atoms are binned into cubes of the cutoff's size
and only the 27 surrounding cubes are searched, so cost and memory grow
linearly with the number of atoms. Periodic boxes (any triclinic cell, any
cutoff) are handled with explicit images of the wrapped atoms.

Edge convention: for an edge e, the vector from the centre atom to its neighbour is
``positions[neighbor[e]] - positions[center[e]] + cell_shifts[e] @ cell[graph]``
(see :func:`edge_vectors`). Both directions of every pair are present; no self pairs.

Example:
    >>> import torch
    >>> pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [9.0, 0, 0]])
    >>> c, n, s = radius_graph(pos, torch.zeros(3, dtype=torch.long), 2.0,
    ...                        torch.zeros(1, 3, 3), torch.zeros(1, 3, dtype=torch.bool))
    >>> sorted(zip(c.tolist(), n.tolist()))
    [(0, 1), (1, 0)]
"""

from __future__ import annotations

from typing import List, Tuple

import torch


def _variadic_arange(counts: torch.Tensor) -> torch.Tensor:
    """[0..c0-1, 0..c1-1, ...] for a 1-D tensor of counts."""
    total = int(counts.sum())
    starts = torch.cumsum(counts, 0) - counts
    return torch.arange(total, device=counts.device) - torch.repeat_interleave(starts, counts)


def _image_shifts(cell: torch.Tensor, pbc: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Integer cell shifts [S, 3] needed so that every pair within ``cutoff`` is found."""
    reps = torch.zeros(3, dtype=torch.long, device=cell.device)
    periodic = pbc.any(dim=0)
    if bool(pbc.any()):
        per = pbc.any(dim=1)
        c = cell[per]
        vol = torch.abs(torch.linalg.det(c))
        for d in range(3):
            a = c[:, (d + 1) % 3]
            b = c[:, (d + 2) % 3]
            spacing = vol / torch.linalg.vector_norm(torch.linalg.cross(a, b), dim=-1)
            need = torch.ceil(cutoff / spacing).max()
            if bool(periodic[d]):
                reps[d] = int(need)
    rx = torch.arange(-int(reps[0]), int(reps[0]) + 1, device=cell.device)
    ry = torch.arange(-int(reps[1]), int(reps[1]) + 1, device=cell.device)
    rz = torch.arange(-int(reps[2]), int(reps[2]) + 1, device=cell.device)
    grid = torch.stack(torch.meshgrid(rx, ry, rz, indexing="ij"), dim=-1).reshape(-1, 3)
    # put the zero shift first so that un-shifted copies have image index 0
    norm = grid.abs().sum(dim=1)
    order = torch.argsort(norm, stable=True)
    return grid[order]


def _bin_key(b: torch.Tensor, g: torch.Tensor, nb: torch.Tensor) -> torch.Tensor:
    return ((g * nb[0] + b[:, 0]) * nb[1] + b[:, 1]) * nb[2] + b[:, 2]


def query_pairs(
    query_pos: torch.Tensor,
    query_key: torch.Tensor,
    ref_pos: torch.Tensor,
    ref_key: torch.Tensor,
    cutoff: float,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pairs (query atom, reference atom) with the same key closer than ``cutoff`` Å.

    A non-periodic cell list, as in :func:`radius_graph`, between two point sets:
    cost grows with the number of queries times the references near each, not with
    the square of the references. ``key`` separates structures (or segments); an atom
    present in both sets pairs with itself (the caller drops such pairs).

    Returns:
        ``(query_index, ref_index)``, [P] long each; ``ref_pos[r] - query_pos[q]`` is the
        pair vector (the same arithmetic as :func:`radius_graph`'s).
    """
    device = query_pos.device
    empty = torch.zeros(0, dtype=torch.long, device=device)
    if query_pos.shape[0] == 0 or ref_pos.shape[0] == 0:
        return empty, empty
    origin = torch.minimum(ref_pos.min(dim=0).values, query_pos.min(dim=0).values)
    r_bin = torch.floor((ref_pos - origin) / cutoff).long() + 1
    q_bin = torch.floor((query_pos - origin) / cutoff).long() + 1
    nb = torch.maximum(r_bin.max(dim=0).values, q_bin.max(dim=0).values) + 2
    r_code = _bin_key(r_bin, ref_key, nb)
    order = torch.argsort(r_code, stable=True)
    uniq, counts = torch.unique_consecutive(r_code.index_select(0, order), return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    r = torch.arange(-1, 2, device=device)
    offsets = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)
    nbr_key = _bin_key((q_bin.unsqueeze(1) + offsets.unsqueeze(0)).reshape(-1, 3),
                       query_key.repeat_interleave(27), nb)
    loc = torch.searchsorted(uniq, nbr_key).clamp(max=uniq.shape[0] - 1)
    found = uniq.index_select(0, loc) == nbr_key
    cnt = torch.where(found, counts.index_select(0, loc), torch.zeros_like(loc))
    qi = torch.arange(query_pos.shape[0], device=device).repeat_interleave(27)
    qi = torch.repeat_interleave(qi, cnt)
    ri = order.index_select(0, torch.repeat_interleave(starts.index_select(0, loc), cnt) + _variadic_arange(cnt))
    vec = ref_pos.index_select(0, ri) - query_pos.index_select(0, qi)
    keep = torch.nonzero((vec * vec).sum(dim=1) < cutoff * cutoff).squeeze(1)
    return qi.index_select(0, keep), ri.index_select(0, keep)


def radius_graph(
    positions: torch.Tensor,
    atom_batch: torch.Tensor,
    cutoff: float,
    cell: torch.Tensor,
    pbc: torch.Tensor,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All ordered pairs of distinct atoms of the same structure closer than ``cutoff`` (Å).

    Args:
        positions: [N, 3] Å.
        atom_batch: [N] structure index of each atom (sorted or not).
        cutoff: Å.
        cell: [G, 3, 3] cell vectors as rows, Å (ignored where ``pbc`` is false).
        pbc: [G, 3] bool.

    Returns:
        ``(center, neighbor, cell_shifts)``: [E] long, [E] long, [E, 3] float integer
        multiples of the cell vectors (zeros without periodicity).
    """
    device = positions.device
    pos = positions.detach()
    n = pos.shape[0]
    dtype = pos.dtype
    if n == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty, torch.zeros(0, 3, dtype=dtype, device=device)

    use_pbc = bool(pbc.any())
    atom_pbc = pbc[atom_batch].to(dtype)  # [N, 3]
    wrap = torch.zeros_like(pos)
    if use_pbc:
        c = cell.detach().to(dtype)
        safe = torch.where(pbc.any(dim=1).view(-1, 1, 1), c, torch.eye(3, dtype=dtype, device=device).expand_as(c))
        frac = torch.linalg.solve(safe.transpose(1, 2)[atom_batch], pos.unsqueeze(-1)).squeeze(-1)
        wrap = torch.floor(frac) * atom_pbc  # integer shifts that bring atoms into the box
        pos = pos - torch.bmm(wrap.unsqueeze(1), c[atom_batch]).squeeze(1)
        shifts = _image_shifts(c, pbc, cutoff).to(dtype)  # [S, 3]
    else:
        shifts = torch.zeros(1, 3, dtype=dtype, device=device)
    s = shifts.shape[0]

    # images: (image k, atom j); keep only shifts along periodic directions of j's structure
    img_atom = torch.arange(n, device=device).repeat(s)
    img_shift = shifts.repeat_interleave(n, dim=0)
    if use_pbc:
        allowed = ((img_shift != 0).to(dtype) * (1.0 - atom_pbc[img_atom])).sum(dim=1) == 0
        img_atom = img_atom[allowed]
        img_shift = img_shift[allowed]
        img_pos = pos[img_atom] + torch.bmm(
            img_shift.unsqueeze(1), cell.detach().to(dtype)[atom_batch[img_atom]]
        ).squeeze(1)
    else:
        img_pos = pos
    img_batch = atom_batch[img_atom]

    # cell list of the images (cubes of side ``cutoff``), queried by every atom
    center, cand = query_pairs(pos, atom_batch, img_pos, img_batch, cutoff)
    if use_pbc:
        not_self = (img_atom.index_select(0, cand) != center) | (img_shift.index_select(0, cand).abs().sum(dim=1) > 0)
    else:
        not_self = cand != center  # one image per atom: image index == atom index
    keep = torch.nonzero(not_self).squeeze(1)
    center = center.index_select(0, keep)
    cand = cand.index_select(0, keep)
    if not use_pbc:
        return center, cand, torch.zeros(cand.shape[0], 3, dtype=dtype, device=device)
    neighbor = img_atom.index_select(0, cand)
    # shifts relative to the caller's (unwrapped) positions
    cell_shifts = img_shift.index_select(0, cand) - wrap.index_select(0, neighbor) + wrap.index_select(0, center)
    return center, neighbor, cell_shifts


def edge_vectors(
    positions: torch.Tensor,
    center: torch.Tensor,
    neighbor: torch.Tensor,
    cell_shifts: torch.Tensor,
    cell: torch.Tensor,
    atom_batch: torch.Tensor,
) -> torch.Tensor:
    """[E, 3] vectors centre -> neighbour in Å, differentiable w.r.t. positions and cell."""
    vec = positions[neighbor] - positions[center]
    if cell_shifts.numel() > 0 and bool((cell_shifts != 0).any()):
        vec = vec + torch.bmm(cell_shifts.unsqueeze(1).to(positions.dtype), cell[atom_batch[center]]).squeeze(1)
    return vec


def knn_block_edges(
    positions: torch.Tensor,
    block_ids: torch.Tensor,
    batch_ids: torch.Tensor,
    segment_ids: torch.Tensor,
    k: int,
    search_radius: float,
    first_radius: float = 6.0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """k-nearest-neighbour block graph (score mode of GET).

    The distance between two blocks is the smallest distance between their atoms.
    Each block receives edges from its ``k`` nearest blocks of the same segment
    (intra edges, itself included at distance 0) and from its ``k`` nearest blocks
    of other segments (inter edges). Only blocks closer than ``search_radius`` Å are
    candidates, so the cost stays linear in atoms.

    The search runs in two stages with the same result as one search to
    ``search_radius``: all atom pairs within ``first_radius`` Å, then, for the
    (block, edge type) groups that found fewer than ``k`` blocks there, their atoms
    against the atoms of their own segment (intra) or of the other segments (inter)
    to the full radius. A group with ``k`` blocks inside the first radius already
    has its ``k`` nearest: every block it did not find is farther away. In a pocket +
    ligand complex the second stage is mostly residues against the few ligand atoms,
    which is what makes this several times faster than one search at 12 Å.

    Returns:
        ``(edges [2, Eb], edge_type [Eb])`` with row = receiving block, col = sending
        block, edge_type 0 intra-segment, 1 inter-segment. Sorted by row, then by
        sending block (the block itself last).
    """
    device = positions.device
    pos = positions.detach()
    n_blocks = batch_ids.shape[0]
    atom_batch = batch_ids[block_ids]
    atom_seg = segment_ids[block_ids]
    n_graphs = int(batch_ids.max()) + 1 if n_blocks > 0 else 0
    first = min(search_radius, first_radius)
    c, n, _ = radius_graph(
        pos, atom_batch, first,
        torch.zeros(n_graphs, 3, 3, dtype=pos.dtype, device=device),
        torch.zeros(n_graphs, 3, dtype=torch.bool, device=device),
    )
    if search_radius > first and n_blocks > 0:
        # blocks per (block, type) group found within the first radius (+1: the block itself)
        bi, bj = block_ids[c], block_ids[n]
        cross = bi != bj
        found = torch.unique((bi * n_blocks + bj)[cross])
        f_row, f_col = found // n_blocks, found % n_blocks
        f_type = (segment_ids[f_row] != segment_ids[f_col]).long()
        per_group = torch.zeros(n_blocks * 2, dtype=torch.long, device=device)
        per_group = per_group.index_add(0, f_row * 2 + f_type, torch.ones_like(f_row))
        per_group[0::2] += 1
        short = (per_group < k).view(n_blocks, 2)  # [B, (intra, inter)]
        if bool(short.any()):
            short_atom = short[block_ids]  # [N, 2]
            pair_type = (atom_seg[c] != atom_seg[n]).long()
            redo = short_atom[c].gather(1, pair_type.unsqueeze(1)).squeeze(1)
            keep = torch.nonzero(~redo).squeeze(1)
            cs, ns = [c[keep]], [n[keep]]
            n_seg = int(atom_seg.max()) + 1
            # intra: short atoms against atoms of their own structure and segment
            q = torch.nonzero(short_atom[:, 0]).squeeze(1)
            key = atom_batch * n_seg + atom_seg
            qi, ri = query_pairs(pos[q], key[q], pos, key, search_radius)
            qa = q[qi]
            diff = qa != ri
            cs.append(qa[diff])
            ns.append(ri[diff])
            # inter: short atoms of each segment against the atoms of the other segments
            q_all = torch.nonzero(short_atom[:, 1]).squeeze(1)
            segs: List[int] = torch.unique(atom_seg[q_all]).tolist()
            for s in segs:
                q = q_all[atom_seg[q_all] == s]
                refs = torch.nonzero(atom_seg != s).squeeze(1)
                qi, ri = query_pairs(pos[q], atom_batch[q], pos[refs], atom_batch[refs], search_radius)
                cs.append(q[qi])
                ns.append(refs[ri])
            c, n = torch.cat(cs), torch.cat(ns)
    bi, bj = block_ids[c], block_ids[n]
    d = torch.linalg.vector_norm(pos[n] - pos[c], dim=-1)
    cross = bi != bj
    pair_key = bi[cross] * n_blocks + bj[cross]
    keys, inverse = torch.unique(pair_key, return_inverse=True)
    dmin = torch.full((keys.shape[0],), float("inf"), dtype=d.dtype, device=device)
    dmin = dmin.scatter_reduce(0, inverse, d[cross], reduce="amin", include_self=True)
    row = torch.cat([keys // n_blocks, torch.arange(n_blocks, device=device)])
    col = torch.cat([keys % n_blocks, torch.arange(n_blocks, device=device)])
    dist = torch.cat([dmin, torch.zeros(n_blocks, dtype=d.dtype, device=device)])
    etype = (segment_ids[row] != segment_ids[col]).long()
    # rank candidates within (row, type) groups by distance; keep the k nearest
    group = row * 2 + etype
    order = torch.argsort(dist, stable=True)
    order = order[torch.argsort(group[order], stable=True)]
    g = group[order]
    counts = torch.zeros(n_blocks * 2, dtype=torch.long, device=device).index_add(0, g, torch.ones_like(g))
    first_of = torch.cumsum(counts, 0) - counts
    rank = torch.arange(g.shape[0], device=device) - first_of[g]
    keep = order[rank < k]
    keep, _ = torch.sort(keep)
    sel_row, sel_col, sel_type = row[keep], col[keep], etype[keep]
    by_row = torch.argsort(sel_row, stable=True)
    return torch.stack([sel_row[by_row], sel_col[by_row]]), sel_type[by_row]
