"""Rescore docking poses with a GET / GeoMFormer model: ``get-md rescore-poses``.

The receptor (PDB, mmCIF or PDBQT) is read once and cut to a pocket: the receptor
residues with any atom within ``pocket_radius`` Å of the reference ligand, or,
without a reference, of any atom of any pose (the poses are streamed once to find
it). A score model that cuts each pose's own pocket (``receptor_radius`` in its
config, e.g. ``get-affinity``) gets the union of the poses' pockets, with the
reference's when one is given, so that every pose is scored in the pocket the model
was trained with. Every pose becomes a pocket + pose complex; complexes are scored in
batches.

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
two atoms closer than 0.5 Å (within the pose or to a pocket atom; to a pocket atom,
heavy atoms only for a model that drops hydrogens, such as ``get-affinity``), or no
atom within the pocket radius of the pocket. A receptor with such coordinates (an atom of a
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

import itertools
import logging
import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence

from get_md.errors import WorkflowError
from get_md.units import EV_TO_KCAL_MOL

from ..geometry_checks import graph_atom_namer, pose_problem, trace_problem
from .ligands import hill_formula
from .model import (
    ModelRef,
    environment_cache,
    mark_non_finite,
    resolve_model,
    run_model,
    score_columns,
)
from .options import PathLike, accepts_run_options, checks_paths
from .outputs import claims_outputs, write_csv_atomic
from .parallel import auto_batch_size, chunked, fan_out, parallel_batches, prefetch, progress_bar
from .plots import plot_pose_scores
from .pocket import (
    element_check,
    model_pocket,
    pocket_radius_for,
    resolve_drop_unsupported,
    screen_pocket,
    union_pocket,
)
from .pose_records import (
    count_records,
    is_nan,
    mol_from_graph,
    plain_value,
    pose_items,
    warn_fragments,
    warn_sparse_hydrogens,
)
from .receptor import (
    HYDROGEN_CHOICES,
    OCCUPIED_CHECK_POSES,
    check_receptor,
    check_site_free,
    load_receptor,
    load_reference,
    receptor_pdb_text,
    receptor_with_cofactors,
    receptor_with_hydrogens,
    warn_if_no_polymer,
)
from .sdf_output import write_pose_sdf
from .store import ProgressStore, file_fingerprint, progress_path

logger = logging.getLogger("get_md.workflows.poses")


SORT_CHOICES = ("score", "pose", "energy", "none")
#: pose files of up to this many atoms (about 2,000 poses with hydrogens) are parsed once:
#: the pocket pass keeps the records for scoring (1.4 kB an atom with the RDKit molecule,
#: measured on Schrödinger's ligand SDFs: ~140 MB at the limit); larger ones are read twice
KEEP_POSE_ATOMS = 100_000
POSEBUSTERS_CONFIGS = ("dock", "dock_fast", "redock", "redock_fast")
#: Columns written by the workflow; input properties with these names get an ``input_`` prefix.
OWN_COLUMNS = frozenset({
    "pose", "source", "name", "status", "error", "score", "interaction_energy_eV",
    "interaction_energy_kcal_mol", "e_complex_eV", "e_ligand_eV", "e_pocket_eV",
    "n_ligand_atoms", "n_hydrogens_added", "ligand_formula", "rank", "score_std", "pose_score",
})


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
        flags = {f"pb_{c}": (None if is_nan(v) else bool(v)) for c, v in df.iloc[i].items()}
        flags = {"pb_valid": all(v is True for v in flags.values()), **flags}
        rows.append(flags)
    return rows


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
            ``receptor_pdb`` (text), ``reference_mol``, ``pocket_radius``,
            ``heavy_atoms_only`` (the model drops hydrogens: the ligand-pocket checks
            take heavy atoms only).

    Returns:
        ``{"rows": [...], "residues": [[pose, label, value], ...]}``.
    """
    import torch

    from get_md.build import make_complex
    from get_md.graph import GraphError, batch_graphs
    from get_md.nn.scatter import scatter_sum

    check = element_check({"elements": opts.get("elements")})
    from scipy.spatial import cKDTree

    from ..geometry_checks import as_array

    # The ligand-pocket checks take the atoms the model reads: heavy atoms only for a
    # model that drops hydrogens (see geometry_checks.pose_problem).
    heavy_only = bool(opts.get("heavy_atoms_only"))
    pocket_read = as_array(pocket.atomic_numbers) != 1 if heavy_only else None
    pocket_xyz = as_array(pocket.positions)
    pocket_tree = cKDTree(pocket_xyz if pocket_read is None else pocket_xyz[pocket_read])  # shared by the poses
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
                ligand_read = as_array(graph.atomic_numbers) != 1 if heavy_only else None
                error = pose_problem(graph.positions, pocket.positions, graph_atom_namer(graph), pocket_name,
                                     radius, pocket_tree, ligand_read=ligand_read, pocket_read=pocket_read,
                                     interaction_cutoff=opts.get("interaction_cutoff"))
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
        row["ligand_formula"] = None if graph is None else hill_formula(as_array(graph.atomic_numbers))
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

    for _, row, _c, _l in ok:
        mark_non_finite(row, spec.path, f"{row['source']}: record {row['pose']}")

    if opts.get("posebusters"):
        pb_mols = [mols[row["pose"]] if mols[row["pose"]] is not None
                   else mol_from_graph(lig, row["name"] or str(row["pose"])) for _, row, _c, lig in ok]
        flags = _posebusters_flags(pb_mols, opts["receptor_pdb"], opts["posebusters"],
                                   opts.get("reference_mol")) if pb_mols else []
        for (_, row, _c, _l), f in zip(ok, flags, strict=True):
            row.update(f)

    # input properties last, renamed where they clash with the workflow's columns
    for (_index, _source, _name, _graph, _error, props, _mol), row in zip(items, rows, strict=True):
        for key, value in props.items():
            if key.startswith("_"):
                continue
            col = f"input_{key}" if key in OWN_COLUMNS or key.startswith("pb_") else key
            row[col] = plain_value(value)
    return {"rows": rows, "residues": residues}


