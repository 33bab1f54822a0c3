"""The PNG figures of the rescoring jobs: values against time (``rescore-traj --plot``) and
the score of each pose with its members' spread (``rescore-poses --plot``); written
atomically, matplotlib's Agg backend (no screen needed)."""

from __future__ import annotations

import logging

from ..figures import agg_figure, save_png
from .options import PathLike

logger = logging.getLogger("get_md.workflows.trajectory")

_LABELS = {"score": "score (pK)", "interaction_energy_kcal_mol": "interaction energy (kcal/mol)"}


def plot_scores(df, path: PathLike, column: str, title: str = "") -> None:
    """PNG of ``column`` against ``time_ps`` (against ``frame`` when the file's times do
    not increase, as in concatenated trajectories), written atomically."""
    x, xlabel = df["time_ps"], "time (ps)"
    if len(df) > 1 and not bool((x.diff().iloc[1:] > 0).all()):
        logger.warning("times in the trajectory file do not increase; plotting against frame number")
        x, xlabel = df["frame"], "frame"
    with agg_figure(figsize=(7, 3.5)) as (fig, ax):
        ax.plot(x, df[column], lw=1.2, marker="o" if len(df) <= 50 else None, ms=3)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(_LABELS.get(column, column))
        save_png(fig, [ax], path, title)


def plot_pose_scores(table, path: PathLike, column: str, title: str = "") -> None:
    """PNG of ``column`` for each scored pose in input order (x: the pose's record number),
    with the members' spread (``score_std``) as error bars where the table has it, one
    colour per ligand (``name``) and the best pose of each ligand ringed.

    Example:
        >>> plot_pose_scores(df[df.status == "ok"], "poses.png", "score")  # doctest: +SKIP
    """
    df = table.sort_values("pose")
    names = df["name"].fillna("").astype(str) if "name" in df else None
    groups = [("", df)] if names is None or names.nunique() <= 1 else list(df.groupby(names, sort=False))
    higher_is_better = column == "score"
    with agg_figure(figsize=(7, 3.5)) as (fig, ax):
        for i, (name, part) in enumerate(groups):
            err = part["score_std"] if "score_std" in part and column == "score" else None
            color = f"C{i % 10}"
            ax.errorbar(part["pose"], part[column], yerr=err, fmt="o", ms=4, lw=1, capsize=2, color=color,
                        label=name if name and len(groups) <= 12 else None)
            best = part[column].idxmax() if higher_is_better else part[column].idxmin()
            ax.plot(part.loc[best, "pose"], part.loc[best, column], "o", ms=10, mfc="none", mec=color)
        ax.set_xlabel("pose (record in the input file)")
        ax.set_ylabel(_LABELS.get(column, column) + (" ± members' spread" if "score_std" in df and column == "score"
                                                     else ""))
        if any(name for name, _ in groups) and len(groups) <= 12:
            ax.legend(fontsize=7, ncol=2)
        save_png(fig, [ax], path, title)


__all__ = ["plot_pose_scores", "plot_scores"]
