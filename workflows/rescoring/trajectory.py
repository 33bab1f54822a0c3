"""Rescore the frames of an MD trajectory with a GET / GeoMFormer model: ``get-md rescore-traj``.

Any format mdtraj reads (DCD, XTC, TRR, NetCDF, HDF5, multi-model PDB, ...) with a
topology file mdtraj reads (PDB, PSF, prmtop, GRO, HDF5...). Frames are read with
``mdtraj.iterload`` in chunks of ``chunk`` frames, only the atoms scored, so the
trajectory is never held in memory whole.

**Pocket.** The receptor residues (``--receptor`` selection) with any atom within
``pocket_radius`` Å of a ligand atom (``--ligand`` selection) are chosen **once, in
the first analysed frame** (frame ``start``), and kept for every frame, so that all
frames are scored on the same set of atoms. A score model that cuts its own pocket
(``receptor_radius``, e.g. ``get-affinity``) then keeps, in each frame, the residues
within that radius of the ligand; its default pocket is 4 Å wider for that. Distances are plain Euclidean: image the
trajectory first so that the complex is whole and not split across the periodic box
(e.g. ``gmx trjconv -pbc mol -center``, ``cpptraj autoimage``, ``mdtraj.Trajectory.image_molecules``).
Graphs are not periodic.

Per frame, with a **potential**: ``E(complex) - E(pocket) - E(ligand)`` in eV and
kcal/mol (the three energies are columns too); with a **score** model: ``score``.
The CSV (``frame``, ``time_ps``, ``status``, ``error``, values) is written at the end,
atomically; rows go to the sidecar ``OUT.csv.partial`` as they are computed (one line
per batch) and a rerun of the same command resumes from it. ``--plot`` draws the
values against time.

**Bad frames.** Before batching, every frame's scored atoms (pocket + ligand,
hydrogens included) are checked (:mod:`~get_md.workflows.geometry_checks`): all
coordinates finite and below 1e5 Å in magnitude, no two atoms closer than 0.5 Å. A
frame that fails is not scored: its row has ``status`` "skipped" and the reason (file,
frame, atom) in ``error``. A frame that cannot be read (a truncated XTC / DCD) is the
last row, "skipped" with the reason; the frames before it are scored.

Frames: ``start``, ``start + stride``, ... below ``stop`` (0-based frame numbers of the
file). ``time_ps`` is the time stored in the file as mdtraj reports it (formats
without times count frames).

Example:
    >>> from get_md.workflows.trajectory import rescore_trajectory
    >>> df = rescore_trajectory("top.pdb", "traj.xtc", model="potential.pt",
    ...                         ligand="resname LIG", stride=10, out_csv="traj.csv",
    ...                         plot="traj.png")                             # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import numbers
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from get_md.errors import WorkflowError
from get_md.units import EV_TO_KCAL_MOL, NM_TO_ANGSTROM

from ..geometry_checks import (
    closest_pair,
    coordinate_problems,
    describe_coordinate,
    ligand_frame_problem,
    linked_groups,
    overlap_text,
    trace_problem,
    units_hint,
)
from .frames import checked_frames, count_frames, load_topology, read_frames, select_atoms
from .model import (
    ModelRef,
    build_environment,
    mark_non_finite,
    resolve_model,
    run_model,
    score_columns,
    structure_energies,
)
from .options import PathLike, accepts_run_options, checks_paths
from .outputs import claims_outputs, write_csv_atomic
from .parallel import auto_batch_size, fan_out, parallel_batches, prefetch, progress_bar
from .plots import plot_scores
from .pocket import (
    MOVING_LIGAND_MARGIN,
    choose_pocket,
    element_check,
    pocket_radius_for,
    resolve_drop_unsupported,
    screen_pocket,
)
from .store import ProgressStore, file_fingerprint, progress_path

if TYPE_CHECKING:  # numpy is imported inside the functions that use it, as elsewhere here
    import numpy as np

logger = logging.getLogger("get_md.workflows.trajectory")


def perceived_chemistry(template, seg: np.ndarray, top, lig_idx: np.ndarray, lig_xyz: np.ndarray, name: str,
                        charge: Optional[int] = None):
    """``template`` with its ligand atoms' chemistry codes (models built with ``ligand_chemistry``),
    bond orders and charges perceived from the topology's ligand bonds (or, without any, the
    first frame's coordinates) and its explicit hydrogens (``perceive_molecule``)."""
    from dataclasses import replace

    import torch
    from rdkit import Chem

    from get_md.build.ligand_chemistry import chemistry_positions, perceive_molecule
    from get_md.graph import GraphError

    where = {int(a): k for k, a in enumerate(lig_idx)}
    bonds = [(where[b[0].index], where[b[1].index]) for b in top.bonds
             if b[0].index in where and b[1].index in where]
    numbers = [top.atom(int(a)).element.atomic_number for a in lig_idx]
    try:
        mol = perceive_molecule(numbers, lig_xyz, bonds, charge=charge, name=name)
    except GraphError as e:
        raise WorkflowError(f"{e}; this score model reads the ligand's chemistry (bond orders, charges): "
                            "rescore the frames' ligands as SDF poses with rescore-poses, or use a model "
                            "without ligand chemistry") from e
    logger.info("%s: ligand chemistry perceived from %s: %s", name,
                "the topology's bonds" if bonds else "the first frame's coordinates",
                Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False)))
    codes = template.atom_positions.clone()
    codes[torch.as_tensor(seg == 1)] = torch.as_tensor(chemistry_positions(mol), device=codes.device)
    return replace(template, atom_positions=codes)