def interaction_cutoff(spec: ModelRef, meta: dict) -> Optional[float]:
    """Å: a potential's cutoff, beyond which a pose interacts with nothing it sees; None for
    score models (they read the ligand on its own too) and files that record none."""
    cutoff = (meta.get("config") or {}).get("cutoff")
    return float(cutoff) if spec.is_potential and cutoff else None


def rank_values(values: Sequence[float], higher_is_better: bool) -> list[Optional[int]]:
    """1-based ranks (best first, ties by position); None for NaN / None.

    Example:
        >>> rank_values([-1.0, float("nan"), -3.0], higher_is_better=False)
        [2, None, 1]
    """
    ok = [(i, v) for i, v in enumerate(values) if v is not None and not math.isnan(v)]
    ok.sort(key=lambda t: ((-t[1] if higher_is_better else t[1]), t[0]))
    ranks: list[Optional[int]] = [None] * len(values)
    for r, (i, _) in enumerate(ok, 1):
        ranks[i] = r
    return ranks


def _finalize(store: ProgressStore, spec: ModelRef, sort: str, posebusters: bool):
    import pandas as pd

    rows: list[dict] = []
    residues: list[list] = []
    for key in sorted(store.batches):
        rows.extend(store.batches[key]["rows"])
        residues.extend(store.batches[key].get("residues", []))
    rows.sort(key=lambda r: r["pose"])
    for r in rows:  # rows of a progress file written before the check, too
        mark_non_finite(r, spec.path, f"{r['source']}: record {r['pose']}")
    value_col = "score" if spec.task == "score" else "interaction_energy_eV"
    if sort == "pose":
        value_col = "pose_score"
    values = [r.get(value_col) if r["status"] == "ok" else None for r in rows]
    values = [None if v is None else float(v) for v in values]
    ranks = rank_values(values, higher_is_better=spec.task == "score")
    for r, rank in zip(rows, ranks, strict=True):
        r["rank"] = rank
    if sort != "none":
        rows.sort(key=lambda r: (r["rank"] is None, r["rank"] if r["rank"] is not None else 0, r["pose"]))
    base = ["pose", "source", "name", "status", "error"]
    if spec.task == "score":
        base += ["score"] + [c for c in ("score_std", "pose_score") if any(c in r for r in rows)]
    else:
        base += ["interaction_energy_eV", "interaction_energy_kcal_mol", "e_complex_eV",
                 "e_ligand_eV", "e_pocket_eV"]
    base += ["rank", "n_ligand_atoms", "n_hydrogens_added", "ligand_formula"]
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


@accepts_run_options
@checks_paths(("receptor", "poses"), ("model", "reference", "cofactors", "out_csv", "out_sdf", "out_residues",
                                     "plot"))
@claims_outputs(lambda a: {"--out-csv": a["out_csv"], "--out-sdf": a["out_sdf"],
                           "--out-residues": _residues_path(a["out_csv"], a["out_residues"], a["per_residue"]),
                           "--plot": a["plot"]},
                lambda a: {"RECEPTOR": a["receptor"], "POSES": a["poses"], "--reference": a["reference"],
                           "--cofactors": a["cofactors"], "--model": a["model"]})
