"""What an MD run writes to its folder, and how a run picks up where it stopped.

``OUT/``:

* ``md.csv`` — one row per recorded step: ``step, time_ps, potential_energy_eV,
  kinetic_energy_eV, total_energy_eV, temperature_K``;
* ``trajectory.extxyz`` — one frame per recorded step (positions Å, ``momenta``
  amu·Å/ASE-time as ASE writes them; ``step``, ``time_ps`` and ``energy`` (eV) in the
  comment line), readable with ``ase.io.read(..., index=":")``, OVITO or VMD;
* ``checkpoint.npz`` — the engine's exact state at the last recorded step;
* ``run.json`` — the settings and the input file; a resumed run must match them.

Each recorded step appends its frame, then its row (each flushed to disk), then replaces
the checkpoint atomically. A run killed at any point resumes from the checkpoint:
frames and rows written after it are dropped first and computed again, so nothing is
lost or written twice.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from get_md.atomic import atomic_output, atomic_path
from get_md.errors import WorkflowError

CSV_HEADER = "step,time_ps,potential_energy_eV,kinetic_energy_eV,total_energy_eV,temperature_K"
_STEP = re.compile(r"(?:^|\s)step=(\d+)(?:\s|$)")


class RunFolder:
    """The files of one run in ``out`` (see the module docstring)."""

    def __init__(self, out) -> None:
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise WorkflowError(f"--out {self.out}: exists and is not a folder")
        self.csv = self.out / "md.csv"
        self.trajectory = self.out / "trajectory.extxyz"
        self.checkpoint = self.out / "checkpoint.npz"
        self.settings = self.out / "run.json"

    def has_run(self) -> bool:
        return self.settings.exists()

    def start(self, settings: dict) -> None:
        """Begin a new run: empty outputs, the settings recorded.

        Raises:
            WorkflowError, before anything is deleted: the folder holds ``md.csv``,
                ``trajectory.extxyz`` or ``checkpoint.npz`` but no ``run.json`` (not a run of
                get-md md: another tool's output, which a new run would overwrite).
        """
        if not self.settings.exists():
            found = [p.name for p in (self.csv, self.trajectory, self.checkpoint) if p.exists()]
            if found:
                raise WorkflowError(
                    f"--out {self.out} holds {', '.join(found)} but no run.json: not a run of get-md md (another "
                    "tool's output?), and a new run would overwrite them; nothing was deleted. Give an empty or new "
                    "--out folder, or remove those files")
        self.out.mkdir(parents=True, exist_ok=True)
        for p in (self.checkpoint, self.csv, self.trajectory):
            if p.exists():
                p.unlink()
        with atomic_output(self.settings) as fh:
            json.dump(settings, fh, indent=1)
        with atomic_output(self.csv) as fh:
            fh.write(CSV_HEADER + "\n")
        self.trajectory.touch()

    def recorded_settings(self) -> dict:
        try:
            return json.loads(self.settings.read_text())
        except (OSError, ValueError) as e:
            raise WorkflowError(f"{self.settings}: unreadable ({e}); start over with --no-resume") from e

    def load_checkpoint(self) -> Optional[tuple[int, bytes]]:
        """``(step, engine state)`` of the last recorded step, or None before the first."""
        if not self.checkpoint.exists():
            return None
        try:
            with np.load(self.checkpoint, allow_pickle=False) as data:
                return int(data["step"]), data["state"].tobytes()
        except Exception as e:  # noqa: BLE001 - a damaged npz raises several kinds
            raise WorkflowError(f"{self.checkpoint}: unreadable checkpoint ({e}); start over with "
                                "--no-resume") from e

    def record(self, step: int, time_ps: float, frame_atoms, row: list, state: bytes) -> None:
        """Append one step's frame and row, then replace the checkpoint."""
        import ase.io

        with open(self.trajectory, "a") as fh:
            ase.io.write(fh, frame_atoms, format="extxyz")
            fh.flush()
            os.fsync(fh.fileno())
        with open(self.csv, "a") as fh:
            fh.write(",".join(str(v) for v in row) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        with atomic_path(self.checkpoint) as tmp:
            np.savez(tmp, step=np.int64(step), time_ps=np.float64(time_ps),
                     state=np.frombuffer(state, dtype=np.uint8))

    def truncate_after(self, step: int, symbols: Sequence[str], structure: str = "the structure") -> None:
        """Drop rows and frames after ``step`` (written after the last checkpoint, or torn).

        Raises:
            WorkflowError, before anything is rewritten: ``md.csv`` or the trajectory does
                not reach ``step`` (rows or frames were lost: a damaged or replaced file;
                resuming would leave a gap), or a frame holds other elements than
                ``symbols``, those of ``structure`` (the file changed since the run began,
                or the trajectory is another run's).
        """
        lines = self.csv.read_text().splitlines() if self.csv.exists() else []
        rows = [ln for ln in lines[1:] if ln.split(",")[0].isdigit() and int(ln.split(",")[0]) <= step
                and len(ln.split(",")) == len(CSV_HEADER.split(","))]
        if not rows or int(rows[-1].split(",")[0]) != step:
            found = f"its last row is step {rows[-1].split(',')[0]}" if rows else (
                "it holds no row" if self.csv.exists() else "it is missing")
            raise WorkflowError(f"{self.csv}: {found}, the checkpoint is at step {step}: rows were lost (a damaged "
                                "or replaced file); restore it, or start over with --no-resume")
        text = self.trajectory.read_text() if self.trajectory.exists() else ""
        frame_lines = len(symbols) + 2
        tlines = text.splitlines(keepends=True)
        kept = []
        last = None
        for start in range(0, len(tlines) - frame_lines + 1, frame_lines):
            frame = tlines[start:start + frame_lines]
            m = _STEP.search(frame[1])
            if not frame[-1].endswith("\n") or m is None or int(m.group(1)) > step:
                break
            for i, (line, symbol) in enumerate(zip(frame[2:], symbols, strict=True)):
                found = (line.split(maxsplit=1) or ["nothing"])[0]
                if found != symbol:
                    raise WorkflowError(
                        f"{self.trajectory}: frame of step {m.group(1)}, atom {i + 1} is {found} where "
                        f"{structure} has {symbol}: the structure file changed since the run began, or the "
                        "trajectory is another run's; give the run's structure, or start over with --no-resume")
            kept.extend(frame)
            last = int(m.group(1))
        if last != step:
            found = f"its last frame of {len(symbols)} atoms is step {last}" if last is not None else (
                f"it holds no frame of {len(symbols)} atoms" if text else "it is missing or empty")
            raise WorkflowError(f"{self.trajectory}: {found}, the checkpoint is at step {step}: frames were lost (a "
                                "damaged or replaced file, or another run's); restore it, or start over with "
                                "--no-resume")
        if len(rows) != len(lines) - 1:
            with atomic_output(self.csv) as fh:
                fh.write("\n".join([CSV_HEADER, *rows]) + "\n")
        if len(kept) != len(tlines):
            with atomic_output(self.trajectory) as fh:
                fh.write("".join(kept))

__all__ = ["CSV_HEADER", "RunFolder"]
