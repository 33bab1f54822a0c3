"""The model runtime: the one place that turns what a user names into a model ready to run.

A model may be given as

* ``None``: the shipped default of a task (``get_md.zoo``: ``DEFAULT_POTENTIAL`` for
  ``task="energy"``, ``DEFAULT_SCORE`` for ``"score"``);
* a shipped model name, or a model file path (anything with a ``/``, a ``.pt`` /
  ``.pth`` / ``.ts`` / ``.pt2`` suffix, or an existing file; TorchScript or pt2);
* an in-memory ``nn.Module`` / ``ScriptModule`` (never changed in place: copied when it
  must move to another device or dtype, is in training mode, or is scripted);
* a :class:`LoadedModel` (kept, or copied to another device / dtype).

Files are read with :func:`get_md.export.load`, which checks the archive, the format
version and the weights digest (and, for shipped files, the registry's digest).

* :func:`load` -> :class:`LoadedModel` (module, metadata, device, dtype, ...), used by the
  ASE calculator and the OpenMM forces; :meth:`LoadedModel.run_graph` runs it on a
  :class:`~get_md.graph.MolecularGraph`;
* :func:`load_model` -> ``(module, metadata)`` of a name or file in the file's dtype unless
  asked (``get_md.load_model``), used by the rescoring and N-body workflows;
* :func:`resolve_model_path`, :func:`shipped_model`, :func:`verified_metadata`;
* :func:`parse_dtype` (the one dtype parser), :func:`copy_module`, :func:`prepare_module`,
  :func:`module_dtype`, :func:`module_device`.

Total charge: a model whose metadata has ``"needs_charge": true`` receives the total
charge ``Q`` of each structure as per-atom charges ``Q / n_atoms`` through
``forward_with_vectors(positions, zeros, charges, *graph tensors)``; other models never
see it.

Example:
    >>> from get_md.models import build_model
    >>> lm = load(build_model("get", d_hidden=16, d_radial=8, n_rbf=8, n_head=2,
    ...                       n_layers=1, cutoff=4.0), dtype="float64")
    >>> lm.family, lm.task, lm.dtype
    ('get', 'energy', torch.float64)
"""

from __future__ import annotations

import copy
import io
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from get_md import export, zoo
from get_md.errors import ConfigError, GraphError, ModelRunError
from get_md.graph import MolecularGraph
from get_md.model_inputs import ModelInputs
from get_md.perf import flush_denormals, plain_executor

PathLike = Union[str, "os.PathLike[str]"]

#: What a model may be given as (see the module docstring).
ModelSpec = Union[None, str, "os.PathLike[str]", torch.nn.Module, "LoadedModel"]

_DTYPE_ALIASES = {"float": "float32", "single": "float32", "fp32": "float32", "mixed": "float32",
                  "double": "float64", "fp64": "float64", "half": "float16", "fp16": "float16"}

_DEFAULT = object()


def parse_dtype(dtype: Union[None, str, torch.dtype], default: Any = _DEFAULT) -> Optional[torch.dtype]:
    """A floating torch dtype from a dtype or a name ("float32", "float64", "double",
    "single", "mixed", "fp32", "half", "torch.float64", ...; case-insensitive).

    ``None`` gives ``default`` (float32 unless given; ``default=None`` keeps None, for
    "the model's own dtype").

    Raises:
        ValueError: not a floating dtype ("unknown floating dtype ..." for names).

    Example:
        >>> parse_dtype("double"), parse_dtype(None), parse_dtype(None, default=None)
        (torch.float64, torch.float32, None)
    """
    if dtype is None:
        return torch.float32 if default is _DEFAULT else default
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ConfigError(f"dtype must be floating, got {dtype}")
        return dtype
    name = str(dtype).replace("torch.", "").lower()
    value = getattr(torch, _DTYPE_ALIASES.get(name, name), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ConfigError(f"unknown floating dtype {dtype!r}")
    return value


#: The precisions a model runs in. Half precision is refused: float16 / bfloat16 moved the
#: shipped potential's energy of ethanol by 0.02 / 0.5 eV without a word, and overflows in
#: the score models ("value cannot be converted to type c10::Half").
MODEL_DTYPES = (torch.float32, torch.float64)


def model_dtype(dtype: Union[None, str, torch.dtype], who: str = "get_md",
                default: Any = _DEFAULT) -> Optional[torch.dtype]:
    """:func:`parse_dtype` for a model's precision: float32 or float64 (:data:`MODEL_DTYPES`);
    ConfigError naming ``who`` for anything else.

    Example:
        >>> model_dtype("float16", "GETCalculator")
        Traceback (most recent call last):
        ...
        get_md.errors.ConfigError: GETCalculator: dtype float16 is not supported: models run in float32 or float64 (half precision changes energies and overflows)
    """
    try:
        value = parse_dtype(dtype, default)
    except ConfigError as e:
        raise ConfigError(f"{who}: {e} (float32 or float64)") from None
    if value is not None and value not in MODEL_DTYPES:
        raise ConfigError(f"{who}: dtype {str(value).replace('torch.', '')} is not supported: models run in "
                          "float32 or float64 (half precision changes energies and overflows)")
    return value


def parse_device(device: Union[str, torch.device], who: str = "get_md") -> torch.device:
    """``device`` as a torch.device; ConfigError naming it if torch does not know it.

    Example:
        >>> parse_device("cuda:1").index
        1
    """
    if isinstance(device, torch.device):
        return device
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"{who}: unknown device {device!r} (cpu, cuda, cuda:N, mps)") from None


