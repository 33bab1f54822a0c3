"""MolecularGraph: the geometric graph of sets (atoms grouped into blocks), batched.

A complex is a set of blocks, each block a set of atoms (GET, §3.1). A block is
a residue for proteins, a nucleotide for nucleic acids and one atom for small
molecules. One ``MolecularGraph`` holds one structure or a batch of them.

Units: positions in Å; cell vectors (rows) in Å.

Example:
    >>> import torch
    >>> from get_md.graph import MolecularGraph, batch_graphs
    >>> g = MolecularGraph.from_atoms(torch.zeros(2, 3) + torch.tensor([[0.0], [0.74]]),
    ...                               torch.tensor([1, 1]))
    >>> batch_graphs([g, g]).num_graphs
    2
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Optional, Sequence

import torch

from get_md import vocab
from get_md.errors import GraphError
from get_md.model_inputs import ModelInputs

#: The tensor fields, in model-forward order (``ModelInputs._fields``).
TENSOR_FIELDS = ModelInputs._fields


@dataclass
class MolecularGraph:
    """A batch of geometric graphs of sets.

    Attributes:
        positions: [N, 3] float, Å.
        atomic_numbers: [N] long, element of each atom.
        block_ids: [N] long, atom -> block; non-decreasing (atoms of a block are contiguous).
        atom_positions: [N] long, atom position code within its block (see ``vocab``).
        block_types: [B] long, residue / nucleotide / ligand-atom vocabulary index.
        segment_ids: [B] long, molecule of each block (receptor 0, ligand 1, ...).
        batch_ids: [B] long, block -> structure in the batch; non-decreasing.
        cell: [G, 3, 3] float, periodic box per structure (rows are cell vectors, Å);
            zeros where not periodic.
        pbc: [G, 3] bool, periodic directions.
        names: one name per structure (file and record), for messages and outputs.
        block_labels: optional human-readable block labels ("A:45:TYR"), length B.
    """

    positions: torch.Tensor
    atomic_numbers: torch.Tensor
    block_ids: torch.Tensor
    atom_positions: torch.Tensor
    block_types: torch.Tensor
    segment_ids: torch.Tensor
    batch_ids: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    names: list[str] = field(default_factory=list)
    block_labels: Optional[list[str]] = None

    # ------------------------------------------------------------------ sizes
    @property
    def num_atoms(self) -> int:
        return int(self.positions.shape[0])

    @property
    def num_blocks(self) -> int:
        return int(self.block_types.shape[0])

    @property
    def num_graphs(self) -> int:
        return int(self.cell.shape[0])

    @property
    def atom_batch_ids(self) -> torch.Tensor:
        """[N] structure index of each atom."""
        return self.batch_ids[self.block_ids]

    @property
    def atom_segment_ids(self) -> torch.Tensor:
        """[N] segment of each atom."""
        return self.segment_ids[self.block_ids]

    @property
    def device(self) -> torch.device:
        return self.positions.device

    # ------------------------------------------------------------ construction
    @classmethod
    def from_atoms(
        cls,
        positions: torch.Tensor,
        atomic_numbers: torch.Tensor,
        segment_ids: Optional[torch.Tensor] = None,
        cell: Optional[torch.Tensor] = None,
        pbc: Optional[torch.Tensor] = None,
        name: str = "",
    ) -> MolecularGraph:
        """One structure where every atom is its own block (small molecules, N-body systems).

        Args:
            positions: [N, 3] Å.
            atomic_numbers: [N].
            segment_ids: optional [N] molecule index per atom.
            cell: optional [3, 3] Å, rows are cell vectors.
            pbc: optional [3] bool.
            name: file and record, used in error messages.
        """
        positions = torch.as_tensor(positions)
        if not positions.is_floating_point():
            positions = positions.to(torch.get_default_dtype())
        z = torch.as_tensor(atomic_numbers, dtype=torch.long, device=positions.device)
        n = positions.shape[0]
        dev = positions.device
        seg = (
            torch.zeros(n, dtype=torch.long, device=dev)
            if segment_ids is None
            else torch.as_tensor(segment_ids, dtype=torch.long, device=dev)
        )
        if (z <= 0).any() or (z > vocab.MAX_ATOMIC_NUMBER).any():
            bad = int(torch.nonzero((z <= 0) | (z > vocab.MAX_ATOMIC_NUMBER))[0])
            raise GraphError(f"{name or 'structure'}: atom {bad + 1} has invalid atomic number {int(z[bad])}")
        c = torch.zeros(1, 3, 3, dtype=positions.dtype, device=dev)
        if cell is not None:
            c = torch.as_tensor(cell, dtype=positions.dtype, device=dev).reshape(1, 3, 3)
        p = torch.zeros(1, 3, dtype=torch.bool, device=dev)
        if pbc is not None:
            p = torch.as_tensor(pbc, dtype=torch.bool, device=dev).reshape(1, 3)
        g = cls(
            positions=positions,
            atomic_numbers=z,
            block_ids=torch.arange(n, device=dev),
            atom_positions=torch.full((n,), vocab.SMALL_MOLECULE_POSITION, dtype=torch.long, device=dev),
            block_types=z + vocab.LIGAND_OFFSET,
            segment_ids=seg,
            batch_ids=torch.zeros(n, dtype=torch.long, device=dev),
            cell=c,
            pbc=p,
            names=[name],
        )
        g.validate()
        return g

    # -------------------------------------------------------------- transforms
    def as_atom_blocks(self) -> MolecularGraph:
        """The same atoms with every atom its own block, as in :meth:`from_atoms`.

        Potentials are trained on such graphs (the labelled data are atom sets), so
        residue-block graphs from the PDB / mdtraj builders are turned into this form
        before a potential sees them. Per-atom outputs keep the atom order, so they can
        still be summed per residue with this graph's ``block_ids``.

        Example:
            >>> g = MolecularGraph.from_atoms(torch.zeros(2, 3), torch.tensor([8, 1]))
            >>> g.as_atom_blocks().num_blocks
            2
        """
        n = self.num_atoms
        dev = self.positions.device
        return MolecularGraph(
            positions=self.positions,
            atomic_numbers=self.atomic_numbers,
            block_ids=torch.arange(n, device=dev),
            atom_positions=torch.full((n,), vocab.SMALL_MOLECULE_POSITION, dtype=torch.long, device=dev),
            block_types=self.atomic_numbers + vocab.LIGAND_OFFSET,
            segment_ids=self.atom_segment_ids,
            batch_ids=self.atom_batch_ids,
            cell=self.cell,
            pbc=self.pbc,
            names=list(self.names),
        )

    def to(self, device=None, dtype: Optional[torch.dtype] = None) -> MolecularGraph:
        """Copy to a device; ``dtype`` applies to the floating fields (positions, cell)."""
        kw = {}
        for name in TENSOR_FIELDS:
            t = getattr(self, name)
            if t.is_floating_point():
                kw[name] = t.to(device=device, dtype=dtype)
            else:
                kw[name] = t.to(device=device)
        return replace(self, **kw)

    def with_positions(self, positions: torch.Tensor) -> MolecularGraph:
        """Same graph, new coordinates [N, 3] Å (e.g. another trajectory frame)."""
        if positions.shape != self.positions.shape:
            raise GraphError(
                f"{self.label()}: new positions have shape {tuple(positions.shape)}, "
                f"expected {tuple(self.positions.shape)}"
            )
        return replace(self, positions=positions)

    def inputs(self) -> ModelInputs:
        """The tensors in model-forward order, named (:class:`get_md.model_inputs.ModelInputs`);
        ``model(*graph.inputs())`` runs a model."""
        return ModelInputs(*(getattr(self, n) for n in TENSOR_FIELDS))

    def label(self) -> str:
        return ", ".join(n for n in self.names if n) or "structure"

    def select_blocks(self, keep: torch.Tensor) -> MolecularGraph:
        """Sub-graph with the blocks where ``keep`` ([B] bool) is true; indices renumbered."""
        keep = keep.to(device=self.device, dtype=torch.bool)
        if keep.shape != (self.num_blocks,):
            raise GraphError(f"{self.label()}: block mask has shape {tuple(keep.shape)}, expected ({self.num_blocks},)")
        if not bool(keep.any()):
            raise GraphError(f"{self.label()}: selection is empty (no blocks kept)")
        atom_keep = keep[self.block_ids]
        new_block_index = torch.cumsum(keep.long(), 0) - 1
        # structures that lost every block are dropped and renumbered
        kept_graphs = torch.unique(self.batch_ids[keep])
        graph_map = torch.full((self.num_graphs,), -1, dtype=torch.long, device=self.device)
        graph_map[kept_graphs] = torch.arange(kept_graphs.numel(), device=self.device)
        labels = None
        if self.block_labels is not None:
            labels = [lab for lab, k in zip(self.block_labels, keep.tolist(), strict=True) if k]
        names = [self.names[i] for i in kept_graphs.tolist()] if self.names else []
        return MolecularGraph(
            positions=self.positions[atom_keep],
            atomic_numbers=self.atomic_numbers[atom_keep],
            block_ids=new_block_index[self.block_ids[atom_keep]],
            atom_positions=self.atom_positions[atom_keep],
            block_types=self.block_types[keep],
            segment_ids=self.segment_ids[keep],
            batch_ids=graph_map[self.batch_ids[keep]],
            cell=self.cell[kept_graphs],
            pbc=self.pbc[kept_graphs],
            names=names,
            block_labels=labels,
        )

    def split(self) -> list[MolecularGraph]:
        """Undo :func:`batch_graphs`: one graph per structure."""
        return [
            self.select_blocks(self.batch_ids == i) for i in range(self.num_graphs)
        ]

    # -------------------------------------------------------------- validation
    def validate(self) -> MolecularGraph:
        """Check shapes, index ranges, ordering and finiteness; raise GraphError naming the record."""
        who = self.label()
        n, b, g = self.num_atoms, self.num_blocks, self.num_graphs
        if n == 0:
            raise GraphError(f"{who}: no atoms")
        if self.positions.shape != (n, 3):
            raise GraphError(f"{who}: positions must be [N, 3], got {tuple(self.positions.shape)}")
        for name, size in (("atomic_numbers", n), ("block_ids", n), ("atom_positions", n),
                           ("segment_ids", b), ("batch_ids", b)):
            t = getattr(self, name)
            if t.shape != (size,):
                raise GraphError(f"{who}: {name} must have shape ({size},), got {tuple(t.shape)}")
        if self.cell.shape != (g, 3, 3) or self.pbc.shape != (g, 3):
            raise GraphError(f"{who}: cell must be [G, 3, 3] and pbc [G, 3]")
        finite = torch.isfinite(self.positions).all(dim=1)
        if not bool(finite.all()):
            i = int(torch.nonzero(~finite)[0])
            raise GraphError(f"{who}: atom {i + 1} has non-finite coordinates {self.positions[i].tolist()}")
        if not bool(torch.isfinite(self.cell).all()):
            raise GraphError(f"{who}: cell has non-finite values")
        bid = self.block_ids
        if int(bid.min()) != 0 or int(bid.max()) != b - 1 or bool((bid[1:] < bid[:-1]).any()):
            raise GraphError(f"{who}: block_ids must be sorted and cover 0..{b - 1}")
        if bool((bid[1:] - bid[:-1] > 1).any()):
            raise GraphError(f"{who}: some blocks have no atoms")
        bat = self.batch_ids
        if int(bat.min()) != 0 or int(bat.max()) != g - 1 or bool((bat[1:] < bat[:-1]).any()):
            raise GraphError(f"{who}: batch_ids must be sorted and cover 0..{g - 1}")
        if bool(((self.block_types < 0) | (self.block_types >= vocab.NUM_BLOCK_TYPES)).any()):
            raise GraphError(f"{who}: block type out of vocabulary")
        z = self.atomic_numbers
        if bool(((z <= 0) | (z > vocab.MAX_ATOMIC_NUMBER)).any()):
            i = int(torch.nonzero((z <= 0) | (z > vocab.MAX_ATOMIC_NUMBER))[0])
            raise GraphError(f"{who}: atom {i + 1} has invalid atomic number {int(z[i])}")
        if self.block_labels is not None and len(self.block_labels) != b:
            raise GraphError(f"{who}: {len(self.block_labels)} block labels for {b} blocks")
        return self


def batch_graphs(graphs: Sequence[MolecularGraph]) -> MolecularGraph:
    """Concatenate graphs into one batch (indices offset, structures kept apart).

    Example:
        >>> import torch
        >>> g = MolecularGraph.from_atoms(torch.randn(3, 3), torch.tensor([8, 1, 1]))
        >>> batch_graphs([g, g, g]).num_atoms
        9
    """
    if len(graphs) == 0:
        raise GraphError("cannot batch an empty list of graphs")
    if len(graphs) == 1:
        return graphs[0]
    block_off = 0
    graph_off = 0
    parts: dict[str, list[torch.Tensor]] = {f.name: [] for f in fields(MolecularGraph) if f.name in TENSOR_FIELDS}
    names: list[str] = []
    labels: Optional[list[str]] = [] if all(g.block_labels is not None for g in graphs) else None
    for g in graphs:
        parts["positions"].append(g.positions)
        parts["atomic_numbers"].append(g.atomic_numbers)
        parts["block_ids"].append(g.block_ids + block_off)
        parts["atom_positions"].append(g.atom_positions)
        parts["block_types"].append(g.block_types)
        parts["segment_ids"].append(g.segment_ids)
        parts["batch_ids"].append(g.batch_ids + graph_off)
        parts["cell"].append(g.cell)
        parts["pbc"].append(g.pbc)
        names.extend(g.names if g.names else [""] * g.num_graphs)
        if labels is not None:
            labels.extend(g.block_labels)  # type: ignore[arg-type]
        block_off += g.num_blocks
        graph_off += g.num_graphs
    return MolecularGraph(**{k: torch.cat(v) for k, v in parts.items()}, names=names, block_labels=labels)
