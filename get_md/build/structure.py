"""Macromolecular structures: PDB, mmCIF / BinaryCIF and receptor PDBQT files (via biotite).

Polymer residues (amino acids, nucleotides, including force-field names such as
HSD or DA5 and modified residues known to the wwPDB dictionary) become one block
each; each water and each ion is one block; every atom of any other hetero group
(ligands, cofactors) is a block of its own, typed by element.

Example:
    >>> from get_md.build import from_pdb
    >>> g = from_pdb("tests/data/prolif/rec.pdb")          # doctest: +SKIP
    >>> g.block_labels[0]                           # doctest: +SKIP
    'A:38:TYR'
"""

from __future__ import annotations

import io
import re
import warnings
from typing import Callable, Iterable, Optional, Union

import numpy as np

from get_md.build._common import (
    AtomTable,
    PathLike,
    assemble,
    base_suffix,
    check_file,
    classify,
    element_to_z,
    logger,
    other_format,
    read_head,
    read_text,
)
from get_md.build.pdb_elements import fill_elements
from get_md.graph import GraphError, MolecularGraph

ResidueSpec = Union[int, str, tuple]

# AutoDock 4 / Vina / meeko atom types whose element is not their own spelling.
AUTODOCK_TYPES = {
    "A": "C", "C": "C", "CG": "C",
    "N": "N", "NA": "N", "NS": "N", "NX": "N",
    "O": "O", "OA": "O", "OS": "O",
    "S": "S", "SA": "S",
    "H": "H", "HD": "H", "HS": "H",
    "P": "P", "F": "F", "I": "I",
    "W": "O",
}
_GLUE = re.compile(r"^C?G\d+$")


def autodock_element(atom_type: str) -> str:
    """Element symbol of an AutoDock atom type ("A" -> "C", "OA" -> "O", "HD" -> "H", "Cl" -> "Cl").

    Raises:
        KeyError: if the type is not an AutoDock type nor an element symbol.

    Example:
        >>> autodock_element("NA"), autodock_element("Na"), autodock_element("CG0")
        ('N', 'Na', 'C')
    """
    t = atom_type.strip()
    if t in AUTODOCK_TYPES:
        return AUTODOCK_TYPES[t]
    if _GLUE.match(t):
        return "C"
    element_to_z(t)  # raises KeyError for unknown symbols
    return t[0].upper() + t[1:].lower()


def pdbqt_to_pdb_text(text: str, path: str) -> str:
    """Rewrite PDBQT ATOM/HETATM lines as PDB lines: AutoDock type -> element column, charge dropped.

    Raises:
        GraphError: naming the file and line for a line without a known atom type.
    """
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        if line.startswith(("ATOM", "HETATM")):
            rest = line[66:].split()
            atom_type = rest[-1] if rest else ""
            try:
                float(atom_type)
                atom_type = ""
            except ValueError:
                pass
            if not atom_type:
                raise GraphError(f"{path}: line {no}: PDBQT atom record has no AutoDock atom type")
            try:
                element = autodock_element(atom_type)
            except KeyError:
                raise GraphError(
                    f"{path}: line {no} (atom {line[6:11].strip()} {line[12:16].strip()}): "
                    f"unknown element / AutoDock atom type {atom_type!r}"
                ) from None
            line = line[:66].ljust(66) + " " * 10 + element.upper().rjust(2)
        out.append(line)
    return "\n".join(out) + "\n"


def _find_bad_atom_line(text: str) -> Optional[str]:
    """Describe the first ATOM/HETATM line whose coordinates cannot be read."""
    for no, line in enumerate(text.splitlines(), 1):
        if line.startswith(("ATOM", "HETATM")):
            if len(line.rstrip()) < 54:
                return f"line {no}: atom record truncated ({len(line.rstrip())} columns, coordinates need 54)"
            try:
                for a, b in ((30, 38), (38, 46), (46, 54)):
                    float(line[a:b])
            except ValueError:
                return f"line {no} (atom {line[6:11].strip()}): cannot read coordinates {line[30:54]!r}"
    return None


