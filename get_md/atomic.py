"""Atomic file writes: a kill at any point leaves either the old file or the complete new one.

Everything get_md writes that a later run reads back (model files, datasets,
checkpoints, result tables) goes through these two context managers.

Example:
    >>> import os, tempfile, torch
    >>> d = tempfile.mkdtemp()
    >>> with atomic_path(os.path.join(d, "x.pt")) as tmp:
    ...     torch.save({"a": 1}, tmp)
    >>> sorted(os.listdir(d))
    ['x.pt']
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


def _usual_mode(tmp: str) -> None:
    """mkstemp creates files readable by the owner only; give them the umask's mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_output(path: PathLike, mode: str = "w", **open_kw: Any) -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success fsync it and ``os.replace`` it.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> with atomic_output(os.path.join(d, "a.txt")) as fh:
        ...     _ = fh.write("done\\n")
        >>> open(os.path.join(d, "a.txt")).read()
        'done\\n'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_kw) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        _usual_mode(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix) for writers that want a file name
    (``torch.save``, ``np.savez``, matplotlib); moved onto ``path`` when the block ends
    without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        _usual_mode(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
