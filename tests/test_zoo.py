"""Every shipped model file: loads with its digest, says what it is, and behaves physically."""

import numpy as np
import pytest
import torch
from ase.build import molecule

from get_md import export, zoo

SHIPPED = sorted(zoo.available())


def test_registry_defaults_point_to_shipped_files():
    reg = zoo.registry()
    for key in ("default_potential", "default_score"):
        name = reg.get(key)
        if name:
            assert zoo.path(name).exists()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_and_describes_itself(name):
    module, meta = export.load(zoo.path(name))  # checks format version and SHA-256
    assert meta["family"] in ("get", "geomformer")
    nbody = meta.get("application") == "nbody"  # N-body models work in the simulation's units
    assert meta["units"]["length"] == ("simulation units" if nbody else "angstrom")
    assert meta.get("description")
    assert meta["training"].get("command"), "provenance: the command that trained it"


@pytest.mark.parametrize("name", [n for n in SHIPPED if zoo.available()[n].get("task") == "energy"])
def test_shipped_potential_on_a_drug_like_molecule(name):
    from get_md.plugins.ase import GETCalculator

    torch.set_num_threads(1)
    meta = export.read_metadata(zoo.path(name))
    metrics = meta["training"]["metrics"]["test"]
    assert metrics["n_structures"] > 100 and np.isfinite(metrics["forces_mae_meV_per_A"])
    atoms = molecule("CH3CH2OH")
    atoms.calc = GETCalculator(name, dtype=torch.float64)
    e0 = atoms.get_potential_energy()
    f = atoms.get_forces()
    assert np.isfinite(e0) and np.isfinite(f).all()
    # translation and rotation invariance of the shipped file, and forces = -dE/dx
    atoms2 = atoms.copy()
    atoms2.rotate(37, "x", center="COM")
    atoms2.translate([1.0, -2.0, 0.5])
    atoms2.calc = GETCalculator(name, dtype=torch.float64)
    assert abs(atoms2.get_potential_energy() - e0) < 1e-8
    h = 1e-4
    p = atoms.get_positions()
    for i, a in [(0, 0), (3, 2)]:
        dp = p.copy()
        dp[i, a] += h
        atoms.set_positions(dp)
        ep = atoms.get_potential_energy()
        dp[i, a] -= 2 * h
        atoms.set_positions(dp)
        em = atoms.get_potential_energy()
        assert abs(-(ep - em) / (2 * h) - f[i, a]) < 1e-5 * max(1.0, abs(f[i, a]))
        atoms.set_positions(p)


@pytest.mark.parametrize("name", [n for n in SHIPPED if zoo.available()[n].get("task") == "vectors"])
def test_shipped_nbody_model_on_fresh_trajectories(name):
    """The shipped N-body model on 300 systems of a seed no training run used: well below the
    constant-velocity baseline and near its reported test MSE; equivariant in float64."""
    from get_md.workflows import nbody

    torch.set_num_threads(1)
    data = nbody.simulate(300, seed=4242, n_frames=41)
    res = nbody.evaluate(name, data)
    assert res["n_samples"] == 300
    assert res["mse"] < 0.006 < res["baselines"]["constant_velocity"]
    module, _meta, _label = nbody.load_nbody_model(name, dtype=torch.float64)
    s = nbody.make_samples(data, max_samples=8, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    shift = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    out = nbody.predict(module, s.positions, s.velocities, s.charges)
    rot = nbody.predict(module, s.positions @ q.T + shift, s.velocities @ q.T, s.charges)
    for k in out:
        torch.testing.assert_close(rot[k], out[k] @ q.T, atol=1e-9, rtol=1e-9)


AFFINITY = __import__("pathlib").Path(__file__).parent / "data" / "affinity"


@pytest.mark.parametrize("name", [n for n in SHIPPED if zoo.available()[n].get("task") == "score"])
def test_shipped_score_model_on_its_held_out_met_series(name, tmp_path):
    """The shipped affinity model on c-Met (a held-out target, tests/data/affinity): the
    workflow reproduces the per-target figure recorded in the file, gives an ensemble
    spread, scores crystal-like inputs without hydrogens as it scores the file, and its
    training data hold no excluded target."""
    import pandas as pd
    from get_md.workflows.poses import rescore_poses
    from rdkit import Chem

    from get_md.datasets.affinity import pk_from_dg
    from get_md.datasets.targets import is_excluded

    torch.set_num_threads(1)
    meta = export.read_metadata(zoo.path(name))
    held = meta["training"]["metrics"]["held_out"]["model"]["per_group"]
    targets = meta["training"]["dataset"]["targets"]
    assert "MET" in targets["test"] and "MET" not in targets["train"] + targets["valid"]
    assert not any(is_excluded(t) for t in targets["train"] + targets["valid"] + targets["test"])
    rec, ligs = AFFINITY / "cmet_protein.pdb", AFFINITY / "cmet_ligands.sdf"
    df = rescore_poses(rec, ligs, name, add_hydrogens="no", sort="none", progress=False, parallel=1)
    assert len(df) == 24 and (df["status"] == "ok").all()
    assert df["score"].between(2.0, 13.0).all() and (df["score_std"] > 0).all()
    pk = [pk_from_dg(v) for v in df["r_exp_dg"]]
    rho = pd.Series(df["score"]).corr(pd.Series(pk), method="spearman")
    assert abs(rho - held["MET"]["spearman"]) < 0.1   # union pocket here, one per ligand there
    # hydrogens removed from the poses (as in a crystal structure): the same scores
    bare = tmp_path / "bare.sdf"
    with Chem.SDWriter(str(bare)) as w:
        for m in Chem.SDMolSupplier(str(ligs), removeHs=False):
            w.write(Chem.RemoveHs(m))
    # (one pocket for both: the first pose, with hydrogens, defines it)
    df = rescore_poses(rec, ligs, name, reference=ligs, add_hydrogens="no", sort="none", progress=False,
                       parallel=1)
    df2 = rescore_poses(rec, bare, name, reference=ligs, add_hydrogens="no", sort="none",
                        progress=False, parallel=1)
    assert (df2["score"] - df["score"]).abs().max() < 1e-4