def _truncated_tail(text: str) -> Optional[str]:
    """Describe a last ATOM/HETATM line cut short by a truncated file, else None.

    A file that ends without a newline inside an atom record that lacks coordinates,
    or lacks the element column (77-78) that the atom record before it has, was cut
    off, not written so.
    """
    if not text or text.endswith(("\n", "\r")):
        return None
    lines = text.splitlines()
    last = lines[-1]
    if not last.startswith(("ATOM", "HETATM")):
        return None
    before = next((ln for ln in reversed(lines[:-1]) if ln.startswith(("ATOM", "HETATM"))), None)
    width = len(last.rstrip())
    element_cut = before is not None and len(before.rstrip()) >= 77 and width < 77
    if width < 54 or element_cut:
        return (f"line {len(lines)}: the last atom record is cut short ({width} columns); "
                "truncated file?")
    return None


def _odd_residue_number(text: str) -> Optional[str]:
    """Describe a non-numeric residue number in a file too small for hybrid-36, else None.

    Writers switch residue numbers to hybrid-36 (``A000`` = 10000) only past 9999, so a
    letter in columns 23-26 of a file whose numbered residues stay below 9000 is a corrupt
    field; biotite still decodes it, which splits that atom off into a residue of its own.
    """
    first, highest = None, -1
    for no, line in enumerate(text.splitlines(), 1):
        if not line.startswith(("ATOM", "HETATM")):
            continue
        field = line[22:26].strip()
        if re.fullmatch(r"-?\d+", field):
            highest = max(highest, int(field))
        elif field and first is None:
            first = (no, field, line[12:16].strip(), line[17:20].strip(), line[21:22])
    if first is None or highest >= 9000:
        return None
    no, field, atom, resname, chain = first
    return (f"line {no}: residue number {field!r} of atom {atom} ({resname}, chain {chain!r}) is not a "
            f"number, and no residue of the file is numbered near 9999, where hybrid-36 numbering "
            f"starts; read as hybrid-36, the atom forms a residue of its own (corrupt field?)")


def _log_warnings(caught, who: str) -> None:
    for w in caught:
        logger.warning("%s: %s", who, w.message)


# --------------------------------------------------------------------- AtomArray
def table_from_atom_array(array, who: str, force_kind: Optional[str] = None) -> AtomTable:
    """Per-atom table of a biotite AtomArray; GraphError naming the atom for an unknown element."""
    import biotite.structure as struc

    n = array.array_length()
    res_index = np.zeros(n, dtype=np.int64)
    if n:
        starts = struc.get_residue_starts(array)
        res_index[starts[1:]] = 1
        res_index = np.cumsum(res_index)
    cats = array.get_annotation_categories()
    serials = np.asarray(array.atom_id) if "atom_id" in cats else np.arange(1, n + 1)
    res_ids = np.char.add(np.asarray(array.res_id).astype(str), np.asarray(array.ins_code).astype(str))
    table = AtomTable(
        z=np.zeros(n, dtype=np.int64),
        atom_names=np.asarray(array.atom_name).astype(str),
        res_index=res_index,
        res_names=np.asarray(array.res_name).astype(str),
        chain_ids=np.asarray(array.chain_id).astype(str),
        res_ids=res_ids,
        serials=serials,
        kinds=np.full(n, "ligand", dtype="<U7"),
    )
    elements = np.asarray(array.element).astype(str)
    for el in np.unique(elements).tolist():
        try:
            z = element_to_z(el)
        except KeyError:
            i = int(np.flatnonzero(elements == el)[0])
            raise GraphError(f"{who}: {table.identity(i)} has unknown element {el!r}") from None
        table.z[elements == el] = z
    if force_kind is None:
        table.kinds = classify(table.z, table.res_index, table.res_names)
    else:
        table.kinds = np.full(n, force_kind)
    return table


def _parse_residue_spec(spec: ResidueSpec) -> tuple[Optional[str], str]:
    """(chain or None, residue number with insertion code) from 45, "A:45", "A:45B" or ("A", 45)."""
    if isinstance(spec, tuple):
        chain, num = spec
        return str(chain), str(num)
    if isinstance(spec, (int, np.integer)):
        return None, str(int(spec))
    s = str(spec).strip()
    if ":" in s:
        chain, num = s.split(":", 1)
        return chain, num.split(":")[0]
    return None, s


