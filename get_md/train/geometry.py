"""Geometry checks of training structures, shared by the labelled ``.npz`` files
(:func:`~get_md.train.labelled.load_labelled`) and the ``.pt`` dataset files
(:meth:`~get_md.train.data.MolecularDataset.load`).

Example:
    >>> check_structure([[0.0, 0, 0], [1.0, 0, 0], [0, 1.5, 0]], "x.npz: structure 0").tolist()
    [1.0, 1.0, 1.5]
    >>> check_structure([[0.0, 0, 0], [0.05, 0, 0]], "x.npz: structure 1")
    Traceback (most recent call last):
    ...
    get_md.errors.DatasetError: x.npz: structure 1: atoms 1 and 2 are 0.05 Å apart (overlapping atoms: < 0.1 Å; positions in nm?)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from get_md.errors import DatasetError

#: Å: two atoms of one structure closer than this cannot be a molecule (an error)
MIN_DISTANCE = 0.1
#: Å: a coordinate beyond this is not a position (an error; as the rescoring workflows)
MAX_COORDINATE = 1e5
#: Å: a median nearest-neighbour distance outside this range suggests other length units
#: (about 0.1 in nm, 1.8-2.9 in Bohr; bonds to H are about 1.0 Å, C-C 1.5 Å)
NEIGHBOUR_RANGE = (0.5, 1.75)


def check_structure(positions: Any, who: str) -> np.ndarray:
    """DatasetError ``"{who}: ..."`` naming the atoms for non-finite coordinates, a
    coordinate beyond :data:`MAX_COORDINATE` or two atoms closer than :data:`MIN_DISTANCE`
    (``positions`` [N, 3] Å, NumPy or torch); returns each atom's nearest-neighbour distance
    (Å, [N]; empty for one atom). A k-d tree: O(N log N)."""
    from scipy.spatial import cKDTree

    if hasattr(positions, "detach"):
        positions = positions.detach().cpu().double().numpy()
    p = np.asarray(positions, dtype=np.float64)
    bad = ~np.isfinite(p).all(axis=1)
    if bad.any():
        a = int(np.argmax(bad))
        raise DatasetError(f"{who}: atom {a + 1} has non-finite coordinates {p[a].tolist()}")
    far = (np.abs(p) > MAX_COORDINATE).any(axis=1)
    if far.any():
        a = int(np.argmax(far))
        raise DatasetError(f"{who}: atom {a + 1} has coordinate {p[a].tolist()} beyond "
                           f"{MAX_COORDINATE:g} Å")
    if len(p) < 2:
        return np.empty(0)
    # not workflows' geometry_checks.closest_pair: it finds only pairs under the threshold, the
    # median below needs every atom's nearest neighbour, and get_md core does not import workflows
    d, idx = cKDTree(p).query(p, k=2)
    near = d[:, 1]
    a = int(np.argmin(near))
    b = int(idx[a, 1] if idx[a, 1] != a else idx[a, 0])  # coincident atoms: either may come first
    if near[a] < MIN_DISTANCE:
        hint = "; positions in nm?" if np.median(near) < NEIGHBOUR_RANGE[0] else ""
        raise DatasetError(f"{who}: atoms {min(a, b) + 1} and {max(a, b) + 1} are {float(near[a]):.3g} Å "
                           f"apart (overlapping atoms: < {MIN_DISTANCE} Å{hint})")
    return near


__all__ = ["MAX_COORDINATE", "MIN_DISTANCE", "NEIGHBOUR_RANGE", "check_structure"]
