"""Pose members of the score model: labels, the ensemble's ``pose_score``, the recipe
(data -> train -> attach) and the rescoring columns.

Decoys are prolif's nine Vina poses of one ligand (tests/data/prolif), labelled by their
heavy-atom RMSD to the first pose; models are tiny.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from rdkit import Chem
from rdkit.Chem import rdMolAlign

from get_md import export
from get_md.build import from_pdb, from_sdf, make_complex, select_pocket
from get_md.datasets.affinity import Series
from get_md.datasets.pose_quality import (
    build_pose_dataset,
    near_native_label,
    series_slug,
    top1_success,
)
from get_md.errors import DatasetError, TrainError, WorkflowError
from get_md.graph import batch_graphs
from get_md.models import build_model
from get_md.models.ensemble import ScoreEnsemble

DATA = Path(__file__).parent / "data"
REC = DATA / "prolif" / "rec.pdb"
POSES = DATA / "prolif" / "vina_output.sdf"
TINY = dict(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, cutoff=8.0, mode="score", task="score",
            heavy_atoms_only=True, contact_radius=4.0)
OUTPUTS = ["score", "score_std", "member_scores", "block_scores"]


def _model(seed: int):
    torch.manual_seed(seed)
    return build_model("get", **TINY).eval()


def _decoys(root: Path, series: str) -> list[float]:
    """prolif's poses as the decoys of one ligand of ``series`` (pose 1 also as the native one)."""
    mols = list(Chem.SDMolSupplier(str(POSES), removeHs=False))
    ref = Chem.RemoveHs(mols[0])
    folder = root / series_slug(series)
    folder.mkdir(parents=True)
    rmsds = []
    with Chem.SDWriter(str(folder / "000_lig.sdf")) as w:
        for i, m in enumerate([*mols, mols[0]]):
            native = i == len(mols)
            rmsd = float(rdMolAlign.CalcRMS(Chem.RemoveHs(m), ref))
            m.SetProp("_Name", "lig_native" if native else f"lig_dock{i + 1}")
            m.SetProp("rmsd", f"{rmsd:.4f}")
            m.SetProp("vina_docking_score", f"{-8.0 + 0.1 * i:.4f}")
            m.SetProp("is_native", "1" if native else "0")
            w.write(m)
            if not native:
                rmsds.append(rmsd)
    return rmsds


def test_near_native_label_and_top1_success():
    labels = [near_native_label(r) for r in (0.0, 1.0, 2.0, 3.0, 8.0)]
    assert labels == sorted(labels, reverse=True)
    assert labels[2] == pytest.approx(0.5) and labels[0] > 0.98 and labels[-1] < 1e-5
    from get_md.datasets.pose_quality import PoseEntry

    entries = [PoseEntry(str(i), "T", lig, r, False, 0.0)
               for i, (lig, r) in enumerate([("a", 0.5), ("a", 5.0), ("b", 4.0), ("b", 6.0)])]
    res = top1_success(entries, [0.1, 0.9, 0.9, 0.1])
    assert res == {"n_ligands": 2, "top1": 0.0, "ceiling": 0.5}
    assert top1_success(entries, [0.9, 0.1, 0.9, 0.1])["top1"] == 0.5


def test_ensemble_pose_score_is_the_pose_members_mean_and_survives_the_file(tmp_path):
    rec = from_pdb(REC, segment_id=0)
    ligs = from_sdf(POSES, segment_id=1)[:3]
    batch = batch_graphs([make_complex(select_pocket(rec, g, 6.0), g) for g in ligs])
    members, poses = [_model(0), _model(1)], [_model(2), _model(3)]
    ens = ScoreEnsemble(members, pose_members=poses).eval()
    plain = ScoreEnsemble(members).eval()
    with torch.no_grad():
        out = ens(*batch.inputs())
        each = torch.stack([m(*batch.inputs())["score"] for m in poses], dim=1)
        base = plain(*batch.inputs())
    assert torch.equal(out["pose_score"], each.mean(dim=1))        # one shared pair list, same numbers
    for key in base:                                               # the affinity outputs are untouched
        assert torch.equal(out[key], base[key]), key
    assert "pose_score" not in base
    assert torch.equal(torch.jit.script(ens)(*batch.inputs())["pose_score"], out["pose_score"])
    path = tmp_path / "ens.pt"
    export.save(ens, path, {"builder": "get_md.models.ensemble:build_ensemble", "outputs": [*OUTPUTS, "pose_score"]})
    assert export.read_metadata(path)["config"]["pose_members"] == 2
    export.rescript(path, tmp_path / "re.pt")                      # rebuilt from the file's config
    again = export.load(tmp_path / "re.pt")[0](*batch.inputs())
    assert torch.equal(again["pose_score"], out["pose_score"])
    with pytest.raises(ValueError, match="one configuration"):
        ScoreEnsemble(members, pose_members=[build_model("get", **dict(TINY, contact_radius=0.0))])


