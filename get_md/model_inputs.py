"""Named model inputs: the tensors every get_md model's ``forward`` takes, in order.

``MolecularGraph.inputs()`` returns a :class:`ModelInputs`; being a tuple it still
unpacks positionally (``model(*graph.inputs())``), so the TorchScript ``forward``
signature of exported models is unchanged. Read fields by name (``inp.cell``) and
swap one with ``inp._replace(positions=...)`` rather than slicing.

Models that read per-atom input vectors (``forward_with_vectors``: N-body models,
charge-aware potentials) take :class:`VectorInputs`: positions, velocities and
charges, then the graph tensors (``ModelInputs.graph_tensors()``).

The key names are module-level constants (as nequip's ``AtomicDataDict`` keys); the
tuple fields are those names, and tests check that every model family's forward
arguments and the ``inputs`` list of exported metadata equal them.

Example:
    >>> import torch
    >>> from get_md.graph import MolecularGraph
    >>> inp = MolecularGraph.from_atoms(torch.zeros(2, 3), torch.tensor([1, 1])).inputs()
    >>> inp.atomic_numbers.tolist(), inp._fields[0] == POSITIONS
    ([1, 1], True)
"""

from __future__ import annotations

from typing import Final, NamedTuple

import torch

POSITIONS: Final = "positions"
ATOMIC_NUMBERS: Final = "atomic_numbers"
BLOCK_IDS: Final = "block_ids"
ATOM_POSITIONS: Final = "atom_positions"
BLOCK_TYPES: Final = "block_types"
SEGMENT_IDS: Final = "segment_ids"
BATCH_IDS: Final = "batch_ids"
CELL: Final = "cell"
PBC: Final = "pbc"
VELOCITIES: Final = "velocities"
CHARGES: Final = "charges"


class ModelInputs(NamedTuple):
    """``forward`` arguments of every model, in order (shapes as in ``MolecularGraph``)."""

    positions: torch.Tensor
    atomic_numbers: torch.Tensor
    block_ids: torch.Tensor
    atom_positions: torch.Tensor
    block_types: torch.Tensor
    segment_ids: torch.Tensor
    batch_ids: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor

    def graph_tensors(self) -> tuple[torch.Tensor, ...]:
        """Every input but ``positions``: what follows positions (and input vectors)
        in ``forward_with_vectors``, and what stays fixed while atoms move."""
        return tuple(self)[1:]

    def with_vectors(self, velocities: torch.Tensor, charges: torch.Tensor) -> VectorInputs:
        """The ``forward_with_vectors`` arguments with these per-atom input vectors."""
        return VectorInputs(self.positions, velocities, charges, *self.graph_tensors())


class VectorInputs(NamedTuple):
    """``forward_with_vectors`` arguments: positions, per-atom velocities [N, 3] and
    charges [N], then the graph tensors of :class:`ModelInputs`."""

    positions: torch.Tensor
    velocities: torch.Tensor
    charges: torch.Tensor
    atomic_numbers: torch.Tensor
    block_ids: torch.Tensor
    atom_positions: torch.Tensor
    block_types: torch.Tensor
    segment_ids: torch.Tensor
    batch_ids: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor

    def model_inputs(self) -> ModelInputs:
        """The plain ``forward`` arguments (input vectors dropped)."""
        return ModelInputs(self.positions, *tuple(self)[3:])


#: ``forward`` argument names, in order.
INPUT_NAMES: Final = ModelInputs._fields
#: ``forward_with_vectors`` argument names, in order.
VECTOR_INPUT_NAMES: Final = VectorInputs._fields

__all__ = [
    "ATOMIC_NUMBERS", "ATOM_POSITIONS", "BATCH_IDS", "BLOCK_IDS", "BLOCK_TYPES", "CELL", "CHARGES",
    "INPUT_NAMES", "ModelInputs", "PBC", "POSITIONS", "SEGMENT_IDS", "VECTOR_INPUT_NAMES",
    "VELOCITIES", "VectorInputs",
]
