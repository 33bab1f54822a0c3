"""The Generalist Equivariant Transformer core (Kong et al., ICML 2024, arXiv 2306.01474).

This module holds the parts of GET that act on features: the equivariant
feed-forward network and the equivariant layer norm, and ``GETEncoder`` that stacks
them with the bilevel attention layer ``GETLayer`` (in ``get_attention.py``,
re-exported here), plus the expansion of block edges into unit pairs. Its
parameterisation maps one to one onto the public reference implementation
(THUNLP-MT/GET, ``get_clean``); see ``get_md.models.convert``. Graph construction
lives in ``get_graph.py``, embeddings and heads in ``get.py``.

Notation: N atoms ("units"), each with ``n_channel`` coordinates Z [N, C, 3] and
features H [N, d_hidden]; blocks B; block edges Eb (a -> b, messages from b to a);
unit pairs Eu (i in a, j in b); groups Eg = (block edge, source atom i).

Two regimes share the same weights:

* score mode (the paper): unit pairs of each block edge, sparsified to the
  ``sparse_k`` nearest atoms of the other block; plain softmax attention; the
  equivariant layer norm rescales coordinates per structure.
* smooth mode (potential mode): unit pairs within a cutoff carry an envelope
  weight w in [0, 1] that reaches 0 at the cutoff; attention is a weighted softmax
  with a sink (``sink_softmax``) at atom and block level, so every term fades out
  continuously as atoms cross the cutoff; no per-structure normalisation.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from get_md.models.get_attention import CHUNK_ROWS, STREAM_ROWS, GETLayer
from get_md.nn.radial import RadialBasis, stable_norm
from get_md.nn.scatter import scatter_mean, scatter_std

__all__ = [
    "CHUNK_ROWS",
    "STREAM_ROWS",
    "EquivariantFFN",
    "EquivariantLayerNorm",
    "GETEncoder",
    "GETLayer",
    "nearest_in_groups",
    "unit_edges_from_block_edges",
]


def _variadic_arange(counts: torch.Tensor) -> torch.Tensor:
    starts = torch.cumsum(counts, 0) - counts
    return torch.arange(int(counts.sum()), device=counts.device) - torch.repeat_interleave(starts, counts)


def unit_edges_from_block_edges(
    block_ids: torch.Tensor,
    edges: torch.Tensor,
    Z: torch.Tensor,
    sparse_k: int,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Expand block edges into atom pairs and keep, per (block edge, source atom), the
    ``sparse_k`` atoms of the other block nearest to it (all of them if ``sparse_k`` <= 0).

    Args:
        block_ids: [N] sorted atom -> block.
        edges: [2, Eb] block edges (row = receiving block, col = sending block).
        Z: [N, C, 3] coordinates (distances summed over channels rank the pairs).
        sparse_k: atoms kept per group.

    Returns:
        ``(pair_src, pair_dst, pair_group, group_atom, group_edge, edge_row)``.
    """
    device = block_ids.device
    n_blocks = int(block_ids.max()) + 1 if block_ids.numel() > 0 else 0
    sizes = torch.zeros(n_blocks, dtype=torch.long, device=device).index_add(
        0, block_ids, torch.ones_like(block_ids)
    )
    starts = torch.cumsum(sizes, 0) - sizes
    row, col = edges[0], edges[1]
    n_src, n_dst = sizes[row], sizes[col]
    # groups: one per (edge, source atom)
    group_edge = torch.repeat_interleave(torch.arange(row.shape[0], device=device), n_src)
    group_atom = starts[row][group_edge] + _variadic_arange(n_src)
    # pairs: for each group, every atom of the destination block
    group_size = n_dst[group_edge]
    pair_group = torch.repeat_interleave(torch.arange(group_edge.shape[0], device=device), group_size)
    pair_src = group_atom[pair_group]
    pair_dst = starts[col][group_edge][pair_group] + _variadic_arange(group_size)
    if sparse_k > 0 and pair_src.numel() > 0:
        dist = torch.linalg.vector_norm(Z[pair_src] - Z[pair_dst], dim=-1).sum(dim=-1)
        keep = nearest_in_groups(dist, pair_group, group_edge.shape[0], sparse_k)
        pair_src, pair_dst, pair_group = pair_src[keep], pair_dst[keep], pair_group[keep]
    return pair_src, pair_dst, pair_group, group_atom, group_edge, row


