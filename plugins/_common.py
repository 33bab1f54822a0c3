"""What the ASE and OpenMM plugins share beyond the model runtime: positions as model input.

Models are resolved, loaded and run by :mod:`get_md.runtime` (``runtime.load`` ->
``LoadedModel``); unit constants live in :mod:`get_md.units`.
"""

from __future__ import annotations

import copy
import io
import math
from typing import Any, Union

import numpy as np
import torch
from get_md.workflows.geometry_checks import (  # noqa: F401 - the plugins' import
    IMAGES_HINT,
    MIN_CELL_WIDTH,
    cell_widths,
    check_cell,
    check_images,
    check_overlaps,
)

from get_md.errors import GraphError, PluginError


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
        raise GraphError(f"{who}: atom {int(bad[0]) + 1} has non-finite coordinates")
    if x.shape[0]:
        x -= x.mean(axis=0)
    pos = torch.as_tensor(x, device=device).to(dtype)
    if not bool(torch.isfinite(pos).all()):
        raise GraphError(f"{who}: coordinates span {float(np.ptp(x, axis=0).max()):.3g} Å, more than "
                         f"{str(dtype).replace('torch.', '')} holds")
    return pos



def total_charge(value: Any, who: str = "get_md", name: str = "charge") -> float:
    """``value`` as a total charge (e): PluginError naming ``name`` when it is not a finite
    number (``charge="abc"`` had been a bare ``could not convert string to float``, and a
    NaN charge had reached the model, whose NaN output then blamed its weights).

    Example:
        >>> total_charge("-1", "GETCalculator")
        -1.0
    """
    try:
        q = float(value)
    except (TypeError, ValueError):
        raise PluginError(f"{who}: {name} must be a number (total charge in e), got {value!r}") from None
    if not math.isfinite(q):
        raise PluginError(f"{who}: {name} must be a finite number (total charge in e), got {value!r}")
    return q


def pack_module(module: torch.nn.Module):
    """A picklable form of ``module``: TorchScript bytes, or the eager module on the CPU."""
    if isinstance(module, torch.jit.ScriptModule):
        buf = io.BytesIO()
        torch.jit.save(module, buf)
        return ("torchscript", buf.getvalue())
    ref = next(module.parameters(), None)
    if ref is not None and ref.device.type != "cpu":
        module = copy.deepcopy(module).to("cpu")
    return ("eager", module)


def unpack_module(packed, device: torch.device) -> torch.nn.Module:
    """The module of :func:`pack_module` on ``device``, in eval mode."""
    kind, payload = packed
    if kind == "torchscript":
        module = torch.jit.load(io.BytesIO(payload), map_location=device)
    else:
        module = payload.to(device)
    module.eval()
    return module


def units_warning(positions: Any, who: str = "get_md") -> str:
    """A warning text when the atoms of ``positions`` [N, 3] (Å) lie, as a rule, farther from
    their nearest neighbour than bonded atoms could (Å values given as nm: ethanol then
    reads as isolated atoms, with a plausible energy and zero forces); else "". Call it
    after :func:`check_overlaps`, which refuses the shrunk case.

    Example:
        >>> units_warning([[0.0, 0, 0], [11.0, 0, 0], [0, 11.0, 0]], "get_md force")[:60]
        'get_md force: the 3 atoms are 11 Å from their nearest neighb'
    """
    from get_md.workflows.geometry_checks import units_hint

    x = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    hint = units_hint(x)
    if not hint:
        return ""
    return f"{who}: the {x.shape[0]} atoms are" + hint[len("; its atoms are"):]
