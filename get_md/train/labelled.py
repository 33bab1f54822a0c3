"""Read labelled structure sets (``.npz``: energies and forces) as training datasets.

The format is the one ``get_md.datasets.xtb`` writes: concatenated ``positions``
[sum N, 3] Å, ``atomic_numbers`` [sum N], ``n_atoms`` [M], ``energy`` [M] eV,
``forces`` [sum N, 3] eV/Å, optional ``charge`` [M], ``source`` [M] and ``split`` [M]
("train" / "valid" / "test", assigned by molecule).

Example:
    >>> from get_md.train.labelled import load_labelled
    >>> train = load_labelled("xtb_organic_v2.npz", split="train")   # doctest: +SKIP
    >>> train[0].targets["forces"].shape                             # doctest: +SKIP
    torch.Size([21, 3])
"""

from __future__ import annotations

import logging
import os
from typing import Optional, Union

import numpy as np
import torch

from get_md.datasets.targets import excluded_records
from get_md.graph import MolecularGraph
from get_md.train.data import DatasetError, MolecularDataset, Sample
from get_md.train.geometry import NEIGHBOUR_RANGE, check_structure

logger = logging.getLogger(__name__)

REQUIRED = ("positions", "atomic_numbers", "n_atoms", "energy", "forces")
#: eV/Å: an RMS force component above this suggests kcal/mol/Å (23 times larger): a warning
MAX_RMS_FORCE = 20.0
#: ΔE of two geometries of one molecule over the work of its forces (trapezoid rule), median
#: over such pairs: about 1 (0.6 on the shipped xTB data) when energies and forces share units;
#: outside this range a warning (23 with energies in kcal/mol, 1/23 with forces in kcal/mol/Å)
WORK_RATIO_RANGE = (0.1, 5.0)
#: Shipped data files no longer shipped -> their replacement (same directory).
WITHDRAWN = {"xtb_organic_v1.npz": "xtb_organic_v2.npz"}


def _moved_hint(path: str) -> str:
    """For a path into ``get_md/zoo/data/`` (where the shipped data lived until it moved to
    ``get_md/datasets/data/``, and where commands stored in older model files point): where
    the file is now, or ""."""
    from get_md.datasets import DATA_DIR

    name = os.path.basename(path)
    if name in WITHDRAWN:
        return (f"; {name} was withdrawn (it held records of a target kept out of all training): "
                f"use {DATA_DIR / WITHDRAWN[name]}")
    parent = os.path.dirname(os.path.abspath(path)).replace(os.sep, "/")
    moved = DATA_DIR / name
    if parent.endswith("get_md/zoo/data") and moved.is_file():
        return f"; the shipped data moved from get_md/zoo/data/ to {moved}"
    return ""


def _check_arrays(path: str, data) -> None:
    """DatasetError naming the array whose type or length does not fit the others (element
    symbols as atomic numbers, or a ``split`` shorter than ``n_atoms``, had come back as a
    bare torch TypeError or numpy IndexError)."""
    z = data["atomic_numbers"]
    if z.dtype.kind not in "iu":
        raise DatasetError(f"{path}: atomic_numbers must be integers, got dtype {z.dtype}"
                           + (" (element symbols?)" if z.dtype.kind in "US" else ""))
    for key in ("positions", "forces", "energy", "n_atoms") + tuple(k for k in ("charge",) if k in data.files):
        if data[key].dtype.kind not in "iuf":
            raise DatasetError(f"{path}: {key} must be numbers, got dtype {data[key].dtype}")
    n_total, n_structures = len(z), len(data["n_atoms"])
    for key in ("positions", "forces"):
        if data[key].shape != (n_total, 3):
            raise DatasetError(f"{path}: {key} has shape {data[key].shape}; expected ({n_total}, 3), one row "
                               "per atom of atomic_numbers")
    for key in ("split", "source", "charge"):
        if key in data.files and data[key].size != n_structures:
            raise DatasetError(f"{path}: {key} holds {data[key].size} values for {n_structures} structures "
                               "(n_atoms); one per structure")


def _check_geometry(path: str, positions: np.ndarray, offsets: np.ndarray, sources: np.ndarray,
                    chosen: list[int]) -> Optional[float]:
    """:func:`~get_md.train.geometry.check_structure` on each chosen structure (the error names
    the file, structure and atoms); returns the median nearest-neighbour distance (None for
    structures of one atom)."""
    nearest = np.concatenate([np.empty(0)] + [
        check_structure(positions[offsets[i]:offsets[i + 1]], f"{path}: structure {i} ({sources[i]})")
        for i in chosen])
    return float(np.median(nearest)) if len(nearest) else None


def _work_ratio(data, offsets: np.ndarray, chosen: list[int]) -> tuple[Optional[float], int]:
    """Median of ΔE / W over consecutive structures with the same atoms (in ``chosen``), W the
    work of their mean forces along the displacement; None under 10 such pairs."""
    z, pos, forces = (data[k] for k in ("atomic_numbers", "positions", "forces"))
    energy = data["energy"].reshape(-1)
    last: dict[bytes, int] = {}
    ratios = []
    for i in chosen:
        a, b = offsets[i], offsets[i + 1]
        key = z[a:b].tobytes()
        j = last.get(key)
        last[key] = i
        if j is None:
            continue
        c, d = offsets[j], offsets[j + 1]
        work = -0.5 * float(((forces[a:b] + forces[c:d]) * (pos[a:b] - pos[c:d])).sum())
        if work != 0.0:
            ratios.append((float(energy[i]) - float(energy[j])) / work)
    return (float(np.median(ratios)) if len(ratios) >= 10 else None), len(ratios)


