"""The affinity score model: heavy-atom input, contact-weighted pocket, ensembles, recipe.

Models are tiny and random (the properties hold for any weights); the end-to-end
test trains two one-epoch members on a handful of real complexes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from get_md import export
from get_md.build import from_pdb, from_sdf, make_complex, select_pocket
from get_md.graph import batch_graphs
from get_md.models import build_model
from get_md.models.ensemble import ScoreEnsemble, build_ensemble

DATA = Path(__file__).parent / "data"
REC = DATA / "prolif" / "rec.pdb"
POSES = DATA / "prolif" / "vina_output.sdf"

TINY = dict(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, cutoff=8.0, mode="score", task="score")


@pytest.fixture(scope="module")
def complexes():
    rec = from_pdb(REC, segment_id=0)
    ligs = from_sdf(POSES, segment_id=1)[:3]
    return rec, ligs


def _model(seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_model("get", **dict(TINY, **kw)).double().eval()


def _heavy(graph):
    """The graph rebuilt without hydrogens (what a crystal structure gives)."""
    from get_md.graph import MolecularGraph

    keep = graph.atomic_numbers != 1

    present = torch.zeros(graph.num_blocks, dtype=torch.bool)
    present[graph.block_ids[keep]] = True
    new = torch.cumsum(present.long(), 0) - 1
    return MolecularGraph(
        positions=graph.positions[keep], atomic_numbers=graph.atomic_numbers[keep],
        block_ids=new[graph.block_ids[keep]], atom_positions=graph.atom_positions[keep],
        block_types=graph.block_types[present], segment_ids=graph.segment_ids[present],
        batch_ids=graph.batch_ids[present], cell=graph.cell, pbc=graph.pbc,
        names=list(graph.names)).validate(), present


def test_heavy_atom_model_scores_with_and_without_hydrogens_alike(complexes):
    rec, ligs = complexes
    pocket = select_pocket(rec, ligs[0], 6.0)
    cplx = make_complex(pocket, ligs[0]).to(dtype=torch.float64)
    heavy, present = _heavy(cplx)
    assert heavy.num_atoms < cplx.num_atoms and not bool(present.all())   # H-only ligand blocks
    # eager in float64; TorchScript in float32 (a float64 run would leave float64-specialised
    # plans in the executor shared by every scripted GET of this process)
    for scripted in (False, True):
        m = _model(heavy_atoms_only=True)
        a, b = cplx, heavy
        if scripted:
            m = torch.jit.script(m.float())
            a, b = cplx.to(dtype=torch.float32), heavy.to(dtype=torch.float32)
        tol = 1e-5 if scripted else 1e-10
        with torch.no_grad():
            with_h, without_h = m(*a.inputs()), m(*b.inputs())
        assert float(with_h["score"]) == pytest.approx(float(without_h["score"]), abs=tol)
        assert with_h["block_scores"].shape == (cplx.num_blocks,)
        assert torch.allclose(with_h["block_scores"][present], without_h["block_scores"], atol=tol)
        assert bool((with_h["block_scores"][~present] == 0).all())
    # a model that sees hydrogens scores the two differently: the test can fail
    plain = _model()
    assert abs(float(plain(*cplx.inputs())["score"]) - float(plain(*heavy.inputs())["score"])) > 1e-6


def test_contact_weights_match_all_pairs_per_structure(complexes):
    """The cell-list contact weights equal a brute-force switch of each receptor block's
    closest ligand atom in its own structure, in a batch of poses (and a structure
    without a ligand: all receptor weights 0)."""
    from get_md.models.get_graph import contact_weights

    rec, ligs = complexes
    pocket = select_pocket(rec, ligs[0], 10.0)
    batch = batch_graphs([make_complex(pocket, lig) for lig in ligs[:4]] + [pocket]).to(dtype=torch.float64)
    got = contact_weights(batch.positions, batch.block_ids, batch.segment_ids, batch.batch_ids, 4.0)
    atom_batch, atom_seg = batch.atom_batch_ids, batch.atom_segment_ids
    for b in range(batch.num_blocks):
        if int(batch.segment_ids[b]) != 0:
            assert float(got[b]) == 1.0
            continue
        mine = batch.positions[batch.block_ids == b]
        g = int(batch.batch_ids[b])
        lig = batch.positions[(atom_batch == g) & (atom_seg != 0)]
        if lig.shape[0] == 0:
            assert float(got[b]) == 0.0
            continue
        d = float(torch.cdist(mine, lig).min())
        x = min(max((d - 4.0) / 2.0, 0.0), 1.0)
        assert float(got[b]) == pytest.approx(0.5 * (1.0 + math.cos(math.pi * x)), abs=1e-9)
    assert 0 < int((got[batch.segment_ids == 0] == 0).sum()) < int((batch.segment_ids == 0).sum())


def test_contact_radius_zeroes_far_residues_and_keeps_the_ligand(complexes):
    rec, ligs = complexes
    cplx = make_complex(select_pocket(rec, ligs[0], 10.0), ligs[0]).to(dtype=torch.float64)
    m = _model(contact_radius=4.0)
    out = m(*cplx.inputs())
    lig_atoms = cplx.positions[cplx.atom_segment_ids == 1]
    d = torch.cdist(cplx.positions, lig_atoms).min(dim=1).values
    closest = torch.full((cplx.num_blocks,), 1e9, dtype=d.dtype).scatter_reduce(0, cplx.block_ids, d, reduce="amin")
    far = (cplx.segment_ids == 0) & (closest > 6.0)
    near = (cplx.segment_ids == 0) & (closest < 4.0)
    assert int(far.sum()) > 10 and int(near.sum()) > 3
    assert bool((out["block_scores"][far] == 0).all())
    assert bool((out["block_scores"][near] != 0).all())
    assert bool((out["block_scores"][cplx.segment_ids == 1] != 0).all())
    assert float(out["score"]) == pytest.approx(float(out["block_scores"].sum()), abs=1e-10)
    # without the switch far residues count
    assert bool((_model()(*cplx.inputs())["block_scores"][far] != 0).any())


def test_score_is_invariant_to_rotation_translation_and_batching(complexes):
    rec, ligs = complexes
    graphs = [make_complex(select_pocket(rec, g, 6.0), g).to(dtype=torch.float64) for g in ligs]
    m = _model(heavy_atoms_only=True, contact_radius=4.0)
    single = torch.cat([m(*g.inputs())["score"] for g in graphs])
    batched = m(*batch_graphs(graphs).inputs())["score"]
    assert torch.allclose(single, batched, atol=1e-9)
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    moved = graphs[0].with_positions(graphs[0].positions @ q.T + torch.tensor([3.0, -7.0, 11.0], dtype=torch.float64))
    assert float(m(*moved.inputs())["score"]) == pytest.approx(float(single[0]), abs=1e-8)


def test_ensemble_mean_spread_and_file_round_trip(complexes, tmp_path):
    rec, ligs = complexes
    graphs = [make_complex(select_pocket(rec, g, 6.0), g) for g in ligs]
    batch = batch_graphs(graphs)
    members = [_model(seed, heavy_atoms_only=True, contact_radius=4.0).float() for seed in range(3)]
    ens = ScoreEnsemble(members).eval()
    out = ens(*batch.inputs())
    each = torch.stack([m(*batch.inputs())["score"] for m in members], dim=1)
    assert torch.allclose(out["member_scores"], each)
    assert torch.allclose(out["score"], each.mean(dim=1))
    assert torch.allclose(out["score_std"], each.std(dim=1, unbiased=False))
    assert bool((out["score_std"] > 0).all())
    assert torch.allclose(out["block_scores"].sum(), out["score"].sum(), atol=1e-4)
    path = tmp_path / "ens.pt"
    export.save(ens, path, {"builder": "get_md.models.ensemble:build_ensemble", "pocket_radius": 6.0,
                            "outputs": ["score", "score_std", "member_scores", "block_scores"]})
    loaded, meta = export.load(path)
    again = loaded(*batch.inputs())
    for k in out:
        assert torch.equal(again[k], out[k])
    assert meta["config"]["members"] == 3 and meta["pocket_radius"] == 6.0
    # re-scripting rebuilds the ensemble from the file's config with the same weights
    export.rescript(path, tmp_path / "re.pt")
    re_out = export.load(tmp_path / "re.pt")[0](*batch.inputs())
    assert torch.equal(re_out["score"], out["score"])


def test_ensemble_members_share_one_pair_list(complexes):
    """GET members build their k-NN block graph once per call (``score_pairs`` on the first
    member, ``forward_with_pairs`` on each): the outputs equal, bit for bit, those of each
    member building its own, with and without hydrogens, eager and scripted; ensembles of
    other families keep calling their members' forward."""
    rec, ligs = complexes
    batch = batch_graphs([make_complex(select_pocket(rec, g, 6.0), g) for g in ligs])
    members = [_model(seed, heavy_atoms_only=True, contact_radius=4.0).float() for seed in (0, 1)]
    ens = ScoreEnsemble(members).eval()
    assert ens.shared_pairs
    calls = []
    original = type(members[0])._score_pairs

    def counting(self, *args):
        calls.append(1)
        return original(self, *args)

    for graph in (batch, _heavy(batch)[0]):
        with torch.no_grad():
            each = [m(*graph.inputs()) for m in members]
            calls.clear()
            type(members[0])._score_pairs = counting
            try:
                out = ens(*graph.inputs())
            finally:
                type(members[0])._score_pairs = original
            assert len(calls) == 1
            scripted = torch.jit.script(ens)(*graph.inputs())
        assert torch.equal(out["member_scores"], torch.stack([e["score"] for e in each], dim=1))
        assert torch.equal(out["block_scores"], torch.stack([e["block_scores"] for e in each]).mean(dim=0))
        for key in out:
            assert torch.equal(scripted[key], out[key]), key
    other = build_ensemble("geomformer", members=2, d_model=16, n_layers=1, n_heads=2, task="score")
    assert not other.shared_pairs
    torch.jit.script(other)


