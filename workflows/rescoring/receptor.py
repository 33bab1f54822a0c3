"""The receptor of ``rescore-poses``: read (PDB, mmCIF, BinaryCIF, PDBQT), its
coordinates checked, hydrogens completed (``--add-hydrogens``), cofactors given as
separate molecules joined to it (``--cofactors``), the reference ligand, and PDB text
for PoseBusters.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np

from get_md.errors import WorkflowError

from ..geometry_checks import (
    MIN_DISTANCE,
    as_array,
    graph_atom_namer,
    multi_atom_block_atoms,
    structure_problem,
)
from .options import PathLike

# messages keep the logger name they had in get_md.workflows.poses
logger = logging.getLogger("get_md.workflows.poses")


_RECEPTOR_FORMATS = {
    ".pdb": "pdb", ".ent": "pdb", ".cif": "mmcif", ".mmcif": "mmcif", ".bcif": "mmcif",
    ".pdbqt": "pdbqt",
}


def load_receptor(path: PathLike):
    """Receptor graph (segment 0) from PDB / mmCIF / BinaryCIF / PDBQT (optionally gzipped)."""
    from get_md import build
    from get_md.build import base_suffix

    fmt = _RECEPTOR_FORMATS.get(base_suffix(path))
    if fmt is None:
        raise WorkflowError(
            f"{path}: unknown receptor format; expected .pdb, .cif, .bcif or .pdbqt (optionally .gz)"
        )
    reader = {"pdb": build.from_pdb, "mmcif": build.from_mmcif, "pdbqt": build.from_pdbqt}[fmt]
    return reader(path, segment_id=0)


def _file_atom_namer(path: PathLike, graph):
    """Atom names as the receptor file gives them (``atom 1234 (A:109:TYR:OH)``) for the
    atoms of ``graph`` read from it, matched by their coordinates; None if the file cannot
    be read again. For messages only (reads the file once more)."""
    import numpy as np

    captured: list = []

    def keep_all(array):
        captured.append(array)
        return np.ones(array.array_length(), dtype=bool)

    from get_md import build
    from get_md.build import base_suffix

    reader = {"pdb": build.from_pdb, "mmcif": build.from_mmcif,
              "pdbqt": build.from_pdbqt}[_RECEPTOR_FORMATS[base_suffix(path)]]
    # the first read has said what the file's warnings say (several models, guessed
    # elements); this one is for names only, so they are not said twice
    structure_log = logging.getLogger("get_md.build")
    was_disabled, structure_log.disabled = structure_log.disabled, True
    try:
        reader(path, segment_id=0, atom_filter=keep_all, check_duplicates=False)
    except Exception:  # noqa: BLE001 - names are a courtesy
        return None
    finally:
        structure_log.disabled = was_disabled
    if not captured:
        return None
    arr = captured[0]
    where = {tuple(c): k for k, c in enumerate(np.asarray(arr.coord, dtype=np.float64).tolist())}
    ids = arr.atom_id if "atom_id" in arr.get_annotation_categories() else np.arange(1, len(where) + 1)
    fallback = graph_atom_namer(graph)
    positions = graph.positions.detach().cpu().double().tolist()

    def name(i: int) -> str:
        k = where.get(tuple(positions[i]))
        if k is None:
            return fallback(i)
        return (f"atom {int(ids[k])} ({arr.chain_id[k] or '-'}:{arr.res_id[k]}{arr.ins_code[k]}:"
                f"{arr.res_name[k]}:{arr.atom_name[k]})")

    return name


def check_receptor(path: PathLike, receptor, what: str = "receptor", overlaps: bool = False,
                   names_from_file: bool = True) -> None:
    """Raise WorkflowError, one line naming ``path`` and the atom, if the coordinates of
    ``receptor`` (the receptor, or its pocket) are broken
    (:func:`~get_md.workflows.geometry_checks.structure_problem`): non-finite or beyond
    ±1e5 Å, an atom of a residue more than 10 Å from any other atom, and with
    ``overlaps`` two atoms closer than 0.5 Å. Overlaps are checked in the pocket only:
    deposited structures hold the odd clash far from any ligand, which does not touch
    the scores. ``names_from_file``: name atoms as the file does (reads it again)."""
    blocks = multi_atom_block_atoms(receptor)
    limit = MIN_DISTANCE if overlaps else None
    why = structure_problem(receptor.positions, graph_atom_namer(receptor), blocks, min_distance=limit)
    if why is None:
        return
    namer = _file_atom_namer(path, receptor) if names_from_file else None
    if namer is not None:
        why = structure_problem(receptor.positions, namer, blocks, min_distance=limit) or why
    raise WorkflowError(f"{path}: {what}: {why}")


#: a hetero group of the receptor is taken for a ligand left in it when at least half of its
#: heavy atoms (and 3) lie this close (Å) to heavy atoms of one pose: no contact is that
#: short (hydrogen bonds are 2.5 Å or more), only a second copy of the ligand
OCCUPIED_DISTANCE = 1.5
#: poses checked for :func:`check_site_free` (the first ones of the file)
OCCUPIED_CHECK_POSES = 64


def hetero_groups(graph) -> dict[str, np.ndarray]:
    """Heavy atoms of each multi-atom hetero group of a receptor graph (one block per
    atom, labelled ``chain:residue:name:atom``), by ``chain:residue:name``."""
    labels = graph.block_labels or []
    block_of = as_array(graph.block_ids).astype(int)
    heavy = as_array(graph.atomic_numbers) != 1
    groups: dict[str, list[int]] = {}
    for atom in np.flatnonzero(heavy):
        label = labels[block_of[atom]] if block_of[atom] < len(labels) else ""
        if label.count(":") == 3:
            groups.setdefault(label.rsplit(":", 1)[0], []).append(int(atom))
    return {k: np.array(v) for k, v in groups.items() if len(v) >= 3}


def warn_if_no_polymer(path: PathLike, receptor) -> None:
    """Warn, naming ``path`` and its largest hetero groups, if ``receptor`` holds no
    protein or nucleic-acid atom: a ligand or cofactor file given as the receptor (the
    poses would be scored against a small molecule). Host-guest systems are scored
    as they are."""
    from get_md import vocab

    if bool((receptor.atom_positions != vocab.SMALL_MOLECULE_POSITION).any()):
        return
    groups = sorted(hetero_groups(receptor).items(), key=lambda kv: -len(kv[1]))
    held = ", ".join(f"{key} ({len(atoms)} heavy atoms)" for key, atoms in groups[:3]) or "ions or water only"
    logger.warning("%s: the receptor holds no protein or nucleic-acid residue, only %s: a ligand file given "
                   "as the receptor? Scored as it is (as for a host-guest system)", path, held)


def check_site_free(receptor_path: PathLike, pocket, ligands) -> None:
    """Raise WorkflowError if a hetero group of the pocket sits where a ligand is: half or
    more of its heavy atoms within :data:`OCCUPIED_DISTANCE` of heavy atoms of one of
    ``ligands`` (``(description, graph)`` pairs, e.g. the first poses and the reference).
    That is the co-crystal ligand left in the receptor file: every pose would be scored
    against a second copy of itself (or skipped as overlapping it)."""
    from scipy.spatial import cKDTree

    groups = hetero_groups(pocket)
    if not groups:
        return
    xyz = as_array(pocket.positions)
    for what, graph in ligands:
        lig = as_array(graph.positions)[as_array(graph.atomic_numbers) != 1]
        if not len(lig):
            continue
        tree = cKDTree(lig)
        for key, atoms in groups.items():
            d, _ = tree.query(xyz[atoms], k=1, distance_upper_bound=OCCUPIED_DISTANCE + 1e-6)
            close = int((d <= OCCUPIED_DISTANCE).sum())
            if close >= 0.5 * len(atoms):
                raise WorkflowError(
                    f"{receptor_path}: hetero group {key} ({len(atoms)} heavy atoms) sits where the ligand is: "
                    f"{close} of its heavy atoms lie within {OCCUPIED_DISTANCE:g} Å of heavy atoms of {what}. "
                    "A ligand left in the receptor file? Remove it (every pose would be scored against a second "
                    "copy of a ligand, or skipped as overlapping it)")


def load_reference(path: PathLike):
    """The first record of a ligand file (SDF, MOL2, PDBQT, PDB) as a graph (segment 1)."""
    from get_md.build import iter_poses

    for rec in iter_poses(path, segment_id=1):
        return rec.unwrap(), rec
    raise WorkflowError(f"{path}: reference ligand file holds no record")


def receptor_with_cofactors(rec, cofactors: PathLike, ligand_hydrogens: str = "no"):
    """``rec`` with every molecule of the file ``cofactors`` (SDF, MOL2, PDB, PDBQT; e.g. a
    benchmark's ``cofactor.sdf``) joined to it as receptor atoms
    (:func:`get_md.build.add_cofactors`). ``ligand_hydrogens`` as for the poses
    (:func:`~get_md.workflows.rescoring.pose_records.pose_items`): "missing" / "yes" add
    hydrogens to SDF / MOL2 molecules without any / to all.

    Raises:
        WorkflowError: the file is missing, holds no molecule, or a record cannot be read
            (naming the file and the record); GraphError: a cofactor atom on top of a
            receptor atom (the cofactor is also in the receptor file).
    """
    from get_md.build import add_cofactors, iter_poses

    from .pose_records import adds_hydrogens, pose_with_hydrogens

    if not Path(cofactors).is_file():
        raise WorkflowError(f"{cofactors}: cofactor file " + ("is a directory" if Path(cofactors).is_dir()
                                                               else "not found"))
    graphs = []
    for record in iter_poses(cofactors, segment_id=0):
        if record.error is not None:
            raise WorkflowError(f"cofactor file: {record.error}")
        graph = record.graph
        if adds_hydrogens(record, ligand_hydrogens):
            graph = pose_with_hydrogens(record)[0]
            graph.names = list(record.graph.names)
        graphs.append(graph)
    if not graphs:
        raise WorkflowError(f"{cofactors}: cofactor file holds no molecule")
    out = add_cofactors(rec, graphs)
    logger.info("%s: %d cofactor molecule(s), %d atoms, joined to the receptor", cofactors, len(graphs),
                out.num_atoms - rec.num_atoms)
    return out


HYDROGEN_CHOICES = ("auto", "yes", "no")


def receptor_with_hydrogens(path: PathLike, rec, mode: str, potential: bool):
    """``(receptor graph, residues left without hydrogens)`` after ``--add-hydrogens``.

    ``auto``: a potential scoring a receptor with fewer hydrogens than half its heavy
    atoms (none, or polar ones only as in AutoDock PDBQT files; proteins have about one
    per heavy atom) gets the missing ones from OpenMM's Modeller at pH 7
    (:func:`get_md.build.hydrogens.protonate_receptor`); ``yes``: missing hydrogens are
    added to any receptor; ``no``: the file as it is.
    """
    import dataclasses
    import tempfile

    from get_md import build
    from get_md.build import base_suffix
    from get_md.build.hydrogens import hydrogen_counts, protonate_receptor

    n_h, n_heavy = hydrogen_counts(rec)
    if mode == "no" or (mode == "auto" and (not potential or n_h >= 0.5 * n_heavy)):
        return rec, []
    if base_suffix(path) == ".bcif":
        if mode == "yes":
            raise WorkflowError(f"{path}: --add-hydrogens yes reads PDB, mmCIF or PDBQT receptors, not BinaryCIF")
        logger.warning("%s has %d hydrogens for %d heavy atoms; BinaryCIF is scored as it is", path, n_h, n_heavy)
        return rec, []
    if mode == "auto":
        have = "no hydrogens" if n_h == 0 else f"{n_h} hydrogens for {n_heavy} heavy atoms (polar ones only?)"
        logger.warning("%s has %s; the potential was trained with all of them: adding the missing ones "
                       "(OpenMM Modeller, pH 7; --add-hydrogens no scores the file as it is)", path, have)
    with tempfile.TemporaryDirectory(prefix="get_md_") as d:
        out = Path(d) / "receptor_with_hydrogens.pdb"
        try:
            skipped = protonate_receptor(path, out)
        except ValueError as e:
            raise WorkflowError(str(e)) from e
        graph = build.from_pdb(out, segment_id=0)
    graph = dataclasses.replace(graph, names=[f"{path} (hydrogens added)"])
    logger.info("%s: %d -> %d atoms with hydrogens", path, rec.num_atoms, graph.num_atoms)
    return graph, skipped


def receptor_pdb_text(receptor: PathLike) -> str:
    """Receptor as PDB text for PoseBusters (PDBQT types mapped, mmCIF converted)."""
    from get_md.build import base_suffix, read_text

    fmt = _RECEPTOR_FORMATS.get(base_suffix(receptor))
    if fmt == "pdb":
        return read_text(receptor)
    if fmt == "pdbqt":
        from get_md.build.structure import pdbqt_to_pdb_text

        return pdbqt_to_pdb_text(read_text(receptor), str(receptor))
    import biotite.structure.io.pdb as pdb
    import biotite.structure.io.pdbx as pdbx

    if base_suffix(receptor) == ".bcif":
        f = pdbx.BinaryCIFFile.read(str(receptor))
    else:
        f = pdbx.CIFFile.read(io.StringIO(read_text(receptor)))
    arr = pdbx.get_structure(f, model=1)
    out = pdb.PDBFile()
    out.set_structure(arr)
    buf = io.StringIO()
    out.write(buf)
    return buf.getvalue()
