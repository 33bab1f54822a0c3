"""Shared pieces of the rescore-poses tests (tests/test_poses.py, tests/test_poses_runs.py):
input files, the tiny models and the baseline run."""

from __future__ import annotations

from pathlib import Path

import torch
from get_md.workflows.poses import rescore_poses
from rdkit import Chem

DATA = Path(__file__).parent / "data"
REC = DATA / "prolif" / "rec.pdb"
LIG_PDB = DATA / "prolif" / "lig.pdb"
POSES_SDF = DATA / "prolif" / "vina_output.sdf"
POSES_MOL2 = DATA / "prolif" / "vina_output.mol2"
POSE_PDBQT = DATA / "prolif" / "vina_output_ligand_1.pdbqt"
P1IA1 = DATA / "posebusters" / "1ia1" / "1ia1_protein_one_lig_removed.pdb"
L1IA1 = DATA / "posebusters" / "1ia1" / "1ia1_ligand.sdf"

TINY = dict(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, cutoff=5.0)
#: small pocket (about 400 atoms) so that each run takes about a second
COMMON = dict(reference=LIG_PDB, pocket_radius=4.0, batch_size=4, progress=False)


def make_models(tmp_path_factory) -> dict[str, Path]:
    from get_md.export import save
    from get_md.models import build_model

    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    save(build_model("get", **TINY), d / "energy.pt")
    save(build_model("get", mode="score", task="score", **TINY), d / "score.pt")
    return {"energy": d / "energy.pt", "score": d / "score.pt"}


def make_baseline(models, tmp_path_factory):
    """One uninterrupted single-process run with a potential: table + output files."""
    d = tmp_path_factory.mktemp("baseline")
    df = rescore_poses(REC, POSES_SDF, models["energy"], out_csv=d / "out.csv", out_sdf=d / "out.sdf",
                       per_residue=True, **COMMON)
    return df, d


def read_sdf(path):
    return [m for m in Chem.SDMolSupplier(str(path), removeHs=False)]
