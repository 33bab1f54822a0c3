"""The protein pocket around a reference ligand and ligand/pocket clash metrics.

Part of :mod:`get_md.datasets.reference_poses`, which re-exports its public names.
"""

from __future__ import annotations

import math
import re

import numpy as np

#: Protein heavy atoms farther than this from every reference heavy atom are ignored (Å).
POCKET_CUTOFF = 12.0
#: Distance below which a ligand/protein heavy-atom pair adds to the clash score (Å).
CLASH_DISTANCE = 3.0

_WATERS = frozenset({"HOH", "WAT", "H2O", "DOD", "TIP", "TIP3", "TIP4", "SOL", "T3P", "SPC"})


def read_pocket_atoms(pdb_text: str) -> tuple[np.ndarray, list[tuple[str, bool]]]:
    """Heavy-atom coordinates of a PDB's first model, waters and hydrogens left out.

    Alternate locations keep their first occurrence. Returns ``(xyz, keys)`` where
    ``keys[i]`` is ``(residue key, is_hetatm)`` of atom ``i``.

    Example:
        >>> xyz, keys = read_pocket_atoms(read_source(repo, path).decode())  # doctest: +SKIP
        >>> xyz.shape  # doctest: +SKIP
        (2435, 3)
    """
    xyz: list[tuple[float, float, float]] = []
    keys: list[tuple[str, bool]] = []
    seen: set[tuple[str, str]] = set()
    for line in pdb_text.splitlines():
        rec = line[:6]
        if rec.startswith("ENDMDL"):
            break
        if rec not in ("ATOM  ", "HETATM"):
            continue
        resname = line[17:20].strip().upper()
        if resname in _WATERS or line[17:21].strip().upper() in _WATERS:
            continue
        name = line[12:16]
        element = line[76:78].strip().upper() if len(line) >= 78 else ""
        if not element:
            element = re.sub(r"[^A-Za-z]", "", name)[:1].upper()
        if element in ("H", "D"):
            continue
        res_key = f"{line[21]}:{line[22:27].strip()}:{resname}"
        atom_key = (res_key, name)
        if atom_key in seen:
            continue
        seen.add(atom_key)
        try:
            xyz.append((float(line[30:38]), float(line[38:46]), float(line[46:54])))
        except ValueError:
            continue
        keys.append((res_key, rec == "HETATM"))
    return np.asarray(xyz, dtype=float).reshape(-1, 3), keys


def pocket_near_reference(pdb_text: str, ref_xyz: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Protein heavy atoms within :data:`POCKET_CUTOFF` of the reference; HETATM residues
    sitting on the reference (an atom within 1 Å: a copy of the ligand) are left out."""
    xyz, keys = read_pocket_atoms(pdb_text)
    if len(xyz) == 0:
        return xyz, []
    d = _min_dist_each(xyz, ref_xyz)
    overlapping = sorted({k for (k, het), di in zip(keys, d, strict=True) if het and di < 1.0})
    keep = d <= POCKET_CUTOFF
    if overlapping:
        keep &= np.array([k not in overlapping for k, _ in keys])
    return xyz[keep], overlapping


def _min_dist_each(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(len(a))
    for i in range(0, len(a), 4096):
        diff = a[i:i + 4096, None, :] - b[None, :, :]
        out[i:i + 4096] = np.sqrt((diff * diff).sum(-1)).min(1)
    return out


def clash_metrics(lig_xyz: np.ndarray, pocket_xyz: np.ndarray) -> tuple[float, float]:
    """Clash score and closest distance between ligand and protein heavy atoms.

    The score is ``sum max(0, CLASH_DISTANCE - d)^2`` over all pairs (Å²).

    Example:
        >>> clash_metrics(np.zeros((1, 3)), np.array([[2.5, 0.0, 0.0]]))
        (0.25, 2.5)
    """
    if len(pocket_xyz) == 0 or len(lig_xyz) == 0:
        return 0.0, math.inf
    diff = lig_xyz[:, None, :] - pocket_xyz[None, :, :]
    d = np.sqrt((diff * diff).sum(-1))
    score = float((np.clip(CLASH_DISTANCE - d, 0.0, None) ** 2).sum())
    return score, float(d.min())


__all__ = [
    "CLASH_DISTANCE", "POCKET_CUTOFF", "clash_metrics", "pocket_near_reference", "read_pocket_atoms",
]
