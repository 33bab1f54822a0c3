"""Rescore docking poses with a GET / GeoMFormer model: ``get-md rescore-poses``.

The receptor (PDB, mmCIF or PDBQT) is read once and cut to a pocket: the receptor
residues with any atom within ``pocket_radius`` Å of the reference ligand, or,
without a reference, of any atom of any pose (the poses are streamed once to find
it). Every pose becomes a pocket + pose complex; complexes are scored in batches.

* With a **potential** (task ``energy``): the interaction energy
  ``E(complex) - E(pocket) - E(ligand)`` in eV and kcal/mol; ``E(pocket)`` is
  computed once.
* With a **score** model (task ``score``): ``score`` (pK for affinity models).

Outputs: a CSV with one row per input record (pose number, source, name, status,
error, scores, rank and the input's properties such as ``vina_score``); an SDF of the
scored poses with tags ``get_score`` or ``get_interaction_energy`` (eV) and
``get_interaction_energy_kcal_mol``, ``get_rank``, plus the input tags; optionally
a per-residue CSV (``pose``, ``residue``, ``contribution``; the rows of one pose sum
to its score / interaction energy; ``ligand`` holds the ligand's own share) and
PoseBusters validity flags (``pb_valid`` and one ``pb_<check>`` column per check).

A pose that cannot be read or built is reported (record number, reason) in the
``error`` column and the log and skipped; the others are scored. So is a pose whose
coordinates must not be scored (:mod:`~get_md.workflows.geometry_checks`): a coordinate
that is not finite or reaches 1e5 Å, an atom more than 10 Å from the rest of its pose,
two atoms closer than 0.5 Å (within the pose or to a pocket atom), or no atom within
the pocket radius of the pocket. A receptor with such coordinates (an atom of a
residue 10 Å from everything, or two pocket atoms closer than 0.5 Å) is an error
naming the file and the atom, raised before any pose is scored. Runs resume after
an interruption: finished batches are kept in ``OUT.csv.partial`` and the final
files are written atomically at the end.

Example:
    >>> from get_md.workflows.poses import rescore_poses
    >>> df = rescore_poses("rec.pdb", "vina_out.sdf", model="potential.pt",
    ...                    out_csv="rescored.csv", out_sdf="rescored.sdf")  # doctest: +SKIP
    >>> df[["pose", "interaction_energy_kcal_mol", "rank"]].head()       # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from get_md.units import EV_TO_KCAL_MOL

from ._common import (
    ModelRef,
    PathLike,
    ProgressStore,
    WorkflowError,
    add_drop_unsupported_option,
    add_run_options,
    atomic_output,
    auto_batch_size,
    chunked,
    claims_outputs,
    element_check,
    environment_cache,
    fan_out,
    file_fingerprint,
    parallel_batches,
    pocket_radius_for,
    prefetch,
    progress_bar,
    progress_path,
    rank_values,
    resolve_model,
    run_model,
    score_columns,
    screen_pocket,
    set_threads,
    setup_cli_logging,
    write_csv_atomic,
)
from .geometry_checks import (
    MIN_DISTANCE,
    graph_atom_namer,
    multi_atom_block_atoms,
    pose_problem,
    structure_problem,
)

logger = logging.getLogger("get_md.workflows.poses")

SORT_CHOICES = ("score", "energy", "none")
POSEBUSTERS_CONFIGS = ("dock", "dock_fast", "redock", "redock_fast")
#: Columns written by the workflow; input properties with these names get an ``input_`` prefix.
_OWN_COLUMNS = frozenset({
    "pose", "source", "name", "status", "error", "score", "interaction_energy_eV",
    "interaction_energy_kcal_mol", "e_complex_eV", "e_ligand_eV", "e_pocket_eV",
    "n_ligand_atoms", "n_hydrogens_added", "rank",
})
_RECEPTOR_FORMATS = {
    ".pdb": "pdb", ".ent": "pdb", ".cif": "mmcif", ".mmcif": "mmcif", ".bcif": "mmcif",
    ".pdbqt": "pdbqt",
}


# ----------------------------------------------------------------------------- input
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
    try:
        reader(path, segment_id=0, atom_filter=keep_all, check_duplicates=False)
    except Exception:  # noqa: BLE001 - names are a courtesy
        return None
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


def load_reference(path: PathLike):
    """The first record of a ligand file (SDF, MOL2, PDBQT, PDB) as a graph (segment 1)."""
    from get_md.build import iter_poses

    for rec in iter_poses(path, segment_id=1):
        return rec.unwrap(), rec
    raise WorkflowError(f"{path}: reference ligand file holds no record")


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


def count_records(path: PathLike) -> Optional[int]:
    """Number of records of a pose file by a cheap text scan (for progress bars)."""
    from get_md.build import base_suffix, open_text

    ext = base_suffix(path)
    marker = {".sdf": "$$$$", ".sd": "$$$$", ".mol": "$$$$", ".mol2": "@<TRIPOS>MOLECULE",
              ".pdbqt": "MODEL", ".pdb": "MODEL"}.get(ext)
    if marker is None:
        return None
    n = 0
    try:
        with open_text(path) as fh:
            for line in fh:
                if line.startswith(marker):
                    n += 1
    except (OSError, ValueError, EOFError):  # EOFError: truncated .gz; the reader reports it
        return None
    if ext in (".pdbqt", ".pdb"):
        return max(n, 1)
    return n or None


def union_pocket(receptor, poses: PathLike, radius: float, progress: Optional[bool] = None):
    """Receptor blocks with any atom within ``radius`` Å of any atom of any pose.

    Streams the poses once; memory stays bounded (pose coordinates are tested in
    buffers of about 10^5 atoms against receptor atoms not yet selected that lie in the
    buffer's bounding box grown by ``radius``). Equals
    ``select_pocket(receptor, all_pose_coordinates, radius)``.

    Returns:
        (pocket graph, number of records, number of poses read).
    """
    import torch

    from get_md.build import iter_poses
    from get_md.graph import GraphError

    rpos = receptor.positions.to(torch.float64)
    selected = torch.zeros(receptor.num_atoms, dtype=torch.bool)
    buf: list = []
    n_buf = 0
    n_records = n_ok = 0
    first_error = ""

    def flush():
        nonlocal buf, n_buf
        if not buf:
            return
        lig = torch.cat(buf).to(torch.float64)
        lo, hi = lig.min(0).values - radius, lig.max(0).values + radius
        cand = (~selected) & ((rpos >= lo) & (rpos <= hi)).all(dim=1)
        idx = torch.nonzero(cand).flatten()
        step = max(1, (1 << 22) // max(1, lig.shape[0]))
        for s in range(0, idx.numel(), step):
            part = idx[s:s + step]
            d = torch.cdist(rpos[part], lig).min(dim=1).values
            selected[part[d <= radius]] = True
        buf, n_buf = [], 0

    bar = progress_bar(progress, desc="pocket (reading poses)", unit="pose",
                       total=count_records(poses))
    with bar:
        for rec in iter_poses(poses, segment_id=1):
            n_records += 1
            bar.update(1)
            if rec.graph is None:
                first_error = first_error or str(rec.error or "")
                continue
            n_ok += 1
            buf.append(rec.graph.positions)
            n_buf += rec.graph.num_atoms
            if n_buf >= 100_000:
                flush()
        flush()
    if n_ok == 0:
        why = f" (first: {first_error})" if first_error else ""
        raise WorkflowError(f"{poses}: none of the {n_records} record(s) could be read; nothing to "
                            f"score{why}")
    keep = torch.zeros(receptor.num_blocks, dtype=torch.bool)
    keep[receptor.block_ids[selected]] = True
    if not bool(keep.any()):
        raise GraphError(
            f"pocket of {receptor.label()} around the poses of {poses}: no receptor atom within "
            f"{radius} Å of any pose; are receptor and poses in the same frame?"
        )
    return receptor.select_blocks(keep), n_records, n_ok


def _mol_from_graph(graph, name: str):
    """RDKit molecule from a pose graph without bonds in the file (PDBQT / PDB poses):
    elements and coordinates, connectivity from distances."""
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    rw = Chem.RWMol()
    for z in graph.atomic_numbers.tolist():
        rw.AddAtom(Chem.Atom(int(z)))
    conf = Chem.Conformer(graph.num_atoms)
    for i, (x, y, z) in enumerate(graph.positions.tolist()):
        conf.SetAtomPosition(i, Point3D(x, y, z))
    conf.Set3D(True)
    mol = rw.GetMol()
    mol.AddConformer(conf, assignId=True)
    try:
        from rdkit.Chem import rdDetermineBonds

        bonded = Chem.Mol(mol)
        rdDetermineBonds.DetermineConnectivity(bonded)
        # single bonds only: a four-bonded N / three-bonded O is a cation
        for atom in bonded.GetAtoms():
            deg = atom.GetDegree()
            if (atom.GetAtomicNum(), deg) in ((7, 4), (8, 3)):
                atom.SetFormalCharge(1)
        Chem.SanitizeMol(bonded)
        mol = bonded
    except Exception:  # noqa: BLE001 - bonds are a courtesy; keep atoms and coordinates
        logger.debug("%s: no connectivity for the SDF output", name)
    mol.SetProp("_Name", name)
    return mol


def _plain(value: Any) -> Any:
    """JSON-friendly value of an RDKit property."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


# ----------------------------------------------------------------------------- scoring
def _pocket_terms(spec: ModelRef, pocket) -> dict:
    """E(pocket) and its per-block energies (potential models only)."""
    import torch

    from get_md.nn.scatter import scatter_sum

    if not spec.is_potential:
        return {}
    out = run_model(spec, pocket)
    per_block = scatter_sum(out["energies"].to(torch.float64), pocket.block_ids, pocket.num_blocks)
    return {"e_pocket": float(out["energy"][0]), "block_energies": per_block.tolist()}


def _posebusters_flags(mols: list, receptor_pdb: str, config: str, reference_mol=None) -> list[dict]:
    """PoseBusters checks of ``mols`` against the receptor (PDB text): one dict per mol."""
    import tempfile

    from posebusters import PoseBusters

    with tempfile.TemporaryDirectory() as tmp:
        rec = os.path.join(tmp, "receptor.pdb")
        with open(rec, "w") as fh:
            fh.write(receptor_pdb)
        needs_true = config.startswith("redock")
        try:
            df = PoseBusters(config=config).bust(
                mols, [reference_mol] * len(mols) if needs_true else None, rec
            )
        except Exception as e:  # noqa: BLE001 - report, do not lose the scores
            return [{"pb_error": f"{type(e).__name__}: {e}"} for _ in mols]
    rows = []
    for i in range(len(mols)):
        flags = {f"pb_{c}": (None if _isnan(v) else bool(v)) for c, v in df.iloc[i].items()}
        flags = {"pb_valid": all(v is True for v in flags.values()), **flags}
        rows.append(flags)
    return rows


def _isnan(v) -> bool:
    try:
        return v is None or (isinstance(v, float) and math.isnan(v))
    except TypeError:
        return False


def pocket_index(pocket, ligands: Sequence) -> Any:
    """Index of each atom of ``batch_graphs([make_complex(pocket, l) for l in ligands] +
    ligands)`` in the pocket, -1 for ligand atoms: the ``env_index`` with which
    ``GET.forward_in_environment`` reuses the pocket's terms."""
    import torch

    p_idx = torch.arange(pocket.num_atoms)
    parts = [torch.cat([p_idx, torch.full((g.num_atoms,), -1)]) for g in ligands]
    return torch.cat(parts + [torch.full((g.num_atoms,), -1) for g in ligands])


def score_batch(spec: ModelRef, pocket, terms: dict, items: list, opts: dict) -> dict:
    """Score one batch of pose records (runs in the driver or on a Dask worker).

    Args:
        spec: the model.
        pocket: pocket graph (segment 0).
        terms: :func:`_pocket_terms` (potential models).
        items: ``(index, source, name, graph or None, error or None, properties, mol)``.
        opts: ``per_residue``, ``elements``, ``posebusters`` (config or None),
            ``receptor_pdb`` (text), ``reference_mol``.

    Returns:
        ``{"rows": [...], "residues": [[pose, label, value], ...]}``.
    """
    import torch

    from get_md.build import make_complex
    from get_md.graph import GraphError, batch_graphs
    from get_md.nn.scatter import scatter_sum

    check = element_check({"elements": opts.get("elements")})
    from scipy.spatial import cKDTree

    from .geometry_checks import as_array

    pocket_tree = cKDTree(as_array(pocket.positions))  # shared by the poses' checks
    pocket_name = graph_atom_namer(pocket)
    radius = float(opts.get("pocket_radius") or math.inf)
    rows: list[dict] = []
    ok: list[tuple[int, dict, Any, Any]] = []  # (row index, row, complex, ligand)
    mols: dict[int, Any] = {}
    for index, source, name, graph, error, props_in, mol in items:
        row: dict[str, Any] = {"pose": index, "source": source, "name": name, "status": "ok",
                               "error": ""}
        if graph is not None and error is None:
            error = check(graph.atomic_numbers)
            if error is None:  # coordinates that must not be scored (see geometry_checks)
                error = pose_problem(graph.positions, pocket.positions, graph_atom_namer(graph), pocket_name,
                                     radius, pocket_tree)
            if error is not None:
                error = f"{source}: record {index}: {error}"
        if graph is not None and error is None:
            try:
                cplx = make_complex(pocket, graph, name=f"{source}#{index}")
            except GraphError as e:
                error = str(e)
        if error is not None:
            row["status"] = "skipped"
            row["error"] = str(error)
        row["n_ligand_atoms"] = None if graph is None else graph.num_atoms
        row["n_hydrogens_added"] = int(props_in.get("_hydrogens_added", 0))
        rows.append(row)
        if error is None:
            ok.append((len(rows) - 1, row, cplx, graph))
            mols[index] = mol

    residues: list[list] = []
    labels = pocket.block_labels or [f"R{i + 1}" for i in range(pocket.num_blocks)]
    if ok:
        n = len(ok)
        complexes = [c for _, _, c, _ in ok]
        if spec.is_potential:
            ligands = [g for _, _, _, g in ok]
            batch = batch_graphs(complexes + ligands)
            cache = environment_cache(spec, pocket)
            env = None if cache is None else (pocket_index(pocket, ligands), cache)
            out = run_model(spec, batch, env)
            energy = out["energy"].to(torch.float64)
            e_pocket = terms["e_pocket"]
            block_e = None
            if opts.get("per_residue"):
                block_e = scatter_sum(out["energies"].to(torch.float64), batch.block_ids, batch.num_blocks)
            block_start = 0
            for k, (_, row, cplx, _lig) in enumerate(ok):
                e_c, e_l = float(energy[k]), float(energy[n + k])
                e_int = e_c - e_pocket - e_l
                row.update(interaction_energy_eV=e_int, interaction_energy_kcal_mol=e_int * EV_TO_KCAL_MOL,
                           e_complex_eV=e_c, e_ligand_eV=e_l, e_pocket_eV=e_pocket)
                if block_e is not None:
                    be = block_e[block_start:block_start + cplx.num_blocks]
                    nb = pocket.num_blocks
                    for j in range(nb):
                        residues.append([row["pose"], labels[j], float(be[j]) - terms["block_energies"][j]])
                    residues.append([row["pose"], "ligand", float(be[nb:].sum()) - e_l])
                block_start += cplx.num_blocks
        else:
            batch = batch_graphs(complexes)
            out = run_model(spec, batch)
            bs = out.get("block_scores")
            block_start = 0
            for k, (_, row, cplx, _lig) in enumerate(ok):
                row.update(score_columns(out, k))
                if opts.get("per_residue") and bs is not None:
                    b = bs[block_start:block_start + cplx.num_blocks].to(torch.float64)
                    nb = pocket.num_blocks
                    for j in range(nb):
                        residues.append([row["pose"], labels[j], float(b[j])])
                    residues.append([row["pose"], "ligand", float(b[nb:].sum())])
                block_start += cplx.num_blocks

    if opts.get("posebusters"):
        pb_mols = [mols[row["pose"]] if mols[row["pose"]] is not None
                   else _mol_from_graph(lig, row["name"] or str(row["pose"])) for _, row, _c, lig in ok]
        flags = _posebusters_flags(pb_mols, opts["receptor_pdb"], opts["posebusters"],
                                   opts.get("reference_mol")) if pb_mols else []
        for (_, row, _c, _l), f in zip(ok, flags, strict=True):
            row.update(f)

    # input properties last, renamed where they clash with the workflow's columns
    for (_index, _source, _name, _graph, _error, props, _mol), row in zip(items, rows, strict=True):
        for key, value in props.items():
            if key.startswith("_"):
                continue
            col = f"input_{key}" if key in _OWN_COLUMNS or key.startswith("pb_") else key
            row[col] = _plain(value)
    return {"rows": rows, "residues": residues}


def _items(records: Sequence, ligand_hydrogens: str = "no") -> list:
    """Work items of pose records; ``ligand_hydrogens``: "yes" adds missing hydrogens to
    every pose read with bond orders (SDF, MOL2), "missing" to those with none, "no"."""
    out = []
    for rec in records:
        name = str(rec.properties.get("_Name", "") or "")
        graph, mol = _pose_with_hydrogens(rec) if _adds_hydrogens(rec, ligand_hydrogens) else (rec.graph, rec.mol)
        props = dict(rec.properties)
        if graph is not rec.graph:
            props["_hydrogens_added"] = graph.num_atoms - rec.graph.num_atoms
        err = None if rec.error is None else str(rec.error)
        out.append((rec.index, rec.source, name, graph, err, props, mol))
    return out


def _adds_hydrogens(rec, ligand_hydrogens: str) -> bool:
    """Whether a pose record gets hydrogens under ``ligand_hydrogens`` (see :func:`_items`)."""
    from get_md.build.hydrogens import hydrogen_counts

    if ligand_hydrogens == "no" or rec.graph is None or rec.mol is None:
        return False
    return ligand_hydrogens == "yes" or hydrogen_counts(rec.graph)[0] == 0


def _warn_sparse_hydrogens(records: Sequence) -> bool:
    """Warn (and return True) if a pose without bond orders (PDBQT, PDB) has fewer
    hydrogens than a third of its heavy atoms: they cannot be completed here."""
    from get_md.build.hydrogens import hydrogen_counts

    for rec in records:
        if rec.graph is None or rec.mol is not None:
            continue
        n_h, n_heavy = hydrogen_counts(rec.graph)
        if n_h < n_heavy / 3:
            logger.warning("%s: record %d has %d hydrogens for %d heavy atoms (Vina PDBQT poses carry polar "
                           "ones only) and no bond orders to add the rest from; the potential was trained "
                           "with all of them: convert the poses to SDF with hydrogens (e.g. meeko, Open Babel) "
                           "for meaningful energies", rec.source, rec.index, n_h, n_heavy)
            return True
    return False


def _pose_with_hydrogens(rec):
    """(graph, mol) of a pose record with its implicit hydrogens made explicit."""
    from get_md.build import from_rdkit
    from get_md.build.hydrogens import ligand_with_hydrogens

    mol = ligand_with_hydrogens(rec.mol)
    if mol is rec.mol:
        return rec.graph, rec.mol
    graph = from_rdkit(mol, name=f"{rec.source}: record {rec.index}", segment_id=1)
    graph.names = [f"{n} (hydrogens added)" for n in rec.graph.names]
    return graph, mol


# ----------------------------------------------------------------------------- output
def _sdf_value(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6f}"
    return str(value)


def _sdf_record(mol, tags: dict) -> str:
    """One SDF record: the molecule's mol block, its own public properties, then ``tags``."""
    from rdkit import Chem

    try:
        block = Chem.MolToMolBlock(mol)
    except Exception:  # noqa: BLE001 - unsanitized aromatic MOL2 input
        block = Chem.MolToMolBlock(mol, kekulize=False)
    lines = [block.rstrip("\n")]
    props = mol.GetPropsAsDict(includePrivate=False, includeComputed=False)
    merged = {k: _plain(v) for k, v in props.items() if k not in tags}
    merged.update(tags)
    for key, value in merged.items():
        lines.append(f">  <{key}>")
        lines.append(_sdf_value(value))
        lines.append("")
    return "\n".join(lines) + "\n$$$$\n"


def _sdf_record_text(text: str, tags: dict) -> Optional[str]:
    """An input SDF record verbatim up to ``M  END``, its own data items (those not
    replaced by ``tags``), then ``tags``; None if the record has no ``M  END``."""
    from get_md.build.molecule import split_sdf_record

    parts = split_sdf_record(text)
    if parts is None:
        return None
    lines, items = parts
    for key, value in [(k, v) for k, v in items if k not in tags] + [(k, _sdf_value(v)) for k, v in tags.items()]:
        lines += [f">  <{key}>", value, ""]
    return "\n".join(lines) + "\n$$$$\n"


def _pose_tags(row: dict, task: str, pose: int) -> dict[str, Any]:
    tags: dict[str, Any] = {}
    if task == "score":
        tags["get_score"] = row["score"]
        if row.get("score_std") is not None:
            tags["get_score_std"] = row["score_std"]
    else:
        tags["get_interaction_energy"] = row["interaction_energy_eV"]
        tags["get_interaction_energy_kcal_mol"] = row["interaction_energy_kcal_mol"]
    tags["get_rank"] = int(row["rank"])
    tags["get_pose"] = pose
    if "pb_valid" in row and row["pb_valid"] is not None and not _isnan(row["pb_valid"]):
        tags["pb_valid"] = bool(row["pb_valid"])
    return tags


def _scored_records(poses: PathLike, by_pose: dict, task: str) -> Iterator[tuple[int, str]]:
    """``(pose, SDF record text with tags)`` for the poses in ``by_pose``, in file order.

    SDF input is copied record by record as text (the molecule block exactly as given),
    but for records that got hydrogens (column ``n_hydrogens_added``): those, like other
    formats, go through RDKit (SDF, MOL2) or the parsed graph (PDBQT, PDB), so that the
    file holds the structure that was scored."""
    from get_md.build import base_suffix, iter_poses
    from get_md.build.molecule import iter_sdf_texts

    if base_suffix(poses) in (".sdf", ".sd", ".mol"):
        from get_md.build.molecule import parse_record

        for index, text in iter_sdf_texts(poses):
            row = by_pose.get(index)
            if row is None:
                continue
            tags = _pose_tags(row, task, index)
            if _got_hydrogens(row):  # parse again only these records
                rec = parse_record(text, "sdf", str(poses), index, True, False, 1)
                yield index, _sdf_record(_pose_with_hydrogens(rec)[1], tags)
                continue
            record = _sdf_record_text(text, tags)
            if record is not None:
                yield index, record
        return
    for rec in iter_poses(poses, segment_id=1):
        row = by_pose.get(rec.index)
        if row is None or rec.graph is None:
            continue
        mol = _pose_with_hydrogens(rec)[1] if _got_hydrogens(row) else rec.mol
        if mol is None:
            mol = _mol_from_graph(rec.graph, str(rec.properties.get("_Name") or f"{Path(rec.source).name}#{rec.index}"))
            for k, v in rec.properties.items():
                if not k.startswith("_"):
                    mol.SetProp(k, _sdf_value(_plain(v)))
        yield rec.index, _sdf_record(mol, _pose_tags(row, task, rec.index))


def _got_hydrogens(row: dict) -> bool:
    """Whether a result row's pose was scored with hydrogens added (``n_hydrogens_added``)."""
    value = row.get("n_hydrogens_added")
    try:
        return not (value is None or _isnan(value)) and int(value) > 0
    except (TypeError, ValueError):  # pandas' NA
        return False


def write_pose_sdf(poses: PathLike, table, out_sdf: PathLike, task: str) -> int:
    """Write the scored poses of ``table`` (in its row order) to ``out_sdf`` atomically,
    as they were scored (hydrogens added where ``n_hydrogens_added`` says so).

    The input file is streamed again; records are written to a scratch file first and
    then copied in the table's order, so memory does not grow with the number of poses.
    Returns the number of records written.
    """
    import tempfile

    wanted = table[table["status"] == "ok"]
    order = [int(p) for p in wanted["pose"]]
    if not order:
        with atomic_output(out_sdf):
            pass
        return 0
    by_pose = {int(r["pose"]): r for r in wanted.to_dict("records")}
    offsets: dict[int, tuple[int, int]] = {}
    out_sdf = Path(out_sdf)
    with tempfile.TemporaryFile(mode="w+b", dir=out_sdf.parent if out_sdf.parent.exists() else None) as scratch:
        for index, record in _scored_records(poses, by_pose, task):
            data = record.encode()
            offsets[index] = (scratch.tell(), len(data))
            scratch.write(data)
        with atomic_output(out_sdf, mode="wb") as fh:
            for pose in order:
                if pose not in offsets:
                    continue
                start, size = offsets[pose]
                scratch.seek(start)
                fh.write(scratch.read(size))
    return len(offsets)


def _finalize(store: ProgressStore, spec: ModelRef, sort: str, posebusters: bool):
    import pandas as pd

    rows: list[dict] = []
    residues: list[list] = []
    for key in sorted(store.batches):
        rows.extend(store.batches[key]["rows"])
        residues.extend(store.batches[key].get("residues", []))
    rows.sort(key=lambda r: r["pose"])
    value_col = "score" if spec.task == "score" else "interaction_energy_eV"
    values = [r.get(value_col) if r["status"] == "ok" else None for r in rows]
    values = [None if v is None else float(v) for v in values]
    ranks = rank_values(values, higher_is_better=spec.task == "score")
    for r, rank in zip(rows, ranks, strict=True):
        r["rank"] = rank
    if sort != "none":
        rows.sort(key=lambda r: (r["rank"] is None, r["rank"] if r["rank"] is not None else 0, r["pose"]))
    base = ["pose", "source", "name", "status", "error"]
    if spec.task == "score":
        base += ["score"] + (["score_std"] if any("score_std" in r for r in rows) else [])
    else:
        base += ["interaction_energy_eV", "interaction_energy_kcal_mol", "e_complex_eV",
                 "e_ligand_eV", "e_pocket_eV"]
    base += ["rank", "n_ligand_atoms", "n_hydrogens_added"]
    extra: list[str] = []
    for r in rows:
        for k in r:
            if k not in base and k not in extra:
                extra.append(k)
    pb = [c for c in extra if c.startswith("pb_")]
    inputs = [c for c in extra if not c.startswith("pb_")]
    table = pd.DataFrame(rows, columns=base + pb + inputs)
    table["rank"] = table["rank"].astype("Int64")
    table["n_ligand_atoms"] = table["n_ligand_atoms"].astype("Int64")
    table["n_hydrogens_added"] = table["n_hydrogens_added"].astype("Int64")
    per_res = None
    if residues:
        order = {int(p): i for i, p in enumerate(table["pose"])}
        res_df = pd.DataFrame(residues, columns=["pose", "residue", "contribution"])
        res_df["_order"] = res_df["pose"].map(order)
        res_df = res_df.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)
        if spec.is_potential:
            res_df = res_df.rename(columns={"contribution": "contribution_eV"})
            res_df["contribution_kcal_mol"] = res_df["contribution_eV"] * EV_TO_KCAL_MOL
        per_res = res_df
    return table, per_res


