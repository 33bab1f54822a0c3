"""GeoMFormer (Chen et al., ICML 2024, arXiv 2406.16853), written from the paper.

Every atom carries an invariant feature X_i [d] and an equivariant feature
Z_i [3, d]. Each layer updates both streams with standard Transformer parts:

* invariant self-attention: softmax(Q K^T / sqrt(c) + B) V on X, with the
  attention bias B computed from a Gaussian basis kernel of the pair distance;
* equivariant self-attention: Q, K, V = Z W (linear over channels, no bias);
  the score sums the dot products of the 3-d queries and keys over x, y, z, so
  it is invariant, and the values stay equivariant;
* invariant cross-attention: queries from X; keys and values from the
  equivariant stream made invariant by inner products <Z W1, Z W2>;
* equivariant cross-attention: queries Z W; keys and values (X W1) ⊙ (Z W2),
  invariant features turned equivariant by a Hadamard product with Z;
* feed-forward networks per stream (the equivariant one gates the channels of
  Z W1 by an invariant function of X and of the channel norms; no bias on
  vectors) and pre-layer norms per stream (LayerNorm on X; on Z an RMS norm of
  the vector channels, per atom, no centring).

Initial features (the paper's Gaussian-kernel centrality encodings):
X_i^0 = embed(Z_i) + sum_j phi(r_ij) W and Z_i^0 = sum_j (r_ij / |r_ij|) ⊗ phi(r_ij) W.

Two graph modes:

* ``"dense"``: full attention among the atoms of each structure (padded per
  structure; for small systems such as N-body particles or molecules below
  ~100 atoms); ``cutoff`` only sets the range of the radial basis.
* ``"radius"`` (potential mode): attention over radius-graph edges plus a
  self edge; every edge's attention weight is multiplied by the polynomial
  cutoff envelope through ``sink_softmax``, and the initial encodings carry the
  envelope too, so energies and forces stay continuous as atoms cross the
  cutoff. Cost is linear in atoms; all norms are per atom.

Example:
    >>> import torch
    >>> from get_md.graph import MolecularGraph
    >>> model = GeoMFormer(d_model=16, n_layers=1, n_heads=2, n_rbf=8)
    >>> g = MolecularGraph.from_atoms(torch.randn(3, 3), torch.tensor([8, 1, 1]))
    >>> out = model(*g.inputs())
    >>> out["energy"].shape, out["forces"].shape
    (torch.Size([1]), torch.Size([3, 3]))
"""

from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from get_md import vocab
from get_md.errors import ConfigError
from get_md.models.geomformer_layers import (  # noqa: F401  (re-exported: the old import path)
    AttnGraph,
    EnergyHead,
    EquivariantCrossAttention,
    EquivariantFFN,
    EquivariantLayerNorm,
    EquivariantSelfAttention,
    GaussianKernel,
    GeoMFormerLayer,
    InvariantCrossAttention,
    InvariantSelfAttention,
    VectorHead,
    attend,
    pad_dense,
    unpad_dense,
)
from get_md.models.heads import energy_outputs, strained_inputs
from get_md.nn.neighbors import edge_vectors, radius_graph
from get_md.nn.radial import PolynomialEnvelope, stable_norm
from get_md.nn.scatter import scatter_mean, scatter_sum

MODES = ("dense", "radius")
TASKS = ("energy", "score", "vectors")