def rescore_poses(
    receptor: PathLike,
    poses: PathLike,
    model: Optional[PathLike] = None,
    *,
    reference: Optional[PathLike] = None,
    cofactors: Optional[PathLike] = None,
    pocket_radius: Optional[float] = None,
    drop_unsupported: Optional[bool] = None,
    add_hydrogens: str = "auto",
    batch_size: Optional[int] = None,
    device: str = "cpu",
    dtype: Optional[str] = None,
    out_csv: Optional[PathLike] = None,
    out_sdf: Optional[PathLike] = None,
    out_residues: Optional[PathLike] = None,
    plot: Optional[PathLike] = None,
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
            of all poses (and for a model that cuts its own pocket, that union always,
            the reference's pocket added).
        cofactors: file of molecules that belong to the receptor but are not in its
            file (SDF, MOL2, PDB, PDBQT; e.g. the ``cofactor.sdf`` of a prepared
            benchmark): joined to it, one block per atom as a hetero group of a PDB file
            is (:func:`get_md.build.add_cofactors`), before the pocket is cut; hydrogens
            as for the poses. PoseBusters checks see the receptor file only.
        pocket_radius: Å; None: the model file's ``pocket_radius`` (what it was trained
            with), else 10.
        drop_unsupported: leave pocket residues with elements the model does not support
            (metal ions, ...) out of the pocket, with a warning; False: such residues are
            an error that names them; None (default): left out for a score model (it was
            not trained with those elements), an error for a potential (its energy
            would lack their share).
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
        plot: PNG of each scored pose's score (with the members' spread) or interaction
            energy, in input order, one colour per ligand
            (:func:`~get_md.workflows.rescoring.plots.plot_pose_scores`).
        sort: "score" (best first by the model's output: highest score, lowest
            interaction energy), "pose" (highest ``pose_score`` first: the most
            native-like pose; score models with pose members), "energy" (by interaction
            energy; potentials only) or "none" (input order). Failed poses come last;
            ``rank`` follows the same order.
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
        options: a :class:`~get_md.workflows.rescoring.options.RunOptions` instead of the
            arguments it holds (model, pocket_radius, drop_unsupported, batch_size,
            device, dtype, out_csv, workers, scheduler, dask_processes, parallel,
            progress, resume); giving one both ways with another value is an error.

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
    if sort == "pose" and "pose_score" not in (meta.get("outputs") or []):
        raise WorkflowError(f"--sort pose needs a score model with pose members (output pose_score); "
                            f"{spec.path} has none")

    if add_hydrogens not in HYDROGEN_CHOICES:
        raise WorkflowError(f"add_hydrogens must be one of {HYDROGEN_CHOICES}, got {add_hydrogens!r}")
    rec_file = load_receptor(receptor)
    check_receptor(receptor, rec_file)  # before any pose is read
    warn_if_no_polymer(receptor, rec_file)
    rec, unprotonated = receptor_with_hydrogens(receptor, rec_file, add_hydrogens, spec.is_potential)
    protonated = rec is not rec_file
    ligand_hydrogens = {"yes": "yes", "no": "no"}.get(add_hydrogens, "missing" if spec.is_potential else "no")
    if cofactors is not None:
        rec = receptor_with_cofactors(rec, cofactors, ligand_hydrogens)

    reference_mol = ref_graph = None
    if reference is not None:
        from get_md.build import select_pocket

        ref_graph, ref_rec = load_reference(reference)
        reference_mol = ref_rec.mol if ref_rec.mol is not None else mol_from_graph(ref_graph, "reference")
        if model_pocket(meta) is not None:  # the model cuts each pose's pocket: hold them all
            from scipy.spatial import cKDTree

            gap = float(cKDTree(rec.positions.numpy()).query(ref_graph.positions.numpy(), k=1)[0].min())
            if gap > pocket_radius:
                logger.warning("%s: the reference ligand is %.3g Å from the nearest receptor atom (more than the "
                               "%g Å pocket radius): it adds nothing to the pocket; another complex's ligand, or "
                               "other coordinates?", reference, gap, pocket_radius)
            pocket, n_records, _, records = union_pocket(rec, poses, pocket_radius, progress,
                                                          include=ref_graph.positions, keep_atoms=KEEP_POSE_ATOMS)
        else:
            pocket = select_pocket(rec, ref_graph, pocket_radius)
            n_records, records = count_records(poses), None
    else:
        pocket, n_records, _, records = union_pocket(rec, poses, pocket_radius, progress, keep_atoms=KEEP_POSE_ATOMS)
    logger.info("pocket: %d residues, %d atoms", pocket.num_blocks, pocket.num_atoms)
    pocket, _ = screen_pocket(pocket, meta, drop_unsupported, str(receptor))
    check_receptor(receptor, pocket, "pocket with hydrogens added" if protonated else "pocket",
                   overlaps=True, names_from_file=not protonated)
    _check_pocket_contents(receptor, pocket, poses, records, reference, ref_graph)
    bare = sorted(set(unprotonated) & {":".join(lab.split(":")[:3]) for lab in pocket.block_labels or []})
    if bare:
        logger.warning("%s: pocket residue(s) %s have no hydrogen template in OpenMM and stay without "
                       "hydrogens; protonate them in the file for a meaningful energy", receptor, ", ".join(bare))

    receptor_pdb = None
    if pb_config:
        receptor_pdb = receptor_pdb_text(receptor)

    fingerprint = {
        "workflow": "rescore-poses",
        "inputs": {"receptor": file_fingerprint(receptor), "poses": file_fingerprint(poses),
                   "reference": file_fingerprint(reference),
                   **({"cofactors": file_fingerprint(cofactors)} if cofactors is not None else {})},
        "model": {"sha256": spec.sha256, "task": spec.task},
        "options": {"pocket_radius": float(pocket_radius), "drop_unsupported": resolve_drop_unsupported(drop_unsupported, meta),
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
            "pocket_radius": float(pocket_radius),
            "heavy_atoms_only": bool((meta.get("config") or {}).get("heavy_atoms_only")),
            "interaction_cutoff": interaction_cutoff(spec, meta)}

    from get_md.build import iter_poses

    chemistry = bool((meta.get("config") or {}).get("ligand_chemistry"))
    bar = progress_bar(progress, desc="rescoring poses", unit="pose", total=n_records)
    done_before = sum(len(b["rows"]) for b in store.batches.values())
    bar.update(done_before)

    def tasks():
        nonlocal terms
        warned = warned_fragments = False
        # the records the pocket pass kept, or the file parsed again; the next batch is
        # parsed while the model scores this one
        source = iter(records) if records is not None else iter_poses(poses, segment_id=1)
        for k, batch in enumerate(prefetch(chunked(source, bs))):
            if store.done(k):
                continue
            if terms is None:
                terms = _pocket_terms(spec, pocket)
            if not warned and ligand_hydrogens != "no":
                warned = warn_sparse_hydrogens(batch)
            if not warned_fragments:
                warned_fragments = warn_fragments(batch)
            yield k, (spec, pocket, terms, pose_items(batch, ligand_hydrogens, chemistry), opts)

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
    if plot is not None:
        column = "score" if spec.task == "score" else "interaction_energy_kcal_mol"
        if n_ok:
            plot_pose_scores(table[table["status"] == "ok"], plot, column,
                             title=f"{Path(poses).name} — {Path(spec.path).name}")
        else:
            logger.warning("%s: no pose scored; no plot", plot)
    store.remove()
    table.attrs["per_residue"] = per_res
    table.attrs["model"] = spec.path
    table.attrs["task"] = spec.task
    table.attrs["pocket_residues"] = list(pocket.block_labels or [])
    table.attrs["n_scored"] = n_ok
    return table


def _check_pocket_contents(receptor: PathLike, pocket, poses: PathLike, records: Optional[list],
                           reference: Optional[PathLike], ref_graph) -> None:
    """WorkflowError if the pocket is a Cα / backbone trace
    (:func:`~get_md.workflows.geometry_checks.trace_problem`) or holds a ligand left in the
    receptor file (:func:`~get_md.workflows.rescoring.receptor.check_site_free`, against the
    first poses, from ``records`` where the pocket pass kept them, and the reference)."""
    from get_md.build import iter_poses

    trace = trace_problem(pocket)
    if trace is not None:
        raise WorkflowError(f"{receptor}: pocket: {trace} The models were trained on all-atom receptors: "
                            "give the full structure")
    first = records if records is not None else iter_poses(poses, segment_id=1)
    ligands = [(f"record {r.index} of {poses}", r.graph)
               for r in itertools.islice(first, OCCUPIED_CHECK_POSES) if r.graph is not None]
    if ref_graph is not None:
        ligands.append((f"the reference ligand {reference}", ref_graph))
    check_site_free(receptor, pocket, ligands)


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
