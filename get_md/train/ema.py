"""An exponential moving average (EMA) of a model's weights, for validation and export.

Training with Adam at a constant-ish learning rate leaves the weights jittering around a
minimum; a score model's validation loss then jumps from epoch to epoch (0.9 → 1.4 → 1.0
pK² for the affinity members) and early stopping picks whichever epoch happened to land
low. The average of the weights over the last ~``1 / (1 - decay)`` optimiser steps is
meant to sit nearer the middle of that jitter; on the affinity members (decay 0.999, 711
steps an epoch) it smoothed one member's validation curve and not another's, and was not
adopted (docs/affinity_experiments.md, "With a moving average of the weights"). The average is torch's own
(:class:`torch.optim.swa_utils.AveragedModel` with an EMA update); this module only swaps
it in for validation and out again for training.

Example:
    >>> import torch
    >>> net = torch.nn.Linear(2, 1)
    >>> ema = WeightAverage(net, decay=0.9)
    >>> ema.update(net)                  # after every optimiser step
    >>> ema.swap_in(net)                 # validate / save with the averaged weights
    >>> ema.restore(net)                 # and train on with the trained ones
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from get_md.errors import ConfigError, TrainError


class WeightAverage:
    """The EMA of ``model``'s parameters and buffers (``decay`` per :meth:`update`)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"ema_decay must be in (0, 1), got {decay!r}")
        self.decay = float(decay)
        self.average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.decay),
                                     use_buffers=True)
        self._trained: Optional[dict[str, torch.Tensor]] = None

    def update(self, model: torch.nn.Module) -> None:
        """Fold the current weights into the average (the first call copies them)."""
        self.average.update_parameters(model)

    def weights(self) -> dict[str, torch.Tensor]:
        """The averaged weights, as ``model.state_dict()`` keys."""
        return self.average.module.state_dict()

    def swap_in(self, model: torch.nn.Module) -> None:
        """Load the averaged weights into ``model``, keeping the trained ones for :meth:`restore`."""
        self._trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.weights())

    def restore(self, model: torch.nn.Module) -> None:
        """Put back the trained weights that :meth:`swap_in` replaced."""
        if self._trained is None:
            raise TrainError("WeightAverage.restore() without swap_in(): no trained weights kept")
        model.load_state_dict(self._trained)
        self._trained = None

    def state_dict(self) -> dict:
        return self.average.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.average.load_state_dict(state)
