"""Can the score model's ensemble spread, or a blend with Vina, pick a ligand's near-native
docked pose? Top-1 success of pose-ranking rules on re-docked ligands.

For each candidate SDF of ``--poses-dir`` (one folder per series, as written by
``bench_pose_ranking.py --poses-dir`` or ``pose_decoys.py``: Vina-docked poses tagged
``rmsd``, ``vina_docking_score`` and ``is_native``), the docked poses (the set's own pose
left out) are rescored with ``get_md.workflows.poses.rescore_poses`` and ranked by each rule:

* ``score``: the model's pK (the shipped default's rule);
* ``neg_std``: the members' agreement (−``score_std``);
* ``score_minus_kstd``: ``score − k·score_std`` for each ``--k``;
* ``blend_w``: the mean of the pose's rank by ``score`` (weight w) and by Vina's docking
  score (weight 1 − w) for each ``--w``; w = 0 is Vina's own ranking.

Success = the first-ranked pose within 2 Å (heavy-atom RMSD, the ``rmsd`` tag) of the set's
pose. Choose a rule on validation targets (``--targets``) before looking at held-out ones.
Targets excluded from all work (:func:`get_md.datasets.targets.is_excluded`) are refused.

    python benchmarks/pose_rank_rules.py --schrodinger structure_inputs --poses-dir data/valid_docked \\
        --targets TNKS2 KIF11 FAAH JAK2 --out valid.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

NEAR_NATIVE_A = 2.0


def rescore_ligand(protein: str, sdf: Path, model: str | None) -> dict:
    """Per docked pose of ``sdf``: RMSD to the set's pose, Vina's docking score, the model's
    score and spread (poses the workflow skipped are left out)."""
    from get_md.workflows.poses import rescore_poses
    from rdkit import Chem

    mols = list(Chem.SDMolSupplier(str(sdf), removeHs=False, sanitize=False))
    table = rescore_poses(protein, sdf, model, add_hydrogens="no", sort="none", progress=False, parallel=1)
    keep = [i for i, m in enumerate(mols) if m is not None and m.HasProp("rmsd") and m.HasProp("vina_docking_score")
            and not int(m.GetProp("is_native") if m.HasProp("is_native") else 0) and table["status"].iloc[i] == "ok"]
    return {"rmsd": [float(mols[i].GetProp("rmsd")) for i in keep],
            "vina": [float(mols[i].GetProp("vina_docking_score")) for i in keep],
            "score": [float(table["score"].iloc[i]) for i in keep],
            "score_std": [float(table["score_std"].iloc[i]) for i in keep]}


def rank(values) -> np.ndarray:
    """Ranks 1..n, higher value = higher rank (ties share the mean rank)."""
    from scipy.stats import rankdata

    return rankdata(np.asarray(values, dtype=float))


def rule_values(lig: dict, ks, ws) -> dict[str, np.ndarray]:
    """Each rule's value per pose (higher = ranked first)."""
    score, std, vina = (np.asarray(lig[k], dtype=float) for k in ("score", "score_std", "vina"))
    out = {"score": score, "neg_std": -std}
    out.update({f"score_minus_{k:g}std": score - k * std for k in ks})
    out.update({f"blend_{w:g}": w * rank(score) + (1 - w) * rank(-vina) for w in ws})
    return out


def top1(ligands: list[dict], ks, ws) -> dict[str, float]:
    """Share of ligands whose first-ranked pose under each rule is near-native."""
    hits: dict[str, list[bool]] = {}
    for lig in ligands:
        if not lig["rmsd"]:
            continue
        for name, v in rule_values(lig, ks, ws).items():
            hits.setdefault(name, []).append(lig["rmsd"][int(np.argmax(v))] < NEAR_NATIVE_A)
    return {name: float(np.mean(h)) for name, h in hits.items()}


def main(argv=None) -> int:
    from get_md.datasets.affinity import schrodinger_series
    from get_md.datasets.pose_quality import series_slug
    from get_md.datasets.targets import canonical_target, is_excluded

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--schrodinger", required=True, help="structure_inputs folder")
    ap.add_argument("--poses-dir", type=Path, required=True, help="folders of candidate SDFs, one per series")
    ap.add_argument("--targets", nargs="*", default=None, help="targets to read (default: every folder found)")
    ap.add_argument("--model", default=None, help="score model (default: the shipped one)")
    ap.add_argument("--k", type=float, nargs="*", default=[0.5, 1.0, 2.0, 4.0])
    ap.add_argument("--w", type=float, nargs="*", default=[0.0, 0.25, 0.5, 0.75])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    bad = [t for t in args.targets or () if is_excluded(t)]
    if bad:
        raise SystemExit(f"targets {bad} are kept for independent evaluation and are not read")
    wanted = None if args.targets is None else {canonical_target(t) for t in args.targets}

    t0 = time.perf_counter()
    ligands = []
    for s in schrodinger_series(args.schrodinger):
        folder = args.poses_dir / series_slug(s.name)
        if s.target == "EXCLUDED" or not folder.is_dir() or (wanted and s.target not in wanted):
            continue
        for sdf in sorted(folder.glob("*.sdf")):
            ligands.append({"target": s.target, "series": s.name, "ligand": sdf.stem,
                            **rescore_ligand(s.protein, sdf, args.model)})
        print(f"{s.name}: {sum(1 for x in ligands if x['series'] == s.name)} ligands", file=sys.stderr, flush=True)
    summary = top1(ligands, args.k, args.w)
    result = {"command": "python benchmarks/pose_rank_rules.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
              "model": args.model or "default", "n_ligands": sum(1 for x in ligands if x["rmsd"]),
              "seconds": round(time.perf_counter() - t0, 1), "top1_near_native": summary, "ligands": ligands}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for name, v in summary.items():
        print(f"{name:22s} {v:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