def test_ensemble_refuses_mixed_members():
    with pytest.raises(ValueError, match="score models"):
        ScoreEnsemble([build_model("get", d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1)])
    with pytest.raises(ValueError, match="one configuration"):
        ScoreEnsemble([_model(), _model(heavy_atoms_only=True)])
    assert build_ensemble("get", members=2, **TINY).n_members == 2


def test_recipe_trains_two_members_and_ships_an_ensemble(tmp_path, monkeypatch):
    """`python -m get_md.train.affinity` data -> train -> ensemble, on a tiny real set."""
    from affinity_helpers import _sdf_with_dg
    from rdkit import Chem

    from get_md.datasets.affinity import Series, build_dataset
    from get_md.train import affinity as recipe

    data = tmp_path / "data"
    data.mkdir()
    sdf = _sdf_with_dg(POSES, tmp_path / "l.sdf", [-9.0, -8.0, -7.0, -6.5], ["a", "b", "c", "d"])
    assert len(list(Chem.SDMolSupplier(str(sdf)))) == 4
    for split, target in (("train", "SYK"), ("valid", "FAAH"), ("test", "MET")):
        ds, _ = build_dataset([Series(target, f"{target}-series", str(REC), str(sdf), "test")],
                              pocket_radius=5.0)
        ds.save(data / f"{split}.pt")
    (data / "report.json").write_text(json.dumps({
        "pocket_radius": 5.0, "n": {"train": 4, "valid": 4, "test": 4},
        "targets": {"train": ["SYK"], "valid": ["FAAH"], "test": ["MET"]},
        "excluded_series": [], "series": [{"source": "test"}]}))
    model = dict(recipe.DEFAULT_MODEL, d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1)
    runs = tmp_path / "runs"
    for seed in range(2):
        cfg = recipe.member_config(str(data), str(runs), seed, model=model, max_epochs=1, plot=False,
                                   verbose=False)
        from get_md.train.loop import train

        train(cfg)
    out = tmp_path / "affinity.pt"
    monkeypatch.setattr(recipe, "MIN_SERIES_LIGANDS", 4)   # the one 4-ligand series counts
    res = recipe.ship(str(runs), str(data), str(out), command="test")
    meta = export.read_metadata(out)
    assert meta["task"] == "score" and meta["config"]["members"] == 2
    assert meta["pocket_radius"] == 5.0 and meta["blocks"] == "residues"
    held = res["metrics"]
    assert held["model"]["n"] == 4 and set(held["model"]["per_group"]) == {"MET"}
    assert held["heavy_atoms"]["per_group"]["MET"]["n"] == 4
    assert "spearman_std_vs_abs_error" in held["uncertainty"]
    assert set(held["by_series"]["model"]["per_group"]) == {"MET|MET-series"}
    for figures in (held, held["by_series"]):   # the paired interval against the heavy-atom count
        versus = figures["versus_heavy_atoms"]
        assert versus["difference"] == pytest.approx(
            figures["model"]["mean_spearman"] - figures["heavy_atoms"]["mean_spearman"])
        assert versus["ci"][0] <= versus["ci"][1]
    assert "model_minus_heavy_atoms_per_series_95ci" in recipe.brief(res)["held_out"]
    assert set(res["validation"]["model"]["per_group"]) == {"FAAH"}   # chosen by, kept apart
    assert meta["training"]["metrics"]["validation"]["model"]["n"] == 4
    assert "train_labels" not in meta["training"]["dataset"]
    # members trained on a teacher's labels (`affinity relabel`): the file says so
    report = json.loads((data / "report.json").read_text())
    report["train_labels"] = {"labels": "teacher", "teacher_weights_sha256": "ab"}
    (data / "report.json").write_text(json.dumps(report))
    recipe.ship(str(runs), str(data), str(tmp_path / "distilled.pt"), command="test")
    labels = export.read_metadata(tmp_path / "distilled.pt")["training"]["dataset"]["train_labels"]
    assert labels == {"labels": "teacher", "teacher_weights_sha256": "ab"}