def score_frames(spec: ModelRef, template, lig_mask, frames: list) -> dict:
    """Score one batch of frames (in the driver or on a Dask worker).

    Args:
        spec: the model.
        template: complex graph (pocket segment 0 + ligand segment 1), zero positions.
        lig_mask: [N] bool tensor, ligand atoms of the template.
        frames: ``(frame, time_ps, positions [N, 3] Å as float32 numpy or None, error or
            None)``; frames with an error (see
            :func:`~get_md.workflows.rescoring.frames.checked_frames`) are not scored.

    Returns:
        ``{"rows": [{"frame", "time_ps", "status", "error", ...values}]}`` in frame order;
        ``status`` is "ok", or "skipped" with the reason in ``error``.
    """
    import torch

    from get_md.graph import batch_graphs

    skipped = [{"frame": int(f), "time_ps": float(t), "status": "skipped", "error": str(err)}
               for f, t, _pos, err in frames if err is not None]
    frames = [(f, t, pos) for f, t, pos, err in frames if err is None]
    if not frames:
        return {"rows": skipped}
    complexes, pockets, ligands = [], [], []
    rec_blocks = template.segment_ids == 0
    pocket_t = template.select_blocks(rec_blocks)
    ligand_t = template.select_blocks(~rec_blocks)
    for _frame, _time, pos in frames:
        p = torch.as_tensor(pos).to(template.positions.dtype)
        complexes.append(template.with_positions(p))
        if spec.is_potential:
            pockets.append(pocket_t.with_positions(p[~lig_mask]))
            ligands.append(ligand_t.with_positions(p[lig_mask]))
    n = len(frames)
    shown = ", ".join(str(int(f[0])) for f in frames[:4]) + (", ..." if n > 4 else "")
    records = f"{template.label()} frame(s) {shown}"  # named in a model's error
    pocket_batch = batch_graphs(pockets) if spec.is_potential else None
    cache = build_environment(spec, pocket_batch) if pocket_batch is not None else None
    if cache is not None:
        # the frame's pocket is the environment of its complex: E(pocket) comes with the
        # cache, and the complex reuses the pocket's terms (GET.forward_in_environment)
        n_pocket = pockets[0].num_atoms
        in_pocket = ~lig_mask
        local = torch.cumsum(in_pocket.long(), 0) - 1
        env_index = torch.cat([torch.where(in_pocket, local + k * n_pocket, -1) for k in range(n)]
                              + [torch.full((g.num_atoms,), -1) for g in ligands])
        out = run_model(spec, batch_graphs(complexes + ligands), (env_index, cache), records)
        e_pocket = structure_energies(cache[2], pocket_batch.atom_batch_ids, n)  # cache[2]: atom energies
        e = torch.cat([out["energy"][:n], e_pocket, out["energy"][n:]])
    elif spec.is_potential:
        e = run_model(spec, batch_graphs(complexes + pockets + ligands), records=records)["energy"]
    else:
        out = run_model(spec, batch_graphs(complexes), records=records)
    rows = []
    if spec.is_potential:
        e = e.to(torch.float64)
        for k, (frame, time, _pos) in enumerate(frames):
            e_c, e_p, e_l = float(e[k]), float(e[n + k]), float(e[2 * n + k])
            e_int = e_c - e_p - e_l
            rows.append({"frame": int(frame), "time_ps": float(time), "status": "ok", "error": "",
                         "interaction_energy_eV": e_int,
                         "interaction_energy_kcal_mol": e_int * EV_TO_KCAL_MOL,
                         "e_complex_eV": e_c, "e_pocket_eV": e_p, "e_ligand_eV": e_l})
    else:
        for k, (frame, time, _pos) in enumerate(frames):
            rows.append({"frame": int(frame), "time_ps": float(time), "status": "ok", "error": "",
                         **score_columns(out, k)})
    for row in rows:
        mark_non_finite(row, spec.path, f"{template.label()} frame {row['frame']}")
    return {"rows": sorted(rows + skipped, key=lambda r: r["frame"])}


