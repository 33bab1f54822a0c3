"""The starting structure of an MD run, read as an ``ase.Atoms`` (Å, amu).

Formats: ``.xyz`` / ``.extxyz`` (ASE; an extended XYZ cell with ``pbc`` makes the run
periodic), ``.sdf`` / ``.mol`` / ``.mol2`` (RDKit through get_md's readers; the sum of the
formal charges is the default total charge), ``.pdb`` (waters and hydrogens kept; the
CRYST1 box with ``periodic=True``), each optionally gzipped. One record is read
(``record``, 1-based, for files holding several).

Example:
    >>> atoms, charge = read_structure("ethanol.xyz")  # doctest: +SKIP
    >>> len(atoms), charge                             # doctest: +SKIP
    (9, 0.0)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Tuple

import numpy as np

from get_md.errors import WorkflowError

log = logging.getLogger("get_md.workflows.md")

#: Extensions read by :func:`read_structure` (after an optional ``.gz``).
STRUCTURE_FORMATS = (".xyz", ".extxyz", ".sdf", ".sd", ".mol", ".mol2", ".pdb")


def _ase_read(path: Path, record: int):
    import ase.io

    try:
        frames = ase.io.read(str(path), index=":", format="extxyz")
    except KeyError as e:  # ASE's symbol lookup: atomic numbers or unknown symbols in column 1
        raise WorkflowError(f"{path}: not a readable XYZ file: {e} is not an element symbol (the first "
                            "column holds symbols such as C, O, H)") from e
    except Exception as e:  # noqa: BLE001 - ASE raises many kinds for a malformed file
        raise WorkflowError(f"{path}: not a readable XYZ file ({type(e).__name__}: {e})") from e
    if not frames:
        raise WorkflowError(f"{path}: no structure in the file")
    if record > len(frames):
        raise WorkflowError(f"{path}: record {record} asked for, the file holds {len(frames)}")
    atoms = frames[record - 1]
    given = atoms.info.pop("charge", 0.0)  # the run's charge, one value for both engines (not atoms.info)
    try:
        charge = float(given)
    except (TypeError, ValueError):
        charge = float("nan")
    if not np.isfinite(charge):
        raise WorkflowError(f"{path} record {record}: charge={given!r} in the comment line is not a number "
                            "(total charge in e)")
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any() and not pbc.all():
        raise WorkflowError(f"{path} record {record}: periodic along some axes only (pbc={pbc.tolist()}); "
                            "give pbc=\"T T T\" or none")
    return atoms, charge


def _graph_read(path: Path, ext: str, record: int, periodic: bool):
    import ase

    from get_md.build import iter_poses
    from get_md.build.structure import from_pdb

    charge = 0.0
    if ext == ".pdb":
        graph = from_pdb(path, model=record, waters=True, hydrogens=True, periodic=periodic)
    else:
        found = None
        for rec in iter_poses(path):
            if rec.index == record:
                found = rec
                break
        if found is None:
            raise WorkflowError(f"{path}: record {record} asked for, the file holds fewer")
        if found.error is not None:
            raise found.error
        graph = found.graph
        if found.mol is not None:
            charge = float(sum(a.GetFormalCharge() for a in found.mol.GetAtoms()))
    atoms = ase.Atoms(numbers=graph.atomic_numbers.cpu().numpy(),
                      positions=graph.positions.detach().cpu().double().numpy())
    if graph.cell is not None and graph.pbc is not None and bool(graph.pbc.any()):
        atoms.cell = graph.cell.reshape(3, 3).cpu().double().numpy()
        atoms.pbc = graph.pbc.reshape(3).cpu().numpy()
    return atoms, charge


def read_structure(path, record: int = 1, periodic: bool = False) -> Tuple[Any, float]:
    """``(atoms, formal_charge)`` of record ``record`` of ``path`` (``ase.Atoms``, e).

    Raises:
        WorkflowError / GraphError: missing or unreadable file, unknown format, a record
            that is not there, NaN coordinates, unknown elements, a single atom, overlapping
            atoms; the message names the file and the record.
    """
    p = Path(path)
    if not p.is_file():
        raise WorkflowError(f"{p}: structure file not found")
    if isinstance(record, bool) or int(record) != record or record < 1:
        raise WorkflowError(f"record must be a whole number >= 1, got {record!r}")
    name = p.name.lower()
    ext = Path(name[:-3]).suffix if name.endswith(".gz") else p.suffix.lower()
    if ext not in STRUCTURE_FORMATS:
        raise WorkflowError(f"{p}: unknown structure format {ext!r} (expected one of {', '.join(STRUCTURE_FORMATS)})")
    if ext in (".xyz", ".extxyz"):
        atoms, charge = _ase_read(p, int(record))
    else:
        atoms, charge = _graph_read(p, ext, int(record), periodic)
    _check(atoms, f"{p} record {record}")
    return atoms, charge


def _check(atoms, who: str) -> None:
    from get_md.workflows.geometry_checks import check_overlaps, units_hint

    if len(atoms) < 2:
        raise WorkflowError(f"{who}: {len(atoms)} atom(s); MD needs at least two")
    x = atoms.positions
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise WorkflowError(f"{who}: atom {bad + 1} has a NaN or infinite coordinate")
    if np.any(atoms.numbers < 1) or np.any(atoms.numbers > 118):
        bad = int(np.flatnonzero((atoms.numbers < 1) | (atoms.numbers > 118))[0])
        raise WorkflowError(f"{who}: atom {bad + 1} has no element (atomic number {atoms.numbers[bad]})")
    check_overlaps(x, atoms.numbers, who, error=WorkflowError)
    if np.asarray(atoms.pbc).all():
        _check_box(atoms, who)
    hint = units_hint(x)
    if hint:
        log.warning("%s%s", who, hint)
    if not np.any(atoms.numbers == 1) and np.any(atoms.numbers == 6):
        log.warning("%s: no hydrogen atoms; a potential is trained on complete molecules: add them "
                    "(e.g. RDKit Chem.AddHs(mol, addCoords=True)) before running MD", who)


#: How a structure file gives the cell that :func:`_check_box` found without volume
CELL_HINT = 'give a cell (extended XYZ: Lattice="..."), or no pbc'


def _check_box(atoms, who: str) -> None:
    """A periodic structure's cell: a volume, and no atom on a periodic image of another
    (a placeholder CRYST1 of 1 Å, or a box in nm, had run as if it were real)."""
    from get_md.workflows.geometry_checks import check_cell, check_images

    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    check_cell(cell, atoms.pbc, who, hint=CELL_HINT, error=WorkflowError)
    check_images(atoms.positions, atoms.numbers, cell, atoms.pbc, who, error=WorkflowError)


__all__ = ["STRUCTURE_FORMATS", "read_structure"]
