"""Affinity ranking on held-out targets: the GET score model against Vina, Vinardo, gnina
and the ligand heavy-atom count, on the same poses in one run.

Data: the Schrödinger public FEP+ benchmark's congeneric series
(``fep_benchmark_inputs/structure_inputs`` of schrodinger/public_binding_free_energy_benchmark,
MIT; fetch the repository and ``git archive`` that folder), restricted to the held-out
targets of :mod:`get_md.train.affinity` (``HELD_OUT_TARGETS``: no ligand of them was
trained on or used for model selection). With ``--data`` (the folder of
``python -m get_md.train.affinity data``), exactly the ligands of its ``test.pt`` are
scored (duplicates removed as in training). With ``--plb`` instead (the ``data`` folder of
openforcefield/protein-ligand-benchmark, CC-BY-4.0), the same held-out targets as that set
prepared them (its own structures, protonation and poses; measurements from its
``ligands.yml``): the figures then also say how much the ranking moves with the
preparation. With ``--openfe`` next to ``--schrodinger`` (the ``prepared_structures`` folder
of OpenFreeEnergy/IndustryBenchmarks2024, MIT: the Schrödinger series capped and
protonated again with PyMOL, some duplicates removed), each held-out Schrödinger series
is scored in OpenFE's preparation of it (the system folder of its target sharing the most
ligand names), with the pK of the Schrödinger record of the same name. With ``--folders``
(MCompChem/fep-benchmark, MIT: Maestro-prepared structures, SYK on 4PV0, and a 2023 EPAS1
series, ``hif2a-jmc2023``, measured by ITC), each held-out target's folders with the IC50 /
Kd of their SDF tags (:func:`get_md.datasets.affinity.sdf_activity_pk`); a ligand given in
several binding poses (``NAME-bindingpose1``, ``-bindingpose2``) counts once, by each
method's best pose. Targets reserved
for independent evaluation (BACE1, CDK2, JNK1, MCL1, p38, PTP1B, thrombin, TYK2) are never
read.

Each method scores the series' poses as they are in the SDF (no docking, no minimisation):

* ``get``: ``get_md.workflows.poses.rescore_poses`` with ``--model`` (end to end: the
  workflow a user runs; ``score`` in pK, ``score_std`` the ensemble spread);
* ``vina``, ``vinardo``, ``gnina_cnnaffinity``, ``gnina_cnnscore``: through
  ``benchmarks/affinity_baselines.py`` (Vina 1.2 score_only; gnina's CNN via gninatorch in
  its own venv);
* ``heavy_atoms``: the ligand's heavy-atom count (bigger binds better: the baseline a
  score must beat to be scoring binding).

Per target: Spearman and Pearson of each method (signed so that higher means tighter
binding) against the experimental pK; the mean over targets is the headline.

    python benchmarks/bench_affinity.py --schrodinger DIR --data data/affinity \\
        --model get-affinity --methods vina vinardo gnina
    python benchmarks/bench_affinity.py --plb protein-ligand-benchmark/data --methods vina gnina \\
        --out benchmarks/results/bench_affinity_plb.json
    python benchmarks/bench_affinity.py --schrodinger DIR --openfe IndustryBenchmarks2024/industry_benchmarks/input_structures/prepared_structures \
        --out benchmarks/results/bench_affinity_openfe.json
    python benchmarks/bench_affinity.py --folders fep-benchmark --out benchmarks/results/bench_affinity_mcompchem.json

Result: ``benchmarks/results/bench_affinity.json`` (+ the per-ligand CSV next to it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "bench_affinity.json"

#: method -> sign that makes "higher = tighter binding"
SIGNS = {"get": 1.0, "heavy_atoms": 1.0, "vina": -1.0, "vinardo": -1.0,
         "gnina_cnnaffinity": 1.0, "gnina_cnnscore": 1.0}


def _held_out_series(root: str, targets: tuple[str, ...], plb: bool = False):
    from get_md.datasets.affinity import plb_series, schrodinger_series

    return [s for s in (plb_series(root) if plb else schrodinger_series(root)) if s.target in targets]


def _test_names(data: str | None) -> set[str] | None:
    if data is None:
        return None
    from get_md.train.data import MolecularDataset

    return {s.graph.names[0] for s in MolecularDataset.load(Path(data) / "test.pt")}


def score_series(series, model: str, methods: list[str], keep: set[str] | None, threads: int,
                 measured: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per ligand of ``series`` with experimental pK and every method's score
    (pK from the SDF's ``r_exp_dg`` tags, or from ``measured`` by ligand name)."""
    from get_md.workflows.poses import rescore_poses

    from get_md.datasets.affinity import DG_TAG, pk_from_dg

    t0 = time.perf_counter()
    get = rescore_poses(series.protein, series.ligands, model, add_hydrogens="no", sort="none",
                        drop_unsupported=True, progress=False, parallel=threads)
    t_get = time.perf_counter() - t0
    rows = get[["pose", "name", "score"] + (["score_std"] if "score_std" in get else [])].copy()
    rows = rows.rename(columns={"pose": "record", "score": "get", "score_std": "get_std"})
    if measured is not None:
        rows["pK"] = [measured.get(n, np.nan) for n in rows["name"]]
    else:
        rows["pK"] = [pk_from_dg(float(v)) if pd.notna(v) else np.nan for v in get[DG_TAG]]
    rows["target"] = series.target
    rows["series"] = series.name
    t_base = 0.0
    if methods:
        from affinity_baselines import score_poses

        t1 = time.perf_counter()
        base = score_poses(series.protein, series.ligands, methods=tuple(methods))
        t_base = time.perf_counter() - t1
        cols = [c for c in ("heavy_atoms", "vina", "vinardo", "gnina_cnnaffinity", "gnina_cnnscore")
                if c in base]
        # rescore_poses numbers records from 1, affinity_baselines from 0
        base = base.assign(record=base["record"] + 1).rename(columns={"name": "baseline_name"})
        rows = rows.merge(base[["record", "baseline_name"] + cols], on="record", how="left")
        same = rows["baseline_name"].fillna("").astype(str) == rows["name"].fillna("").astype(str)
        if not bool(same.all()):
            raise RuntimeError(f"{series.ligands}: records of the two scorers do not line up")
        rows = rows.drop(columns="baseline_name")
    else:
        from rdkit import Chem

        mols = list(Chem.SDMolSupplier(series.ligands, removeHs=False))
        rows["heavy_atoms"] = [m.GetNumHeavyAtoms() if m is not None else np.nan for m in mols]
    rows = rows[rows["pK"].notna()]
    if keep is not None:
        rows = rows[[f"{series.target}|{series.name}|{n}" in keep for n in rows["name"]]]
    rows.attrs["seconds"] = {"get": t_get, "baselines": t_base}
    return rows


