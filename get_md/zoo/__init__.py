"""Shipped model files and their registry (``get_md/zoo/registry.json``).

The registry maps a model name to a file in this folder::

    {
      "format_version": 1,
      "default_potential": "get-potential",
      "default_score": "get-score",
      "models": {
        "get-potential": {"file": "get-potential.pt", "description": "...",
                          "family": "get", "task": "energy"}
      }
    }

Example:
    >>> from get_md import zoo
    >>> isinstance(zoo.available(), dict)
    True
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional, Union

from get_md import export
from get_md.errors import ZooError

ZOO_DIR = Path(__file__).resolve().parent
REGISTRY_PATH = ZOO_DIR / "registry.json"

#: Names used when a registry does not name its defaults.
_FALLBACK_POTENTIAL = "get-potential"
_FALLBACK_SCORE = "get-score"


def _read_registry(path: Optional[Path] = None) -> dict:
    path = REGISTRY_PATH if path is None else path  # looked up per call (tests patch it)
    if not path.exists():
        return {"format_version": 1, "models": {}}
    try:
        reg = json.loads(path.read_text())
    except ValueError as e:
        raise ZooError(f"{path}: model registry is not valid JSON ({e})") from e
    if not isinstance(reg, dict) or not isinstance(reg.get("models", {}), dict):
        raise ZooError(f"{path}: model registry must be an object with a 'models' map")
    reg.setdefault("models", {})
    return reg


def registry() -> dict:
    """The registry as stored in ``registry.json`` (re-read on every call)."""
    return _read_registry()


_REG = _read_registry()
#: Name of the default interatomic potential (used when no model is given).
DEFAULT_POTENTIAL: str = _REG.get("default_potential") or _FALLBACK_POTENTIAL
#: Name of the default pose / affinity scoring model.
DEFAULT_SCORE: str = _REG.get("default_score") or _FALLBACK_SCORE
del _REG


def _names_text(models: dict) -> str:
    return ", ".join(sorted(models)) if models else "none (no model files are shipped yet)"


def _did_you_mean(name: Any, models: dict) -> str:
    """``" (did you mean 'get-affinity'?)"`` for a near-miss of a shipped name (a typo, other
    case), else ""."""
    import difflib

    lower = {str(m).lower(): m for m in models}
    close = difflib.get_close_matches(str(name).lower(), list(lower), n=1, cutoff=0.75)
    return f" (did you mean {lower[close[0]]!r}?)" if close else ""


def available() -> dict[str, dict[str, Any]]:
    """Shipped models: name -> summary (file, path, present, and metadata where readable).

    Example:
        >>> for name, info in available().items():  # doctest: +SKIP
        ...     print(name, info["task"], info["description"])
    """
    out: dict[str, dict[str, Any]] = {}
    for name, entry in _read_registry()["models"].items():
        info = dict(entry)
        p = ZOO_DIR / str(entry.get("file", f"{name}.pt"))
        info["path"] = str(p)
        info["present"] = p.exists()
        if p.exists():
            try:
                meta = export.read_metadata(p)
            except export.ModelFileError as e:
                info["error"] = str(e)
            else:
                for key in ("family", "task", "cutoff", "elements", "units", "description"):
                    if key in meta and key not in info:
                        info[key] = meta[key]
                info.setdefault("metrics", (meta.get("training") or {}).get("metrics"))
        out[name] = info
    return out


def path(name: str) -> Path:
    """File of the shipped model ``name``.

    Raises:
        ZooError: unknown name (the message lists the available ones) or missing file.

    Example:
        >>> path(DEFAULT_POTENTIAL)  # doctest: +SKIP
        PosixPath('.../get_md/zoo/get-potential.pt')
    """
    models = _read_registry()["models"]
    if name not in models:
        raise ZooError(f"unknown model {name!r}{_did_you_mean(name, models)}; shipped models: "
                       f"{_names_text(models)}")
    p = ZOO_DIR / str(models[name].get("file", f"{name}.pt"))
    if not p.exists():
        raise ZooError(f"shipped model {name!r} is registered but its file {p} is missing")
    return p


def registry_entry_for(model_file: Union[str, os.PathLike[str]]) -> Optional[tuple[str, str]]:
    """``(name, weights_sha256)`` of the registry entry whose file is ``model_file``, else None.

    ``weights_sha256`` is "" for an entry that records none (see :func:`check_digest`).

    Example:
        >>> registry_entry_for("elsewhere/model.pt") is None
        True
    """
    try:
        target = Path(model_file).resolve()
        zoo_dir = ZOO_DIR.resolve()
    except OSError:
        return None
    if target.parent != zoo_dir:
        return None
    for name, entry in _read_registry()["models"].items():
        if not isinstance(entry, dict):
            continue
        if (zoo_dir / str(entry.get("file", f"{name}.pt"))).resolve() == target:
            return name, str(entry.get("weights_sha256") or "")
    return None


def check_digest(model_file: Union[str, os.PathLike[str]], digest: str) -> None:
    """Refuse a shipped model file whose weights digest differs from the registry's
    ``weights_sha256``; files outside the zoo pass. ``get_md.export.load`` runs this
    on every file it loads once this module is imported.

    Raises:
        get_md.export.ModelFileError: the digests differ (the message names the file,
            the entry and the registry).
    """
    entry = registry_entry_for(model_file)
    if entry is None:
        return
    name, expected = entry
    if expected and expected != digest:
        raise export.ModelFileError(
            f"{model_file}: weights of shipped model {name!r} do not match the registry "
            f"(SHA-256 {digest[:12]}... != {expected[:12]}... in {REGISTRY_PATH}); "
            "the file was replaced or modified: reinstall get_md or re-register the model"
        )


export.add_load_check("zoo registry", check_digest)


def register(
    name: str,
    model_file: Union[str, os.PathLike[str]],
    description: str = "",
    default: Optional[str] = None,
    registry_path: Union[str, os.PathLike[str], None] = None,
) -> dict:
    """Copy a model file into the zoo folder and add it to the registry (for maintainers).

    Args:
        name: registry name, e.g. ``"get-potential"``.
        model_file: a file written by ``get_md.export.save`` (checked with ``load``).
        description: one line shown by ``get-md info``.
        default: ``"potential"`` or ``"score"`` to make it the default of that kind.
        registry_path: registry to update (default: the package's ``registry.json``).

    Returns:
        The registry entry written.

    Example:
        >>> register("get-potential", "runs/spice/model.pt", "GET potential, SPICE subset",
        ...          default="potential")  # doctest: +SKIP
    """
    src = Path(model_file)
    _, meta = export.load(src, check_registry=False)  # the entry is about to be replaced
    reg_path = Path(registry_path) if registry_path is not None else REGISTRY_PATH
    reg = _read_registry(reg_path)
    dest = reg_path.parent / f"{name}.pt"
    if src.resolve() != dest.resolve():
        shutil.copyfile(src, dest)
    entry = {
        "file": dest.name,
        "description": description or meta.get("description", ""),
        "family": meta["family"],
        "task": meta["task"],
        "weights_sha256": meta["weights_sha256"],
    }
    reg["models"][name] = entry
    if default is not None:
        if default not in ("potential", "score"):
            raise ZooError(f"default must be 'potential' or 'score', got {default!r}")
        reg[f"default_{default}"] = name
    from get_md.atomic import atomic_output

    with atomic_output(reg_path) as f:
        json.dump(reg, f, indent=2)
        f.write("\n")
    return entry
