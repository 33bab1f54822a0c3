"""Geometry checks of the structures the rescoring workflows hand to a model.

A model scores whatever coordinates it is given: a NaN, an atom 10^30 Å away, two
atoms 0.001 Å apart or a pose nowhere near the receptor all give numbers that look
like any other. These checks find such structures before they reach the model, so
that the workflows can report them (``status`` / ``error`` columns) instead of
scoring them. They are shared by ``rescore-poses`` and ``rescore-traj``.

Thresholds (Å), chosen so that real structures and MD frames never trip them:

* :data:`MAX_COORDINATE` = 1e5: no coordinate may reach ±10^5 Å (10 µm). MD boxes
  and crystal structures are at most a few thousand Å across; an unwrapped
  trajectory drifts by far less over microseconds. Beyond it a file is corrupt or
  in the wrong units, and float32 no longer resolves 0.01 Å.
* :data:`MIN_DISTANCE` = 0.5: no two atoms (hydrogens included) may be closer. The
  shortest real distances are bonds to hydrogen (0.96 Å for O-H, 0.74 Å in H2);
  bond vibrations in MD stay above 0.8 Å.
* :data:`ISOLATED_DISTANCE` = 10: an atom of a pose, or of a protein / nucleic-acid
  residue, must have another atom within this distance (a bonded neighbour is at
  most 2 Å away). Single-atom residues (ions) and MD frames are not held to it:
  ions and unbinding ligands may move far from everything in a trajectory.

All functions take coordinates in Å (NumPy or torch, any float dtype) and return
None or a one-line reason that names the atoms through a naming function.

Example:
    >>> import numpy as np
    >>> xyz = np.array([[[0.0, 0, 0], [1.0, 0, 0]], [[0.0, 0, 0], [0.001, 0, 0]]])
    >>> frame_problems(xyz, lambda i: f"atom {i + 1}")
    [None, 'atom 1 and atom 2 are 0.001 Å apart (closer than 0.5 Å): overlapping atoms']
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np

#: Largest accepted |coordinate| (Å); a coordinate at or beyond it is rejected.
MAX_COORDINATE = 1.0e5
#: Smallest accepted distance between two atoms (Å).
MIN_DISTANCE = 0.5
#: Largest accepted distance (Å) from an atom of a pose or of a polymer residue to its
#: nearest other atom.
ISOLATED_DISTANCE = 10.0

AtomName = Callable[[int], str]


def as_array(positions: Any) -> np.ndarray:
    """Coordinates as a float64 NumPy array (torch tensors are detached and moved to the CPU)."""
    if hasattr(positions, "detach"):
        positions = positions.detach().to("cpu").double().numpy()
    return np.asarray(positions, dtype=np.float64)


def _xyz(p: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in p.tolist()) + ")"


def coordinate_problems(xyz: Any, max_coordinate: float = MAX_COORDINATE) -> np.ndarray:
    """First bad atom of every frame: [F] int, -1 where all coordinates are finite and
    below ``max_coordinate`` in magnitude. ``xyz``: [F, N, 3] (or [N, 3], one frame)."""
    a = as_array(xyz)
    if a.ndim == 2:
        a = a[None]
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(a) < max_coordinate).all(axis=2)  # NaN compares False: bad
    first = np.argmax(bad, axis=1)
    return np.where(bad.any(axis=1), first, -1)


def describe_coordinate(position: Any, atom: str, max_coordinate: float = MAX_COORDINATE) -> str:
    """Why ``position`` (one atom, [3]) fails :func:`coordinate_problems`."""
    p = as_array(position)
    if not np.isfinite(p).all():
        return f"{atom} has non-finite coordinates {_xyz(p)}"
    return (f"{atom} has a coordinate beyond ±{max_coordinate:g} Å {_xyz(p)}; "
            "corrupt file or wrong units?")


def closest_pair(positions: Any, threshold: float = MIN_DISTANCE) -> Optional[tuple[int, int, float]]:
    """The closest two atoms of ``positions`` [N, 3] if they are closer than
    ``threshold``: ``(i, j, distance)`` with i < j, else None. A k-d tree: O(N log N)."""
    from scipy.spatial import cKDTree

    p = as_array(positions)
    if p.shape[0] < 2:
        return None
    pairs = cKDTree(p).query_pairs(threshold, output_type="ndarray")
    if pairs.shape[0] == 0:
        return None
    d = np.linalg.norm(p[pairs[:, 0]] - p[pairs[:, 1]], axis=1)
    k = int(np.argmin(d))
    i, j = sorted((int(pairs[k, 0]), int(pairs[k, 1])))
    if not d[k] < threshold:  # query_pairs includes the threshold itself
        return None
    return i, j, float(d[k])


#: Å: a structure whose atoms are typically this far from their nearest neighbour is
#: scaled up (bonded atoms are 0.96–1.6 Å apart): Å values read as nm
GROWN_DISTANCE = 5.0


def units_hint(positions: Any) -> str:
    """A clause for a message when the whole structure looks scaled: empty unless most
    atoms have their nearest neighbour closer than :data:`MIN_DISTANCE` (bonded atoms
    are 0.96–1.6 Å apart), as in a file written in nm read as Å (factor 10), or farther
    than :data:`GROWN_DISTANCE`, as in Å values read as nm.

    Example:
        >>> import numpy as np
        >>> units_hint(np.array([[0.0, 0, 0], [0.15, 0, 0], [0.3, 0, 0]]))[:40]
        '; its atoms are 0.15 Å from their neares'
    """
    from scipy.spatial import cKDTree

    p = as_array(positions)
    if p.shape[0] < 3:
        return ""
    d, _ = cKDTree(p).query(p, k=2)
    typical = float(np.median(d[:, 1]))
    if typical < MIN_DISTANCE:
        return (f"; its atoms are {typical:.3g} Å from their nearest neighbour (median) where bonded "
                f"atoms are about 1–1.5 Å apart: coordinates in nm (x10 to Å) or another unit?")
    if typical > GROWN_DISTANCE:
        return (f"; its atoms are {typical:.3g} Å from their nearest neighbour (median) where bonded "
                f"atoms are about 1–1.5 Å apart: coordinates in Å read as nm (x10 too large) or another unit?")
    return ""


def check_overlaps(positions: Any, numbers: Any, who: str = "get_md", error: Optional[type] = None) -> None:
    """``error`` (default GraphError) naming both atoms if two atoms of ``positions`` [N, 3]
    (Å) are closer than :data:`MIN_DISTANCE` (no bond is that short: overlapping atoms, or
    coordinates in nm given as Å); a k-d tree, O(N log N): 0.2 % of a force call of the
    shipped potential at 1,000-5,000 atoms.

    Example:
        >>> check_overlaps([[0.0, 0, 0], [0.1, 0, 0]], [6, 6], "ethane")
        Traceback (most recent call last):
        ...
        get_md.errors.GraphError: ethane: atom 1 (C) and atom 2 (C) are 0.1 Å apart (closer than 0.5 Å): overlapping atoms
    """
    x = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    pair = closest_pair(x)
    if pair is not None:
        from get_md.errors import GraphError

        i, j, d = pair
        z = np.asarray(numbers).reshape(-1)
        raise (error or GraphError)(f"{who}: " + overlap_text(f"atom {i + 1} ({element_symbol(int(z[i]))})",
                                                              f"atom {j + 1} ({element_symbol(int(z[j]))})", d,
                                                              positions=x))


def overlap_text(name_i: str, name_j: str, distance: float, threshold: float = MIN_DISTANCE,
                 positions: Any = None) -> str:
    """Why two atoms are too close; with ``positions`` (the structure) a hint at wrong
    units where the whole structure looks shrunk (:func:`units_hint`)."""
    hint = "" if positions is None else units_hint(positions)
    return (f"{name_i} and {name_j} are {distance:.3g} Å apart (closer than {threshold:g} Å): "
            f"overlapping atoms{hint}")


#: Å: a periodic cell thinner than this along any periodic direction puts every atom this
#: close to its own image (and needs cutoff / width images: 50,000 for a 1e-4 Å cell)
MIN_CELL_WIDTH = 1.0


def cell_widths(cell: Any) -> np.ndarray:
    """The distances (Å) between the opposite faces of a cell (3 x 3, rows the cell
    vectors): how far an atom is from its own image along each vector's face normal; 0 for
    a face of no area.

    Example:
        >>> np.round(cell_widths([[10.0, 0, 0], [5.0, 10.0, 0], [0, 0, 2.0]]), 3).tolist()
        [8.944, 10.0, 2.0]
    """
    c = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    volume = abs(np.linalg.det(c))
    areas = np.array([np.linalg.norm(np.cross(c[(k + 1) % 3], c[(k + 2) % 3])) for k in range(3)])
    return np.divide(volume, areas, out=np.zeros(3), where=areas > 0)


#: Å³: a periodic cell whose |determinant| is below this has no volume (a missing or
#: parallel cell vector: ASE's default cell of zeros)
MIN_CELL_VOLUME = 1e-6
#: The remedy :func:`check_cell` gives for a cell without volume when its caller gives none
CELL_HINT = "give a full cell, or no periodic boundary conditions"


def check_cell(cell: Any, pbc: Any, who: str = "get_md", hint: str = CELL_HINT,
               error: Optional[type] = None) -> None:
    """``error`` (default GraphError) if ``cell`` (3 x 3, rows the cell vectors, Å) of a
    structure periodic along any of ``pbc`` (3 bools) has no volume (a NaN, or a missing
    vector: the message ends with ``hint``, the remedy in the caller's terms) or a periodic
    direction is thinner than :data:`MIN_CELL_WIDTH` (width: the distance between the two
    faces). Nothing is checked for a structure that is not periodic.

    Example:
        >>> check_cell([[10.0, 0, 0], [0, 10.0, 0], [0, 0, 1e-4]], [True, True, True], "ethanol")
        Traceback (most recent call last):
        ...
        get_md.errors.GraphError: ethanol: periodic cell is 0.0001 Å wide along its vector 3 (less than 1 Å: every atom would lie that close to its own image); cell in the wrong units, or a direction that should not be periodic?
        >>> check_cell(np.zeros((3, 3)), [True, True, True], "ethanol", hint="set Lattice=")
        Traceback (most recent call last):
        ...
        get_md.errors.GraphError: ethanol: periodic, but its cell [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]] has no volume (pbc=[True, True, True]); set Lattice=
    """
    from get_md.errors import GraphError

    periodic = np.asarray(pbc, dtype=bool).reshape(3)
    if not periodic.any():
        return
    c = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(c).all() or abs(np.linalg.det(c)) < MIN_CELL_VOLUME:
        raise (error or GraphError)(f"{who}: periodic, but its cell {np.round(c, 4).tolist()} has no volume "
                                    f"(pbc={periodic.tolist()}); {hint}")
    widths = cell_widths(c)
    for k in np.flatnonzero(periodic):
        width = float(widths[k])
        if width < MIN_CELL_WIDTH:
            raise (error or GraphError)(
                f"{who}: periodic cell is {width:.3g} Å wide along its vector {k + 1} (less than "
                f"{MIN_CELL_WIDTH:g} Å: every atom would lie that close to its own image); cell in "
                "the wrong units, or a direction that should not be periodic?")


#: The cause :func:`check_images` names unless its caller gives another (``{cell}``: the
#: cell's lengths)
IMAGES_HINT = ("the cell ({cell} Å) is too small for the structure (a placeholder cell such as a CRYST1 of 1 Å, "
               "or a box in nm?)")


def check_images(positions: Any, numbers: Any, cell: Any, pbc: Any, who: str = "get_md",
                 error: Optional[type] = None, hint: str = IMAGES_HINT) -> None:
    """``error`` (default GraphError) naming both atoms, the image and the cell if an atom of
    ``positions`` [N, 3] (Å) lies closer than :data:`MIN_DISTANCE` to a periodic image of
    another (a cell too small for the structure: a placeholder CRYST1 of 1 Å, or a box in
    nm). Pairs within the cell are :func:`check_overlaps`'s. ``cell``: 3 x 3, rows the cell
    vectors (Å), with a volume and at least 1 Å wide along its periodic vectors
    (:func:`check_cell`); ``pbc``: 3 bools. The models' own neighbour
    list (``get_md.nn.neighbors.radius_graph``): O(N), 20 ms at 3,000 atoms. ``hint``: the
    likely cause, after the image named (``{cell}`` is replaced by the cell's lengths).

    Example:
        >>> check_images([[0.0, 0, 0], [2.8, 0, 0]], [6, 8], [[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0]],
        ...              [True, True, True], "CO")
        Traceback (most recent call last):
        ...
        get_md.errors.GraphError: CO: atom 1 (C) and a periodic image of atom 2 (O) are 0.2 Å apart (closer than 0.5 Å; the image is atom 2 shifted by (-1, 0, 0) cell vectors): the cell (3, 3, 3 Å) is too small for the structure (a placeholder cell such as a CRYST1 of 1 Å, or a box in nm?)
    """
    import torch

    from get_md.nn.neighbors import radius_graph

    x = torch.as_tensor(np.asarray(positions, dtype=np.float64).reshape(-1, 3))
    c = torch.as_tensor(np.asarray(cell, dtype=np.float64).reshape(1, 3, 3))
    periodic = torch.as_tensor(np.asarray(pbc, dtype=bool).reshape(1, 3))
    center, neighbor, shifts = radius_graph(x, torch.zeros(len(x), dtype=torch.long), MIN_DISTANCE, c, periodic)
    image = (shifts != 0).any(dim=1)
    if not bool(image.any()):
        return
    center, neighbor, shifts = center[image], neighbor[image], shifts[image]
    d = torch.linalg.vector_norm(x[neighbor] - x[center] + shifts @ c[0], dim=1)
    k = int(torch.argmin(d))
    a, b = int(center[k]), int(neighbor[k])
    z = np.asarray(numbers).reshape(-1)
    lengths = np.linalg.norm(c[0].numpy(), axis=1)
    from get_md.errors import GraphError

    raise (error or GraphError)(
        f"{who}: atom {a + 1} ({element_symbol(int(z[a]))}) and a periodic image of atom {b + 1} "
        f"({element_symbol(int(z[b]))}) are {float(d[k]):.3g} Å apart (closer than {MIN_DISTANCE:g} Å; the image "
        f"is atom {b + 1} shifted by ({', '.join(str(int(v)) for v in shifts[k].tolist())}) cell vectors): "
        + hint.format(cell=", ".join(f"{v:.4g}" for v in lengths)))


def frame_problems(
    xyz: Any,
    name: AtomName,
    min_distance: float = MIN_DISTANCE,
    max_coordinate: float = MAX_COORDINATE,
) -> list[Optional[str]]:
    """Per frame of ``xyz`` [F, N, 3] (Å): None, or why the frame must not be scored.

    Checks, in order: every coordinate finite and below ``max_coordinate`` in magnitude
    (vectorised over the frames), then no two atoms closer than ``min_distance``
    (a k-d tree per frame). ``name(i)`` names atom ``i`` in the reasons.
    """
    a = as_array(xyz)
    if a.ndim == 2:
        a = a[None]
    first_bad = coordinate_problems(a, max_coordinate)
    out: list[Optional[str]] = []
    for f in range(a.shape[0]):
        if first_bad[f] >= 0:
            i = int(first_bad[f])
            out.append(describe_coordinate(a[f, i], name(i), max_coordinate))
            continue
        pair = closest_pair(a[f], min_distance)
        out.append(None if pair is None else overlap_text(name(pair[0]), name(pair[1]), pair[2], min_distance,
                                                        a[f]))
    return out


def isolated_atom(
    positions: Any,
    candidates: Optional[np.ndarray] = None,
    distance: float = ISOLATED_DISTANCE,
) -> Optional[tuple[int, float]]:
    """``(i, d)``: the first atom (among ``candidates``, a [N] bool mask; default all)
    whose nearest other atom of ``positions`` is farther than ``distance``, and that
    distance; None if there is none (or fewer than two atoms)."""
    from scipy.spatial import cKDTree

    p = as_array(positions)
    if p.shape[0] < 2:
        return None
    d, _ = cKDTree(p).query(p, k=2)
    nearest = d[:, 1]
    far = nearest > distance
    if candidates is not None:
        far &= np.asarray(candidates, dtype=bool)
    if not far.any():
        return None
    i = int(np.flatnonzero(far)[0])
    return i, float(nearest[i])


def structure_problem(
    positions: Any,
    name: AtomName,
    multi_atom_blocks: Optional[np.ndarray] = None,
    min_distance: Optional[float] = MIN_DISTANCE,
    max_coordinate: float = MAX_COORDINATE,
    isolated: float = ISOLATED_DISTANCE,
) -> Optional[str]:
    """Why a fixed structure (a receptor, a pocket) must not be scored, or None.

    Coordinates finite and in range, no atom of ``multi_atom_blocks`` ([N] bool: atoms
    that belong to a residue of several bonded atoms; default none) farther than
    ``isolated`` from every other atom, and no two atoms closer than ``min_distance``
    (None: not checked).
    """
    p = as_array(positions)
    (bad,) = coordinate_problems(p, max_coordinate)
    if bad >= 0:
        return describe_coordinate(p[bad], name(int(bad)), max_coordinate)
    if multi_atom_blocks is not None:
        lone = isolated_atom(p, multi_atom_blocks, isolated)
        if lone is not None:
            return (f"{name(lone[0])} at {_xyz(p[lone[0]])} is {lone[1]:.6g} Å from any other atom "
                    f"(more than {isolated:g} Å from the rest of its residue): misplaced atom?")
    if min_distance is not None:
        pair = closest_pair(p, min_distance)
        if pair is not None:
            return overlap_text(name(pair[0]), name(pair[1]), pair[2], min_distance, p)
    return None


def pose_problem(
    ligand: Any,
    pocket: Any,
    ligand_name: AtomName,
    pocket_name: AtomName,
    pocket_radius: float,
    pocket_tree: Any = None,
    min_distance: float = MIN_DISTANCE,
    max_coordinate: float = MAX_COORDINATE,
    isolated: float = ISOLATED_DISTANCE,
    ligand_read: Optional[np.ndarray] = None,
    pocket_read: Optional[np.ndarray] = None,
    interaction_cutoff: Optional[float] = None,
) -> Optional[str]:
    """Why a pose must not be scored against ``pocket``, or None.

    In order: ligand coordinates finite and in range; no ligand atom farther than
    ``isolated`` from every other ligand atom (poses of two or more atoms); no two
    ligand atoms, nor a ligand and a pocket atom, closer than ``min_distance``; some
    ligand atom within ``pocket_radius`` of a pocket atom (else the pose is not in the
    pocket, and its score means nothing).

    ``ligand_read`` / ``pocket_read`` ([N] bool, default all): the atoms the model
    reads. The two ligand–pocket checks use only those, so that a model that drops
    hydrogens scores a pose whose hydrogen touches a receptor hydrogen (a common
    artefact of protonating a receptor and its ligands separately); the checks of the
    ligand on its own always take every atom. ``pocket_tree``: a
    ``scipy.spatial.cKDTree`` of ``pocket[pocket_read]`` to reuse across poses.
    ``interaction_cutoff`` (Å; a potential's cutoff): a pose with no pocket atom that near
    interacts with nothing the model sees (its interaction energy would be 0).

    Example:
        >>> import numpy as np
        >>> lig = np.array([[0.0, 0, 0], [1.0, 0, 0]]); pocket = np.array([[0.0, 0.3, 0], [4.0, 0, 0]])
        >>> name = lambda i: f"atom {i + 1}"
        >>> pose_problem(lig, pocket, name, name, 6.0)[:44]
        'ligand atom 1 is 0.3 Å from pocket atom 1 (c'
        >>> pose_problem(lig, pocket, name, name, 6.0, pocket_read=np.array([False, True])) is None
        True
    """
    from scipy.spatial import cKDTree

    lig = as_array(ligand)
    (bad,) = coordinate_problems(lig, max_coordinate)
    if bad >= 0:
        return describe_coordinate(lig[bad], ligand_name(int(bad)), max_coordinate)
    lone = isolated_atom(lig, None, isolated)
    if lone is not None:
        return (f"{ligand_name(lone[0])} at {_xyz(lig[lone[0]])} is {lone[1]:.6g} Å from any other atom "
                f"of the pose (more than {isolated:g} Å): misplaced atom or disconnected fragment?")
    pair = closest_pair(lig, min_distance)
    if pair is not None:
        return overlap_text(ligand_name(pair[0]), ligand_name(pair[1]), pair[2], min_distance, lig)
    lig_idx = np.arange(len(lig)) if ligand_read is None else np.flatnonzero(ligand_read)
    pocket_idx = np.arange(len(pocket)) if pocket_read is None else np.flatnonzero(pocket_read)
    if lig_idx.size == 0:
        return "the pose has no atom the model reads (hydrogens only?)"
    if pocket_idx.size == 0:
        return "the pocket has no atom the model reads (hydrogens only?)"
    tree = pocket_tree if pocket_tree is not None else cKDTree(as_array(pocket)[pocket_idx])
    d, j = tree.query(lig[lig_idx], k=1)
    k = int(np.argmin(d))
    i, near = int(lig_idx[k]), int(pocket_idx[int(j[k])])
    if d[k] < min_distance:
        return (f"ligand {ligand_name(i)} is {d[k]:.3g} Å from pocket {pocket_name(near)} "
                f"(closer than {min_distance:g} Å): overlapping atoms")
    if d[k] > pocket_radius:
        return (f"the pose is not in the pocket: its closest atom, {ligand_name(i)}, is {d[k]:.6g} Å from "
                f"the nearest pocket atom (pocket radius {pocket_radius:g} Å); wrong frame or another site?")
    if interaction_cutoff is not None and d[k] > interaction_cutoff:
        return (f"no pocket atom within the model's {interaction_cutoff:g} Å cutoff of the pose: its closest "
                f"atom, {ligand_name(i)}, is {d[k]:.3g} Å from {pocket_name(near)}, so the model sees no "
                f"interaction (it would be 0); wrong receptor or another site?")
    return None


#: Å: atoms of one molecule are linked by steps no longer than this (covalent bonds up to
#: C-I 2.14 Å); a ligand whose atoms fall into more such groups than in its first frame
#: came apart (a molecule split by the periodic boundary, or atoms out of order)
LINK_DISTANCE = 2.3


def linked_groups(positions: Any, distance: float = LINK_DISTANCE) -> tuple[int, np.ndarray]:
    """``(n, labels)``: the groups of atoms linked by steps of at most ``distance`` Å
    (connected components) and each atom's group."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    p = as_array(positions)
    pairs = cKDTree(p).query_pairs(distance, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(p), len(p)))
    n, labels = connected_components(graph, directed=False)
    return int(n), labels


def ligand_frame_problem(
    ligand: Any,
    pocket: Any,
    ligand_name: AtomName,
    pocket_radius: float,
    groups: int,
) -> Optional[str]:
    """Why a trajectory frame's ligand must not be scored against the pocket chosen in
    the first frame, or None: it fell apart (its atoms form more linked groups,
    :func:`linked_groups`, than the ``groups`` of the first frame: not imaged as whole
    molecules, or a trajectory whose atom order is not the topology's), or it left the
    pocket (no ligand atom within ``pocket_radius`` of a pocket atom).

    Example:
        >>> import numpy as np
        >>> lig = np.array([[0.0, 0, 0], [1.5, 0, 0], [31.5, 0, 0]]); pocket = np.array([[0.0, 4.0, 0]])
        >>> ligand_frame_problem(lig, pocket, lambda i: f"atom {i + 1}", 10.0, 1)[:60]
        'the ligand came apart: its atoms form 2 groups more than 2.3'
    """
    from scipy.spatial import cKDTree

    lig = as_array(ligand)
    n, labels = linked_groups(lig)
    if n > groups:
        # the first atom outside the group of atom 1, and how far it is from that group
        i = int(np.flatnonzero(labels != labels[0])[0])
        gap = float(np.min(np.linalg.norm(lig[labels == labels[0]] - lig[i], axis=1)))
        return (f"the ligand came apart: its atoms form {n} groups more than {LINK_DISTANCE:g} Å from each "
                f"other ({groups} in the first frame); {ligand_name(i)} is {gap:.3g} Å from the group of "
                f"{ligand_name(0)}: trajectory not imaged as whole molecules (e.g. gmx trjconv -pbc mol), "
                f"or its atom order is not the topology's?")
    d, _ = cKDTree(as_array(pocket)).query(lig, k=1)
    k = int(np.argmin(d))
    if d[k] > pocket_radius:
        return (f"the ligand left the pocket chosen in the first frame: its closest atom, {ligand_name(k)}, is "
                f"{d[k]:.6g} Å from the nearest pocket atom (pocket radius {pocket_radius:g} Å)")
    return None


def element_symbol(z: int) -> str:
    """Element symbol of atomic number ``z`` (for atom names in messages)."""
    from get_md import vocab

    return vocab.ELEMENTS[int(z)] if 0 <= int(z) < len(vocab.ELEMENTS) else f"Z={int(z)}"


def graph_atom_namer(graph, what: str = "") -> AtomName:
    """Atom names for messages from a MolecularGraph: ``A:109:TYR atom 8 (O)`` for
    residue blocks, ``atom 12 (C)`` (1-based within the graph) for one-atom blocks.
    ``what`` is put in front (e.g. "pocket")."""
    block_ids = graph.block_ids.detach().cpu().numpy()
    z = graph.atomic_numbers.detach().cpu().numpy()
    labels: Sequence[str] = graph.block_labels or []
    counts = np.bincount(block_ids, minlength=graph.num_blocks)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    prefix = f"{what} " if what else ""

    def name(i: int) -> str:
        b = int(block_ids[i])
        el = element_symbol(int(z[i]))
        if counts[b] > 1 and b < len(labels):
            return f"{prefix}{labels[b]} atom {i - int(starts[b]) + 1} ({el})"
        return f"{prefix}atom {i + 1} ({el})"

    return name


def multi_atom_block_atoms(graph) -> np.ndarray:
    """[N] bool: atoms of blocks that hold more than one atom (residues)."""
    block_ids = graph.block_ids.detach().cpu().numpy()
    return np.bincount(block_ids, minlength=graph.num_blocks)[block_ids] > 1


#: Heavy atoms of each amino acid in a protein chain (the terminal OXT not counted), and
#: of the force fields' protonation variants
AMINO_ACID_HEAVY_ATOMS = {
    "ALA": 5, "ARG": 11, "ASN": 8, "ASP": 8, "CYS": 6, "GLN": 9, "GLU": 9, "GLY": 4, "HIS": 10,
    "ILE": 8, "LEU": 8, "LYS": 9, "MET": 8, "PHE": 11, "PRO": 7, "SER": 6, "THR": 7, "TRP": 14,
    "TYR": 12, "VAL": 7, "HID": 10, "HIE": 10, "HIP": 10, "HSD": 10, "HSE": 10, "HSP": 10,
    "CYX": 6, "CYM": 6, "ASH": 8, "GLH": 9, "LYN": 9, "MSE": 8,
}
#: A pocket whose amino acids hold less than this share of their heavy atoms is a Cα or
#: backbone trace (backbone alone: about 0.5), not a structure with a few truncated side chains
MIN_HEAVY_ATOM_SHARE = 0.6


def trace_problem(graph, segment: int = 0) -> Optional[str]:
    """Why the amino acids of ``graph`` (blocks of ``segment``, labelled
    ``chain:residue:name``) cannot stand for an all-atom receptor: together they hold less
    than :data:`MIN_HEAVY_ATOM_SHARE` of the heavy atoms their residue names call for (a
    Cα trace, a backbone-only or coarse-grained model); None if they do, or if there are
    fewer than 3 of them.

    Example:
        >>> import torch
        >>> from get_md.graph import MolecularGraph
        >>> g = MolecularGraph.from_atoms(torch.rand(3, 3) * 10, torch.tensor([6, 6, 6]))  # one Cα each
        >>> g.block_labels = ["A:1:ALA", "A:2:LEU", "A:3:GLY"]
        >>> trace_problem(g)
        '3 amino acids hold 3 of their 17 heavy atoms (18%; 3 with one atom alone): a Cα or backbone trace?'
    """
    labels = graph.block_labels or []
    blocks = as_array(graph.block_ids).astype(int)
    heavy = as_array(graph.atomic_numbers) != 1
    seg = as_array(graph.segment_ids).astype(int)
    counts = np.bincount(blocks[heavy], minlength=len(labels))
    present = expected = n = lone = 0
    for b, label in enumerate(labels):
        parts = label.split(":")
        if seg[b] != segment or len(parts) != 3 or parts[2] not in AMINO_ACID_HEAVY_ATOMS:
            continue
        n += 1
        present += int(counts[b])
        expected += AMINO_ACID_HEAVY_ATOMS[parts[2]]
        lone += int(counts[b] == 1)
    if n < 3 or present >= MIN_HEAVY_ATOM_SHARE * expected:
        return None
    return (f"{n} amino acids hold {present} of their {expected} heavy atoms ({100 * present / expected:.0f}%; "
            f"{lone} with one atom alone): a Cα or backbone trace?")
