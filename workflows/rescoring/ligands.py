"""One row per ligand from a pose table: which pose stands for each ligand, and its score.

Docking writes several poses of each ligand; ranking ligands needs one value each. The
score model was trained on bound poses only and scores the poses of one ligand within a
few tenths of a pK of each other, so it is a poor judge of which pose is right (held-out
top-1 < 2 Å: 0.30, against 0.55 for Vina's own ranking; docs/affinity.md#pose-ranking).
By default a ligand is therefore represented by the pose its docking program ranked best:

* ``pick="docking"``: the pose with the lowest docking score found in the input tags
  (:data:`DOCKING_TAGS`: smina / gnina ``minimizedAffinity``, ``vina_score`` of a Vina
  PDBQT's ``REMARK VINA RESULT``, Glide ``r_i_docking_score``,
  Vina through meeko's ``meeko`` JSON ``free_energy``, ...); where none is tagged, the
  first pose in the file (docking programs write the best first);
* ``pick="first"``: the first readable pose of each ligand in the file;
* ``pick="score"``: the pose with the model's best value (highest score, lowest
  interaction energy).

Poses belong to one ligand when they share the record name (``name`` column), as docking
programs write them; ``key`` names another column (an input tag such as an ID).

Example:
    >>> import pandas as pd
    >>> t = pd.DataFrame({"pose": [1, 2, 3], "name": ["a", "a", "b"], "status": ["ok"] * 3,
    ...                   "score": [6.0, 7.0, 5.0], "minimizedAffinity": [-9.1, -8.0, -7.5]})
    >>> per_ligand(t)[["ligand", "pose", "score", "picked_by"]].values.tolist()
    [['a', 1, 6.0, 'minimizedAffinity'], ['b', 3, 5.0, 'minimizedAffinity']]
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any, Optional

from get_md.errors import WorkflowError

logger = logging.getLogger("get_md.workflows.poses")

#: Input tags that hold a docking score (lower is better), in the order they are looked for;
#: ``meeko:free_energy`` is the ``free_energy`` field of meeko's ``meeko`` JSON tag (Vina
#: poses written by meeko). A tag may also reach the table as ``input_<tag>``.
DOCKING_TAGS = (
    "minimizedAffinity",
    "vina_score",
    "r_i_docking_score",
    "docking_score",
    "vina_docking_score",
    "meeko:free_energy",
    "SCORE",
)
PICK_CHOICES = ("docking", "first", "score")


def hill_formula(numbers: Any) -> str:
    """Molecular formula in Hill order (C, H, then the rest alphabetically) of atomic numbers.

    Example:
        >>> hill_formula([6, 6, 8, 1, 1, 1, 1, 1, 1]), hill_formula([17, 1])
        ('C2H6O', 'ClH')
    """
    from collections import Counter

    from ..geometry_checks import element_symbol

    counts = Counter(element_symbol(int(z)) for z in numbers)
    first = [e for e in ("C", "H") if e in counts] if "C" in counts else []
    order = first + sorted(e for e in counts if e not in first)
    return "".join(f"{e}{counts[e] if counts[e] > 1 else ''}" for e in order)


def heavy_formula(formula: str) -> str:
    """A :func:`hill_formula` without its hydrogens (protonation states of one ligand share it).

    Example:
        >>> heavy_formula("C2H6O"), heavy_formula("CH3HgCl")
        ('C2O', 'CHgCl')
    """
    return re.sub(r"H(?![a-z])\d*", "", formula)


def check_ligand_key(key: str, poses: Any, columns: Any = ()) -> None:
    """WorkflowError before a run if ``key`` (``--ligand-key``) can be neither one of the
    pose table's own ``columns`` nor a tag of the first record of ``poses`` (tags become
    columns); a key only later records carry is therefore refused too."""
    if key in columns or key.startswith(("input_", "pb_")):
        return
    from get_md.build import iter_poses

    first = next(iter(iter_poses(poses)), None)
    tags = sorted(k for k in (first.properties if first is not None else {}) if not k.startswith("_"))
    if key not in tags:
        raise WorkflowError(f"--ligand-key {key!r} is neither a column of the pose table nor a tag of the first "
                            f"record of {poses} (its tags: {', '.join(tags) or 'none'})")


def _meeko_free_energy(value: Any) -> float:
    """``free_energy`` of a meeko JSON tag (NaN where absent or unreadable)."""
    try:
        return float(json.loads(value)["free_energy"])
    except (TypeError, ValueError, KeyError):
        return math.nan


def docking_scores(table) -> tuple[Optional[str], Any]:
    """The first :data:`DOCKING_TAGS` tag present in ``table`` with a number for some pose.

    Returns:
        ``(tag, values)`` with ``values`` a float Series (NaN where a pose has none), or
        ``(None, None)``.
    """
    import pandas as pd

    for tag in DOCKING_TAGS:
        column = tag.split(":")[0]
        for name in (column, f"input_{column}"):
            if name not in table:
                continue
            if tag == "meeko:free_energy":
                values = table[name].map(_meeko_free_energy).astype(float)
            else:
                values = pd.to_numeric(table[name], errors="coerce").astype(float)
            if values.notna().any():
                return tag, values
    return None, None


def per_ligand(table, pick: str = "docking", key: str = "name"):
    """One row per ligand of a :func:`~get_md.workflows.poses.rescore_poses` table.

    Args:
        table: the pose table (``pose``, ``status``, ``score`` or
            ``interaction_energy_kcal_mol``, input tags).
        pick: which pose represents a ligand: ``"docking"``, ``"first"`` or ``"score"``
            (module docstring).
        key: column that names a pose's ligand (default ``name``, the record name).

    Returns:
        DataFrame, best ligand first, with ``ligand``, ``n_poses`` (scored poses of the
        ligand), ``pose`` (the chosen one), ``picked_by`` (the docking tag, ``first`` or
        the model column), the chosen pose's model values (``score``, ``score_std``,
        ``pose_score`` where present; or the interaction energies), ``docking_score``
        where tagged, ``best_of_poses`` (the best model value over the ligand's poses) and
        ``rank``. Ligands with no scored pose are left out.

    Raises:
        WorkflowError: unknown ``pick`` or ``key``.
    """
    import pandas as pd

    if pick not in PICK_CHOICES:
        raise WorkflowError(f"pick must be one of {PICK_CHOICES}, got {pick!r}")
    if key not in table:
        raise WorkflowError(f"per-ligand key {key!r} is not a column of the pose table "
                            f"(columns: {', '.join(map(str, table.columns))})")
    is_score = "score" in table
    value = "score" if is_score else "interaction_energy_kcal_mol"
    ok = table[table["status"] == "ok"].sort_values("pose", kind="stable").copy()
    unnamed = ok[key].isna() | (ok[key].astype(str).str.strip() == "")
    if unnamed.any():
        logger.warning("%d pose(s) have no %r; they are grouped as one ligand (name a column that "
                       "identifies ligands with --ligand-key)", int(unnamed.sum()), key)
    tag, dock = docking_scores(ok)  # reported with every pick, used by "docking"
    if dock is not None:
        ok["_dock"] = dock
    keep = [c for c in ("score", "score_std", "pose_score", "interaction_energy_eV",
                        "interaction_energy_kcal_mol") if c in ok]
    rows = []
    mixed: list[str] = []
    for ligand, group in ok.groupby(key, sort=False, dropna=False):
        if "ligand_formula" in group:
            kinds = sorted({heavy_formula(f) for f in group["ligand_formula"].dropna().astype(str)})
            if len(kinds) > 1:
                mixed.append(f"{ligand!r} ({', '.join(kinds[:3])}{', ...' if len(kinds) > 3 else ''})")
        if pick == "score":
            chosen, by = group.loc[group[value].idxmax() if is_score else group[value].idxmin()], value
        elif pick == "docking" and tag is not None and group["_dock"].notna().any():
            chosen, by = group.loc[group["_dock"].idxmin()], tag
        else:
            chosen, by = group.iloc[0], "first"
        row = {"ligand": ligand, "n_poses": len(group), "pose": int(chosen["pose"]), "picked_by": by}
        row.update({c: chosen[c] for c in keep})
        if tag is not None:
            row["docking_score"] = chosen["_dock"]
        row["best_of_poses"] = group[value].max() if is_score else group[value].min()
        rows.append(row)
    if mixed:
        logger.warning("%d ligand name(s) hold poses of different molecules (heavy atoms differ): %s%s; "
                       "one pose stands for each name, so name a column that identifies ligands with "
                       "--ligand-key", len(mixed), "; ".join(mixed[:3]), "; ..." if len(mixed) > 3 else "")
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out = out.sort_values(value, ascending=not is_score, kind="stable").reset_index(drop=True)
    out["rank"] = range(1, len(out) + 1)
    return out