def check_device(device: Union[str, torch.device], who: str = "get_md") -> torch.device:
    """:func:`parse_device`, and a ConfigError naming ``who`` when the device is not on this
    machine (CUDA or MPS not available, ``cuda:N`` beyond the device count): loading a model
    there would otherwise fail as a damaged model file.

    Example:
        >>> check_device("cpu")
        device(type='cpu')
    """
    dev = parse_device(device, who)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{who}: device {str(dev)!r}: CUDA is not available in this torch build / machine")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"{who}: device {str(dev)!r}: this machine has {count} CUDA device(s) "
                              f"(cuda:0 to cuda:{count - 1})")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{who}: device 'mps' is not available on this machine")
    return dev


# ----------------------------------------------------------------------------- modules
def copy_module(module: torch.nn.Module) -> torch.nn.Module:
    """An independent copy (TorchScript modules through a save/load round trip)."""
    if isinstance(module, torch.jit.ScriptModule):
        buf = io.BytesIO()
        torch.jit.save(module, buf)
        buf.seek(0)
        return torch.jit.load(buf, map_location="cpu")
    return copy.deepcopy(module)


def prepare_module(module: torch.nn.Module, device: Union[str, torch.device],
                   dtype: Optional[torch.dtype]) -> torch.nn.Module:
    """``module`` on ``device`` (and ``dtype``; None keeps its own) in eval mode, never
    changed in place: a copy when it must move, is in training mode, or is scripted (a
    scripted module's graph executor then starts fresh under the plain executor: a module
    first run by the caller with torch's default executor and then inside
    ``plain_executor()`` ran 1.5-2x slower, measured)."""
    device = torch.device(device)
    ref = next(iter(module.parameters()), None)
    needs_move = ref is not None and (ref.device != device or (dtype is not None and ref.dtype != dtype))
    if needs_move or module.training or isinstance(module, torch.jit.ScriptModule):
        module = copy_module(module)
        if dtype is None:
            module.to(device=device)
        else:
            module.to(device=device, dtype=dtype)
    module.eval()
    return module


def module_dtype(module: torch.nn.Module) -> torch.dtype:
    """dtype of the module's first floating parameter (torch's default dtype without one)."""
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def module_device(module: torch.nn.Module) -> torch.device:
    """Device of the module's first parameter (CPU without one)."""
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def module_metadata(module: torch.nn.Module) -> dict:
    """Metadata of an in-memory model, from its attributes."""
    config = getattr(module, "config", None)
    config = dict(config) if isinstance(config, dict) else {}
    meta = {
        "family": getattr(module, "family", None) or "unknown",
        "task": getattr(module, "task", None) or "energy",
        "cutoff": getattr(module, "cutoff", None),
        "elements": getattr(module, "elements", None) or config.get("elements"),
        "config": config,
    }
    for key in ("needs_charge",):
        if hasattr(module, key):
            meta[key] = getattr(module, key)
    return meta


def atom_charges(total: Sequence[float], counts: Sequence[int], device, dtype) -> torch.Tensor:
    """Per-atom charges [N]: each structure's total charge spread evenly over its atoms."""
    q = np.repeat(np.asarray(total, dtype=np.float64) / np.asarray(counts, dtype=np.float64),
                  np.asarray(counts))
    return torch.as_tensor(q, dtype=dtype, device=device)