def test_recipe_continues_a_model_files_members_and_the_new_file_says_so(tmp_path, monkeypatch, capsys):
    """`affinity train --init FILE`: member K starts from member K of a score-model file
    (its architecture kept); the shipped result records that file as `continued_from`, and
    is refused when that file trained on a validation or held-out target of the new data."""
    from affinity_helpers import _sdf_with_dg

    from get_md.datasets.affinity import Series, build_dataset
    from get_md.errors import ConfigError
    from get_md.train import affinity as recipe
    from get_md.train.checkpoint import init_weights

    data = tmp_path / "data"
    data.mkdir()
    sdf = _sdf_with_dg(POSES, tmp_path / "l.sdf", [-9.0, -8.0, -7.0, -6.5], ["a", "b", "c", "d"])
    for split, target in (("train", "SYK"), ("valid", "FAAH"), ("test", "MET")):
        ds, _ = build_dataset([Series(target, f"{target}-series", str(REC), str(sdf), "test")],
                              pocket_radius=5.0)
        ds.save(data / f"{split}.pt")
    report = {"pocket_radius": 5.0, "n": {"train": 4, "valid": 4, "test": 4},
              "targets": {"train": ["SYK"], "valid": ["FAAH"], "test": ["MET"]},
              "excluded_series": [], "series": [{"source": "test"}]}
    (data / "report.json").write_text(json.dumps(report))
    monkeypatch.setattr(recipe, "MIN_SERIES_LIGANDS", 4)
    tiny = ["--set", "d_hidden=16", "d_radial=8", "n_rbf=8", "n_head=2", "n_layers=1", "k_neighbors=5"]
    recipe.main(["train", "--data", str(data), "--out", str(tmp_path / "a"), "--members", "2",
                 "--epochs", "1", *tiny])
    first = tmp_path / "first.pt"
    recipe.ship(str(tmp_path / "a"), str(data), str(first), command="test")

    # no --set: the architecture comes from the file (k_neighbors 5, not the recipe's 9)
    recipe.main(["train", "--data", str(data), "--out", str(tmp_path / "b"), "--members", "2",
                 "--epochs", "1", "--init", str(first), "--lr", "1e-4"])
    cfg = json.loads((tmp_path / "b" / "member1" / "config.json").read_text())
    assert cfg["init_from"] == str(tmp_path / "b" / "init" / "member1" / "best.pt")
    assert cfg["model"]["k_neighbors"] == 5 and cfg["model"]["d_hidden"] == 16
    start = init_weights(str(tmp_path / "b" / "init" / "member1" / "best.pt"))
    before = torch.load(tmp_path / "a" / "member1" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(start[k], before[k]) for k in before)
    # a runs folder keeps its architecture too; one changed with --set is trained, with a warning
    recipe.main(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--members", "1",
                 "--epochs", "1", "--init", str(tmp_path / "a"), "--lr", "1e-4"])
    cfg = json.loads((tmp_path / "r" / "member0" / "config.json").read_text())
    assert cfg["model"]["k_neighbors"] == 5 and cfg["model"]["d_hidden"] == 16
    capsys.readouterr()
    recipe.main(["train", "--data", str(data), "--out", str(tmp_path / "s"), "--members", "1",
                 "--epochs", "1", "--init", str(tmp_path / "a"), "--set", "k_neighbors=7"])
    assert "another architecture: k_neighbors 5 -> 7" in capsys.readouterr().err
    second = tmp_path / "second.pt"
    recipe.ship(str(tmp_path / "b"), str(data), str(second), command="test")
    source = export.read_metadata(second)["training"]["dataset"]["continued_from"]
    assert source["weights_sha256"] == export.read_metadata(first)["weights_sha256"]
    assert source["dataset"]["targets"]["train"] == ["SYK"]
    assert "continued_from" not in export.read_metadata(first)["training"]["dataset"]
    # the file it continued trained on SYK: SYK may not validate or be held out here
    (data / "report.json").write_text(json.dumps(dict(report, targets={"train": ["MET"], "valid": ["FAAH"],
                                                                        "test": ["SYK"]})))
    with pytest.raises(ConfigError, match=r"trained on \['SYK'\]"):
        recipe.ship(str(tmp_path / "b"), str(data), str(tmp_path / "third.pt"), command="test")
    with pytest.raises(ConfigError, match=r"--init .*typo: neither a runs folder"):
        recipe.train_members(str(data), str(tmp_path / "c"), 1, init=str(tmp_path / "typo"))