def test_pose_dataset_labels_docked_poses_and_refuses_excluded_targets(tmp_path):
    rmsds = _decoys(tmp_path / "decoys", "set/faah")
    series = [Series("FAAH", "set/faah", str(REC), "unused.sdf"), Series("EGFR", "set/none", str(REC), "x.sdf")]
    ds, entries, report = build_pose_dataset(series, str(tmp_path / "decoys"), pocket_radius=5.0)
    assert len(ds) == len(rmsds) == len(entries) == 9 and report.ligands == 1
    assert report.skipped_series == ["set/none"]                   # no decoy folder
    assert not any(e.is_native for e in entries)                   # native poses left out by default
    for s, e, r in zip(ds, entries, rmsds, strict=True):
        assert e.rmsd == pytest.approx(r, abs=1e-4)
        assert float(s.targets["score"]) == pytest.approx(near_native_label(e.rmsd), abs=1e-6)
        assert s.graph.names[0] == e.name and e.name.startswith("FAAH|set/faah|000_lig|lig_dock")
    # one pocket per ligand (the union of its poses), as the rescoring workflow cuts it
    assert len({int((s.graph.segment_ids == 0).sum()) for s in ds}) == 1
    with_native, entries_n, _ = build_pose_dataset(series[:1], str(tmp_path / "decoys"), 5.0, include_native=True)
    assert len(with_native) == 10 and entries_n[-1].is_native and entries_n[-1].rmsd == 0.0
    _decoys(tmp_path / "decoys", "set/cdk2")
    with pytest.raises(DatasetError, match="reserved"):
        build_pose_dataset([Series("CDK2", "set/cdk2", str(REC), "x.sdf")], str(tmp_path / "decoys"))


def test_training_series_take_posed_folders_without_held_out_or_excluded_targets(tmp_path):
    """Decoys of Uni-FEP-style posed series (``--posed``): a held-out target (SYK) and an
    excluded one (MAPK14, p38α) are never listed; training and validation targets are."""
    from get_md.train.pose import training_series

    for folder, target in (("a", "SYK"), ("b", "MAPK14"), ("c", "BRD4"), ("d", "JAK2")):
        d = tmp_path / folder
        d.mkdir()
        (d / "protein.pdb").write_bytes(REC.read_bytes())
        with Chem.SDWriter(str(d / "ligands.sdf")) as w:
            for i, m in enumerate(list(Chem.SDMolSupplier(str(POSES), removeHs=False))[:2]):
                m.SetProp("_Name", f"l{i}")
                for k, v in (("r_exp_dg", "-8.5"), ("target", target), ("series", f"ChEMBL|{target}|X"),
                             ("source", "test")):
                    m.SetProp(k, v)
                w.write(m)
    assert [s.target for s in training_series(None, [str(tmp_path)])] == ["BRD4", "JAK2"]


def test_recipe_trains_a_pose_member_and_attaches_it_to_an_affinity_file(tmp_path):
    """data -> one-epoch member -> attach: the affinity outputs of the file stay bit-identical,
    pose_score appears, and rescore-poses reports and ranks by it."""
    from get_md.workflows.poses import rescore_poses

    from get_md.train import pose as recipe
    from get_md.train.loop import train

    torch.set_num_threads(1)
    _decoys(tmp_path / "decoys", "set/faah")
    data = tmp_path / "data"
    data.mkdir()
    series = [Series("FAAH", "set/faah", str(REC), "unused.sdf")]
    from get_md.datasets.pose_quality import entries_to_json

    for split in ("train", "valid"):
        ds, entries, _ = build_pose_dataset(series, str(tmp_path / "decoys"), 5.0)
        ds.save(data / f"{split}.pt")
        (data / f"{split}_poses.json").write_text(json.dumps(entries_to_json(entries)))
    (data / "report.json").write_text(json.dumps({"n": {"train": 9, "valid": 9}, "ligands": {"train": 1, "valid": 1},
                                                  "targets": {"train": ["FAAH"], "valid": ["FAAH"]}}))
    cfg = recipe.member_config(str(data), str(tmp_path / "runs"), 0, max_epochs=1, plot=False, verbose=False)
    cfg.model = dict(cfg.model, **{k: TINY[k] for k in ("d_hidden", "d_radial", "n_rbf", "n_head", "n_layers")})
    train(cfg)
    best = torch.load(tmp_path / "runs" / "member0" / "best.pt", weights_only=True)
    affinity = ScoreEnsemble([build_model("get", **best["model_config"]) for _ in range(2)]).eval()
    aff_path = tmp_path / "affinity.pt"
    export.save(affinity, aff_path, {"builder": "get_md.models.ensemble:build_ensemble", "outputs": OUTPUTS,
                                     "pocket_radius": 5.0})
    out = tmp_path / "with_poses.pt"
    res = recipe.attach(str(tmp_path / "runs"), str(data), str(aff_path), str(out), command="test")
    assert res["pose_valid"]["model"]["n_ligands"] == 1 and "vina" in res["pose_valid"]
    meta = export.read_metadata(out)
    assert meta["config"]["pose_members"] == 1 and "pose_score" in meta["outputs"]
    assert meta["training"]["metrics"]["pose_valid"] == res["pose_valid"]
    assert meta["training"]["pose_members"]["command"] == "test"

    before = rescore_poses(REC, POSES, aff_path, pocket_radius=5.0, progress=False, parallel=1, sort="none")
    after = rescore_poses(REC, POSES, out, pocket_radius=5.0, progress=False, parallel=1, sort="none",
                          out_sdf=tmp_path / "o.sdf")
    assert after["score"].tolist() == before["score"].tolist()
    assert "pose_score" in after and "pose_score" not in before
    assert all(m.HasProp("get_pose_score") for m in Chem.SDMolSupplier(str(tmp_path / "o.sdf")))
    by_pose = rescore_poses(REC, POSES, out, pocket_radius=5.0, progress=False, parallel=1, sort="pose")
    assert by_pose["pose_score"].tolist() == sorted(by_pose["pose_score"].tolist(), reverse=True)
    assert by_pose["rank"].tolist() == list(range(1, 10))
    with pytest.raises(WorkflowError, match="pose members"):
        rescore_poses(REC, POSES, aff_path, progress=False, parallel=1, sort="pose")
    assert not math.isnan(float(after["pose_score"].iloc[0]))