def _element_numbers(elements: Any) -> Optional[frozenset]:
    if elements is None or len(elements) == 0:
        return None
    from get_md import vocab

    out = set()
    for e in elements:
        out.add(vocab.atomic_number(e) if isinstance(e, str) else int(e))
    return frozenset(out)


# ------------------------------------------------------------------------ torch.compile
#: Environment variable that switches :func:`compile_module` on for every model the runtime
#: loads (``load``, ``load_model``: the ASE calculator, OpenMM's PythonForce, rescoring):
#: "1", "true", "yes" or "on".
COMPILE_ENV = "GET_MD_COMPILE"


def compile_requested(compile: Optional[bool] = None) -> bool:
    """``compile`` if given, else whether :data:`COMPILE_ENV` is set to a true value."""
    if compile is not None:
        return bool(compile)
    return os.environ.get(COMPILE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class _CompiledCall:
    """Calls ``compiled``; if that raises (no C++ compiler, an op inductor cannot take, ...),
    warns once in one line and calls ``plain`` from then on (an error that ``plain`` raises
    too is the caller's, and is raised)."""

    def __init__(self, compiled: Any, plain: Any, source: str):
        self.compiled, self.plain, self.source = compiled, plain, source
        self.failed = False

    def __call__(self, *args: Any) -> Any:
        if not self.failed:
            try:
                return self.compiled(*args)
            except Exception as e:  # compilation errors come in many classes
                self.failed = True
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                warnings.warn(f"{self.source}: torch.compile failed, running uncompiled "
                              f"({type(e).__name__}: {first})", RuntimeWarning, stacklevel=3)
        return self.plain(*args)


class CompiledModule(torch.nn.Module):
    """An eager model with ``forward`` / ``forward_with_vectors`` through ``torch.compile``
    (dynamic shapes) and a fallback to the model itself (see :func:`compile_module`)."""

    def __init__(self, module: torch.nn.Module, source: str):
        super().__init__()
        self.inner = module
        for key in ("family", "task", "cutoff", "config", "elements", "needs_charge"):
            if hasattr(module, key):
                setattr(self, key, getattr(module, key))
        self._forward = _CompiledCall(torch.compile(module, dynamic=True), module, source)
        self._with_vectors = None
        if hasattr(module, "forward_with_vectors"):
            self._with_vectors = _CompiledCall(torch.compile(module.forward_with_vectors, dynamic=True),
                                               module.forward_with_vectors, source)

    def forward(self, *inputs: torch.Tensor) -> dict:
        return self._forward(*inputs)

    def forward_with_vectors(self, *inputs: torch.Tensor) -> dict:
        if self._with_vectors is None:
            raise AttributeError("model has no forward_with_vectors")
        return self._with_vectors(*inputs)


def compile_module(module: torch.nn.Module, source: str = "model") -> torch.nn.Module:
    """``module`` with its computation through ``torch.compile`` (opt-in: ``compile=True`` of
    :func:`load` / :func:`load_model`, or :data:`COMPILE_ENV`).

    * a pt2 file (:class:`get_md.export_pt2.Pt2Module`): its exported program is compiled
      (dynamic shapes); graph building stays eager;
    * an eager ``nn.Module``: wrapped in :class:`CompiledModule`;
    * a TorchScript module cannot be compiled: a one-line warning, the module unchanged
      (save the model with ``format="pt2"`` to compile it).

    Compilation happens on the first call; where it fails (no C++ compiler, ...) a one-line
    ``RuntimeWarning`` is given and the model runs uncompiled from then on.
    """
    from get_md.export_pt2 import Pt2Module

    if isinstance(module, torch.jit.ScriptModule):
        warnings.warn(f"{source}: torch.compile does not take TorchScript modules; running it as "
                      "TorchScript (save the model with format='pt2' to compile it)", RuntimeWarning,
                      stacklevel=2)
        return module
    if isinstance(module, Pt2Module):
        plain = module.core
        module.runner = _CompiledCall(torch.compile(plain, dynamic=True), plain, source)
        return module
    if isinstance(module, CompiledModule):
        return module
    return CompiledModule(module, source)


# ------------------------------------------------------------------------ names, files
def default_model_name(task: str = "energy") -> str:
    """The shipped default model of ``task``: ``zoo.DEFAULT_SCORE`` for "score", else
    ``zoo.DEFAULT_POTENTIAL``."""
    return zoo.DEFAULT_SCORE if task == "score" else zoo.DEFAULT_POTENTIAL


def resolve_model_path(name_or_path: Optional[PathLike] = None, task: str = "energy") -> Path:
    """A model file path from a shipped model name, a path, or None (the default for ``task``).

    Raises:
        get_md.zoo.ZooError: an unknown name or a missing shipped file.

    Example:
        >>> resolve_model_path("some/dir/model.pt")
        PosixPath('some/dir/model.pt')
    """
    if name_or_path is None:
        return zoo.path(default_model_name(task))
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"model must be a shipped model name or a model file path, got "
                        f"{type(name_or_path).__name__} {name_or_path!r:.80}")
    text = os.fspath(name_or_path)
    if not text.strip():
        raise zoo.ZooError("model name is empty; give a shipped model name or a model file path")
    p = Path(name_or_path)
    looks_like_path = p.exists() or os.sep in text or "/" in text or p.suffix in {".pt", ".pth", ".ts", ".pt2"}
    if looks_like_path:
        return p
    return zoo.path(text)


