"""Machinery shared by the rescoring workflows (:mod:`~get_md.workflows.poses`,
:mod:`~get_md.workflows.trajectory`).

* atomic output files: :func:`atomic_output` (write to a temporary file beside the
  target, fsync, ``os.replace``), :func:`write_csv_atomic`;
* output claims (:func:`claim_outputs`, :func:`claims_outputs`): outputs checked
  before any work (not a directory, directory writable), one run per output
  (``OUT.lock``, :class:`OutputLock`), temporary files of a killed run removed;
* a resumable row store, :class:`ProgressStore`: a JSON-lines sidecar file
  (``OUT.csv.partial``) whose first line records the inputs (size, mtime) and the
  options, followed by one line per finished batch. A batch line is written with a
  single ``write`` and flushed to disk; a torn last line (a kill during the write) is
  dropped when the file is reopened, and that batch is recomputed with the same
  composition, so that a resumed run gives the same rows as an uninterrupted one;
* model loading for scoring (:class:`ModelRef`, :func:`get_module`: resolved and loaded
  through :mod:`get_md.runtime`, energies only, forces switched off, loaded once per
  process and shared by its threads);
  reusable terms of a fixed pocket (:func:`environment_cache`, :func:`build_environment`);
* batch sizing (:func:`auto_batch_size`: from free GPU memory and a probe batch);
* fan-out of batches to a Dask cluster (:func:`fan_out`), or in process, several
  batches at once on the CPU's cores (:func:`parallel_batches`).

Heavy libraries (torch, pandas, dask) are imported inside the functions so that
building the ``get-md`` parser stays fast.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

from get_md.atomic import atomic_output, atomic_path  # noqa: F401 (re-exported for the workflows)
from get_md.errors import WorkflowError

logger = logging.getLogger("get_md.workflows")

PathLike = Union[str, os.PathLike]

#: Test hook: ``GET_MD_CRASH_AFTER_BATCHES=K`` makes the process ``os._exit(99)`` right
#: after its K-th committed batch; ``K:torn`` instead writes half of the (K+1)-th batch
#: line and exits, as a kill during the write would leave it.
CRASH_ENV = "GET_MD_CRASH_AFTER_BATCHES"
CRASH_EXIT_CODE = 99

#: Default batch sizes (structures per model call) when none is given.
DEFAULT_CPU_BATCH = 16
MAX_AUTO_BATCH = 4096

STORE_FORMAT = 1


# ----------------------------------------------------------------------------- files
def write_csv_atomic(df, path: PathLike) -> None:
    """Write a pandas DataFrame as CSV (no index), atomically."""
    with atomic_output(path, newline="") as fh:
        df.to_csv(fh, index=False)


def file_fingerprint(path: Optional[PathLike]) -> Optional[dict]:
    """Absolute path, size and mtime of an input file (None for None)."""
    if path is None:
        return None
    p = Path(path)
    st = p.stat()
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


# ------------------------------------------------------------------ output claims
def check_outputs(outputs: dict[str, Optional[PathLike]]) -> list[Path]:
    """The output files of a run, checked before any work: ``{option: path or None}``.

    Raises WorkflowError (one line naming the option and the path) for a path that is a
    directory, whose parent is not a directory or cannot be created or written, or that
    two options share. Creates missing parent directories. Returns the paths given.
    """
    seen: dict[Path, str] = {}
    paths = []
    for option, out in outputs.items():
        if out is None:
            continue
        p = Path(out)
        if p.is_dir() or str(out).endswith(os.sep):
            raise WorkflowError(f"{option} {out}: is a directory; give a file name")
        key = p.resolve()
        if key in seen:
            raise WorkflowError(f"{seen[key]} and {option} both name {out}; give different files")
        seen[key] = option
        parent = p.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise WorkflowError(f"{option} {out}: cannot create directory {parent} "
                                f"({e.strerror or type(e).__name__})") from e
        if not os.access(parent, os.W_OK | os.X_OK):
            raise WorkflowError(f"{option} {out}: directory {parent} is not writable")
        paths.append(p)
    return paths


def stale_temporaries(path: PathLike) -> list[Path]:
    """Temporary files that :func:`get_md.atomic.atomic_output` / ``atomic_path`` leave
    beside ``path`` (or beside its ``.partial`` sidecar) when a run is killed while
    writing: ``.NAME.XXXXXXXX.tmp`` or ``.NAME.XXXXXXXX<suffix>`` (``XXXXXXXX``:
    ``tempfile.mkstemp``'s 8 random characters). Only names of exactly that form."""
    import re

    p = Path(path)
    found = []
    for name in (p.name, p.name + ".partial"):
        suffixes = {".tmp", Path(name).suffix} - {""}
        pattern = re.compile(re.escape(f".{name}.") + r"[a-z0-9_]{8}(?:"
                             + "|".join(re.escape(s) for s in sorted(suffixes)) + r")\Z")
        try:
            entries = list(os.scandir(p.parent if str(p.parent) else "."))
        except OSError:
            continue
        found += [Path(e.path) for e in entries if pattern.match(e.name) and e.is_file(follow_symlinks=False)]
    return sorted(set(found))


def remove_stale_temporaries(path: PathLike) -> int:
    """Delete :func:`stale_temporaries` of ``path`` (call with the output's lock held);
    returns how many were removed."""
    n = 0
    for tmp in stale_temporaries(path):
        try:
            tmp.unlink()
            n += 1
        except OSError as e:
            logger.warning("%s: cannot remove the temporary file of an interrupted run (%s)", tmp, e)
    if n:
        logger.info("%s: removed %d temporary file(s) of an interrupted run", path, n)
    return n


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:
        return False
    return True


class OutputLock:
    """An exclusive claim on an output file: ``OUT.lock`` beside it, holding the owner's
    pid, host, start time and command as JSON, locked with ``fcntl.flock``.

    A second run that wants the same output fails at once with a WorkflowError naming
    the owner. The kernel drops the lock when its process dies, so the lock file of a
    killed run is taken over, with a warning naming the dead run. Released (file
    removed) by :meth:`release` or at the end of a ``with`` block.

    Example:
        >>> import tempfile, os
        >>> out = os.path.join(tempfile.mkdtemp(), "t.csv")
        >>> with OutputLock(out):
        ...     os.path.exists(out + ".lock")
        True
        >>> os.path.exists(out + ".lock")
        False
    """

    def __init__(self, output: PathLike, command: Optional[str] = None):
        self.output = Path(output)
        self.path = Path(str(output) + ".lock")
        self.command = command if command is not None else " ".join(
            [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]])
        self._fd: Optional[int] = None

    def _holder_text(self, info: dict) -> str:
        return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started "
                f"{info.get('started', '?')}: {info.get('command', '?')}")

    @staticmethod
    def _read_info(fd: int) -> dict:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            raw = b""
            while chunk := os.read(fd, 65536):
                raw += chunk
            info = json.loads(raw.decode("utf-8", "replace")) if raw.strip() else {}
            return info if isinstance(info, dict) else {}
        except (OSError, ValueError):
            return {}

    def acquire(self) -> OutputLock:
        """Take the lock, or raise WorkflowError naming the run that holds it."""
        import datetime
        import socket

        try:
            import fcntl
        except ImportError:  # not POSIX: no locking
            logger.debug("no fcntl: %s is not locked", self.output)
            return self
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise WorkflowError(f"{self.output}: cannot create the lock file {self.path} "
                                    f"({e.strerror or type(e).__name__})") from e
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                info = self._read_info(fd)
                os.close(fd)
                raise WorkflowError(
                    f"{self.output} is being written by another get-md run ({self._holder_text(info)}); "
                    f"wait for it to finish or choose another output file (lock {self.path})"
                ) from None
            try:  # the holder before us may have removed the file after we opened it
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            old = self._read_info(fd)
            if old:
                host = socket.gethostname()
                pid = old.get("pid")
                dead = old.get("host") == host and isinstance(pid, int) and not _pid_alive(pid)
                logger.warning("%s: taking over the lock of an earlier run that ended without "
                               "releasing it (%s%s)", self.output, self._holder_text(old),
                               "; that process is gone" if dead else "")
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                    "command": self.command}
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps(info) + "\n").encode())
            self._fd = fd
            return self
        raise WorkflowError(f"{self.output}: cannot take the lock {self.path} (it keeps changing)")

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class OutputClaim:
    """Checked, locked outputs of one run, stale temporary files removed (see
    :func:`claim_outputs`)."""

    def __init__(self, outputs: dict[str, Optional[PathLike]], command: Optional[str] = None):
        self.paths = check_outputs(outputs)
        self.locks: list[OutputLock] = []
        try:
            for p in self.paths:
                self.locks.append(OutputLock(p, command).acquire())
        except BaseException:
            self.release()
            raise
        for p in self.paths:
            remove_stale_temporaries(p)

    def release(self) -> None:
        for lock in reversed(self.locks):
            lock.release()
        self.locks = []

    def __enter__(self) -> OutputClaim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim_outputs(outputs: dict[str, Optional[PathLike]], command: Optional[str] = None) -> OutputClaim:
    """Check the outputs of a run (:func:`check_outputs`), lock each (:class:`OutputLock`)
    and remove the temporary files an interrupted run left beside them
    (:func:`remove_stale_temporaries`); use as a context manager.

    Example:
        >>> with claim_outputs({"--out-csv": "t.csv", "--plot": None}):   # doctest: +SKIP
        ...     ...
    """
    return OutputClaim(outputs, command)


