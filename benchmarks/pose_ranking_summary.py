"""Top-1 success of the pose-ranking benchmark: the best-ranked candidate per method,
per-ligand rows, the summary and its Markdown table, for ``bench_pose_ranking.py`` (which
re-exports every public name)."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # sibling modules, as the other benchmarks import theirs
    sys.path.insert(0, _HERE)
from pose_ranking_docking import Candidate  # noqa: E402

# RMSD threshold (Å) below which a pose counts as near-native: the one the pose members'
# training labels are centred on
from get_md.datasets.pose_quality import NEAR_NATIVE_A  # noqa: E402


def top1(candidates: Sequence[Candidate], method: str, with_native: bool) -> Candidate | None:
    """The best-ranked candidate of one method.

    Args:
        candidates: The ligand's candidates.
        method: Key of :attr:`Candidate.scores`.
        with_native: Whether the native pose competes.

    Returns:
        The candidate with the highest signed score (earliest on ties), or None when the method
        scored none of them.
    """
    best: Candidate | None = None
    for c in candidates:
        if c.is_native and not with_native:
            continue
        s = c.scores.get(method, math.nan)
        if not np.isfinite(s):
            continue
        if best is None or s > best.scores[method]:
            best = c
    return best


def ligand_row(candidates: Sequence[Candidate], methods: Sequence[str]) -> dict[str, Any]:
    """Per-ligand ranking outcome of every method.

    Args:
        candidates: The ligand's candidates (docked ones and the native one).
        methods: Method keys present in the candidates' scores.

    Returns:
        ``rmsd``/score lists, the ceiling flag and, per method, the RMSD of the top-1 candidate
        with and without the native pose and the native pose's rank (1 = best).
    """
    docked = [c for c in candidates if not c.is_native]
    finite = [c.rmsd for c in docked if np.isfinite(c.rmsd)]
    row: dict[str, Any] = {
        "n_docked": len(docked),
        "docked_rmsd": [round(c.rmsd, 3) for c in docked],
        "best_docked_rmsd": min(finite) if finite else math.nan,
        "any_near_native": bool(finite and min(finite) < NEAR_NATIVE_A),
        "vina_docking_scores": [c.vina_docking for c in docked],
        "native_vina_score_only": next(c.vina_score_only for c in candidates if c.is_native),
        "methods": {},
    }
    for m in methods:
        entry: dict[str, Any] = {
            "scores": [c.scores.get(m, math.nan) for c in candidates],
        }
        for key, with_native in (("with_native", True), ("docked_only", False)):
            best = top1(candidates, m, with_native)
            entry[f"top1_rmsd_{key}"] = best.rmsd if best is not None else math.nan
            entry[f"top1_is_native_{key}"] = bool(best is not None and best.is_native)
        native = next(c for c in candidates if c.is_native)
        ns = native.scores.get(m, math.nan)
        scored = [c.scores[m] for c in candidates if np.isfinite(c.scores.get(m, math.nan))]
        entry["native_rank"] = int(1 + sum(s > ns for s in scored)) if np.isfinite(ns) else None
        row["methods"][m] = entry
    return row


def summarise(rows: Sequence[dict[str, Any]], methods: Sequence[str]) -> dict[str, Any]:
    """Top-1 success per method over the ligands that were docked.

    Args:
        rows: Per-ligand rows (those with an ``error`` are left out).
        methods: Method keys.

    Returns:
        ``n_ligands``, ``ceiling`` (fraction with any docked pose < 2 Å) and, per method,
        ``with_native`` / ``docked_only`` success, ``docked_only_given_ceiling`` (success among
        the ligands whose docking found a near-native pose), ``native_top1`` (native ranked
        first) and ``n_missing`` (ligands the method could not score; left out of its
        fractions); ``random``: the same fractions expected of a pick at random among each
        ligand's candidates (the floor a scoring function must clear).
    """
    ok = [r for r in rows if not r.get("error")]
    out: dict[str, Any] = {
        "n_ligands": len(ok),
        "n_failed": len(rows) - len(ok),
        "near_native_A": NEAR_NATIVE_A,
        "ceiling": _frac([r["any_near_native"] for r in ok]),
        "random": random_pick(ok),
        "methods": {},
    }
    for m in methods:
        scored = [
            r
            for r in ok
            if np.isfinite(r["methods"].get(m, {}).get("top1_rmsd_with_native", math.nan))
        ]
        hit = [r for r in scored if r["any_near_native"]]
        out["methods"][m] = {
            "n": len(scored),
            "n_missing": len(ok) - len(scored),
            "with_native": _frac([_success(r, m, "with_native") for r in scored]),
            "docked_only": _frac([_success(r, m, "docked_only") for r in scored]),
            "docked_only_given_ceiling": _frac([_success(r, m, "docked_only") for r in hit]),
            "native_top1": _frac([r["methods"][m]["top1_is_native_with_native"] for r in scored]),
        }
    return out


def random_pick(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Top-1 success expected of a uniformly random pick among each ligand's candidates.

    Args:
        rows: Per-ligand rows without errors (``docked_rmsd``: RMSD of each docked pose).

    Returns:
        ``with_native`` (native pose among the candidates), ``docked_only`` and
        ``native_top1``, each the mean over ligands of the chance of a random pick.

    Example:
        >>> random_pick([{"docked_rmsd": [0.5, 3.0, 4.0]}])
        {'with_native': 0.5, 'docked_only': 0.3333333333333333, 'native_top1': 0.25}
    """
    if not rows:
        return {"with_native": math.nan, "docked_only": math.nan, "native_top1": math.nan}
    near = [int(np.sum(np.asarray(r["docked_rmsd"], dtype=float) < NEAR_NATIVE_A)) for r in rows]
    n = [len(r["docked_rmsd"]) for r in rows]
    return {
        "with_native": float(np.mean([(k + 1) / (m + 1) for k, m in zip(near, n, strict=True)])),
        "docked_only": float(np.mean([k / m if m else math.nan for k, m in zip(near, n, strict=True)])),
        "native_top1": float(np.mean([1 / (m + 1) for m in n])),
    }


