"""What the ASE and OpenMM plugins share: model resolution, unit constants, checks.

:func:`load_potential` turns whatever a user hands a plugin (``None`` for the shipped
default potential, a shipped model name, a model file path, or an in-memory
``nn.Module`` / ``ScriptModule``) into a :class:`LoadedModel`: the module on the
requested device and dtype in eval mode, plus the facts the plugins need from its
metadata (family, task, cutoff, supported elements, whether it reads a total charge).

Total charge: a model whose metadata has ``"needs_charge": true`` receives the total
charge ``Q`` of each structure as per-atom charges ``Q / n_atoms`` through
``forward_with_vectors(positions, zeros, charges, *graph tensors)``; other models
never see it.

Example:
    >>> from get_md.models import build_model
    >>> lm = load_potential(build_model("get", d_hidden=16, d_radial=8, n_rbf=8, n_head=2,
    ...                                 n_layers=1, cutoff=4.0), dtype="float64")
    >>> lm.family, lm.task, lm.dtype
    ('get', 'energy', torch.float64)
"""

from __future__ import annotations

import copy
import io
import os
from dataclasses import dataclass, replace
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from get_md.perf import plain_executor

#: 1 eV in kJ/mol.
EV_TO_KJ_PER_MOL = 96.48533212331
#: 1 eV/Å in kJ/mol/nm.
EV_PER_A_TO_KJ_PER_MOL_NM = 964.8533212331
#: 1 nm in Å.
NM_TO_A = 10.0

ModelSpec = Union[None, str, "os.PathLike[str]", torch.nn.Module, "LoadedModel"]


@dataclass
class LoadedModel:
    """A model ready for a plugin.

    Attributes:
        module: the model (eval mode) on ``device`` in ``dtype``.
        metadata: the file's metadata, or what the module's attributes tell.
        family: "get", "geomformer" or what the module says.
        task: "energy", "score" or "vectors".
        cutoff: Å, or None when unknown.
        elements: supported atomic numbers, None = any.
        needs_charge: the model reads the total charge (see module docstring).
        source: how the model was given, for messages.
        device, dtype: where and in which precision it runs.
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

    def check_elements(self, numbers: Sequence[int], who: str) -> None:
        """Raise ValueError naming the elements of ``numbers`` the model was not trained for."""
        if self.elements is None:
            return
        bad = sorted({int(z) for z in numbers} - set(self.elements))
        if bad:
            from get_md import vocab

            names = ", ".join(vocab.ELEMENTS[z] if 0 < z <= vocab.MAX_ATOMIC_NUMBER else str(z) for z in bad)
            known = ", ".join(vocab.ELEMENTS[z] for z in sorted(self.elements))
            raise ValueError(
                f"{who}: element(s) {names} not supported by model {self.source} (it supports {known})"
            )

    def run(self, inputs: Sequence[torch.Tensor], charges: Optional[torch.Tensor] = None) -> dict:
        """Forward under ``torch.no_grad()`` (the model takes forces by autograd internally),
        with TorchScript's plain executor (see :func:`get_md.perf.plain_executor`)."""
        with torch.no_grad(), plain_executor():
            if self.needs_charge:
                if charges is None:
                    raise ValueError(f"model {self.source} needs the total charge")
                pos = inputs[0]
                return self.module.forward_with_vectors(pos, torch.zeros_like(pos), charges, *inputs[1:])
            return self.module(*inputs)


def copy_module(module: torch.nn.Module) -> torch.nn.Module:
    """An independent copy (TorchScript modules through a save/load round trip)."""
    if isinstance(module, torch.jit.ScriptModule):
        buf = io.BytesIO()
        torch.jit.save(module, buf)
        buf.seek(0)
        return torch.jit.load(buf, map_location="cpu")
    return copy.deepcopy(module)


