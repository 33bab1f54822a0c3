"""Scatter reductions in plain torch (no torch_scatter), TorchScript-able.

All functions reduce ``src`` along dim 0 into ``dim_size`` groups given by ``index``.

Example:
    >>> import torch
    >>> scatter_sum(torch.ones(3, 2), torch.tensor([0, 0, 1]), 2)
    tensor([[2., 2.],
            [1., 1.]])
"""

from __future__ import annotations

from typing import Optional

import torch


def _expand_index(index: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    if src.dim() == 1:
        return index
    shape = [index.shape[0]] + [1] * (src.dim() - 1)
    return index.view(shape).expand_as(src)


def _dim_size(index: torch.Tensor, dim_size: Optional[int]) -> int:
    if dim_size is not None:
        return dim_size
    return int(index.max()) + 1 if index.numel() > 0 else 0


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: Optional[int] = None) -> torch.Tensor:
    """Sum of ``src`` rows per group: out[index[i]] += src[i]."""
    size = _dim_size(index, dim_size)
    out = torch.zeros([size] + list(src.shape[1:]), dtype=src.dtype, device=src.device)
    return out.index_add(0, index, src)


def scatter_count(index: torch.Tensor, dim_size: Optional[int] = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Number of members of each group, as ``dtype``."""
    size = _dim_size(index, dim_size)
    out = torch.zeros(size, dtype=dtype, device=index.device)
    return out.index_add(0, index, torch.ones(index.shape[0], dtype=dtype, device=index.device))


def scatter_mean(src: torch.Tensor, index: torch.Tensor, dim_size: Optional[int] = None) -> torch.Tensor:
    """Mean of ``src`` rows per group (0 for empty groups)."""
    size = _dim_size(index, dim_size)
    total = scatter_sum(src, index, size)
    count = scatter_count(index, size, src.dtype).clamp(min=1.0)
    shape = [size] + [1] * (src.dim() - 1)
    return total / count.view(shape)


def scatter_max(src: torch.Tensor, index: torch.Tensor, dim_size: Optional[int] = None) -> torch.Tensor:
    """Max of ``src`` rows per group (empty groups give -inf... replaced by 0)."""
    size = _dim_size(index, dim_size)
    out = torch.full([size] + list(src.shape[1:]), float("-inf"), dtype=src.dtype, device=src.device)
    out = out.scatter_reduce(0, _expand_index(index, src), src, reduce="amax", include_self=True)
    return torch.where(torch.isinf(out), torch.zeros_like(out), out)


def scatter_softmax(src: torch.Tensor, index: torch.Tensor, dim_size: Optional[int] = None) -> torch.Tensor:
    """Softmax of ``src`` within each group (along dim 0)."""
    size = _dim_size(index, dim_size)
    mx = scatter_max(src.detach(), index, size)
    e = torch.exp(src - mx.index_select(0, index))
    den = scatter_sum(e, index, size)
    return e / den.index_select(0, index)


def scatter_std(src: torch.Tensor, index: torch.Tensor, dim_size: Optional[int] = None) -> torch.Tensor:
    """Unbiased standard deviation per group: sqrt(sum (x - mean)^2 / (max(n - 1, 1) + 1e-6)).

    The 1e-6 keeps the result (and its gradient) finite for constant groups; it is
    the convention of GET's reference implementation, kept for numerical parity.
    """
    size = _dim_size(index, dim_size)
    mean = scatter_mean(src, index, size)
    dev = src - mean.index_select(0, index)
    ss = scatter_sum(dev * dev, index, size)
    count = scatter_count(index, size, src.dtype)
    shape = [size] + [1] * (src.dim() - 1)
    var = ss / ((count - 1.0).clamp(min=1.0) + 1e-6).view(shape)
    return torch.sqrt(var)


def sink_softmax(
    logits: torch.Tensor, weights: torch.Tensor, index: torch.Tensor, dim_size: Optional[int] = None
) -> torch.Tensor:
    """Smooth, weighted softmax with an attention sink of logit 0 in every group.

    ``a_i = w_i exp(l_i) / (1 + sum_j w_j exp(l_j))``. With ``w`` a cutoff envelope
    that reaches 0 at the cutoff, the attention of a member, and of all others,
    changes continuously as members enter or leave the group, unlike a plain
    softmax. ``logits`` is [E, ...]; ``weights`` broadcasts against it.
    """
    size = _dim_size(index, dim_size)
    mx = scatter_max(logits.detach(), index, size).clamp(min=0.0)
    m = mx.index_select(0, index)  # (index_select: several times faster than mx[index] on CPU)
    e = weights * torch.exp(logits - m)
    den = scatter_sum(e, index, size).index_select(0, index) + torch.exp(-m)
    return e / den


def sink_softmax_single(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """:func:`sink_softmax` for groups of one member each (``index`` = arange):
    ``w exp(l) / (1 + w exp(l))``, computed as there (same rounding)."""
    m = logits.detach().clamp(min=0.0)
    e = weights * torch.exp(logits - m)
    return e / (e + torch.exp(-m))