def _success(row: dict[str, Any], method: str, key: str) -> bool:
    """Whether the method's top-1 candidate is near-native.

    Args:
        row: Per-ligand row.
        method: Method key.
        key: ``with_native`` or ``docked_only``.

    Returns:
        True when the top-1 RMSD is below :data:`NEAR_NATIVE_A`.
    """
    value = row["methods"][method][f"top1_rmsd_{key}"]
    return bool(np.isfinite(value) and value < NEAR_NATIVE_A)


def _frac(flags: Sequence[bool]) -> float:
    """Fraction of True values (NaN for an empty sequence).

    Args:
        flags: Booleans.

    Returns:
        The fraction.
    """
    return float(np.mean(flags)) if len(flags) else math.nan


def markdown(summary: dict[str, Any]) -> str:
    """Formats the summary as a markdown table.

    Args:
        summary: Output of :func:`summarise`.

    Returns:
        The table, with the expected success of a random pick and the docking ceiling as
        last rows.
    """
    lines = [
        "| method | top-1 < 2 Å, with native | top-1 < 2 Å, docked only | native ranked 1st | n |",
        "|---|---|---|---|---|",
    ]
    for m, s in summary["methods"].items():
        lines.append(
            f"| {m} | {s['with_native']:.2f} | {s['docked_only']:.2f} | {s['native_top1']:.2f} "
            f"| {s['n']} |"
        )
    if "random" in summary:
        r = summary["random"]
        lines.append(
            f"| *random pick (expected)* | {r['with_native']:.2f} | {r['docked_only']:.2f} "
            f"| {r['native_top1']:.2f} | {summary['n_ligands']} |"
        )
    lines.append(
        f"| *ceiling: any docked pose < 2 Å* | | {summary['ceiling']:.2f} | "
        f"| {summary['n_ligands']} |"
    )
    return "\n".join(lines)
