"""Dynamic batching by block count (GET paper): fill each batch up to ``max_blocks`` blocks.

Example:
    >>> sampler = BlockBatchSampler([3, 5, 2, 7], max_blocks=8, shuffle=False)
    >>> list(sampler)
    [[0, 1], [2], [3]]
"""

from __future__ import annotations

import warnings
from typing import Iterator, Sequence

import torch

from get_md.errors import DatasetError
from get_md.graph import MolecularGraph, batch_graphs
from get_md.train.data import Sample


class BlockBatchSampler(torch.utils.data.Sampler):
    """Batches of sample indices with at most ``max_blocks`` blocks in total.

    Samples are taken in a (seeded, per-epoch) shuffled order and added to the
    current batch while it stays within ``max_blocks``; a sample larger than
    ``max_blocks`` forms a batch of its own (with a warning). Every sample is
    used exactly once per epoch. The order depends only on ``seed`` and the epoch
    set with :meth:`set_epoch`, so a resumed run sees the same batches.

    Args:
        block_counts: number of blocks of each sample.
        max_blocks: block budget per batch.
        shuffle: shuffle the order each epoch.
        seed: base seed of the shuffling generator.

    Example:
        >>> s = BlockBatchSampler([4, 4, 4], max_blocks=8, seed=0)
        >>> s.set_epoch(3)
        >>> sorted(i for b in s for i in b)
        [0, 1, 2]
    """

    def __init__(self, block_counts: Sequence[int], max_blocks: int, shuffle: bool = True,
                 seed: int = 0) -> None:
        if max_blocks <= 0:
            raise DatasetError(f"max_blocks must be positive, got {max_blocks}")
        self.block_counts = [int(c) for c in block_counts]
        self.max_blocks = int(max_blocks)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = 0
        big = sum(c > self.max_blocks for c in self.block_counts)
        if big:
            warnings.warn(
                f"{big} sample(s) have more than max_blocks={self.max_blocks} blocks "
                f"(largest {max(self.block_counts)}); each forms a batch of its own",
                stacklevel=2,
            )

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle of ``epoch`` (call before iterating)."""
        self.epoch = int(epoch)

    def _generator(self) -> torch.Generator:
        """The shuffling generator of the current epoch."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)

    def _fill(self, order: Sequence[int], min_size: int = 1) -> list[list[int]]:
        """``order`` cut greedily into batches of at most ``max_blocks`` blocks, each
        closed only once it holds ``min_size`` samples (the last one may hold fewer)."""
        out: list[list[int]] = []
        current: list[int] = []
        used = 0
        for i in order:
            c = self.block_counts[i]
            if len(current) >= min_size and used + c > self.max_blocks:
                out.append(current)
                current, used = [], 0
            current.append(i)
            used += c
        if current:
            out.append(current)
        return out

    def batches(self) -> list[list[int]]:
        """The batches of the current epoch."""
        n = len(self.block_counts)
        order = torch.randperm(n, generator=self._generator()).tolist() if self.shuffle else list(range(n))
        return self._fill(order)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


class SeriesBatchSampler(BlockBatchSampler):
    """Batches of one series each, at most ``max_blocks`` blocks (as far as a series
    allows), for losses that compare the structures of a series
    (``score_series``, :func:`get_md.train.loss.series_centred`).

    Each epoch the ligands of every series are shuffled and cut into batches greedily,
    each of at least two structures (a lone structure teaches a within-series loss
    nothing: a batch may pass ``max_blocks`` by its second structure, and a last single
    one joins the batch before it); then the batches are shuffled. Every sample is used
    exactly once per epoch; the order depends only on ``seed`` and the epoch.

    Args:
        groups: the series of each sample (any hashable; see :func:`series_of`).
        block_counts, max_blocks, shuffle, seed: as for :class:`BlockBatchSampler`.

    Example:
        >>> s = SeriesBatchSampler(["a", "b", "a", "a"], [3, 3, 3, 3], max_blocks=6, shuffle=False)
        >>> list(s)
        [[0, 2, 3], [1]]
    """

    def __init__(self, groups: Sequence, block_counts: Sequence[int], max_blocks: int,
                 shuffle: bool = True, seed: int = 0) -> None:
        super().__init__(block_counts, max_blocks, shuffle, seed)
        if len(groups) != len(self.block_counts):
            raise DatasetError(f"{len(groups)} series labels for {len(self.block_counts)} samples")
        self.members: dict = {}
        for i, g in enumerate(groups):
            self.members.setdefault(g, []).append(i)

    def batches(self) -> list[list[int]]:
        gen = self._generator()
        out: list[list[int]] = []
        for members in self.members.values():
            if self.shuffle:
                members = [members[i] for i in torch.randperm(len(members), generator=gen).tolist()]
            cut = self._fill(members, min_size=2)
            if len(cut) > 1 and len(cut[-1]) == 1:
                cut[-2].extend(cut.pop())
            out.extend(cut)
        if self.shuffle:
            out = [out[i] for i in torch.randperm(len(out), generator=gen).tolist()]
        return out


def series_of(name: str) -> str:
    """The series of a structure named ``TARGET|series...|ligand`` (the affinity datasets'
    names): everything before the last ``|``.

    Example:
        >>> series_of("JAK2|ChEMBL|JAK2|CHEMBL1044318|lig7")
        'JAK2|ChEMBL|JAK2|CHEMBL1044318'
    """
    return name.rsplit("|", 1)[0]


def collate(samples: Sequence[Sample]) -> tuple[MolecularGraph, dict[str, torch.Tensor]]:
    """Batch samples: one ``MolecularGraph`` and targets concatenated.

    Returns:
        ``(graph, targets)`` with ``energy``/``score`` [G] and ``forces``/``vectors`` [N, 3].

    Example:
        >>> graph, targets = collate([ds[0], ds[1]])  # doctest: +SKIP
        >>> targets["energy"].shape                    # doctest: +SKIP
        torch.Size([2])
    """
    if not samples:
        raise DatasetError("cannot collate an empty batch")
    graph = batch_graphs([s.graph for s in samples])
    targets = {}
    for name in samples[0].targets:
        targets[name] = torch.cat([s.targets[name] for s in samples])
    return graph, targets
