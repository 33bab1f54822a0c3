"""Refit the score heads of an ensemble file on frozen features: many passes, little cost.

The affinity members fit the differences within a congeneric series only over hundreds of
passes (``docs/affinity_experiments.md``), and one pass over the training set costs minutes per
member on a CPU. What a member reads out is small, though: each block's unit-length
feature sum goes through a two-layer head, plus the block's reference (ligand atoms'
element terms) and its contact weight (:meth:`get_md.models.get.GET._score_terms`)::

    score = sum over blocks of (head(features) + reference) * weight

With the encoder fixed those per-block terms are computed once (:func:`block_terms`), after
which a full-batch pass over every training complex costs milliseconds, so the heads can
take thousands of steps (:func:`fit_heads`): MSE on pK plus ``series_weight`` x the
within-series error (errors minus their series mean, as ``score_series`` in
:mod:`get_md.train.loss`), Adam, the ensemble's validation ranking (mean Spearman over the
series of at least :data:`~get_md.train.affinity.MIN_SERIES_LIGANDS` ligands) checked
every ``eval_every`` steps; the best state is kept, step 0 (the file as it is) included.

    python -m get_md.train.affinity readout --model get-affinity --data data/affinity \\
        --out get-affinity-readout.pt --steps 3000 --series-weight 1

Example:
    >>> terms = block_terms(ensemble, dataset)             # doctest: +SKIP
    >>> terms[0].scores(ensemble.members[0].head)          # the member's scores  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from get_md.errors import ConfigError
from get_md.nn.scatter import scatter_sum


@dataclass
class BlockTerms:
    """One member's readout inputs over a dataset: per block its features [B, d],
    reference [B], weight [B] and the sample [B] it belongs to (``n`` samples)."""

    features: torch.Tensor
    reference: torch.Tensor
    weight: torch.Tensor
    sample: torch.Tensor
    n: int

    def scores(self, head: nn.Module) -> torch.Tensor:
        """Each sample's score [n] with ``head`` as the member's head."""
        block = (head(self.features).squeeze(-1) + self.reference) * self.weight
        return scatter_sum(block, self.sample, self.n)


def _members(model: nn.Module) -> list[nn.Module]:
    members = list(getattr(model, "members", [model]))
    if not all(hasattr(m, "_score_terms") and hasattr(m, "head") for m in members):
        raise TypeError("readout refits need GET score models (or an ensemble of them)")
    return members


@torch.no_grad()
def block_terms(model: nn.Module, dataset, max_blocks: int = 400) -> list[BlockTerms]:
    """The readout inputs of each member of ``model`` (a score ensemble or one GET score
    model, eager, in eval mode) over every sample of ``dataset``, in dataset order."""
    from get_md.train.batching import BlockBatchSampler, collate

    members = _members(model)
    model.eval()
    records: list[list[tuple]] = [[] for _ in members]
    current: list[torch.Tensor] = []  # dataset index of each structure of the current batch

    def recorder(k: int, original):
        def record(H, pos, atomic_numbers, block_ids, segment_ids, batch_ids):
            h, ref, w = original(H, pos, atomic_numbers, block_ids, segment_ids, batch_ids)
            records[k].append((h, ref, w, current[0].index_select(0, batch_ids)))
            return h, ref, w
        return record

    for k, m in enumerate(members):
        m._score_terms = recorder(k, m._score_terms)  # instance attribute: shadows the method
    try:
        dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
        for idx in BlockBatchSampler(dataset.block_counts(), max_blocks, shuffle=False):
            graph, _ = collate([dataset[i] for i in idx])
            current[:] = [torch.tensor(idx)]
            model(*graph.to(dtype=dtype).inputs())
    finally:
        for m in members:
            del m._score_terms
    return [BlockTerms(torch.cat([r[0] for r in rec]), torch.cat([r[1] for r in rec]),
                       torch.cat([r[2] for r in rec]), torch.cat([r[3] for r in rec]), len(dataset))
            for rec in records]


def _series_index(series: Sequence[str]) -> tuple[torch.Tensor, int]:
    names, index = np.unique(np.asarray(series), return_inverse=True)
    return torch.as_tensor(index, dtype=torch.long), len(names)


def within_series_mse(error: torch.Tensor, series: torch.Tensor, n_series: int) -> torch.Tensor:
    """Mean square of ``error`` minus its series mean (the ``score_series`` term)."""
    count = scatter_sum(torch.ones_like(error), series, n_series)
    mean = scatter_sum(error, series, n_series) / count.clamp(min=1)
    return ((error - mean.index_select(0, series)) ** 2).mean()


def series_spearman(y: np.ndarray, pred: np.ndarray, series: Sequence[str]) -> float:
    """Mean Spearman over the series of at least ``MIN_SERIES_LIGANDS`` samples."""
    from get_md.train.affinity import MIN_SERIES_LIGANDS, ranking_metrics

    series = np.asarray(series)
    names, counts = np.unique(series, return_counts=True)
    big = np.isin(series, names[counts >= MIN_SERIES_LIGANDS])
    return ranking_metrics(y[big], pred[big], series[big])["mean_spearman"]


def fit_heads(
    heads: Sequence[nn.Module],
    train: Sequence[BlockTerms],
    y_train: np.ndarray,
    series_train: Sequence[str],
    valid: Sequence[BlockTerms],
    y_valid: np.ndarray,
    series_valid: Sequence[str],
    steps: int = 3000,
    lr: float = 1e-3,
    series_weight: float = 1.0,
    weight_decay: float = 0.0,
    eval_every: int = 50,
) -> tuple[list[nn.Module], list[dict]]:
    """Copies of ``heads`` (one per member) trained on ``train`` terms, full batch; returns
    the state with the best validation ranking of the members' mean (step 0 included) and
    the validation curve ``[{"step", "valid_series_spearman", "valid_rmse", "train_loss"}]``."""
    heads = [copy.deepcopy(h).train() for h in heads]
    params = [p for h in heads for p in h.parameters()]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    y = torch.as_tensor(y_train, dtype=train[0].features.dtype)
    s_index, n_series = _series_index(series_train)

    def check(step: int, loss: float) -> dict:
        with torch.no_grad():
            pred = torch.stack([t.scores(h) for t, h in zip(valid, heads)]).mean(0).double().numpy()  # noqa: B905
        return {"step": step, "valid_series_spearman": series_spearman(y_valid, pred, series_valid),
                "valid_rmse": float(np.sqrt(np.mean((pred - y_valid) ** 2))), "train_loss": loss}

    curve = [check(0, float("nan"))]
    if not np.isfinite(curve[0]["valid_series_spearman"]):
        raise ConfigError("readout refit: no validation series with enough ligands to rank "
                          "(see get_md.train.affinity.MIN_SERIES_LIGANDS)")
    best, best_state = curve[0]["valid_series_spearman"], [copy.deepcopy(h.state_dict()) for h in heads]
    for step in range(1, steps + 1):
        opt.zero_grad()
        loss = torch.zeros((), dtype=y.dtype)
        for t, h in zip(train, heads):  # noqa: B905
            err = t.scores(h) - y
            loss = loss + (err ** 2).mean() + series_weight * within_series_mse(err, s_index, n_series)
        loss.backward()
        opt.step()
        if step % eval_every == 0 or step == steps:
            curve.append(check(step, loss.item() / len(heads)))
            if curve[-1]["valid_series_spearman"] > best:
                best = curve[-1]["valid_series_spearman"]
                best_state = [copy.deepcopy(h.state_dict()) for h in heads]
    for h, state in zip(heads, best_state):  # noqa: B905
        h.load_state_dict(state)
        h.eval()
    return heads, curve


def _labels(dataset) -> tuple[np.ndarray, list[str]]:
    from get_md.datasets.affinity import sample_series
    from get_md.train.affinity import score_labels

    return score_labels(dataset), [sample_series(s) for s in dataset]


def refit(model_path: str, data: str, out: str, steps: int = 3000, lr: float = 1e-3,
          series_weight: float = 1.0, weight_decay: float = 0.0, eval_every: int = 50,
          command: Optional[str] = None) -> dict:
    """Refit the heads of the score-model file ``model_path`` on ``data/train.pt``, choose
    the step on ``data/valid.pt``, evaluate on ``valid.pt`` and ``test.pt`` as
    :func:`get_md.train.affinity.ship` does, and write the result to ``out`` (metadata of
    the input file kept; ``readout`` records the settings and the validation curve)."""
    from get_md import export
    from get_md.runtime import resolve_model_path
    from get_md.train.affinity import evaluate
    from get_md.train.data import MolecularDataset

    path = resolve_model_path(model_path, task="score")
    model, meta = export.rebuild(path)
    train = MolecularDataset.load(Path(data) / "train.pt")
    valid = MolecularDataset.load(Path(data) / "valid.pt")
    y_t, s_t = _labels(train)
    y_v, s_v = _labels(valid)
    members = _members(model)
    heads, curve = fit_heads([m.head for m in members], block_terms(model, train), y_t, s_t,
                             block_terms(model, valid), y_v, s_v, steps=steps, lr=lr,
                             series_weight=series_weight, weight_decay=weight_decay, eval_every=eval_every)
    for m, h in zip(members, heads):  # noqa: B905
        m.head.load_state_dict(h.state_dict())
    best = max(curve, key=lambda c: c["valid_series_spearman"])
    metrics = evaluate(model, MolecularDataset.load(Path(data) / "test.pt"))
    validation = evaluate(model, valid)
    keep = export.carried_metadata(meta)
    keep["metrics"] = {"held_out": metrics, "validation": validation}
    keep["readout"] = {"from": str(path), "from_weights_sha256": meta.get("weights_sha256"), "steps": steps,
                       "lr": lr, "series_weight": series_weight, "weight_decay": weight_decay,
                       "best_step": best["step"], "curve": curve}
    if command:
        keep["command"] = command
    written = export.save(model, out, keep)
    return {"path": str(out), "best_step": best["step"], "curve": curve, "metrics": metrics,
            "validation": validation, "weights_sha256": written["weights_sha256"]}


__all__ = ["BlockTerms", "block_terms", "fit_heads", "refit", "series_spearman", "within_series_mse"]
