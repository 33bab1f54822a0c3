"""How sure a ranking figure is: bootstrap intervals for the mean Spearman over groups.

Scoring models are compared by the Spearman correlation of their scores with measured
affinities inside each target (or congeneric series), averaged over the targets. With
6–20 ligands a target and a handful of targets, that mean moves by several hundredths
when one ligand changes, so a difference of 0.02 between two models, or between a model
and the heavy-atom count, says nothing by itself. :func:`bootstrap_ranking` puts an
interval on each method's mean and on each method's difference from a baseline, computed
on the **same** resampled ligands for every method (a paired bootstrap), in two ways:

* ``"ligands"``: the ligands of each group are resampled with replacement, the groups
  kept. The interval says how much the figure depends on which ligands were measured,
  for these targets.
* ``"groups"``: the groups are resampled with replacement, then the ligands inside each
  drawn group. The interval says how much the figure would move on other targets like
  these: the question a held-out evaluation asks, and a wider interval.

:func:`bootstrap_success` does the same for success rates (a pose ranked first within 2 Å
of the crystal pose), resampling the cases.

Percentile intervals; a group drawn with fewer than 3 distinct ligands, or whose
resampled scores or labels are all tied, has no Spearman and is left out of that
sample's mean (as :func:`get_md.train.affinity.ranking_metrics` leaves it out).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from get_md.errors import ConfigError

#: Ways of resampling: see the module docstring.
RESAMPLE = ("ligands", "groups")


def _rank(values: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties share their mean rank)."""
    from scipy.stats import rankdata

    return rankdata(values, axis=-1)


