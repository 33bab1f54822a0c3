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
        split=split, charge=np.array([1 if i % 5 == 4 else 0 for i in range(n_struct)], dtype=np.int8),
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
    assert [float(x.targets["charge"][0]) for x in train] == [1.0 if i % 5 == 4 else 0.0
                                                               for i in range(len(train))]


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


def test_load_labelled_arrays_of_the_wrong_type_or_length_name_the_array(tmp_path):
    """Element symbols as atomic numbers and a split shorter than n_atoms had come back as a
    bare torch TypeError and a numpy IndexError."""
    path = tmp_path / "toy.npz"
    _write_npz(path)
    good = dict(np.load(path))
    cases = [({"atomic_numbers": np.array(["C"] * good["atomic_numbers"].size)},
              r"atomic_numbers must be integers, got dtype <U1 \(element symbols\?\)"),
             ({"split": good["split"][:3]}, r"split holds 3 values for 12 structures"),
             ({"forces": good["forces"][:-2]}, r"forces has shape \(\d+, 3\); expected \(\d+, 3\)"),
             ({"positions": good["positions"][:, :2]}, r"positions has shape \(\d+, 2\)")]
    for change, message in cases:
        bad = tmp_path / "bad.npz"
        np.savez(bad, **{**good, **change})
        with pytest.raises(DatasetError, match="bad.npz: " + message):
            load_labelled(bad, "train")


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


def test_neutral_energy_only_loss_and_reference_fit(tmp_path):
    from get_md.models import build_model
    from get_md.train.batching import collate
    from get_md.train.loop import fit_energy_statistics
    from get_md.train.loss import WeightedLoss

    path = tmp_path / "toy.npz"
    _write_npz(path, n_struct=16)
    data = load_labelled(path, "train")
    graph, targets = collate([data[i] for i in range(len(data))])
    n = torch.bincount(graph.atom_batch_ids, minlength=graph.num_graphs)
    charged = targets["charge"] != 0
    assert charged.any() and (~charged).any()
    out = {"energy": targets["energy"] + 10.0 * targets["charge"], "forces": targets["forces"] + 0.1}
    loss_all = WeightedLoss({"energy": 1.0, "forces": 1.0})
    loss_neutral = WeightedLoss({"energy": 1.0, "forces": 1.0}, neutral_energy_only=True)
    errs = loss_neutral.errors(out, targets, n)
    assert errs["energy"].numel() == int((~charged).sum())  # the ions' offsets are not scored
    assert float(errs["energy"].abs().max()) < 1e-9
    assert errs["forces"].numel() == targets["forces"].numel()  # forces of all structures
    assert loss_all.errors(out, targets, n)["energy"].abs().max() > 1.0
    # a batch of ions only: finite zero energy term
    ion = [i for i in range(len(data)) if float(data[i].targets["charge"][0]) != 0][:1]
    g1, t1 = collate([data[i] for i in ion])
    total, terms = loss_neutral({"energy": t1["energy"] + 5, "forces": t1["forces"]}, t1,
                                torch.tensor([g1.num_atoms]))
    assert float(terms["energy"]) == 0.0 and torch.isfinite(total)
    # the per-element reference energies are fitted to neutral structures only
    shifted = [type(s)(s.graph, {**s.targets, "energy": s.targets["energy"] + 100.0 * s.targets["charge"]})
               for s in data.samples]
    model = build_model("get", d_hidden=8, d_radial=4, n_rbf=4, n_head=2, n_layers=1, d_edge=0,
                        cutoff=4.0, mode="potential", task="energy")
    fit_a = fit_energy_statistics(model, type(data)(shifted))
    fit_b = fit_energy_statistics(model, data)
    assert fit_a["atom_ref"] == pytest.approx(fit_b["atom_ref"], abs=1e-9)