def _select(
    table: AtomTable,
    who: str,
    waters: bool,
    hydrogens: bool,
    chains: Optional[Iterable[str]],
    residues: Optional[Iterable[ResidueSpec]],
    mask: Optional[np.ndarray],
) -> tuple[AtomTable, np.ndarray]:
    keep = np.ones(len(table), dtype=bool)
    if not hydrogens:
        keep &= table.z != 1
    if not waters:
        keep &= table.kinds != "water"
    if chains is not None:
        chains = [str(c) for c in chains]
        keep &= np.isin(table.chain_ids, chains)
    if residues is not None:
        specs = [_parse_residue_spec(r) for r in residues]
        sel = np.zeros(len(table), dtype=bool)
        for chain, num in specs:
            m = table.res_ids == num
            if chain is not None:
                m &= table.chain_ids == chain
            sel |= m
        keep &= sel
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != keep.shape:
            raise GraphError(f"{who}: atom_filter returned shape {mask.shape}, expected {keep.shape}")
        keep &= mask
    if not keep.any():
        n_water = int((table.kinds == "water").sum())
        if not waters and n_water and chains is None and residues is None and mask is None:
            raise GraphError(f"{who}: no atoms besides water ({n_water} water atoms, left out by default); "
                             "not the receptor file?")
        raise GraphError(
            f"{who}: selection is empty (chains={chains}, residues={residues}, waters={waters}, "
            f"hydrogens={hydrogens}, atom_filter={'given' if mask is not None else None}) "
            f"out of {len(table)} atoms"
        )
    idx = np.flatnonzero(keep)
    return table.subset(idx), idx


def from_atom_array(
    array,
    name: str = "structure",
    *,
    waters: bool = False,
    hydrogens: bool = True,
    chains: Optional[Iterable[str]] = None,
    residues: Optional[Iterable[ResidueSpec]] = None,
    atom_filter: Optional[Callable] = None,
    segment_id: int = 0,
    periodic: bool = False,
    check_duplicates: bool = True,
    force_kind: Optional[str] = None,
) -> MolecularGraph:
    """Graph of a biotite ``AtomArray`` (the common path of :func:`from_pdb` and friends).

    Args:
        array: biotite.structure.AtomArray (coordinates in Å).
        name: file and record, used in messages and as the graph name.
        waters: keep water molecules (one block each).
        hydrogens: keep hydrogen atoms.
        chains: chain ids to keep (default all).
        residues: residues to keep: 45 (any chain), "A:45", "A:45B" or ("A", 45).
        atom_filter: callable AtomArray -> boolean mask of atoms to keep.
        segment_id: segment of every block.
        periodic: use the file's unit cell (CRYST1) as a periodic box. Off by default,
            since a crystal's cell does not make its asymmetric unit periodic.
        check_duplicates: reject atoms with the same name in one residue or identical coordinates.
        force_kind: treat every residue as this kind (e.g. "ligand" for poses).

    Example:
        >>> import biotite.structure.io.pdb as pdb                   # doctest: +SKIP
        >>> arr = pdb.PDBFile.read("rec.pdb").get_structure(model=1)  # doctest: +SKIP
        >>> from_atom_array(arr, "rec.pdb").num_blocks                # doctest: +SKIP
        302
    """
    table = table_from_atom_array(array, name, force_kind)
    mask = None if atom_filter is None else atom_filter(array)
    table, idx = _select(table, name, waters, hydrogens, chains, residues, mask)
    cell = None
    if periodic:
        if array.box is None:
            raise GraphError(f"{name}: periodic=True but the file has no unit cell (CRYST1)")
        cell = np.asarray(array.box)
    return assemble(
        table, np.asarray(array.coord)[idx], name, segment=segment_id, cell=cell,
        check_duplicates=check_duplicates,
    )


