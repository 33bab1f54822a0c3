"""Ligand-only baselines of within-series ranking: heavy-atom count, logP, and a ridge fit
of 2D descriptors, on Uni-FEP-Benchmarks' congeneric series split by target.

Does a score that sees only the ligand's 2D structure rank the ligands of a held-out
series better than its size? Every non-excluded series of Uni-FEP-Benchmarks with at
least ``--min-ligands`` measured ligands (SMILES and experimental ΔG of
``result_dG.csv``; the set's FEP predictions are not read; series of the targets reserved
for independent evaluation are skipped by name, :func:`get_md.datasets.unifep_sources.skip_reason`)
is split by target as the affinity recipe splits it: ``VALID_TARGETS`` for validation,
``HELD_OUT_TARGETS`` held out, the rest training (``get_md.train.affinity``). Descriptors
(RDKit, heavy-atom graph): heavy atoms, Crippen logP and molar refractivity, TPSA, H-bond
donors and acceptors, rotatable bonds, aromatic rings, fraction sp3, halogens, formal
charge, N and O counts. The ridge model is fitted to the within-series differences of the
training series (descriptors and pK minus their series means, features scaled,
``--ridge``), so it learns what separates analogues, not what separates targets.

Reported per split: mean Spearman over series and over targets (each target the mean of its
series). Result: ``benchmarks/results/ligand_descriptor_baseline.json``.

    python benchmarks/ligand_descriptor_baseline.py --repo Uni-FEP-Benchmarks   # ~15 s
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plugin_common import command_line, write_result  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "ligand_descriptor_baseline.json"
#: kcal/mol per pK unit at 298.15 K
RT_LN10 = 0.0019872043 * 298.15 * math.log(10)
FEATURES = ("heavy", "logp", "mr", "tpsa", "hbd", "hba", "rotb", "arom", "fsp3", "halogens",
            "charge", "n_N", "n_O")


def descriptors(mol) -> dict:
    """The 2D descriptors of :data:`FEATURES` for an RDKit molecule (hydrogens removed)."""
    from rdkit import Chem
    from rdkit.Chem import Crippen, rdMolDescriptors

    symbols = [a.GetSymbol() for a in mol.GetAtoms()]
    return {"heavy": mol.GetNumHeavyAtoms(), "logp": Crippen.MolLogP(mol), "mr": Crippen.MolMR(mol),
            "tpsa": rdMolDescriptors.CalcTPSA(mol), "hbd": rdMolDescriptors.CalcNumHBD(mol),
            "hba": rdMolDescriptors.CalcNumHBA(mol), "rotb": rdMolDescriptors.CalcNumRotatableBonds(mol),
            "arom": rdMolDescriptors.CalcNumAromaticRings(mol),
            "fsp3": rdMolDescriptors.CalcFractionCSP3(mol),
            "halogens": sum(s in ("F", "Cl", "Br", "I") for s in symbols),
            "charge": Chem.GetFormalCharge(mol), "n_N": symbols.count("N"), "n_O": symbols.count("O")}


def read_ligands(repo: str) -> pd.DataFrame:
    """One row per measured ligand of every non-excluded, non-peptide series."""
    from rdkit import Chem, RDLogger

    from get_md.datasets.unifep_sources import (
        SERIES_DIR,
        list_series,
        read_source,
        series_target,
        skip_reason,
    )

    RDLogger.DisableLog("rdApp.*")
    rows = []
    for folder in list_series(repo):
        if skip_reason(folder):
            continue
        try:
            table = pd.read_csv(io.BytesIO(read_source(repo, f"{SERIES_DIR}/{folder}/result_dG.csv")))
        except FileNotFoundError:
            continue
        dg_col = next(c for c in table.columns if c.startswith("exp_dG"))
        for smiles, dg in zip(table["ligand_smiles"].astype(str), table[dg_col], strict=True):
            mol = Chem.MolFromSmiles(smiles) if np.isfinite(dg) else None
            if mol is None:
                continue
            rows.append({"series": folder, "target": series_target(folder), "pk": -float(dg) / RT_LN10,
                         **descriptors(Chem.RemoveHs(mol))})
    return pd.DataFrame(rows)


def split_of(targets: pd.Series) -> np.ndarray:
    from get_md.train.affinity import HELD_OUT_TARGETS, VALID_TARGETS

    return np.where(targets.isin(HELD_OUT_TARGETS), "held_out",
                    np.where(targets.isin(VALID_TARGETS), "valid", "train"))


def ranking(df: pd.DataFrame, pred: pd.Series, part: str) -> dict:
    """Mean Spearman over the series and over the targets of one split."""
    from scipy.stats import spearmanr

    d = df[df["split"] == part].assign(pred=pred[df["split"] == part])
    per_series = {s: float(spearmanr(g["pred"], g["pk"])[0]) for s, g in d.groupby("series")
                  if g["pred"].nunique() > 1 and g["pk"].nunique() > 1}
    target_of = d.groupby("series")["target"].first()
    per_target = pd.Series(per_series).groupby(target_of[list(per_series)].values).mean()
    return {"per_series": float(np.mean(list(per_series.values()))), "per_target": float(per_target.mean()),
            "n_series": len(per_series), "n_targets": int(per_target.size)}


def fit_ridge(df: pd.DataFrame, features: list[str], lam: float) -> tuple[np.ndarray, pd.Series]:
    """Weights of a ridge fit of within-series pK differences on within-series descriptor
    differences (training split, features scaled); the prediction for every row."""
    centred = df[features] - df.groupby("series")[features].transform("mean")
    y = df["pk"] - df.groupby("series")["pk"].transform("mean")
    train = (df["split"] == "train").values
    x = centred.values[train]
    scale = x.std(axis=0) + 1e-9
    xs = x / scale
    w = np.linalg.solve(xs.T @ xs + lam * np.eye(len(features)), xs.T @ y.values[train]) / scale
    return w, pd.Series(centred.values @ w, index=df.index)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", required=True, help="Uni-FEP-Benchmarks (checkout or bare git repository)")
    p.add_argument("--min-ligands", type=int, default=8)
    p.add_argument("--ridge", type=float, nargs="+", default=[1.0, 100.0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)

    df = read_ligands(args.repo)
    df = df[df.groupby("series")["pk"].transform("size") >= args.min_ligands].copy()
    df["split"] = split_of(df["target"])
    sizes = {part: {"ligands": int((df["split"] == part).sum()),
                    "series": int(df.loc[df["split"] == part, "series"].nunique()),
                    "targets": int(df.loc[df["split"] == part, "target"].nunique())}
             for part in ("train", "valid", "held_out")}
    methods = {"heavy_atoms": {"prediction": df["heavy"]}, "logp": {"prediction": df["logp"]}}
    for name, features in (("ridge_heavy_logp", ["heavy", "logp"]), ("ridge_all", list(FEATURES))):
        for lam in args.ridge:
            w, pred = fit_ridge(df, features, lam)
            methods[f"{name}_lambda{lam:g}"] = {"prediction": pred,
                                                "weights": dict(zip(features, np.round(w, 4).tolist(), strict=True))}
    results = {}
    for name, m in methods.items():
        results[name] = {part: ranking(df, m["prediction"], part) for part in ("train", "valid", "held_out")}
        if "weights" in m:
            results[name]["weights_pk_per_unit"] = m["weights"]
        print(f"{name:28s} " + "  ".join(f"{part} {r['per_series']:+.3f} / {r['per_target']:+.3f}"
                                         for part, r in results[name].items() if part != "weights_pk_per_unit"))
    write_result(args.out, {"command": command_line("ligand_descriptor_baseline.py", argv),
                            "source": "dptech-corp/Uni-FEP-Benchmarks", "splits": sizes,
                            "metric": "mean Spearman per series / per target (series of >= min_ligands)",
                            "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