def nearest_in_groups(dist: torch.Tensor, group: torch.Tensor, n_groups: int, k: int) -> torch.Tensor:
    """Indices (ascending) of the ``k`` smallest ``dist`` of each group (all of a group
    with fewer); ties go to the lower index, as a stable sort by distance would.

    ``k`` passes of a scatter-min over the candidates instead of sorting them all: for
    GET's ``sparse_k`` of 2-3 this is several times faster than two stable argsorts of
    every candidate pair (the score-mode graph's largest cost).

    Example:
        >>> d = torch.tensor([3.0, 1.0, 2.0, 5.0, 4.0])
        >>> nearest_in_groups(d, torch.tensor([0, 0, 0, 1, 1]), 2, 2).tolist()
        [1, 2, 3, 4]
    """
    n = dist.shape[0]
    chosen = torch.zeros(n, dtype=torch.bool, device=dist.device)
    index = torch.arange(n, device=dist.device)
    for _ in range(k):
        d = dist.masked_fill(chosen, float("inf"))
        best = torch.full((n_groups,), float("inf"), dtype=dist.dtype, device=dist.device)
        best = best.scatter_reduce(0, group, d, reduce="amin", include_self=True)
        cand = torch.nonzero((d == best.index_select(0, group)) & ~chosen).squeeze(1)
        first = torch.full((n_groups,), n, dtype=torch.long, device=dist.device)
        first = first.scatter_reduce(0, group.index_select(0, cand), cand, reduce="amin", include_self=True)
        chosen[first[first < n]] = True
    return index[chosen]


class EquivariantFFN(nn.Module):
    """Feed-forward on features and on coordinates relative to the block centre."""

    def __init__(
        self,
        d_in: int,
        d_hidden: int,
        d_out: int,
        n_channel: int,
        n_rbf: int = 16,
        act_fn: Optional[nn.Module] = None,
        residual: bool = True,
        dropout: float = 0.1,
        rbf_cutoff: float = 7.0,
    ):
        super().__init__()
        act = act_fn if act_fn is not None else nn.SiLU()
        self.residual = residual
        d_cat = d_in * 2 + n_channel * n_rbf
        self.mlp_h = nn.Sequential(
            nn.Linear(d_cat, d_hidden), act, nn.Dropout(dropout),
            nn.Linear(d_hidden, d_hidden), act, nn.Dropout(dropout),
            nn.Linear(d_hidden, d_out), nn.Dropout(dropout),
        )
        self.mlp_z = nn.Sequential(
            nn.Linear(d_cat, d_hidden), act, nn.Dropout(dropout),
            nn.Linear(d_hidden, d_hidden), act, nn.Dropout(dropout),
            nn.Linear(d_hidden, n_channel), nn.Dropout(dropout),
        )
        self.rbf = RadialBasis(n_rbf, rbf_cutoff)

    def forward(self, H: torch.Tensor, Z: torch.Tensor, block_id: torch.Tensor, n_blocks: int) -> Tuple[torch.Tensor, torch.Tensor]:
        Z_c = scatter_mean(Z, block_id, n_blocks)[block_id]
        Z_o = Z - Z_c
        D = stable_norm(Z_o, dim=-1)  # [N, C]
        radial = self.rbf(D.reshape(-1)).reshape(D.shape[0], -1)
        H_c = scatter_mean(H, block_id, n_blocks)[block_id]
        inputs = torch.cat([H, H_c, radial], dim=-1)
        H_up = self.mlp_h(inputs)
        H = H + H_up if self.residual else H_up
        if n_blocks == Z.shape[0]:
            return H, Z  # one atom per block: Z_o == 0, the coordinate update is the identity
        Z = Z_c + self.mlp_z(inputs).unsqueeze(-1) * Z_o
        return H, Z