def test_fit_score_reference_starts_training_at_the_element_count_baseline(tmp_path):
    """After the fit, the model's score is the least-squares element-count fit of the ligands'
    heavy atoms (the network's head is zeroed): training starts from that baseline."""
    from affinity_helpers import _sdf_with_dg

    from get_md.datasets.affinity import Series, build_dataset
    from get_md.train.loop import fit_score_reference

    sdf = _sdf_with_dg(POSES, tmp_path / "l.sdf", [-9.0, -8.0, -7.5, -7.0], ["a", "b", "c", "d"])
    ds, _ = build_dataset([Series("SYK", "s", str(REC), str(sdf))], pocket_radius=5.0)
    m = build_model("get", **dict(TINY, heavy_atoms_only=True)).double()
    fitted = fit_score_reference(m, ds)["ligand_atom_ref"]
    assert set(fitted) == {6, 7, 8, 9}                   # ligand heavy elements, no H
    m.eval()
    for s in ds:
        lig = s.graph.atomic_numbers[(s.graph.atom_segment_ids == 1) & (s.graph.atomic_numbers != 1)]
        expected = sum(fitted[int(z)] for z in lig)
        assert float(m(*s.graph.to(dtype=torch.float64).inputs())["score"]) == pytest.approx(expected, abs=1e-9)
    # the fit is the least-squares solution: residuals orthogonal to the count columns
    counts = torch.tensor([[float(((s.graph.atomic_numbers == z) & (s.graph.atom_segment_ids == 1)).sum())
                            for z in sorted(fitted)] for s in ds], dtype=torch.float64)
    y = torch.tensor([float(s.targets["score"]) for s in ds], dtype=torch.float64)
    res = y - counts @ torch.tensor([fitted[z] for z in sorted(fitted)], dtype=torch.float64)
    assert torch.allclose(counts.T @ res, torch.zeros(len(fitted), dtype=torch.float64), atol=1e-8)


