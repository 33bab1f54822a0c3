"""Which pose should stand for a docked ligand when ligands are ranked by a score model?

For each ligand of the candidate SDFs that ``bench_pose_ranking.py`` (``--poses-dir``) or
``pose_decoys.py`` wrote (Vina-docked poses plus the set's own pose, tagged
``vina_docking_score`` and ``is_native``), the poses are rescored with
``get_md.workflows.poses.rescore_poses`` and one value per ligand is taken by each rule of
:func:`get_md.workflows.poses.per_ligand` (``docking``: the pose Vina ranked best;
``score``: the model's best pose; ``first``), next to the model's score of the set's own
pose (``native``), Vina's best docking score and the heavy-atom count; with ``--gnina``
also gnina's CNNaffinity (gninatorch in its own venv, ``affinity_baselines.run_gnina_scoring``)
of Vina's top pose (``gnina_docking``) and of the pose gnina's CNNscore ranks first
(``gnina_cnnscore``). Reported: Spearman
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

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # sibling modules, as the other benchmarks import theirs
    sys.path.insert(0, _HERE)

NEAR_NATIVE_A = 2.0
RULES = ("docking", "score", "first", "native", "vina", "heavy_atoms")
GNINA_RULES = ("gnina_docking", "gnina_cnnscore")


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


def gnina_values(receptor: str, sdfs: list[Path]) -> dict[str, dict]:
    """gnina CNNaffinity of Vina's top pose and of CNNscore's top pose, per candidates SDF."""
    import affinity_baselines
    from pose_ranking_docking import read_candidates

    clean_pdb, _ = affinity_baselines.clean_receptor_pdb(Path(receptor).read_text(errors="replace"))
    docked = {sdf: [c for c in read_candidates(sdf) if not c.is_native] for sdf in sdfs}
    flat = [(sdf, j) for sdf, cs in docked.items() for j in range(len(cs))]
    got, _errs, _info = affinity_baselines.run_gnina_scoring(clean_pdb, {k: docked[sdf][j].mol for k, (sdf, j)
                                                                         in enumerate(flat)})
    scores: dict[Path, list] = {sdf: [(math.nan, math.nan)] * len(cs) for sdf, cs in docked.items()}
    for k, (sdf, j) in enumerate(flat):
        if k in got:
            scores[sdf][j] = got[k]
    out = {}
    for sdf, cs in docked.items():
        cnn = np.asarray(scores[sdf], dtype=float)
        if not len(cs) or not np.isfinite(cnn).any():
            continue
        by_vina = int(np.argmin([c.vina_docking for c in cs]))
        by_cnn = int(np.nanargmax(cnn[:, 0]))
        out[sdf] = {"gnina_docking": float(cnn[by_vina, 1]), "gnina_cnnscore": float(cnn[by_cnn, 1]),
                    "gnina_cnnscore_rmsd": float(cs[by_cnn].rmsd)}
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
    ap.add_argument("--gnina", action="store_true", help="also gnina's CNNaffinity (its venv is made if needed)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    rules = RULES + (GNINA_RULES if args.gnina else ())
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
        sdfs = sorted(folder.glob("*.sdf"))
        gnina = gnina_values(s.protein, sdfs) if args.gnina else {}
        for sdf in sdfs:
            index = int(re.match(r"(\d+)_", sdf.name).group(1))
            rec = records[index]
            if rec is None or not rec.HasProp("r_exp_dg"):
                continue
            row = {"target": s.target, "series": s.name, "ligand": sdf.stem,
                   "pk": float(pk_from_dg(float(rec.GetProp("r_exp_dg"))))}
            row["heavy_atoms"] = float(rec.GetNumHeavyAtoms())
            row.update(ligand_values(s.protein, sdf, args.model))
            row.update(gnina.get(sdf, {}))
            rows.append(row)
            print(f"[{s.target}] {sdf.stem}: pK {row['pk']:.2f}, docking pick {row.get('docking', math.nan):.2f} "
                  f"(RMSD {row.get('docking_rmsd', math.nan):.1f}), score pick {row.get('score', math.nan):.2f}, "
                  f"native {row['native']:.2f}", flush=True)
    targets = sorted({r["target"] for r in rows})
    per_target = {t: {rule: spearman([r.get(rule, math.nan) for r in rows if r["target"] == t],
                                     [r["pk"] for r in rows if r["target"] == t]) for rule in rules}
                  for t in targets}
    summary = {
        "n_ligands": len(rows),
        "n_per_target": {t: sum(r["target"] == t for r in rows) for t in targets},
        "mean_spearman": {rule: float(np.nanmean([per_target[t][rule] for t in targets])) for rule in rules},
        "picked_near_native": {rule: float(np.mean([r[f"{rule}_rmsd"] < NEAR_NATIVE_A for r in rows
                                                    if f"{rule}_rmsd" in r]))
                               for rule in ("docking", "score", "first") + (("gnina_cnnscore",) if args.gnina else ())},
    }
    result = {"benchmark": "bench_pose_pick", "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "model": args.model or "default score model", "seconds": time.perf_counter() - t0,
              "per_target_spearman": per_target, "summary": summary, "ligands": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print("| rule | " + " | ".join(targets) + " | mean |")
    print("|---" * (len(targets) + 2) + "|")
    for rule in rules:
        vals = " | ".join(f"{per_target[t][rule]:.2f}" for t in targets)
        print(f"| {rule} | {vals} | {summary['mean_spearman'][rule]:.2f} |")
    print("picked pose < 2 Å:", json.dumps(summary["picked_near_native"]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
