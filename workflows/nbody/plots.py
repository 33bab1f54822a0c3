"""Rollout figures: trajectories (model vs simulator) and energy / momentum drift (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure on the Agg canvas (no pyplot state, safe in threads)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_trajectories(ref_loc: np.ndarray, pred: np.ndarray, q: np.ndarray, path: Path, title: str) -> None:
    """xy, xz and yz projections of reference [T, N, 3] and predicted [K, N, 3] positions."""
    fig = _figure(13, 4.4)
    axes = fig.subplots(1, 3)
    colors = [f"C{i % 10}" for i in range(ref_loc.shape[1])]
    for ax, (a, b), lab in zip(axes, ((0, 1), (0, 2), (1, 2)), ("xy", "xz", "yz"), strict=True):
        for i in range(ref_loc.shape[1]):
            ax.plot(ref_loc[:, i, a], ref_loc[:, i, b], "-", color=colors[i], lw=1.2,
                    label=f"particle {i} (q={q[i]:+g}) reference" if lab == "xy" else None)
            ax.plot(pred[:, i, a], pred[:, i, b], "--o", color=colors[i], lw=1.0, ms=3, alpha=0.8,
                    label="model" if (lab == "xy" and i == 0) else None)
            ax.plot(ref_loc[0, i, a], ref_loc[0, i, b], "k*", ms=7)
        ax.set_xlabel("xyz"[a])
        ax.set_ylabel("xyz"[b])
        ax.set_title(f"{lab} projection")
        ax.set_aspect("equal", adjustable="datalim")
    axes[0].legend(fontsize=6, loc="best")
    fig.suptitle(f"{title} (solid: simulator, dashed: model, *: start)", fontsize=9)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.12, top=0.86, wspace=0.3)
    fig.savefig(path, format="png")


def plot_drift(times: np.ndarray, e_ref: np.ndarray, e_pred: np.ndarray, p_ref: np.ndarray,
               p_pred: np.ndarray, mse: np.ndarray, path: Path) -> None:
    """Energy drift, momentum drift and position MSE against time, simulator vs model."""
    fig = _figure(13, 3.8)
    axes = fig.subplots(1, 3)
    axes[0].plot(times, e_ref - e_ref[0], "-o", ms=3, label="simulator")
    axes[0].plot(times, e_pred - e_pred[0], "--o", ms=3, label="model")
    axes[0].set_title("total energy drift E(t) - E(0)")
    axes[1].plot(times, np.linalg.norm(p_ref - p_ref[0], axis=-1), "-o", ms=3, label="simulator")
    axes[1].plot(times, np.linalg.norm(p_pred - p_pred[0], axis=-1), "--o", ms=3, label="model")
    axes[1].set_title("|P(t) - P(0)| (total momentum drift)")
    axes[2].plot(times[1:], mse[1:], "-o", ms=3, color="C3")
    if np.all(mse[1:] > 0):
        axes[2].set_yscale("log")
    axes[2].set_title("position MSE vs simulator")
    for ax in axes:
        ax.set_xlabel("time")
        if ax is not axes[2]:
            ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.15, top=0.9, wspace=0.3)
    fig.savefig(path, format="png")
