"""Small molecules and docking poses: RDKit molecules, SDF, MOL2 and Vina PDBQT output.

Every atom of a small molecule is a block of its own (block type
``vocab.ligand_block_type(Z)``, atom position ``vocab.SMALL_MOLECULE_POSITION``).
Hydrogens present in the file are kept.

Multi-record files can be read two ways:

* strictly — :func:`from_sdf`, :func:`from_mol2`, :func:`read_poses` return a list of
  graphs and raise :class:`~get_md.graph.GraphError` naming the file and the 1-based
  record number at the first bad record;
* leniently — :func:`iter_sdf`, :func:`iter_mol2`, :func:`iter_poses` yield one
  :class:`PoseRecord` per record, holding either a graph or the error, so that a
  workflow can report a bad pose and go on. A record unpacks as
  ``(record_index, graph_or_exception)``.

Example:
    >>> from get_md.build import iter_poses
    >>> for i, g in iter_poses("poses.sdf"):            # doctest: +SKIP
    ...     if isinstance(g, Exception):
    ...         print("skipped", g)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

from get_md.build._common import (
    AtomTable,
    PathLike,
    assemble,
    base_suffix,
    check_file,
    element_to_z,
    logger,
    open_text,
    other_format,
    read_head,
    read_text,
)
from get_md.graph import GraphError, MolecularGraph

#: Extensions understood by :func:`read_poses` (a trailing ``.gz`` is allowed).
POSE_FORMATS = (".sdf", ".sd", ".mol", ".mol2", ".pdbqt", ".pdb")

_VINA = re.compile(r"^REMARK VINA RESULT:\s+(\S+)(?:\s+(\S+))?(?:\s+(\S+))?", re.MULTILINE)


@dataclass
class PoseRecord:
    """One record of a multi-record file: a graph, or the reason it could not be built.

    Unpacks as ``(index, graph_or_exception)``.

    Attributes:
        index: 1-based record number in the file.
        source: the file.
        graph: the graph, or None if the record is bad.
        error: the GraphError (message names file and record), or None.
        properties: record data: SDF tags, the molecule name (``_Name``), and for Vina
            PDBQT ``vina_score`` (kcal/mol), ``vina_rmsd_lb``, ``vina_rmsd_ub``.
        mol: the RDKit molecule when the format was read with RDKit (SDF, MOL2).
    """

    index: int
    source: str
    graph: Optional[MolecularGraph] = None
    error: Optional[GraphError] = None
    properties: dict[str, Any] = field(default_factory=dict)
    mol: Any = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> MolecularGraph:
        """The graph; raise the record's GraphError if it has none."""
        if self.error is not None:
            raise self.error
        assert self.graph is not None
        return self.graph

    def __iter__(self):
        yield self.index
        yield self.graph if self.error is None else self.error


# ------------------------------------------------------------------------- RDKit
def _atoms(mol) -> list:
    """The atoms of an RDKit molecule by index (``GetAtoms()`` iterates in Python with a
    length check per step: 3x slower, a third of a pose's parse)."""
    return [mol.GetAtomWithIdx(i) for i in range(mol.GetNumAtoms())]


def _rdkit_table(mol, atoms: Optional[list] = None) -> AtomTable:
    atoms = _atoms(mol) if atoms is None else atoms
    n = len(atoms)
    z = np.array([a.GetAtomicNum() for a in atoms], dtype=np.int64)
    names, resnames, chains, resids = [], [], [], []
    for a in atoms:
        info = a.GetPDBResidueInfo()
        if info is not None:
            names.append(info.GetName().strip() or f"{a.GetSymbol()}{a.GetIdx() + 1}")
            resnames.append(info.GetResidueName().strip() or "LIG")
            chains.append(info.GetChainId().strip())
            resids.append(str(info.GetResidueNumber()))
        else:
            names.append(f"{a.GetSymbol()}{a.GetIdx() + 1}")
            resnames.append("LIG")
            chains.append("")
            resids.append("1")
    return AtomTable(
        z=z,
        atom_names=np.array(names, dtype=str),
        res_index=np.zeros(n, dtype=np.int64),
        res_names=np.array(resnames, dtype=str),
        chain_ids=np.array(chains, dtype=str),
        res_ids=np.array(resids, dtype=str),
        serials=np.arange(1, n + 1),
        kinds=np.full(n, "ligand"),
    )


