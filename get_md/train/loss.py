"""Weighted per-target losses (MSE or MAE) and epoch metrics.

Energy errors can be taken per atom (``energy_per_atom``), so that structures of
different size weigh alike. Forces and vectors errors are per Cartesian component.

Example:
    >>> import torch
    >>> loss_fn = WeightedLoss({"energy": 1.0, "forces": 10.0})
    >>> out = {"energy": torch.tensor([1.0]), "forces": torch.zeros(2, 3)}
    >>> ref = {"energy": torch.tensor([0.0]), "forces": torch.zeros(2, 3)}
    >>> loss, terms = loss_fn(out, ref, num_atoms=torch.tensor([2]))
    >>> float(loss)
    0.25
"""

from __future__ import annotations

from typing import Mapping, Optional, Union

import torch

from get_md.errors import LossError
from get_md.train.data import LABELS, TARGETS

KINDS = ("mse", "mae")
#: Loss terms derived from a data target: ``score_series`` is the score error minus its
#: mean over the structures of the same series in the batch (see :func:`series_centred`).
DERIVED = {"score_series": "score"}


def series_centred(err: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Errors minus their mean within each group, for the groups of two or more [n'].

    Zero when the predictions of a group are its references shifted by one constant: a
    loss on these ranks (and spaces) the members of a congeneric series without asking
    the model for each series' offset. Singleton groups carry no such information and
    are left out.

    Example:
        >>> import torch
        >>> series_centred(torch.tensor([1.0, 3.0, 5.0]), torch.tensor([0, 0, 1]))
        tensor([-1.,  1.])
    """
    _, inverse, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    sums = torch.zeros(counts.shape[0], dtype=err.dtype, device=err.device).index_add_(0, inverse, err)
    keep = counts[inverse] > 1
    return (err - sums[inverse] / counts[inverse].to(err.dtype))[keep]


class WeightedLoss:
    """Σ_t w_t · L_t with L_t the MSE or MAE of target t.

    Args:
        weights: target name -> weight (targets with weight 0 are only monitored).
        kind: "mse" or "mae", for all targets or per target.
        energy_per_atom: divide energy errors by the structure's atom count.
        neutral_energy_only: when the targets carry a ``charge`` label, score energies
            of neutral structures only (a charge-blind model cannot know the energy
            offset of an ion); forces of all structures are still used.
    """

    def __init__(self, weights: Mapping[str, float], kind: Union[str, Mapping[str, str]] = "mse",
                 energy_per_atom: bool = True, neutral_energy_only: bool = False) -> None:
        unknown = sorted(set(weights) - (set(TARGETS) - set(LABELS)) - set(DERIVED))
        if unknown:
            raise LossError(f"unknown loss targets {unknown}; expected some of "
                            f"{sorted((set(TARGETS) - set(LABELS)) | set(DERIVED))}")
        self.weights = {k: float(v) for k, v in weights.items()}
        kinds = {k: kind for k in self.weights} if isinstance(kind, str) else dict(kind)
        stray = sorted(set(kinds) - set(self.weights))
        if stray:  # a misspelt target would leave the real one at the default kind
            raise LossError(f"loss kinds name targets {stray} that the loss does not weigh; "
                            f"weighted targets: {sorted(self.weights)}")
        for k in self.weights:
            kinds.setdefault(k, "mse")
        bad = {k: v for k, v in kinds.items() if v not in KINDS}
        if bad:
            raise LossError(f"loss kind must be one of {KINDS}, got {bad}")
        self.kinds = kinds
        self.energy_per_atom = bool(energy_per_atom)
        self.neutral_energy_only = bool(neutral_energy_only)

    @property
    def targets(self) -> list[str]:
        return sorted(self.weights)

    @property
    def needs_groups(self) -> bool:
        """Whether :meth:`errors` needs each structure's group (a ``score_series`` term)."""
        return any(name in DERIVED for name in self.weights)

    def errors(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor],
               num_atoms: Optional[torch.Tensor] = None,
               groups: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """Prediction minus reference for each weighted target (energy per atom if set);
        ``groups`` [G]: each structure's series, for ``score_series``."""
        errs = {}
        for name in self.targets:
            if name in DERIVED:
                continue
            if name not in targets:
                raise LossError(f"loss needs target {name!r} but the data has {sorted(targets)}")
            if name not in outputs:
                hint = " (does the model compute forces?)" if name == "forces" else ""
                raise LossError(
                    f"loss needs model output {name!r} but the model gives {sorted(outputs)}{hint}"
                )
            pred, ref = outputs[name], targets[name].to(outputs[name].dtype)
            if pred.shape != ref.shape:
                raise LossError(f"output {name!r} has shape {tuple(pred.shape)}, target {tuple(ref.shape)}")
            err = pred - ref
            if name == "energy" and self.energy_per_atom:
                if num_atoms is None:
                    raise LossError("energy_per_atom needs the atom count of each structure")
                err = err / num_atoms.to(err)
            if name == "energy" and self.neutral_energy_only and "charge" in targets:
                err = err[targets["charge"].reshape(-1) == 0]
            errs[name] = err
        for name, base in DERIVED.items():
            if name not in self.weights:
                continue
            if groups is None:
                raise LossError(f"loss term {name!r} needs the series of each structure")
            if base not in targets or base not in outputs:
                raise LossError(f"loss term {name!r} needs target and output {base!r}")
            err = outputs[base] - targets[base].to(outputs[base].dtype)
            errs[name] = series_centred(err.reshape(-1), groups.to(err.device))
        return errs

    def reduce(self, errs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted total and per-target losses from :meth:`errors`."""
        terms = {}
        total: Optional[torch.Tensor] = None
        for name, err in errs.items():
            if err.numel() == 0:  # e.g. a batch of ions under neutral_energy_only
                term = err.sum()
            else:
                term = err.pow(2).mean() if self.kinds[name] == "mse" else err.abs().mean()
            terms[name] = term
            total = self.weights[name] * term if total is None else total + self.weights[name] * term
        if total is None:
            raise LossError("no loss targets")
        return total, terms

    def __call__(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor],
                 num_atoms: Optional[torch.Tensor] = None,
                 groups: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Loss of one batch: ``(total, {target: term})``.

        Args:
            outputs: model outputs.
            targets: batched targets (see ``collate``).
            num_atoms: [G] atom count per structure (for ``energy_per_atom``).
            groups: [G] series of each structure (for ``score_series``).
        """
        return self.reduce(self.errors(outputs, targets, num_atoms, groups))

    def epoch_loss(self, metrics: MetricAccumulator) -> float:
        """The loss over a whole epoch from accumulated errors (independent of batching)."""
        total = 0.0
        for name in self.targets:
            total += self.weights[name] * metrics.mean(name, self.kinds[name])
        return total


class MetricAccumulator:
    """Sums of absolute and squared errors over an epoch; MAE and RMSE per target.

    Example:
        >>> import torch
        >>> acc = MetricAccumulator()
        >>> acc.update({"energy": torch.tensor([1.0, -3.0])})
        >>> acc.compute()["energy_mae"]
        2.0
    """

    def __init__(self) -> None:
        self.abs: dict[str, float] = {}
        self.sq: dict[str, float] = {}
        self.count: dict[str, int] = {}

    def update(self, errs: Mapping[str, torch.Tensor]) -> None:
        for name, err in errs.items():
            e = err.detach().double()
            self.abs[name] = self.abs.get(name, 0.0) + float(e.abs().sum())
            self.sq[name] = self.sq.get(name, 0.0) + float(e.pow(2).sum())
            self.count[name] = self.count.get(name, 0) + e.numel()

    def mean(self, name: str, kind: str = "mse") -> float:
        n = max(self.count.get(name, 0), 1)
        return (self.sq.get(name, 0.0) if kind == "mse" else self.abs.get(name, 0.0)) / n

    def compute(self) -> dict[str, float]:
        """``{"<target>_mae": ..., "<target>_rmse": ...}`` for each target seen."""
        out = {}
        for name in sorted(self.count):
            out[f"{name}_mae"] = self.mean(name, "mae")
            out[f"{name}_rmse"] = self.mean(name, "mse") ** 0.5
        return out