def test_rescoring_with_an_ensemble_reports_spread_and_uses_its_pocket_radius(tmp_path):
    """rescore-poses with an ensemble file: score and score_std columns and SDF tags, the
    pocket cut with the file's pocket_radius unless one is given; rescore-traj too."""
    from get_md.workflows.poses import rescore_poses
    from get_md.workflows.trajectory import rescore_trajectory
    from rdkit import Chem

    from get_md.build import from_pdb as read_pdb

    torch.set_num_threads(1)
    ens = ScoreEnsemble([_model(s, heavy_atoms_only=True, contact_radius=3.0).float() for s in range(2)])
    path = tmp_path / "ens.pt"
    export.save(ens, path, {"pocket_radius": 3.5, "builder": "get_md.models.ensemble:build_ensemble",
                            "outputs": ["score", "score_std", "member_scores", "block_scores"]})
    lig = DATA / "prolif" / "lig.pdb"
    df = rescore_poses(REC, POSES, path, reference=lig, batch_size=5, progress=False,
                       out_sdf=tmp_path / "o.sdf", parallel=1)
    assert list(df.columns[:7]) == ["pose", "source", "name", "status", "error", "score", "score_std"]
    assert (df["score_std"] > 0).all() and len(df) == 9
    ref_graph = read_pdb(lig, segment_id=1)
    assert df.attrs["pocket_residues"] == select_pocket(read_pdb(REC), ref_graph, 3.5).block_labels
    wider = rescore_poses(REC, POSES, path, reference=lig, pocket_radius=5.0, batch_size=5, progress=False,
                          parallel=1)
    assert len(wider.attrs["pocket_residues"]) > len(df.attrs["pocket_residues"])
    mols = [m for m in Chem.SDMolSupplier(str(tmp_path / "o.sdf")) if m is not None]
    assert all(m.HasProp("get_score_std") for m in mols)
    from get_md.workflows.demo import example_file

    frames = rescore_trajectory(example_file("top.pdb"), example_file("traj.xtc"), path, stride=125,
                                progress=False, parallel=1)
    assert list(frames.columns) == ["frame", "time_ps", "status", "error", "score", "score_std"]
    assert len(frames) == 2 and (frames["status"] == "ok").all()


