"""Labelled .npz datasets and the potential training recipe, end to end on tiny data."""

import json

import numpy as np
import pytest
import torch

from get_md.train.data import DatasetError
from get_md.train.labelled import load_labelled


def _write_npz(path, n_struct=12, seed=0):
    rng = np.random.default_rng(seed)
    n_atoms = rng.integers(3, 6, n_struct)
    pos, z, f, e = [], [], [], []
    for n in n_atoms:
        p = rng.normal(size=(n, 3)) * 1.2
        # a harmonic toy energy with analytic forces, so labels are consistent
        e.append(0.5 * float((p ** 2).sum()) - 1.0 * n)
        f.append(-p)
        pos.append(p)
        z.append(rng.choice([1, 6, 8], size=n))
    split = np.array(["train"] * (n_struct - 4) + ["valid"] * 2 + ["test"] * 2)
    np.savez_compressed(
        path, positions=np.concatenate(pos), atomic_numbers=np.concatenate(z), n_atoms=n_atoms,
        energy=np.array(e), forces=np.concatenate(f), source=np.array([f"toy:{i}" for i in range(n_struct)]),
        split=split,
    )
    return n_atoms, split


def test_load_labelled_splits(tmp_path):
    path = tmp_path / "toy.npz"
    n_atoms, split = _write_npz(path)
    train = load_labelled(path, "train")
    assert len(train) == int((split == "train").sum())
    s = train[0]
    assert s.targets["forces"].shape == (int(n_atoms[0]), 3)
    assert s.graph.label().endswith("toy:0")
    assert len(load_labelled(path)) == len(split)


def test_load_labelled_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="missing.npz"):
        load_labelled(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, positions=np.zeros((2, 3)))
    with pytest.raises(DatasetError, match="bad.npz.*missing arrays"):
        load_labelled(bad)
    path = tmp_path / "toy.npz"
    _write_npz(path)
    with pytest.raises(DatasetError, match="split 'nope'"):
        load_labelled(path, "nope")


def test_recipe_trains_evaluates_and_exports(tmp_path):
    from get_md import export
    from get_md.train.potential import main

    torch.set_num_threads(1)
    path = tmp_path / "toy.npz"
    _write_npz(path, n_struct=16)
    out = tmp_path / "run"
    tiny = json.dumps(dict(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, d_edge=4, cutoff=4.0))
    assert main(["--data", str(path), "--out", str(out), "--model", tiny, "--epochs", "2",
                 "--max-blocks", "40"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["test"]["n_structures"] == 2
    assert np.isfinite(report["test"]["forces_mae_meV_per_A"])
    module, meta = export.load(out / "model-final.pt")
    assert meta["training"]["metrics"]["test"]["n_structures"] == 2
    assert meta["elements"] == ["H", "C", "O"]