# ----------------------------------------------------------------------------- API
def _residues_path(out_csv: Optional[PathLike], out_residues: Optional[PathLike],
                   per_residue: bool) -> Optional[Path]:
    """The per-residue table: ``out_residues``, else ``<out_csv stem>.residues.csv`` with
    ``per_residue``, else None."""
    if not per_residue:
        return None
    if out_residues is not None:
        return Path(out_residues)
    if out_csv is None:
        return None
    p = Path(out_csv)
    return p.with_name(p.name[: -len(p.suffix)] + ".residues.csv" if p.suffix else p.name + ".residues.csv")


@claims_outputs(lambda a: {"--out-csv": a["out_csv"], "--out-sdf": a["out_sdf"],
                           "--out-residues": _residues_path(a["out_csv"], a["out_residues"], a["per_residue"])})
def rescore_poses(
    receptor: PathLike,
    poses: PathLike,
    model: Optional[PathLike] = None,
    *,
    reference: Optional[PathLike] = None,
    pocket_radius: Optional[float] = None,
    drop_unsupported: bool = False,
    add_hydrogens: str = "auto",
    batch_size: Optional[int] = None,
    device: str = "cpu",
    dtype: Optional[str] = None,
    out_csv: Optional[PathLike] = None,
    out_sdf: Optional[PathLike] = None,
    out_residues: Optional[PathLike] = None,
    sort: str = "score",
    per_residue: bool = False,
    posebusters: Any = False,
    workers: Optional[int] = None,
    scheduler: Optional[str] = None,
    dask_processes: bool = True,
    parallel: Optional[int] = None,
    progress: Optional[bool] = None,
    resume: bool = True,
):
    """Rescore docking poses against a receptor; returns the result table (a DataFrame).

    Args:
        receptor: receptor file (.pdb, .cif, .bcif, .pdbqt; optionally .gz).
        poses: poses (.sdf, .sdf.gz, .mol2, Vina .pdbqt, .pdb).
        model: model file or shipped name; None: the shipped default score model, else
            the default potential.
        reference: ligand file whose first record defines the pocket; None: the union
            of all poses.
        pocket_radius: Å; None: the model file's ``pocket_radius`` (what it was trained
            with), else 10.
        drop_unsupported: leave pocket residues with elements the model does not support
            (metal ions, ...) out of the pocket, with a warning; False: such residues are
            an error that names them.
        add_hydrogens: "auto" (default): with a potential, a receptor without any
            hydrogen gets them (OpenMM Modeller, pH 7) and so does each SDF / MOL2 pose
            without any (RDKit, valences as in the file); "yes": missing hydrogens are
            added to the receptor and to every SDF / MOL2 pose, for any model; "no":
            structures are scored as they are.
        batch_size: poses per model call (default 16 on CPU, fewer when the poses would
            not fill ``parallel`` batches; sized from free memory on CUDA).
        device: "cpu", "cuda", "cuda:1", ...
        dtype: model dtype ("float32", "float64"); None keeps the file's.
        out_csv: result table (default: not written). Its sidecar ``out_csv + ".partial"``
            makes the run resumable (``out_sdf + ".partial"`` when only the SDF is asked).
        out_sdf: scored poses with tags (default: not written).
        out_residues: per-residue table (default ``<out_csv stem>.residues.csv`` when
            ``per_residue`` and ``out_csv`` are given).
        sort: "score" (best first by the model's output: highest score, lowest
            interaction energy), "energy" (by interaction energy; potentials only) or
            "none" (input order). Failed poses come last.
        per_residue: per-residue contributions (in ``df.attrs["per_residue"]``).
        posebusters: False, True ("dock") or a PoseBusters config name
            (dock, dock_fast, redock, redock_fast; redock needs ``reference``).
        workers: run batches on a local Dask cluster with this many workers.
        scheduler: address of an existing Dask scheduler instead.
        dask_processes: local cluster with worker processes (False: threads).
        parallel: batches scored at once in this process (without Dask); None: one per
            torch CPU thread on the CPU, 1 on a GPU (see ``parallel_batches``).
        progress: show a progress bar (None: when stderr is a terminal).
        resume: reuse finished batches of an interrupted run with the same inputs and options.

    Returns:
        pandas.DataFrame in output order, with ``attrs["per_residue"]`` (DataFrame or
        None), ``attrs["model"]``, ``attrs["task"]``, ``attrs["pocket_residues"]``.

    Raises:
        WorkflowError / GraphError (ValueError): unreadable receptor, empty pocket, no
            readable pose, bad options.
    """
    sort = sort or "score"
    if sort not in SORT_CHOICES:
        raise WorkflowError(f"sort must be one of {SORT_CHOICES}, got {sort!r}")
    if workers is not None and scheduler:
        raise WorkflowError("give --workers or --scheduler, not both")
    pb_config = None
    if posebusters:
        pb_config = "dock" if posebusters is True else str(posebusters)
        if pb_config not in POSEBUSTERS_CONFIGS:
            raise WorkflowError(f"PoseBusters config must be one of {POSEBUSTERS_CONFIGS}, got {pb_config!r}")
        if pb_config.startswith("redock") and reference is None:
            raise WorkflowError(f"PoseBusters config {pb_config!r} needs --reference (the true pose)")
        try:
            import posebusters as _pb  # noqa: F401
        except ImportError as e:
            raise WorkflowError(
                "--posebusters needs the optional package posebusters: pip install posebusters"
            ) from e
    for p in (receptor, poses, reference):
        if p is not None and not Path(p).is_file():
            raise WorkflowError(f"{p}: " + ("is a directory, not a file" if Path(p).is_dir()
                                             else "file not found"))

    n_parallel = parallel_batches(device, parallel)
    spec, meta = resolve_model(model, device, dtype, preferred=("score", "energy"))
    pocket_radius = pocket_radius_for(meta, pocket_radius)
    if sort == "energy" and not spec.is_potential:
        raise WorkflowError(f"--sort energy needs a potential (task 'energy'); {spec.path} is a {spec.task} model")

    if add_hydrogens not in HYDROGEN_CHOICES:
        raise WorkflowError(f"add_hydrogens must be one of {HYDROGEN_CHOICES}, got {add_hydrogens!r}")
    rec_file = load_receptor(receptor)
    check_receptor(receptor, rec_file)  # before any pose is read
    rec, unprotonated = receptor_with_hydrogens(receptor, rec_file, add_hydrogens, spec.is_potential)
    ligand_hydrogens = {"yes": "yes", "no": "no"}.get(add_hydrogens, "missing" if spec.is_potential else "no")

    reference_mol = None
    if reference is not None:
        from get_md.build import select_pocket

        ref_graph, ref_rec = load_reference(reference)
        reference_mol = ref_rec.mol if ref_rec.mol is not None else _mol_from_graph(ref_graph, "reference")
        pocket = select_pocket(rec, ref_graph, pocket_radius)
        n_records = count_records(poses)
    else:
        pocket, n_records, _ = union_pocket(rec, poses, pocket_radius, progress)
    logger.info("pocket: %d residues, %d atoms", pocket.num_blocks, pocket.num_atoms)
    pocket, _ = screen_pocket(pocket, meta, drop_unsupported, str(receptor))
    check_receptor(receptor, pocket, "pocket" if rec is rec_file else "pocket with hydrogens added",
                   overlaps=True, names_from_file=rec is rec_file)
    bare = sorted(set(unprotonated) & {":".join(lab.split(":")[:3]) for lab in pocket.block_labels or []})
    if bare:
        logger.warning("%s: pocket residue(s) %s have no hydrogen template in OpenMM and stay without "
                       "hydrogens; protonate them in the file for a meaningful energy", receptor, ", ".join(bare))

    receptor_pdb = None
    if pb_config:
        receptor_pdb = _receptor_pdb_text(receptor)

    fingerprint = {
        "workflow": "rescore-poses",
        "inputs": {"receptor": file_fingerprint(receptor), "poses": file_fingerprint(poses),
                   "reference": file_fingerprint(reference)},
        "model": {"sha256": spec.sha256, "task": spec.task},
        "options": {"pocket_radius": float(pocket_radius), "drop_unsupported": bool(drop_unsupported),
                    "add_hydrogens": add_hydrogens,
                    "per_residue": bool(per_residue),
                    "posebusters": pb_config, "device": spec.device, "dtype": spec.dtype,
                    "batch_size": batch_size if batch_size is not None else "auto"},
    }
    sidecar = progress_path(out_csv if out_csv is not None else out_sdf)
    store = ProgressStore(sidecar, fingerprint, resume=resume)
    store.open()
    if "batch_size" not in store.state:
        store.update_state(batch_size=_pose_batch_size(spec, pocket, poses, batch_size, n_records, n_parallel))
    bs = int(store.state["batch_size"])

    terms: Optional[dict] = None
    opts = {"per_residue": bool(per_residue), "elements": meta.get("elements"),
            "posebusters": pb_config, "receptor_pdb": receptor_pdb, "reference_mol": reference_mol,
            "pocket_radius": float(pocket_radius)}

    from get_md.build import iter_poses

    bar = progress_bar(progress, desc="rescoring poses", unit="pose", total=n_records)
    done_before = sum(len(b["rows"]) for b in store.batches.values())
    bar.update(done_before)

    def tasks():
        nonlocal terms
        warned = False
        # the next batch is parsed while the model scores this one
        for k, records in enumerate(prefetch(chunked(iter_poses(poses, segment_id=1), bs))):
            if store.done(k):
                continue
            if terms is None:
                terms = _pocket_terms(spec, pocket)
            if not warned and ligand_hydrogens != "no":
                warned = _warn_sparse_hydrogens(records)
            yield k, (spec, pocket, terms, _items(records, ligand_hydrogens), opts)

    def on_result(key, result):
        store.commit(key, result)
        bar.update(len(result["rows"]))

    try:
        with bar:
            fan_out(score_batch, tasks(), on_result, workers=workers, scheduler=scheduler,
                    processes=dask_processes, parallel=n_parallel)
    finally:
        store.close()

    table, per_res = _finalize(store, spec, sort, bool(pb_config))
    n_ok = int((table["status"] == "ok").sum())
    for r in table[table["status"] != "ok"].itertuples():
        logger.warning("skipped pose: %s", r.error)
    if out_sdf is not None:
        write_pose_sdf(poses, table, out_sdf, spec.task)
    if per_residue and per_res is not None:
        res_path = _residues_path(out_csv, out_residues, per_residue)
        if res_path is not None:
            write_csv_atomic(per_res, res_path)
    if out_csv is not None:
        write_csv_atomic(table, out_csv)
    store.remove()
    table.attrs["per_residue"] = per_res
    table.attrs["model"] = spec.path
    table.attrs["task"] = spec.task
    table.attrs["pocket_residues"] = list(pocket.block_labels or [])
    table.attrs["n_scored"] = n_ok
    return table