def test_receptor_radius_cuts_each_structures_own_pocket(complexes):
    """A model with receptor_radius scores a pose alike in any pocket that holds its own
    (6 Å, 9 Å, the whole receptor), batched or not, scripted or eager; far residues get a
    block score of 0, and a structure without a ligand keeps every block."""
    rec, ligs = complexes
    m = _model(heavy_atoms_only=True, contact_radius=4.0, receptor_radius=6.0)
    plain = _model(heavy_atoms_only=True, contact_radius=4.0)
    bare_rec = _heavy(rec)[0]
    # its own pocket: residues with a heavy atom within 6 Å of a heavy atom of the ligand
    own_pockets = [select_pocket(bare_rec, _heavy(g)[0], 6.0) for g in ligs]
    own = [make_complex(p, g).to(dtype=torch.float64) for p, g in zip(own_pockets, ligs, strict=True)]
    wide = [make_complex(select_pocket(rec, g, 9.0), g).to(dtype=torch.float64) for g in ligs]
    whole = make_complex(rec, ligs[0]).to(dtype=torch.float64)
    ref = torch.cat([m(*g.inputs())["score"] for g in own])
    assert torch.allclose(torch.cat([m(*g.inputs())["score"] for g in wide]), ref, atol=1e-10)
    assert float(m(*whole.inputs())["score"].detach()) == pytest.approx(float(ref[0].detach()), abs=1e-10)
    assert torch.allclose(m(*batch_graphs(wide).inputs())["score"], ref, atol=1e-10)
    # hydrogens decide nothing: the ligand without them keeps the same residues
    bare_lig = make_complex(select_pocket(rec, ligs[0], 9.0), _heavy(ligs[0])[0]).to(dtype=torch.float64)
    assert float(m(*bare_lig.inputs())["score"].detach()) == pytest.approx(float(ref[0].detach()), abs=1e-10)
    # in its own pocket the radius changes nothing; in a wider one the plain model differs
    assert torch.allclose(torch.cat([plain(*g.inputs())["score"] for g in own]), ref, atol=1e-10)
    assert not torch.allclose(torch.cat([plain(*g.inputs())["score"] for g in wide]), ref, atol=1e-6)
    scripted = torch.jit.script(m)
    assert torch.allclose(scripted(*batch_graphs(wide).inputs())["score"], ref, atol=1e-10)
    # blocks outside the model's pocket score 0
    out = m(*wide[0].inputs())
    g = wide[0]
    heavy_rec = (g.atomic_numbers != 1) & (g.segment_ids[g.block_ids] == 0)
    heavy_lig = (g.atomic_numbers != 1) & (g.segment_ids[g.block_ids] == 1)
    d = torch.cdist(g.positions[heavy_rec], g.positions[heavy_lig]).min(dim=1).values
    closest = torch.full((g.num_blocks,), 1e9, dtype=d.dtype).scatter_reduce(
        0, g.block_ids[heavy_rec], d, reduce="amin")
    far = (closest > 6.0) & (g.segment_ids == 0)
    assert bool(far.any()) and bool((out["block_scores"][far] == 0).all())
    # no ligand segment: nothing is cut
    protein = select_pocket(rec, ligs[0], 6.0).to(dtype=torch.float64)
    assert torch.equal(m(*protein.inputs())["score"], plain(*protein.inputs())["score"])


