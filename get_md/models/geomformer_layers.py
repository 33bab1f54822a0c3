"""GeoMFormer's building blocks (Chen et al., ICML 2024, arXiv 2406.16853): the attention
graph (dense padded layout or radius edges) and ``attend``, the invariant and equivariant
self- and cross-attention, feed-forward and norm layers, one ``GeoMFormerLayer``, and the
energy and vector heads. The model that stacks them is ``get_md.models.geomformer``, which
re-exports every public name here.

No ``from __future__ import annotations`` here: TorchScript reads the NamedTuple
``AttnGraph``'s field annotations as real types.
"""

import math
from typing import NamedTuple, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from get_md.nn.scatter import scatter_sum, sink_softmax


class AttnGraph(NamedTuple):
    """Who attends to whom, for either graph mode.

    dense: ``graph_index``/``slot`` place atom i at [graph, slot] of a padded
    [G, L] layout and ``mask`` [G, L] marks real atoms. radius: edges
    ``center`` <- ``neighbor`` (self edges included) with envelope ``weight`` [E].
    """

    dense: bool
    n_atoms: int
    n_graphs: int
    max_len: int
    flat_index: torch.Tensor
    mask: torch.Tensor
    center: torch.Tensor
    neighbor: torch.Tensor
    weight: torch.Tensor


def pad_dense(t: torch.Tensor, g: AttnGraph) -> torch.Tensor:
    """[N, ...] -> [G, L, ...] (zeros in padding)."""
    shape = [g.n_graphs * g.max_len] + list(t.shape[1:])
    out = torch.zeros(shape, dtype=t.dtype, device=t.device).index_copy(0, g.flat_index, t)
    return out.view([g.n_graphs, g.max_len] + list(t.shape[1:]))


def unpad_dense(t: torch.Tensor, g: AttnGraph) -> torch.Tensor:
    """[G, L, ...] -> [N, ...]."""
    return t.reshape([g.n_graphs * g.max_len] + list(t.shape[2:]))[g.flat_index]


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor,
    g: AttnGraph,
    scale: float,
    dropout: float,
    training: bool,
) -> torch.Tensor:
    """Multi-head attention in either mode.

    Args:
        q, k: [N, H, c] queries and keys (the score is their dot product).
        v: [N, H, m] values.
        bias: [G, L, L, H] (dense) or [E, H] (radius) additive logits.
        g: the attention graph.

    Returns:
        [N, H, m].
    """
    if g.dense:
        qp = pad_dense(q, g).permute(0, 2, 1, 3)  # [G, H, L, c]
        kp = pad_dense(k, g).permute(0, 2, 3, 1)  # [G, H, c, L]
        vp = pad_dense(v, g).permute(0, 2, 1, 3)  # [G, H, L, m]
        s = torch.matmul(qp, kp) * scale + bias.permute(0, 3, 1, 2)
        s = s.masked_fill(~g.mask.view(g.n_graphs, 1, 1, g.max_len), float("-inf"))
        a = F.dropout(torch.softmax(s, dim=-1), dropout, training)
        return unpad_dense(torch.matmul(a, vp).permute(0, 2, 1, 3), g)
    qe = q.index_select(0, g.center)  # index_select: its backward is a fast index_add
    logits = (qe * k.index_select(0, g.neighbor)).sum(-1) * scale + bias  # [E, H]
    a = sink_softmax(logits, g.weight.unsqueeze(-1), g.center, g.n_atoms)
    a = F.dropout(a, dropout, training)
    return scatter_sum(a.unsqueeze(-1) * v.index_select(0, g.neighbor), g.center, g.n_atoms)


