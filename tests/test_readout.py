"""Refitting a score ensemble's heads on frozen block terms (get_md.train.readout)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from get_md import export
from get_md.models.ensemble import build_ensemble
from get_md.train import readout

DATA = Path(__file__).parent / "data"
REC = DATA / "prolif" / "rec.pdb"
POSES = DATA / "prolif" / "vina_output.sdf"

TINY = dict(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, cutoff=8.0, mode="score", task="score",
            heavy_atoms_only=True, contact_radius=4.0, receptor_radius=6.0)


@pytest.fixture(scope="module")
def series_data(tmp_path_factory):
    """train / valid / test splits of prolif analogues (two training series), report.json."""
    from affinity_helpers import _sdf_with_dg

    from get_md.datasets.affinity import Series, build_dataset

    root = tmp_path_factory.mktemp("readout")
    data = root / "data"
    data.mkdir()
    sdf = _sdf_with_dg(POSES, root / "l.sdf", [-9.0, -8.0, -7.0, -6.5, -7.5], list("abcde"))
    splits = {"train": [Series("SYK", "SYK-1", str(REC), str(sdf), "test"),
                        Series("SYK", "SYK-2", str(REC), str(sdf), "test")],
              "valid": [Series("FAAH", "FAAH-1", str(REC), str(sdf), "test")],
              "test": [Series("MET", "MET-1", str(REC), str(sdf), "test")]}
    for split, series in splits.items():
        ds, _ = build_dataset(series, pocket_radius=8.0)
        ds.save(data / f"{split}.pt")
    (data / "report.json").write_text(json.dumps({"pocket_radius": 8.0}))
    return data


def _ensemble(seed: int = 0):
    torch.manual_seed(seed)
    return build_ensemble("get", members=2, **TINY).eval()


def test_block_terms_give_back_each_members_scores(series_data):
    """score = sum over blocks of (head(features) + reference) * weight, member by member,
    with the model dropping hydrogens and far residues on the way."""
    from get_md.train.affinity import predict
    from get_md.train.batching import collate
    from get_md.train.data import MolecularDataset

    ds = MolecularDataset.load(series_data / "train.pt")
    model = _ensemble()
    terms = readout.block_terms(model, ds, max_blocks=150)   # several batches
    graph, _ = collate(list(ds))
    with torch.no_grad():
        members = model(*graph.inputs())["member_scores"]
    for k, t in enumerate(terms):
        assert t.n == len(ds) and t.features.shape[1] == 16
        assert bool(((t.weight >= 0) & (t.weight <= 1)).all()) and bool((t.weight < 1).any())
        with torch.no_grad():
            assert torch.allclose(t.scores(model.members[k].head), members[:, k], atol=1e-5)
    assert not hasattr(model.members[0], "__dict__") or "_score_terms" not in model.members[0].__dict__
    np.testing.assert_allclose(predict(model, ds)["score"], members.mean(1).double().numpy(), atol=1e-5)


def test_fit_heads_lowers_the_training_loss_and_keeps_the_best_validation_step(series_data, monkeypatch):
    from get_md.errors import ConfigError
    from get_md.train import affinity as recipe
    from get_md.train.data import MolecularDataset

    ds = MolecularDataset.load(series_data / "train.pt")
    model = _ensemble(1)
    terms = readout.block_terms(model, ds)
    y, series = readout._labels(ds)
    heads = [m.head for m in model.members]
    with pytest.raises(ConfigError, match="no validation series"):   # 5-ligand series: too small
        readout.fit_heads(heads, terms, y, series, terms, y, series, steps=1)
    monkeypatch.setattr(recipe, "MIN_SERIES_LIGANDS", 4)
    same, _ = readout.fit_heads(heads, terms, y, series, terms, y, series, steps=0)
    for a, b in zip(same, heads, strict=True):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(p, q)
    fitted, curve = readout.fit_heads(heads, terms, y, series, terms, y, series, steps=200, lr=3e-3,
                                      eval_every=20)
    assert [c["step"] for c in curve] == list(range(0, 201, 20))
    assert curve[-1]["train_loss"] < curve[1]["train_loss"]
    with torch.no_grad():
        pred = torch.stack([t.scores(h) for t, h in zip(terms, fitted, strict=True)]).mean(0).double().numpy()
    best = max(c["valid_series_spearman"] for c in curve)
    assert readout.series_spearman(y, pred, series) == pytest.approx(best)
    assert best >= curve[0]["valid_series_spearman"]


def test_within_series_mse_ignores_each_series_offset():
    err = torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0])
    series = torch.tensor([0, 0, 0, 1, 1])
    assert float(readout.within_series_mse(err, series, 2)) == pytest.approx((1 + 0 + 1 + 0 + 0) / 5)
    assert float(readout.within_series_mse(err + 5.0, series, 2)) == pytest.approx(0.4)


def test_readout_cli_writes_a_file_with_the_refit_heads(series_data, tmp_path, monkeypatch):
    """`python -m get_md.train.affinity readout`: the written file scores with the new heads,
    keeps the encoder's weights and records the settings and the validation curve."""
    from get_md.train import affinity as recipe
    from get_md.train.data import MolecularDataset

    monkeypatch.setattr(recipe, "MIN_SERIES_LIGANDS", 4)
    model = _ensemble(2)
    src = tmp_path / "src.pt"
    export.save(model, src, {"description": "tiny", "pocket_radius": 8.0})
    out = tmp_path / "refit.pt"
    recipe.main(["readout", "--model", str(src), "--data", str(series_data), "--out", str(out),
                 "--steps", "40", "--eval-every", "10", "--lr", "3e-3", "--series-weight", "2"])
    meta = export.read_metadata(out)
    ro = meta["readout"]
    assert ro["steps"] == 40 and ro["series_weight"] == 2.0 and len(ro["curve"]) == 5
    assert ro["from_weights_sha256"] == export.read_metadata(src)["weights_sha256"]
    assert meta["pocket_radius"] == 8.0 and set(meta["training"]["metrics"]) == {"held_out", "validation"}
    new, _ = export.rebuild(out)
    old_state, new_state = model.state_dict(), new.state_dict()
    assert all(torch.equal(old_state[k], new_state[k]) for k in old_state if ".head." not in k)
    module, _ = export.load(out)
    ds = MolecularDataset.load(series_data / "test.pt")
    from get_md.train.batching import collate

    graph, _ = collate(list(ds))
    with torch.no_grad():
        assert torch.allclose(module(*graph.inputs())["score"], new(*graph.inputs())["score"], atol=1e-5)


