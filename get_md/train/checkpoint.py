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
import zipfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import torch

from get_md.atomic import atomic_path
from get_md.errors import TrainError

__all__ = [
    "BEST_NAME", "CHECKPOINT_FORMAT", "CHECKPOINT_NAME", "CHECKPOINT_VERSION", "CURVES_NAME",
    "LOG_NAME", "MODEL_NAME", "append_row", "atomic_torch_save", "format_value", "init_weights",
    "load_checkpoint", "load_torch_file", "read_init", "read_log", "rng_state", "seed_everything",
    "set_rng_state", "torch_file_problem", "torch_load_reason", "write_log",
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


# ----------------------------------------------------------------------------- torch files
#: First byte of the legacy (pre-zip) ``torch.save`` format: a pickle stream.
_PICKLE_START = b"\x80"


def torch_file_problem(path: Union[str, os.PathLike], what: str = "checkpoint") -> Optional[str]:
    """Why ``path`` cannot be a ``torch.save`` file, or None if it may be one (cheap: reads
    the head and the zip directory only). ``what`` names the kind of file in the message.

    Example:
        >>> torch_file_problem("/")
        'is a directory, not a checkpoint'
    """
    path = Path(path)
    if path.is_dir():
        return f"is a directory, not a {what}"
    if not path.is_file():
        return f"{what} not found"
    if path.stat().st_size == 0:
        return "empty file"
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(_PICKLE_START):
        return None  # legacy torch.save format: torch.load says more
    if not zipfile.is_zipfile(path):
        if head == b"PK\x03\x04":
            return f"truncated or damaged {what} (incomplete zip archive)"
        return f"not a torch {what} (not a zip archive)"
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        return f"damaged {what} ({e})"
    if not any(n.endswith("/data.pkl") for n in names):
        return f"not a torch {what} (zip without torch records)"
    return None


def torch_load_reason(error: BaseException) -> str:
    """One line for a ``torch.load(weights_only=True)`` failure, without torch's advice to
    load unsafely (``weights_only=False`` can run arbitrary code).

    Example:
        >>> torch_load_reason(RuntimeError("Weights only load failed. Re-running ... "
        ...                                "WeightsUnpickler error: \\n\\nUnsupported operand 103\\n"))
        'safe (weights-only) loading failed: Unsupported operand 103'
    """
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        rest = [ln.strip() for ln in text.split(marker, 1)[1].splitlines() if ln.strip()]
        detail = rest[0].split(". ")[0] if rest else type(error).__name__
        return f"safe (weights-only) loading failed: {detail}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or "weights_only" in lines[0]:
        return f"safe (weights-only) loading failed: {type(error).__name__}"
    return lines[0]


def load_torch_file(path: Union[str, os.PathLike], what: str, error: type[Exception] = TrainError,
                    context: str = "", hint: str = "") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a bad file raises
    ``error("PATH: [context: ]problem[; hint]")``, one line, never torch's advice to load
    it unsafely."""
    lead = f"{path}: {context}: " if context else f"{path}: "
    tail = f"; {hint}" if hint else ""
    problem = torch_file_problem(path, what)
    if problem is not None:
        raise error(f"{lead}{problem}{tail}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several kinds for bad files
        raise error(f"{lead}cannot read {what} ({torch_load_reason(e)}){tail}") from e


# ----------------------------------------------------------------------------- checkpoints
def load_checkpoint(path: Path) -> dict:
    """Read a training checkpoint written by the loop; a clear error for anything else."""
    ckpt = load_torch_file(path, "checkpoint", TrainError, hint="move it away to start over")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainError(f"{path}: not a get_md training checkpoint")
    return ckpt


def read_init(path: str) -> dict:
    """A ``best.pt`` / ``checkpoint.pt`` file (fine-tuning start): its ``model`` weights and,
    where recorded, ``model_config``; a clear error for anything else."""
    ckpt = load_torch_file(path, "checkpoint", TrainError, context="cannot read initial weights")
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise TrainError(f"{path}: not a get_md checkpoint (no 'model' weights)")
    return ckpt


def grow_position_embedding(state: dict, model: torch.nn.Module) -> dict:
    """Start weights of a model without ligand chemistry, fitted to one with it: the rows
    of :data:`get_md.vocab.LIGAND_CHEMISTRY_POSITIONS` start as copies of the plain
    small-molecule row, so the model starts out computing what the start weights did and
    learns from there what the codes add. Other weights are returned as they are.

    Example:
        >>> model.load_state_dict(grow_position_embedding(start["model"], model))  # doctest: +SKIP
    """
    from get_md import vocab

    key = "position_embedding.weight"
    target = getattr(getattr(model, "position_embedding", None), "weight", None)
    have = state.get(key)
    if (target is None or have is None or have.shape[0] != vocab.NUM_ATOM_POSITIONS
            or target.shape[0] != vocab.NUM_ATOM_POSITIONS_WITH_CHEMISTRY):
        return state
    extra = have[vocab.SMALL_MOLECULE_POSITION].expand(len(vocab.LIGAND_CHEMISTRY_POSITIONS), -1)
    return {**state, key: torch.cat([have, extra.clone()], dim=0)}


def init_weights(path: str) -> dict:
    """Model weights of a ``best.pt`` / ``checkpoint.pt`` file (fine-tuning start)."""
    return read_init(path)["model"]


# ----------------------------------------------------------------------------- log.csv
def read_log(path: Path, columns: Sequence[str], up_to_epoch: int) -> list[dict[str, float]]:
    """Rows of an existing log with epoch <= ``up_to_epoch``; rewrites the file if it had more."""
    if not path.exists():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise TrainError(f"{path}: not a readable log.csv ({e}); move it away to resume without "
                         "the earlier rows") from e
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
    try:
        return [{c: float(v) for c, v in zip(columns, r, strict=True)} for r in kept]
    except ValueError as e:
        raise TrainError(f"{path}: a row holds a value that is not a number ({e}); move the file "
                         "away to resume without the earlier rows") from e


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
