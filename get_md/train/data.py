"""Training data: samples (one structure + targets) and datasets saved as one ``.pt`` file.

Targets and their shapes (units as in DESIGN.md):

* ``energy`` [1] eV, ``score`` [1] pK — one value per structure;
* ``forces`` [N, 3] eV/Å, ``vectors`` [N, 3] Å or Å/fs — one row per atom.

Example:
    >>> import torch
    >>> from get_md.graph import MolecularGraph
    >>> g = MolecularGraph.from_atoms(torch.randn(3, 3), torch.tensor([8, 1, 1]))
    >>> ds = MolecularDataset([Sample(g, {"energy": torch.tensor([-1.0])})])
    >>> len(ds), ds.target_names
    (1, ['energy'])
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import torch

from get_md.atomic import atomic_path
from get_md.errors import DatasetError
from get_md.graph import TENSOR_FIELDS, GraphError, MolecularGraph
from get_md.train.checkpoint import load_torch_file
from get_md.train.geometry import check_structure

#: Target name -> "graph" (one value per structure) or "atom" ([N, 3] per atom).
TARGETS = {"energy": "graph", "score": "graph", "forces": "atom", "vectors": "atom", "charge": "graph"}
#: Per-structure labels that describe the input (total charge, e) rather than a model output.
LABELS = ("charge",)
DATASET_FORMAT = "get_md.dataset"
DATASET_VERSION = 1

PathLike = Union[str, "os.PathLike[str]"]


def _check_target(name: str, value: torch.Tensor, n_atoms: int, who: str) -> torch.Tensor:
    if name not in TARGETS:
        raise DatasetError(f"{who}: unknown target {name!r}; expected one of {sorted(TARGETS)}")
    value = torch.as_tensor(value)
    if not value.is_floating_point():
        value = value.to(torch.get_default_dtype())
    if TARGETS[name] == "graph":
        value = value.reshape(-1)
        if value.shape != (1,):
            raise DatasetError(f"{who}: target {name!r} must hold one value, got shape {tuple(value.shape)}")
    elif value.shape != (n_atoms, 3):
        raise DatasetError(
            f"{who}: target {name!r} must have shape ({n_atoms}, 3), got {tuple(value.shape)}"
        )
    if not bool(torch.isfinite(value).all()):
        raise DatasetError(f"{who}: target {name!r} has non-finite values")
    return value


@dataclass
class Sample:
    """One structure and its targets.

    Attributes:
        graph: a ``MolecularGraph`` of exactly one structure.
        targets: name -> tensor; ``energy``/``score`` [1], ``forces``/``vectors`` [N, 3].
    """

    graph: MolecularGraph
    targets: dict[str, torch.Tensor]

    def __post_init__(self) -> None:
        who = self.graph.label()
        if self.graph.num_graphs != 1:
            raise DatasetError(f"{who}: a sample holds one structure, got {self.graph.num_graphs}")
        self.targets = {
            k: _check_target(k, v, self.graph.num_atoms, who) for k, v in self.targets.items()
        }

    @property
    def num_blocks(self) -> int:
        return self.graph.num_blocks

    @property
    def num_atoms(self) -> int:
        return self.graph.num_atoms


def _graph_to_dict(g: MolecularGraph) -> dict:
    d: dict = {name: getattr(g, name).detach().cpu() for name in TENSOR_FIELDS}
    d["names"] = list(g.names)
    d["block_labels"] = None if g.block_labels is None else list(g.block_labels)
    return d


def _graph_from_dict(d: dict, who: str) -> MolecularGraph:
    try:
        g = MolecularGraph(**{name: d[name] for name in TENSOR_FIELDS},
                           names=list(d.get("names") or []), block_labels=d.get("block_labels"))
        return g.validate()
    except (KeyError, TypeError, GraphError) as e:
        raise DatasetError(f"{who}: invalid structure ({e})") from e


class MolecularDataset(torch.utils.data.Dataset):
    """A list of :class:`Sample` with the same target names.

    Example:
        >>> ds = MolecularDataset.load("train.pt")     # doctest: +SKIP
        >>> train, valid = ds.split(0.1, seed=0)      # doctest: +SKIP
    """

    def __init__(self, samples: Iterable[Sample], name: str = "") -> None:
        self.samples: list[Sample] = list(samples)
        self.name = name
        if self.samples:
            keys = set(self.samples[0].targets)
            for i, s in enumerate(self.samples):
                if set(s.targets) != keys:
                    raise DatasetError(
                        f"{name or 'dataset'}: sample {i} ({s.graph.label()}) has targets "
                        f"{sorted(s.targets)}, sample 0 has {sorted(keys)}; all samples need the same"
                    )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    @property
    def target_names(self) -> list[str]:
        """Sorted target names (empty for an empty dataset)."""
        return sorted(self.samples[0].targets) if self.samples else []

    def block_counts(self) -> list[int]:
        """Number of blocks of each sample (for :class:`~get_md.train.batching.BlockBatchSampler`)."""
        return [s.num_blocks for s in self.samples]

    def subset(self, indices: Sequence[int], name: Optional[str] = None) -> MolecularDataset:
        """The samples at ``indices``, in that order."""
        return MolecularDataset([self.samples[i] for i in indices], name=name or self.name)

    def split(self, valid_fraction: float, seed: int = 0) -> tuple[MolecularDataset, MolecularDataset]:
        """Random (seeded) train / validation split; validation gets at least one sample.

        Example:
            >>> train, valid = ds.split(0.2, seed=1)  # doctest: +SKIP
        """
        if not 0.0 < valid_fraction < 1.0:
            raise DatasetError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
        n = len(self)
        if n < 2:
            raise DatasetError(f"{self.name or 'dataset'}: need at least 2 samples to split, got {n}")
        n_valid = min(n - 1, max(1, round(n * valid_fraction)))
        gen = torch.Generator().manual_seed(int(seed))
        perm = torch.randperm(n, generator=gen).tolist()
        valid_idx, train_idx = sorted(perm[:n_valid]), sorted(perm[n_valid:])
        return self.subset(train_idx, f"{self.name}[train]"), self.subset(valid_idx, f"{self.name}[valid]")

    # ------------------------------------------------------------------ files
    def save(self, path: PathLike) -> None:
        """Write the dataset to one ``.pt`` file (atomically).

        Example:
            >>> ds.save("data/train.pt")  # doctest: +SKIP
        """
        path = Path(path)
        payload = {
            "format": DATASET_FORMAT,
            "version": DATASET_VERSION,
            "name": self.name,
            "samples": [
                {"graph": _graph_to_dict(s.graph),
                 "targets": {k: v.detach().cpu() for k, v in s.targets.items()}}
                for s in self.samples
            ],
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, path: PathLike) -> MolecularDataset:
        """Read a dataset written by :meth:`save` (safe: ``weights_only`` unpickling).

        Raises:
            DatasetError: missing, unreadable or invalid file, or a structure with non-finite
                coordinates, a coordinate beyond 1e5 Å or two atoms closer than 0.1 Å (as
                :func:`~get_md.train.labelled.load_labelled`; the message names file and sample).
        """
        path = Path(path)
        payload = load_torch_file(path, "dataset file", DatasetError)
        if not isinstance(payload, dict) or payload.get("format") != DATASET_FORMAT:
            raise DatasetError(f"{path}: not a get_md dataset file")
        if int(payload.get("version", 0)) > DATASET_VERSION:
            raise DatasetError(f"{path}: dataset version {payload.get('version')} is newer than supported")
        samples = []
        for i, rec in enumerate(payload.get("samples", [])):
            who = f"{path}: sample {i}"
            g = _graph_from_dict(rec.get("graph", {}), who)
            check_structure(g.positions, f"{who} ({g.label()})")
            try:
                samples.append(Sample(g, dict(rec.get("targets", {}))))
            except DatasetError as e:
                raise DatasetError(f"{who}: {e}") from e
        return cls(samples, name=str(payload.get("name") or path.stem))
