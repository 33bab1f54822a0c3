"""Load weights of the public reference GET implementation (THUNLP-MT/GET, ``get_clean.GET``).

The reference names its sub-modules ``layer_{i}``, ``layernorm0_{i}``, ``ffn_{i}`` and
``layernorm1_{i}``; get_md keeps them in ModuleLists ``layers``, ``norms0``, ``ffns``
and ``norms1``. Everything inside a layer has the reference's names and shapes.

Example:
    >>> from get_md.models.convert import convert_reference_state_dict
    >>> convert_reference_state_dict({"layer_0.linear_v.weight": 1})
    {'layers.0.linear_v.weight': 1}
"""

from __future__ import annotations

import re
from typing import Any, Mapping

_PREFIXES = {"layer": "layers", "layernorm0": "norms0", "ffn": "ffns", "layernorm1": "norms1"}
_PATTERN = re.compile(r"^(layer|layernorm0|ffn|layernorm1)_(\d+)\.(.*)$")


def convert_reference_state_dict(state_dict: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Rename reference ``GET`` state-dict keys to ``get_md.models.get_layers.GETEncoder`` keys.

    Args:
        state_dict: the reference module's ``state_dict()``.
        prefix: prefix to put in front of every converted key (e.g. ``"encoder."`` to load
            into a full ``get_md.models.get.GET`` model).
    """
    out: dict[str, Any] = {}
    for key, value in state_dict.items():
        m = _PATTERN.match(key)
        new = f"{_PREFIXES[m.group(1)]}.{m.group(2)}.{m.group(3)}" if m else key
        out[prefix + new] = value
    return out


def load_reference_into(encoder, state_dict: Mapping[str, Any]) -> None:
    """Load a reference state dict into a ``GETEncoder``; buffers the reference lacks keep their values.

    Raises:
        KeyError: if a parameter is missing or unexpected.
    """
    converted = convert_reference_state_dict(state_dict)
    own = encoder.state_dict()
    missing = [k for k in own if k not in converted]
    unexpected = [k for k in converted if k not in own]
    param_names = {n for n, _ in encoder.named_parameters()}
    bad_missing = [k for k in missing if k in param_names]
    if bad_missing or unexpected:
        raise KeyError(f"reference weights do not match: missing {bad_missing}, unexpected {unexpected}")
    for k in missing:
        converted[k] = own[k]
    encoder.load_state_dict(converted, strict=True)