#: The largest formal charge of one atom a record may carry (organic ions and the metal
#: ions of ligands stay within ±4); beyond it the charge record is damaged
MAX_FORMAL_CHARGE = 4


def from_rdkit(
    mol,
    conf_id: int = -1,
    name: str = "molecule",
    *,
    segment_id: int = 0,
    allow_2d: bool = False,
    check_duplicates: bool = True,
) -> MolecularGraph:
    """Graph of an RDKit molecule with 3D coordinates (one block per atom).

    Args:
        mol: rdkit.Chem.Mol with a conformer; explicit hydrogens are kept as they are.
        conf_id: conformer id (-1: the default conformer).
        name: file and record (or any label) used in messages and as the graph name.
        segment_id: segment of every block.
        allow_2d: accept a conformer flagged 2D (rejected by default).
        check_duplicates: reject atoms with identical coordinates.

    Raises:
        GraphError: no atoms, no conformer, 2D coordinates, dummy / unknown atoms,
            NaN or duplicate coordinates.

    Example:
        >>> from rdkit import Chem
        >>> from rdkit.Chem import AllChem
        >>> m = Chem.AddHs(Chem.MolFromSmiles("O"))
        >>> _ = AllChem.EmbedMolecule(m, randomSeed=1)
        >>> from_rdkit(m, name="water").num_blocks
        3
    """
    if mol is None:
        raise GraphError(f"{name}: no molecule (RDKit returned None)")
    if mol.GetNumAtoms() == 0:
        raise GraphError(f"{name}: ligand has no atoms")
    if mol.GetNumConformers() == 0:
        raise GraphError(f"{name}: molecule has no coordinates (no conformer)")
    try:
        conf = mol.GetConformer(conf_id)
    except ValueError as e:
        raise GraphError(f"{name}: no conformer with id {conf_id}") from e
    if not conf.Is3D() and not allow_2d:
        raise GraphError(f"{name}: coordinates are 2D (pass allow_2d=True to accept them)")
    atoms = _atoms(mol)
    table = _rdkit_table(mol, atoms)
    bad = np.flatnonzero(table.z <= 0)
    if bad.size:
        i = int(bad[0])
        raise GraphError(
            f"{name}: atom {i + 1} ({mol.GetAtomWithIdx(i).GetSymbol()}) is a dummy / query atom without an element"
        )
    charges = np.array([a.GetFormalCharge() for a in atoms])
    wild = np.flatnonzero(np.abs(charges) > MAX_FORMAL_CHARGE)
    if wild.size:
        i = int(wild[0])
        raise GraphError(f"{name}: atom {i + 1} ({mol.GetAtomWithIdx(i).GetSymbol()}) has formal charge "
                         f"{int(charges[i]):+d}, beyond ±{MAX_FORMAL_CHARGE}: a damaged charge record (M  CHG)?")
    return assemble(
        table, np.asarray(conf.GetPositions()), name, segment=segment_id,
        check_duplicates=check_duplicates,
    )


def _diagnose_molblock(block: str) -> str:
    """Why a V2000 mol block does not parse, as far as can be told without RDKit."""
    head = block[:2000]
    if head and sum(not (c.isprintable() or c in "\r\n\t") for c in head) > 0.1 * len(head):
        return ("binary data, not text (a compressed file inside a compressed file, e.g. .sdf.gz "
                "compressed twice?)")
    elsewhere = other_format(block, "SDF")
    if elsewhere:
        return elsewhere
    lines = block.splitlines()
    if len(lines) < 4:
        return f"record truncated ({len(lines)} lines, a header alone needs 4)"
    counts = lines[3]
    if "V3000" in counts:
        return "RDKit could not parse the V3000 record"
    try:
        n_atoms, n_bonds = int(counts[0:3]), int(counts[3:6])
    except ValueError:
        return f"cannot read the counts line {counts!r}"
    if n_atoms == 0:
        return "ligand has no atoms"
    body = lines[4:]
    end = next((k for k, ln in enumerate(body) if ln.startswith("M  END")), len(body))
    have = min(end, len(body))
    if have < n_atoms + n_bonds:
        return (
            f"record truncated: counts line declares {n_atoms} atoms and {n_bonds} bonds, "
            f"found {have} atom/bond lines"
        )
    for k in range(n_atoms):
        ln = body[k]
        try:
            xyz = [float(ln[0:10]), float(ln[10:20]), float(ln[20:30])]
        except ValueError:
            return f"atom {k + 1}: cannot read coordinates {ln[0:30]!r}"
        if not np.isfinite(xyz).all():
            return f"atom {k + 1} has non-finite coordinates {xyz}"
        symbol = ln[31:34].strip()
        if symbol not in ("", "*", "R", "R#", "A", "Q", "L", "LP"):
            try:
                element_to_z(symbol)
            except (KeyError, ValueError):
                return f"atom {k + 1}: unknown element {symbol!r}"
    return "RDKit could not parse the record"


