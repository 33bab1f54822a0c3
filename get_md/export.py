"""Exported model files: self-describing TorchScript archives with integrity checks.

A model file is a TorchScript archive (``torch.jit.save``) holding the scripted
model plus an extra file ``metadata.json``:

=================  ============================================================
key                meaning
=================  ============================================================
format_version     int, this file format's version (see ``FORMAT_VERSION``)
family             "get" or "geomformer"
task               "energy", "score" or "vectors"
units              physical units of inputs and outputs (Å, eV, eV/Å, pK, ...)
cutoff             float, Å
elements           element symbols the model supports (null: not restricted)
block_vocabulary   name and size of the block-type vocabulary (``get_md.vocab``)
config             hyper-parameters: ``build_model(family, **config)`` rebuilds it
inputs / outputs   forward argument names and output keys
training           provenance: dataset, command, metrics (whatever was given)
get_md_version     package version that wrote the file
torch_version      torch version that wrote the file
created            UTC time, ISO 8601
weights_sha256     SHA-256 of the weights (see :func:`weights_sha256`)
=================  ============================================================

The file runs with plain ``torch.jit.load`` and nothing of get_md::

    m = torch.jit.load("model.pt")
    out = m(positions, atomic_numbers, block_ids, atom_positions, block_types,
            segment_ids, batch_ids, cell, pbc)      # Dict[str, Tensor]

Example:
    >>> from get_md import export
    >>> meta = export.save(model, "model.pt", {"dataset": "spice-2k"})  # doctest: +SKIP
    >>> module, meta = export.load("model.pt")                          # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import struct
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import torch

from get_md.atomic import atomic_path
from get_md.errors import ModelFileError, ModelRunError

#: Version written by :func:`save`.
FORMAT_VERSION = 1
#: Newest version :func:`load` understands.
SUPPORTED_FORMAT_VERSION = 1
METADATA_NAME = "metadata.json"
#: File formats :func:`save` writes: TorchScript (default) and torch.export programs.
FORMATS = ("torchscript", "pt2")

#: Forward arguments, in order (see ``MolecularGraph.inputs``).
INPUT_NAMES = [
    "positions", "atomic_numbers", "block_ids", "atom_positions", "block_types",
    "segment_ids", "batch_ids", "cell", "pbc",
]
#: Output keys by task (``forces`` with compute_forces, ``stress`` for periodic cells only).
TASK_OUTPUTS = {
    "energy": ["energy", "energies", "forces", "stress"],
    "score": ["score", "block_scores"],
    "vectors": ["vectors"],
}
TASK_UNITS = {
    "energy": {"length": "angstrom", "energy": "eV", "force": "eV/angstrom",
               "stress": "eV/angstrom^3"},
    "score": {"length": "angstrom", "score": "pK"},
    "vectors": {"length": "angstrom", "vectors": "angstrom"},
}
# keys computed by save(); a caller's metadata cannot override them
_COMPUTED = {"format_version", "weights_sha256", "get_md_version", "torch_version", "created",
             "inputs"}
_TRAINING_KEYS = ("dataset", "command", "metrics")

PathLike = Union[str, "os.PathLike[str]"]


def model_error_message(error: BaseException) -> str:
    """One line for an exception raised inside a TorchScript model.

    ``torch.jit.Error`` messages hold both TorchScript tracebacks and end with the
    original exception (``builtins.RuntimeError: ...``); that last line is returned,
    without the ``builtins.`` prefix. Other exceptions give their first line.

    Example:
        >>> model_error_message(RuntimeError("bad input\\nmore"))
        'RuntimeError: bad input'
    """
    text = str(error).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return type(error).__name__
    if "TorchScript" in lines[0] and len(lines) > 1:
        last = lines[-1]
        return last[len("builtins."):] if last.startswith("builtins.") else last
    return f"{type(error).__name__}: {lines[0]}"


def run_error(path: PathLike, error: BaseException, records: str = "") -> ModelRunError:
    """A :class:`ModelRunError` for ``error`` raised by the model file ``path`` on ``records``."""
    where = f" on {records}" if records else ""
    return ModelRunError(f"{path}: model failed{where}: {model_error_message(error)}")


# ----------------------------------------------------------------------------- digest
def weights_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict: for each key in sorted order, name, dtype, shape and raw bytes.

    The digest depends on values only, not on device or memory layout.

    Example:
        >>> import torch
        >>> len(weights_sha256(torch.nn.Linear(2, 2).state_dict()))
        64
    """
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        h.update(name.encode("utf-8") + b"\0")
        if not isinstance(t, torch.Tensor):  # extra state: hash its repr
            h.update(b"object\0" + repr(t).encode("utf-8") + b"\0")
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(str(t.dtype).encode() + b"\0")
        h.update(struct.pack(f"<{t.dim() + 1}q", t.dim(), *t.shape))
        flat = t.reshape(-1)
        if flat.numel():
            if flat.is_complex():
                flat = torch.view_as_real(flat).reshape(-1)
            h.update(flat.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- save
def _element_symbols(elements: Any) -> Optional[list[str]]:
    if elements is None:
        return None
    from get_md import vocab

    out = []
    for e in list(elements):
        if isinstance(e, str):
            out.append(vocab.ELEMENTS[vocab.atomic_number(e)])
        else:
            z = int(e)
            if not 0 < z <= vocab.MAX_ATOMIC_NUMBER:
                raise ModelFileError(f"element {e!r} is not an atomic number")
            out.append(vocab.ELEMENTS[z])
    return out


def _block_vocabulary() -> dict:
    from get_md import vocab

    return {
        "name": "get_md.vocab",
        "size": vocab.NUM_BLOCK_TYPES,
        "ligand_offset": vocab.LIGAND_OFFSET,
        "atom_positions": vocab.NUM_ATOM_POSITIONS,
    }


def _jsonable(obj: Any) -> Any:
    """JSON-safe copy (tensors and numpy scalars to lists / numbers, paths to strings)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if isinstance(obj, torch.dtype):
        return str(obj).replace("torch.", "")
    return str(obj)


def build_metadata(model: torch.nn.Module, metadata: Optional[Mapping[str, Any]] = None) -> dict:
    """The metadata :func:`save` writes, without ``weights_sha256`` and ``created``.

    Values come from the model's attributes (``family``, ``task``, ``cutoff``,
    ``config``, ``elements``) and from ``metadata`` (``elements``, ``dataset``,
    ``command``, ``metrics``, ``training`` and any extra keys such as ``description``).
    """
    import get_md

    user = dict(metadata or {})
    bad = sorted(_COMPUTED & set(user))
    if bad:
        raise ModelFileError(f"metadata keys {bad} are computed by save() and cannot be given")

    family = getattr(model, "family", None) or user.get("family")
    task = getattr(model, "task", None) or user.get("task")
    cutoff = getattr(model, "cutoff", None)
    if cutoff is None:
        cutoff = user.get("cutoff")
    for key in ("family", "task", "cutoff"):
        user.pop(key, None)
    if not family or not task:
        raise ModelFileError("model has no 'family' / 'task' attribute and metadata gives none")
    if task not in TASK_OUTPUTS:
        raise ModelFileError(f"unknown task {task!r}; expected one of {sorted(TASK_OUTPUTS)}")
    config = getattr(model, "config", None)  # absent on scripted modules (jit-ignored)
    given_config = user.pop("config", None) or user.pop("model_config", None)
    if config is None:
        config = given_config or {}
    # first non-empty of: caller's metadata, model attribute, model config ([] = any element)
    elements = None
    for candidate in (user.pop("elements", None), getattr(model, "elements", None),
                      dict(config).get("elements")):
        if candidate is not None and len(candidate) > 0:
            elements = candidate
            break
    training = dict(user.pop("training", None) or {})
    for key in _TRAINING_KEYS:
        if key in user:
            training[key] = user.pop(key)
    units = dict(TASK_UNITS[task])
    given = dict(user.pop("units", None) or {})
    if task in ("energy", "score"):  # loading would refuse the file (_check_metadata_fields)
        wrong = {k: v for k, v in given.items() if k in units and v != units[k]}
        if wrong:
            raise ModelFileError(f"metadata units {wrong}: get_md runs {task} models in "
                                 f"{ {k: units[k] for k in wrong} }; convert the model's outputs instead")
    units.update(given)
    meta = {
        "format_version": FORMAT_VERSION,
        "family": str(family),
        "task": str(task),
        "units": units,
        "cutoff": None if cutoff is None else float(cutoff),
        "elements": _element_symbols(elements),
        "block_vocabulary": user.pop("block_vocabulary", None) or _block_vocabulary(),
        "config": _jsonable(dict(config)),
        "inputs": list(INPUT_NAMES),
        "outputs": user.pop("outputs", None) or list(TASK_OUTPUTS[task]),
        "training": _jsonable(training),
        "get_md_version": get_md.__version__,
        "torch_version": torch.__version__,
    }
    builder = getattr(model, "builder", None)  # e.g. ensembles: not get_md.models.build_model
    if isinstance(builder, str) and builder:
        meta["builder"] = builder
    meta.update(_jsonable(user))
    return meta


def flush_subnormal_(model: torch.nn.Module) -> int:
    """Set the model's floating-point weights and buffers that are subnormal (nonzero but
    smaller in magnitude than the dtype's smallest normal number, e.g. 1.2e-38 in float32)
    to zero, in place; the number changed. Training with weight decay leaves some: they
    change no output, but CPU arithmetic on them takes a slow path (the affinity ensemble
    of 2026-12-05 rescored 1.2x slower with 1.7 % of its weights subnormal).

    Example:
        >>> m = torch.nn.Linear(2, 1)
        >>> with torch.no_grad():
        ...     m.weight[0, 0] = 1e-40
        >>> flush_subnormal_(m)
        1
    """
    n = 0
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                tiny = (t != 0) & (t.abs() < torch.finfo(t.dtype).tiny)
                n += int(tiny.sum())
                t.masked_fill_(tiny, 0.0)
    return n


def save(model: torch.nn.Module, path: PathLike, metadata: Optional[Mapping[str, Any]] = None,
         format: str = "torchscript") -> dict:
    """Script ``model`` and write it with its metadata to ``path`` (atomically). Subnormal
    weights are zeroed first (:func:`flush_subnormal_`).

    ``format="pt2"`` writes a ``torch.export`` program instead (conventionally ``*.pt2``;
    same metadata and digest, see :mod:`get_md.export_pt2`); :func:`load` reads both.

    Args:
        model: a get_md model (or an already scripted one) with ``family``, ``task``,
            ``config`` and ``cutoff`` attributes.
        path: output file, conventionally ``*.pt``.
        metadata: extra metadata: ``elements`` (symbols or atomic numbers),
            ``dataset``, ``command``, ``metrics`` (stored under ``training``),
            ``description`` and any other JSON-serialisable keys.

    Returns:
        The metadata written.

    Example:
        >>> meta = save(model, "potential.pt", {"elements": ["H", "C", "O"],
        ...                                     "dataset": "md17-aspirin"})  # doctest: +SKIP
        >>> meta["weights_sha256"][:8]                                      # doctest: +SKIP
        '3f1a9c2e'
    """
    path = Path(path)
    meta = build_metadata(model, metadata)
    flush_subnormal_(model)
    if format not in FORMATS:
        raise ModelFileError(f"unknown model file format {format!r}; choose one of {FORMATS}")
    if format == "pt2":
        if isinstance(model, torch.jit.ScriptModule):
            raise ModelFileError("a scripted module cannot be exported to pt2; pass the eager model")
        from get_md import export_pt2

        meta["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        was_training = model.training
        model.eval()
        try:
            return export_pt2.save_program(model, path, meta, atomic_path)
        except ModelFileError as e:  # a model pt2 cannot take: name the file
            raise ModelFileError(f"{path}: {e}") from e
        finally:
            model.train(was_training)
    if isinstance(model, torch.jit.ScriptModule):
        scripted = model
    else:
        was_training = model.training
        model.eval()
        try:
            scripted = torch.jit.script(model)
        finally:
            model.train(was_training)
    scripted.eval()
    meta["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    meta["weights_sha256"] = weights_sha256(scripted.state_dict())
    text = json.dumps(meta, indent=2, sort_keys=False)
    with atomic_path(path) as tmp:
        torch.jit.save(scripted, str(tmp), _extra_files={METADATA_NAME: text})
    return meta


# ----------------------------------------------------------------------------- load
def _check_archive(path: Path) -> zipfile.ZipFile:
    if not path.exists():
        raise ModelFileError(f"{path}: model file not found")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a directory, not a model file")
    with open(path, "rb") as f:
        head = f.read(4)
    if not zipfile.is_zipfile(path):
        if head == b"PK\x03\x04":
            raise ModelFileError(f"{path}: model file is truncated or damaged (incomplete zip archive)")
        raise ModelFileError(f"{path}: not a get_md model file (not a TorchScript or pt2 zip archive)")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelFileError(f"{path}: model file is damaged ({e})") from e
    if head == b"PK\x03\x04" and min((i.header_offset for i in zf.infolist()), default=0) != 0:
        # the end of the file is gone and zipfile found the directory of a zip stored inside
        # (a pt2 file holds its sample inputs as one): not the archive that starts the file
        zf.close()
        raise ModelFileError(f"{path}: model file is truncated or damaged (incomplete zip archive)")
    return zf


def _metadata_member(zf: zipfile.ZipFile) -> Optional[str]:
    for name in zf.namelist():
        parts = name.split("/")
        if len(parts) == 3 and parts[1] == "extra" and parts[2] == METADATA_NAME:
            return name
    return None


def _read_metadata_zip(path: Path, zf: zipfile.ZipFile) -> dict:
    member = _metadata_member(zf)
    if member is None:
        raise ModelFileError(
            f"{path}: no {METADATA_NAME} in the archive; not a get_md model file "
            "(write model files with get_md.export.save)"
        )
    try:
        meta = json.loads(zf.read(member).decode("utf-8"))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ModelFileError(f"{path}: {METADATA_NAME} is damaged ({e})") from e
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: {METADATA_NAME} is not a JSON object")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{path}: {METADATA_NAME} has no integer format_version")
    if version > SUPPORTED_FORMAT_VERSION:
        import get_md

        raise ModelFileError(
            f"{path}: model file format version {version} is newer than this get_md "
            f"({get_md.__version__}) supports (<= {SUPPORTED_FORMAT_VERSION}); upgrade get_md"
        )
    if version < 1:
        raise ModelFileError(f"{path}: invalid model file format version {version}")
    _check_metadata_fields(path, meta)
    return meta


def _check_metadata_fields(path: Path, meta: Mapping[str, Any]) -> None:
    """ModelFileError naming the field when an edited or foreign ``metadata.json`` says
    something the runtime would misuse: an unknown task, no family, a cutoff that is not a
    positive number, other units than the engines convert from (eV, eV/Å, Å, pK), elements
    that are not a list of elements. Cheap: no weights are read."""
    who = f"{path}: {METADATA_NAME}"
    task = meta.get("task")
    if task not in TASK_OUTPUTS:
        raise ModelFileError(f"{who}: task {task!r} is not one of {sorted(TASK_OUTPUTS)}")
    family = meta.get("family")
    if not isinstance(family, str) or not family:
        raise ModelFileError(f"{who}: family must be a model family name, got {family!r}")
    cutoff = meta.get("cutoff")
    if cutoff is not None and (isinstance(cutoff, bool) or not isinstance(cutoff, (int, float))
                               or not math.isfinite(cutoff) or cutoff <= 0):
        raise ModelFileError(f"{who}: cutoff must be a positive number of Å or null, got {cutoff!r}")
    units = meta.get("units")
    if units is not None and not isinstance(units, dict):
        raise ModelFileError(f"{who}: units must be a map quantity -> unit, got {units!r}")
    if task in ("energy", "score"):  # what the ASE / OpenMM / rescoring conversions assume
        wrong = {k: v for k, v in (units or {}).items() if k in TASK_UNITS[task] and v != TASK_UNITS[task][k]}
        if wrong:
            k, v = next(iter(wrong.items()))
            raise ModelFileError(f"{who}: units.{k} is {v!r}; get_md runs {task} models in "
                                 f"{TASK_UNITS[task][k]!r} (the file was edited or not written by get_md)")
    elements = meta.get("elements")
    if elements is not None:
        if not isinstance(elements, list):
            raise ModelFileError(f"{who}: elements must be a list of element symbols, got {elements!r}")
        try:
            _element_symbols(elements)
        except (ModelFileError, KeyError, ValueError, TypeError) as e:
            reason = e.args[0] if e.args else type(e).__name__
            raise ModelFileError(f"{who}: elements: {reason}") from e


def _is_pt2(names: list[str]) -> bool:
    """A ``torch.export.save`` archive (``.pt2``) rather than TorchScript, by its members."""
    return any(n.endswith("/archive_format") for n in names) and any("/models/" in n for n in names)


def read_metadata(path: PathLike) -> dict:
    """Read a model file's metadata without loading its weights.

    Raises:
        ModelFileError: missing file, not a model archive, no metadata, unsupported version.

    Example:
        >>> read_metadata("potential.pt")["task"]  # doctest: +SKIP
        'energy'
    """
    path = Path(path)
    with _check_archive(path) as zf:
        return _read_metadata_zip(path, zf)


def load(
    path: PathLike, device: Union[str, torch.device] = "cpu", check_registry: bool = True
) -> tuple[torch.jit.ScriptModule, dict]:
    """Load a model file, checking archive integrity, format version and weights digest.

    The archive checksums and the weights' SHA-256 are computed once per process for an
    unchanged file (same path, size and modification time). A shipped model file (one
    listed in ``get_md/zoo/registry.json``) must also match the registry's
    ``weights_sha256``: ``get_md.zoo`` adds that check to :data:`LOAD_CHECKS` when it is
    imported, as every way of naming a shipped model (``get_md.zoo``, ``get_md.runtime``,
    the plugins, workflows and CLI) does.

    Args:
        path: a file written by :func:`save`.
        device: where to put the module.
        check_registry: compare a shipped model file's digest with the registry's.

    Returns:
        ``(module, metadata)``; the module is a ``torch.jit.ScriptModule`` in eval mode, or
        for a pt2 file a :class:`get_md.export_pt2.Pt2Module`, called the same way.

    Raises:
        ModelFileError: the file is missing, not a TorchScript archive, truncated or
            corrupted, has no metadata, a newer format version, or weights whose
            SHA-256 differs from the metadata (or, for a shipped model, the registry).

    Example:
        >>> module, meta = load("potential.pt")            # doctest: +SKIP
        >>> out = module(*graph.inputs())                  # doctest: +SKIP
    """
    path = Path(path)
    with _check_archive(path) as zf:
        key = _file_key(path)
        meta = _read_metadata_zip(path, zf)
        pt2 = _is_pt2(zf.namelist())  # by content: metadata.json may say otherwise
        verified = _VERIFIED.get(key)
        if verified is None:
            try:
                bad = zf.testzip()
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise ModelFileError(f"{path}: model file is damaged ({e})") from e
            if bad is not None:
                raise ModelFileError(f"{path}: model file is corrupted (checksum error in {bad})")
    expected = meta.get("weights_sha256")
    if not expected:
        raise ModelFileError(f"{path}: {METADATA_NAME} has no weights_sha256")
    if pt2:
        from get_md import export_pt2

        module = export_pt2.load_program(path, meta, device)
    else:
        try:
            module = torch.jit.load(str(path), map_location=device)
        except Exception as e:  # torch raises RuntimeError and friends for damaged archives
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelFileError(f"{path}: cannot load TorchScript model ({first})") from e
    if verified is None:
        actual = weights_sha256(module.state_dict())
        if actual != expected:
            raise ModelFileError(
                f"{path}: weights do not match the metadata (SHA-256 {actual[:12]}... != "
                f"{str(expected)[:12]}...); the file is corrupted or was modified"
            )
        _check_finite_weights(path, module)
        _check_module_task(path, module, meta)
        _check_module_cutoff(path, module, meta)
        _VERIFIED[key] = verified = actual
    if check_registry:
        for check in list(LOAD_CHECKS.values()):
            check(path, verified)
    module.eval()
    return module, meta


def _check_module_task(path: Path, module: torch.nn.Module, meta: Mapping[str, Any]) -> None:
    """ModelFileError when ``metadata.json`` names another task than the module's own
    ``task`` attribute (get_md models carry one): an edited file would otherwise be run as,
    say, a score model while it computes energies."""
    own = getattr(module, "task", None)
    if isinstance(own, str) and own != meta.get("task"):
        raise ModelFileError(f"{path}: {METADATA_NAME} says task {meta.get('task')!r} but the model computes "
                             f"{own!r} (the file was edited or not written by get_md)")


def _check_module_cutoff(path: Path, module: torch.nn.Module, meta: Mapping[str, Any]) -> None:
    """ModelFileError when ``metadata.json``'s cutoff differs from the module's own ``cutoff``
    attribute (get_md models carry one: a TorchScript attribute; for a pt2 file, the cutoff its
    neighbour lists are built with): the engines and rescoring read the metadata's."""
    own = getattr(module, "cutoff", None)
    if isinstance(own, bool) or not isinstance(own, (int, float)):
        return
    said = meta.get("cutoff")
    if isinstance(said, (int, float)) and math.isclose(float(said), float(own), rel_tol=1e-9):
        return
    shown = f"{float(said):g} Å" if isinstance(said, (int, float)) else repr(said)
    raise ModelFileError(f"{path}: {METADATA_NAME} says cutoff {shown} but the model's own is "
                         f"{float(own):g} Å (the file was edited or not written by get_md): set "
                         f"\"cutoff\": {float(own):g} in {METADATA_NAME} again, or export the model again "
                         "(get_md.export.save)")


