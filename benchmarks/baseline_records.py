"""Pose records and receptor cleaning for the classical affinity baselines.

Part of ``benchmarks/affinity_baselines.py`` (which re-exports every name): reading the
SDF records of posed ligands (hydrogens added with coordinates) and removing waters,
alternate locations and extra models from the receptor PDB.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WATER_RESNAMES = frozenset(
    {"HOH", "WAT", "H2O", "DOD", "D2O", "TIP", "TIP3", "TIP4", "TIP5", "SOL", "T3P", "T4P", "SPC"}
)
"""Residue names treated as water and removed from the receptor."""


@dataclass
class PoseRecord:
    """One SDF record and what was made of it.

    Attributes:
        index: 0-based position of the record in the SDF file.
        name: The record's title line (``_Name``).
        mol: The RDKit molecule with all hydrogens present (``Chem.AddHs(addCoords=True)``),
            or None when the record could not be used.
        heavy_atoms: Heavy-atom count, or None when the record could not be parsed.
        errors: Error messages, each prefixed by the step or method that failed.
    """

    index: int
    name: str
    mol: Any = None
    heavy_atoms: int | None = None
    errors: list[str] = field(default_factory=list)


def _one_line(exc: BaseException | str) -> str:
    """Condenses an exception or message to a single line.

    Args:
        exc: An exception or a message.

    Returns:
        ``"ExceptionType: last non-empty line"`` (or the message's last non-empty line).
    """
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    if isinstance(exc, BaseException):
        return f"{type(exc).__name__}: {last}" if last else type(exc).__name__
    return last


def _split_sdf_blocks(text: str) -> list[str]:
    """Splits SDF text into record blocks (without the ``$$$$`` delimiter lines).

    Args:
        text: Content of an SDF file.

    Returns:
        One string per record; a trailing block without ``$$$$`` counts only if non-blank.
    """
    blocks: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.strip() == "$$$$":
            blocks.append("\n".join(current) + "\n")
            current = []
        else:
            current.append(line)
    if any(ln.strip() for ln in current):
        blocks.append("\n".join(current) + "\n")
    return blocks


def read_pose_records(ligands_sdf: str | os.PathLike[str]) -> list[PoseRecord]:
    """Reads every record of an SDF file and adds missing hydrogens with coordinates.

    Records are split on ``$$$$`` lines, so that a record RDKit cannot parse still has its
    index and name. A record without a 3D conformer is rejected (poses must be placed).

    Args:
        ligands_sdf: Path of the SDF file of poses.

    Returns:
        One :class:`PoseRecord` per SDF record, in file order.
    """
    from rdkit import Chem

    text = Path(ligands_sdf).read_text(errors="replace")
    records: list[PoseRecord] = []
    for index, block in enumerate(_split_sdf_blocks(text)):
        name = block.splitlines()[0].strip() if block.strip() else ""
        rec = PoseRecord(index=index, name=name)
        records.append(rec)
        try:
            mol = Chem.MolFromMolBlock(block, sanitize=True, removeHs=False)
        except Exception as exc:  # noqa: BLE001
            rec.errors.append(f"read: {_one_line(exc)}")
            continue
        if mol is None:
            rec.errors.append("read: RDKit could not parse the record")
            continue
        rec.heavy_atoms = int(mol.GetNumHeavyAtoms())
        if mol.GetNumConformers() == 0 or not mol.GetConformer().Is3D():
            rec.errors.append("read: record has no 3D coordinates")
            continue
        try:
            rec.mol = Chem.AddHs(mol, addCoords=True)
        except Exception as exc:  # noqa: BLE001
            rec.errors.append(f"read: adding hydrogens failed: {_one_line(exc)}")
    return records


def clean_receptor_pdb(pdb_text: str) -> tuple[str, dict[str, Any]]:
    """Removes waters, alternate locations beyond the first and extra models from a PDB.

    Only ``ATOM``/``HETATM`` records of the first model are kept (first alternate location of
    each atom, altloc flag blanked), plus ``TER``/``END`` and the ``CONECT`` records whose atoms
    all remain. Ions and cofactors are kept.

    Args:
        pdb_text: Content of the receptor PDB file.

    Returns:
        The cleaned PDB text and a dict with ``waters_removed`` (number of water atoms) and
        ``atoms`` (number of atoms kept).
    """
    kept: list[str] = []
    conect: list[str] = []
    serials: set[str] = set()
    seen: set[tuple[str, str, str, str]] = set()
    n_water = 0
    for line in pdb_text.splitlines():
        record = line[:6].strip()
        if record == "ENDMDL":
            break
        if record in ("ATOM", "HETATM"):
            line = line.ljust(80)
            if line[17:21].strip().upper() in WATER_RESNAMES:
                n_water += 1
                continue
            key = (line[21], line[22:27], line[17:21], line[12:16])
            if key in seen:
                continue
            seen.add(key)
            kept.append(line[:16] + " " + line[17:].rstrip())
            serials.add(line[6:11].strip())
        elif record == "TER":
            kept.append(line.rstrip())
        elif record == "CONECT":
            conect.append(line.rstrip())
    for line in conect:
        fields = [line[i : i + 5].strip() for i in range(6, len(line), 5)]
        fields = [f for f in fields if f]
        if fields and all(f in serials for f in fields):
            kept.append(line)
    kept.append("END")
    return "\n".join(kept) + "\n", {"waters_removed": n_water, "atoms": len(serials)}