def test_relabel_replaces_training_labels_by_the_teachers_scores_only(series_data, tmp_path):
    """`affinity relabel` (distillation data): train.pt labels become the teacher file's
    scores; valid.pt and test.pt keep the experimental labels; the report names the teacher."""
    from get_md.train import affinity as recipe
    from get_md.train.affinity import predict
    from get_md.train.data import MolecularDataset

    teacher = _ensemble(3)
    src = tmp_path / "teacher.pt"
    export.save(teacher, src, {"description": "tiny", "pocket_radius": 8.0})
    out = tmp_path / "distill"
    recipe.main(["relabel", "--teacher", str(src), "--data", str(series_data), "--out", str(out)])
    before = MolecularDataset.load(series_data / "train.pt")
    after = MolecularDataset.load(out / "train.pt")
    y_old = np.array([float(s.targets["score"][0]) for s in before])
    y_new = np.array([float(s.targets["score"][0]) for s in after])
    np.testing.assert_allclose(y_new, predict(teacher, before)["score"], atol=1e-5)
    assert not np.allclose(y_new, y_old)
    assert [s.graph.num_atoms for s in after] == [s.graph.num_atoms for s in before]
    for split in ("valid", "test"):
        a, b = MolecularDataset.load(series_data / f"{split}.pt"), MolecularDataset.load(out / f"{split}.pt")
        assert [float(s.targets["score"][0]) for s in a] == [float(s.targets["score"][0]) for s in b]
    labels = json.loads((out / "report.json").read_text())["train_labels"]
    assert labels["labels"] == "teacher"
    assert labels["teacher_weights_sha256"] == export.read_metadata(src)["weights_sha256"]
    assert labels["teacher_train_rmse"] == pytest.approx(float(np.sqrt(np.mean((y_new - y_old) ** 2))), rel=1e-4)


def test_relabel_refuses_a_teacher_trained_on_validation_or_held_out_targets(series_data, tmp_path):
    from get_md.errors import ConfigError
    from get_md.train import affinity as recipe

    (tmp_path / "data").mkdir()
    for name in ("train.pt", "valid.pt", "test.pt"):
        (tmp_path / "data" / name).write_bytes((series_data / name).read_bytes())
    (tmp_path / "data" / "report.json").write_text(json.dumps({"targets": {"train": ["SYK"], "valid": ["FAAH"],
                                                                          "test": ["MET"]}}))
    src = tmp_path / "teacher.pt"
    export.save(_ensemble(4), src, {"description": "tiny", "dataset": {"targets": {"train": ["SYK", "MET"]}}})
    assert export.read_metadata(src)["training"]["dataset"]["targets"]["train"] == ["SYK", "MET"]
    with pytest.raises(ConfigError, match="MET"):
        recipe.relabel(str(src), str(tmp_path / "data"), str(tmp_path / "out"))
    assert not (tmp_path / "out" / "train.pt").exists()