def _spearman_rows(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Spearman of each row pair of ``truth`` and ``pred`` (shape [samples, n]); NaN where
    a row is constant."""
    rt = _rank(truth)
    rp = _rank(pred)
    rt = rt - rt.mean(axis=-1, keepdims=True)
    rp = rp - rp.mean(axis=-1, keepdims=True)
    den = np.sqrt((rt**2).sum(-1) * (rp**2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rt * rp).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if not len(finite):
        return float("nan"), float("nan")
    lo, hi = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def _check(methods: Mapping, baseline: Optional[str], n_boot: int, level: float, what: str) -> None:
    if not methods:
        raise ConfigError(f"no {what} to compare")
    if baseline is not None and baseline not in methods:
        raise ConfigError(f"baseline {baseline!r} is not one of the {what} {sorted(methods)}")
    if n_boot < 1 or not 0 < level < 1:
        raise ConfigError(f"n_boot must be >= 1 and level in (0, 1), got {n_boot}, {level}")


def _figures(names: list[str], point: np.ndarray, boot: np.ndarray, baseline: Optional[str], level: float,
             key: str) -> tuple[dict, dict]:
    """Per method ``{key: point, "ci"}`` and, against ``baseline``, the paired differences."""
    methods = {}
    for i, name in enumerate(names):
        lo, hi = _interval(boot[i], level)
        methods[name] = {key: float(point[i]), "ci": [lo, hi]}
    versus = {}
    if baseline is not None:
        b = names.index(baseline)
        for i, name in enumerate(names):
            if i == b:
                continue
            diff = boot[i] - boot[b]
            lo, hi = _interval(diff, level)
            finite = diff[np.isfinite(diff)]
            versus[name] = {"baseline": baseline, "difference": float(point[i] - point[b]), "ci": [lo, hi],
                            "fraction_above": float((finite > 0).mean()) if len(finite) else float("nan")}
    return methods, versus


def bootstrap_ranking(
    y_true: Sequence[float],
    scores: Mapping[str, Sequence[float]],
    groups: Sequence[str],
    baseline: Optional[str] = None,
    resample: str = "ligands",
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """Mean Spearman over groups of each score, with paired bootstrap intervals.

    Args:
        y_true: measured affinity (pK; higher binds tighter), one per ligand.
        scores: method name -> one score per ligand, signed so that higher means tighter
            binding. Every method is scored on the same ligands (drop rows any method
            lacks first).
        groups: the group (target or series) of each ligand.
        baseline: a key of ``scores``; each other method also gets its difference from it.
        resample: ``"ligands"`` (within groups) or ``"groups"`` (targets, then ligands).
        n_boot: bootstrap samples.
        level: coverage of the intervals.
        seed: seed of the resampling (figures are reproducible).

    Returns:
        ``{"resample", "n_boot", "level", "n_groups", "n", "methods": {name: {"mean_spearman",
        "ci"}}, "versus": {name: {"baseline", "difference", "ci", "fraction_above"}}}``:
        the point estimates are those of the data as given; ``fraction_above`` is the share
        of samples in which the method beats the baseline.

    Example:
        >>> y = [5, 6, 7, 8, 5, 6, 7, 8]
        >>> out = bootstrap_ranking(y, {"a": y, "b": [8, 7, 6, 5, 5, 6, 7, 8]},
        ...                         ["T1"] * 4 + ["T2"] * 4, baseline="b", n_boot=200)
        >>> out["methods"]["a"]["mean_spearman"], out["methods"]["b"]["mean_spearman"]
        (1.0, 0.0)
    """
    if resample not in RESAMPLE:
        raise ConfigError(f"resample must be one of {RESAMPLE}, got {resample!r}")
    _check(scores, baseline, n_boot, level, "scores")
    y = np.asarray(y_true, dtype=float)
    g = np.asarray(groups)
    names = list(scores)
    s = np.stack([np.asarray(scores[m], dtype=float) for m in names])
    if s.shape[1] != len(y) or len(g) != len(y):
        raise ConfigError(f"lengths differ: {len(y)} labels, {len(g)} groups, scores {s.shape[1]}")
    if not (np.isfinite(y).all() and np.isfinite(s).all()):
        raise ConfigError("labels and scores must be finite (drop rows a method lacks first)")
    members = [np.flatnonzero(g == name) for name in sorted(set(g.tolist()))]
    rng = np.random.default_rng(seed)

    def group_rho(idx: np.ndarray) -> np.ndarray:
        """[methods, samples] Spearman of the ligands ``idx`` ([samples, n] indices of
        one group); NaN where a sample drew fewer than 3 distinct ligands or all ties."""
        rho = _spearman_rows(np.broadcast_to(y[idx], (len(names),) + idx.shape), s[:, idx])
        distinct = (np.diff(np.sort(idx, axis=1), axis=1) > 0).sum(axis=1) + 1 >= 3
        return np.where(distinct[None, :], rho, np.nan)

    def accumulate(total: np.ndarray, count: np.ndarray, rho: np.ndarray, where) -> None:
        ok = np.isfinite(rho)
        total[:, where] += np.where(ok, rho, 0.0)
        count[:, where] += ok

    def mean(total: np.ndarray, count: np.ndarray) -> np.ndarray:
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    total, count = np.zeros((len(names), 1)), np.zeros((len(names), 1))
    for m in members:
        accumulate(total, count, group_rho(m[None, :]), slice(None))
    point = mean(total, count)[:, 0]

    total, count = np.zeros((len(names), n_boot)), np.zeros((len(names), n_boot))
    if resample == "ligands":
        for m in members:
            accumulate(total, count, group_rho(rng.choice(m, size=(n_boot, len(m)))), slice(None))
    else:
        # Each sample draws len(members) groups with replacement; every draw (slot) then
        # resamples that group's ligands on its own, as a two-stage bootstrap does.
        picks = rng.integers(0, len(members), size=(n_boot, len(members)))
        for slot in range(len(members)):
            for k, m in enumerate(members):
                chosen = np.flatnonzero(picks[:, slot] == k)
                if len(chosen):
                    idx = m[rng.integers(0, len(m), size=(len(chosen), len(m)))]
                    accumulate(total, count, group_rho(idx), chosen)
    boot = mean(total, count)

    methods, versus = _figures(names, point, boot, baseline, level, "mean_spearman")
    return {"resample": resample, "n_boot": int(n_boot), "level": float(level), "n_groups": len(members),
            "n": int(len(y)), "methods": methods, "versus": versus}


def bootstrap_success(
    hits: Mapping[str, Sequence[bool]],
    baseline: Optional[str] = None,
    n_boot: int = 4000,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """Success rates (e.g. top-1 pose within 2 Å) of several methods on the same cases,
    with paired bootstrap intervals over the cases.

    Args:
        hits: method name -> one success flag per case, the same cases in the same order
            for every method.
        baseline: a key of ``hits``; each other method also gets its difference from it.
        n_boot, level, seed: as in :func:`bootstrap_ranking`.

    Returns:
        ``{"n_boot", "level", "n", "methods": {name: {"rate", "ci"}}, "versus": {name:
        {"baseline", "difference", "ci", "fraction_above"}}}``.

    Example:
        >>> out = bootstrap_success({"a": [1, 1, 1, 0], "b": [0, 1, 0, 0]}, baseline="b", n_boot=100)
        >>> out["methods"]["a"]["rate"], out["versus"]["a"]["difference"]
        (0.75, 0.5)
    """
    _check(hits, baseline, n_boot, level, "methods")
    names = list(hits)
    h = np.stack([np.asarray(hits[m], dtype=bool) for m in names]).astype(float)
    if h.shape[1] == 0:
        raise ConfigError("no cases")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, h.shape[1], size=(n_boot, h.shape[1]))
    boot = h[:, draws].mean(axis=2)                      # [methods, samples]
    methods, versus = _figures(names, h.mean(axis=1), boot, baseline, level, "rate")
    return {"n_boot": int(n_boot), "level": float(level), "n": int(h.shape[1]), "methods": methods,
            "versus": versus}
