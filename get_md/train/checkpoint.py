"""Files of a training run: atomic saves, checkpoints, RNG states and ``log.csv``.

A run's output directory holds ``log.csv`` (one row per epoch, appended and fsynced as
it goes), ``checkpoint.pt`` (everything needed to resume, replaced atomically every
epoch), ``best.pt`` (the weights with the best validation metric), ``curves.png`` and,
at the end, ``model.pt``. On resume the log is cut back to the checkpoint's epoch, so a
kill between the two writes neither loses nor duplicates rows.

Example:
    >>> from get_md.train.checkpoint import format_value
    >>> format_value(3.0), format_value(0.5)
    ('3', '0.5')
"""

from __future__ import annotations

import csv
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from get_md.atomic import atomic_path
from get_md.errors import TrainError

__all__ = [
    "BEST_NAME", "CHECKPOINT_FORMAT", "CHECKPOINT_NAME", "CHECKPOINT_VERSION", "CURVES_NAME",
    "LOG_NAME", "MODEL_NAME", "append_row", "atomic_torch_save", "format_value", "init_weights", "read_init",
    "load_checkpoint", "read_log", "rng_state", "seed_everything", "set_rng_state", "write_log",
]

CHECKPOINT_FORMAT = "get_md.checkpoint"
CHECKPOINT_VERSION = 1
LOG_NAME = "log.csv"
CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"
MODEL_NAME = "model.pt"
CURVES_NAME = "curves.png"


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename it over ``path``."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


# ----------------------------------------------------------------------------- RNG
def rng_state() -> dict:
    """The torch, Python and NumPy (and initialised CUDA) RNG states, as tensors and numbers."""
    import numpy as np

    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"name": np_state[0], "key": torch.from_numpy(np_state[1].astype("int64")),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (the generators it holds; others are left alone)."""
    import numpy as np

    torch.set_rng_state(state["torch"])
    if "python" in state:
        py = state["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state((n["name"], n["key"].numpy().astype("uint32"), n["pos"],
                             n["has_gauss"], n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- checkpoints
def load_checkpoint(path: Path) -> dict:
    """Read a training checkpoint written by the loop; a clear error for anything else."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several kinds for bad files
        raise TrainError(f"{path}: cannot read checkpoint ({e}); move it away to start over") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"{path}: not a get_md training checkpoint")
    return ckpt


def read_init(path: str) -> dict:
    """A ``best.pt`` / ``checkpoint.pt`` file (fine-tuning start): its ``model`` weights and,
    where recorded, ``model_config``; a clear error for anything else."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several kinds for bad files
        raise TrainError(f"{path}: cannot read initial weights ({e})") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise TrainError(f"{path}: not a get_md checkpoint (no 'model' weights)")
    return ckpt


def init_weights(path: str) -> dict:
    """Model weights of a ``best.pt`` / ``checkpoint.pt`` file (fine-tuning start)."""
    return read_init(path)["model"]


# ----------------------------------------------------------------------------- log.csv
def read_log(path: Path, columns: Sequence[str], up_to_epoch: int) -> list[dict[str, float]]:
    """Rows of an existing log with epoch <= ``up_to_epoch``; rewrites the file if it had more."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return []
    if rows[0] != list(columns):
        raise TrainError(f"{path}: columns {rows[0]} differ from this run's {list(columns)}; "
                         "use a new output_dir")
    kept: list[list[str]] = []
    for r in rows[1:]:
        if len(r) != len(columns):
            break  # a partial last line from a kill
        try:
            if int(r[0]) > up_to_epoch:
                break
        except ValueError:
            break
        kept.append(r)
    if len(kept) != len(rows) - 1:
        write_log(path, columns, kept)
    return [{c: float(v) for c, v in zip(columns, r, strict=True)} for r in kept]


def write_log(path: Path, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Replace ``path`` atomically with the header and already formatted ``rows``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows(rows)
    os.replace(tmp, path)


def append_row(path: Path, columns: Sequence[str], row: Mapping[str, float]) -> None:
    """Append one row (the header first if the file is new); a missing column is written as nan."""
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(columns)
        w.writerow([format_value(row.get(c, float("nan"))) for c in columns])
        f.flush()
        os.fsync(f.fileno())


def format_value(v: float) -> str:
    """Integers (and integral floats) without a decimal point, other floats by ``repr``."""
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 2**53):
        return str(int(v))
    return repr(float(v))