def test_recipe_fine_tunes_from_a_checkpoint(tmp_path):
    from get_md.train.potential import main

    torch.set_num_threads(1)
    path = tmp_path / "toy.npz"
    _write_npz(path, n_struct=16)
    tiny = json.dumps(dict(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, d_edge=4, cutoff=4.0))
    first = tmp_path / "first"
    assert main(["--data", str(path), "--out", str(first), "--model", tiny, "--epochs", "1",
                 "--max-blocks", "40"]) == 0
    best = torch.load(first / "best.pt", weights_only=True)["model"]
    second = tmp_path / "second"
    assert main(["--data", str(path), "--out", str(second), "--model", tiny, "--epochs", "1",
                 "--max-blocks", "40", "--init", str(first / "best.pt"), "--lr", "1e-12"]) == 0
    tuned = torch.load(second / "best.pt", weights_only=True)["model"]
    for k, v in best.items():  # lr ~ 0: the fine-tuned weights stay those it started from
        torch.testing.assert_close(tuned[k], v, atol=1e-6, rtol=0)
    report = json.loads((second / "metrics.json").read_text())
    assert report["test"]["n_neutral"] <= report["test"]["n_structures"]
    assert "neutral_energy_mae_meV_per_atom" in report["test"]


def test_old_shipped_data_path_names_the_new_location(tmp_path):
    """Training commands stored in older model files read ``get_md/zoo/data/...`` (the data
    moved to ``get_md/datasets/data/``) or ``xtb_organic_v1.npz`` (withdrawn: it held records
    of a held-out target); the error says where to look instead."""
    from get_md.datasets import DATA_DIR

    for old in (tmp_path / "get_md" / "zoo" / "data" / "xtb_organic_v1.npz", DATA_DIR / "xtb_organic_v1.npz"):
        with pytest.raises(DatasetError, match=r"xtb_organic_v1\.npz: labelled data file not found; "
                                               r"xtb_organic_v1\.npz was withdrawn .* use .*datasets.data.xtb_organic_v2\.npz"):
            load_labelled(old)
    assert (DATA_DIR / "xtb_organic_v2.npz").is_file()
    moved = tmp_path / "get_md" / "zoo" / "data" / "xtb_organic_v2.npz"
    with pytest.raises(DatasetError, match=r"the shipped data moved .* to .*datasets.data.xtb_organic_v2\.npz"):
        load_labelled(moved)
    # any other missing file gets the plain message
    with pytest.raises(DatasetError, match=r"missing\.npz: labelled data file not found$"):
        load_labelled(tmp_path / "get_md" / "zoo" / "data" / "missing.npz")


def test_held_out_targets_never_reach_training(tmp_path):
    """Records from a source named for a held-out target (here "cdk2") are refused by the
    loader; drop_excluded removes them, keeping every per-atom and per-structure array
    aligned; the shipped data sets hold none."""
    from get_md.datasets import DATA_DIR
    from get_md.datasets.xtb.store import drop_excluded, excluded_mask

    path = tmp_path / "mixed.npz"
    n_atoms, split = _write_npz(path, n_struct=12)
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    data["source"] = np.array([f"cdk2:{i}:conf0:frame0" if i in (1, 9) else f"qm9:{i}:conf0:frame0"
                               for i in range(12)])
    data["meta"] = np.array('{"seed": 0}')
    np.savez_compressed(path, **data)
    with pytest.raises(DatasetError, match=r"mixed\.npz: has records of targets held out.*cdk2"):
        load_labelled(path)
    clean = tmp_path / "clean.npz"
    assert drop_excluded(path, clean) == {"cdk2": 2}
    ds = load_labelled(clean)
    keep = [i for i in range(12) if i not in (1, 9)]
    assert len(ds) == 10
    offsets = np.concatenate([[0], np.cumsum(n_atoms)])
    for sample, i in zip(ds, keep, strict=True):
        want = data["positions"][offsets[i]:offsets[i + 1]]
        np.testing.assert_allclose(sample.graph.positions.numpy(), want)
    with np.load(clean) as z:
        assert list(z["split"]) == [split[i] for i in keep]
        assert '"dropped": {"cdk2": 2}' in str(z["meta"])
    shipped_files = sorted(DATA_DIR.glob("*.npz"))
    assert shipped_files
    for shipped in shipped_files:
        with np.load(shipped) as z:
            assert not excluded_mask(z["source"]).any(), shipped


