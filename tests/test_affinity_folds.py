"""Cross-validation by target (get_md.train.affinity_folds, `affinity folds`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from get_md.errors import ConfigError
from get_md.train.affinity_folds import assign_folds, make_folds

DATA = Path(__file__).parent / "data"
REC = DATA / "prolif" / "rec.pdb"
POSES = DATA / "prolif" / "vina_output.sdf"


def test_targets_are_dealt_to_balanced_folds_deterministically():
    sizes = {f"T{k}": n for k, n in enumerate([40, 33, 30, 21, 20, 20, 12, 9, 8, 8, 5, 3, 2, 1])}
    folds = assign_folds(sizes, 3, seed=1)
    assert set(folds) == set(sizes) and set(folds.values()) == {0, 1, 2}
    load = [sum(n for t, n in sizes.items() if folds[t] == k) for k in range(3)]
    assert max(load) - min(load) <= max(sizes.values()) // 4          # ligands about equal per fold
    assert folds == assign_folds(sizes, 3, seed=1)
    ties = {f"T{k}": 5 for k in range(12)}                              # the seed decides among equals
    assert assign_folds(ties, 3, seed=0) != assign_folds(ties, 3, seed=1)


@pytest.mark.parametrize("n_folds, match", [(1, "--folds must be >= 2"), (5, "cannot fill 5 folds")])
def test_too_few_folds_or_targets_are_refused(n_folds, match):
    with pytest.raises(ConfigError, match=match):
        assign_folds({"A": 3, "B": 2, "C": 1}, n_folds)


def test_fold_folders_partition_the_training_targets(tmp_path):
    """Every training ligand is in exactly one fold's test.pt, never in that fold's
    train.pt; valid.pt is the source's in every fold; held-out targets are in no fold."""
    from affinity_helpers import _sdf_with_dg

    from get_md.datasets.affinity import Series, build_dataset, sample_target
    from get_md.train.affinity import main
    from get_md.train.data import MolecularDataset

    sdf = _sdf_with_dg(POSES, tmp_path / "l.sdf", [-9.0, -8.0, -7.0], ["a", "b", "c"])
    data = tmp_path / "data"
    data.mkdir()
    train_targets = ["AKT1", "BRD4", "CHK1", "EGFR", "FXA"]
    for split, targets in (("train", train_targets), ("valid", ["FAAH"]), ("test", ["MET"])):
        ds, _ = build_dataset([Series(t, f"{t}-series", str(REC), str(sdf), "test") for t in targets],
                              pocket_radius=5.0)
        ds.save(data / f"{split}.pt")
    (data / "report.json").write_text(json.dumps({
        "pocket_radius": 5.0, "n": {"train": 15, "valid": 3, "test": 3},
        "targets": {"train": train_targets, "valid": ["FAAH"], "test": ["MET"]}, "series": []}))

    assert main(["folds", "--data", str(data), "--out", str(tmp_path / "cv"), "--folds", "2"]) == 0
    seen = []
    for k in range(2):
        fold = tmp_path / "cv" / f"fold{k}"
        train = {sample_target(s) for s in MolecularDataset.load(fold / "train.pt")}
        test = [sample_target(s) for s in MolecularDataset.load(fold / "test.pt")]
        assert train and test and not train & set(test) and "MET" not in train | set(test)
        assert (fold / "valid.pt").read_bytes() == (data / "valid.pt").read_bytes()
        report = json.loads((fold / "report.json").read_text())
        assert report["cross_validation"]["fold"] == k and report["targets"]["test"] == sorted(set(test))
        assert report["n"]["test"] == len(test) and report["n"]["train"] + len(test) == 15
        seen += test
    assert sorted(seen) == sorted(t for t in train_targets for _ in range(3))
    with pytest.raises(ConfigError, match="no train.pt"):
        make_folds(str(tmp_path / "nowhere"), str(tmp_path / "cv2"))


def test_element_count_baseline_of_dataset_scores(tmp_path):
    """benchmarks/dataset_scores.py --element-baseline: a least-squares line in the ligand's
    heavy atoms per element, fitted on train.pt, recovers pK that is such a line."""
    import sys

    from affinity_helpers import _sdf_with_dg

    from get_md.datasets.affinity import RT_LN10_KCAL_MOL, Series, build_dataset

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from dataset_scores import element_baseline

    dgs = [-6.0, -6.5, -7.0, -7.5]            # analogue i carries i fluorines: pK linear in the F count
    sdf = _sdf_with_dg(POSES, tmp_path / "l.sdf", dgs, ["a", "b", "c", "d"])
    data = tmp_path / "data"
    data.mkdir()
    for split, target in (("train", "AKT1"), ("test", "MET")):
        ds, _ = build_dataset([Series(target, f"{target}-s", str(REC), str(sdf), "test")], pocket_radius=5.0)
        ds.save(data / f"{split}.pt")
    pred = element_baseline(str(data), "test")
    assert pred == pytest.approx([-dg / RT_LN10_KCAL_MOL for dg in dgs], abs=1e-6)
