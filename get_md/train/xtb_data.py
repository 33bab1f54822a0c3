"""Moved: the GFN2-xTB data generator is now :mod:`get_md.datasets.xtb`.

This module re-exports its names so that old imports and old commands keep working,
``python -m get_md.train.xtb_data ...`` included (the command that made the shipped
``xtb_organic_v2.npz``; it runs :func:`get_md.datasets.xtb.cli.main`). The helpers that
were private here before the move (``_safe_name``, ``_atomic_savez``, ``_from_smiles``,
``_from_mol``, ``_cut_cluster``, ``_rng_for``) are kept as aliases of their public names.

Example:
    >>> from get_md.train.xtb_data import smiles_specs  # same as get_md.datasets.xtb
"""

from __future__ import annotations

from get_md.datasets.xtb import *  # noqa: F403 - the whole public API, under the old name
from get_md.datasets.xtb import (
    __all__,  # noqa: F401
    atomic_savez,
    cut_cluster,
    from_mol,
    from_smiles,
    main,
    rng_for,
    safe_name,
)

# the names these helpers had before the move (tests and benchmarks used them)
_safe_name = safe_name
_atomic_savez = atomic_savez
_from_smiles = from_smiles
_from_mol = from_mol
_cut_cluster = cut_cluster
_rng_for = rng_for

if __name__ == "__main__":
    raise SystemExit(main())
