"""The pocket a complex is scored in, and the elements the model supports.

* radius: :func:`pocket_radius_for` (given, else the model file's training radius;
  score models that cut their own pocket, :func:`model_pocket`, get a margin for
  trajectories);
* selection: :func:`union_pocket` (receptor residues near any pose, poses streamed
  once), :func:`choose_pocket` (residues near the ligand in a trajectory frame);
* elements: :func:`element_check`, :func:`screen_pocket` (residues with elements the
  model does not support: an error, or left out with ``--drop-unsupported``).
"""

from __future__ import annotations

import logging
from typing import Optional

from get_md.errors import WorkflowError
from get_md.units import NM_TO_ANGSTROM

from .options import PathLike
from .parallel import progress_bar
from .pose_records import count_records

logger = logging.getLogger("get_md.workflows")


#: Pocket radius (Å) for models whose metadata does not name one.
DEFAULT_POCKET_RADIUS = 10.0


#: Å added to the pocket of a model that cuts its own (:func:`model_pocket`) where the
#: pocket is chosen once for structures that move (a trajectory's first frame): the
#: model's pocket of a later frame lies inside it while no ligand atom has moved more.
MOVING_LIGAND_MARGIN = 4.0


def model_pocket(meta: dict) -> Optional[float]:
    """The radius (Å) within which a score model keeps receptor residues itself
    (config ``receptor_radius``, see :class:`get_md.models.get.GET`), or None.

    Example:
        >>> model_pocket({"config": {"receptor_radius": 6.0}}), model_pocket({})
        (6.0, None)
    """
    r = (meta.get("config") or {}).get("receptor_radius")
    return float(r) if r else None


def pocket_radius_for(meta: dict, given: Optional[float], margin: float = 0.0) -> float:
    """The pocket radius (Å) to use: ``given``, else the model file's ``pocket_radius``
    (the radius its training complexes were cut with) plus ``margin`` for a model that
    cuts its own pocket (:func:`model_pocket`), else ``DEFAULT_POCKET_RADIUS``.

    A model that cuts its own pocket sees the same residues in any larger pocket; a
    smaller one than its own is allowed with a warning (it then sees fewer residues
    than it was trained with).

    Raises:
        WorkflowError: a radius that is not positive.

    Example:
        >>> pocket_radius_for({"pocket_radius": 6.0}, None), pocket_radius_for({}, 8.0)
        (6.0, 8.0)
        >>> pocket_radius_for({"pocket_radius": 6.0, "config": {"receptor_radius": 6.0}}, None, margin=4.0)
        10.0
    """
    own = model_pocket(meta)
    if given is not None:
        radius = given
    elif own is not None:
        radius = max(own, float(meta.get("pocket_radius") or own)) + margin
    else:
        radius = meta.get("pocket_radius") or DEFAULT_POCKET_RADIUS
    if not radius or not float(radius) > 0:
        raise WorkflowError(f"--pocket-radius must be positive, got {radius}")
    if float(radius) == float("inf"):  # the whole receptor, silently: say so, and how to ask for it
        raise WorkflowError("--pocket-radius must be a finite number of Å, got inf "
                            "(for the whole receptor give a radius larger than it, e.g. 1000)")
    if own is not None and float(radius) < own:
        logger.warning("pocket radius %g Å is smaller than the %g Å pocket the model was trained on: "
                       "it sees fewer residues than it learnt from", float(radius), own)
    return float(radius)


def supported_numbers(meta: dict) -> set[int]:
    """Atomic numbers of the model's ``elements`` metadata (empty: no restriction given)."""
    from get_md import vocab

    return {vocab.atomic_number(e) for e in meta.get("elements") or []}


def element_check(meta: dict):
    """A function ``z_tensor -> error text or None`` from the model's supported elements."""
    elements = meta.get("elements")
    if not elements:
        return lambda z: None
    from get_md import vocab

    allowed = supported_numbers(meta)

    def check(z) -> Optional[str]:
        bad = sorted({int(x) for x in z.tolist()} - allowed)
        if bad:
            names = ", ".join(vocab.ELEMENTS[b] for b in bad)
            return f"element(s) {names} not supported by the model (supports {', '.join(elements)})"
        return None

    return check


def unsupported_blocks(graph, meta: dict):
    """[B] bool: blocks of ``graph`` holding an element the model does not list in its
    ``elements`` metadata (all false when it lists none)."""
    import torch

    from get_md.nn.scatter import scatter_sum

    if not meta.get("elements"):
        return torch.zeros(graph.num_blocks, dtype=torch.bool)
    allowed = torch.tensor(sorted(supported_numbers(meta)))
    bad_atom = ~torch.isin(graph.atomic_numbers.cpu(), allowed)
    return scatter_sum(bad_atom.long(), graph.block_ids.cpu(), graph.num_blocks) > 0


def resolve_drop_unsupported(drop: Optional[bool], meta: dict) -> bool:
    """Whether pocket residues of elements the model does not support are left out:
    ``drop`` as given, and for None (the workflows' default) yes for a score model (it
    was not trained with those elements: the Mg²⁺ of a kinase pocket, for one) and no
    for a potential (an interaction energy without the ion's share misleads).

    Example:
        >>> resolve_drop_unsupported(None, {"task": "score"}), resolve_drop_unsupported(None, {"task": "energy"})
        (True, False)
    """
    return bool(drop) if drop is not None else meta.get("task") == "score"