class GeoMFormer(nn.Module):
    """GeoMFormer: invariant and equivariant Transformer streams bridged by cross-attention.

    Args:
        d_model: channels of both streams (X [N, d], Z [N, 3, d]); divisible by ``n_heads``.
        n_layers: GeoMFormer blocks.
        n_heads: attention heads.
        n_rbf: Gaussian basis kernels for distances.
        cutoff: Å; radius-graph cutoff in ``"radius"`` mode, radial-basis range in both.
        mode: ``"dense"`` (full attention per structure) or ``"radius"`` (potential mode).
        task: ``"energy"``, ``"score"`` or ``"vectors"``.
        compute_forces: energy task: also return forces (and stress for periodic cells).
        dropout: dropout on attention weights, FFN hidden units and residual branches.
        elements: supported atomic numbers (metadata only; None = any).
        ffn_mult: FFN hidden size = ``ffn_mult * d_model``.
        envelope_exponent: exponent of the polynomial cutoff envelope (radius mode).
        use_block_types: add block-type and atom-position embeddings to the atom embedding
            (residue context for scoring; off by default so that energies depend on
            elements and coordinates only).
        charge_pairs: dense mode: per-pair charge products q_i q_j (from
            ``forward_with_vectors``'s charges) enter the attention bias as
            GELU(W phi(r_ij) q_i q_j) and the initial encodings as charge-signed
            centrality terms (as EGNN / SEGNN N-body models use charge products).

    Outputs of ``forward`` (a ``Dict[str, Tensor]``): energy task: ``energy`` [G] eV,
    ``energies`` [N] and, with ``compute_forces``, ``forces`` [N, 3] eV/Å (and
    ``stress`` [G, 3, 3] eV/Å^3 for periodic structures); score task: ``score`` [G]
    and ``block_scores`` [B]; vectors task: ``vectors`` [N, 3].

    Example:
        >>> import torch
        >>> from get_md.graph import MolecularGraph
        >>> model = GeoMFormer(d_model=16, n_layers=1, n_heads=2, n_rbf=8, mode="dense",
        ...                    task="vectors")
        >>> g = MolecularGraph.from_atoms(torch.randn(5, 3), torch.ones(5, dtype=torch.long))
        >>> vel = torch.randn(5, 3)
        >>> model.forward_with_vectors(*g.inputs().with_vectors(vel, torch.ones(5)))["vectors"].shape
        torch.Size([5, 3])
    """

    __jit_ignored_attributes__ = ["config", "elements"]

    def __init__(
        self,
        d_model: int = 128,
        n_layers: int = 4,
        n_heads: int = 8,
        n_rbf: int = 32,
        cutoff: float = 5.0,
        mode: str = "radius",
        task: str = "energy",
        compute_forces: bool = True,
        dropout: float = 0.0,
        elements: Optional[List[int]] = None,
        ffn_mult: int = 2,
        envelope_exponent: int = 5,
        use_block_types: bool = False,
        charge_pairs: bool = False,
    ):
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if task not in TASKS:
            raise ConfigError(f"task must be one of {TASKS}, got {task!r}")
        if d_model % n_heads != 0:
            raise ConfigError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if cutoff <= 0:
            raise ConfigError(f"cutoff must be positive, got {cutoff}")
        if charge_pairs and mode != "dense":
            raise ConfigError("charge_pairs needs mode='dense'")
        self.config = dict(
            d_model=d_model, n_layers=n_layers, n_heads=n_heads, n_rbf=n_rbf, cutoff=float(cutoff),
            mode=mode, task=task, compute_forces=compute_forces, dropout=dropout,
            elements=None if elements is None else [int(e) for e in elements], ffn_mult=ffn_mult,
            envelope_exponent=envelope_exponent, use_block_types=use_block_types,
            charge_pairs=charge_pairs,
        )
        self.family = "geomformer"
        self.mode = mode
        self.task = task
        self.cutoff = float(cutoff)
        self.compute_forces = compute_forces
        self.elements: Optional[List[int]] = None if elements is None else [int(e) for e in elements]
        self.use_block_types = use_block_types
        self.d_model = d_model

        self.atom_embedding = nn.Embedding(vocab.MAX_ATOMIC_NUMBER + 1, d_model)
        self.block_embedding = nn.Embedding(vocab.NUM_BLOCK_TYPES, d_model)
        self.position_embedding = nn.Embedding(vocab.NUM_ATOM_POSITIONS, d_model)
        self.charge_embedding = nn.Linear(2, d_model, bias=False)  # [q, |v|^2]
        self.velocity_embedding = nn.Linear(1, d_model, bias=False)
        self.kernel = GaussianKernel(n_rbf, cutoff)
        self.envelope = PolynomialEnvelope(envelope_exponent)
        self.pair_mlp = nn.Sequential(nn.Linear(n_rbf, n_rbf), nn.GELU())
        self.init_x = nn.Linear(n_rbf, d_model, bias=False)
        self.init_z = nn.Linear(n_rbf, d_model, bias=False)
        # q_i q_j pair features (dense mode; N-body): attention bias GELU(W phi(r_ij) q_i q_j)
        # and charge-signed initial encodings; placeholders when off
        self.charge_pairs = charge_pairs
        self.pair_charge_mlp = nn.Sequential(nn.Linear(n_rbf, n_rbf), nn.GELU()) if charge_pairs else nn.Identity()
        self.init_x_charge = nn.Linear(n_rbf, d_model, bias=False) if charge_pairs else nn.Identity()
        self.init_z_charge = nn.Linear(n_rbf, d_model, bias=False) if charge_pairs else nn.Identity()
        self.init_ln = nn.LayerNorm(d_model)
        self.layers = nn.ModuleList(
            [GeoMFormerLayer(d_model, n_heads, n_rbf, ffn_mult * d_model, dropout) for _ in range(n_layers)]
        )
        self.final_ln = nn.LayerNorm(d_model)
        if task == "vectors":
            self.head = VectorHead(d_model)
        else:
            self.head = EnergyHead(d_model)
        # per-element reference energies (eV), fitted to the training set before training
        self.atom_ref = nn.Embedding(vocab.MAX_ATOMIC_NUMBER + 1, 1)
        nn.init.zeros_(self.atom_ref.weight)
        # output scale of the energy / score head, set from training data
        self.register_buffer("energy_scale", torch.ones(()))

    # ---------------------------------------------------------------- graphs
    def _dense_graph(
        self, positions: torch.Tensor, atom_batch: torch.Tensor, n_graphs: int
    ) -> Tuple[AttnGraph, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded layout; pair distances d [G, L, L], vectors j - i [G, L, L, 3], valid pairs."""
        n = positions.shape[0]
        device = positions.device
        counts = torch.bincount(atom_batch, minlength=n_graphs)
        max_len = int(counts.max())
        starts = torch.cumsum(counts, 0) - counts
        order = torch.argsort(atom_batch, stable=True)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(n, device=device)
        slot = rank - starts[atom_batch]
        flat = atom_batch * max_len + slot
        mask = torch.zeros(n_graphs * max_len, dtype=torch.bool, device=device)
        mask[flat] = True
        mask = mask.view(n_graphs, max_len)
        empty = torch.zeros(0, dtype=torch.long, device=device)
        g = AttnGraph(True, n, n_graphs, max_len, flat, mask, empty, empty,
                      torch.zeros(0, dtype=positions.dtype, device=device))
        pos = pad_dense(positions, g)  # [G, L, 3]
        vec = pos.unsqueeze(1) - pos.unsqueeze(2)  # [G, i, j, 3] = r_j - r_i
        dist = stable_norm(vec, dim=-1)
        eye = torch.eye(max_len, dtype=torch.bool, device=device).unsqueeze(0)
        valid = mask.unsqueeze(1) & mask.unsqueeze(2) & ~eye
        return g, dist, vec, valid

    def _radius_graph(
        self, positions: torch.Tensor, atom_batch: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor
    ) -> Tuple[AttnGraph, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Edges (self edges appended last); distances, vectors and envelope of the E' real edges."""
        n = positions.shape[0]
        device = positions.device
        with torch.no_grad():
            center, neighbor, shifts = radius_graph(positions, atom_batch, self.cutoff, cell, pbc)
        vec = edge_vectors(positions, center, neighbor, shifts, cell, atom_batch)
        dist = stable_norm(vec, dim=-1)
        env = self.envelope(dist / self.cutoff)
        idx = torch.arange(n, device=device)
        g = AttnGraph(
            False, n, cell.shape[0], 0, idx, torch.zeros(0, dtype=torch.bool, device=device),
            torch.cat([center, idx]), torch.cat([neighbor, idx]),
            torch.cat([env, torch.ones(n, dtype=env.dtype, device=device)]),
        )
        return g, center, dist, vec, env, torch.cat([dist, torch.zeros(n, dtype=dist.dtype, device=device)])

    # --------------------------------------------------------------- encoder
    def encode(
        self,
        positions: torch.Tensor,
        velocities: torch.Tensor,
        charges: torch.Tensor,
        atomic_numbers: torch.Tensor,
        block_ids: torch.Tensor,
        atom_positions: torch.Tensor,
        block_types: torch.Tensor,
        atom_batch: torch.Tensor,
        cell: torch.Tensor,
        pbc: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Invariant [N, d] and equivariant [N, 3, d] features after the last block."""
        n = positions.shape[0]
        n_graphs = cell.shape[0]
        x = self.atom_embedding(atomic_numbers)
        if self.use_block_types:
            x = x + self.block_embedding(block_types[block_ids]) + self.position_embedding(atom_positions)
        scalars = torch.stack([charges.to(positions.dtype), (velocities * velocities).sum(-1)], dim=-1)
        x = x + self.charge_embedding(scalars)
        z = velocities.unsqueeze(-1) * self.velocity_embedding.weight.view(1, 1, -1)

        if self.mode == "dense":
            if bool(pbc.any()):
                raise RuntimeError("GeoMFormer dense mode does not support periodic cells; use mode='radius'")
            g, dist, vec, valid = self._dense_graph(positions, atom_batch, n_graphs)
            rbf = self.kernel(dist)  # [G, L, L, K]
            w = valid.to(rbf.dtype)
            unit = vec / dist.unsqueeze(-1) * w.unsqueeze(-1)
            rbf_w = rbf * w.unsqueeze(-1)
            x_rad = unpad_dense(rbf_w.sum(dim=2), g)  # [N, K]
            z_rad = unpad_dense(torch.matmul(unit.transpose(2, 3), rbf_w), g)  # [N, 3, K]
            pair = self.pair_mlp(rbf)  # [G, L, L, K]
            x = x + self.init_x(x_rad)
            z = z + self.init_z(z_rad)
            if self.charge_pairs:
                qp = pad_dense(charges.to(positions.dtype), g)  # [G, L], zeros in padding
                rbf_q = rbf * (qp.unsqueeze(2) * qp.unsqueeze(1)).unsqueeze(-1)  # phi(r_ij) q_i q_j
                rbf_qw = rbf_q * w.unsqueeze(-1)
                pair = pair + self.pair_charge_mlp(rbf_q)
                x = x + self.init_x_charge(unpad_dense(rbf_qw.sum(dim=2), g))
                z = z + self.init_z_charge(unpad_dense(torch.matmul(unit.transpose(2, 3), rbf_qw), g))
        else:
            g, center, dist, vec, env, dist_all = self._radius_graph(positions, atom_batch, cell, pbc)
            kernel_all = self.kernel(dist_all)  # [E, K], real edges first, then self edges
            rbf = kernel_all[: dist.shape[0]] * env.unsqueeze(-1)  # [E', K]
            unit = vec / dist.unsqueeze(-1)
            x_rad = scatter_sum(rbf, center, n)
            z_rad = scatter_sum(unit.unsqueeze(-1) * rbf.unsqueeze(1), center, n)
            pair = self.pair_mlp(kernel_all)
            x = x + self.init_x(x_rad)
            z = z + self.init_z(z_rad)

        x = self.init_ln(x)
        for layer in self.layers:
            x, z = layer(x, z, pair, g)
        return self.final_ln(x), z

    # --------------------------------------------------------------- forward
    def forward(
        self,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        block_ids: torch.Tensor,
        atom_positions: torch.Tensor,
        block_types: torch.Tensor,
        segment_ids: torch.Tensor,
        batch_ids: torch.Tensor,
        cell: torch.Tensor,
        pbc: torch.Tensor,
    ) -> Dict[str, torch.Tensor]:
        """Model outputs for a batch of graphs (see the class docstring)."""
        zeros = torch.zeros_like(positions)
        charges = torch.zeros(positions.shape[0], dtype=positions.dtype, device=positions.device)
        return self.forward_with_vectors(
            positions, zeros, charges, atomic_numbers, block_ids, atom_positions, block_types,
            segment_ids, batch_ids, cell, pbc,
        )

    @torch.jit.export
    def forward_with_vectors(
        self,
        positions: torch.Tensor,
        velocities: torch.Tensor,
        charges: torch.Tensor,
        atomic_numbers: torch.Tensor,
        block_ids: torch.Tensor,
        atom_positions: torch.Tensor,
        block_types: torch.Tensor,
        segment_ids: torch.Tensor,
        batch_ids: torch.Tensor,
        cell: torch.Tensor,
        pbc: torch.Tensor,
    ) -> Dict[str, torch.Tensor]:
        """As ``forward``, with per-atom input vectors (e.g. velocities [N, 3]) seeding the
        equivariant stream and per-atom scalars (e.g. charges [N]) the invariant stream.

        Used by the N-body workflow; ``forward`` passes zeros.
        """
        n_graphs = cell.shape[0]
        n_blocks = batch_ids.shape[0]
        atom_batch = batch_ids[block_ids]
        want_forces = self.task == "energy" and self.compute_forces
        want_stress = want_forces and bool(pbc.any())
        grad_was_enabled = torch.is_grad_enabled()
        if want_forces:
            torch.set_grad_enabled(True)

        pos_leaf, pos, cell, strain = strained_inputs(positions, cell, atom_batch, want_forces, want_stress)

        x, z = self.encode(pos, velocities, charges, atomic_numbers, block_ids, atom_positions,
                           block_types, atom_batch, cell, pbc)

        out: Dict[str, torch.Tensor] = {}
        if self.task == "energy":
            energies = self.head(x, z) * self.energy_scale + self.atom_ref(atomic_numbers).squeeze(-1)
            out = energy_outputs(
                energies, atom_batch, n_graphs, pos_leaf, strain, cell, want_forces, want_stress,
                self.training, grad_was_enabled,
            )
            torch.set_grad_enabled(grad_was_enabled)
        elif self.task == "score":
            block_x = scatter_mean(x, block_ids, n_blocks)
            block_scores = self.head(block_x, z) * self.energy_scale
            out["block_scores"] = block_scores
            out["score"] = scatter_sum(block_scores, batch_ids, n_graphs)
        else:
            out["vectors"] = self.head(x, z)
        return out