def test_pose_names_group_by_ligand_and_train_cli_keeps_the_init_architecture(tmp_path):
    """``--ligand-weight`` groups a ligand's poses (``series_of`` of a pose name is its ligand),
    and ``--init`` from a run's best.pt trains that run's architecture, so attach can add it."""
    from get_md.train import pose as recipe
    from get_md.train.batching import series_of

    _decoys(tmp_path / "decoys", "set/faah")
    data = tmp_path / "data"
    data.mkdir()
    ds, entries, _ = build_pose_dataset([Series("FAAH", "set/faah", str(REC), "unused.sdf")],
                                        str(tmp_path / "decoys"), 5.0)
    assert {series_of(e.name) for e in entries} == {"FAAH|set/faah|000_lig"}
    for split in ("train", "valid"):
        ds.save(data / f"{split}.pt")
    torch.manual_seed(0)
    arch = dict(TINY, k_neighbors=4, sparse_k=2)
    init = tmp_path / "init.pt"
    torch.save({"model": build_model("get", **arch).state_dict(), "model_config": arch}, init)
    assert recipe.init_architecture(str(init)) == arch
    torch.save({"model": build_model("get", **arch).state_dict()}, tmp_path / "bare.pt")
    assert recipe.init_architecture(str(tmp_path / "bare.pt")) is None
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TrainError, match="corrupt.pt: cannot read initial weights"):
        recipe.init_architecture(str(tmp_path / "corrupt.pt"))

    torch.set_num_threads(1)
    assert recipe.main(["train", "--data", str(data), "--out", str(tmp_path / "runs"), "--seeds", "0",
                        "--epochs", "1", "--init", str(init), "--ligand-weight", "2"]) == 0
    cfg = json.loads((tmp_path / "runs" / "member0" / "config.json").read_text())
    assert cfg["model"] == arch and cfg["loss_weights"] == {"score": 1.0, "score_series": 2.0}
    header = (tmp_path / "runs" / "member0" / "log.csv").read_text().splitlines()[0]
    assert "train_score_series_rmse" in header


def test_pose_without_a_usable_rmsd_is_a_named_failure(tmp_path):
    """A decoy whose rmsd tag is missing, not a number or negative had been left out without a
    word (negative: labelled as a native pose)."""
    _decoys(tmp_path / "decoys", "set/faah")
    sdf = tmp_path / "decoys" / series_slug("set/faah") / "000_lig.sdf"
    mols = list(Chem.SDMolSupplier(str(sdf), removeHs=False))
    mols[1].SetProp("rmsd", "n/a")
    mols[2].SetProp("rmsd", "-1.5")
    mols[3].ClearProp("rmsd")
    with Chem.SDWriter(str(sdf)) as w:
        for m in mols:
            w.write(m)
    ds, _, report = build_pose_dataset([Series("FAAH", "set/faah", str(REC), "unused.sdf")],
                                       str(tmp_path / "decoys"), pocket_radius=5.0)
    assert len(ds) == 6
    assert report.failures == [f"{sdf}: record 2: rmsd tag n/a is not a distance in Å",
                               f"{sdf}: record 3: rmsd tag -1.5 is not a distance in Å",
                               f"{sdf}: record 4: no rmsd tag"]