def _molecule_npz(path, n_struct=24, seed=0, **scale):
    """Geometries of one 5-atom molecule around a reference (bonds 0.96-1.0 Å), harmonic
    energies (eV) and their forces (eV/Å); ``scale`` multiplies arrays (a unit mistake)."""
    rng = np.random.default_rng(seed)
    ref = np.array([[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0], [2.5, 0.3, 0.1], [3.5, 0.3, 0.1]])
    pos = ref + rng.normal(scale=0.05, size=(n_struct, 5, 3))
    arrays = {"positions": pos.reshape(-1, 3), "atomic_numbers": np.tile([8, 1, 1, 6, 1], n_struct),
              "n_atoms": np.full(n_struct, 5), "energy": -150 + 10 * ((pos - ref) ** 2).sum(axis=(1, 2)),
              "forces": (-20 * (pos - ref)).reshape(-1, 3),
              "source": np.array([f"mol:{i}" for i in range(n_struct)])}
    for key, factor in scale.items():
        arrays[key] = arrays[key] * factor
    np.savez(path, **arrays)
    return arrays


def test_load_labelled_refuses_overlapping_atoms_and_far_coordinates(tmp_path):
    """Two atoms 0.02 Å apart, positions in nm (bonds ~0.1 'Å') and a coordinate of 1e9 Å had
    been read as they were, and trained on."""
    path = tmp_path / "m.npz"
    arrays = _molecule_npz(path)
    pos = arrays["positions"].copy()
    pos[7] = pos[5] + 0.02  # structure 1, atoms 1 and 3
    np.savez(path, **{**arrays, "positions": pos})
    with pytest.raises(DatasetError, match=r"m\.npz: structure 1 \(mol:1\): atoms 1 and 3 are 0\.0346 Å "
                                           r"apart \(overlapping atoms"):
        load_labelled(path)
    _molecule_npz(path, positions=0.1)
    with pytest.raises(DatasetError, match=r"structure 0 \(mol:0\): .*overlapping atoms.*positions in nm\?"):
        load_labelled(path)
    pos = arrays["positions"].copy()
    pos[12, 2] = 1e9
    np.savez(path, **{**arrays, "positions": pos})
    with pytest.raises(DatasetError, match=r"structure 2 \(mol:2\): atom 3 has coordinate .* beyond"):
        load_labelled(path)


def test_load_labelled_refuses_fractional_charge_and_an_empty_file(tmp_path):
    path = tmp_path / "m.npz"
    arrays = _molecule_npz(path)
    np.savez(path, **{**arrays, "charge": np.r_[0, 0, 0.5, np.zeros(21)]})
    with pytest.raises(DatasetError, match=r"structure 2 \(mol:2\): total charge 0\.5 is not a whole"):
        load_labelled(path)
    np.savez(path, positions=np.zeros((0, 3)), atomic_numbers=np.zeros(0, int), n_atoms=np.zeros(0, int),
             energy=np.zeros(0), forces=np.zeros((0, 3)))
    with pytest.raises(DatasetError, match=r"m\.npz: holds no structures"):
        load_labelled(path)


@pytest.mark.parametrize("scale, words", [
    ({}, None),
    ({"positions": 1.8897, "forces": 1 / 1.8897}, "positions in Bohr"),
    ({"forces": 23.06}, "RMS force component"),
    ({"energy": 23.06}, "energy differences between geometries"),
    ({"forces": 1 / 23.06}, "energy differences between geometries"),
])
def test_load_labelled_warns_about_likely_unit_mistakes(tmp_path, caplog, scale, words):
    """Lengths in Bohr, forces in kcal/mol/Å, energies in kcal/mol with forces in eV/Å: a
    warning naming the file (the data are still read: such values are possible)."""
    path = tmp_path / "m.npz"
    _molecule_npz(path, **scale)
    with caplog.at_level("WARNING", logger="get_md.train.labelled"):
        assert len(load_labelled(path)) == 24
    messages = [r.getMessage() for r in caplog.records]
    if words is None:
        assert messages == []
    else:
        assert messages and all(str(path) in m for m in messages), messages
        assert any(words in m for m in messages), messages


def test_recipe_bad_model_json_names_the_option(tmp_path, capsys):
    """--model with broken JSON had failed, after reading the data, with json's bare message."""
    from get_md.cli import run_module
    from get_md.train.potential import main

    rc = run_module(main, "python -m get_md.train.potential",
                    ["--data", str(tmp_path / "absent.npz"), "--out", str(tmp_path / "run"),
                     "--model", '{"d_hidden": 16,'])
    assert rc == 2
    assert capsys.readouterr().err.strip() == (
        "python -m get_md.train.potential: error: --model '{\"d_hidden\": 16,': invalid JSON "
        "(line 1 column 17: Expecting property name enclosed in double quotes)")