def shipped_model(tasks: Sequence[str] = ("energy",), family: Optional[str] = None,
                  others: bool = False) -> Optional[tuple[str, Path]]:
    """``(name, path)`` of an installed shipped model, or None.

    The first present default of ``tasks`` (of ``family``, if given); with ``others``,
    then the first present model of those tasks and that family, by name.

    Example:
        >>> shipped_model(("score", "energy"))  # doctest: +SKIP
        ('get-affinity', PosixPath('.../get_md/zoo/get-affinity.pt'))
    """
    models = zoo.available()
    for task in tasks:
        name = default_model_name(task)
        info = models.get(name)
        if info and info.get("present") and (family is None or info.get("family") == family):
            return name, Path(info["path"])
    if others:
        for name, info in sorted(models.items()):
            if info.get("present") and info.get("task") in tasks \
                    and (family is None or info.get("family") == family):
                return name, Path(info["path"])
    return None


_VERIFIED_METADATA: dict = {}


def verified_metadata(path: PathLike) -> dict:
    """``export.load(path)``'s metadata (archive and weights digest checked), remembered
    per process for an unchanged file (same size and modification time)."""
    path = Path(path)
    if not path.exists():
        raise export.ModelFileError(f"{path}: model file not found")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    meta = _VERIFIED_METADATA.get(key)
    if meta is None:
        _, meta = export.load(path, device="cpu")
        _VERIFIED_METADATA[key] = meta
    return dict(meta)


def load_model(
    name_or_path: Optional[PathLike] = None,
    device: Union[str, torch.device] = "cpu",
    dtype: Union[None, str, torch.dtype] = None,
    task: str = "energy",
    compile: Optional[bool] = None,
) -> tuple[torch.jit.ScriptModule, dict]:
    """Load a shipped model by name (see ``get_md.zoo``) or a model file by path
    (``get_md.load_model``).

    Args:
        name_or_path: zoo name, file path, or None for the default model of ``task``.
        device: target device.
        dtype: floating dtype for weights (e.g. ``torch.float64`` or ``"float64"``);
            None keeps the file's.
        task: which default to use when ``name_or_path`` is None ("energy" or "score").
        compile: run through ``torch.compile`` (:func:`compile_module`); None: as
            :data:`COMPILE_ENV` says (off unless set).

    Returns:
        ``(module, metadata)`` as :func:`get_md.export.load`.

    Example:
        >>> module, meta = load_model("model.pt", dtype="float64")  # doctest: +SKIP
    """
    if task not in ("energy", "score"):
        raise ConfigError(f"load_model: task must be 'energy' or 'score', got {task!r}")
    dev = check_device(device, "load_model")
    dt = model_dtype(dtype, "load_model", default=None)
    path = resolve_model_path(name_or_path, task)
    module, meta = export.load(path, device=dev)
    if dt is not None:
        module = module.to(dtype=dt)
    if compile_requested(compile):
        module = compile_module(module, str(path))
    return module, meta