#: Warnings already given in this process: a workflow reads a pose file twice (pocket, then
#: scoring), and a record's problem is said once.
_WARNED: set[str] = set()


def warn_once(message: str) -> None:
    """Log ``message`` as a warning unless this process has already logged it."""
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning(message)


def parse_record(
    text: str, fmt: str, source: str, index: int, sanitize: bool, allow_2d: bool, segment_id: int
) -> PoseRecord:
    """One SDF / MOL2 record's text (``fmt`` "sdf" or "mol2") as a :class:`PoseRecord`,
    record ``index`` of ``source``: its graph, or the error naming the record."""
    from rdkit import Chem, rdBase

    who = f"{source}: record {index}"
    rec = PoseRecord(index=index, source=source)
    blocker = rdBase.BlockLogs()  # noqa: F841 - silences RDKit while in scope
    try:
        if fmt == "mol2":
            mol = Chem.MolFromMol2Block(text, sanitize=False, removeHs=False)
        else:
            mol = Chem.MolFromMolBlock(text, sanitize=False, removeHs=False, strictParsing=True)
        if mol is None:
            reason = _diagnose_molblock(text) if fmt == "sdf" else "RDKit could not parse the MOL2 record"
            raise GraphError(f"{who}: {reason}")
        if fmt == "sdf":
            _read_sdf_tags(text, mol)
        rec.properties = {k: v for k, v in mol.GetPropsAsDict(includePrivate=False).items()}
        rec.properties["_Name"] = mol.GetProp("_Name") if mol.HasProp("_Name") else ""
        if sanitize:
            try:
                Chem.SanitizeMol(mol)
            except Exception as e:  # noqa: BLE001 - RDKit raises several sanitization errors
                warn_once(f"{who}: RDKit sanitization failed ({e}); graph built from the raw record")
                rec.properties["_sanitized"] = False
        mol_name = rec.properties["_Name"]
        rec.mol = mol
        rec.graph = from_rdkit(mol, name=who, segment_id=segment_id, allow_2d=allow_2d)
        rec.graph.names = [f"{source}#{index}" + (f" ({mol_name})" if mol_name else "")]
    except GraphError as e:
        rec.error = e
        rec.graph = None
    finally:
        del blocker
    return rec


def split_sdf_record(text: str) -> Optional[tuple[list[str], list[tuple[str, str]]]]:
    """An SDF record's lines up to and including ``M  END``, and its data items
    ``(tag, value)`` in file order; None when the record has no ``M  END`` line."""
    lines = text.splitlines()
    k = next((i for i, ln in enumerate(lines) if ln.startswith("M  END")), None)
    if k is None:
        return None
    items: list[tuple[str, str]] = []
    i = k + 1
    while i < len(lines):
        m = re.match(r"^>.*<([^>]*)>", lines[i])
        if m is None:
            i += 1
            continue
        tag, values = m.group(1), []
        i += 1
        while i < len(lines) and lines[i].strip() != "":
            values.append(lines[i])
            i += 1
        items.append((tag, "\n".join(values)))
    return lines[: k + 1], items


def _read_sdf_tags(text: str, mol) -> None:
    """Copy SDF data items (``> <tag>`` blocks) onto ``mol``; MolFromMolBlock ignores them."""
    parts = split_sdf_record(text)
    for tag, value in parts[1] if parts is not None else ():
        mol.SetProp(tag, value)


def iter_sdf_texts(path: PathLike, strict: bool = False) -> Iterator[tuple[int, str]]:
    """Stream ``(1-based record number, record text without $$$$)`` of an SDF file, unparsed.

    A file that cannot be read to its end (a truncated ``.gz``) ends the stream after its
    last whole record, as :func:`iter_sdf` (which reports the cut record) reads it; with
    ``strict`` that raises GraphError naming the record. A file with no readable record
    always raises.
    """
    records = _split_records(check_file(path), "sdf")
    index = 0
    while True:
        try:
            index, text = next(records)
        except StopIteration:
            return
        except GraphError:
            if strict or index == 0:
                raise
            return
        yield index, text