def test_rescript_changes_a_setting_without_touching_the_weights(complexes, tmp_path):
    rec, ligs = complexes
    ens = ScoreEnsemble([_model(s, heavy_atoms_only=True, contact_radius=4.0).float() for s in range(2)]).eval()
    path = tmp_path / "ens.pt"
    before = export.save(ens, path, {"builder": "get_md.models.ensemble:build_ensemble", "pocket_radius": 6.0})
    after = export.rescript(path, tmp_path / "rr.pt", config={"receptor_radius": 6.0})
    assert after["weights_sha256"] == before["weights_sha256"]
    assert after["config"]["receptor_radius"] == 6.0 and "receptor_radius" not in before["config"]
    assert after["rescripted_from"]["config_changes"] == {"receptor_radius": 6.0}
    wide = make_complex(select_pocket(rec, ligs[0], 9.0), ligs[0])
    own = make_complex(select_pocket(_heavy(rec)[0], _heavy(ligs[0])[0], 6.0), ligs[0])  # heavy-atom rule
    loaded = export.load(tmp_path / "rr.pt")[0]
    assert torch.allclose(loaded(*wide.inputs())["score"], loaded(*own.inputs())["score"], atol=1e-5)
    assert torch.allclose(loaded(*own.inputs())["score"], ens(*own.inputs())["score"], atol=1e-5)


def test_rescoring_a_model_with_its_own_pocket_does_not_depend_on_the_pocket_cut(tmp_path, caplog):
    """rescore-poses: with or without a reference and for any pocket radius at least the
    model's, each pose is scored in its own pocket; a smaller radius warns."""
    from get_md.workflows.poses import rescore_poses

    torch.set_num_threads(1)
    ens = ScoreEnsemble([_model(s, heavy_atoms_only=True, contact_radius=3.0, receptor_radius=4.0).float()
                         for s in range(2)])
    path = tmp_path / "ens.pt"
    export.save(ens, path, {"pocket_radius": 4.0, "builder": "get_md.models.ensemble:build_ensemble"})
    lig = DATA / "prolif" / "lig.pdb"
    common = dict(batch_size=5, progress=False, parallel=1, sort="none")
    base = rescore_poses(REC, POSES, path, **common)["score"].to_numpy()
    for kw in (dict(reference=lig), dict(reference=lig, pocket_radius=8.0), dict(pocket_radius=7.0)):
        again = rescore_poses(REC, POSES, path, **common, **kw)["score"].to_numpy()
        assert again == pytest.approx(base, abs=1e-5), kw
    with caplog.at_level("WARNING", logger="get_md.workflows"):
        rescore_poses(REC, POSES, path, pocket_radius=3.0, **common)
    assert "smaller than the 4 Å pocket the model was trained on" in caplog.text


def test_recipe_architecture_settings_are_checked():
    from get_md.errors import ConfigError
    from get_md.train.affinity import parse_settings

    assert parse_settings(["k_neighbors=6", "sparse_k=2", "dropout=0.2"]) == {
        "k_neighbors": 6, "sparse_k": 2, "dropout": 0.2}
    for bad in (["k_neighbours=6"], ["k_neighbors"]):
        with pytest.raises(ConfigError, match="KEY=VALUE"):
            parse_settings(bad)


