"""MD trajectories through mdtraj: topology -> blocks once, then one graph per frame.

mdtraj stores coordinates and box vectors in nm; graphs are in Å (x 10).
Residues become blocks as in :mod:`get_md.build.structure` (protein / nucleic
residues and waters one block each, using mdtraj's ``is_protein``, ``is_nucleic``
and ``is_water``; ions one block; any other residue one block per atom).

Example:
    >>> import mdtraj as md
    >>> from get_md.build import topology_template
    >>> traj = md.load("traj.xtc", top="top.pdb")              # doctest: +SKIP
    >>> tpl = topology_template(traj.topology, traj.topology.select("not water"),
    ...                         segments=["protein", "resname LIG"])  # doctest: +SKIP
    >>> graphs = [tpl.frame(traj, i) for i in range(traj.n_frames)]  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch

from get_md.build._common import (
    AtomTable,
    assemble,
    check_finite,
    check_positions,
    resolve_segments,
    table_from_residues,
)
from get_md.graph import GraphError, MolecularGraph
from get_md.units import NM_TO_ANGSTROM

#: Segments: None (all 0), one int, one int per selected atom, or mdtraj selection
#: strings, the i-th giving segment i.
SegmentsSpec = Union[None, int, Sequence[int], np.ndarray, Sequence[str]]


def _mdtraj_table(top, who: str, keep: np.ndarray) -> AtomTable:
    """AtomTable of the atoms of ``top`` where ``keep`` ([n_atoms] bool) is true."""

    def residues():
        for res in top.residues:
            chain = getattr(res.chain, "chain_id", None) or str(res.chain.index)
            hint = "water" if res.is_water else "protein" if res.is_protein else "nucleic" if res.is_nucleic else None
            atoms = [
                (a.name, None if a.element is None else a.element.atomic_number,
                 a.serial if a.serial is not None else a.index + 1)
                for a in res.atoms
                if keep[a.index]
            ]
            if atoms:
                yield chain, str(res.resSeq), res.name, hint, atoms

    order = np.fromiter((a.index for r in top.residues for a in r.atoms), dtype=np.int64)
    if order.size != top.n_atoms or (order != np.arange(top.n_atoms)).any():
        raise GraphError(f"{who}: topology atoms are not ordered residue by residue")
    return table_from_residues(residues(), who)


def _sorted_indices(atom_indices, n_atoms: int, who: str) -> np.ndarray:
    if atom_indices is None:
        return np.arange(n_atoms)
    idx = np.unique(np.asarray(atom_indices, dtype=np.int64).reshape(-1))
    if idx.size == 0:
        raise GraphError(f"{who}: selection is empty (atom_indices has no atoms)")
    if idx[0] < 0 or idx[-1] >= n_atoms:
        raise GraphError(f"{who}: atom_indices out of range 0..{n_atoms - 1}")
    return idx


def _segments(top, segments: SegmentsSpec, idx: np.ndarray, who: str) -> np.ndarray:
    if segments is None or isinstance(segments, (int, np.integer)):
        return resolve_segments(segments, idx.size, who)
    if len(segments) and all(isinstance(s, str) for s in segments):
        seg = np.full(top.n_atoms, -1, dtype=np.int64)
        for i, sel in enumerate(segments):
            try:
                chosen = top.select(sel)
            except Exception as e:  # noqa: BLE001 - mdtraj raises several types for bad selections
                raise GraphError(f"{who}: bad segment selection {sel!r} ({e})") from e
            seg[chosen[seg[chosen] < 0]] = i
        seg = seg[idx]
        if (seg < 0).any():
            a = top.atom(int(idx[np.flatnonzero(seg < 0)[0]]))
            raise GraphError(f"{who}: atom {a.index} ({a}) is selected but matches no segment selection {list(segments)}")
        return seg
    return resolve_segments(segments, idx.size, who)  # type: ignore[arg-type]


def _box_vectors(traj, index: int) -> Optional[np.ndarray]:
    """[3, 3] box vectors (nm, rows) of one frame, or None (mdtraj's own property converts all frames)."""
    if traj.unitcell_lengths is None or traj.unitcell_angles is None:
        return None
    from mdtraj.utils import lengths_and_angles_to_box_vectors

    a, b, c = np.asarray(traj.unitcell_lengths[index], dtype=np.float64)
    alpha, beta, gamma = np.asarray(traj.unitcell_angles[index], dtype=np.float64)
    vecs = lengths_and_angles_to_box_vectors(a, b, c, alpha, beta, gamma)
    return np.stack([np.asarray(v, dtype=np.float64).reshape(3) for v in vecs])


def dcd_declared_frames(path) -> Optional[int]:
    """Number of frames a DCD file's header declares (NSET), or None if it does not say.

    mdtraj counts a DCD's frames from its size and silently drops a frame cut short, so
    a reader compares this with the frames it got to tell a truncated file.

    Example:
        >>> dcd_declared_frames("traj.dcd")  # doctest: +SKIP
        250
    """
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return None
    if len(head) < 12 or head[4:8] != b"CORD":
        return None
    for order in "<>":
        if struct.unpack(order + "i", head[:4])[0] == 84:
            n = struct.unpack(order + "i", head[8:12])[0]
            return n if n > 0 else None
    return None


@dataclass
class TopologyTemplate:
    """Everything of a trajectory's graph except coordinates, computed once.

    Attributes:
        graph: the graph with zero positions; use ``graph.with_positions(xyz_in_angstrom)``
            or :meth:`frame`.
        atom_indices: topology atom indices of the graph's atoms (sorted).
    """

    graph: MolecularGraph
    atom_indices: np.ndarray
    table: AtomTable = field(repr=False)

    @property
    def name(self) -> str:
        return self.graph.label()

    def positions(self, xyz_nm) -> torch.Tensor:
        """[N, 3] Å positions of the template's atoms from a full-topology frame [n_atoms, 3] in nm."""
        xyz = np.asarray(xyz_nm)[self.atom_indices]
        return torch.as_tensor(xyz * NM_TO_ANGSTROM).to(self.graph.positions.dtype)

    def frame(self, traj, index: int = 0, check_duplicates: bool = False) -> MolecularGraph:
        """Graph of frame ``index`` of an mdtraj Trajectory (positions and box in Å).

        Example:
            >>> g = tpl.frame(traj, 10)  # doctest: +SKIP
        """
        n_frames = traj.n_frames
        if not -n_frames <= index < n_frames:
            raise GraphError(f"{self.name}: frame {index} out of range ({n_frames} frames)")
        if traj.n_atoms <= int(self.atom_indices[-1]):
            raise GraphError(f"{self.name}: trajectory has {traj.n_atoms} atoms, the template needs more")
        who = f"{self.name} frame {index}"
        pos = self.positions(traj.xyz[index])
        if check_duplicates:
            check_positions(pos, who, self.table.identity)
        else:
            check_finite(pos, who, self.table.identity)
        graph = replace(self.graph.with_positions(pos), names=[who])
        box = _box_vectors(traj, index)
        if box is not None:
            cell = torch.as_tensor(box * NM_TO_ANGSTROM).to(pos.dtype).reshape(1, 3, 3)
            if not bool(torch.isfinite(cell).all()):
                raise GraphError(f"{who}: unit cell has non-finite values")
            graph = replace(graph, cell=cell, pbc=torch.ones(1, 3, dtype=torch.bool))
        return graph

    def iter_frames(self, traj, stride: int = 1) -> Iterator[MolecularGraph]:
        """Graphs of every ``stride``-th frame of ``traj``."""
        for i in range(0, traj.n_frames, stride):
            yield self.frame(traj, i)


def topology_template(
    top,
    selection_indices: Optional[Sequence[int]] = None,
    segments: SegmentsSpec = None,
    name: Optional[str] = None,
    dtype: Optional[torch.dtype] = None,
) -> TopologyTemplate:
    """Precompute block structure, types and segments of an mdtraj Topology for many frames.

    Args:
        top: mdtraj.Topology (or a Trajectory, whose topology is used).
        selection_indices: atom indices to keep (sorted; default all), e.g.
            ``top.select("not water")``.
        segments: None (all segment 0), one int, one int per selected atom, or a list of
            mdtraj selection strings, the i-th defining segment i (first match wins).
        name: name used in messages (default "mdtraj topology").
        dtype: floating dtype of positions and cell (default torch's default).

    Raises:
        GraphError: empty selection, atoms without element, inconsistent segments.

    Example:
        >>> tpl = topology_template(traj.topology, segments=["protein", "resname LIG"])  # doctest: +SKIP
        >>> g = tpl.graph.with_positions(torch.as_tensor(traj.xyz[5] * 10))              # doctest: +SKIP
    """
    if hasattr(top, "topology") and hasattr(top, "xyz"):
        top = top.topology
    who = name or "mdtraj topology"
    idx = _sorted_indices(selection_indices, top.n_atoms, who)
    keep = np.zeros(top.n_atoms, dtype=bool)
    keep[idx] = True
    table = _mdtraj_table(top, who, keep)
    seg = _segments(top, segments, idx, who)
    graph = assemble(
        table, np.zeros((idx.size, 3)), who, segment=seg, check_duplicates=False, dtype=dtype
    )
    return TopologyTemplate(graph=graph, atom_indices=idx, table=table)


def from_mdtraj(
    topology_or_traj,
    frame: int = 0,
    atom_indices: Optional[Sequence[int]] = None,
    *,
    xyz=None,
    segments: SegmentsSpec = None,
    name: Optional[str] = None,
    check_duplicates: bool = True,
    dtype: Optional[torch.dtype] = None,
) -> MolecularGraph:
    """Graph of one frame of an mdtraj Trajectory (or of a Topology with coordinates).

    Coordinates and unit cell are converted from nm to Å; a trajectory with unit cells
    gives a periodic graph (``pbc`` all True).

    Args:
        topology_or_traj: mdtraj.Trajectory, or mdtraj.Topology together with ``xyz``.
        frame: frame index (Trajectory only).
        atom_indices: atoms to keep (sorted; default all).
        xyz: [n_atoms, 3] nm coordinates when a Topology is given.
        segments: as in :func:`topology_template`.
        name: name used in messages.
        check_duplicates: reject atoms with identical coordinates.
        dtype: floating dtype (default torch's default).

    Example:
        >>> import mdtraj as md
        >>> traj = md.load("adk_dims.dcd", top="adk.psf")  # doctest: +SKIP
        >>> from_mdtraj(traj, frame=3).num_blocks         # doctest: +SKIP
        214
    """
    is_traj = hasattr(topology_or_traj, "xyz") and hasattr(topology_or_traj, "topology")
    if is_traj:
        traj = topology_or_traj
        top = traj.topology
    else:
        import mdtraj as md

        top = topology_or_traj
        if xyz is None:
            raise GraphError(f"{name or 'mdtraj topology'}: a Topology needs xyz coordinates (nm)")
        xyz = np.asarray(xyz, dtype=np.float32)
        if xyz.shape != (top.n_atoms, 3):
            raise GraphError(
                f"{name or 'mdtraj topology'}: xyz has shape {xyz.shape}, expected ({top.n_atoms}, 3)"
            )
        traj = md.Trajectory(xyz[None], top)
        frame = 0
    who = name or ("mdtraj trajectory" if is_traj else "mdtraj topology")
    template = topology_template(top, atom_indices, segments, name=who, dtype=dtype)
    return template.frame(traj, frame, check_duplicates=check_duplicates)