def nonfinite_weights(module: torch.nn.Module) -> Optional[str]:
    """``"3 in name and 1 more tensor(s)"`` if any weight is NaN or infinite, else None
    (:func:`load` refuses such a file).

    Example:
        >>> m = torch.nn.Linear(2, 1)
        >>> with torch.no_grad():
        ...     m.bias[0] = float("nan")
        >>> nonfinite_weights(m)
        '1 in bias'
    """
    bad = {name: int((~torch.isfinite(t)).sum()) for name, t in module.state_dict().items()
           if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())}
    if not bad:
        return None
    name, count = next(iter(bad.items()))
    return f"{count} in {name}" + (f" and {len(bad) - 1} more tensor(s)" if len(bad) > 1 else "")


def _check_finite_weights(path: Path, module: torch.nn.Module) -> None:
    """ModelFileError naming the first tensor if any weight is NaN or infinite (a diverged
    training run exported as it was): every output of such a file is NaN."""
    bad = nonfinite_weights(module)
    if bad:
        raise ModelFileError(f"{path}: weights contain non-finite values (NaN or inf): {bad}"
                             "; the training run diverged or the file was damaged")


#: Model files verified in this process: (resolved path, inode, size, mtime_ns, ctime_ns)
#: -> weights digest.
_VERIFIED: dict[tuple[str, int, int, int, int], str] = {}


