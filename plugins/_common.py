"""What the ASE and OpenMM plugins share beyond the model runtime: positions as model input.

Models are resolved, loaded and run by :mod:`get_md.runtime` (``runtime.load`` ->
``LoadedModel``); unit constants live in :mod:`get_md.units`.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np
import torch

from get_md.errors import GraphError


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

