"""GET as a complete model: embeddings, graph construction, encoder and heads.

``GET`` reads the ``MolecularGraph`` tensors (positions in Å) and returns a
``Dict[str, Tensor]``:

* task ``"energy"`` (potential mode): ``energy`` [G] eV, ``energies`` [N] eV,
  ``forces`` [N, 3] eV/Å (= -dE/dx by autograd) and, for periodic structures,
  ``stress`` [G, 3, 3] eV/Å^3;
* task ``"score"``: ``score`` [G] (pK for affinity models) and ``block_scores`` [B],
  the per-block contributions that sum to the score;
* task ``"vectors"``: ``vectors`` [N, 3], the equivariant displacement of each atom
  predicted by the encoder's coordinate stream.

Graph modes (DESIGN.md): ``mode="score"`` builds k-nearest-neighbour block graphs
as in the paper; ``mode="potential"`` builds a radius graph whose pair weights
vanish smoothly at ``cutoff`` so energy is smooth and extensive.

Example:
    >>> import torch
    >>> from get_md.graph import MolecularGraph
    >>> model = GET(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, cutoff=4.0)
    >>> g = MolecularGraph.from_atoms(torch.randn(5, 3), torch.tensor([6, 1, 1, 1, 1]))
    >>> out = model(*g.inputs())
    >>> sorted(out)
    ['energies', 'energy', 'forces']
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from get_md import vocab
from get_md.errors import ConfigError
from get_md.models.get_graph import (
    contact_weights,
    kept_blocks,
    knn_unit_pairs,
    near_ligand_blocks,
    radius_unit_pairs,
)
from get_md.models.get_layers import GETEncoder
from get_md.models.heads import energy_outputs, strained_inputs
from get_md.nn.radial import PolynomialEnvelope
from get_md.nn.scatter import scatter_sum

MODES = ("potential", "score")
TASKS = ("energy", "score", "vectors")


def resolve_uses_segments(uses_segments: Optional[bool], task: str) -> bool:
    """``GET(uses_segments=...)``: a given value, else True for the score task only.

    Model files written before the option existed have no ``uses_segments`` in their
    config; re-scripted they get this default, which matches how each task is trained
    in get_md (affinity: ligand in segment 1; potentials, vectors: every atom in
    segment 0).
    """
    return bool(uses_segments) if uses_segments is not None else task == "score"


class GET(nn.Module):
    """Generalist Equivariant Transformer with embeddings, graph builder and a task head.

    Args:
        d_hidden: feature size.
        d_radial: attention key/value size (GET's "radial" size).
        n_rbf: radial basis size (divisible by ``n_head``).
        n_head: attention heads.
        n_layers: GET layers.
        d_edge: edge-type embedding size (intra / inter segment).
        cutoff: Å; radius-graph cutoff in potential mode, radial-basis range in both.
        mode: ``"potential"`` or ``"score"``.
        task: ``"energy"``, ``"score"`` or ``"vectors"``.
        k_neighbors: block neighbours per relation in score mode.
        sparse_k: atoms of the other block each atom attends to in score mode.
        knn_radius: Å, candidate search radius for the score-mode block graph.
        dropout: dropout in the feed-forward networks.
        compute_forces: return forces (and stress for periodic cells) in energy task.
        elements: supported atomic numbers (metadata only; None = any).
        input_vectors: accept per-atom input vectors (velocities) and charges through
            :meth:`forward_with_vectors` (N-body); the vectors enter as a second
            coordinate channel ``x + v`` and charges through a linear embedding.
        heavy_atoms_only: score task: hydrogens are removed from the input before the
            model sees it, so a structure scores the same with or without them (crystal
            structures vs. protonated docking poses). ``block_scores`` keeps the input's
            blocks; a block of hydrogens only gets 0.
        contact_radius: score task, Å (0: off): a block of segment 0 (the receptor)
            contributes its block score weighted by a switch of its closest atom's
            distance ``d`` to any atom of another segment of the same structure: 1 for
            ``d <= contact_radius``, a cosine to 0 at ``contact_radius + 2``. The score
            then does not grow with the size of the pocket cut around a ligand.
        receptor_radius: score task, Å (0: off): the model's own pocket. Before anything
            else, blocks of segment 0 with no atom closer than ``receptor_radius`` to an
            atom of another segment of the same structure are dropped (block score 0):
            :func:`get_md.build.select_pocket`'s rule applied to each structure, between
            heavy atoms with ``heavy_atoms_only``. A score then does not depend on how
            large a pocket the caller cut (a union pocket of many poses, a trajectory's
            pocket chosen in its first frame), as long as it holds this one.
        uses_segments: whether the graph reads ``segment_ids`` (edge types intra / inter
            segment, k-NN relations in score mode). False: every block is taken as one
            segment when the graph is built, so outputs do not depend on how a caller
            labels molecules (a potential trained on single molecules, all segment 0,
            gives the same energy for a complex built with its ligand in segment 1).
            None (default): True for the score task (affinity models are trained with
            the ligand in segment 1), False otherwise. The score task's ligand reference
            and ``contact_radius`` read the segments either way.
        ligand_chemistry: ligand heavy atoms carry chemistry codes (aromatic, attached
            hydrogens, charge sign; :mod:`get_md.build.ligand_chemistry`) as their atom
            position, and the position embedding has rows for them. The workflows give
            such a model those codes (metadata ``config.ligand_chemistry``).
    """

    __jit_ignored_attributes__ = ["config"]

    def __init__(
        self,
        d_hidden: int = 64,
        d_radial: int = 32,
        n_rbf: int = 16,
        n_head: int = 4,
        n_layers: int = 3,
        d_edge: int = 16,
        cutoff: float = 5.0,
        mode: str = "potential",
        task: str = "energy",
        k_neighbors: int = 9,
        sparse_k: int = 3,
        knn_radius: float = 12.0,
        dropout: float = 0.0,
        compute_forces: bool = True,
        elements: Optional[List[int]] = None,
        input_vectors: bool = False,
        heavy_atoms_only: bool = False,
        contact_radius: float = 0.0,
        uses_segments: Optional[bool] = None,
        receptor_radius: float = 0.0,
        ligand_chemistry: bool = False,
    ):
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if task not in TASKS:
            raise ConfigError(f"task must be one of {TASKS}, got {task!r}")
        self.config = dict(
            d_hidden=d_hidden, d_radial=d_radial, n_rbf=n_rbf, n_head=n_head, n_layers=n_layers,
            d_edge=d_edge, cutoff=cutoff, mode=mode, task=task, k_neighbors=k_neighbors,
            sparse_k=sparse_k, knn_radius=knn_radius, dropout=dropout,
            compute_forces=compute_forces, elements=elements, input_vectors=input_vectors,
            heavy_atoms_only=heavy_atoms_only, contact_radius=contact_radius,
            uses_segments=resolve_uses_segments(uses_segments, task),
        )
        if receptor_radius:
            # only where set, so files written before this option rebuild from their config
            self.config["receptor_radius"] = float(receptor_radius)
        if ligand_chemistry:  # likewise
            self.config["ligand_chemistry"] = True
        self.family = "get"
        self.mode = mode
        self.task = task
        self.cutoff = float(cutoff)
        self.k_neighbors = k_neighbors
        self.sparse_k = sparse_k
        self.knn_radius = float(knn_radius)
        self.compute_forces = compute_forces
        self.heavy_atoms_only = bool(heavy_atoms_only) and task == "score"
        self.contact_radius = float(contact_radius) if task == "score" else 0.0
        self.receptor_radius = float(receptor_radius) if task == "score" else 0.0
        self.uses_segments: bool = bool(self.config["uses_segments"])
        self.smooth = mode == "potential"
        #: potential mode: elementwise reductions when every block edge is one atom pair
        #: (see ``_potential_pairs``); off only to test that it changes nothing
        self.singleton_shortcut = True

        self.atom_embedding = nn.Embedding(vocab.MAX_ATOMIC_NUMBER + 1, d_hidden)
        self.block_embedding = nn.Embedding(vocab.NUM_BLOCK_TYPES, d_hidden)
        self.position_embedding = nn.Embedding(
            vocab.NUM_ATOM_POSITIONS_WITH_CHEMISTRY if ligand_chemistry else vocab.NUM_ATOM_POSITIONS, d_hidden)
        self.edge_embedding = nn.Embedding(2, max(d_edge, 1))
        self.use_edge_attr = d_edge > 0
        self.n_channel = 2 if input_vectors else 1
        self.charge_embedding = nn.Linear(1, d_hidden, bias=False)
        self.encoder = GETEncoder(
            d_hidden, d_radial, self.n_channel, n_rbf, cutoff=cutoff, d_edge=d_edge, n_layers=n_layers,
            n_head=n_head, dropout=dropout, sparse_k=sparse_k if mode == "score" else 0,
        )
        self.envelope = PolynomialEnvelope(5)
        self.head = nn.Sequential(nn.SiLU(), nn.Linear(d_hidden, d_hidden), nn.SiLU(), nn.Linear(d_hidden, 1))
        # per-element reference energies (eV), fitted to the training set before training
        self.atom_ref = nn.Embedding(vocab.MAX_ATOMIC_NUMBER + 1, 1)
        nn.init.zeros_(self.atom_ref.weight)
        # output scale (eV per unit of the head) and shift, set from training data
        self.register_buffer("energy_scale", torch.ones(()))

    # ---------------------------------------------------------------- graphs
    def _graph_segments(self, segment_ids: torch.Tensor) -> torch.Tensor:
        """The segments the graph is built with: as given, or all 0 without ``uses_segments``."""
        if self.uses_segments:
            return segment_ids
        return torch.zeros_like(segment_ids)

    def _score_pairs(
        self, positions: torch.Tensor, block_ids: torch.Tensor, batch_ids: torch.Tensor, segment_ids: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return knn_unit_pairs(positions, block_ids, batch_ids, self._graph_segments(segment_ids),
                              self.k_neighbors, self.knn_radius, self.sparse_k)

    def _potential_pairs(
        self,
        positions: torch.Tensor,
        block_ids: torch.Tensor,
        segment_ids: torch.Tensor,
        atom_batch: torch.Tensor,
        cell: torch.Tensor,
        pbc: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        """Radius-graph unit pairs grouped by block edge and source atom (see
        :func:`get_md.models.get_graph.radius_unit_pairs`)."""
        return radius_unit_pairs(positions, block_ids, self._graph_segments(segment_ids), atom_batch, cell,
                                 pbc, self.cutoff, self.singleton_shortcut)

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
        """Outputs of the model's task for a (batched) graph; see the module docstring."""
        return self.forward_with_pairs(positions, atomic_numbers, block_ids, atom_positions, block_types,
                                       segment_ids, batch_ids, cell, pbc, None)

    def forward_with_pairs(
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
        pairs: Optional[List[torch.Tensor]],
    ) -> Dict[str, torch.Tensor]:
        """:meth:`forward`, in score mode with the graph's pairs from :meth:`score_pairs`
        (None: built here). Members of an ensemble share one k-NN block graph this way:
        it depends only on the structure and on settings they share."""
        keep = self._kept_atoms(positions, atomic_numbers, block_ids, segment_ids, batch_ids)
        if keep is not None:
            return self._score_kept(
                keep, positions, atomic_numbers, block_ids, atom_positions, block_types,
                segment_ids, batch_ids, cell, pbc, pairs,
            )
        return self._run(
            positions, None, None, atomic_numbers, block_ids, atom_positions, block_types,
            segment_ids, batch_ids, cell, pbc, pairs,
        )

    def score_pairs(
        self,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        block_ids: torch.Tensor,
        batch_ids: torch.Tensor,
        segment_ids: torch.Tensor,
    ) -> List[torch.Tensor]:
        """The unit pairs score mode builds for a graph (after dropping hydrogens where the
        model does), for :meth:`forward_with_pairs`: ``[src, dst, pair_group, group_atom,
        group_edge, edge_row, edge_type]``."""
        keep = self._kept_atoms(positions, atomic_numbers, block_ids, segment_ids, batch_ids)
        if keep is not None:
            present, new_index = kept_blocks(keep, block_ids, batch_ids.shape[0])
            positions = positions[keep]
            block_ids = new_index[block_ids[keep]]
            batch_ids = batch_ids[present]
            segment_ids = segment_ids[present]
        ps, pd, pg, ga, ge, er, etype = self._score_pairs(positions, block_ids, batch_ids, segment_ids)
        return [ps, pd, pg, ga, ge, er, etype]

    def _kept_atoms(
        self,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        block_ids: torch.Tensor,
        segment_ids: torch.Tensor,
        batch_ids: torch.Tensor,
    ) -> Optional[torch.Tensor]:
        """The atoms [N] (bool) score mode sees, or None for all: with ``heavy_atoms_only``,
        no hydrogens; with ``receptor_radius``, no receptor blocks beyond it (measured
        between the atoms the model sees, so heavy atoms only where it drops hydrogens:
        a crystal structure and a protonated pose keep the same residues)."""
        keep: Optional[torch.Tensor] = None
        if self.heavy_atoms_only:
            keep = atomic_numbers != 1
        if self.receptor_radius > 0:
            if keep is None:
                near = near_ligand_blocks(positions, block_ids, segment_ids, batch_ids, self.receptor_radius)
                keep = near[block_ids]
            else:  # decided on the heavy atoms too, so that hydrogens change nothing
                near = near_ligand_blocks(positions[keep], block_ids[keep], segment_ids, batch_ids,
                                          self.receptor_radius)
                keep = keep & near[block_ids]
        if keep is not None and bool(keep.all()):
            return None
        return keep

    def _score_kept(
        self,
        keep: torch.Tensor,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        block_ids: torch.Tensor,
        atom_positions: torch.Tensor,
        block_types: torch.Tensor,
        segment_ids: torch.Tensor,
        batch_ids: torch.Tensor,
        cell: torch.Tensor,
        pbc: torch.Tensor,
        pairs: Optional[List[torch.Tensor]],
    ) -> Dict[str, torch.Tensor]:
        """Score of the graph without the atoms not in ``keep`` (see :meth:`_kept_atoms`);
        blocks left empty are dropped for the model and get a block score of 0."""
        n_blocks = batch_ids.shape[0]
        present, new_index = kept_blocks(keep, block_ids, n_blocks)
        out = self._run(
            positions[keep], None, None, atomic_numbers[keep], new_index[block_ids[keep]],
            atom_positions[keep], block_types[present], segment_ids[present], batch_ids[present],
            cell, pbc, pairs,
        )
        block_scores = torch.zeros(n_blocks, dtype=out["block_scores"].dtype, device=block_ids.device)
        block_scores[present] = out["block_scores"]
        out["block_scores"] = block_scores
        return out

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
        """Forward with per-atom input vectors [N, 3] (e.g. velocities) and charges [N]."""
        return self._run(
            positions, velocities, charges, atomic_numbers, block_ids, atom_positions, block_types,
            segment_ids, batch_ids, cell, pbc, None,
        )

    # ------------------------------------------------- fixed environments
    def _environment_ok(self, n_atoms: int, n_blocks: int, pbc: torch.Tensor, device: torch.device) -> bool:
        """Whether :meth:`forward_in_environment` can reuse an environment's terms: a
        potential without forces, atom blocks, no periodicity, CPU inference."""
        return (self.smooth and self.task == "energy" and not self.compute_forces
                and n_blocks == n_atoms and not bool(pbc.any()) and device.type == "cpu"
                and self.encoder.pre_layernorm is None and not torch.is_grad_enabled())

    def _embed(self, atomic_numbers: torch.Tensor, block_ids: torch.Tensor, atom_positions: torch.Tensor,
               block_types: torch.Tensor) -> torch.Tensor:
        return (self.atom_embedding(atomic_numbers) + self.block_embedding(block_types[block_ids])
                + self.position_embedding(atom_positions))

    def _pair_weight(self, r: torch.Tensor) -> torch.Tensor:
        """Envelope weight of each pair from its vector ``r`` [E, 3] (Å): 1 near, 0 at the cutoff."""
        return self.envelope(torch.sqrt((r * r).sum(dim=-1) + 1e-12) / self.cutoff)

    def _atom_energies(self, H: torch.Tensor, atomic_numbers: torch.Tensor) -> torch.Tensor:
        return self.head(H).squeeze(-1) * self.energy_scale + self.atom_ref(atomic_numbers).squeeze(-1)

    @torch.jit.export
    def environment_cache(
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
    ) -> List[torch.Tensor]:
        """What :meth:`forward_in_environment` reuses of fixed environments (e.g. a
        receptor pocket; a batch of them, e.g. the pocket in several trajectory frames):
        per-atom energies and, per layer, the atoms' states and the terms of every atom
        pair. Costs one forward pass (its per-atom ``energies`` are ``cache[2]``).

        Layout: ``[positions, H_0, atomic energies, pair src, pair dst, pair weight,
        pair edge type, structure of each atom]`` then per layer ``[H, Z, logits, node
        terms, coordinate terms]``; pairs sorted by ``src * n + dst``. Call under
        ``torch.no_grad()`` with ``compute_forces`` off (potential models, one atom per
        block, no periodicity).
        """
        n_atoms = positions.shape[0]
        if not self._environment_ok(n_atoms, segment_ids.shape[0], pbc, positions.device):
            raise RuntimeError("environment_cache needs non-periodic structures with one atom per block, a "
                               "potential model with compute_forces off, no autograd, on the CPU")
        n_graphs = cell.shape[0]
        atom_batch = batch_ids[block_ids]
        ps, pd, _, _, _, _, etype, _, singleton = self._potential_pairs(
            positions, block_ids, segment_ids, atom_batch, cell, pbc)
        order = torch.argsort(ps * n_atoms + pd)
        ps, pd, etype = ps[order], pd[order], etype[order]
        weight = self._pair_weight(positions.index_select(0, pd) - positions.index_select(0, ps))
        edge_attr: Optional[torch.Tensor] = None
        if self.use_edge_attr:
            edge_attr = self.edge_embedding(etype)
        H0 = self._embed(atomic_numbers, block_ids, atom_positions, block_types)
        H, Z = H0, positions.unsqueeze(1)
        per_layer: List[torch.Tensor] = []
        n_layers = len(self.encoder.layers)
        i = 0
        for layer, norm0, ffn, norm1 in zip(self.encoder.layers, self.encoder.norms0, self.encoder.ffns,  # noqa: B905
                                            self.encoder.norms1):
            update_coords = i < n_layers - 1
            logit, node, coord = layer.pair_terms(H, Z, edge_attr, ps, pd, weight, update_coords)
            per_layer += [H, Z, logit, node, coord]
            # the layer's output from these terms (every pair "known": no second pass)
            H, Z = layer._singleton_inference(H, Z, None, ps[:0], pd[:0], weight[:0], None, ps[:0],
                                              update_coords, ps, logit, weight, node, coord)
            H, Z, _ = norm0(H, Z, atom_batch, n_graphs, False)
            H, Z = ffn(H, Z, block_ids, n_atoms)
            H, Z, _ = norm1(H, Z, atom_batch, n_graphs, False)
            i += 1
        energies = self._atom_energies(H, atomic_numbers)
        return [positions, H0, energies, ps, pd, weight, etype, atom_batch] + per_layer

    @torch.jit.export
    def forward_in_environment(
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
        env_index: torch.Tensor,
        cache: List[torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        """:meth:`forward` for structures that contain a fixed environment, reusing its
        :meth:`environment_cache` (rescoring many ligand poses in one pocket).

        ``env_index`` [N] gives each atom's index in the environment, or -1 for atoms
        not in it (the ligand, or whole structures such as the free ligand); a structure
        holds one whole environment structure or none. An atom's
        state after layer l can differ from its state in the environment alone only
        if it lies within l + 1 neighbour hops of a non-environment atom; all other
        atoms keep the cached states and energies, and pairs of two atoms whose states
        are unchanged keep their cached terms (every environment pair in layer 1).
        Same outputs as :meth:`forward` (``energy``, ``energies``), to rounding. Falls
        back to :meth:`forward` where nothing can be reused (forces, periodic cells,
        blocks of several atoms, autograd, GPU).

        Raises:
            RuntimeError: a structure with part of the environment, or environment
                atoms whose positions or embeddings differ from the cache's.
        """
        n_atoms = positions.shape[0]
        n_blocks = segment_ids.shape[0]
        if not self._environment_ok(n_atoms, n_blocks, pbc, positions.device):
            return self._run(positions, None, None, atomic_numbers, block_ids, atom_positions, block_types,
                             segment_ids, batch_ids, cell, pbc, None)
        n_graphs = cell.shape[0]
        atom_batch = batch_ids[block_ids]
        env_pos, env_H0, env_energies = cache[0], cache[1], cache[2]
        env_ps, env_pd, env_weight, env_etype, env_graph_of = cache[3], cache[4], cache[5], cache[6], cache[7]
        n_env = env_pos.shape[0]
        in_env = env_index >= 0
        rows = torch.nonzero(in_env).squeeze(1)
        env_of = env_index.clamp(min=0)  # (rows outside the environment are never read)
        H = self._embed(atomic_numbers, block_ids, atom_positions, block_types)
        # every structure holds one whole environment structure or none, each atom once
        graph_of = atom_batch.index_select(0, rows)
        which = env_graph_of.index_select(0, env_index.index_select(0, rows))  # environment structure
        env_sizes = torch.bincount(env_graph_of)
        per_graph = torch.zeros(n_graphs, dtype=torch.long, device=rows.device).index_add_(
            0, graph_of, torch.ones_like(graph_of))
        lo = torch.full((n_graphs,), n_env, dtype=torch.long, device=rows.device).scatter_reduce(
            0, graph_of, which, "amin")
        hi = torch.full((n_graphs,), -1, dtype=torch.long, device=rows.device).scatter_reduce(
            0, graph_of, which, "amax")
        has = per_graph > 0
        if (bool((has & (lo != hi)).any())
                or bool((has & (per_graph != env_sizes.index_select(0, lo.clamp(max=env_sizes.shape[0] - 1)))).any())
                or torch.unique(graph_of * n_env + env_index.index_select(0, rows)).shape[0] != rows.shape[0]):
            raise RuntimeError("forward_in_environment: a structure holds only part of an environment "
                               "structure, or an environment atom twice")
        if bool((env_pos.index_select(0, env_index.index_select(0, rows)) != positions.index_select(0, rows)).any()):
            raise RuntimeError("forward_in_environment: environment atoms are not where the cache has them")
        if bool((env_H0.index_select(0, env_index.index_select(0, rows)) != H.index_select(0, rows)).any()):
            raise RuntimeError("forward_in_environment: environment atoms differ from the cache's "
                               "(element, residue type or atom name)")
        ps, pd, _, _, _, _, etype, _, _ = self._potential_pairs(
            positions, block_ids, segment_ids, atom_batch, cell, pbc)
        weight = self._pair_weight(positions.index_select(0, pd) - positions.index_select(0, ps))
        env_key = env_ps * n_env + env_pd
        pair_key = env_of.index_select(0, ps) * n_env + env_of.index_select(0, pd)
        Z = positions.unsqueeze(1)
        changed = ~in_env  # atoms whose input state differs from the environment's
        n_layers = len(self.encoder.layers)
        i = 0
        for layer, norm0, ffn, norm1 in zip(self.encoder.layers, self.encoder.norms0, self.encoder.ffns,  # noqa: B905
                                            self.encoder.norms1):
            c = 8 + 5 * i
            env_logit, env_node, env_coord = cache[c + 2], cache[c + 3], cache[c + 4]
            changed_src, changed_dst = changed.index_select(0, ps), changed.index_select(0, pd)
            # atoms whose output can change: changed ones and their neighbours
            out = changed.clone()
            out[ps[changed_dst]] = True
            use = out.index_select(0, ps)
            new = torch.nonzero(use & (changed_src | changed_dst)).squeeze(1)
            known = torch.nonzero(use & ~changed_src & ~changed_dst).squeeze(1)
            loc = torch.searchsorted(env_key, pair_key.index_select(0, known)).clamp(max=max(env_key.shape[0] - 1, 0))
            if known.shape[0] > 0 and bool((env_key.index_select(0, loc) != pair_key.index_select(0, known)).any()
                                           or (env_etype.index_select(0, loc) != etype.index_select(0, known)).any()):
                raise RuntimeError("forward_in_environment: environment pairs differ from the cache's")
            update_coords = i < n_layers - 1
            edge_attr: Optional[torch.Tensor] = None
            if self.use_edge_attr:
                edge_attr = self.edge_embedding(etype.index_select(0, new))
            ps_new = ps.index_select(0, new)
            H_out, Z_out = layer._singleton_inference(
                H, Z, edge_attr, ps_new, pd.index_select(0, new), weight.index_select(0, new), None, ps_new,
                update_coords, ps.index_select(0, known), env_logit.index_select(0, loc),
                env_weight.index_select(0, loc), env_node.index_select(0, loc),
                env_coord.index_select(0, loc) if update_coords else env_coord,
            )
            H_out, Z_out, _ = norm0(H_out, Z_out, atom_batch, n_graphs, False)
            H_out, Z_out = ffn(H_out, Z_out, block_ids, n_blocks)
            H_out, Z_out, _ = norm1(H_out, Z_out, atom_batch, n_graphs, False)
            if i < n_layers - 1:  # unchanged atoms: the environment's state after this layer
                keep = out.unsqueeze(-1)
                H = torch.where(keep, H_out, cache[c + 5].index_select(0, env_of))
                Z = torch.where(keep.unsqueeze(-1), Z_out, cache[c + 6].index_select(0, env_of))
            else:
                H = H_out
            changed = out
            i += 1
        energies = torch.where(changed, self._atom_energies(H, atomic_numbers), env_energies.index_select(0, env_of))
        out_dict: Dict[str, torch.Tensor] = {}
        out_dict["energies"] = energies
        out_dict["energy"] = scatter_sum(energies, atom_batch, n_graphs)
        return out_dict

    def _score_terms(
        self,
        H: torch.Tensor,
        pos: torch.Tensor,
        atomic_numbers: torch.Tensor,
        block_ids: torch.Tensor,
        segment_ids: torch.Tensor,
        batch_ids: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the score head reads, per block: the unit-length sum of the block's atom
        features [B, d_hidden], its reference [B] and its weight [B]; a block scores
        ``(head(features) + reference) * weight``.

        The reference is the per-element term of the ligand's atoms (segments other than
        0): a size and composition baseline (zero unless fitted before training, see
        ``get_md.train.loop.fit_score_reference``) that the network corrects. The weight is
        the contact switch (:func:`contact_weights`; 1 without ``contact_radius``).
        (:mod:`get_md.train.readout` refits the head on these terms.)
        """
        n_blocks = batch_ids.shape[0]
        block_h = torch.nn.functional.normalize(scatter_sum(H, block_ids, n_blocks), dim=-1)
        lig_atom = (segment_ids[block_ids] != 0).to(H.dtype)
        ref = self.atom_ref(atomic_numbers).squeeze(-1).to(H.dtype) * lig_atom
        block_ref = scatter_sum(ref, block_ids, n_blocks)
        if self.contact_radius > 0:
            weight = contact_weights(pos, block_ids, segment_ids, batch_ids, self.contact_radius)
        else:
            weight = torch.ones(n_blocks, dtype=H.dtype, device=H.device)
        return block_h, block_ref, weight

    def _run(
        self,
        positions: torch.Tensor,
        velocities: Optional[torch.Tensor],
        charges: Optional[torch.Tensor],
        atomic_numbers: torch.Tensor,
        block_ids: torch.Tensor,
        atom_positions: torch.Tensor,
        block_types: torch.Tensor,
        segment_ids: torch.Tensor,
        batch_ids: torch.Tensor,
        cell: torch.Tensor,
        pbc: torch.Tensor,
        pairs: Optional[List[torch.Tensor]],
    ) -> Dict[str, torch.Tensor]:
        n_graphs = cell.shape[0]
        atom_batch = batch_ids[block_ids]
        want_forces = self.task == "energy" and self.compute_forces
        want_stress = want_forces and bool(pbc.any())

        grad_was_enabled = torch.is_grad_enabled()
        if want_forces:
            torch.set_grad_enabled(True)
        pos_leaf, pos, cell, strain = strained_inputs(positions, cell, atom_batch, want_forces, want_stress)

        H = self._embed(atomic_numbers, block_ids, atom_positions, block_types)
        if charges is not None:
            H = H + self.charge_embedding(charges.reshape(-1, 1).to(H.dtype))
        Z = pos.unsqueeze(1)
        if self.n_channel == 2:
            vec = velocities if velocities is not None else torch.zeros_like(pos)
            Z = torch.stack([pos, pos + vec], dim=1)
        pair_weight: Optional[torch.Tensor] = None
        pair_shift: Optional[torch.Tensor] = None
        singleton = False
        if self.smooth:
            ps, pd, pg, ga, ge, er, etype, shifts, singleton = self._potential_pairs(
                pos, block_ids, segment_ids, atom_batch, cell, pbc
            )
            r = pos.index_select(0, pd) - pos.index_select(0, ps)
            if bool(pbc.any()):  # periodic images: lattice shift of each pair
                shift_vec = torch.bmm(shifts.unsqueeze(1).to(pos.dtype), cell[atom_batch[ps]]).squeeze(1)
                r = r + shift_vec
                pair_shift = shift_vec
            pair_weight = self._pair_weight(r)
        elif pairs is None:
            ps, pd, pg, ga, ge, er, etype = self._score_pairs(pos, block_ids, batch_ids, segment_ids)
        else:
            ps, pd, pg, ga, ge, er, etype = pairs[0], pairs[1], pairs[2], pairs[3], pairs[4], pairs[5], pairs[6]
        edge_attr: Optional[torch.Tensor] = None
        if self.use_edge_attr:
            edge_attr = self.edge_embedding(etype)

        H, Z_out = self.encoder.run(
            H, Z, block_ids, batch_ids, edge_attr, ps, pd, pg, pair_weight, pair_shift,
            ga, ge, er, not self.smooth, self.task == "vectors", singleton,
        )

        out: Dict[str, torch.Tensor] = {}
        if self.task == "energy":
            energies = self._atom_energies(H, atomic_numbers)
            out = energy_outputs(
                energies, atom_batch, n_graphs, pos_leaf, strain, cell, want_forces, want_stress,
                self.training, grad_was_enabled,
            )
            torch.set_grad_enabled(grad_was_enabled)
        elif self.task == "score":
            block_h, block_ref, block_weight = self._score_terms(H, pos, atomic_numbers, block_ids, segment_ids,
                                                                 batch_ids)
            block_scores = (self.head(block_h).squeeze(-1) + block_ref) * block_weight
            out["block_scores"] = block_scores
            out["score"] = scatter_sum(block_scores, batch_ids, n_graphs)
        else:
            out["vectors"] = Z_out[:, 0, :] - pos
        return out
