"""Learning-rate schedules and early stopping of the training loop.

* :func:`exponential` — ``lr * gamma**epoch``, stepped once per epoch (the core trainer);
* :func:`warmup_cosine` — linear warm-up then cosine decay to ``lr * min_ratio``, stepped
  once per optimiser step (the N-body trainer);
* :class:`EarlyStopping` — the best validation metric so far, its epoch, and the count of
  epochs without improvement; part of every checkpoint.

Example:
    >>> stop = EarlyStopping(patience=2)
    >>> [stop.update(v, e) for e, v in enumerate([3.0, 2.0, 2.5, 2.4], start=1)]
    [True, True, False, False]
    >>> stop.stopped, stop.best_epoch
    (True, 2)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch

__all__ = ["EarlyStopping", "exponential", "warmup_cosine", "warmup_cosine_factor"]


def exponential(optimizer: torch.optim.Optimizer, gamma: float) -> torch.optim.lr_scheduler.LRScheduler:
    """``lr * gamma**k`` after ``k`` scheduler steps (one per epoch in the core loop)."""
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)


def warmup_cosine_factor(step: int, total: int, warmup: int, floor: float) -> float:
    """LR factor at ``step``: linear ramp over ``warmup`` steps, then cosine from 1 to ``floor``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    t = min(1.0, (step - warmup) / span)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                  min_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    """:func:`warmup_cosine_factor` as a scheduler, to be stepped after every optimiser step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_factor(step, total_steps, warmup_steps, min_ratio))


@dataclass
class EarlyStopping:
    """Tracks the best validation metric (lower is better) and stops after ``patience``
    validations without an improvement of more than ``min_delta`` (``patience=None``: never).
    """

    patience: Optional[int] = None
    min_delta: float = 0.0
    best: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped: bool = False

    def update(self, metric: float, epoch: int) -> bool:
        """Record one validation; returns whether it is the new best."""
        improved = metric < self.best - self.min_delta
        if improved:
            self.best, self.best_epoch, self.bad_epochs = metric, epoch, 0
        else:
            self.bad_epochs += 1
        self.stopped = self.patience is not None and self.bad_epochs >= self.patience
        return improved

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint entries (``best_valid_loss`` holds the best selection metric)."""
        return {"best_valid_loss": self.best, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "stopped_early": self.stopped}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best, self.best_epoch = float(state["best_valid_loss"]), int(state["best_epoch"])
        self.bad_epochs, self.stopped = int(state["bad_epochs"]), bool(state["stopped_early"])