def screen_pocket(pocket, meta: dict, drop: Optional[bool], where: str, blocks=None):
    """The pocket without residues of elements the model does not support, or an error.

    ``blocks``: [B] bool, the pocket's blocks among ``pocket``'s (default: all). Such
    residues (metal ions, ...) are an error naming them unless ``drop``
    (:func:`resolve_drop_unsupported`: None drops them for a score model); then they are
    left out of the pocket, with a warning, and the mask of blocks kept is returned
    with the pocket: ``(pocket, keep)``. ``where`` names the input in messages.

    Example:
        >>> pocket, keep = screen_pocket(pocket, meta, drop=True, where="rec.pdb")  # doctest: +SKIP
    """
    import torch

    bad = unsupported_blocks(pocket, meta)
    if blocks is not None:
        bad = bad & blocks.cpu()
    if not bool(bad.any()):
        return pocket, torch.ones(pocket.num_blocks, dtype=torch.bool)
    from get_md import vocab

    labels = pocket.block_labels or [f"block {i + 1}" for i in range(pocket.num_blocks)]
    names = [labels[i] for i in torch.nonzero(bad).flatten().tolist()]
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    elems = sorted({int(z) for z in pocket.atomic_numbers[bad.to(pocket.device)[pocket.block_ids]].tolist()}
                   - supported_numbers(meta))
    text = (f"{where}: pocket residue(s) {shown} hold element(s) "
            f"{', '.join(vocab.ELEMENTS[z] for z in elems)} that the model does not support "
            f"(it supports {', '.join(meta['elements'])})")
    if not resolve_drop_unsupported(drop, meta):
        raise WorkflowError(text + "; remove them from the receptor, or pass --drop-unsupported "
                            "(drop_unsupported=True) to leave them out of the pocket")
    why = "--drop-unsupported" if drop else "a score model scores the pocket without them"
    logger.warning("%s: left out of the pocket (%s)", text, why)
    keep = ~bad
    if not bool(keep.any()) or (blocks is not None and not bool((keep & blocks.cpu()).any())):
        raise WorkflowError(f"{where}: no pocket residue left after dropping {shown}")
    return pocket.select_blocks(keep.to(pocket.device)), keep


def union_pocket(receptor, poses: PathLike, radius: float, progress: Optional[bool] = None,
                 include=None, keep_atoms: int = 0):
    """Receptor blocks with any atom within ``radius`` Å of any atom of any pose (or of
    ``include``, further [M, 3] coordinates in Å, e.g. a reference ligand's).

    Streams the poses once; memory stays bounded (pose coordinates are tested in
    buffers of about 10^5 atoms against receptor atoms not yet selected that lie in the
    buffer's bounding box grown by ``radius``). Equals
    ``select_pocket(receptor, all_pose_coordinates, radius)``.

    ``keep_atoms`` > 0 keeps the parsed records (``iter_poses(poses, segment_id=1)``) in
    memory while the file holds at most that many atoms, so that the caller scores them
    without parsing the file a second time; a larger file is streamed as before.

    Returns:
        (pocket graph, number of records, number of poses read, the records or None).
    """
    import torch
    from scipy.spatial import cKDTree

    from get_md.build import iter_poses
    from get_md.graph import GraphError

    rpos = receptor.positions.to(torch.float64)
    selected = torch.zeros(receptor.num_atoms, dtype=torch.bool)
    buf: list = [] if include is None else [torch.as_tensor(include).reshape(-1, 3)]
    n_buf = 0
    kept: Optional[list] = [] if keep_atoms > 0 else None
    n_kept_atoms = 0
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
        if idx.numel():  # nearest pose atom of each candidate (a k-d tree: poses overlap, most atoms are far)
            d, _ = cKDTree(lig.numpy()).query(rpos[idx].numpy(), k=1, distance_upper_bound=radius + 1e-6)
            selected[idx[torch.from_numpy(d <= radius)]] = True
        buf, n_buf = [], 0

    bar = progress_bar(progress, desc="pocket (reading poses)", unit="pose",
                       total=count_records(poses))
    with bar:
        for rec in iter_poses(poses, segment_id=1):
            n_records += 1
            bar.update(1)
            if kept is not None:
                n_kept_atoms += 0 if rec.graph is None else rec.graph.num_atoms
                if n_kept_atoms <= keep_atoms:
                    kept.append(rec)
                else:  # too large to hold: the caller reads the file again
                    kept = None
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
    return receptor.select_blocks(keep), n_records, n_ok, kept


def choose_pocket(top, xyz_nm, receptor_idx, ligand_idx, radius: float):
    """Receptor atoms of the residues with any atom within ``radius`` Å of a ligand atom.

    Args:
        top: mdtraj Topology.
        xyz_nm: [n_atoms, 3] coordinates of the frame (nm).
        receptor_idx, ligand_idx: atom indices.
        radius: Å.

    Returns:
        Sorted atom indices (whole residues, restricted to ``receptor_idx``).
    """
    import numpy as np
    import torch

    rec = torch.as_tensor(np.asarray(xyz_nm)[receptor_idx] * NM_TO_ANGSTROM, dtype=torch.float64)
    lig = torch.as_tensor(np.asarray(xyz_nm)[ligand_idx] * NM_TO_ANGSTROM, dtype=torch.float64)
    step = max(1, (1 << 22) // max(1, lig.shape[0]))
    close = torch.zeros(rec.shape[0], dtype=torch.bool)
    for s in range(0, rec.shape[0], step):
        close[s:s + step] = torch.cdist(rec[s:s + step], lig).min(dim=1).values <= radius
    hit = receptor_idx[close.numpy()]
    residues = {top.atom(int(i)).residue.index for i in hit}
    in_rec = np.zeros(top.n_atoms, dtype=bool)
    in_rec[receptor_idx] = True
    atoms = [a.index for r in residues for a in top.residue(r).atoms if in_rec[a.index]]
    return np.array(sorted(atoms), dtype=np.int64)
