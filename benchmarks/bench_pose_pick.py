"""Which pose should stand for a docked ligand when ligands are ranked by a score model?

For each ligand of the candidate SDFs that ``bench_pose_ranking.py`` (``--poses-dir``) or
``pose_decoys.py`` wrote (Vina-docked poses plus the set's own pose, tagged
``vina_docking_score`` and ``is_native``), the poses are rescored with
``get_md.workflows.poses.rescore_poses`` and one value per ligand is taken by each rule of
:func:`get_md.workflows.poses.per_ligand` (``docking``: the pose Vina ranked best;
``score``: the model's best pose; ``first``), next to the model's score of the set's own
pose (``native``), Vina's best docking score and the heavy-atom count. Reported: Spearman
correlation with the experimental pK per target and its mean over targets, and how often the
picked pose lies within 2 Å of the set's pose.

Which targets are read is given explicitly (``--targets``); targets excluded from all work
(:func:`get_md.datasets.targets.is_excluded`) are refused.

    python benchmarks/bench_pose_pick.py --schrodinger structure_inputs --poses-dir data/valid_docked \\
        --targets TNKS2 KIF11 FAAH JAK2 --out benchmarks/results/bench_pose_pick_valid.json

Result: JSON with per-ligand rows and the summary.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
import time
from pathlib import Path

import numpy as np

NEAR_NATIVE_A = 2.0
RULES = ("docking", "score", "first", "native", "vina", "heavy_atoms")


def spearman(x, y) -> float:
    """Spearman rank correlation (NaN for fewer than 3 pairs or a constant side)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return math.nan
    return float(spearmanr(x[ok], y[ok])[0])


def ligand_values(receptor: str, sdf: Path, model: str | None) -> dict:
    """Per-rule values of one ligand's candidates (higher = predicted to bind better)."""
    from get_md.workflows.poses import per_ligand, rescore_poses

    table = rescore_poses(receptor, sdf, model=model, add_hydrogens="no", sort="none", progress=False, parallel=1)
    table = table.assign(ligand=sdf.stem)
    native_col = "is_native" if "is_native" in table else "input_is_native"
    is_native = table[native_col].astype(str) == "1"
    docked = table[~is_native]
    rmsd_col = "rmsd" if "rmsd" in table else "input_rmsd"
    rmsd = dict(zip(table["pose"], table[rmsd_col].astype(float), strict=True))
    out: dict = {}
    for rule in ("docking", "score", "first"):
        row = per_ligand(docked, pick=rule, key="ligand")
        if len(row):
            out[rule] = float(row["score"].iloc[0])
            out[f"{rule}_rmsd"] = rmsd[int(row["pose"].iloc[0])]
            out[f"{rule}_picked_by"] = str(row["picked_by"].iloc[0])
    nat = table[is_native & (table["status"] == "ok")]
    out["native"] = float(nat["score"].iloc[0]) if len(nat) else math.nan
    vina = docked["vina_docking_score" if "vina_docking_score" in docked else "input_vina_docking_score"]
    out["vina"] = -float(vina.astype(float).min())
    return out


def main(argv=None) -> int:
    from get_md.datasets.affinity import schrodinger_series
    from get_md.datasets.pose_quality import series_slug
    from get_md.datasets.targets import canonical_target, is_excluded
    from get_md.units import pk_from_dg

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--schrodinger", required=True, help="structure_inputs folder")
    ap.add_argument("--poses-dir", type=Path, required=True, help="folders of candidate SDFs, one per series")
    ap.add_argument("--targets", nargs="+", required=True)
    ap.add_argument("--model", default=None, help="score model (default: the shipped one)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    bad = [t for t in args.targets if is_excluded(t)]
    if bad:
        raise SystemExit(f"targets {bad} are kept for independent evaluation and are not read")
    wanted = {canonical_target(t) for t in args.targets}

    from rdkit import Chem

    rows = []
    t0 = time.perf_counter()
    for s in schrodinger_series(args.schrodinger):
        if s.target == "EXCLUDED" or s.target not in wanted:
            continue
        folder = args.poses_dir / series_slug(s.name)
        if not folder.is_dir():
            continue
        records = list(Chem.SDMolSupplier(str(s.ligands), removeHs=False, sanitize=False))
        for sdf in sorted(folder.glob("*.sdf")):
            index = int(re.match(r"(\d+)_", sdf.name).group(1))
            rec = records[index]
            if rec is None or not rec.HasProp("r_exp_dg"):
                continue
            row = {"target": s.target, "series": s.name, "ligand": sdf.stem,
                   "pk": float(pk_from_dg(float(rec.GetProp("r_exp_dg"))))}
            row["heavy_atoms"] = float(rec.GetNumHeavyAtoms())
            row.update(ligand_values(s.protein, sdf, args.model))
            rows.append(row)
            print(f"[{s.target}] {sdf.stem}: pK {row['pk']:.2f}, docking pick {row.get('docking', math.nan):.2f} "
                  f"(RMSD {row.get('docking_rmsd', math.nan):.1f}), score pick {row.get('score', math.nan):.2f}, "
                  f"native {row['native']:.2f}", flush=True)
    targets = sorted({r["target"] for r in rows})
    per_target = {t: {rule: spearman([r.get(rule, math.nan) for r in rows if r["target"] == t],
                                     [r["pk"] for r in rows if r["target"] == t]) for rule in RULES}
                  for t in targets}
    summary = {
        "n_ligands": len(rows),
        "n_per_target": {t: sum(r["target"] == t for r in rows) for t in targets},
        "mean_spearman": {rule: float(np.nanmean([per_target[t][rule] for t in targets])) for rule in RULES},
        "picked_near_native": {rule: float(np.mean([r[f"{rule}_rmsd"] < NEAR_NATIVE_A for r in rows
                                                    if f"{rule}_rmsd" in r]))
                               for rule in ("docking", "score", "first")},
    }
    result = {"benchmark": "bench_pose_pick", "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "model": args.model or "default score model", "seconds": time.perf_counter() - t0,
              "per_target_spearman": per_target, "summary": summary, "ligands": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("| rule | " + " | ".join(targets) + " | mean |")
    print("|---" * (len(targets) + 2) + "|")
    for rule in RULES:
        vals = " | ".join(f"{per_target[t][rule]:.2f}" for t in targets)
        print(f"| {rule} | {vals} | {summary['mean_spearman'][rule]:.2f} |")
    print("picked pose < 2 Å:", json.dumps(summary["picked_near_native"]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
