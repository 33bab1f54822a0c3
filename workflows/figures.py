"""PNG figures of the workflows' ``--plot`` options (``rescore-traj``, ``rescore-poses``,
``md``): a pyplot figure on the Agg backend (no screen needed) and one way to finish and
save it atomically.

Example:
    >>> with agg_figure(figsize=(4, 3)) as (fig, ax):   # doctest: +SKIP
    ...     ax.plot([0, 1], [1, 0])
    ...     save_png(fig, [ax], "line.png", title="a line")
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, Sequence, Union

from get_md.atomic import atomic_path


@contextlib.contextmanager
def agg_figure(*grid: int, **kwargs: Any) -> Iterator[tuple[Any, Any]]:
    """``(fig, axes)`` of ``plt.subplots(*grid, dpi=120, **kwargs)`` on matplotlib's Agg
    backend; the figure is closed when the block ends."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(*grid, dpi=120, **kwargs)
    try:
        yield fig, axes
    finally:
        plt.close(fig)


def save_png(fig: Any, axes: Sequence[Any], path: Union[str, os.PathLike], title: str = "") -> None:
    """Title (on the first of ``axes``, when given), a light grid on each, tight layout,
    and the figure written to ``path`` as a PNG, atomically."""
    if title:
        axes[0].set_title(title, fontsize=9)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


__all__ = ["agg_figure", "save_png"]
