"""Settings, the molecule spec and small helpers shared by the GFN2-xTB data generator.

:class:`MolSpec` describes one molecule to label; :class:`SkipMolecule` is raised for a
molecule that cannot be labelled (caught by :func:`get_md.datasets.xtb.store.generate`,
which logs it to ``skipped.jsonl``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

#: Elements the potential is trained for: H C N O F P S Cl Br I.
ALLOWED_Z = frozenset({1, 6, 7, 8, 9, 15, 16, 17, 35, 53})
#: MD temperature range (K) for force-field sampling, drawn per conformer.
T_RANGE = (350.0, 800.0)
#: Frames whose largest xTB force component exceeds this (eV/Å) are dropped as outliers.
MAX_FORCE = 30.0
SPLITS = ("train", "valid", "test")

# Default molecules per source (``--n-molecules`` scales these).
DEFAULT_PLAN: Dict[str, int] = {
    "qm9": 1200,
    "nci": 420,
    "minidrugbank": 371,
    "egfr": 150,
    "peptide": 260,
    "pocket": 250,
}
# Conformers per molecule and labelled frames per conformer, per source.
SOURCE_SAMPLING: Dict[str, Tuple[int, int]] = {
    "qm9": (1, 2),
    "nci": (1, 3),
    "minidrugbank": (2, 2),  # the file's conformer + one ETKDG conformer
    "egfr": (1, 3),
    "peptide": (1, 3),
    "pocket": (1, 1),
}
MAX_ABS_CHARGE = {"pocket": 2}
DEFAULT_MAX_ABS_CHARGE = 1


class SkipMolecule(Exception):
    """Raised for a molecule that cannot be labelled (reason in the message)."""


# ----------------------------------------------------------------------------- specs


@dataclass
class MolSpec:
    """One molecule to label.

    ``build(rng)`` returns an RDKit molecule with explicit hydrogens and at
    least one 3D conformer. With ``md=True`` each conformer seeds a force-field
    MD run giving ``n_frames`` snapshots; with ``md=False`` the conformers are
    labelled as they are. ``n_conformers`` counts conformers wanted in total
    (file conformer included); missing ones come from ETKDG.
    """

    key: str
    build: Callable[[np.random.Generator], Any]
    n_conformers: int = 1
    n_frames: int = 3
    md: bool = True
    max_abs_charge: int = DEFAULT_MAX_ABS_CHARGE
    group: Optional[str] = None  # split identity; default: canonical SMILES
    info: Dict[str, Any] = field(default_factory=dict)


def rng_for(seed: int, name: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``name`` (stable under reordering)."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def rdkit_modules():
    """(Chem, AllChem), with RDKit's logging switched off."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem

    RDLogger.DisableLog("rdApp.*")
    return Chem, AllChem


def package_data_path(package: str, *parts: str) -> Path:
    """A file shipped inside an installed package (``FileNotFoundError`` when it is not installed)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0], *parts)