def _pose_batch_size(spec: ModelRef, pocket, poses: PathLike, requested: Optional[int],
                     n_records: Optional[int] = None, parallel: int = 1) -> int:
    """Poses per model call: ``requested``, the CPU default (see ``auto_batch_size``), or
    sized to the GPU's memory."""
    if requested is not None or not spec.device.startswith("cuda"):
        return auto_batch_size(spec, None, requested, 0, n_records, parallel)
    from get_md.build import iter_poses, make_complex
    from get_md.graph import batch_graphs

    lig = next((r.graph for r in iter_poses(poses, segment_id=1) if r.graph is not None), None)
    if lig is None:
        return 1

    def sample(n):
        c = make_complex(pocket, lig)
        return batch_graphs([c] * n + ([lig] * n if spec.is_potential else []))

    per_item = pocket.num_atoms + lig.num_atoms * (2 if spec.is_potential else 1)
    return auto_batch_size(spec, sample, None, per_item)


def _receptor_pdb_text(receptor: PathLike) -> str:
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


# ----------------------------------------------------------------------------- CLI
def _default_out(poses: str, suffix: str) -> str:
    name = Path(poses).name
    for ext in (".gz",):
        if name.endswith(ext):
            name = name[: -len(ext)]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return f"{stem}_rescored{suffix}"


