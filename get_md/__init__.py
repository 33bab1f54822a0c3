"""get_md: E(3)-equivariant transformers (GET, GeoMFormer) for molecular simulation.

Importing ``get_md`` is light: submodules (and their dependencies such as torch,
ASE, RDKit or mdtraj) are imported on first use.

Example:
    >>> import get_md
    >>> isinstance(get_md.__version__, str)
    True
"""

from __future__ import annotations

import importlib
from importlib import metadata as _metadata
from typing import Any

try:
    __version__: str = _metadata.version("get-md")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0"

_SUBMODULES = {
    "graph", "vocab", "export", "zoo", "models", "nn", "build", "train", "cli",
    "plugins", "workflows", "errors", "runtime", "units",
}
_ATTRIBUTES = {
    "MolecularGraph": "get_md.graph",
    "batch_graphs": "get_md.graph",
    "load_model": "get_md.runtime",
    "ModelFileError": "get_md.errors",
    "GetMDError": "get_md.errors",
}

__all__ = sorted(_SUBMODULES | set(_ATTRIBUTES) | {"__version__"})


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"get_md.{name}")
    if name in _ATTRIBUTES:
        return getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    raise AttributeError(f"module 'get_md' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