def claims_outputs(outputs_of: Callable[[dict], dict[str, Optional[PathLike]]]) -> Callable:
    """Decorator: run a workflow with its outputs claimed (:func:`claim_outputs`) for the
    whole call. ``outputs_of`` maps the call's arguments (by name, defaults applied) to
    ``{option: path or None}``."""
    import functools
    import inspect

    def decorate(func: Callable) -> Callable:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def run(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            with claim_outputs(outputs_of(bound.arguments)):
                return func(*args, **kwargs)

        return run

    return decorate


def progress_path(out: Optional[PathLike]) -> Optional[Path]:
    """The sidecar progress file of an output file (``OUT.partial``), or None."""
    return None if out is None else Path(str(out) + ".partial")


def set_threads(n: Optional[int]) -> None:
    """``torch.set_num_threads(n)`` when ``n`` is given (>= 1)."""
    if n is None:
        return
    if n < 1:
        raise WorkflowError(f"--threads must be >= 1, got {n}")
    import torch

    torch.set_num_threads(int(n))


def setup_cli_logging(quiet: bool) -> None:
    """Info messages of get_md on stderr as ``get-md: ...`` (warnings only when ``quiet``);
    other libraries' loggers (Dask's) are left alone."""
    log = logging.getLogger("get_md")
    ours = [h for h in log.handlers if getattr(h, "_get_md_cli", False)]
    if not ours:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("get-md: %(message)s"))
        handler._get_md_cli = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    for handler in ours:  # a later main() call in the same process: today's sys.stderr
        if isinstance(handler, logging.StreamHandler):
            handler.stream = sys.stderr  # not setStream(): it flushes the old, maybe closed, one
    log.setLevel(logging.WARNING if quiet else logging.INFO)