def _cmd(args: argparse.Namespace) -> int:
    setup_cli_logging(args.quiet)
    set_threads(args.threads)
    out_csv = args.out_csv or _default_out(args.poses, ".csv")
    out_sdf = args.out_sdf or _default_out(args.poses, ".sdf")
    table = rescore_poses(
        args.receptor, args.poses, args.model, reference=args.reference,
        pocket_radius=args.pocket_radius, drop_unsupported=args.drop_unsupported,
        add_hydrogens=args.add_hydrogens,
        batch_size=args.batch_size, device=args.device, dtype=args.dtype, out_csv=out_csv, out_sdf=out_sdf, out_residues=args.out_residues,
        sort=args.sort, per_residue=args.per_residue, posebusters=args.posebusters or False,
        workers=args.workers, scheduler=args.scheduler, parallel=args.parallel,
        progress=False if args.quiet else None, resume=not args.no_resume,
    )
    n = len(table)
    ok = int((table["status"] == "ok").sum())
    col = "score" if table.attrs["task"] == "score" else "interaction_energy_kcal_mol"
    msg = f"scored {ok} of {n} pose(s)"
    if ok < n:
        msg += f" ({n - ok} skipped, see the 'error' column)"
    if ok:
        best = table[table["rank"] == 1].iloc[0]
        msg += f"; best: pose {int(best['pose'])} ({col} {float(best[col]):.3f})"
    print(msg)
    print(f"wrote {out_csv}, {out_sdf}")
    if ok == 0:
        print("get-md: error: no pose could be scored", file=sys.stderr)
        return 2
    return 0