# ------------------------------------------------------------------------- files
def pdb_array(text: str, path: str, model: int, altloc: str, fmt: str = "PDB"):
    """AtomArray of one model of PDB-format text (``fmt`` "PDBQT": converted by
    :func:`pdbqt_to_pdb_text`), and the number of models.

    Raises:
        GraphError: no atom records, PDBQT records in a PDB file (AutoDock types in the
            element columns: ``A`` unknown, ``Cl`` read as C), or records biotite cannot read.
    """
    import biotite.structure.io.pdb as pdb

    # which format the text holds is asked only where the answer is used: not for every pose
    # of a PDBQT file (already converted to PDB text here; ~0.14 ms a pose)
    if not re.search(r"^(ATOM  |HETATM)", text, flags=re.MULTILINE):
        raise GraphError(f"{path}: no ATOM/HETATM records ({other_format(text, fmt) or 'empty or not a PDB file'})")
    elsewhere = other_format(text, fmt) if fmt == "PDB" else ""
    if elsewhere.startswith("the file holds PDBQT"):
        raise GraphError(f"{path}: {elsewhere} (AutoDock atom types and charges after the coordinates)")
    text, guessed = fill_elements(text)
    if guessed:
        logger.warning("%s: %s", path, guessed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            f = pdb.PDBFile.read(io.StringIO(text))
            n_models = f.get_model_count()
            if not 1 <= model <= n_models:
                raise GraphError(f"{path}: model {model} requested, the file has {n_models} model(s) (1-based)")
            array = f.get_structure(model=model, altloc=altloc, extra_fields=["atom_id"])
        except GraphError:
            raise
        except Exception as e:  # noqa: BLE001 - biotite raises several types for bad files
            where = _find_bad_atom_line(text)
            raise GraphError(
                f"{path}: cannot parse PDB ({where or f'{type(e).__name__}: {e}'})"
            ) from e
    _log_warnings(caught, path)
    odd = _odd_residue_number(text)
    if odd:
        logger.warning("%s: %s", path, odd)
    return array, n_models


def _name(path, model: int, n_models: int) -> str:
    return f"{path}" if n_models == 1 else f"{path} model {model}"


def _warn_models(who: str, model: int, n_models: int) -> None:
    """One warning when a file holds several models and one is read: an NMR ensemble (or
    docking poses, or frames) given as one structure had been read as its first model
    without a word."""
    if n_models > 1:
        logger.warning("%s: %d models (an NMR ensemble, poses or frames?); model %d is read, the "
                       "others are not (model=K picks another; split the file to use each)",
                       who, n_models, model)


def from_pdb(
    path: PathLike,
    *,
    model: int = 1,
    waters: bool = False,
    hydrogens: bool = True,
    chains: Optional[Iterable[str]] = None,
    residues: Optional[Iterable[ResidueSpec]] = None,
    atom_filter: Optional[Callable] = None,
    segment_id: int = 0,
    altloc: str = "first",
    periodic: bool = False,
    check_duplicates: bool = True,
) -> MolecularGraph:
    """Graph of a PDB file (also ``.pdb.gz``).

    Args:
        path: PDB file.
        model: 1-based MODEL number (default the first).
        waters: keep waters (default dropped).
        hydrogens: keep hydrogens present in the file (default kept).
        chains: chain ids to keep.
        residues: residues to keep: 45, "A:45", "A:45B" or ("A", 45).
        atom_filter: callable biotite AtomArray -> boolean mask of atoms to keep.
        segment_id: segment of every block (receptor 0 by convention).
        altloc: biotite's alternate-location choice ("first", "occupancy", or an altloc id).
        periodic: use CRYST1 as a periodic box (cell, pbc); off by default.
        check_duplicates: reject duplicate atoms (same residue and name, or same coordinates).

    Raises:
        GraphError: missing/unparseable file, unknown element, NaN coordinates,
            duplicate atoms or an empty selection, naming the file and the atom.

    Example:
        >>> g = from_pdb("tests/data/prolif/rec.pdb", chains=["A"])  # doctest: +SKIP
        >>> g.block_labels[:2]                                 # doctest: +SKIP
        ['A:38:TYR', 'A:39:ILE']
    """
    p = check_file(path)
    text = read_text(p)
    cut = _truncated_tail(text)
    if cut is not None:
        raise GraphError(f"{p}: {cut}")
    array, n_models = pdb_array(text, str(p), model, altloc)
    _warn_models(str(p), model, n_models)
    return from_atom_array(
        array, _name(p, model, n_models), waters=waters, hydrogens=hydrogens, chains=chains,
        residues=residues, atom_filter=atom_filter, segment_id=segment_id, periodic=periodic,
        check_duplicates=check_duplicates,
    )


def from_pdbqt(
    path: PathLike,
    *,
    model: int = 1,
    waters: bool = False,
    hydrogens: bool = True,
    chains: Optional[Iterable[str]] = None,
    residues: Optional[Iterable[ResidueSpec]] = None,
    atom_filter: Optional[Callable] = None,
    segment_id: int = 0,
    check_duplicates: bool = True,
) -> MolecularGraph:
    """Graph of a receptor PDBQT file; AutoDock atom types become elements ("OA" -> O, "A" -> C).

    PDBQT receptors carry polar hydrogens only; the graph holds what the file holds.
    For docked ligand poses use :func:`get_md.build.read_poses`.

    Args:
        path: PDBQT file (also ``.pdbqt.gz``).
        model, waters, hydrogens, chains, residues, atom_filter, segment_id, check_duplicates:
            as in :func:`from_pdb`.

    Example:
        >>> rec = from_pdbqt("1iep_receptor.pdbqt")  # doctest: +SKIP
        >>> rec.num_graphs                           # doctest: +SKIP
        1
    """
    p = check_file(path)
    text = pdbqt_to_pdb_text(read_text(p), str(p))
    array, n_models = pdb_array(text, str(p), model, "first", "PDBQT")
    _warn_models(str(p), model, n_models)
    return from_atom_array(
        array, _name(p, model, n_models), waters=waters, hydrogens=hydrogens, chains=chains,
        residues=residues, atom_filter=atom_filter, segment_id=segment_id,
        check_duplicates=check_duplicates,
    )


def from_mmcif(
    path: PathLike,
    *,
    model: int = 1,
    waters: bool = False,
    hydrogens: bool = True,
    chains: Optional[Iterable[str]] = None,
    residues: Optional[Iterable[ResidueSpec]] = None,
    atom_filter: Optional[Callable] = None,
    segment_id: int = 0,
    altloc: str = "first",
    periodic: bool = False,
    check_duplicates: bool = True,
) -> MolecularGraph:
    """Graph of an mmCIF (``.cif``, ``.cif.gz``) or BinaryCIF (``.bcif``) file.

    Author chain ids and residue numbers are used, as in the PDB format.

    Args:
        path: mmCIF / BinaryCIF file.
        model, waters, hydrogens, chains, residues, atom_filter, segment_id, altloc,
            periodic, check_duplicates: as in :func:`from_pdb`.

    Example:
        >>> g = from_mmcif("1ia1.cif", waters=True)  # doctest: +SKIP
    """
    import biotite.structure.io.pdbx as pdbx

    p = check_file(path)
    who = str(p)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if base_suffix(p) == ".bcif":
                f = pdbx.BinaryCIFFile.read(str(p))
            else:
                f = pdbx.CIFFile.read(io.StringIO(read_text(p)))
            n_models = pdbx.get_model_count(f)
            if not 1 <= model <= n_models:
                raise GraphError(f"{who}: model {model} requested, the file has {n_models} model(s) (1-based)")
            array = pdbx.get_structure(f, model=model, altloc=altloc, extra_fields=["atom_id"])
        except GraphError:
            raise
        except Exception as e:  # noqa: BLE001
            elsewhere = "" if base_suffix(p) == ".bcif" else other_format(read_head(p), "mmCIF")
            raise GraphError(f"{who}: cannot parse mmCIF ({elsewhere or f'{type(e).__name__}: {e}'})") from e
    _log_warnings(caught, who)
    _warn_models(who, model, n_models)
    return from_atom_array(
        array, _name(p, model, n_models), waters=waters, hydrogens=hydrogens, chains=chains,
        residues=residues, atom_filter=atom_filter, segment_id=segment_id, periodic=periodic,
        check_duplicates=check_duplicates,
    )
