"""GET's bilevel attention layer (Kong et al., ICML 2024, arXiv 2306.01474).

``GETLayer``: atom-level attention within the unit pairs of each block edge, block-level
attention across a block's edges, and the invariant (feature) and equivariant
(coordinate) updates they weight. The rest of the GET core (feed-forward network,
layer norm, ``GETEncoder``) lives in ``get_md.models.get_layers``, which re-exports
this module's names; notation as there: N atoms ("units") with coordinates
Z [N, C, 3] and features H [N, d_hidden]; block edges Eb (a -> b, messages from b to
a); unit pairs Eu (i in a, j in b); groups Eg = (block edge, source atom i).

Without autograd on the CPU the pair- and group-level MLPs run in chunks of
``chunk_rows`` rows, and one-pair-per-edge inference (potential mode, atom blocks)
streams over chunks of ``stream_rows`` pairs; same arithmetic as the unchunked path.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn

from get_md.errors import ConfigError
from get_md.nn.radial import RadialBasis, stable_norm
from get_md.nn.scatter import (
    scatter_mean,
    scatter_softmax,
    scatter_sum,
    sink_softmax,
    sink_softmax_single,
)

__all__ = ["CHUNK_ROWS", "PAIR_CHUNK_NUMBERS", "STREAM_ROWS", "GETLayer"]

#: Default rows per chunk of GETLayer's pair/group MLPs in inference (see ``GETLayer._rows``).
CHUNK_ROWS = 2048
#: Numbers per chunk of the per-head pair MLPs (rows of ``d_radial`` numbers) in inference:
#: narrow rows make 2048-row chunks so small that the per-call cost dominates (see ``_rows``).
PAIR_CHUNK_NUMBERS = 2 ** 19
#: Default pairs per chunk of GETLayer's streamed one-pair-per-edge inference
#: (``GETLayer._singleton_inference``; 8192 was fastest with 1 and 2 threads on the
#: prolif pose batches, 4096 / 16384 within 7 %).
STREAM_ROWS = 8192


class GETLayer(nn.Module):
    """Bilevel attention: atom-level attention within block pairs, block-level across block edges."""

    def __init__(
        self,
        d_hidden: int,
        d_radial: int,
        n_channel: int,
        n_rbf: int,
        cutoff: float = 7.0,
        d_edge: int = 0,
        n_head: int = 4,
        act_fn: Optional[nn.Module] = None,
        residual: bool = True,
    ):
        super().__init__()
        act = act_fn if act_fn is not None else nn.SiLU()
        if d_radial % n_head != 0 or n_rbf % n_head != 0 or d_hidden % n_head != 0:
            raise ConfigError(f"d_hidden, d_radial and n_rbf must be divisible by n_head ({n_head})")
        self.residual = residual
        self.n_head = n_head
        self.d_hidden = d_hidden
        self.n_rbf = n_rbf
        self.cutoff = cutoff
        self.d_edge = d_edge
        self.d_radial = d_radial
        self.n_channel = n_channel
        # explicit sizes everywhere below: a view(-1, ...) of 0 pairs (an atom with no
        # neighbour within the cutoff) cannot infer the -1
        self.d_hidden_head = d_hidden // n_head
        self.d_radial_head = d_radial // n_head
        self.n_rbf_head = n_rbf // n_head
        d_hidden_head, d_radial_head = d_hidden // n_head, d_radial // n_head
        n_rbf_head = n_rbf // n_head

        self.linear_qk = nn.Linear(d_hidden_head, d_radial_head * 2, bias=False)
        self.linear_v = nn.Linear(d_hidden_head, d_radial_head)
        self.rbf = RadialBasis(max(n_rbf, 2), cutoff)
        d_att_in = d_radial_head * (3 if d_edge > 0 else 2) + n_channel * n_rbf_head
        self.att_mlp = nn.Sequential(
            nn.Linear(d_att_in, d_radial_head), act, nn.Linear(d_radial_head, d_radial_head), act
        )
        self.unit_att_linear = nn.Linear(d_radial_head, 1)
        self.block_att_linear = nn.Linear(d_radial_head, 1)
        self.edge_linear = nn.Linear(max(d_edge, 1), d_radial) if d_edge > 0 else nn.Identity()
        self.node_mlp = nn.Sequential(nn.Linear(d_radial, d_hidden), act, nn.Linear(d_hidden, d_hidden), act)
        self.node_out_linear = nn.Linear(d_hidden, d_hidden)
        self.coord_mlp = nn.Sequential(
            nn.Linear(d_radial, d_hidden), act, nn.Linear(d_hidden, n_head * n_channel), act
        )
        d_msg_in = d_radial_head + n_channel * n_rbf_head
        self.unit_msg_mlp = nn.Sequential(
            nn.Linear(d_msg_in, d_radial_head), act, nn.Linear(d_radial_head, d_radial_head), act
        )
        self.unit_msg_coord_mlp = nn.Sequential(
            nn.Linear(d_msg_in, d_radial_head), act, nn.Linear(d_radial_head, d_radial_head), act
        )
        self.unit_msg_coord_linear = nn.Linear(d_radial_head, n_channel)
        #: rows per chunk of the pair- and group-level MLPs without autograd, on the CPU
        #: (0: no chunking)
        self.chunk_rows = CHUNK_ROWS
        #: numbers per chunk of the per-head pair MLPs (kinds 0-2 of :meth:`_mlp`): at
        #: least ``chunk_rows`` rows of ``d_radial`` numbers each
        self.pair_chunk_numbers = PAIR_CHUNK_NUMBERS
        #: pairs per chunk of :meth:`_singleton_inference` (CPU; 0: not used)
        self.stream_rows = STREAM_ROWS

    def _mlp(self, kind: int, x: torch.Tensor) -> torch.Tensor:
        """One of the layer's row-wise MLPs: 0 attention tail, 1 message tail, 2 coordinate
        message tail (each after its first linear, applied before gathering), 3 node MLP,
        4 coordinate MLP."""
        if kind == 0:
            return self.att_mlp[3](self.att_mlp[2](self.att_mlp[1](x)))
        if kind == 1:
            return self.unit_msg_mlp[3](self.unit_msg_mlp[2](self.unit_msg_mlp[1](x)))
        if kind == 2:
            return self.unit_msg_coord_mlp[3](self.unit_msg_coord_mlp[2](self.unit_msg_coord_mlp[1](x)))
        if kind == 3:
            return self.node_mlp(x)
        return self.coord_mlp(x)

    def _chunked(self, x: torch.Tensor) -> bool:
        """Whether row-wise work on ``x`` runs in chunks of ``chunk_rows``: inference on
        the CPU with more rows than one chunk (see :meth:`_rows`)."""
        return (0 < self.chunk_rows < x.shape[0] and not torch.is_grad_enabled()
                and x.device.type == "cpu")

    def _rows(self, kind: int, x: torch.Tensor) -> torch.Tensor:
        """``_mlp(kind, x)``, in chunks of ``chunk_rows`` rows when no gradient is taken.

        The pair and group tensors (10^5-10^6 rows) far exceed the CPU caches, so each
        linear / SiLU of an MLP streams them through memory; chunks keep one chunk's
        whole MLP in cache (measured 2x faster for a 147k-row 32-64-64 MLP on one
        thread). Row-wise, so the result is the same. Under autograd chunking does not
        pay (the backward pass re-reads every saved activation anyway).

        The per-head pair MLPs (kinds 0-2) have rows of only ``d_radial`` numbers (16 in
        the affinity members): their chunks hold ``pair_chunk_numbers`` numbers instead,
        as many rows as that allows but at least ``chunk_rows``; in 2048-row chunks their
        thousands of tiny GEMM and SiLU calls cost more than the cache saves (get-affinity
        on 32 prolif poses, 2 threads: 16.6-17.1 poses/s in 2048-row chunks, 19.2-19.6 in
        8192, 20.3 in 32768, 18.6-18.7 unchunked).
        """
        n = x.shape[0]
        c = self.chunk_rows
        if kind <= 2:
            c = max(c, self.pair_chunk_numbers // self.d_radial)
        if not self._chunked(x) or n <= c:
            return self._mlp(kind, x)
        return torch.cat([self._mlp(kind, x[i:i + c]) for i in range(0, n, c)])

    def _node_update(self, x: torch.Tensor, weight: torch.Tensor, index: torch.Tensor,
                     n_out: int) -> torch.Tensor:
        """``scatter_sum(node_mlp(x).view(E, h, -1) * weight, index, n_out)`` [n_out, h, d/h].

        Without autograd the MLP, the weighting and the scatter run chunk by chunk, so
        the [E, d_hidden] group tensor is never formed (see :meth:`_rows`).
        """
        n = x.shape[0]
        c = self.chunk_rows
        if not self._chunked(x):
            return scatter_sum(self._mlp(3, x).view(n, self.n_head, self.d_hidden_head) * weight, index, n_out)
        out = torch.zeros(n_out, self.n_head, self.d_hidden // self.n_head, dtype=x.dtype, device=x.device)
        for i in range(0, n, c):
            y = self._mlp(3, x[i:i + c])
            out.index_add_(0, index[i:i + c], y.view(y.shape[0], self.n_head, self.d_hidden_head) * weight[i:i + c])
        return out

    @staticmethod
    def _group_sum(x: torch.Tensor, pair_group: torch.Tensor, n_groups: int, singleton: bool) -> torch.Tensor:
        """Sum of pair rows per group; the rows themselves when every group is one pair."""
        return x if singleton else scatter_sum(x, pair_group, n_groups)

    def _distance_features(self, dZ: torch.Tensor) -> torch.Tensor:
        D = stable_norm(dZ, dim=-1)  # [Eu, C]
        e, c = D.shape[0], D.shape[1]
        if self.n_rbf > 1:
            R = self.rbf(D.reshape(e * c)).reshape(e, c, self.n_head, self.n_rbf_head)  # [Eu, C, h, rbf/h]
            return R.transpose(1, 2).reshape(e, self.n_head, c * self.n_rbf_head)
        return D.unsqueeze(1).repeat(1, self.n_head, 1)

    def _first_layer(self, gathers: List[Tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor,
                     weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        """First linear layer of a per-head pair MLP whose input concatenates gathered
        rows and per-pair features: ``sum(table[index] for table, index in gathers)
        + linear(x, weight, bias)`` [n, h, d] for per-atom (or per-edge) tables [*, h, d]
        (the other parts of the layer, already applied) and x [n, h, k].

        The gathered rows are written once and the per-pair product accumulates into them
        in one GEMM (the per-head weight laid out block-diagonally over heads), the bias
        goes into the first table: no pair-sized sum, bias or copy pass (on 42k pairs x 4
        heads, 1 thread: forward 2.4x faster than index_select, linear and add; with the
        backward 1.1x).
        """
        n, h = x.shape[0], self.n_head
        table, index = gathers[0]
        if bias is not None:
            table = table + bias
        d = table.shape[-1]
        out = table.reshape(table.shape[0], h * d).index_select(0, index)
        for k in range(1, len(gathers)):
            table, index = gathers[k]
            out.add_(table.reshape(table.shape[0], h * d).index_select(0, index))
        block = torch.kron(torch.eye(h, dtype=weight.dtype, device=weight.device), weight)
        out.addmm_(x.reshape(n, h * x.shape[2]), block.t())
        return out.view(n, h, d)

    def _chunk_geometry(self, Z: torch.Tensor, ps: torch.Tensor, pd: torch.Tensor,
                        pair_shift: Optional[torch.Tensor], i: int, j: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Relative coordinates [n, C, 3] and distance features of pairs ``i:j``."""
        dZ = Z.index_select(0, ps) - Z.index_select(0, pd)
        if pair_shift is not None:
            dZ = dZ - pair_shift[i:j].unsqueeze(1)
        return dZ, self._distance_features(dZ)

    def _atom_terms(self, H: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """First layers of the pair MLPs applied per atom, gathered per pair later:
        attention (receiving and sending atom), message, coordinate message."""
        n_atoms, h = H.shape[0], self.n_head
        Hh = H.view(n_atoms, h, self.d_hidden_head)
        H_qk = self.linear_qk(Hh)
        d_rh = H_qk.shape[-1] // 2
        w_att = self.att_mlp[0].weight
        H_v = self.linear_v(Hh)
        d_v = H_v.shape[-1]
        return (torch.nn.functional.linear(H_qk[..., 0::2], w_att[:, :d_rh]),
                torch.nn.functional.linear(H_qk[..., 1::2], w_att[:, d_rh:2 * d_rh]),
                torch.nn.functional.linear(H_v, self.unit_msg_mlp[0].weight[:, :d_v]),
                torch.nn.functional.linear(H_v, self.unit_msg_coord_mlp[0].weight[:, :d_v]))

    def _attention_chunk(self, att_src: torch.Tensor, att_dst: torch.Tensor, D: torch.Tensor,
                         edge_attr: Optional[torch.Tensor], ps: torch.Tensor, pd: torch.Tensor,
                         w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Atom-level attention ``alpha`` and block-attention logits [n, h] of a chunk of
        one-pair block edges (``w`` [n, 1] envelope weights)."""
        n, h = ps.shape[0], self.n_head
        d_rh, d_d = self.linear_qk.out_features // 2, D.shape[-1]
        w_att = self.att_mlp[0].weight
        if edge_attr is not None and self.d_edge > 0:  # per pair: joins D in the GEMM
            pre = self._first_layer([(att_src, ps), (att_dst, pd)],
                                    torch.cat([D, self.edge_linear(edge_attr).view(n, h, self.d_radial_head)], dim=-1),
                                    w_att[:, 2 * d_rh:], self.att_mlp[0].bias)
        else:
            pre = self._first_layer([(att_src, ps), (att_dst, pd)], D, w_att[:, 2 * d_rh:2 * d_rh + d_d],
                                    self.att_mlp[0].bias)
        R_repr = self._mlp(0, pre)
        alpha = sink_softmax_single(self.unit_att_linear(R_repr).squeeze(-1), w)
        pooled = (w.unsqueeze(-1) * R_repr) / (w.unsqueeze(-1) + 1e-9)
        return alpha, self.block_att_linear(pooled).squeeze(-1)

    def _message_chunk(self, msg_dst: torch.Tensor, cmsg_dst: torch.Tensor, dZ: torch.Tensor,
                       D: torch.Tensor, pd: torch.Tensor, alpha: torch.Tensor,
                       update_coords: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """What a chunk of one-pair block edges sends, before the block attention:
        features [n, h, d/h] and coordinate updates [n, h, C, 3] (empty without
        ``update_coords``)."""
        n, h = pd.shape[0], self.n_head
        a = alpha.unsqueeze(-1)
        d_v = self.linear_v.out_features
        m, mc = self.unit_msg_mlp[0], self.unit_msg_coord_mlp[0]
        msg = self._mlp(1, self._first_layer([(msg_dst, pd)], D, m.weight[:, d_v:], m.bias))
        node = a * self._mlp(3, (a * msg).reshape(n, self.d_radial)).view(n, h, self.d_hidden_head)
        if not update_coords:
            return node, torch.zeros(0, dtype=node.dtype, device=node.device)
        cmsg = self._mlp(2, self._first_layer([(cmsg_dst, pd)], D, mc.weight[:, d_v:], mc.bias))
        z_pair = (a * self.unit_msg_coord_linear(cmsg)).unsqueeze(-1) * dZ.unsqueeze(1)  # [n, h, C, 3]
        z_h = self._mlp(4, (a * cmsg).reshape(n, self.d_radial)).view(n, h, self.n_channel)  # [n, h, C]
        return node, z_h.unsqueeze(-1) * z_pair

    def _singleton_inference(
        self,
        H: torch.Tensor,
        Z: torch.Tensor,
        edge_attr: Optional[torch.Tensor],
        pair_src: torch.Tensor,
        pair_dst: torch.Tensor,
        pair_weight: torch.Tensor,
        pair_shift: Optional[torch.Tensor],
        edge_row: torch.Tensor,
        update_coords: bool,
        known_src: torch.Tensor,
        known_logit: torch.Tensor,
        known_weight: torch.Tensor,
        known_node: torch.Tensor,
        known_coord: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` for one pair per block edge (potential mode, atom blocks),
        without autograd on the CPU, streamed over chunks of ``stream_rows`` pairs.

        Nothing pair-sized is kept but the attention weights ([Eu, h]): pass 1 computes
        per chunk the distance features, the attention MLP, alpha and the block-attention
        logits; the block-level softmax over each atom's neighbours is then taken over
        all pairs at once; pass 2 recomputes the chunk's distance features and runs the
        message, node and coordinate MLPs, adding each chunk into the atoms. Every
        intermediate of a chunk stays in cache (the general path streams [Eu, d]
        tensors through memory once per operation). Same arithmetic as :meth:`forward`.

        ``edge_row``: receiving block of each pair (the block-level softmax runs over
        it). ``known_*`` are further pairs received by atoms ``known_src`` (atom blocks)
        whose terms are already known (block-attention logit [K, h], weight [K],
        :meth:`_message_chunk`'s two outputs), from :meth:`pair_terms` on a fixed
        environment (see ``GET.forward_in_environment``); they join the block-level
        softmax. Empty tensors: none.
        """
        n_atoms, n_pairs, h = H.shape[0], pair_src.shape[0], self.n_head
        c = self.stream_rows
        att_src, att_dst, msg_dst, cmsg_dst = self._atom_terms(H)
        alpha = torch.empty(n_pairs, h, dtype=H.dtype, device=H.device)
        logit = torch.empty(n_pairs, h, dtype=H.dtype, device=H.device)
        for i in range(0, n_pairs, c):
            j = min(i + c, n_pairs)
            ps, pd = pair_src[i:j], pair_dst[i:j]
            _, D = self._chunk_geometry(Z, ps, pd, pair_shift, i, j)
            ea = edge_attr[i:j] if edge_attr is not None else None
            alpha[i:j], logit[i:j] = self._attention_chunk(att_src, att_dst, D, ea, ps, pd,
                                                           pair_weight[i:j].unsqueeze(-1))
        n_known = known_src.shape[0]
        n_rows = int(edge_row.max()) + 1 if n_pairs > 0 else 0
        if n_known > 0:
            n_rows = max(n_rows, int(known_src.max()) + 1)
            beta = sink_softmax(torch.cat([logit, known_logit]),
                                torch.cat([pair_weight, known_weight]).unsqueeze(-1),
                                torch.cat([edge_row, known_src]), n_rows)
            beta, beta_known = beta[:n_pairs], beta[n_pairs:]
        else:
            beta = sink_softmax(logit, pair_weight.unsqueeze(-1), edge_row, n_rows)
            beta_known = beta[:0]

        node = torch.zeros(n_atoms, h, self.d_hidden // h, dtype=H.dtype, device=H.device)
        Z_agg = torch.zeros(n_atoms, h, Z.shape[1], 3, dtype=Z.dtype, device=Z.device)
        for i in range(0, n_pairs, c):
            j = min(i + c, n_pairs)
            ps, pd = pair_src[i:j], pair_dst[i:j]
            dZ, D = self._chunk_geometry(Z, ps, pd, pair_shift, i, j)
            b = beta[i:j].unsqueeze(-1)
            y, z = self._message_chunk(msg_dst, cmsg_dst, dZ, D, pd, alpha[i:j], update_coords)
            node.index_add_(0, ps, y * b)
            if update_coords:
                Z_agg.index_add_(0, ps, z * b.unsqueeze(-1))
        if n_known > 0:
            b = beta_known.unsqueeze(-1)
            node.index_add_(0, known_src, known_node * b)
            if update_coords:
                Z_agg.index_add_(0, known_src, known_coord * b.unsqueeze(-1))
        H_agg = self.node_out_linear(node.reshape(n_atoms, self.d_hidden))
        H_new = H + H_agg if self.residual else H_agg
        if not update_coords:
            return H_new, Z
        return H_new, Z + Z_agg.sum(dim=1)

    def pair_terms(
        self,
        H: torch.Tensor,
        Z: torch.Tensor,
        edge_attr: Optional[torch.Tensor],
        pair_src: torch.Tensor,
        pair_dst: torch.Tensor,
        pair_weight: torch.Tensor,
        update_coords: bool,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-pair block-attention logits and messages of one-pair block edges (no
        periodic shifts): the ``known_*`` inputs of :meth:`_singleton_inference` for
        pairs whose atoms are in the same state elsewhere. Computed in chunks of
        ``stream_rows`` pairs (all at once when 0)."""
        att_src, att_dst, msg_dst, cmsg_dst = self._atom_terms(H)
        n_pairs, h = pair_src.shape[0], self.n_head
        c = self.stream_rows if self.stream_rows > 0 else max(n_pairs, 1)
        logit = torch.empty(n_pairs, h, dtype=H.dtype, device=H.device)
        node = torch.empty(n_pairs, h, self.d_hidden // h, dtype=H.dtype, device=H.device)
        coord = torch.empty(n_pairs if update_coords else 0, h, Z.shape[1], 3, dtype=Z.dtype, device=Z.device)
        for i in range(0, n_pairs, c):
            j = min(i + c, n_pairs)
            ps, pd = pair_src[i:j], pair_dst[i:j]
            dZ, D = self._chunk_geometry(Z, ps, pd, None, i, j)
            ea = edge_attr[i:j] if edge_attr is not None else None
            alpha, logit[i:j] = self._attention_chunk(att_src, att_dst, D, ea, ps, pd, pair_weight[i:j].unsqueeze(-1))
            y, z = self._message_chunk(msg_dst, cmsg_dst, dZ, D, pd, alpha, update_coords)
            node[i:j] = y
            if update_coords:
                coord[i:j] = z
        return logit, node, coord

    def forward(
        self,
        H: torch.Tensor,
        Z: torch.Tensor,
        edge_attr: Optional[torch.Tensor],
        pair_src: torch.Tensor,
        pair_dst: torch.Tensor,
        pair_group: torch.Tensor,
        pair_weight: Optional[torch.Tensor],
        pair_shift: Optional[torch.Tensor],
        group_atom: torch.Tensor,
        group_edge: torch.Tensor,
        edge_row: torch.Tensor,
        update_coords: bool = True,
        singleton: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """One layer on precomputed unit pairs.

        ``singleton`` declares that every block edge holds exactly one unit pair, listed
        in pair order (``pair_group == group_edge == arange``; potential mode with one
        atom per block builds them so): the per-group and per-edge reductions over one
        member are then done elementwise instead of by scatter. Same result.
        """
        if (singleton and pair_weight is not None and self.stream_rows > 0
                and not torch.is_grad_enabled() and H.device.type == "cpu"):
            none = pair_src[:0]
            return self._singleton_inference(
                H, Z, edge_attr, pair_src, pair_dst, pair_weight, pair_shift, edge_row, update_coords,
                none, H[:0, :1], H[:0, 0], H[:0], H[:0],
            )
        n_atoms = H.shape[0]
        n_groups = group_atom.shape[0]
        n_edges = edge_row.shape[0]
        n_blocks_hint = int(edge_row.max()) + 1 if n_edges > 0 else 0
        pair_edge = pair_group if singleton else group_edge.index_select(0, pair_group)

        # ---- attention
        # The first layer of each pair MLP acts on a concatenation [per-atom | per-pair | per-edge]
        # features; it is applied to each part before gathering (same result, far fewer FLOPs).
        att_src, att_dst, msg_dst, cmsg_dst = self._atom_terms(H)
        d_rh = self.linear_qk.out_features // 2
        dZ = Z.index_select(0, pair_src) - Z.index_select(0, pair_dst)  # [Eu, C, 3]
        if pair_shift is not None:
            dZ = dZ - pair_shift.unsqueeze(1)
        D = self._distance_features(dZ)
        d_d = D.shape[-1]
        w_att = self.att_mlp[0].weight
        gathers = [(att_src, pair_src), (att_dst, pair_dst)]
        if edge_attr is not None and self.d_edge > 0:
            ea = self.edge_linear(edge_attr).view(edge_attr.shape[0], self.n_head, self.d_radial_head)
            gathers.append((torch.nn.functional.linear(ea, w_att[:, 2 * d_rh + d_d:]), pair_edge))
        pre = self._first_layer(gathers, D, w_att[:, 2 * d_rh:2 * d_rh + d_d], self.att_mlp[0].bias)
        R_repr = self._rows(0, pre)  # [Eu, h, dr/h]
        R = self.unit_att_linear(R_repr).squeeze(-1)  # [Eu, h]

        if singleton and pair_weight is not None:
            # one pair per group and per block edge: group and edge sums are the pair itself
            w = pair_weight.unsqueeze(-1)  # [Eu, 1]
            alpha = sink_softmax_single(R, w).unsqueeze(-1)
            pooled = (w.unsqueeze(-1) * R_repr) / (w.unsqueeze(-1) + 1e-9)
            beta = self.block_att_linear(pooled).squeeze(-1)
            beta = sink_softmax(beta, w, edge_row, n_blocks_hint)
            group_mass = alpha
        elif pair_weight is None:
            alpha = scatter_softmax(R, pair_group, n_groups).unsqueeze(-1)
            pooled = scatter_mean(R_repr, pair_edge, n_edges)
            beta = self.block_att_linear(pooled).squeeze(-1)
            beta = scatter_softmax(beta, edge_row, n_blocks_hint)
            group_mass = torch.ones(n_groups, self.n_head, 1, dtype=H.dtype, device=H.device)
        else:
            w = pair_weight.unsqueeze(-1)  # [Eu, 1]
            alpha = sink_softmax(R, w, pair_group, n_groups).unsqueeze(-1)
            w_edge = scatter_sum(w, pair_edge, n_edges)  # [Eb, 1]
            pooled = scatter_sum(w.unsqueeze(-1) * R_repr, pair_edge, n_edges) / (
                w_edge.unsqueeze(-1) + 1e-9
            )
            beta = self.block_att_linear(pooled).squeeze(-1)
            beta = sink_softmax(beta, w_edge, edge_row, n_blocks_hint)
            group_mass = scatter_sum(alpha, pair_group, n_groups)  # [Eg, h, 1]
        beta_g = (beta if singleton else beta.index_select(0, group_edge)).unsqueeze(-1)  # [Eg, h, 1]

        # ---- invariant update
        d_v = self.linear_v.out_features
        m = self.unit_msg_mlp
        msg = self._rows(1, self._first_layer([(msg_dst, pair_dst)], D, m[0].weight[:, d_v:], m[0].bias))
        H_agg = self._group_sum(alpha * msg, pair_group, n_groups, singleton).reshape(n_groups, self.d_radial)
        H_agg = self._node_update(H_agg, beta_g * group_mass, group_atom, n_atoms).reshape(n_atoms, self.d_hidden)
        H_agg = self.node_out_linear(H_agg)
        H_new = H + H_agg if self.residual else H_agg

        # ---- equivariant update (skipped when nothing downstream reads the coordinates)
        if not update_coords:
            return H_new, Z
        mc = self.unit_msg_coord_mlp
        cmsg = self._rows(2, self._first_layer([(cmsg_dst, pair_dst)], D, mc[0].weight[:, d_v:], mc[0].bias))
        Z_agg = self._group_sum(
            (alpha * self.unit_msg_coord_linear(cmsg)).unsqueeze(-1) * dZ.unsqueeze(1), pair_group, n_groups,
            singleton,
        )  # [Eg, h, C, 3]
        Z_H = self._group_sum(alpha * cmsg, pair_group, n_groups, singleton).reshape(n_groups, self.d_radial)
        Z_H = self._rows(4, Z_H).view(n_groups, self.n_head, self.n_channel)  # [Eg, h, C]
        Z_agg = scatter_sum((beta_g * Z_H).unsqueeze(-1) * Z_agg, group_atom, n_atoms).sum(dim=1)
        return H_new, Z + Z_agg