def parse_dtype(dtype: Union[None, str, torch.dtype]) -> torch.dtype:
    """torch dtype from a dtype or a name ("float32", "float64", "double", "single")."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be floating, got {dtype}")
        return dtype
    name = str(dtype).replace("torch.", "").lower()
    aliases = {"float": "float32", "single": "float32", "fp32": "float32", "double": "float64",
               "fp64": "float64", "mixed": "float32"}
    value = getattr(torch, aliases.get(name, name), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ValueError(f"unknown floating dtype {dtype!r}")
    return value


def _element_numbers(elements: Any) -> Optional[frozenset]:
    if elements is None or len(elements) == 0:
        return None
    from get_md import vocab

    out = set()
    for e in elements:
        out.add(vocab.atomic_number(e) if isinstance(e, str) else int(e))
    return frozenset(out)


def _module_metadata(module: torch.nn.Module) -> dict:
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


def _default_model_error(task: str, err: Exception, who: str) -> ValueError:
    from get_md import zoo

    name = zoo.DEFAULT_SCORE if task == "score" else zoo.DEFAULT_POTENTIAL
    kind = "scoring model" if task == "score" else "potential"
    return ValueError(
        f"{who}: no model given and the shipped default {kind} {name!r} is not available ({err}). "
        f"Pass model='path/to/model.pt' (a file written by get_md.export.save) or the name of a "
        f"shipped model (get_md.zoo.available())."
    )


def load_potential(
    model: ModelSpec = None,
    device: Union[str, torch.device] = "cpu",
    dtype: Union[None, str, torch.dtype] = torch.float32,
    task: str = "energy",
    who: str = "get_md",
) -> LoadedModel:
    """Resolve ``model`` (None, shipped name, path, nn.Module) to a :class:`LoadedModel`.

    Args:
        model: None for the shipped default of ``task``; a shipped model name
            (``get_md.zoo``); a model file path; an in-memory module (eager or
            scripted); or a :class:`LoadedModel` (kept, or copied to ``device`` / ``dtype``). A module in training mode or on another device / dtype is
            copied, never changed in place.
        device: torch device.
        dtype: floating dtype of weights and inputs (default float32).
        task: which default to use for ``model=None``.
        who: name used in messages.

    Raises:
        ValueError: no default model shipped, unknown name, bad file (the message says
            what is missing and how to pass a model).
    """
    from get_md import export, zoo

    device = torch.device(device)
    dtype = parse_dtype(dtype)
    if isinstance(model, LoadedModel):
        if model.device == device and model.dtype == dtype:
            return model
        module = copy_module(model.module)
        module.to(device=device, dtype=dtype)
        module.eval()
        return replace(model, module=module, device=device, dtype=dtype)
    if isinstance(model, torch.nn.Module):
        module = model
        meta = _module_metadata(module)
        source = f"<in-memory {type(module).__name__}>"
        ref = next(iter(module.parameters()), None)
        needs_move = ref is not None and (ref.dtype != dtype or ref.device != device)
        # a scripted module is always copied: its graph executor then starts fresh under
        # the plain executor (a module first run by the caller with torch's default
        # executor and then inside plain_executor() ran 1.5-2x slower, measured)
        if needs_move or module.training or isinstance(module, torch.jit.ScriptModule):
            module = copy_module(module)
            module.to(device=device, dtype=dtype)
        module.eval()
    elif model is None or isinstance(model, (str, os.PathLike)):
        try:
            path = export.resolve_model_path(model, task)
        except (zoo.ZooError, export.ModelFileError) as e:
            if model is None:
                raise _default_model_error(task, e, who) from e
            raise ValueError(f"{who}: {e}") from e
        try:
            module, meta = export.load_model(path, device=device, dtype=dtype)
        except export.ModelFileError as e:
            raise ValueError(f"{who}: {e}") from e
        source = str(model) if model is not None else f"{path.name} (shipped default)"
    else:
        raise TypeError(
            f"{who}: model must be None, a shipped model name, a file path or a torch.nn.Module, "
            f"got {type(model).__name__}"
        )
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
    )


def model_positions(positions: Any, device: Union[str, torch.device], dtype: torch.dtype,
                    who: str = "get_md") -> torch.Tensor:
    """Positions [N, 3] (Å) as a model input: centred on their centroid in float64, then
    cast to ``dtype``.

    The models see only relative positions (energies are translation invariant, and a
    translation commutes with periodic images), so the translation changes nothing but
    rounding: cast first, a structure 10^6 Å from the origin would keep only about
    0.06 Å of float32 resolution (ethanol's energy moved by 0.15 eV at 10^6 Å and by
    5.6 eV at 10^7 Å); centred, its coordinates round as near the origin.

    Raises:
        ValueError: a non-finite coordinate (the message names the atom), or coordinates
            that span more than ``dtype`` can hold.
    """
    x = np.array(positions, dtype=np.float64, copy=True).reshape(-1, 3)
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        raise ValueError(f"{who}: atom {int(bad[0]) + 1} has non-finite coordinates")
    if x.shape[0]:
        x -= x.mean(axis=0)
    pos = torch.as_tensor(x, device=device).to(dtype)
    if not bool(torch.isfinite(pos).all()):
        raise ValueError(f"{who}: coordinates span {float(np.ptp(x, axis=0).max()):.3g} Å, more than "
                         f"{str(dtype).replace('torch.', '')} holds")
    return pos


def atom_charges(total: Sequence[float], counts: Sequence[int], device, dtype) -> torch.Tensor:
    """Per-atom charges [N]: each structure's total charge spread evenly over its atoms."""
    q = np.repeat(np.asarray(total, dtype=np.float64) / np.asarray(counts, dtype=np.float64),
                  np.asarray(counts))
    return torch.as_tensor(q, dtype=dtype, device=device)