# ------------------------------------------------------------------------ LoadedModel
@dataclass
class LoadedModel:
    """A model ready to run.

    Attributes:
        module: the model (eval mode) on ``device`` in ``dtype``.
        metadata: the file's metadata, or what the module's attributes tell.
        family: "get", "geomformer" or what the module says.
        task: "energy", "score" or "vectors".
        cutoff: Å, or None when unknown.
        elements: supported atomic numbers, None = any.
        needs_charge: the model reads the total charge (see the module docstring).
        source: how the model was given, for messages.
        device, dtype: where and in which precision it runs.
        path: the model file, None for an in-memory module.
    """

    module: torch.nn.Module
    metadata: dict
    family: str
    task: str
    cutoff: Optional[float]
    elements: Optional[frozenset]
    needs_charge: bool
    source: str
    device: torch.device
    dtype: torch.dtype
    path: Optional[Path] = None

    def check_elements(self, numbers: Sequence[int], who: str) -> None:
        """Raise ValueError naming the elements of ``numbers`` the model was not trained for,
        and dummy atoms (atomic number 0 or below: ASE's ``X``) for any model."""
        dummies = [i for i, z in enumerate(numbers) if int(z) <= 0]
        if dummies:
            raise GraphError(f"{who}: atom {dummies[0] + 1} is a dummy atom (X, atomic number {int(numbers[dummies[0]])}),"
                             f" not an element; {len(dummies)} such atom(s) in all: remove them")
        if self.elements is None:
            return
        bad = sorted({int(z) for z in numbers} - set(self.elements))
        if bad:
            from get_md import vocab

            names = ", ".join(vocab.ELEMENTS[z] if 0 < z <= vocab.MAX_ATOMIC_NUMBER else str(z) for z in bad)
            known = ", ".join(vocab.ELEMENTS[z] for z in sorted(self.elements))
            raise GraphError(
                f"{who}: element(s) {names} not supported by model {self.source} (it supports {known})"
            )

    def run(self, inputs: Sequence[torch.Tensor], charges: Optional[torch.Tensor] = None) -> dict:
        """Forward under ``torch.no_grad()`` (the model takes forces by autograd internally),
        with TorchScript's plain executor (see :func:`get_md.perf.plain_executor`)."""
        with torch.no_grad(), plain_executor(), flush_denormals():
            if self.needs_charge and charges is None:
                raise GraphError(f"model {self.source} needs the total charge")
            try:
                if self.needs_charge:
                    inp = ModelInputs(*inputs)
                    out = self.module.forward_with_vectors(
                        *inp.with_vectors(torch.zeros_like(inp.positions), charges))
                else:
                    out = self.module(*inputs)
            except RuntimeError as e:
                oom = _out_of_memory_error(e, self.source, int(inputs[0].shape[0]), self.device)
                if oom is None:
                    raise
                raise oom from None  # the TorchScript page above the allocator's line says nothing more
        self._check_finite(out)
        return out

    def _check_finite(self, out: dict) -> None:
        """ModelRunError if the model's energy / score (and forces) hold NaN or inf: the
        inputs were checked, so its weights are damaged or its training diverged."""
        for key in ("energy", "score", "forces"):
            value = out.get(key)
            if value is not None and not bool(torch.isfinite(value).all()):
                raise ModelRunError(f"model {self.source} returned a non-finite {key} (NaN or inf) for finite "
                                    "inputs: damaged weights or a diverged training run?")

    def run_graph(self, graph: MolecularGraph, total_charge: Optional[Sequence[float]] = None) -> dict:
        """Forward a (batched) graph, moved to the model's device and dtype.

        ``total_charge``: one total charge (e) per structure, for models that read it.

        Example:
            >>> out = load("get-xtb-organic").run_graph(graph)  # doctest: +SKIP
            >>> out["energy"], out["forces"]                     # doctest: +SKIP
        """
        g = graph.to(device=self.device, dtype=self.dtype)
        charges = None
        if self.needs_charge and total_charge is not None:
            counts = torch.bincount(g.atom_batch_ids.cpu(), minlength=g.num_graphs).tolist()
            charges = atom_charges(list(total_charge), counts, self.device, self.dtype)
        return self.run(g.inputs(), charges)