def progress_bar(enabled: Optional[bool], **kw):
    """A tqdm bar on stderr; ``enabled=None`` shows it only when stderr is a terminal."""
    from tqdm.auto import tqdm

    if enabled is None:
        enabled = bool(getattr(sys.stderr, "isatty", lambda: False)())
    return tqdm(disable=not enabled, file=sys.stderr, **kw)


# ------------------------------------------------------------------------ row store
class ProgressStore:
    """Finished batches of a run, kept in memory and (optionally) in a sidecar file.

    The sidecar is JSON lines: a header ``{"get_md_progress": 1, "fingerprint": ...,
    "state": ...}`` and one ``{"batch": key, ...payload}`` line per finished batch.
    ``fingerprint`` identifies the inputs and options: a sidecar with another
    fingerprint is discarded (logged) and the run starts over. ``state`` holds values
    resolved during the first run that a resumed run must reuse (e.g. an automatic
    batch size).

    Args:
        path: sidecar file, or None to keep everything in memory (no resume).
        fingerprint: JSON-serialisable description of inputs and options.
        resume: reuse a matching sidecar (False: always start over).

    Example:
        >>> store = ProgressStore(None, {"x": 1})
        >>> store.open()
        >>> store.commit(0, {"rows": [{"a": 1}]})
        >>> store.done(0), store.batches[0]["rows"]
        (True, [{'a': 1}])
    """

    def __init__(self, path: Optional[PathLike], fingerprint: dict, resume: bool = True):
        self.path = None if path is None else Path(path)
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))
        self.resume = resume
        self.state: dict = {}
        self.batches: dict[Any, dict] = {}
        self.resumed = 0
        self._fh = None
        self._commits = 0
        crash = os.environ.get(CRASH_ENV, "").strip()
        self._crash_after: Optional[int] = None
        self._crash_torn = False
        if crash:
            n, _, how = crash.partition(":")
            self._crash_after = int(n)
            self._crash_torn = how == "torn"

    # -------------------------------------------------------------- open / load
    def _read(self) -> Optional[tuple[dict, list[dict], int]]:
        """(header, batch lines, byte length of the good prefix), or None if unusable."""
        assert self.path is not None
        try:
            data = self.path.read_bytes()
        except OSError:
            return None
        lines = data.split(b"\n")
        # the last element is b"" when the file ends in a newline, else a torn line
        complete = lines[:-1]
        if not complete:
            return None
        try:
            header = json.loads(complete[0])
        except ValueError:
            return None
        if not isinstance(header, dict) or header.get("get_md_progress") != STORE_FORMAT:
            return None
        good = len(complete[0]) + 1
        entries = []
        for raw in complete[1:]:
            try:
                entry = json.loads(raw)
            except ValueError:
                break  # damaged from here on: drop the rest and recompute it
            if not isinstance(entry, dict) or "batch" not in entry:
                break
            entries.append(entry)
            good += len(raw) + 1
        return header, entries, good

    def open(self, state: Optional[dict] = None) -> None:
        """Load a matching sidecar (resume) or start a new one with ``state``."""
        self.state = dict(state or {})
        if self.path is None:
            return
        found = self._read() if (self.resume and self.path.exists()) else None
        if found is not None:
            header, entries, good = found
            if header.get("fingerprint") == self.fingerprint:
                self.state = dict(header.get("state") or {})
                for e in entries:
                    key = _key(e["batch"])
                    if key not in self.batches:
                        self.batches[key] = e
                self.resumed = len(self.batches)
                with open(self.path, "rb+") as fh:  # drop a torn tail
                    fh.truncate(good)
                self._fh = open(self.path, "a", encoding="utf-8")
                logger.info("%s: resuming, %d finished batch(es) reused", self.path, self.resumed)
                return
            logger.warning(
                "%s: inputs or options differ from the unfinished run recorded there; starting over",
                self.path,
            )
        elif self.path.exists() and self.resume:
            logger.warning("%s: unreadable progress file; starting over", self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = {"get_md_progress": STORE_FORMAT, "fingerprint": self.fingerprint, "state": self.state}
        with atomic_output(self.path, encoding="utf-8") as fh:
            fh.write(json.dumps(header, sort_keys=True) + "\n")
        self._fh = open(self.path, "a", encoding="utf-8")

    def update_state(self, **values) -> None:
        """Change ``state`` before any batch is committed (rewrites the header)."""
        self.state.update(values)
        if self.path is None:
            return
        if self.batches:
            raise RuntimeError("state can only change before the first batch is committed")
        if self._fh is not None:
            self._fh.close()
        header = {"get_md_progress": STORE_FORMAT, "fingerprint": self.fingerprint, "state": self.state}
        with atomic_output(self.path, encoding="utf-8") as fh:
            fh.write(json.dumps(header, sort_keys=True) + "\n")
        self._fh = open(self.path, "a", encoding="utf-8")

    # -------------------------------------------------------------------- use
    def done(self, key) -> bool:
        return _key(key) in self.batches

    def commit(self, key, payload: dict) -> None:
        """Record a finished batch (one line, flushed and fsynced)."""
        key = _key(key)
        if key in self.batches:
            return
        entry = {"batch": key, **payload}
        line = json.dumps(entry) + "\n"
        # values as read back from JSON, so that fresh and resumed runs agree bit for bit
        self.batches[key] = json.loads(line)
        if self._fh is None:
            return
        if self._crash_after is not None and self._crash_torn and self._commits == self._crash_after:
            self._fh.write(line[: max(1, len(line) // 2)])
            self._fh.flush()
            os.fsync(self._fh.fileno())
            os._exit(CRASH_EXIT_CODE)
        self._fh.write(line)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._commits += 1
        if self._crash_after is not None and not self._crash_torn and self._commits >= self._crash_after:
            os._exit(CRASH_EXIT_CODE)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def remove(self) -> None:
        """Delete the sidecar (after the final outputs are written)."""
        self.close()
        if self.path is not None and self.path.exists():
            self.path.unlink()


def _key(key):
    return list(key) if isinstance(key, tuple) else key


# ---------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelRef:
    """What a worker needs to load the scoring model: file, device, dtype, digest
    (hashable and picklable; :func:`get_module` loads it once per process)."""

    path: str
    device: str = "cpu"
    dtype: Optional[str] = None
    sha256: str = ""
    task: str = "energy"
    name: str = ""
    blocks: str = ""  # "atoms", "residues"; "" = atoms for potentials, residues otherwise

    @property
    def atom_blocks(self) -> bool:
        """Whether the model sees every atom as its own block (see :func:`run_model`):
        potentials are trained on atom sets, score models on residue blocks."""
        return self.blocks == "atoms" or (not self.blocks and self.is_potential)

    @property
    def is_potential(self) -> bool:
        return self.task == "energy"


def resolve_model(
    model: Optional[PathLike],
    device: str = "cpu",
    dtype: Optional[str] = None,
    preferred: Sequence[str] = ("score", "energy"),
) -> tuple[ModelRef, dict]:
    """Model file and metadata for a name, a path, or None (the first shipped default of
    ``preferred`` tasks), through :mod:`get_md.runtime`. Checks the file (archive,
    digest) and the device.

    Raises:
        WorkflowError: no model, a task other than ``energy`` / ``score``, CUDA unavailable.
    """
    import torch

    from get_md import runtime

    device = str(device or "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise WorkflowError(f"--device {device}: CUDA is not available in this torch build / machine")
    if model is None:
        found = runtime.shipped_model(preferred)
        if found is None:
            raise WorkflowError(
                "no model given and no shipped default model is installed; pass --model FILE.pt "
                "(a file written by get_md.export.save or `get-md export`)"
            )
        path = found[1]
    else:
        path = runtime.resolve_model_path(model)
    meta = runtime.verified_metadata(path)
    task = meta.get("task")
    if task not in ("energy", "score"):
        raise WorkflowError(
            f"{path}: model task is {task!r}; rescoring needs an 'energy' (potential) or 'score' model"
        )
    dt = None if dtype is None else str(runtime.parse_dtype(dtype)).replace("torch.", "")
    # "" lets ModelRef.atom_blocks choose: atom sets for potentials, residues otherwise
    blocks = str(meta.get("blocks", ""))
    spec = ModelRef(path=str(Path(path).resolve()), device=device, dtype=dt,
                     sha256=str(meta.get("weights_sha256", "")), task=str(task),
                     name=str(model) if model is not None else Path(path).stem, blocks=blocks)
    return spec, meta


_MODULES: dict = {}
_MODULES_LOCK = threading.Lock()


def get_module(spec: ModelRef):
    """The loaded TorchScript module for ``spec``, forces off, loaded once per process.

    The threads of :func:`fan_out` (and of Dask workers) share it: a TorchScript
    module may be called from several threads at once, and nothing changes it after
    loading.
    """
    mod = _MODULES.get(spec)
    if mod is None:
        with _MODULES_LOCK:
            mod = _MODULES.get(spec)
            if mod is None:
                from get_md import runtime

                mod, _ = runtime.load_model(spec.path, device=spec.device, dtype=spec.dtype)
                # energies only: setting the attribute on a loaded ScriptModule switches
                # the autograd force branch off (checked in the tests)
                if hasattr(mod, "compute_forces"):
                    mod.compute_forces = False
                mod.eval()
                _MODULES[spec] = mod
    return mod


def _records_text(graph, records: Optional[str]) -> str:
    """The inputs of a model call for messages: ``records``, else the graph's distinct names."""
    if records:
        return records
    names = list(dict.fromkeys(n for n in (graph.names or []) if n))
    if len(names) > 3:
        return f"{', '.join(names[:3])} and {len(names) - 3} more"
    return ", ".join(names) or "structure"


def run_model(spec: ModelRef, graph, environment: Optional[tuple] = None,
              records: Optional[str] = None) -> dict:
    """Forward a (batched) MolecularGraph under ``torch.no_grad``; outputs on the CPU.

    An error raised inside the model file (``torch.jit.Error``, ``RuntimeError``) becomes
    ``get_md.export.ModelRunError`` naming the file and ``records`` (default: the graph's
    names).

    With ``spec.atom_blocks`` (potentials) the graph is first turned into one
    block per atom, the form the model was trained on; per-atom outputs keep the
    atom order of ``graph``.

    ``environment``: ``(env_index, cache)`` with ``cache`` from
    :func:`environment_cache` and ``env_index`` [N] the index of each atom in that
    environment (-1: not in it); the model then reuses the environment's terms
    (``GET.forward_in_environment``; same outputs).

    With per-atom ``energies`` in the output, ``energy`` is their sum per structure in
    float64: a float32 model's own total rounds at the scale of the whole structure
    (about 0.01 eV at 10^4-10^5 eV), too coarse for the differences of totals that
    interaction energies are.

    (``torch.inference_mode`` is avoided: a TorchScript module first run with autograd
    can fail under it.)
    """
    import torch

    from get_md.perf import plain_executor
    from get_md.runtime import module_dtype

    mod = get_module(spec)
    if spec.atom_blocks:
        graph = graph.as_atom_blocks()
    g = graph.to(device=spec.device, dtype=module_dtype(mod))
    try:
        with torch.no_grad(), plain_executor():
            if environment is not None:
                out = mod.forward_in_environment(*g.inputs(), environment[0].to(spec.device),
                                                 environment[1])
            else:
                out = mod(*g.inputs())
    except (torch.jit.Error, RuntimeError) as e:
        if isinstance(e, torch.OutOfMemoryError):
            raise  # callers may retry with smaller batches
        from get_md.export import run_error

        raise run_error(spec.path, e, _records_text(graph, records)) from e
    out = {k: v.detach().to("cpu") for k, v in out.items()}
    if "energies" in out and "energy" in out:
        out["energy"] = structure_energies(out["energies"], graph.atom_batch_ids, graph.num_graphs)
    return out


def structure_energies(energies, atom_batch, n_structures: int):
    """Per-structure totals [G] (float64, eV) of per-atom energies [N] (any float dtype).

    Example:
        >>> import torch
        >>> structure_energies(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0, 0, 1]), 2)
        tensor([3., 4.], dtype=torch.float64)
    """
    import torch

    from get_md.nn.scatter import scatter_sum

    return scatter_sum(energies.detach().to("cpu", torch.float64), atom_batch.to("cpu"), n_structures)


_ENVIRONMENTS: dict = {}
_ENVIRONMENTS_LOCK = threading.Lock()


def build_environment(spec: ModelRef, graph) -> Optional[list]:
    """The model's reusable terms of fixed environments (``GET.environment_cache`` of
    ``graph``, one structure or a batch), or None where the model cannot reuse them
    (score models, files without the method, GPU). ``cache[2]`` holds the
    environment's per-atom energies (eV)."""
    import torch

    from get_md.perf import plain_executor
    from get_md.runtime import module_dtype

    if not (spec.is_potential and spec.atom_blocks) or spec.device.startswith("cuda"):
        return None
    mod = get_module(spec)
    if not hasattr(mod, "environment_cache"):
        return None
    g = graph.as_atom_blocks().to(device=spec.device, dtype=module_dtype(mod))
    try:
        with torch.no_grad(), plain_executor():
            return list(mod.environment_cache(*g.inputs()))
    except (RuntimeError, torch.jit.Error) as e:  # a model or structure the method does not cover
        logger.debug("no environment reuse: %s", str(e).splitlines()[0])
        return None


def environment_cache(spec: ModelRef, graph) -> Optional[list]:
    """:func:`build_environment`, remembered per process for the same model and
    structure (the threads of :func:`fan_out` and Dask workers compute it once)."""
    digest = hashlib.sha256()
    for t in (graph.positions, graph.atomic_numbers):
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    key = (spec, digest.hexdigest())
    with _ENVIRONMENTS_LOCK:
        if key not in _ENVIRONMENTS:
            if len(_ENVIRONMENTS) > 8:
                _ENVIRONMENTS.clear()
            _ENVIRONMENTS[key] = build_environment(spec, graph)
        return _ENVIRONMENTS[key]


#: Pocket radius (Å) for models whose metadata does not name one.
DEFAULT_POCKET_RADIUS = 10.0


def pocket_radius_for(meta: dict, given: Optional[float]) -> float:
    """The pocket radius (Å) to use: ``given``, else the model file's ``pocket_radius``
    (the radius its training complexes were cut with), else ``DEFAULT_POCKET_RADIUS``.

    Raises:
        WorkflowError: a radius that is not positive.

    Example:
        >>> pocket_radius_for({"pocket_radius": 6.0}, None), pocket_radius_for({}, 8.0)
        (6.0, 8.0)
    """
    radius = given if given is not None else meta.get("pocket_radius") or DEFAULT_POCKET_RADIUS
    if not radius or not float(radius) > 0:
        raise WorkflowError(f"--pocket-radius must be positive, got {radius}")
    return float(radius)


def score_columns(out: dict, k: int) -> dict:
    """``score`` (and ``score_std`` for ensembles) of structure ``k`` of a score model's outputs."""
    row = {"score": float(out["score"][k])}
    if "score_std" in out:
        row["score_std"] = float(out["score_std"][k])
    return row


def supported_numbers(meta: dict) -> set[int]:
    """Atomic numbers of the model's ``elements`` metadata (empty: no restriction given)."""
    from get_md import vocab

    return {vocab.atomic_number(e) for e in meta.get("elements") or []}


def element_check(meta: dict):
    """A function ``z_tensor -> error text or None`` from the model's supported elements."""
    elements = meta.get("elements")
    if not elements:
        return lambda z: None
    from get_md import vocab

    allowed = supported_numbers(meta)

    def check(z) -> Optional[str]:
        bad = sorted({int(x) for x in z.tolist()} - allowed)
        if bad:
            names = ", ".join(vocab.ELEMENTS[b] for b in bad)
            return f"element(s) {names} not supported by the model (supports {', '.join(elements)})"
        return None

    return check


def unsupported_blocks(graph, meta: dict):
    """[B] bool: blocks of ``graph`` holding an element the model does not list in its
    ``elements`` metadata (all false when it lists none)."""
    import torch

    from get_md.nn.scatter import scatter_sum

    if not meta.get("elements"):
        return torch.zeros(graph.num_blocks, dtype=torch.bool)
    allowed = torch.tensor(sorted(supported_numbers(meta)))
    bad_atom = ~torch.isin(graph.atomic_numbers.cpu(), allowed)
    return scatter_sum(bad_atom.long(), graph.block_ids.cpu(), graph.num_blocks) > 0


def screen_pocket(pocket, meta: dict, drop: bool, where: str, blocks=None):
    """The pocket without residues of elements the model does not support, or an error.

    ``blocks``: [B] bool, the pocket's blocks among ``pocket``'s (default: all). Such
    residues (metal ions, ...) are an error naming them unless ``drop``; then they are
    left out of the pocket, with a warning, and the mask of blocks kept is returned
    with the pocket: ``(pocket, keep)``. ``where`` names the input in messages.

    Example:
        >>> pocket, keep = screen_pocket(pocket, meta, drop=True, where="rec.pdb")  # doctest: +SKIP
    """
    import torch

    bad = unsupported_blocks(pocket, meta)
    if blocks is not None:
        bad = bad & blocks.cpu()
    if not bool(bad.any()):
        return pocket, torch.ones(pocket.num_blocks, dtype=torch.bool)
    from get_md import vocab

    labels = pocket.block_labels or [f"block {i + 1}" for i in range(pocket.num_blocks)]
    names = [labels[i] for i in torch.nonzero(bad).flatten().tolist()]
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    elems = sorted({int(z) for z in pocket.atomic_numbers[bad.to(pocket.device)[pocket.block_ids]].tolist()}
                   - supported_numbers(meta))
    text = (f"{where}: pocket residue(s) {shown} hold element(s) "
            f"{', '.join(vocab.ELEMENTS[z] for z in elems)} that the model does not support "
            f"(it supports {', '.join(meta['elements'])})")
    if not drop:
        raise WorkflowError(text + "; remove them from the receptor, or pass --drop-unsupported "
                            "(drop_unsupported=True) to leave them out of the pocket")
    logger.warning("%s: left out of the pocket (--drop-unsupported)", text)
    keep = ~bad
    if not bool(keep.any()) or (blocks is not None and not bool((keep & blocks.cpu()).any())):
        raise WorkflowError(f"{where}: no pocket residue left after dropping {shown}")
    return pocket.select_blocks(keep.to(pocket.device)), keep


# ----------------------------------------------------------------------- batch size
def auto_batch_size(
    spec: ModelRef,
    sample: Callable[[int], Any],
    requested: Optional[int],
    atoms_per_item: int,
    n_items: Optional[int] = None,
    parallel: int = 1,
) -> int:
    """Structures per model call.

    ``requested`` wins when given. On CPU the default is :data:`DEFAULT_CPU_BATCH`,
    or fewer when ``n_items`` (if known) would not fill ``parallel`` batches of it, so
    that every core of :func:`fan_out` gets work (9 poses, 2 cores: batches of 5 and 4).
    On CUDA a probe batch (``sample(n)`` returns a batched graph of n items) is run to
    measure peak memory per atom, and the batch is sized to use about half of the
    free memory (peak activations grow linearly with atoms in a radius graph).
    """
    if requested is not None:
        if requested < 1:
            raise WorkflowError(f"--batch-size must be >= 1, got {requested}")
        return int(requested)
    if not spec.device.startswith("cuda"):
        if n_items is not None and n_items > 0 and parallel > 1:
            return max(1, min(DEFAULT_CPU_BATCH, -(-int(n_items) // int(parallel))))
        return DEFAULT_CPU_BATCH
    import torch

    dev = torch.device(spec.device)
    probe_n = 2
    graph = sample(probe_n)
    torch.cuda.synchronize(dev)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(dev)
    base = torch.cuda.memory_allocated(dev)
    run_model(spec, graph)
    torch.cuda.synchronize(dev)
    peak = max(1, torch.cuda.max_memory_allocated(dev) - base)
    per_atom = peak / max(1, graph.num_atoms)
    free, _total = torch.cuda.mem_get_info(dev)
    n = int(0.5 * free / (per_atom * max(1, atoms_per_item)))
    n = max(1, min(MAX_AUTO_BATCH, n))
    logger.info("auto batch size on %s: %d (%.1f KiB/atom measured, %.1f GiB free)",
                spec.device, n, per_atom / 1024, free / 2**30)
    return n


# -------------------------------------------------------------------------- fan-out
def make_client(workers: Optional[int], scheduler: Optional[str], processes: bool = True):
    """A dask.distributed Client on a new LocalCluster (``workers``) or an existing
    scheduler (``scheduler`` address), and the cluster to close (or None)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as e:
        raise WorkflowError(
            "--workers / --scheduler need Dask: pip install 'dask[distributed]' "
            "(or pip install 'get-md[dask]')"
        ) from e
    if scheduler:
        return Client(scheduler), None
    if workers is None or workers < 1:
        raise WorkflowError(f"--workers must be >= 1, got {workers}")
    cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=processes,
                           dashboard_address=None)
    return Client(cluster), cluster


def _worker_threads(n_workers: int) -> None:
    """Share the machine's cores between worker processes (once per process)."""
    import torch

    if getattr(_worker_threads, "done", False):
        return
    cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, cores // max(1, n_workers)))
    _worker_threads.done = True  # type: ignore[attr-defined]


def _call_in_worker(func, n_workers, args):
    if n_workers > 0:  # own worker processes on this machine: share the cores
        _worker_threads(n_workers)
    return func(*args)


def parallel_batches(device: str = "cpu", requested: Optional[int] = None) -> int:
    """How many batches :func:`fan_out` scores at once in this process.

    ``requested`` wins when given; otherwise one per torch CPU thread on the CPU
    (each batch then runs single-threaded), one on a GPU. Several single-threaded
    model calls use the cores better than one call split over them: most of GET's
    operations are too small to parallelise well (measured on 2 cores, prolif pose
    batches: 58 poses/s with 2 batches at once against 46 with one 2-thread call).

    Example:
        >>> parallel_batches("cuda")
        1
    """
    if requested is not None:
        if int(requested) < 1:
            raise WorkflowError(f"--parallel must be >= 1, got {requested}")
        return int(requested)
    if str(device).startswith("cuda"):
        return 1
    import torch

    return max(1, torch.get_num_threads())


def _run_in_threads(func, tasks, on_result, parallel: int) -> None:
    """``fan_out`` in this process: ``parallel`` tasks at once on threads, each with
    ``threads // parallel`` torch threads; results handed on in task order."""
    import collections
    from concurrent.futures import ThreadPoolExecutor

    import torch

    total = torch.get_num_threads()
    # torch's thread count is per thread (OpenMP): set it in each worker
    pool = ThreadPoolExecutor(parallel, thread_name_prefix="get_md-batch",
                              initializer=torch.set_num_threads, initargs=(max(1, total // parallel),))
    pending: collections.deque = collections.deque()
    try:
        for key, args in tasks:
            pending.append((key, pool.submit(func, *args)))
            while len(pending) > parallel:  # one queued behind the running ones
                k, fut = pending.popleft()
                on_result(k, fut.result())
        while pending:
            k, fut = pending.popleft()
            on_result(k, fut.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(total)  # the workers' setting also changed torch's default


def fan_out(
    func: Callable[..., Any],
    tasks: Iterable[tuple[Any, tuple]],
    on_result: Callable[[Any, Any], None],
    workers: Optional[int] = None,
    scheduler: Optional[str] = None,
    processes: bool = True,
    max_in_flight: Optional[int] = None,
    parallel: int = 1,
) -> None:
    """Run ``func(*args)`` for every ``(key, args)`` of ``tasks`` and pass each result to
    ``on_result(key, result)`` in the calling process.

    Without ``workers``/``scheduler`` the tasks run here: in order, or ``parallel`` at a
    time on threads (TorchScript releases the GIL; see :func:`parallel_batches`), the
    results still handed on in task order. With them, they run on a Dask cluster, at
    most ``max_in_flight`` at a time (default 2 per worker) so that ``tasks`` is
    consumed lazily (trajectory chunks are read as they are needed); results arrive in
    completion order. A failing task re-raises its error here.
    """
    if not workers and not scheduler:
        if parallel > 1:
            _run_in_threads(func, tasks, on_result, parallel)
            return
        for key, args in tasks:
            on_result(key, func(*args))
        return
    client, cluster = make_client(workers, scheduler, processes)
    try:
        from distributed import as_completed

        n_workers = max(1, len(client.scheduler_info().get("workers", {})) or int(workers or 1))
        limit = max_in_flight or 2 * n_workers
        it = iter(tasks)
        keys: dict = {}
        queue = as_completed()

        def submit_next() -> bool:
            try:
                key, args = next(it)
            except StopIteration:
                return False
            fut = client.submit(_call_in_worker, func, n_workers if cluster is not None and processes else 0,
                                args, pure=False)
            keys[fut.key] = key
            queue.add(fut)
            return True

        for _ in range(limit):
            if not submit_next():
                break
        for fut in queue:
            result = fut.result()
            key = keys.pop(fut.key)
            fut.release()
            on_result(key, result)
            submit_next()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ------------------------------------------------------------------------- helpers
def rank_values(values: Sequence[float], higher_is_better: bool) -> list[Optional[int]]:
    """1-based ranks (best first, ties by position); None for NaN / None.

    Example:
        >>> rank_values([-1.0, float("nan"), -3.0], higher_is_better=False)
        [2, None, 1]
    """
    ok = [(i, v) for i, v in enumerate(values) if v is not None and not math.isnan(v)]
    ok.sort(key=lambda t: ((-t[1] if higher_is_better else t[1]), t[0]))
    ranks: list[Optional[int]] = [None] * len(values)
    for r, (i, _) in enumerate(ok, 1):
        ranks[i] = r
    return ranks


def chunked(it: Iterable, n: int) -> Iterator[list]:
    """Lists of ``n`` consecutive items (the last may be shorter)."""
    buf: list = []
    for x in it:
        buf.append(x)
        if len(buf) == n:
            yield buf
            buf = []
    if buf:
        yield buf


def prefetch(it: Iterable, depth: int = 1) -> Iterator:
    """Items of ``it``, produced ``depth`` ahead by a background thread.

    Lets file parsing (RDKit, mdtraj) run while the model, which releases the GIL in
    TorchScript, works on the previous batch. Exceptions of ``it`` are re-raised here;
    closing the generator stops the thread after its current item.
    """
    import queue

    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item) -> bool:
        """Queue ``item`` unless the consumer has gone; whether it was queued."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for x in it:
                if not put(("item", x)):
                    return
            put(("end", None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            put(("error", e))

    thread = threading.Thread(target=work, name="get_md-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, x = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise x
            yield x
    finally:
        stop.set()


def add_drop_unsupported_option(p: Any) -> None:
    """``--drop-unsupported``, shared by the rescoring subcommands (see :func:`screen_pocket`)."""
    p.add_argument("--drop-unsupported", action="store_true",
                   help="leave pocket residues with elements the model does not support (metal "
                        "ions, ...) out of the pocket, with a warning (default: an error naming them)")


def add_run_options(p: Any, unit: str) -> None:
    """Options shared by the rescoring subcommands: batching, device, dtype, Dask, threads,
    resume and quiet. ``unit`` names what a batch holds ("poses", "frames")."""
    p.add_argument("--batch-size", type=int, metavar="N",
                   help=f"{unit} per model call (default 16 on CPU, from free memory on CUDA)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    p.add_argument("--dtype", choices=["float32", "float64"], help="model dtype (default: the file's)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--workers", type=int, metavar="N", help="fan batches out over N local Dask workers")
    group.add_argument("--scheduler", metavar="ADDRESS", help="use an existing Dask scheduler")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads (default: torch's; on shared machines 1 per free core)")
    p.add_argument("--parallel", type=int, metavar="N",
                   help="batches scored at once, each on threads/N torch threads (default: one "
                        "per thread on CPU, 1 on GPU)")
    p.add_argument("--no-resume", action="store_true", help="ignore the progress file of an earlier run")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or info messages")