def test_recipe_fine_tunes_members_with_the_within_series_loss(tmp_path):
    """`affinity train --series-weight W --init RUNS`: member K starts from RUNS/memberK,
    trains on batches of one series with score + W * score_series, and logs both terms
    for training and validation."""
    import csv

    from affinity_helpers import _sdf_with_dg

    from get_md.datasets.affinity import Series, build_dataset
    from get_md.train import affinity as recipe

    data = tmp_path / "data"
    data.mkdir()
    sdf = _sdf_with_dg(POSES, tmp_path / "l.sdf", [-9.0, -8.0, -7.0, -6.5], ["a", "b", "c", "d"])
    train, _ = build_dataset([Series("SYK", "SYK-1", str(REC), str(sdf), "test"),
                              Series("SYK", "SYK-2", str(REC), str(sdf), "test")], pocket_radius=5.0)
    valid, _ = build_dataset([Series("FAAH", "FAAH-1", str(REC), str(sdf), "test")], pocket_radius=5.0)
    train.save(data / "train.pt")
    valid.save(data / "valid.pt")
    tiny = ["--set", "d_hidden=16", "d_radial=8", "n_rbf=8", "n_head=2", "n_layers=1"]
    common = ["train", "--data", str(data), "--seeds", "0"]
    recipe.main([*common, "--out", str(tmp_path / "a"), "--epochs", "1", *tiny])
    recipe.main([*common, "--out", str(tmp_path / "b"), "--epochs", "2", "--series-weight", "0.5",
                 "--init", str(tmp_path / "a"), "--lr", "1e-4", *tiny])
    cfg = json.loads((tmp_path / "b" / "member0" / "config.json").read_text())
    assert cfg["init_from"] == str(tmp_path / "a" / "member0" / "best.pt")
    assert cfg["loss_weights"] == {"score": 1.0, "score_series": 0.5} and cfg["lr"] == 1e-4
    with open(tmp_path / "b" / "member0" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for row in rows:
        for split in ("train", "valid"):
            assert float(row[f"{split}_score_series_mae"]) >= 0.0   # a number, not nan
            series = float(row[f"{split}_score_series_rmse"]) ** 2
            pointwise = float(row[f"{split}_score_rmse"]) ** 2
            assert float(row[f"{split}_loss"]) == pytest.approx(pointwise + 0.5 * series, rel=1e-6)


def test_members_can_be_selected_on_the_within_series_error(tmp_path):
    """`affinity train --select score_series`: validation in batches of one series, the
    logged valid_score_series_mse is the best model's errors minus their series means (computed
    here), and it, not the loss, picks the best epoch."""
    import csv

    from affinity_helpers import _sdf_with_dg

    from get_md import export
    from get_md.datasets.affinity import Series, build_dataset
    from get_md.train import affinity as recipe
    from get_md.train.batching import series_of

    data = tmp_path / "data"
    data.mkdir()
    sdf = _sdf_with_dg(POSES, tmp_path / "l.sdf", [-9.0, -8.0, -7.0, -6.5], ["a", "b", "c", "d"])
    sdf2 = _sdf_with_dg(POSES, tmp_path / "m.sdf", [-6.0, -8.5, -9.5, -7.5], ["a", "b", "c", "d"])
    train, _ = build_dataset([Series("SYK", "SYK-1", str(REC), str(sdf), "test")], pocket_radius=5.0)
    valid, _ = build_dataset([Series("FAAH", "FAAH-1", str(REC), str(sdf), "test"),
                              Series("FAAH", "FAAH-2", str(REC), str(sdf2), "test")], pocket_radius=5.0)
    train.save(data / "train.pt")
    valid.save(data / "valid.pt")
    tiny = ["--set", "d_hidden=16", "d_radial=8", "n_rbf=8", "n_head=2", "n_layers=1"]
    recipe.main(["train", "--data", str(data), "--seeds", "0", "--out", str(tmp_path / "r"), "--epochs", "3",
                 "--select", "score_series", "--lr", "3e-3", *tiny])
    run = tmp_path / "r" / "member0"
    assert json.loads((run / "config.json").read_text())["select_metric"] == "score_series"
    with open(run / "log.csv") as f:
        rows = list(csv.DictReader(f))
    metric = [float(r["valid_score_series_mse"]) for r in rows]
    running = [m < min(metric[:k], default=float("inf")) for k, m in enumerate(metric)]
    assert [int(r["best"]) for r in rows] == [int(b) for b in running]
    best = int(np.argmin(metric))
    model = export.load(run / "model.pt")[0]
    pred = recipe.predict(model, valid)["score"]
    err = pred - recipe.score_labels(valid)
    groups = np.array([series_of(valid[i].graph.names[0]) for i in range(len(valid))])
    centred = np.concatenate([err[groups == g] - err[groups == g].mean() for g in np.unique(groups)])
    assert float(np.mean(centred ** 2)) == pytest.approx(metric[best], rel=1e-4)
    # --ema-decay reaches the member's config, and its checkpoint keeps the average
    recipe.main(["train", "--data", str(data), "--seeds", "0", "--out", str(tmp_path / "e"), "--epochs", "1",
                 "--ema-decay", "0.9", *tiny])
    assert json.loads((tmp_path / "e" / "member0" / "config.json").read_text())["ema_decay"] == 0.9
    assert "ema" in torch.load(tmp_path / "e" / "member0" / "checkpoint.pt", weights_only=True)