@accepts_run_options
@checks_paths(("topology", "trajectory"), ("model", "out_csv", "plot"))
@claims_outputs(lambda a: {"--out-csv": a["out_csv"], "--plot": a["plot"]},
                lambda a: {"TOPOLOGY": a["topology"], "TRAJ": a["trajectory"], "--model": a["model"]})
def rescore_trajectory(
    topology: PathLike,
    trajectory: PathLike,
    model: Optional[PathLike] = None,
    *,
    receptor: str = "protein",
    ligand: str = "resname LIG",
    stride: int = 1,
    start: int = 0,
    stop: Optional[int] = None,
    chunk: int = 100,
    pocket_radius: Optional[float] = None,
    drop_unsupported: Optional[bool] = None,
    batch_size: Optional[int] = None,
    device: str = "cpu",
    dtype: Optional[str] = None,
    out_csv: Optional[PathLike] = None,
    plot: Optional[PathLike] = None,
    workers: Optional[int] = None,
    scheduler: Optional[str] = None,
    dask_processes: bool = True,
    parallel: Optional[int] = None,
    progress: Optional[bool] = None,
    resume: bool = True,
    ligand_charge: Optional[int] = None,
):
    """Interaction energy (potential) or score of each frame of a trajectory; a DataFrame.

    Args:
        topology: topology file (PDB, PSF, prmtop, GRO, HDF5, ...).
        trajectory: trajectory file (DCD, XTC, TRR, NetCDF, HDF5, multi-model PDB, ...).
        model: model file or shipped name; None: the shipped default score model, else
            the default potential.
        receptor, ligand: mdtraj selections (must not overlap).
        stride, start, stop: frames ``start, start + stride, ...`` below ``stop``.
        chunk: frames read per ``iterload`` step (memory).
        pocket_radius: Å, applied to the first analysed frame (see the module docs); None:
            the model file's ``pocket_radius``, else 10; for a model that cuts its own
            pocket (``receptor_radius``), that radius + 4 Å, so that the model's pocket
            of each frame lies inside while no ligand atom moves more than 4 Å.
        drop_unsupported: leave pocket residues with elements the model does not support
            (metal ions, ...) out of the pocket, with a warning; False: such residues are
            an error that names them; None (default): left out for a score model (it was
            not trained with those elements), an error for a potential (its energy
            would lack their share). Ligand atoms of such elements are always an error.
        batch_size: frames per model call (default 16 on CPU, fewer when the frames would
            not fill ``parallel`` batches; from free memory on CUDA).
        device, dtype: where and in which precision the model runs.
        out_csv: result table; ``out_csv + ".partial"`` makes the run resumable.
        plot: PNG of the values against time.
        workers / scheduler: fan batches out over a local Dask cluster / an existing one.
        dask_processes: local cluster with worker processes (False: threads).
        parallel: batches scored at once in this process (without Dask); None: one per
            torch CPU thread on the CPU, 1 on a GPU (see ``parallel_batches``).
        progress: progress bar (None: when stderr is a terminal).
        resume: reuse the finished batches of an interrupted run with the same inputs/options.
        ligand_charge: the ligand's net charge, for a score model built with
            ``ligand_chemistry`` (its bond orders are perceived from the topology's bonds and
            hydrogens); None: searched (``perceive_molecule``), with a warning if several fit.
        options: a :class:`~get_md.workflows.rescoring.options.RunOptions` instead of the
            arguments it holds; giving one both ways with another value is an error.

    Returns:
        pandas.DataFrame, one row per frame (``frame``, ``time_ps``, ``status``, ``error``,
        values), with ``attrs["pocket_residues"]``, ``attrs["model"]``, ``attrs["task"]``,
        ``attrs["n_scored"]``. Frames that fail the coordinate checks of
        :mod:`get_md.workflows.geometry_checks` (non-finite or huge coordinates, two
        scored atoms closer than 0.5 Å) and a frame that cannot be read (truncated file;
        the last row then) are not scored: ``status`` "skipped", the reason in ``error``.

    Raises:
        WorkflowError (ValueError): unreadable files, empty or overlapping selections,
            no frame in range, bad options, an output that cannot be written or that
            another run is writing (``OUT.lock``), a bad first frame (the pocket's).
    """
    import numpy as np
    import pandas as pd
    import torch

    for name, value in (("stride", stride), ("start", start), ("stop", stop), ("chunk", chunk)):
        if (value is not None or name != "stop") and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
            raise WorkflowError(f"--{name} must be a whole number, got {value!r}")
    if stride is None or stride < 1:
        raise WorkflowError(f"--stride must be >= 1, got {stride}")
    if start is None or start < 0:
        raise WorkflowError(f"--start must be >= 0, got {start}")
    if stop is not None and stop <= start:
        raise WorkflowError(f"--stop ({stop}) must be greater than --start ({start})")
    if chunk < 1:
        raise WorkflowError(f"--chunk must be >= 1, got {chunk}")
    if workers is not None and scheduler:
        raise WorkflowError("give --workers or --scheduler, not both")
    for p in (topology, trajectory):
        if not Path(p).is_file():
            raise WorkflowError(f"{p}: " + ("is a directory, not a file" if Path(p).is_dir()
                                             else "file not found"))

    n_parallel = parallel_batches(device, parallel)
    spec, meta = resolve_model(model, device, dtype, preferred=("score", "energy"))
    chemistry = bool((meta.get("config") or {}).get("ligand_chemistry"))  # codes perceived from the topology
    pocket_radius = pocket_radius_for(meta, pocket_radius, margin=MOVING_LIGAND_MARGIN)
    top = load_topology(topology)
    rec_idx = select_atoms(top, receptor, "receptor", topology)
    lig_idx = select_atoms(top, ligand, "ligand", topology)
    both = np.intersect1d(rec_idx, lig_idx)
    if both.size:
        a = top.atom(int(both[0]))
        if both.size == rec_idx.size:  # "not (ligand)" would leave no receptor: the ligand is too wide
            whole = f", the whole system of {top.n_atoms}" if lig_idx.size == top.n_atoms else ""
            raise WorkflowError(
                f"ligand selection {ligand!r} holds every atom of the receptor selection {receptor!r} in {topology} "
                f"({lig_idx.size} atoms{whole}); select the ligand alone, e.g. --ligand 'resname LIG'")
        raise WorkflowError(
            f"receptor selection {receptor!r} and ligand selection {ligand!r} overlap in {topology} "
            f"({both.size} atoms, e.g. {a}); make them disjoint, e.g. --receptor 'protein and not ({ligand})'"
        )

    with contextlib.closing(read_frames(trajectory, top, None, start, 1)) as frames_iter:
        first = next(frames_iter, None)
    if first is None:
        raise WorkflowError(f"{trajectory}: no frame at or after --start {start}")
    if first[3] is not None:  # the pocket's frame cannot be read
        raise WorkflowError(first_frame_problem(first[3], topology, trajectory, start))
    if first[1].shape[0] != top.n_atoms:
        raise WorkflowError(f"{trajectory}: {first[1].shape[0]} atoms per frame, topology {topology} has {top.n_atoms}")
    both = np.union1d(rec_idx, lig_idx)
    (bad,) = coordinate_problems(first[1][both] * NM_TO_ANGSTROM)
    if bad >= 0:  # the pocket is chosen from this frame
        atom = top.atom(int(both[bad]))
        raise WorkflowError(
            f"{trajectory}: frame {start}: " + describe_coordinate(
                first[1][both[bad]] * NM_TO_ANGSTROM, f"atom {atom.serial or int(both[bad]) + 1} ({atom})")
            + "; the pocket is chosen from this frame: give --start a good frame"
        )
    first_xyz = first[1][both] * NM_TO_ANGSTROM
    pair = closest_pair(first_xyz)
    if pair is not None and units_hint(first_xyz):  # scaled down: every frame would be skipped
        a, b = (top.atom(int(both[k])) for k in pair[:2])
        raise WorkflowError(
            f"{trajectory}: frame {start} (the pocket's; every frame at this scale would be skipped): "
            + overlap_text(f"atom {a.serial or a.index + 1} ({a})", f"atom {b.serial or b.index + 1} ({b})", pair[2],
                           positions=first_xyz))
    stretched = stretched_ligand_bond(top, first[1], lig_idx, topology_file=topology)
    if stretched is not None:
        raise WorkflowError(f"{trajectory}: frame {start}: {stretched}" + units_hint(first_xyz))
    pocket_idx = choose_pocket(top, first[1], rec_idx, lig_idx, pocket_radius)
    if pocket_idx.size == 0:
        raise WorkflowError(
            f"no receptor atom ({receptor!r}) within {pocket_radius} Å of the ligand ({ligand!r}) in frame "
            f"{start} of {trajectory}; is the trajectory imaged (complex whole)?"
            + units_hint(first_xyz)
        )
    from get_md.build import topology_template
    from get_md.build.hydrogens import hydrogen_counts

    def scored_atoms(pocket_idx):
        """Atom indices (sorted), segment per atom (1: ligand), graph of pocket + ligand and
        the names of its atoms for messages."""
        sel = np.union1d(pocket_idx, lig_idx)
        seg = np.isin(sel, lig_idx).astype(np.int64)
        tpl = topology_template(top, sel, segments=seg, name=str(topology))
        return sel, seg, tpl.graph, tpl.table.identity

    sel, seg, template, atom_name = scored_atoms(pocket_idx)
    _, keep = screen_pocket(template, meta, drop_unsupported, str(topology), blocks=template.segment_ids == 0)
    if not bool(keep.all()):  # rebuild without the dropped pocket residues
        pocket_idx = np.setdiff1d(pocket_idx, sel[~keep[template.block_ids].numpy()])
        sel, seg, template, atom_name = scored_atoms(pocket_idx)
    err = element_check(meta)(template.atomic_numbers)
    if err:
        raise WorkflowError(f"{topology}: ligand ({ligand!r}): {err}")
    trace = trace_problem(template)
    if trace is not None:
        raise WorkflowError(f"{topology}: pocket ({receptor!r}): {trace} The models were trained on all-atom "
                            "receptors: give an all-atom topology and trajectory")
    n_h, n_heavy = hydrogen_counts(template)
    if spec.is_potential and n_h < 0.5 * n_heavy:
        logger.warning("%s: the scored atoms hold %d hydrogens for %d heavy atoms; the potential was trained "
                       "on all-atom structures, so energies of a united-atom or heavy-atom topology mean little",
                       topology, n_h, n_heavy)
    if chemistry:
        template = perceived_chemistry(template, seg, top, lig_idx, first[1][lig_idx] * NM_TO_ANGSTROM,
                                       f"{topology}: ligand ({ligand!r})", ligand_charge)
    lig_mask = torch.as_tensor(seg.astype(bool))
    # topology_template keeps atom order; segments come from the atom order as given
    assert int(template.num_atoms) == sel.size
    pocket_labels = [lab for lab, s in zip(template.block_labels or [], template.segment_ids.tolist(), strict=False)
                     if s == 0]
    logger.info("pocket from frame %d: %d residues, %d atoms; ligand %d atoms",
                start, len(pocket_labels), int(pocket_idx.size), int(lig_idx.size))

    # each frame's ligand: whole as in the first frame, and still in the pocket cut there
    lig_at, pocket_at = np.flatnonzero(seg == 1), np.flatnonzero(seg == 0)
    groups, _ = linked_groups(first[1][sel[lig_at]] * NM_TO_ANGSTROM)
    if groups > 1:
        residues = sorted({f"{top.atom(int(i)).residue}" for i in lig_idx})
        logger.warning("%s: the ligand selection %r holds %d separate pieces in frame %d (residues %s): they are "
                       "scored together as one ligand. Several molecules (select one, e.g. by resid), or one split "
                       "by the periodic boundary (image the trajectory first)?", topology, ligand, groups, start,
                       ", ".join(residues[:5]) + (", ..." if len(residues) > 5 else ""))

    def ligand_check(pos):
        return ligand_frame_problem(pos[lig_at], pos[pocket_at], lambda i: atom_name(int(lig_at[i])),
                                    pocket_radius, groups)

    fingerprint = {
        "workflow": "rescore-traj",
        "inputs": {"topology": file_fingerprint(topology), "trajectory": file_fingerprint(trajectory)},
        "model": {"sha256": spec.sha256, "task": spec.task},
        "options": {"receptor": receptor, "ligand": ligand, "stride": int(stride), "start": int(start),
                    "stop": stop, "pocket_radius": float(pocket_radius),
                    "drop_unsupported": resolve_drop_unsupported(drop_unsupported, meta), "device": spec.device,
                    "dtype": spec.dtype, "batch_size": batch_size if batch_size is not None else "auto"},
    }
    if chemistry:  # the codes depend on it
        fingerprint["options"]["ligand_charge"] = ligand_charge
    store = ProgressStore(progress_path(out_csv), fingerprint, resume=resume)
    store.open()
    n_total = count_frames(trajectory, start, stop, stride)
    if "batch_size" not in store.state:
        from get_md.graph import batch_graphs

        def sample(n):
            pos = torch.as_tensor(first[1][sel] * NM_TO_ANGSTROM)
            return score_input(template, lig_mask, pos, n, spec.is_potential, batch_graphs)

        per_item = template.num_atoms * (2 if spec.is_potential else 1)
        store.update_state(batch_size=auto_batch_size(spec, sample, batch_size, per_item, n_total, n_parallel))
    bs = int(store.state["batch_size"])

    bar = progress_bar(progress, desc="rescoring frames", unit="frame", total=n_total)
    bar.update(sum(len(b["rows"]) for b in store.batches.values()))

    def tasks():
        buf: list = []
        k = 0
        # frames are read and checked ahead while the model scores the previous batch
        frames = checked_frames(read_frames(trajectory, top, sel, start, chunk), trajectory, start, stop, stride,
                                 atom_name, ligand_check)
        for item in prefetch(frames, depth=2 * bs):
            buf.append(item)
            if len(buf) == bs:
                if not store.done(k):
                    yield k, (spec, template, lig_mask, buf)
                buf, k = [], k + 1
        if buf and not store.done(k):
            yield k, (spec, template, lig_mask, buf)

    def on_result(key, result):
        store.commit(key, result)
        bar.update(len(result["rows"]))

    try:
        with bar:
            fan_out(score_frames, tasks(), on_result, workers=workers, scheduler=scheduler,
                    processes=dask_processes, parallel=n_parallel)
    finally:
        store.close()

    rows = [r for key in sorted(store.batches) for r in store.batches[key]["rows"]]
    rows.sort(key=lambda r: r["frame"])
    for r in rows:  # rows of a progress file written before the check, too
        mark_non_finite(r, spec.path, f"{trajectory}: frame {r['frame']}")
    if not rows:
        raise WorkflowError(f"{trajectory}: no frame selected (start {start}, stop {stop}, stride {stride})")
    columns = ["frame", "time_ps", "status", "error"]
    if spec.task == "score":
        columns += ["score"] + [c for c in ("score_std", "pose_score") if any(c in r for r in rows)]
    else:
        columns += ["interaction_energy_eV", "interaction_energy_kcal_mol", "e_complex_eV", "e_pocket_eV",
                    "e_ligand_eV"]
    df = pd.DataFrame(rows, columns=columns)
    ok = df["status"] == "ok"
    bad = df.loc[~ok, "error"].tolist()
    for reason in bad[:10]:
        logger.warning("skipped frame: %s", reason)
    if len(bad) > 10:
        logger.warning("... and %d more skipped frame(s); see the 'error' column", len(bad) - 10)
    column = "score" if spec.task == "score" else "interaction_energy_kcal_mol"
    if plot is not None:
        if ok.any():
            plot_scores(df[ok], plot, column, title=f"{Path(trajectory).name} — {Path(spec.path).name}")
        else:
            logger.warning("%s: no frame scored; no plot", plot)
    if out_csv is not None:
        write_csv_atomic(df, out_csv)
    store.remove()
    df.attrs["pocket_residues"] = pocket_labels
    df.attrs["model"] = spec.path
    df.attrs["task"] = spec.task
    df.attrs["n_scored"] = int(ok.sum())
    return df