#: a record that is one of several binding poses of a ligand: ``22g-bindingpose1``
_POSE_SUFFIX = r"-bindingpose\d+$"


def best_pose_per_ligand(table: pd.DataFrame) -> pd.DataFrame:
    """One row per ligand where a series gives several binding poses of it
    (``NAME-bindingposeK``): each method's best score over the poses (by :data:`SIGNS`),
    the ligand's pK and heavy atoms as they are."""
    ligand = table["name"].astype(str).str.replace(_POSE_SUFFIX, "", regex=True)
    if (ligand == table["name"].astype(str)).all():
        return table
    table = table.assign(name=ligand)
    how = {c: ("max" if SIGNS[c] > 0 else "min") for c in SIGNS if c in table and c != "heavy_atoms"}
    how.update({c: "first" for c in table.columns if c not in how and c not in ("target", "series", "name")})
    return table.groupby(["target", "series", "name"], as_index=False, sort=False).agg(how)


def summarise(table: pd.DataFrame) -> dict:
    """Per-target and mean ranking metrics of every method column present."""
    from get_md.train.affinity import ranking_metrics

    out = {}
    for method, sign in SIGNS.items():
        if method not in table or table[method].isna().all():
            continue
        ok = table[table[method].notna()]
        out[method] = ranking_metrics(ok["pK"], sign * ok[method].astype(float), ok["target"])
        out[method]["n_missing"] = int(table[method].isna().sum())
    if "get_std" in table:
        err = (table["get"] - table["pK"]).abs()
        out["get_uncertainty"] = {
            "mean_std": float(table["get_std"].mean()),
            "spearman_std_vs_abs_error": float(pd.Series(table["get_std"]).corr(err, method="spearman")),
            "mae": float(err.mean()),
        }
    return out


