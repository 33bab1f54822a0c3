"""Training curves: loss, per-target MAE and learning rate per epoch, as a PNG.

Example:
    >>> from get_md.train.plots import plot_curves
    >>> plot_curves(result.history, "curves.png")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Mapping, Union

__all__ = ["plot_curves"]


def plot_curves(history: list[Mapping[str, float]], path: Union[str, os.PathLike],
                energy_per_atom: bool = True) -> None:
    """Write training curves (loss, per-target MAE, learning rate) as a PNG (Agg, no pyplot).

    Example:
        >>> plot_curves(result.history, "curves.png")  # doctest: +SKIP
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    if not history:
        return
    epochs = [h["epoch"] for h in history]
    targets = sorted({k[len("valid_"):-len("_mae")] for k in history[0]  # trained targets: a selection
                      if k.startswith("valid_") and k.endswith("_mae")   # metric has no train_ column
                      and f"train_{k[len('valid_'):]}" in history[0]})
    width = 3.6 * (2 + len(targets))
    fig = Figure(figsize=(width, 3.2), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 + len(targets), squeeze=False)[0]

    def positive(vals: list[float]) -> bool:
        return all(v > 0 and math.isfinite(v) for v in vals)

    ax = axes[0]
    for key, style in (("train_loss", "-"), ("valid_loss", "--")):
        vals = [h[key] for h in history]
        ax.plot(epochs, vals, style, marker="o", ms=3, label=key.replace("_", " "))
    if positive([h["train_loss"] for h in history] + [h["valid_loss"] for h in history]):
        ax.set_yscale("log")
    best = [h["epoch"] for h in history if h.get("best")]
    if best:
        ax.axvline(best[-1], color="grey", lw=0.8, ls=":", label=f"best (epoch {int(best[-1])})")
    ax.set_xlabel("epoch")
    ax.set_title("loss")
    ax.legend(fontsize=8)
    units = {"energy": "eV/atom" if energy_per_atom else "eV", "forces": "eV/Å", "score": "pK", "vectors": ""}
    for ax, t in zip(axes[1:-1], targets, strict=True):
        for split, style in (("train", "-"), ("valid", "--")):
            vals = [h[f"{split}_{t}_mae"] for h in history]
            ax.plot(epochs, vals, style, marker="o", ms=3, label=f"{split} MAE")
        if positive([h[f"valid_{t}_mae"] for h in history]):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(f"{t} MAE" + (f" ({units[t]})" if units.get(t) else ""))
        ax.legend(fontsize=8)
    ax = axes[-1]
    ax.plot(epochs, [h["lr"] for h in history], "-", marker="o", ms=3)
    ax.set_xlabel("epoch")
    ax.set_title("learning rate")
    fig.subplots_adjust(left=0.9 / width, right=1 - 0.2 / width, bottom=0.16, top=0.9,
                        wspace=0.35)  # fixed layout: tight_layout costs ~1 s per redraw
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