def first_frame_problem(reason: str, topology: PathLike, trajectory: PathLike, start: int) -> str:
    """The message for a first analysed frame that cannot be read: ``--start`` past the
    end, or a topology and trajectory with different atom counts, said as such (mdtraj
    reports both as a damaged frame); else ``reason``."""
    import re

    n = count_frames(trajectory, 0, None, 1)
    if n is not None and start >= n:
        return f"--start {start} is past the end of {trajectory} ({n} frame(s))"
    m = re.search(r"shape \(Any, (\d+), 3\)\. You supplied\s+\(\d+, (\d+), 3\)", reason)
    if m:
        return (f"topology {topology} has {m.group(1)} atoms but {trajectory} has {m.group(2)} per frame: "
                "they do not belong together")
    return reason


#: Å: no bond of a ligand (at most C-I, 2.14 Å) is this long in a frame that matches its topology
MAX_BOND = 2.6


#: Å: ligand atoms this close in the topology's own coordinates are bonded (or 1-3 partners
#: of a hydrogen), so no frame may pull them :data:`MAX_BOND` apart
NEAR_IN_TOPOLOGY = 1.95


def topology_coordinates(topology: PathLike):
    """The coordinates [N, 3] nm a topology file carries (PDB, GRO, ...), or None (PSF, prmtop)."""
    import mdtraj as md

    try:
        return md.load_frame(str(topology), 0).xyz[0]
    except Exception:  # noqa: BLE001 - a topology without coordinates: nothing to compare
        return None


