"""Model families and the factory that builds them from a config.

Example:
    >>> from get_md.models import build_model
    >>> model = build_model("get", d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1)
    >>> model.family, model.task
    ('get', 'energy')
"""

from __future__ import annotations

from typing import Any

from torch import nn

from get_md.errors import ConfigError

FAMILIES = ("get", "geomformer")


def build_model(family: str, **config: Any) -> nn.Module:
    """Build a model of ``family`` ("get" or "geomformer") from its hyper-parameters.

    ``build_model(model.family, **model.config)`` rebuilds an identical architecture.
    """
    family = family.lower()
    if family == "get":
        from get_md.models.get import GET

        return GET(**config)
    if family == "geomformer":
        from get_md.models.geomformer import GeoMFormer

        return GeoMFormer(**config)
    raise ConfigError(f"unknown model family {family!r}; choose one of {FAMILIES}")
