"""The main job (get-md demo) on the bundled example data, with a tiny model."""

import pandas as pd
import pytest
import torch
from get_md.workflows.demo import example_file, run_demo
from rdkit import Chem

from get_md import export
from get_md.models import build_model


def test_bundled_examples_present():
    for name in ("rec.pdb", "vina_output.sdf", "top.pdb", "traj.xtc"):
        assert example_file(name).stat().st_size > 0
    with pytest.raises(FileNotFoundError, match="nope.pdb"):
        example_file("nope.pdb")


def test_demo_writes_all_outputs(tmp_path):
    torch.manual_seed(0)
    model = build_model("get", d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, cutoff=4.0)
    path = tmp_path / "tiny.pt"
    export.save(model, path)
    out = tmp_path / "demo"
    poses, frames = run_demo(out, model=str(path), stride=50, threads=1, progress=False)
    assert len(poses) == 9
    assert len(frames) == 5
    for name in ("poses.sdf", "poses.csv", "poses_residues.csv", "trajectory.csv", "trajectory.png"):
        assert (out / name).stat().st_size > 0, name
    mols = [m for m in Chem.SDMolSupplier(str(out / "poses.sdf")) if m is not None]
    assert len(mols) == 9 and all(m.HasProp("get_interaction_energy") for m in mols)
    assert len(pd.read_csv(out / "trajectory.csv")) == 5