def ligand_bonds(top, lig_idx):
    """[n, 2] atom indices of the topology's bonds (CONECT records or templates) within the ligand."""
    import numpy as np

    inside = np.zeros(top.n_atoms, dtype=bool)
    inside[lig_idx] = True
    return np.array([[a.index, b.index] for a, b in top.bonds if inside[a.index] and inside[b.index]],
                    dtype=np.int64).reshape(-1, 2)


def stretched_ligand_bond(top, xyz_nm, lig_idx, topology_file: Optional[PathLike] = None) -> Optional[str]:
    """Why the ligand of frame ``xyz_nm`` [N, 3] does not fit the topology, or None: a bond
    of the topology (CONECT records or templates) between two ligand atoms longer than
    :data:`MAX_BOND` means the trajectory's atoms are not in the topology's order (or the
    ligand is split by the periodic boundary). A topology without bonds for the ligand is
    checked on the pairs of ligand atoms closer than :data:`NEAR_IN_TOPOLOGY` in the
    coordinates ``topology_file`` carries (read only then), where it has any."""
    import numpy as np

    bonds = ligand_bonds(top, lig_idx)
    how = "bonded in the topology"
    topology_xyz_nm = None
    if bonds.size == 0 and topology_file is not None and len(lig_idx) > 1:
        topology_xyz_nm = topology_coordinates(topology_file)
    if topology_xyz_nm is not None:
        from scipy.spatial import cKDTree

        ref = np.asarray(topology_xyz_nm)[lig_idx] * NM_TO_ANGSTROM
        pairs = cKDTree(ref).query_pairs(NEAR_IN_TOPOLOGY, output_type="ndarray")
        bonds = np.asarray(lig_idx)[pairs].reshape(-1, 2)
        how = f"within {NEAR_IN_TOPOLOGY:g} Å of each other in the topology's coordinates (it has no ligand bonds)"
    if bonds.size == 0:
        return None
    length = np.linalg.norm(xyz_nm[bonds[:, 0]] - xyz_nm[bonds[:, 1]], axis=1) * NM_TO_ANGSTROM
    k = int(np.argmax(length))
    if length[k] <= MAX_BOND:
        return None
    a, b = top.atom(int(bonds[k, 0])), top.atom(int(bonds[k, 1]))
    return (f"ligand atoms {a} and {b}, {how}, are {length[k]:.3g} Å apart: the trajectory's "
            f"atom order does not match the topology's, or the ligand is split by the periodic boundary "
            f"(image whole molecules, e.g. gmx trjconv -pbc mol)")


def score_input(template, lig_mask, pos, n: int, potential: bool, batch_graphs):
    """A batch of ``n`` copies of one frame as the model sees it (for memory probing)."""
    g = template.with_positions(pos.to(template.positions.dtype))
    graphs = [g] * n
    if potential:
        rec = template.segment_ids == 0
        graphs += [template.select_blocks(rec).with_positions(g.positions[~lig_mask])] * n
        graphs += [template.select_blocks(~rec).with_positions(g.positions[lig_mask])] * n
    return batch_graphs(graphs)