def _split_records(path: Path, fmt: str) -> Iterator[tuple[int, str]]:
    """Stream (1-based record number, record text) from an SDF or MOL2 file."""
    count = 0
    buf: list[str] = []
    with open_text(path) as fh:
        try:
            for line in fh:
                if fmt == "sdf":
                    if line.startswith("$$$$"):
                        count += 1
                        yield count, "".join(buf)
                        buf = []
                    else:
                        buf.append(line)
                else:
                    if line.startswith("@<TRIPOS>MOLECULE"):
                        if any(ln.startswith("@<TRIPOS>") for ln in buf):
                            count += 1
                            yield count, "".join(buf)
                        buf = []
                    buf.append(line)
        except (OSError, EOFError) as e:
            raise GraphError(f"{path}: record {count + 1}: cannot read the file ({e}); "
                             "truncated or damaged file?") from e
    rest = "".join(buf)
    if rest.strip() and (fmt == "sdf" or "@<TRIPOS>MOLECULE" in rest):
        count += 1
        yield count, rest
    if count == 0:
        elsewhere = other_format(read_head(path), fmt.upper())
        raise GraphError(f"{path}: no {fmt.upper()} records ({elsewhere or 'empty file or wrong format'})")


def _iter_rdkit(path: PathLike, fmt: str, sanitize: bool, allow_2d: bool, segment_id: int) -> Iterator[PoseRecord]:
    p = check_file(path)

    def gen():
        records = _split_records(p, fmt)
        index = 0
        while True:
            try:
                index, text = next(records)
            except StopIteration:
                return
            except GraphError as e:
                if index == 0:  # nothing readable: the file is bad, not a record
                    raise
                # a file that ends inside a record (truncated .gz): that record is bad, the
                # ones before it stand
                yield PoseRecord(index=index + 1, source=str(p), error=e)
                return
            yield parse_record(text, fmt, str(p), index, sanitize, allow_2d, segment_id)

    return gen()


def iter_sdf(
    path: PathLike, *, sanitize: bool = True, allow_2d: bool = False, segment_id: int = 0
) -> Iterator[PoseRecord]:
    """Lenient reader of a (multi-record, optionally gzipped) SDF file: one PoseRecord per record.

    Bad records come back with ``error`` set (message: file, record number, reason);
    the file itself missing or holding no record raises GraphError.

    Args:
        path: ``.sdf`` / ``.sdf.gz``.
        sanitize: run RDKit sanitization; a failure is logged and the graph is still built
            from the raw record (``properties["_sanitized"] = False``).
        allow_2d: accept 2D records.
        segment_id: segment of every block.

    Example:
        >>> good = [r.graph for r in iter_sdf("poses.sdf") if r.ok]  # doctest: +SKIP
    """
    return _iter_rdkit(path, "sdf", sanitize, allow_2d, segment_id)


def iter_mol2(
    path: PathLike, *, sanitize: bool = True, allow_2d: bool = False, segment_id: int = 0
) -> Iterator[PoseRecord]:
    """Lenient reader of a multi-record MOL2 file (records split at ``@<TRIPOS>MOLECULE``).

    Args:
        path: ``.mol2`` / ``.mol2.gz``.
        sanitize, allow_2d, segment_id: as in :func:`iter_sdf`.

    Example:
        >>> [r.index for r in iter_mol2("poses.mol2") if not r.ok]  # doctest: +SKIP
        []
    """
    return _iter_rdkit(path, "mol2", sanitize, allow_2d, segment_id)


def _strict(records: Iterator[PoseRecord]) -> list[MolecularGraph]:
    return [r.unwrap() for r in records]


def from_sdf(path: PathLike, **kwargs) -> list[MolecularGraph]:
    """All records of an SDF file as graphs; GraphError naming file and record at the first bad one.

    Args:
        path: ``.sdf`` / ``.sdf.gz``.
        **kwargs: ``sanitize``, ``allow_2d``, ``segment_id`` as in :func:`iter_sdf`.

    Example:
        >>> poses = from_sdf("tests/data/prolif/vina_output.sdf")  # doctest: +SKIP
        >>> len(poses), poses[0].num_atoms                  # doctest: +SKIP
        (9, 79)
    """
    return _strict(iter_sdf(path, **kwargs))