class EquivariantLayerNorm(nn.Module):
    """LayerNorm on features; with ``rescale_coords`` also rescales each structure's
    centred coordinates to unit standard deviation times a learnt sigma (score mode)."""

    def __init__(self, d_hidden: int, n_channel: int, n_rbf: int = 16, cutoff: float = 7.0, act_fn: Optional[nn.Module] = None):
        super().__init__()
        act = act_fn if act_fn is not None else nn.SiLU()
        self.fuse_scale_ffn = nn.Sequential(
            nn.Linear(n_channel * n_rbf, d_hidden), act, nn.Linear(d_hidden, d_hidden), act
        )
        self.layernorm = nn.LayerNorm(d_hidden)
        self.sigma = nn.Parameter(torch.ones(1, n_channel, 1))
        self.rbf = RadialBasis(n_rbf, cutoff)

    def forward(
        self, H: torch.Tensor, Z: torch.Tensor, atom_batch: torch.Tensor, n_graphs: int, rescale_coords: bool
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        C = Z.shape[1]
        if not rescale_coords:
            return self.layernorm(H), Z, torch.ones(n_graphs, C, 1, dtype=Z.dtype, device=Z.device)
        Z_c = scatter_mean(Z, atom_batch, n_graphs)[atom_batch]
        Z_centered = Z - Z_c
        axis_batch = atom_batch.unsqueeze(-1).repeat(1, 3).flatten()
        std = scatter_std(Z_centered.transpose(1, 2).reshape(-1, C), axis_batch, n_graphs)  # [G, C]
        rescale = (1.0 / std).unsqueeze(-1) * self.sigma  # [G, C, 1]
        Z = Z_c + Z_centered * rescale[atom_batch]
        rescale_rbf = self.rbf(rescale.reshape(-1)).reshape(n_graphs, -1)
        H = H + self.fuse_scale_ffn(rescale_rbf)[atom_batch]
        return self.layernorm(H), Z, rescale


class GETEncoder(nn.Module):
    """Stack of GET layers: [attention -> norm -> FFN -> norm] x n_layers.

    The constructor mirrors the reference ``GET`` class so reference weights load
    through ``get_md.models.convert.convert_reference_state_dict``.

    Example:
        >>> import torch
        >>> enc = GETEncoder(d_hidden=16, d_radial=8, n_channel=1, n_rbf=8, d_edge=0,
        ...                  n_layers=1, n_head=4, dropout=0.0).eval()
        >>> block_id = torch.tensor([0, 0, 1, 1, 1]); batch_id = torch.tensor([0, 0])
        >>> edges = torch.tensor([[0, 0, 1, 1], [0, 1, 0, 1]])
        >>> H, Z = enc(torch.randn(5, 16), torch.randn(5, 1, 3), block_id, batch_id, edges)
        >>> H.shape, Z.shape
        (torch.Size([5, 16]), torch.Size([5, 1, 3]))
    """

    def __init__(
        self,
        d_hidden: int,
        d_radial: int,
        n_channel: int,
        n_rbf: int,
        cutoff: float = 7.0,
        d_edge: int = 0,
        n_layers: int = 4,
        n_head: int = 4,
        act_fn: Optional[nn.Module] = None,
        residual: bool = True,
        dropout: float = 0.1,
        z_requires_grad: bool = True,
        pre_norm: bool = False,
        sparse_k: int = 3,
    ):
        super().__init__()
        act = act_fn if act_fn is not None else nn.SiLU()
        self.n_layers = n_layers
        self.pre_norm = pre_norm
        self.sparse_k = sparse_k
        self.pre_layernorm = EquivariantLayerNorm(d_hidden, n_channel, n_rbf, cutoff, act) if pre_norm else None
        self.layers = nn.ModuleList(
            [GETLayer(d_hidden, d_radial, n_channel, n_rbf, cutoff, d_edge, n_head, act, residual) for _ in range(n_layers)]
        )
        self.norms0 = nn.ModuleList([EquivariantLayerNorm(d_hidden, n_channel, n_rbf, cutoff, act) for _ in range(n_layers)])
        self.ffns = nn.ModuleList(
            [EquivariantFFN(d_hidden, 4 * d_hidden, d_hidden, n_channel, n_rbf, act, residual, dropout) for _ in range(n_layers)]
        )
        self.norms1 = nn.ModuleList([EquivariantLayerNorm(d_hidden, n_channel, n_rbf, cutoff, act) for _ in range(n_layers)])
        if not z_requires_grad and n_layers > 0:
            for p in self.ffns[n_layers - 1].mlp_z.parameters():
                p.requires_grad_(False)
            self.norms1[n_layers - 1].sigma.requires_grad_(False)

    def forward(
        self,
        H: torch.Tensor,
        Z: torch.Tensor,
        block_id: torch.Tensor,
        batch_id: torch.Tensor,
        edges: torch.Tensor,
        edge_attr: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Score-mode forward on given block edges [2, Eb] (reference semantics)."""
        with torch.no_grad():
            pair_src, pair_dst, pair_group, group_atom, group_edge, edge_row = unit_edges_from_block_edges(
                block_id, edges, Z, self.sparse_k
            )
        return self.run(
            H, Z, block_id, batch_id, edge_attr, pair_src, pair_dst, pair_group, None, None,
            group_atom, group_edge, edge_row, True,
        )

    def run(
        self,
        H: torch.Tensor,
        Z: torch.Tensor,
        block_id: torch.Tensor,
        batch_id: torch.Tensor,
        edge_attr: Optional[torch.Tensor],
        pair_src: torch.Tensor,
        pair_dst: torch.Tensor,
        pair_group: torch.Tensor,
        pair_weight: Optional[torch.Tensor],
        pair_shift: Optional[torch.Tensor],
        group_atom: torch.Tensor,
        group_edge: torch.Tensor,
        edge_row: torch.Tensor,
        rescale_coords: bool,
        need_coords: bool = True,
        singleton: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Forward on precomputed unit pairs (both modes); ``need_coords=False`` lets the
        encoder skip coordinate work whose result no output uses; ``singleton``: see
        :meth:`GETLayer.forward`."""
        n_blocks = batch_id.shape[0]
        n_graphs = int(batch_id.max()) + 1 if n_blocks > 0 else 0
        atom_batch = batch_id[block_id]
        C = Z.shape[1]
        record_scale = torch.ones(n_graphs, C, 1, dtype=Z.dtype, device=Z.device)
        pre = self.pre_layernorm
        if pre is not None:
            H, Z, rescale = pre(H, Z, atom_batch, n_graphs, rescale_coords)
            record_scale = record_scale * rescale
        # In potential mode with one atom per block the last layer's coordinate update
        # reaches no feature (no coordinate norm, identity FFN on coordinates): skip it
        # unless the caller reads the coordinates.
        skip_last = not need_coords and not rescale_coords and n_blocks == Z.shape[0]
        i = 0
        for layer, norm0, ffn, norm1 in zip(self.layers, self.norms0, self.ffns, self.norms1):  # noqa: B905 (TorchScript has no strict=)
            H, Z = layer(
                H, Z, edge_attr, pair_src, pair_dst, pair_group, pair_weight, pair_shift,
                group_atom, group_edge, edge_row, not (skip_last and i == self.n_layers - 1), singleton,
            )
            i += 1
            H, Z, rescale = norm0(H, Z, atom_batch, n_graphs, rescale_coords)
            record_scale = record_scale * rescale
            H, Z = ffn(H, Z, block_id, n_blocks)
            H, Z, rescale = norm1(H, Z, atom_batch, n_graphs, rescale_coords)
            record_scale = record_scale * rescale
        if rescale_coords:
            Z_c = scatter_mean(Z, atom_batch, n_graphs)[atom_batch]
            Z = Z_c + (Z - Z_c) / record_scale[atom_batch]
        return H, Z

