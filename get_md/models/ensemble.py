"""An ensemble of score models in one module: mean score and the members' spread.

``ScoreEnsemble`` holds M models of one architecture (trained with different
seeds) and returns, for a batched graph:

* ``score`` [G]: the members' mean (pK for affinity models);
* ``score_std`` [G]: their standard deviation (population, over members): how far
  the members disagree, a measure of how sure the ensemble is;
* ``member_scores`` [G, M]: each member's score;
* ``block_scores`` [B]: the members' mean per-block contributions (they sum to ``score``);
* ``pose_score`` [G] (only with ``pose_members``): the mean of members trained to tell
  near-native poses from docked decoys (about 1 within 2 Å of the binding mode, 0 far from
  it; see :mod:`get_md.datasets.pose_quality`).

It exports like any get_md model (``get_md.export.save``): family ``get``, task
``score``, and a ``config`` from which :func:`build_ensemble` rebuilds it.

Example:
    >>> import torch
    >>> from get_md.graph import MolecularGraph
    >>> m = build_ensemble("get", members=2, d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1,
    ...                    mode="score", task="score")
    >>> g = MolecularGraph.from_atoms(torch.randn(5, 3), torch.tensor([6, 6, 8, 7, 6]))
    >>> sorted(m(*g.inputs()))
    ['block_scores', 'member_scores', 'score', 'score_std']
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn

from get_md.errors import ConfigError


class ScoreEnsemble(nn.Module):
    """Mean and spread of the scores of ``members`` (models with task ``score``).

    Args:
        members: score models of one family and configuration.
        elements: supported atomic numbers (metadata only; None = the members').
    """

    __jit_ignored_attributes__ = ["config", "builder"]
    __constants__ = ["shared_pairs"]
    #: what rebuilds it from a file's ``config`` (written to the metadata by ``export.save``)
    builder = "get_md.models.ensemble:build_ensemble"

    def __init__(self, members: Sequence[nn.Module], elements: Optional[List[int]] = None,
                 pose_members: Sequence[nn.Module] = ()):
        super().__init__()
        if len(members) < 1:
            raise ConfigError("an ensemble needs at least one member")
        tasks = {getattr(m, "task", None) for m in members}
        if tasks != {"score"}:
            raise ConfigError(f"ensemble members must be score models, got tasks {sorted(map(str, tasks))}")
        first = members[0]
        member_config = dict(getattr(first, "config", {}) or {})
        for m in [*members[1:], *pose_members]:
            if dict(getattr(m, "config", {}) or {}) != member_config:
                raise ConfigError("ensemble members (pose members too) must share one configuration")
        self.members = nn.ModuleList(members)
        self.pose_members = nn.ModuleList(pose_members)
        self.n_pose_members = len(pose_members)
        self.family = str(getattr(first, "family", "get"))
        self.task = "score"
        self.cutoff = float(getattr(first, "cutoff", 0.0))
        self.n_members = len(members)
        self.elements = elements if elements is not None else member_config.get("elements")
        self.config = dict(member_config, members=len(members))
        if pose_members:
            self.config["pose_members"] = len(pose_members)
        #: whether the members share one pair list (GET members in score mode)
        self.shared_pairs = all(hasattr(m, "score_pairs") and not getattr(m, "smooth", True)
                                for m in [*members, *pose_members])

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
        """Ensemble outputs for a (batched) graph; see the module docstring."""
        scores: List[torch.Tensor] = []
        blocks: List[torch.Tensor] = []
        poses: List[torch.Tensor] = []
        if self.shared_pairs:
            # GET members in score mode share one k-NN block graph (it depends only on the
            # structure and on the configuration they share): built once, not per member
            pairs = self.members[0].score_pairs(positions, atomic_numbers, block_ids, batch_ids, segment_ids)
            for member in self.members:
                out = member.forward_with_pairs(positions, atomic_numbers, block_ids, atom_positions,
                                                block_types, segment_ids, batch_ids, cell, pbc, pairs)
                scores.append(out["score"])
                blocks.append(out["block_scores"])
            for member in self.pose_members:
                out = member.forward_with_pairs(positions, atomic_numbers, block_ids, atom_positions,
                                                block_types, segment_ids, batch_ids, cell, pbc, pairs)
                poses.append(out["score"])
        else:
            for member in self.members:
                out = member(positions, atomic_numbers, block_ids, atom_positions, block_types,
                             segment_ids, batch_ids, cell, pbc)
                scores.append(out["score"])
                blocks.append(out["block_scores"])
            for member in self.pose_members:
                out = member(positions, atomic_numbers, block_ids, atom_positions, block_types,
                             segment_ids, batch_ids, cell, pbc)
                poses.append(out["score"])
        member_scores = torch.stack(scores, dim=1)
        result = {
            "score": member_scores.mean(dim=1),
            "score_std": member_scores.std(dim=1, unbiased=False),
            "member_scores": member_scores,
            "block_scores": torch.stack(blocks, dim=0).mean(dim=0),
        }
        if len(poses) > 0:
            result["pose_score"] = torch.stack(poses, dim=1).mean(dim=1)
        return result


def build_ensemble(family: str = "get", members: int = 4, pose_members: int = 0,
                   **config: Any) -> ScoreEnsemble:
    """An ensemble of ``members`` (and ``pose_members``) freshly built score models of
    ``family``, all of one ``config``.

    The builder ``get_md.export.rescript`` uses for ensemble files
    (metadata ``builder: "get_md.models.ensemble:build_ensemble"``).

    Example:
        >>> m = build_ensemble("get", members=3, d_hidden=16, d_radial=8, n_rbf=8, n_head=2,
        ...                    n_layers=1, mode="score", task="score")
        >>> m.n_members
        3
    """
    from get_md.models import build_model

    return ScoreEnsemble([build_model(family, **config) for _ in range(int(members))],
                         pose_members=[build_model(family, **config) for _ in range(int(pose_members))])


__all__ = ["ScoreEnsemble", "build_ensemble"]