def from_mol2(path: PathLike, **kwargs) -> list[MolecularGraph]:
    """All records of a MOL2 file as graphs; GraphError naming file and record at the first bad one.

    Args:
        path: ``.mol2`` / ``.mol2.gz``.
        **kwargs: ``sanitize``, ``allow_2d``, ``segment_id`` as in :func:`iter_sdf`.

    Example:
        >>> len(from_mol2("tests/data/prolif/vina_output.mol2"))  # doctest: +SKIP
        9
    """
    return _strict(iter_mol2(path, **kwargs))


# ------------------------------------------------------------- PDB-format poses
def _split_models(text: str) -> list[str]:
    """Model texts of a PDB/PDBQT file (the whole file when it has no MODEL records)."""
    if not re.search(r"^MODEL", text, flags=re.MULTILINE):
        return [text]
    models, cur, inside = [], [], False
    for line in text.splitlines():
        if line.startswith("MODEL"):
            if inside:  # MODEL without ENDMDL: close the previous one
                models.append("\n".join(cur))
            cur, inside = [], True
        elif line.startswith("ENDMDL"):
            models.append("\n".join(cur))
            cur, inside = [], False
        elif inside:
            cur.append(line)
    if inside and cur:
        models.append("\n".join(cur))
    return models


def _vina_properties(text: str) -> dict[str, Any]:
    m = _VINA.search(text)
    if m is None:
        return {}
    props: dict[str, Any] = {}
    for key, value in zip(("vina_score", "vina_rmsd_lb", "vina_rmsd_ub"), m.groups(), strict=True):
        if value is not None:
            try:
                props[key] = float(value)
            except ValueError:
                pass
    return props


_FLEX_RESIDUE = re.compile(r"^BEGIN_RES\s*(.*?)\s*$.*?^END_RES.*?$\n?", flags=re.MULTILINE | re.DOTALL)


def split_flexible_residues(text: str) -> tuple[str, list[str]]:
    r"""A Vina PDBQT model without its flexible receptor residues (the ``BEGIN_RES`` ...
    ``END_RES`` sections flexible-side-chain docking writes after the ligand), and their
    names (``"TYR A 123"``).

    Example:
        >>> model = "ROOT\nATOM ...\nENDROOT\nBEGIN_RES THR A 315\nATOM ...\nEND_RES THR A 315\n"
        >>> split_flexible_residues(model)
        ('ROOT\nATOM ...\nENDROOT\n', ['THR A 315'])
    """
    names = [" ".join(m.group(1).split()) for m in _FLEX_RESIDUE.finditer(text)]
    return (_FLEX_RESIDUE.sub("", text), names) if names else (text, [])


def concatenated_poses(text: str) -> Optional[int]:
    """1-based atom at which a single-model PDB / PDBQT text starts a second copy of its
    first atoms (same serial numbers and names again: several poses written one after
    the other without MODEL / ENDMDL records), or None."""
    atoms = [(line[6:11].strip(), line[12:16].strip()) for line in text.splitlines()
             if line.startswith(("ATOM  ", "HETATM"))]
    head = atoms[:3]
    if len(head) < 3 or not all(serial for serial, _ in head):  # blank serials tell nothing
        return None
    for k in range(1, len(atoms) - len(head) + 1):
        if atoms[k:k + len(head)] == head:
            return k + 1
    return None