def markdown(summary: dict) -> str:
    methods = [m for m in SIGNS if m in summary]
    targets = sorted(next(iter(summary[m]["per_group"] for m in methods)))
    lines = ["| target (n) | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for t in targets:
        n = summary[methods[0]]["per_group"][t]["n"]
        cells = [f"{summary[m]['per_group'].get(t, {}).get('spearman', float('nan')):+.2f}" for m in methods]
        lines.append(f"| {t} ({n}) | " + " | ".join(cells) + " |")
    lines.append("| **mean Spearman** | " + " | ".join(f"**{summary[m]['mean_spearman']:+.2f}**"
                                                      for m in methods) + " |")
    lines.append("| mean Pearson | " + " | ".join(f"{summary[m]['mean_pearson']:+.2f}" for m in methods) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from get_md.train.affinity import HELD_OUT_TARGETS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--schrodinger", help="structure_inputs folder")
    source.add_argument("--plb", help="data folder of openforcefield/protein-ligand-benchmark")
    source.add_argument("--folders", help="a folder of series folders (PROTEIN.pdb + ligands.sdf with IC50 / Kd "
                        "tags), as MCompChem/fep-benchmark")
    ap.add_argument("--openfe", help="with --schrodinger: prepared_structures folder of "
                    "OpenFreeEnergy/IndustryBenchmarks2024, scored instead of the Schrödinger files")
    ap.add_argument("--data", help="folder of `python -m get_md.train.affinity data` (test.pt)")
    ap.add_argument("--model", default=None, help="score model (default: the shipped default)")
    ap.add_argument("--methods", nargs="*", default=["vina", "vinardo", "gnina"])
    ap.add_argument("--targets", nargs="*", default=list(HELD_OUT_TARGETS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    keep = _test_names(args.data)
    tables, seconds = [], {"get": 0.0, "baselines": 0.0}
    if (args.plb or args.openfe or args.folders) and args.data:
        ap.error("--data names the Schrödinger files' test ligands; give it with --schrodinger alone")
    if args.openfe and not args.schrodinger:
        ap.error("--openfe takes its measurements from the Schrödinger series: give --schrodinger too")
    targets = tuple(args.targets)
    if args.openfe:
        from get_md.datasets.affinity import openfe_series

        jobs = [(s, s.measured) for s in openfe_series(args.openfe, args.schrodinger, targets)]
    elif args.folders:
        from get_md.datasets.affinity import folder_series, sdf_activity_pk

        jobs = [(s, sdf_activity_pk(s.ligands)) for s in folder_series(args.folders) if s.target in targets]
    elif args.plb:
        from get_md.datasets.affinity import plb_pk

        jobs = [(s, plb_pk(s)) for s in _held_out_series(args.plb, targets, plb=True)]
    else:
        jobs = [(s, None) for s in _held_out_series(args.schrodinger, targets)]
    for s, measured in jobs:
        t = score_series(s, args.model, list(args.methods), keep, args.threads, measured=measured)
        for k in seconds:
            seconds[k] += t.attrs["seconds"][k]
        print(f"{s.name}: {len(t)} ligands", file=sys.stderr, flush=True)
        tables.append(t)
    table = best_pose_per_ligand(pd.concat(tables, ignore_index=True))
    summary = summarise(table)
    from get_md import export, runtime

    model_meta = export.read_metadata(runtime.resolve_model_path(args.model, task="score"))
    result = {
        "command": " ".join(["python", "benchmarks/bench_affinity.py", *(argv or sys.argv[1:])]),
        "model": {"description": model_meta.get("description"), "weights_sha256": model_meta.get("weights_sha256")},
        "targets": sorted(set(table["target"])),
        "n_ligands": int(len(table)),
        "seconds": seconds,
        "metrics": summary,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    table.to_csv(args.out.with_suffix(".csv"), index=False)
    print(markdown(summary))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
