"""Radial bases and smooth cutoff envelopes (distances in Å).

Example:
    >>> import torch
    >>> rbf = RadialBasis(num_radial=16, cutoff=7.0)
    >>> rbf(torch.tensor([0.5, 3.0, 7.5])).shape
    torch.Size([3, 16])
"""

from __future__ import annotations

import torch
from torch import nn

from get_md.errors import ConfigError


class PolynomialEnvelope(nn.Module):
    """u(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2) for x < 1, else 0.

    ``x`` is the distance divided by the cutoff. u and its first two derivatives
    vanish at x = 1 (DimeNet's envelope), so anything multiplied by it goes to
    zero smoothly at the cutoff.
    """

    def __init__(self, exponent: int = 5):
        super().__init__()
        if exponent <= 0:
            raise ConfigError("envelope exponent must be positive")
        p = float(exponent)
        self.p = p
        self.a = -(p + 1.0) * (p + 2.0) / 2.0
        self.b = p * (p + 2.0)
        self.c = -p * (p + 1.0) / 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xp = torch.pow(x, self.p)
        val = 1.0 + self.a * xp + self.b * xp * x + self.c * xp * x * x
        return torch.where(x < 1.0, val, torch.zeros_like(x))


class GaussianSmearing(nn.Module):
    """exp(-(x - mu_k)^2 / (2 s^2)) with ``num`` centres evenly spaced in [start, stop], s = spacing."""

    def __init__(self, start: float = 0.0, stop: float = 1.0, num: int = 16):
        super().__init__()
        offset = torch.linspace(start, stop, num)
        spacing = (stop - start) / max(num - 1, 1)
        self.coeff = -0.5 / spacing**2
        self.register_buffer("offset", offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x.reshape(-1, 1) - self.offset.to(x.dtype).reshape(1, -1)
        # exp of very negative arguments gives subnormal floats, which make every later
        # CPU kernel that touches them (matmuls included) many times slower; basis values
        # below exp(-60) ~ 1e-26 are set to exactly 0 (with zero gradient)
        arg = torch.square(d) * self.coeff
        keep = arg > -60.0
        return torch.where(keep, torch.exp(torch.clamp(arg, min=-60.0)), torch.zeros_like(arg))


class RadialBasis(nn.Module):
    """Gaussian basis of d / cutoff times the polynomial envelope: [E] -> [E, num_radial]."""

    def __init__(self, num_radial: int, cutoff: float, envelope_exponent: int = 5):
        super().__init__()
        self.inv_cutoff = 1.0 / cutoff
        self.envelope = PolynomialEnvelope(envelope_exponent)
        self.rbf = GaussianSmearing(0.0, 1.0, num_radial)

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        x = d.reshape(-1) * self.inv_cutoff
        return self.envelope(x).unsqueeze(-1) * self.rbf(x)


def stable_norm(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Euclidean norm whose gradient is finite at 0 (components clamped away from 0 in magnitude).

    Matches ``||x||`` to ~1e-10 and gives a zero-safe gradient for coincident points.
    """
    with torch.no_grad():
        sign = torch.where(x < 0, -torch.ones_like(x), torch.ones_like(x))
        shift = sign * torch.clamp(x.abs(), min=1e-10) - x
    return torch.linalg.vector_norm(x + shift, dim=dim)