def iter_pdb_poses(path: PathLike, *, segment_id: int = 0) -> Iterator[PoseRecord]:
    """Lenient reader of ligand poses in PDB or PDBQT format (Vina output): one record per MODEL.

    Every atom is a ligand block, whatever its residue name. Vina's
    ``REMARK VINA RESULT`` line, when present, is read into ``properties``
    (``vina_score`` in kcal/mol, ``vina_rmsd_lb``, ``vina_rmsd_ub``). Vina PDBQT
    poses carry polar hydrogens only. The flexible receptor residues of a
    flexible-side-chain docking (``BEGIN_RES`` ... ``END_RES``) are not ligand atoms: they
    are left out, named in ``properties["flexible_residues"]``, with one warning per file
    (the ligand is then scored against the receptor file's conformation of those
    residues, not the docked one).

    Args:
        path: ``.pdbqt`` or ``.pdb`` (optionally ``.gz``).
        segment_id: segment of every block.

    Example:
        >>> [r.properties["vina_score"] for r in iter_pdb_poses("out.pdbqt")]  # doctest: +SKIP
        [-11.8, -11.4]
    """
    from get_md.build.structure import from_atom_array, pdb_array, pdbqt_to_pdb_text

    p = check_file(path)
    source = str(p)
    is_pdbqt = base_suffix(p) == ".pdbqt"
    models = _split_models(read_text(p))
    if not any(re.search(r"^(ATOM  |HETATM)", m, flags=re.MULTILINE) for m in models):
        elsewhere = other_format(read_head(p), "PDBQT" if is_pdbqt else "PDB")
        raise GraphError(f"{source}: no ATOM/HETATM records ({elsewhere or 'empty file or wrong format'})")

    def gen():
        for index, text in enumerate(models, 1):
            who = f"{source}: record {index}"
            rec = PoseRecord(index=index, source=source, properties=_vina_properties(text))
            try:
                again = concatenated_poses(text) if len(models) == 1 else None
                if again is not None:
                    raise GraphError(f"{who}: its first atoms start over at atom {again} (same serial numbers and "
                                     "names): several poses without MODEL / ENDMDL records? Write one MODEL per pose")
                if is_pdbqt:
                    text, flexible = split_flexible_residues(text)
                    if flexible:
                        rec.properties["flexible_residues"] = "; ".join(flexible)
                        warn_once(f"{source}: its poses hold flexible receptor residues ({', '.join(flexible)}; "
                                  "Vina flexible docking) besides the ligand: they are left out of the ligand, "
                                  "which is scored against the receptor file's conformation of those residues, "
                                  "not the docked one")
                body = pdbqt_to_pdb_text(text, who) if is_pdbqt else text
                if not re.search(r"^(ATOM  |HETATM)", body, flags=re.MULTILINE):
                    raise GraphError(f"{who}: ligand has no atoms")
                array, _ = pdb_array(body, who, 1, "first", "PDBQT" if is_pdbqt else "PDB")
                rec.graph = from_atom_array(
                    array, who, segment_id=segment_id, force_kind="ligand", waters=True
                )
                rec.graph.names = [f"{source}#{index}"]
            except GraphError as e:
                rec.error = e
            yield rec

    return gen()


# ------------------------------------------------------------------- dispatch
def iter_poses(path: PathLike, **kwargs) -> Iterator[PoseRecord]:
    """Lenient pose reader dispatching on the extension (.sdf, .mol2, .pdbqt, .pdb, + .gz).

    Yields one :class:`PoseRecord` per record; each unpacks as
    ``(record_index, graph_or_exception)`` with 1-based record numbers.

    Args:
        path: pose file.
        **kwargs: passed to the format's reader (e.g. ``segment_id``, ``sanitize``).

    Raises:
        GraphError: missing file, unknown extension, or no records at all.

    Example:
        >>> for i, g in iter_poses("vina_output.sdf"):  # doctest: +SKIP
        ...     print(i, g.num_atoms if not isinstance(g, Exception) else g)
    """
    p = check_file(path)
    ext = base_suffix(p)
    if ext in (".sdf", ".sd", ".mol"):
        return iter_sdf(p, **kwargs)
    if ext == ".mol2":
        return iter_mol2(p, **kwargs)
    if ext in (".pdbqt", ".pdb"):
        kwargs.pop("sanitize", None)
        kwargs.pop("allow_2d", None)
        return iter_pdb_poses(p, **kwargs)
    raise GraphError(f"{p}: unknown pose format {ext!r} (expected one of {', '.join(POSE_FORMATS)})")


def read_poses(path: PathLike, **kwargs) -> list[MolecularGraph]:
    """Strict pose reader: every record as a graph, or GraphError naming file and record.

    Args:
        path: .sdf, .mol2, .pdbqt (Vina output, MODEL/ENDMDL) or .pdb, optionally gzipped.
        **kwargs: as in :func:`iter_poses`.

    Example:
        >>> poses = read_poses("tests/data/prolif/vina_output.sdf")  # doctest: +SKIP
        >>> len(poses)                                        # doctest: +SKIP
        9
    """
    return _strict(iter_poses(path, **kwargs))


def read_pose_records(path: PathLike, **kwargs) -> list[PoseRecord]:
    """Strict reader keeping record data (SDF tags, Vina scores, RDKit molecules).

    Example:
        >>> recs = read_pose_records("vina_output_ligand_1.pdbqt")  # doctest: +SKIP
        >>> recs[0].properties["vina_score"]                        # doctest: +SKIP
        -11.8
    """
    records = list(iter_poses(path, **kwargs))
    for r in records:
        r.unwrap()
    return records