def _unit_warnings(path: str, data, offsets: np.ndarray, chosen: list[int],
                   nearest: Optional[float]) -> None:
    """Log warnings when lengths, forces or energies look like other units than Å, eV/Å, eV."""
    low, high = NEIGHBOUR_RANGE
    if nearest is not None and not low <= nearest <= high:
        guess = "nm" if nearest < low else "Bohr"
        logger.warning("%s: median nearest-neighbour distance %.3g Å (expected %g-%g Å); are the "
                       "positions in %s? load_labelled reads Å", path, nearest, low, high, guess)
    rows = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in chosen]) if chosen else []
    rms = float(np.sqrt(np.mean(np.square(data["forces"][rows], dtype=np.float64)))) if len(rows) else 0.0
    if rms > MAX_RMS_FORCE:
        logger.warning("%s: RMS force component %.3g eV/Å (above %g); are the forces in "
                       "kcal/mol/Å? load_labelled reads eV/Å", path, rms, MAX_RMS_FORCE)
    ratio, pairs = _work_ratio(data, offsets, chosen)
    low, high = WORK_RATIO_RANGE
    if ratio is not None and not low <= ratio <= high:
        logger.warning("%s: energy differences between geometries of the same molecule are %.3g "
                       "times the work of the forces (median of %d pairs; about 1 when both share "
                       "units); are energies and forces in eV and eV/Å?", path, ratio, pairs)


def load_labelled(
    path: Union[str, os.PathLike],
    split: Optional[str] = None,
    dtype: torch.dtype = torch.float64,
    limit: Optional[int] = None,
) -> MolecularDataset:
    """Structures of ``split`` (all when None) as a dataset of energy/forces samples.

    Each atom is its own block (small molecules and clusters). Energies in eV,
    forces in eV/Å, positions in Å, kept in ``dtype``.

    Raises:
        DatasetError: missing file or keys, inconsistent sizes, no structures, non-finite
            values, overlapping atoms (closer than ``geometry.MIN_DISTANCE``), coordinates
            beyond ``geometry.MAX_COORDINATE``, a fractional total charge (the message names
            the file and the structure). Lengths, forces and energies that look like other units (nm or Bohr,
            kcal/mol) are logged as warnings.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DatasetError(f"{path}: labelled data file not found{_moved_hint(path)}")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - numpy raises several kinds for bad archives
        raise DatasetError(f"{path}: not a readable .npz file ({e})") from e
    missing = [k for k in REQUIRED if k not in data.files]
    if missing:
        raise DatasetError(f"{path}: missing arrays {missing}")
    _check_arrays(path, data)
    n_atoms = data["n_atoms"].astype(np.int64)
    if len(n_atoms) == 0:
        raise DatasetError(f"{path}: holds no structures (n_atoms is empty)")
    offsets = np.concatenate([[0], np.cumsum(n_atoms)])
    if offsets[-1] != len(data["atomic_numbers"]) or len(data["energy"]) != len(n_atoms):
        raise DatasetError(f"{path}: n_atoms does not match the atom and energy arrays")
    splits = data["split"].astype(str) if "split" in data.files else np.array(["train"] * len(n_atoms))
    sources = data["source"].astype(str) if "source" in data.files else np.array([f"{i}" for i in range(len(n_atoms))])
    held_out = sorted({tag.split(":")[0] for tag, bad in zip(sources, excluded_records(sources), strict=True)
                       if bad})
    if held_out:
        raise DatasetError(
            f"{path}: has records of targets held out of all training (sources {held_out}); "
            "remove them with get_md.datasets.xtb.store.drop_excluded")
    if split is not None and split not in set(splits.tolist()):
        raise DatasetError(f"{path}: no structures in split {split!r} (have {sorted(set(splits.tolist()))})")
    chosen = [i for i in range(len(n_atoms)) if split is None or splits[i] == split]
    if limit is not None:
        chosen = chosen[:max(int(limit), 0)]
    if "charge" in data.files:
        q = data["charge"].astype(np.float64)
        odd = [i for i in chosen if np.isfinite(q[i]) and q[i] != np.round(q[i])]
        if odd:
            raise DatasetError(f"{path}: structure {odd[0]} ({sources[odd[0]]}): total charge "
                               f"{q[odd[0]]:g} is not a whole number of e")
    nearest = _check_geometry(path, data["positions"], offsets, sources, chosen)
    _unit_warnings(path, data, offsets, chosen, nearest)
    pos_all = torch.as_tensor(data["positions"], dtype=dtype)
    z_all = torch.as_tensor(data["atomic_numbers"], dtype=torch.long)
    f_all = torch.as_tensor(data["forces"], dtype=dtype)
    e_all = torch.as_tensor(data["energy"], dtype=dtype)
    q_all = torch.as_tensor(data["charge"], dtype=dtype) if "charge" in data.files else None
    samples = []
    for i in range(len(n_atoms)):
        if split is not None and splits[i] != split:
            continue
        a, b = int(offsets[i]), int(offsets[i + 1])
        name = f"{os.path.basename(path)}:{sources[i]}"
        if not (torch.isfinite(f_all[a:b]).all() and torch.isfinite(e_all[i])):
            raise DatasetError(f"{name}: non-finite energy or forces")
        graph = MolecularGraph.from_atoms(pos_all[a:b], z_all[a:b], name=name)
        targets = {"energy": e_all[i:i + 1], "forces": f_all[a:b]}
        if q_all is not None:
            targets["charge"] = q_all[i:i + 1]  # total charge (e); a label, not a loss target
        samples.append(Sample(graph, targets))
        if limit is not None and len(samples) >= limit:
            break
    return MolecularDataset(samples, name=f"{os.path.basename(path)}[{split or 'all'}]")