def _out_of_memory_error(err: RuntimeError, source: str, n_atoms: int,
                         device: torch.device) -> Optional[ModelRunError]:
    """A one-line ModelRunError for a model call that ran out of memory (CPU allocator or
    CUDA), else None: a dense 8,000-atom structure had ended in a page of TorchScript
    traceback with ``DefaultCPUAllocator: can't allocate memory`` at its foot."""
    text = str(err)
    if not ("can't allocate memory" in text or "out of memory" in text.lower()):
        return None
    lines = [ln.strip() for ln in text.strip().splitlines() if "allocate" in ln or "out of memory" in ln.lower()]
    detail = (lines[-1] if lines else text.strip().splitlines()[-1])[:200].rstrip(".")
    return ModelRunError(f"model {source} ran out of memory on {n_atoms} atoms ({device}): {detail}; evaluate "
                         "fewer or smaller structures per call, or use a machine with more memory")


def _default_model_error(task: str, err: Exception, who: str) -> zoo.ZooError:
    kind = "scoring model" if task == "score" else "potential"
    return zoo.ZooError(
        f"{who}: no model given and the shipped default {kind} {default_model_name(task)!r} is not "
        f"available ({err}). Pass model='path/to/model.pt' (a file written by get_md.export.save) "
        f"or the name of a shipped model (get_md.zoo.available())."
    )


def load(
    model: ModelSpec = None,
    device: Union[str, torch.device] = "cpu",
    dtype: Union[None, str, torch.dtype] = torch.float32,
    task: str = "energy",
    who: str = "get_md",
    compile: Optional[bool] = None,
) -> LoadedModel:
    """Resolve ``model`` (None, shipped name, path, nn.Module, LoadedModel) to a
    :class:`LoadedModel`.

    Args:
        model: None for the shipped default of ``task``; a shipped model name
            (``get_md.zoo``); a model file path; an in-memory module (eager or
            scripted); or a :class:`LoadedModel` (kept, or copied to ``device`` /
            ``dtype``). A module in training mode or on another device / dtype is
            copied, never changed in place.
        device: torch device.
        dtype: floating dtype of weights and inputs (default float32; None: float32).
        task: which default to use for ``model=None``.
        who: name used in messages.
        compile: run the model through ``torch.compile`` (:func:`compile_module`: pt2 files
            and eager modules; a warning and TorchScript for TorchScript files); None: as
            :data:`COMPILE_ENV` says (off unless set). Off by default: on 2 CPU cores it
            did not pay (docs/performance.md).

    Raises:
        ValueError: no default model shipped, unknown name, bad file (the message says
            what is missing and how to pass a model).
        TypeError: ``model`` of another type.
    """
    device = check_device(device, who)
    dtype = model_dtype(dtype, who)
    path: Optional[Path] = None
    if isinstance(model, LoadedModel):
        if model.device == device and model.dtype == dtype:
            return model
        module = copy_module(model.module)
        module.to(device=device, dtype=dtype)
        module.eval()
        return replace(model, module=module, device=device, dtype=dtype)
    if isinstance(model, torch.nn.Module):
        meta = module_metadata(model)
        source = f"<in-memory {type(model).__name__}>"
        module = prepare_module(model, device, dtype)
    elif model is None or isinstance(model, (str, os.PathLike)):
        try:
            path = resolve_model_path(model, task)
        except (zoo.ZooError, export.ModelFileError) as e:
            if model is None:
                raise _default_model_error(task, e, who) from e
            raise type(e)(f"{who}: {e}") from e  # same GetMDError subclass, named caller
        try:
            module, meta = load_model(path, device=device, dtype=dtype, compile=False)
        except export.ModelFileError as e:
            raise type(e)(f"{who}: {e}") from e  # same GetMDError subclass, named caller
        source = str(model) if model is not None else f"{path.name} (shipped default)"
    else:
        raise TypeError(
            f"{who}: model must be None, a shipped model name, a file path or a torch.nn.Module, "
            f"got {type(model).__name__}"
        )
    if compile_requested(compile):
        module = compile_module(module, source if path is None else str(path))
    cutoff = meta.get("cutoff")
    return LoadedModel(
        module=module,
        metadata=dict(meta),
        family=str(meta.get("family") or "unknown"),
        task=str(meta.get("task") or "energy"),
        cutoff=None if cutoff is None else float(cutoff),
        elements=_element_numbers(meta.get("elements")),
        needs_charge=bool(meta.get("needs_charge", False)),
        source=source,
        device=device,
        dtype=dtype,
        path=path,
    )
