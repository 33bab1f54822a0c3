"""Interaction energies of the shipped potential against GFN2-xTB on docking poses.

The rescoring workflows report E(complex) - E(pocket) - E(ligand) with the shipped
potential on pockets of thousands of atoms, too large for xTB here. This benchmark
checks those numbers where xTB can follow: for each Vina pose of the bundled example
(prolif's GPCR ligand, 9 poses, not in the training data; training saw MD frames of
the crystal pose), a cluster of the ligand and the receptor's whole residues with a
heavy atom within ``--radius`` Å of a ligand heavy atom, cut bonds capped with H (as
the training clusters were made), is scored by both:

* GFN2-xTB (tblite; total charges from the formal charges: the receptor's inferred by
  MDAnalysis' RDKit converter, the ligand's from its SDF record);
* the shipped potential (``GETCalculator``, float64).

Writes one JSON with the per-pose values (kcal/mol), MAE, Pearson and Spearman
correlation between the two, and Spearman against Vina's pose order (best first); per-pose results are
saved as they come, and a rerun skips poses already done.

    python benchmarks/bench_interaction_xtb.py --radius 4 --out benchmarks/results/bench_interaction_xtb.json
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from get_md.units import EV_TO_KCAL_MOL


def receptor_mol(path: Path):
    """The receptor PDB as an RDKit molecule with bond orders and formal charges
    inferred by MDAnalysis (needs all hydrogens), and its positions (Å)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import MDAnalysis as mda

        u = mda.Universe(str(path))
        mol = u.select_atoms("protein").convert_to("RDKIT")
    order = np.array([a.GetIntProp("_MDAnalysis_index") for a in mol.GetAtoms()])
    pos = np.asarray(u.atoms.positions, dtype=np.float64)[order]
    return mol, pos


def pocket_cluster(rec, rec_pos: np.ndarray, lig, radius: float):
    """Capped cluster of the receptor residues with a heavy atom within ``radius`` Å of
    a ligand heavy atom."""
    from get_md.datasets.xtb import cut_cluster

    lig_pos = lig.GetConformer().GetPositions()
    lig_heavy = lig_pos[[a.GetAtomicNum() > 1 for a in lig.GetAtoms()]]
    heavy = np.array([a.GetAtomicNum() > 1 for a in rec.GetAtoms()])
    d = np.linalg.norm(rec_pos[:, None, :] - lig_heavy[None], axis=-1).min(axis=1)
    key = np.array([f"{a.GetPDBResidueInfo().GetChainId()}:{a.GetPDBResidueInfo().GetResidueNumber()}"
                    for a in rec.GetAtoms()])
    near = set(key[(d < radius) & heavy])
    ids = np.flatnonzero(np.isin(key, sorted(near)))
    return cut_cluster(rec, ids, rec_pos), sorted(near)


def xtb_energy(mol) -> float:
    from rdkit import Chem

    from get_md.datasets.xtb import xtb_label

    nums = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    e, _ = xtb_label(nums, mol.GetConformer().GetPositions(), Chem.GetFormalCharge(mol))
    return e


def get_energy(calc, mol) -> float:
    from ase import Atoms

    atoms = Atoms(numbers=[a.GetAtomicNum() for a in mol.GetAtoms()], positions=mol.GetConformer().GetPositions())
    atoms.calc = calc
    return float(atoms.get_potential_energy())


def _ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x)).astype(float)


def _stats(a: list, b: list) -> dict:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3:
        return {}
    return {"pearson": float(np.corrcoef(a, b)[0, 1]), "spearman": float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])}


def main() -> None:
    from get_md.plugins.ase import GETCalculator
    from get_md.workflows.demo import example_file
    from rdkit import Chem

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--radius", type=float, default=4.0, help="Å, receptor residues kept around the ligand")
    p.add_argument("--poses", type=int, default=9, help="first N poses of the example")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/bench_interaction_xtb.json"))
    p.add_argument("--recompute-model", action="store_true",
                   help="keep the stored GFN2-xTB energies of poses already done (they do not depend on "
                        "the model) and recompute the potential's (after the shipped potential changed)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    if result.get("radius") != args.radius:
        result = {"radius": args.radius, "poses": {}}
    rec, rec_pos = receptor_mol(example_file("rec.pdb"))
    poses = list(Chem.SDMolSupplier(str(example_file("vina_output.sdf")), removeHs=False))[:args.poses]
    calc = GETCalculator(dtype=torch.float64)
    result["model"] = {"name": calc.potential.source, "weights_sha256": calc.potential.metadata.get("weights_sha256")}
    for k, lig in enumerate(poses, 1):
        done = result["poses"].get(str(k))
        if done is not None and not args.recompute_model:
            continue
        t0 = time.time()
        pocket, residues = pocket_cluster(rec, rec_pos, lig, args.radius)
        cplx = Chem.CombineMols(pocket, lig)
        e_g = {name: get_energy(calc, m) for name, m in (("complex", cplx), ("pocket", pocket), ("ligand", lig))}
        if done is not None:
            done["get_kcal_mol"] = (e_g["complex"] - e_g["pocket"] - e_g["ligand"]) * EV_TO_KCAL_MOL
            print(f"pose {k}: GET {done['get_kcal_mol']:.1f} kcal/mol (xTB kept: {done['xtb_kcal_mol']:.1f})",
                  flush=True)
            continue
        e_x = {name: xtb_energy(m) for name, m in (("complex", cplx), ("pocket", pocket), ("ligand", lig))}
        row = {
            "vina_rank": k,  # Vina writes its poses best first (the SDF carries no scores)
            "n_atoms": cplx.GetNumAtoms(), "n_residues": len(residues),
            "charge_pocket": Chem.GetFormalCharge(pocket), "charge_ligand": Chem.GetFormalCharge(lig),
            "xtb_kcal_mol": (e_x["complex"] - e_x["pocket"] - e_x["ligand"]) * EV_TO_KCAL_MOL,
            "get_kcal_mol": (e_g["complex"] - e_g["pocket"] - e_g["ligand"]) * EV_TO_KCAL_MOL,
            "seconds": time.time() - t0,
        }
        result["poses"][str(k)] = row
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        print(f"pose {k}: {row['n_atoms']} atoms, xTB {row['xtb_kcal_mol']:.1f}, GET {row['get_kcal_mol']:.1f} "
              f"kcal/mol ({row['seconds']:.0f} s)", flush=True)
    rows = [result["poses"][str(k)] for k in range(1, len(poses) + 1)]
    x = [r["xtb_kcal_mol"] for r in rows]
    g = [r["get_kcal_mol"] for r in rows]
    summary = {"n": len(rows), "mae_kcal_mol": float(np.mean(np.abs(np.subtract(g, x)))),
               "mean_signed_kcal_mol": float(np.mean(np.subtract(g, x))),
               "get_vs_xtb": _stats(g, x)}
    vina = [r["vina_rank"] for r in rows]
    if len(rows) >= 3:
        summary["spearman_xtb_vs_vina_rank"] = _stats(x, vina)["spearman"]
        summary["spearman_get_vs_vina_rank"] = _stats(g, vina)["spearman"]
    result["summary"] = summary
    result["command"] = "python benchmarks/bench_interaction_xtb.py " + " ".join(
        f"--{k} {v}" for k, v in (("radius", args.radius), ("poses", args.poses), ("threads", args.threads))) + (
        " --recompute-model" if args.recompute_model else "")
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
