"""Machinery shared by the builders: files, residue classification, block assembly, checks.

Every builder reduces its input to an :class:`AtomTable` (one row per atom: element,
atom name, residue, chain, record number) plus coordinates in Å, then calls
:func:`assemble`, which groups atoms into blocks, checks the structure and returns a
validated :class:`~get_md.graph.MolecularGraph`.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from get_md import vocab
from get_md.graph import GraphError, MolecularGraph

logger = logging.getLogger("get_md.build")

PathLike = Union[str, os.PathLike]
#: A segment id for every atom, or one for all of them.
SegmentSpec = Union[int, Sequence[int], np.ndarray, torch.Tensor, None]

#: Elements that are not ions when they form a residue on their own.
NOT_IONS = frozenset(
    {"H", "D", "He", "B", "C", "N", "O", "Ne", "Si", "P", "S", "Ar", "As", "Se", "Kr", "Te", "Xe", "Rn"}
)
#: Terminal caps kept in protein chains (block type UNK_AA).
PROTEIN_CAPS = frozenset({"ACE", "NME", "NMA", "NH2", "NHE", "FOR"})
_NUCLEOTIDE_FORMS = {
    f"{p}{s}": (p[1:] if p.startswith("R") else p)
    for p in ("DA", "DC", "DG", "DT", "DU", "RA", "RC", "RG", "RU", "A", "C", "G", "U")
    for s in ("", "5", "3", "N")
}

#: Residue kinds; "group" is a user-defined block (ASE) typed by its name only.
KINDS = ("protein", "nucleic", "water", "ion", "ligand", "group")
POLYMER_KINDS = ("protein", "nucleic")

_UNK_AA = vocab.BLOCK_TYPES.index("UNK_AA")
_UNK_NUC = vocab.BLOCK_TYPES.index("N")
_UNK = vocab.BLOCK_TYPES.index("<unk>")
_HOH = vocab.BLOCK_TYPES.index("HOH")
_ION = vocab.BLOCK_TYPES.index("ION")


# ---------------------------------------------------------------------------- files
def check_file(path: PathLike) -> Path:
    """Return ``path`` as a Path; raise GraphError if it is missing or not a file."""
    p = Path(path)
    if not p.exists():
        raise GraphError(f"{p}: file not found")
    if not p.is_file():
        raise GraphError(f"{p}: not a regular file")
    return p


def is_gzip(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def open_text(path: PathLike) -> io.TextIOBase:
    """Open a text file for reading, transparently decompressing ``.gz``."""
    p = check_file(path)
    try:
        if is_gzip(p):
            return gzip.open(p, "rt", encoding="utf-8", errors="replace")  # type: ignore[return-value]
        return open(p, encoding="utf-8", errors="replace")
    except OSError as e:
        raise GraphError(f"{p}: cannot open file ({e})") from e


def read_text(path: PathLike) -> str:
    """Whole text of a (possibly gzipped) file; GraphError naming the file on failure."""
    p = check_file(path)
    try:
        with open_text(p) as fh:
            return fh.read()
    except (OSError, EOFError) as e:
        raise GraphError(f"{p}: cannot read file ({e})") from e


#: Text formats the builders read: name, extension, and a line that only that format
#: starts with (tried in this order: a PDBQT file also holds ATOM records).
_SIGNATURES = (
    ("MOL2", ".mol2", re.compile(r"^@<TRIPOS>", re.MULTILINE)),
    ("SDF", ".sdf", re.compile(r"^(M  END|\$\$\$\$)", re.MULTILINE)),
    ("PDBQT", ".pdbqt", re.compile(r"^(ROOT|ENDROOT|TORSDOF|BRANCH)\b|^(ATOM  |HETATM).{60}\s*[-+]?\d+\.\d+ "
                                   r"(A|OA|NA|HD|SA|NS|OS|HS) *$", re.MULTILINE)),
    ("mmCIF", ".cif", re.compile(r"^(data_|_atom_site\.)", re.MULTILINE)),
    ("PDB", ".pdb", re.compile(r"^(ATOM  |HETATM)", re.MULTILINE)),
)


def other_format(text: str, expected: str) -> str:
    r"""``"the file holds MOL2 records, not SDF: give it the .mol2 extension"`` when the start
    of ``text`` is another format than ``expected`` ("SDF", "MOL2", "PDBQT", "mmCIF", "PDB"),
    else "".

    Example:
        >>> other_format("@<TRIPOS>MOLECULE\nx\n", "SDF")
        'the file holds MOL2 records, not SDF: give it the .mol2 extension'
    """
    head = text[:20000]
    for name, ext, signature in _SIGNATURES:
        if signature.search(head):
            return "" if name == expected else f"the file holds {name} records, not {expected}: give it the {ext} extension"
    return ""


def read_head(path: PathLike, size: int = 20000) -> str:
    """The first ``size`` characters of a (possibly gzipped) text file; "" if unreadable."""
    try:
        with open_text(path) as fh:
            return fh.read(size)
    except (OSError, EOFError, GraphError):
        return ""


def base_suffix(path: PathLike) -> str:
    """Lower-case extension ignoring a trailing ``.gz`` ("x.sdf.gz" -> ".sdf")."""
    p = Path(path)
    if is_gzip(p):
        p = p.with_suffix("")
    return p.suffix.lower()


# ------------------------------------------------------------ residue classification
def normalize_resname(name: str) -> str:
    """Upper-case residue name with force-field aliases resolved (HSD -> HIS, DA5 -> DA, WAT -> HOH)."""
    n = str(name).strip().upper()
    n = vocab.RESIDUE_ALIASES.get(n, n)
    if n in vocab.WATER_NAMES:
        return "HOH"
    if n in vocab.BLOCK_TYPES:
        return n
    return _NUCLEOTIDE_FORMS.get(n, n)


@lru_cache(maxsize=4096)
def _ccd_kind(name: str) -> Optional[str]:
    """Polymer kind of a residue name from the wwPDB chemical component dictionary."""
    try:
        import biotite.structure.info as info

        link = info.link_type(name)
    except Exception:  # noqa: BLE001 - dictionary lookups must never break a build
        return None
    if not link:
        return None
    link = str(link).upper()
    if "PEPTIDE" in link:
        return "protein"
    if "DNA" in link or "RNA" in link:
        return "nucleic"
    return None


def residue_kind(resname: str, atomic_numbers: Sequence[int], hint: Optional[str] = None) -> str:
    """Classify a residue as protein, nucleic, water, ion or ligand.

    Water by name (or ``hint == "water"``); a single-atom residue of a metal or
    halogen is an ion; known amino-acid / nucleotide names (and caps) are polymer;
    otherwise the hint (e.g. mdtraj's ``is_protein``) or the wwPDB component
    dictionary's link type decides; everything else is a ligand (one block per atom).

    Example:
        >>> residue_kind("HSD", [7, 6, 6]), residue_kind("NA", [11]), residue_kind("LIG", [6, 8])
        ('protein', 'ion', 'ligand')
    """
    n = normalize_resname(resname)
    if n == "HOH" or hint == "water":
        return "water"
    if len(atomic_numbers) == 1 and vocab.ELEMENTS[int(atomic_numbers[0])] not in NOT_IONS:
        return "ion"
    if n in vocab.AMINO_ACIDS or n in PROTEIN_CAPS:
        return "protein"
    if n in vocab.NUCLEOTIDES:
        return "nucleic"
    if hint in POLYMER_KINDS:
        return hint  # type: ignore[return-value]
    return _ccd_kind(n) or "ligand"


def block_type_of(kind: str, resname: str, z: int) -> int:
    """Block vocabulary index of a block of ``kind`` (ligand blocks are single atoms of element z)."""
    if kind == "ligand":
        return vocab.ligand_block_type(int(z))
    if kind == "water":
        return _HOH
    if kind == "ion":
        return _ION
    idx = vocab.block_type_index(normalize_resname(resname))
    if kind == "group":  # a user-defined group of atoms: its name's type, or <unk>
        return idx
    if idx == _UNK:
        return _UNK_AA if kind == "protein" else _UNK_NUC
    return idx


#: Force-field atom names mapped to PDB names before the atom-position lookup
#: (CHARMM backbone amide H and termini), so that every builder agrees.
ATOM_NAME_ALIASES = {"HN": "H", "HT1": "H", "HT2": "H2", "HT3": "H3", "OT1": "O", "OT2": "OXT"}


@lru_cache(maxsize=65536)
def _polymer_position(atom_name: str, z: int) -> int:
    name = atom_name.strip().upper()
    name = ATOM_NAME_ALIASES.get(name, name)
    return vocab.atom_position_index(name, vocab.ELEMENTS[z], polymer=True)


def element_to_z(symbol: str) -> int:
    """Atomic number of a symbol (D and T count as H); KeyError if unknown."""
    s = str(symbol).strip()
    if s.upper() in ("D", "T"):
        return 1
    return vocab.atomic_number(s)


# ------------------------------------------------------------------------ atom table
@dataclass
class AtomTable:
    """Per-atom description of a structure, independent of the file format.

    Attributes:
        z: [N] atomic numbers.
        atom_names: [N] atom names.
        res_index: [N] residue occurrence index; atoms of a residue are one contiguous run.
        res_names, chain_ids, res_ids: [N] residue name, chain and number (with insertion code).
        serials: [N] record number of each atom in its file (atom serial or 1-based index).
        kinds: [N] residue kind of each atom (see :data:`KINDS`).
    """

    z: np.ndarray
    atom_names: np.ndarray
    res_index: np.ndarray
    res_names: np.ndarray
    chain_ids: np.ndarray
    res_ids: np.ndarray
    serials: np.ndarray
    kinds: np.ndarray

    def __len__(self) -> int:
        return int(self.z.shape[0])

    def subset(self, mask: np.ndarray) -> AtomTable:
        """Rows where ``mask`` is true (a boolean mask or sorted indices), order kept."""
        return AtomTable(**{k: getattr(self, k)[mask] for k in self.__dataclass_fields__})

    def identity(self, i: int) -> str:
        """Human-readable identity of atom ``i`` for messages."""
        return (
            f"atom {self.serials[i]} ({self.chain_ids[i] or '-'}:{self.res_ids[i]}:"
            f"{self.res_names[i]}:{self.atom_names[i]})"
        )


def table_from_residues(residues, who: str) -> AtomTable:
    """AtomTable of a topology given residue by residue.

    Args:
        residues: iterable of ``(chain_id, res_id, res_name, hint, atoms)`` where ``hint``
            is "protein", "nucleic", "water" or None and ``atoms`` a list of
            ``(atom_name, atomic_number_or_None, serial)``.
        who: file or object name for messages.

    Raises:
        GraphError: an atom without element (virtual site, dummy), naming it.
    """
    z, names, res_index, res_names, chains, res_ids, serials, hints = ([] for _ in range(8))
    for r, (chain, res_id, res_name, hint, atoms) in enumerate(residues):
        for atom_name, atomic_number, serial in atoms:
            if atomic_number is None or not 0 < int(atomic_number) <= vocab.MAX_ATOMIC_NUMBER:
                raise GraphError(
                    f"{who}: atom {serial} ({chain or '-'}:{res_id}:{res_name}:{atom_name}) has no element "
                    "(virtual site or dummy atom?); leave it out with atom_indices"
                )
            z.append(int(atomic_number))
            names.append(atom_name)
            res_index.append(r)
            res_names.append(res_name)
            chains.append(chain)
            res_ids.append(res_id)
            serials.append(serial)
            hints.append(hint)
    z_arr = np.asarray(z, dtype=np.int64)
    ri = np.asarray(res_index, dtype=np.int64)
    rn = np.asarray(res_names, dtype=str)
    return AtomTable(
        z=z_arr,
        atom_names=np.asarray(names, dtype=str),
        res_index=ri,
        res_names=rn,
        chain_ids=np.asarray(chains, dtype=str),
        res_ids=np.asarray(res_ids, dtype=str),
        serials=np.asarray(serials),
        kinds=classify(z_arr, ri, rn, np.asarray(hints, dtype=object)),
    )


def residue_starts(res_index: np.ndarray) -> np.ndarray:
    """Indices where a new residue run starts."""
    if res_index.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, res_index[1:] != res_index[:-1]])


def classify(
    z: np.ndarray, res_index: np.ndarray, res_names: np.ndarray, hints: Optional[np.ndarray] = None
) -> np.ndarray:
    """Residue kind of every atom (see :func:`residue_kind`); one decision per residue."""
    n = z.shape[0]
    kinds = np.empty(n, dtype=object)
    starts = residue_starts(res_index)
    ends = np.r_[starts[1:], n]
    cache: dict[tuple, str] = {}
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        hint = None if hints is None else hints[s]
        single = int(z[s]) if e - s == 1 else 0
        key = (res_names[s], single, hint)
        kind = cache.get(key)
        if kind is None:
            kind = residue_kind(res_names[s], z[s:e].tolist(), hint)
            cache[key] = kind
        kinds[s:e] = kind
    return kinds.astype(str)


def resolve_segments(segment: SegmentSpec, n: int, who: str) -> np.ndarray:
    """Per-atom segment ids from an int, or a length-n sequence."""
    if segment is None:
        return np.zeros(n, dtype=np.int64)
    if isinstance(segment, (int, np.integer)):
        return np.full(n, int(segment), dtype=np.int64)
    seg = torch.as_tensor(segment).cpu().numpy().astype(np.int64).reshape(-1)
    if seg.shape[0] != n:
        raise GraphError(f"{who}: {seg.shape[0]} segment ids given for {n} atoms")
    if (seg < 0).any():
        raise GraphError(f"{who}: segment ids must be non-negative")
    return seg


# --------------------------------------------------------------------------- checks
#: Largest accepted |coordinate| in Å: beyond it a file is corrupt or in the wrong units
#: (float32 then resolves distances no better than ~0.01 Å).
MAX_COORDINATE = 1.0e5


def check_finite(positions: torch.Tensor, who: str, identity) -> None:
    """Raise GraphError naming the first atom with a NaN/inf coordinate or one beyond
    ±:data:`MAX_COORDINATE` Å.

    Example:
        >>> check_finite(torch.tensor([[0.0, 0.0, 1e9]]), "x.pdb", lambda i: f"atom {i + 1}")
        Traceback (most recent call last):
        ...
        get_md.errors.GraphError: x.pdb: atom 1 has a coordinate beyond ±100000 Å ([0.0, 0.0, 1000000000.0]); corrupt file or wrong units?
    """
    finite = torch.isfinite(positions).all(dim=1)
    if not bool(finite.all()):
        i = int(torch.nonzero(~finite)[0])
        raise GraphError(f"{who}: {identity(i)} has non-finite coordinates {positions[i].tolist()}")
    if positions.numel():
        huge = (positions.abs() > MAX_COORDINATE).any(dim=1)
        if bool(huge.any()):
            i = int(torch.nonzero(huge)[0])
            raise GraphError(f"{who}: {identity(i)} has a coordinate beyond ±{MAX_COORDINATE:g} Å "
                             f"({positions[i].tolist()}); corrupt file or wrong units?")


def check_positions(positions: torch.Tensor, who: str, identity) -> None:
    """Raise GraphError naming the atom if a coordinate is NaN/inf/huge or two atoms coincide.

    Args:
        positions: [N, 3].
        who: file and record, put first in the message.
        identity: callable atom index -> description of that atom.
    """
    check_finite(positions, who, identity)
    if positions.shape[0] < 2:
        return
    _, inverse, counts = torch.unique(positions, dim=0, return_inverse=True, return_counts=True)
    dup = counts[inverse] > 1
    if bool(dup.any()):
        i = int(torch.nonzero(dup)[0])
        same = torch.nonzero(inverse == inverse[i]).flatten().tolist()
        raise GraphError(
            f"{who}: duplicate atoms, {identity(same[0])} and {identity(same[1])} have identical "
            f"coordinates {positions[i].tolist()}"
        )


def check_duplicate_names(table: AtomTable, who: str) -> None:
    """Raise GraphError if two atoms of one residue share a name.

    Two *hydrogens* of one residue may share a name: Maestro writes the protonated
    N-terminus of an uncapped chain as two or three atoms named ``H`` (the Schrödinger
    FEP+ benchmark's urokinase receptor, for one). They are distinct atoms (their
    coordinates are checked by :func:`check_positions`); a heavy atom repeated under
    one name is a duplicated record or an unmarked alternate location, and an error.
    """
    if len(table) < 2:
        return
    order = np.lexsort((table.atom_names, table.res_index))
    ri, nm = table.res_index[order], table.atom_names[order]
    hydrogen = table.z[order] == 1
    same = (ri[1:] == ri[:-1]) & (nm[1:] == nm[:-1]) & (table.kinds[order][1:] != "ligand")
    same &= ~(hydrogen[1:] & hydrogen[:-1])
    if same.any():
        k = int(np.flatnonzero(same)[0])
        a, b = sorted((int(order[k]), int(order[k + 1])))
        ia, ib = table.identity(a), table.identity(b)
        if ia == ib:  # same serial, residue and name: the record itself is repeated
            raise GraphError(f"{who}: duplicate atoms, {ia} appears twice (atoms {a + 1} and {b + 1} of the file "
                             "in reading order): a repeated record?")
        raise GraphError(f"{who}: duplicate atoms, {ia} and {ib} have the same name")


# ------------------------------------------------------------------------- assembly
def as_positions(positions, n: int, who: str, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """[n, 3] float tensor of positions; GraphError on a wrong shape."""
    if not isinstance(positions, torch.Tensor):
        positions = torch.as_tensor(np.asarray(positions, dtype=np.float64))
    pos = positions.to(dtype or torch.get_default_dtype())
    if pos.shape != (n, 3):
        raise GraphError(f"{who}: positions have shape {tuple(pos.shape)}, expected ({n}, 3)")
    return pos


def cell_tensor(cell, pbc, dtype: torch.dtype, who: str) -> tuple[torch.Tensor, torch.Tensor]:
    """[1, 3, 3] cell (Å, rows are vectors) and [1, 3] pbc; zeros / False when ``cell`` is None."""
    if cell is None:
        if pbc is not None and bool(np.any(pbc)):
            raise GraphError(f"{who}: periodic boundary conditions requested but there is no cell")
        return torch.zeros(1, 3, 3, dtype=dtype), torch.zeros(1, 3, dtype=torch.bool)
    c = torch.as_tensor(np.asarray(cell, dtype=np.float64)).to(dtype).reshape(1, 3, 3)
    if not bool(torch.isfinite(c).all()):
        raise GraphError(f"{who}: cell has non-finite values {c[0].tolist()}")
    p = torch.ones(1, 3, dtype=torch.bool) if pbc is None else torch.as_tensor(pbc, dtype=torch.bool).reshape(1, 3)
    lengths = torch.linalg.norm(c[0], dim=1)
    if bool((p[0] & (lengths <= 0)).any()):
        raise GraphError(f"{who}: periodic direction with a zero-length cell vector {c[0].tolist()}")
    return c, p


def block_structure(table: AtomTable) -> tuple[np.ndarray, np.ndarray]:
    """Atom -> block ids and block start atoms: one block per residue, one per ligand atom."""
    n = len(table)
    boundary = np.ones(n, dtype=bool)
    if n > 1:
        boundary[1:] = (table.res_index[1:] != table.res_index[:-1]) | (table.kinds[1:] == "ligand")
    block_ids = np.cumsum(boundary) - 1
    return block_ids, np.flatnonzero(boundary)


def assemble(
    table: AtomTable,
    positions,
    name: str,
    segment: SegmentSpec = 0,
    cell=None,
    pbc=None,
    check_duplicates: bool = True,
    dtype: Optional[torch.dtype] = None,
    check_names: bool = True,
) -> MolecularGraph:
    """Group atoms into blocks and build a validated graph.

    Args:
        table: atoms (see :class:`AtomTable`), residues as contiguous runs.
        positions: [N, 3] Å.
        name: file and record, used as the graph name and in every message.
        segment: one segment id for all atoms or one per atom (all atoms of a block must agree).
        cell: optional [3, 3] Å, rows are cell vectors.
        pbc: optional [3] bool (default all True when a cell is given).
        check_duplicates: reject atoms with identical coordinates, and (with ``check_names``)
            two atoms of one residue with the same name.
        dtype: floating dtype of positions and cell (default: torch's default dtype).
        check_names: include the name check; off for in-memory topologies (mdtraj,
            OpenMM), whose atoms are distinct objects whatever their names.
    """
    n = len(table)
    if n == 0:
        raise GraphError(f"{name}: no atoms (empty file or empty selection)")
    pos = as_positions(positions, n, name, dtype)
    check_finite(pos, name, table.identity)
    if check_duplicates:
        if check_names:
            check_duplicate_names(table, name)
        check_positions(pos, name, table.identity)
    seg_atoms = resolve_segments(segment, n, name)
    block_ids, starts = block_structure(table)
    seg_blocks = seg_atoms[starts]
    bad = seg_atoms != seg_blocks[block_ids]
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise GraphError(f"{name}: {table.identity(i)} has a different segment from the rest of its residue")
    block_types = [
        block_type_of(table.kinds[s], table.res_names[s], int(table.z[s])) for s in starts.tolist()
    ]
    polymer = np.isin(table.kinds, POLYMER_KINDS)
    atom_pos = np.full(n, vocab.SMALL_MOLECULE_POSITION, dtype=np.int64)
    if polymer.any():
        idx = np.flatnonzero(polymer)
        atom_pos[idx] = [
            _polymer_position(str(a), int(zz)) for a, zz in zip(table.atom_names[idx], table.z[idx], strict=True)
        ]
    labels = [
        f"{table.chain_ids[s]}:{table.res_ids[s]}:{table.res_names[s]}"
        + (f":{table.atom_names[s]}" if table.kinds[s] == "ligand" else "")
        for s in starts.tolist()
    ]
    c, p = cell_tensor(cell, pbc, pos.dtype, name)
    b = len(starts)
    graph = MolecularGraph(
        positions=pos,
        atomic_numbers=torch.as_tensor(table.z, dtype=torch.long),
        block_ids=torch.as_tensor(block_ids, dtype=torch.long),
        atom_positions=torch.as_tensor(atom_pos, dtype=torch.long),
        block_types=torch.as_tensor(block_types, dtype=torch.long),
        segment_ids=torch.as_tensor(seg_blocks, dtype=torch.long),
        batch_ids=torch.zeros(b, dtype=torch.long),
        cell=c,
        pbc=p,
        names=[name],
        block_labels=labels,
    )
    return graph.validate()