def _heads_equ(z: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[N, 3, d] -> [N, H, 3 * d / H] (each head keeps its channels' x, y, z)."""
    n = z.shape[0]
    return z.view(n, 3, n_heads, -1).permute(0, 2, 1, 3).reshape(n, n_heads, -1)


def _unheads_equ(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[N, H, 3 * c] -> [N, 3, H * c]."""
    n = t.shape[0]
    return t.view(n, n_heads, 3, -1).permute(0, 2, 1, 3).reshape(n, 3, -1)


class GaussianKernel(nn.Module):
    """Gaussian basis kernel of distances with learnable centres and widths: [...] -> [..., K]."""

    def __init__(self, num: int, cutoff: float):
        super().__init__()
        self.means = nn.Parameter(torch.linspace(0.0, cutoff, num))
        width = cutoff / max(num - 1, 1)
        self.log_widths = nn.Parameter(torch.full((num,), math.log(width)))

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        x = (d.unsqueeze(-1) - self.means) / torch.exp(self.log_widths)
        return torch.exp(-0.5 * x * x)


class EquivariantLayerNorm(nn.Module):
    """Z / sqrt(mean_c |Z_c|^2 + eps) * gamma_c for Z [N, 3, d]: per atom, no centring.

    ``eps`` is 1 (in feature units), not a tiny number: an atom whose last neighbour
    leaves the cutoff has Z -> 0, and a plain RMS norm would blow the vanishing vectors
    back up to unit length within a hair of the cutoff (continuous but with huge
    forces). With eps = 1 small features pass almost unchanged and large ones are
    normalised, so the map stays well conditioned everywhere.
    """

    def __init__(self, d: int, eps: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        ms = (z * z).sum(dim=1).mean(dim=-1, keepdim=True)  # [N, 1]
        return z * torch.rsqrt(ms + self.eps).unsqueeze(-1) * self.weight


class InvariantSelfAttention(nn.Module):
    """softmax(Q K^T / sqrt(c) + B) V with Q, K, V linear in X."""

    def __init__(self, d: int, n_heads: int, d_pair: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.scale = 1.0 / math.sqrt(d // n_heads)
        self.dropout = dropout
        self.qkv = nn.Linear(d, 3 * d)
        self.bias = nn.Linear(d_pair, n_heads)
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, pair: torch.Tensor, g: AttnGraph) -> torch.Tensor:
        n = x.shape[0]
        q, k, v = self.qkv(x).view(n, 3, self.n_heads, -1).unbind(1)
        o = attend(q, k, v, self.bias(pair), g, self.scale, self.dropout, self.training)
        return self.out(o.reshape(n, -1))


class EquivariantSelfAttention(nn.Module):
    """Q, K, V = Z W (no bias); score sum_xyz <Q_i, K_j>; output sum_j a_ij V_j."""

    def __init__(self, d: int, n_heads: int, d_pair: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.scale = 1.0 / math.sqrt(3 * (d // n_heads))
        self.dropout = dropout
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.bias = nn.Linear(d_pair, n_heads)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, z: torch.Tensor, pair: torch.Tensor, g: AttnGraph) -> torch.Tensor:
        q, k, v = self.qkv(z).chunk(3, dim=-1)
        h = self.n_heads
        o = attend(_heads_equ(q, h), _heads_equ(k, h), _heads_equ(v, h), self.bias(pair), g,
                   self.scale, self.dropout, self.training)
        return self.out(_unheads_equ(o, h))


class InvariantCrossAttention(nn.Module):
    """Queries X W_Q; keys <Z W_K1, Z W_K2> and values <Z W_V1, Z W_V2> (inner products over xyz)."""

    def __init__(self, d: int, n_heads: int, d_pair: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.scale = 1.0 / math.sqrt(d // n_heads)
        self.dropout = dropout
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 4 * d, bias=False)
        self.bias = nn.Linear(d_pair, n_heads)
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, z: torch.Tensor, pair: torch.Tensor, g: AttnGraph) -> torch.Tensor:
        n = x.shape[0]
        k1, k2, v1, v2 = self.kv(z).chunk(4, dim=-1)
        k = (k1 * k2).sum(dim=1).view(n, self.n_heads, -1)
        v = (v1 * v2).sum(dim=1).view(n, self.n_heads, -1)
        q = self.q(x).view(n, self.n_heads, -1)
        o = attend(q, k, v, self.bias(pair), g, self.scale, self.dropout, self.training)
        return self.out(o.reshape(n, -1))


class EquivariantCrossAttention(nn.Module):
    """Queries Z W_Q; keys (X W_K1) ⊙ (Z W_K2); values (X W_V1) ⊙ (Z W_V2); no bias on vectors."""

    def __init__(self, d: int, n_heads: int, d_pair: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.scale = 1.0 / math.sqrt(3 * (d // n_heads))
        self.dropout = dropout
        self.zproj = nn.Linear(d, 3 * d, bias=False)
        self.xproj = nn.Linear(d, 2 * d)
        self.bias = nn.Linear(d_pair, n_heads)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, z: torch.Tensor, x: torch.Tensor, pair: torch.Tensor, g: AttnGraph) -> torch.Tensor:
        q, k2, v2 = self.zproj(z).chunk(3, dim=-1)
        k1, v1 = self.xproj(x).unsqueeze(1).chunk(2, dim=-1)
        h = self.n_heads
        o = attend(_heads_equ(q, h), _heads_equ(k1 * k2, h), _heads_equ(v1 * v2, h), self.bias(pair),
                   g, self.scale, self.dropout, self.training)
        return self.out(_unheads_equ(o, h))


class EquivariantFFN(nn.Module):
    """(Z W1 ⊙ gate(X, |Z W1|)) W2, the gate an invariant MLP; linear maps on vectors have no bias."""

    def __init__(self, d: int, d_ffn: int, dropout: float):
        super().__init__()
        self.w1 = nn.Linear(d, d_ffn, bias=False)
        self.gate = nn.Linear(d + d_ffn, d_ffn)
        self.w2 = nn.Linear(d_ffn, d, bias=False)
        self.dropout = dropout

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = self.w1(z)  # [N, 3, f]
        norms = torch.sqrt((h * h).sum(dim=1) + 1e-8)  # smooth |h_c|
        gate = F.gelu(self.gate(torch.cat([x, norms], dim=-1)))
        gate = F.dropout(gate, self.dropout, self.training)
        return self.w2(h * gate.unsqueeze(1))


class GeoMFormerLayer(nn.Module):
    """One GeoMFormer block: self-attention, cross-attention and FFN in both streams (pre-norm).

    Example:
        >>> layer = GeoMFormerLayer(d=16, n_heads=2, d_pair=8, d_ffn=32)
    """

    def __init__(self, d: int, n_heads: int, d_pair: int, d_ffn: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = dropout
        self.ln_x_self = nn.LayerNorm(d)
        self.ln_z_self = EquivariantLayerNorm(d)
        self.ln_x_cross = nn.LayerNorm(d)
        self.ln_z_cross = EquivariantLayerNorm(d)
        self.ln_x_ffn = nn.LayerNorm(d)
        self.ln_z_ffn = EquivariantLayerNorm(d)
        self.inv_self_attn = InvariantSelfAttention(d, n_heads, d_pair, dropout)
        self.equ_self_attn = EquivariantSelfAttention(d, n_heads, d_pair, dropout)
        self.inv_cross_attn = InvariantCrossAttention(d, n_heads, d_pair, dropout)
        self.equ_cross_attn = EquivariantCrossAttention(d, n_heads, d_pair, dropout)
        self.inv_ffn = nn.Sequential(nn.Linear(d, d_ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ffn, d))
        self.equ_ffn = EquivariantFFN(d, d_ffn, dropout)

    def _drop(self, t: torch.Tensor) -> torch.Tensor:
        return F.dropout(t, self.dropout, self.training)

    def forward(
        self, x: torch.Tensor, z: torch.Tensor, pair: torch.Tensor, g: AttnGraph
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        x1 = x + self._drop(self.inv_self_attn(self.ln_x_self(x), pair, g))
        z1 = z + self._drop(self.equ_self_attn(self.ln_z_self(z), pair, g))
        xn, zn = self.ln_x_cross(x1), self.ln_z_cross(z1)
        x2 = x1 + self._drop(self.inv_cross_attn(xn, zn, pair, g))
        z2 = z1 + self._drop(self.equ_cross_attn(zn, xn, pair, g))
        xn, zn = self.ln_x_ffn(x2), self.ln_z_ffn(z2)
        x3 = x2 + self._drop(self.inv_ffn(xn))
        z3 = z2 + self._drop(self.equ_ffn(zn, xn))
        return x3, z3


class EnergyHead(nn.Module):
    """Per-atom MLP on the invariant stream -> [N] (before reference energies)."""

    def __init__(self, d: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, 1))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.mlp(x).squeeze(-1)


class VectorHead(nn.Module):
    """Per-atom equivariant vector: sum_c (Z W1)_c gate_c(X) w_c -> [N, 3]."""

    def __init__(self, d: int):
        super().__init__()
        self.w1 = nn.Linear(d, d, bias=False)
        self.gate = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.w2 = nn.Linear(d, 1, bias=False)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.w2(self.w1(z) * self.gate(x).unsqueeze(1)).squeeze(-1)


__all__ = [
    "AttnGraph",
    "EnergyHead",
    "EquivariantCrossAttention",
    "EquivariantFFN",
    "EquivariantLayerNorm",
    "EquivariantSelfAttention",
    "GaussianKernel",
    "GeoMFormerLayer",
    "InvariantCrossAttention",
    "InvariantSelfAttention",
    "VectorHead",
    "attend",
    "pad_dense",
    "unpad_dense",
]