def register_cli(sub: Any) -> None:
    """Add the ``rescore-poses`` subcommand to the ``get-md`` parser."""
    p = sub.add_parser(
        "rescore-poses",
        help="rescore docking poses (interaction energy or score) against a receptor",
        description=(
            "Rescore docking poses with a GET / GeoMFormer model. With a potential: "
            "interaction energy E(complex) - E(pocket) - E(ligand) (eV, kcal/mol); with a "
            "score model: score (pK). Writes a CSV (one row per input record; unreadable "
            "poses reported and skipped) and an SDF with get_* tags. Rerunning the same "
            "command after an interruption resumes."
        ),
    )
    p.add_argument("receptor", metavar="RECEPTOR", help="receptor .pdb/.cif/.bcif/.pdbqt")
    p.add_argument("poses", metavar="POSES", help="poses .sdf/.sdf.gz/.mol2/.pdbqt (Vina)")
    p.add_argument("--reference", metavar="LIG", help="ligand defining the pocket (default: all poses)")
    p.add_argument("--model", metavar="NAME_OR_PATH",
                   help="model file or shipped name (default: shipped score model, else potential)")
    p.add_argument("--pocket-radius", type=float, metavar="Å",
                   help="receptor residues within this distance of the ligand(s) (default: the "
                        "model's training radius, 6 for the shipped score model; else 10)")
    add_drop_unsupported_option(p)
    p.add_argument("--add-hydrogens", choices=HYDROGEN_CHOICES, default="auto",
                   help="auto (default): with a potential, add hydrogens to a receptor that has none "
                        "(OpenMM, pH 7) and to SDF/MOL2 poses that have none (RDKit); yes: complete "
                        "missing hydrogens everywhere; no: score the files as they are")
    p.add_argument("--out-csv", metavar="F", help="result table (default POSES_rescored.csv)")
    p.add_argument("--out-sdf", metavar="F", help="scored poses with tags (default POSES_rescored.sdf)")
    p.add_argument("--sort", choices=SORT_CHOICES, default="score",
                   help="order of the outputs: score (best first), energy, none (input order)")
    p.add_argument("--per-residue", action="store_true",
                   help="also write per-residue contributions (OUT.residues.csv)")
    p.add_argument("--out-residues", metavar="F", help="per-residue table (default OUT.residues.csv)")
    p.add_argument("--posebusters", nargs="?", const="dock", choices=POSEBUSTERS_CONFIGS,
                   metavar="CONFIG", help="add PoseBusters validity flags (config: dock [default], "
                   "dock_fast, redock, redock_fast); needs the posebusters package")
    add_run_options(p, "poses")
    p.set_defaults(func=_cmd)