def _file_key(path: Path) -> tuple[str, int, int, int, int]:
    """Identity of a file's current contents, cheap: path, inode, size and change times."""
    st = path.stat()
    return (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


#: Checks :func:`load` runs on every verified file (``check(path, weights_sha256)``,
#: raising ModelFileError), by name. ``get_md.zoo`` installs its registry check
#: ("zoo registry") when imported: this module does not import the zoo.
LOAD_CHECKS: dict[str, Callable[[Path, str], None]] = {}


def add_load_check(name: str, check: Callable[[Path, str], None]) -> None:
    """Run ``check(path, weights_sha256)`` in every :func:`load` with ``check_registry``
    (replacing an earlier check of the same ``name``)."""
    LOAD_CHECKS[name] = check


def carried_metadata(meta: Mapping[str, Any]) -> dict:
    """The part of a file's metadata that a new file of the same model keeps: everything but
    what :func:`save` computes again (digest, versions, dates, inputs, family, task, cutoff,
    file format).

    Example:
        >>> carried_metadata({"family": "get", "weights_sha256": "ab", "description": "d"})
        {'description': 'd'}
    """
    return {k: v for k, v in meta.items()
            if k not in _COMPUTED and k not in ("family", "task", "cutoff", "format")}


def rebuild(path: PathLike, config: Optional[dict] = None) -> tuple[torch.nn.Module, dict]:
    """The model of a file as an eager ``nn.Module`` of the installed get_md, and its metadata.

    Built from the file's ``config`` (updated with ``config``: settings that hold no
    weights) by its ``builder`` (or :func:`get_md.models.build_model`), then given the
    file's weights. For what needs the Python model rather than the compiled file:
    :func:`rescript`, refitting a score head (:mod:`get_md.train.readout`).

    Example:
        >>> model, meta = rebuild("get-affinity.pt")  # doctest: +SKIP
    """
    import importlib

    path = Path(path)
    module, meta = load(path)
    config = {**(meta.get("config") or {}), **(config or {})}
    builder = str(meta.get("builder") or "").split(" ")[0]
    if builder and ":" in builder:
        mod_name, _, attr = builder.partition(":")
        model = getattr(importlib.import_module(mod_name), attr)(meta["family"], **config)
    else:
        from get_md.models import build_model

        model = build_model(meta["family"], **config)
    try:
        model.load_state_dict(module.state_dict())
    except RuntimeError as e:
        raise ModelFileError(f"{path}: weights do not fit a {meta['family']} model built from the file's "
                             f"config with this get_md ({str(e).splitlines()[0]})") from e
    return model.eval(), meta


def rescript(path: PathLike, out: Optional[PathLike] = None, config: Optional[dict] = None,
             format: Optional[str] = None) -> dict:
    """Re-script a model file with the installed get_md's code: same weights, same metadata.

    A TorchScript file carries the code it was scripted from, so a model file keeps
    running the code of the get_md that wrote it. This rebuilds the model from the
    file's ``config`` (and ``builder``, if any; :func:`rebuild`), loads the file's
    weights, and writes it again (to ``out``, or in place); ``weights_sha256`` is
    unchanged and checked. The previous ``get_md_version`` and ``created`` are kept
    under ``rescripted_from``.

    ``config``: settings to change that hold no weights (e.g. a score model's
    ``receptor_radius``); recorded under ``rescripted_from.config_changes``. ``format``: of
    the file written, as in :func:`save`; None: ``"pt2"`` for a path ending in ``.pt2``,
    else ``"torchscript"``.

    Example:
        >>> meta = rescript("potential.pt", "potential-new.pt")  # doctest: +SKIP
        >>> meta = rescript("get-affinity.pt", config={"receptor_radius": 6.0})  # doctest: +SKIP
    """
    path = Path(path)
    model, meta = rebuild(path, config)
    changes = {k: v for k, v in (config or {}).items() if (meta.get("config") or {}).get(k, None) != v}
    keep = carried_metadata(meta)
    keep["rescripted_from"] = {"get_md_version": meta.get("get_md_version"), "created": meta.get("created")}
    if changes:
        keep["rescripted_from"]["config_changes"] = changes
    target = Path(out if out is not None else path)
    if format is None:
        format = "pt2" if target.suffix.lower() == ".pt2" else "torchscript"
    written = save(model, target, keep, format=format)
    if written["weights_sha256"] != meta["weights_sha256"]:
        raise ModelFileError(f"{path}: re-scripted weights differ from the file's (digest mismatch)")
    return written


def __getattr__(name: str) -> Any:
    """``load_model`` and ``resolve_model_path`` live in :mod:`get_md.runtime` (which
    resolves shipped model names); the names stay here for callers of the old API."""
    if name in ("load_model", "resolve_model_path"):
        from get_md import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
