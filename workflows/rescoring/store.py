"""The resumable row store of a rescoring run, :class:`ProgressStore`.

A JSON-lines sidecar file (``OUT.csv.partial``) whose first line records the inputs
(size, mtime) and the options, followed by one line per finished batch. A batch line
is written with a single ``write`` and flushed to disk; a torn last line (a kill during
the write) is dropped when the file is reopened, and that batch is recomputed with the
same composition, so that a resumed run gives the same rows as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Optional

from .options import PathLike
from .outputs import atomic_output

logger = logging.getLogger("get_md.workflows")

#: Test hook: ``GET_MD_CRASH_AFTER_BATCHES=K`` makes the process ``os._exit(99)`` right
#: after its K-th committed batch; ``K:torn`` instead writes half of the (K+1)-th batch
#: line and exits, as a kill during the write would leave it.
CRASH_ENV = "GET_MD_CRASH_AFTER_BATCHES"
CRASH_EXIT_CODE = 99

STORE_FORMAT = 1


def file_fingerprint(path: Optional[PathLike]) -> Optional[dict]:
    """Absolute path, size and mtime of an input file (None for None)."""
    if path is None:
        return None
    p = Path(path)
    st = p.stat()
    return {"path": str(p.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def progress_path(out: Optional[PathLike]) -> Optional[Path]:
    """The sidecar progress file of an output file (``OUT.partial``), or None."""
    return None if out is None else Path(str(out) + ".partial")


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
