"""Output files of a rescoring run: checked before any work, one run per output, written
atomically.

* :func:`write_csv_atomic` (and :func:`~get_md.atomic.atomic_output`: write to a
  temporary file beside the target, fsync, ``os.replace``);
* output claims (:func:`claim_outputs`, :func:`claims_outputs`): outputs checked
  before any work (not a directory, directory writable), one run per output
  (``OUT.lock``, :class:`OutputLock`), temporary files of a killed run removed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

from get_md.atomic import atomic_output, atomic_path  # noqa: F401 (re-exported for the workflows)
from get_md.errors import WorkflowError

from .options import PathLike, around_call

logger = logging.getLogger("get_md.workflows")


def write_csv_atomic(df, path: PathLike) -> None:
    """Write a pandas DataFrame as CSV (no index), atomically."""
    with atomic_output(path, newline="") as fh:
        df.to_csv(fh, index=False)


def _input_files(inputs: Optional[dict]) -> list[tuple[str, Path]]:
    """``(name, path)`` of every existing input file of ``{name: path, list of paths or None}``."""
    out = []
    for name, value in (inputs or {}).items():
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            if v is not None and Path(v).is_file():
                out.append((name, Path(v)))
    return out


def check_outputs(outputs: dict[str, Optional[PathLike]],
                  inputs: Optional[dict[str, Any]] = None) -> list[Path]:
    """The output files of a run, checked before any work: ``{option: path or None}``.

    Raises WorkflowError (one line naming the option and the path) for a path that is a
    directory, whose parent is not a directory or cannot be created or written, that
    two options share, or that is one of the run's ``inputs`` (``{name: path, paths or
    None}``: writing it would destroy the input). Creates missing parent directories.
    Returns the paths given.
    """
    seen: dict[Path, str] = {}
    paths = []
    input_files = _input_files(inputs)
    for option, out in outputs.items():
        if out is None:
            continue
        p = Path(out)
        if p.is_dir() or str(out).endswith(os.sep):
            raise WorkflowError(f"{option} {out}: is a directory; give a file name")
        if p.exists():
            for name, source in input_files:
                if os.path.samefile(p, source):
                    raise WorkflowError(f"{option} {out}: is the {name} input; writing it would destroy "
                                        f"the input: give another file")
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

    def __init__(self, outputs: dict[str, Optional[PathLike]], command: Optional[str] = None,
                 inputs: Optional[dict[str, Any]] = None):
        self.paths = check_outputs(outputs, inputs)
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


def claim_outputs(outputs: dict[str, Optional[PathLike]], command: Optional[str] = None,
                  inputs: Optional[dict[str, Any]] = None) -> OutputClaim:
    """Check the outputs of a run (:func:`check_outputs`), lock each (:class:`OutputLock`)
    and remove the temporary files an interrupted run left beside them
    (:func:`remove_stale_temporaries`); use as a context manager.

    Example:
        >>> with claim_outputs({"--out-csv": "t.csv", "--plot": None}):   # doctest: +SKIP
        ...     ...
    """
    return OutputClaim(outputs, command, inputs)


def claims_outputs(outputs_of: Callable[[dict], dict[str, Optional[PathLike]]],
                   inputs_of: Optional[Callable[[dict], dict[str, Any]]] = None) -> Callable:
    """Decorator: run a workflow with its outputs claimed (:func:`claim_outputs`) for the
    whole call. ``outputs_of`` maps the call's arguments (by name, defaults applied) to
    ``{option: path or None}``, ``inputs_of`` to its input files (no output may be one)."""

    def claim(func: Callable, arguments: dict[str, Any]) -> OutputClaim:
        inputs = inputs_of(arguments) if inputs_of is not None else None
        return claim_outputs(outputs_of(arguments), inputs=inputs)

    return around_call(claim)
