"""Trajectory frames for ``rescore-traj``: topology and selections, frames streamed
with ``mdtraj.iterload`` (a damaged frame ends the stream with its reason), and the
frames to score, each checked (:func:`checked_frames`)."""

from __future__ import annotations

from typing import Callable, Iterator, Optional

from get_md.errors import WorkflowError
from get_md.units import NM_TO_ANGSTROM

from ..geometry_checks import frame_problems
from .options import PathLike


def load_topology(topology: PathLike):
    import mdtraj as md

    try:
        return md.load_topology(str(topology))
    except Exception as e:  # noqa: BLE001 - mdtraj raises many types for unreadable files
        raise WorkflowError(f"{topology}: cannot read topology ({type(e).__name__}: {e})") from e


def select_atoms(top, selection: str, what: str, topology: PathLike):
    import numpy as np

    try:
        idx = top.select(selection)
    except Exception as e:  # noqa: BLE001 - mdtraj's selection parser raises several types
        raise WorkflowError(f"{what} selection {selection!r} is not valid for {topology} ({e})") from e
    idx = np.asarray(idx, dtype=np.int64)
    if idx.size == 0:
        raise WorkflowError(f"{what} selection {selection!r} matches no atom of {topology}"
                            + (other_residues_hint(top) if what == "ligand" else ""))
    return idx


def other_residues_hint(top) -> str:
    """``; its residues besides protein, nucleic acid and water: MOL (1 residue, 79 atoms), ...
    (e.g. --ligand 'resname MOL')`` for an mdtraj topology, the largest residue named first;
    empty if there are none."""
    sizes: dict[str, list[int]] = {}
    for residue in top.residues:
        if not (residue.is_protein or residue.is_water or residue.is_nucleic):
            sizes.setdefault(residue.name, []).append(residue.n_atoms)
    if not sizes:
        return "; it holds no residue besides protein, nucleic acid and water"
    order = sorted(sizes, key=lambda n: -max(sizes[n]))
    listed = ", ".join(f"{n} ({len(sizes[n])} residue{'s' if len(sizes[n]) > 1 else ''}, "
                       f"{max(sizes[n])} atoms{' each at most' if len(sizes[n]) > 1 else ''})" for n in order[:5])
    more = f" and {len(order) - 5} more" if len(order) > 5 else ""
    return f"; its residues besides protein, nucleic acid and water: {listed}{more} (e.g. --ligand 'resname {order[0]}')"


#: Errors mdtraj raises for a frame it cannot read.
_READ_ERRORS = (OSError, ValueError, IndexError, TypeError, RuntimeError)


def read_frames(trajectory: PathLike, top, atom_indices, start: int, chunk: int) -> Iterator:
    """``(absolute frame number, xyz [n, 3] nm, time ps, None)`` for frames >= start, streamed.

    A frame that cannot be read (truncated or damaged file) ends the stream with
    ``(its number, None, nan, reason)``: when a chunk of ``chunk`` frames fails, it is
    read again frame by frame, so that its intact frames are kept and the damaged
    frame is the one named. Nothing after a damaged frame is read (XTC frames have
    no fixed size, so the next one cannot be found).

    ``mdtraj.iterload`` is used without ``stride`` (its strided XTC reads can loop
    forever at the end of the file in mdtraj 1.11) and with ``skip`` except for PDB
    files, where mdtraj ignores it.
    """
    import mdtraj as md

    path = str(trajectory)
    is_pdb = path.lower().endswith((".pdb", ".pdb.gz"))
    wanted = start  # the next frame to hand on
    size = chunk
    while True:
        skip = 0 if is_pdb else wanted
        frame = skip
        try:
            for piece in md.iterload(path, chunk=size, top=top, skip=skip, atom_indices=atom_indices):
                times = piece.time if piece.time is not None else None
                for i in range(piece.n_frames):
                    if frame >= wanted:
                        t = float(times[i]) if times is not None else float(frame)
                        yield frame, piece.xyz[i], t, None
                        wanted = frame + 1
                    frame += 1
            break
        except _READ_ERRORS as e:
            if size > 1:  # read the failed chunk again, one frame at a time
                size = 1
                continue
            yield wanted, None, float("nan"), (f"{trajectory}: frame {wanted} cannot be read "
                                               f"({type(e).__name__}: {e}); truncated or damaged file?")
            return
    if path.lower().endswith(".dcd"):  # mdtraj drops a DCD frame cut short without a word
        from get_md.build.trajectory import dcd_declared_frames

        declared = dcd_declared_frames(path)
        if declared is not None and frame < declared and frame >= start:
            yield frame, None, float("nan"), (f"{trajectory}: frame {frame}: the file ends after {frame} "
                                              f"complete frame(s), its header declares {declared}; "
                                              "truncated file?")


def count_frames(trajectory: PathLike, start: int, stop: Optional[int], stride: int) -> Optional[int]:
    """Frames that will be scored, when the format tells its length cheaply (for the bar)."""
    import mdtraj as md

    if str(trajectory).lower().endswith((".pdb", ".pdb.gz")):
        return None
    try:
        with md.open(str(trajectory)) as f:
            n = len(f)
    except Exception:  # noqa: BLE001 - a progress bar without total is fine
        return None
    end = n if stop is None else min(stop, n)
    return len(range(start, end, stride))


def checked_frames(frames: Iterator, trajectory: PathLike, start: int, stop: Optional[int], stride: int,
                    atom_name, frame_check: Optional[Callable] = None) -> Iterator:
    """The frames to score, as ``(frame, time_ps, positions [N, 3] Å float32 or None, error
    or None)``, from :func:`read_frames`: ``start, start + stride, ...`` below ``stop``,
    each checked by :func:`~get_md.workflows.geometry_checks.frame_problems` (finite,
    |x| < 1e5 Å, no two atoms closer than 0.5 Å; ``atom_name(i)`` names atom i). A bad
    frame keeps its place with the reason instead of positions, so that batches have
    the same composition in a resumed run; an unreadable frame ends the stream.
    ``frame_check(positions)``, if given, adds a reason of its own (or None)."""
    import numpy as np

    for frame, xyz, t, error in frames:
        if stop is not None and frame >= stop:
            break
        if error is not None:
            yield frame, t, None, error
            return
        if (frame - start) % stride:
            continue
        pos = (xyz * NM_TO_ANGSTROM).astype(np.float32)
        (why,) = frame_problems(pos, atom_name)
        if why is None and frame_check is not None:
            why = frame_check(pos)
        if why is None:
            yield frame, t, pos, None
        else:
            yield frame, t, None, f"{trajectory}: frame {frame}: {why}"
