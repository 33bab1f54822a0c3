"""Ligand chemistry codes: what they say, that hydrogens do not change them, and that a
score model learns them from start weights without them while computing the same at first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from affinity_helpers import _sdf_with_dg
from rdkit import Chem
from rdkit.Chem import AllChem

from get_md import vocab
from get_md.build import from_rdkit, iter_poses
from get_md.build.ligand_chemistry import chemistry_positions, with_ligand_chemistry
from get_md.datasets.affinity import Series, build_dataset
from get_md.graph import GraphError
from get_md.models.get import GET
from get_md.train.checkpoint import grow_position_embedding

DATA = Path(__file__).parent / "data"
REC = DATA / "prolif" / "rec.pdb"
POSES = DATA / "prolif" / "vina_output.sdf"


def _names(mol) -> list[str]:
    return [vocab.LIGAND_CHEMISTRY_POSITIONS[c - vocab.NUM_ATOM_POSITIONS]
            if c >= vocab.NUM_ATOM_POSITIONS else vocab.ATOM_POSITIONS[c]
            for c in chemistry_positions(mol).tolist()]


def test_codes_tell_donors_acceptors_and_charges():
    # pyridine N (acceptor), pyrrole NH (donor), NH3+, carboxylate O-, a methyl
    mol = Chem.MolFromSmiles("c1ccncc1.c1cc[nH]c1.C[NH3+].CC(=O)[O-]")
    names = _names(mol)
    assert names[3] == "sm:ar:H0:0"
    assert names[9] == "sm:ar:H1:0"
    assert names[11] == "sm:al:H3:0" and names[12] == "sm:al:H3:+"
    assert names[16] == "sm:al:H0:-" and names[15] == "sm:al:H0:0"


def test_codes_do_not_depend_on_explicit_hydrogens():
    mol = Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1")
    with_h = Chem.AddHs(mol)
    heavy = [i for i in range(with_h.GetNumAtoms()) if with_h.GetAtomWithIdx(i).GetAtomicNum() > 1]
    assert chemistry_positions(with_h)[heavy].tolist() == chemistry_positions(mol).tolist()
    hydrogens = [i for i in range(with_h.GetNumAtoms()) if i not in heavy]
    assert set(chemistry_positions(with_h)[hydrogens].tolist()) == {vocab.SMALL_MOLECULE_POSITION}


def test_graph_of_another_molecule_or_no_molecule_is_named():
    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    graph = from_rdkit(mol, name="lig.sdf: record 1")
    other = Chem.AddHs(Chem.MolFromSmiles("CCN"))
    with pytest.raises(GraphError, match=r"lig\.sdf: record 1.*not the molecule's"):
        with_ligand_chemistry(graph, other)
    with pytest.raises(GraphError, match=r"lig\.sdf: record 1.*SDF or MOL2"):
        with_ligand_chemistry(graph, None)
    assert with_ligand_chemistry(graph, mol).atom_positions.max() >= vocab.NUM_ATOM_POSITIONS


def test_dataset_with_chemistry_codes_only_the_ligand(tmp_path):
    sdf = _sdf_with_dg(POSES, tmp_path / "l.sdf", [-9.0, -8.0], ["a", "b"])
    plain, _ = build_dataset([Series("SYK", "syk", str(REC), str(sdf))], pocket_radius=6.0)
    chem, _ = build_dataset([Series("SYK", "syk", str(REC), str(sdf))], pocket_radius=6.0,
                            ligand_chemistry=True)
    g, h = plain[0].graph, chem[0].graph
    receptor = g.atom_segment_ids == 0
    assert torch.equal(g.atom_positions[receptor], h.atom_positions[receptor])
    ligand_heavy = (h.atom_segment_ids == 1) & (h.atomic_numbers > 1)
    assert bool((h.atom_positions[ligand_heavy] >= vocab.NUM_ATOM_POSITIONS).all())
    assert torch.equal(g.positions, h.positions)


def _score_model(**kw) -> GET:
    torch.manual_seed(0)
    return GET(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, cutoff=10.0, mode="score",
               task="score", k_neighbors=4, sparse_k=2, heavy_atoms_only=True, **kw).eval()


def test_model_with_chemistry_starts_where_its_start_weights_were(tmp_path):
    sdf = _sdf_with_dg(POSES, tmp_path / "l.sdf", [-9.0], ["a"])
    chem, _ = build_dataset([Series("SYK", "syk", str(REC), str(sdf))], pocket_radius=6.0,
                            ligand_chemistry=True)
    plain, _ = build_dataset([Series("SYK", "syk", str(REC), str(sdf))], pocket_radius=6.0)
    old = _score_model()
    new = _score_model(ligand_chemistry=True)
    assert new.config["ligand_chemistry"] and "ligand_chemistry" not in old.config
    assert new.position_embedding.num_embeddings == vocab.NUM_ATOM_POSITIONS_WITH_CHEMISTRY
    with pytest.raises(RuntimeError, match="size mismatch"):
        new.load_state_dict(old.state_dict())
    new.load_state_dict(grow_position_embedding(old.state_dict(), new))
    with torch.no_grad():
        a = old(*plain[0].graph.inputs())["score"]
        b = new(*chem[0].graph.inputs())["score"]
    assert torch.allclose(a, b, atol=1e-6)
    # and the codes reach the model: another embedding for one code changes the score
    with torch.no_grad():
        new.position_embedding.weight[vocab.NUM_ATOM_POSITIONS:] += 1.0
        c = new(*chem[0].graph.inputs())["score"]
    assert not torch.allclose(b, c, atol=1e-4)


def test_pose_records_read_from_sdf_give_codes():
    rec = next(iter(iter_poses(POSES)))
    codes = with_ligand_chemistry(rec.graph, rec.mol).atom_positions
    heavy = rec.graph.atomic_numbers > 1
    assert bool((codes[heavy] >= vocab.NUM_ATOM_POSITIONS).all())
    assert bool((codes[~heavy] == vocab.SMALL_MOLECULE_POSITION).all())


def _chemistry_model_file(path: Path) -> Path:
    """A two-member score-model file built with ligand_chemistry whose code rows differ."""
    from get_md import export
    from get_md.models.ensemble import ScoreEnsemble

    members = [_score_model(ligand_chemistry=True, contact_radius=4.0, receptor_radius=6.0).float()
               for _ in range(2)]
    with torch.no_grad():
        for k, m in enumerate(members):  # codes that matter: distinct rows per code
            torch.manual_seed(k)
            m.position_embedding.weight[vocab.NUM_ATOM_POSITIONS:] = torch.randn(
                len(vocab.LIGAND_CHEMISTRY_POSITIONS), m.position_embedding.embedding_dim)
    export.save(ScoreEnsemble(members).eval(), path, {
        "pocket_radius": 6.0, "builder": "get_md.models.ensemble:build_ensemble",
        "outputs": ["score", "score_std", "member_scores", "block_scores"]})
    return path


def test_rescoring_gives_a_chemistry_model_its_codes_and_names_poses_without_bond_orders(tmp_path):
    """rescore-poses with a model file built with ligand_chemistry: SDF poses are scored
    with their codes (the scores of complexes built here with them), Vina PDBQT poses
    (no bond orders, no hydrogens on carbon) are failed rows that say why, and a PDB pose
    with every hydrogen is scored as its SDF (bond orders perceived)."""
    from get_md.workflows.poses import rescore_poses

    from get_md import export
    from get_md.build import from_pdb, make_complex, select_pocket

    torch.set_num_threads(1)
    path = _chemistry_model_file(tmp_path / "chem.pt")
    df = rescore_poses(REC, POSES, path, pocket_radius=6.0, batch_size=4, progress=False, parallel=1)
    assert (df["status"] == "ok").all() and len(df) == 9
    first = next(iter(iter_poses(POSES, segment_id=1)))
    receptor = from_pdb(REC, segment_id=0)
    ens = export.load(path)[0]
    by_hand = []
    for graph in (with_ligand_chemistry(first.graph, first.mol), first.graph):
        with torch.no_grad():  # the model cuts its own pocket (receptor_radius) from any that holds it
            by_hand.append(float(ens(*make_complex(select_pocket(receptor, graph, 8.0), graph).inputs())["score"][0]))
    assert float(df.loc[df["pose"] == 1, "score"].iloc[0]) == pytest.approx(by_hand[0], abs=1e-4)
    assert abs(by_hand[0] - by_hand[1]) > 1e-3
    pdbqt = Path(__file__).parent / "data" / "prolif" / "vina_output_ligand_1.pdbqt"
    bad = rescore_poses(REC, pdbqt, path, pocket_radius=6.0, progress=False, parallel=1)
    assert (bad["status"] != "ok").all()
    assert bad["error"].str.contains(r"vina_output_ligand_1\.pdbqt.*no bond orders.*SDF or MOL2").all()
    # the same pose as PDB with every hydrogen: bond orders perceived, the SDF pose's score
    (tmp_path / "pose1.pdb").write_text(Chem.MolToPDBBlock(first.mol, flavor=4))
    as_pdb = rescore_poses(REC, tmp_path / "pose1.pdb", path, pocket_radius=6.0, progress=False, parallel=1,
                           out_csv=tmp_path / "pdb.csv")
    assert as_pdb["status"].tolist() == ["ok"]
    assert float(as_pdb["score"].iloc[0]) == pytest.approx(by_hand[0], abs=1e-4)
    no_h = Chem.RemoveHs(first.mol)
    (tmp_path / "noh.pdb").write_text(Chem.MolToPDBBlock(no_h, flavor=4))
    bad = rescore_poses(REC, tmp_path / "noh.pdb", path, pocket_radius=6.0, progress=False, parallel=1,
                        out_csv=tmp_path / "noh.csv")
    assert bad["error"].str.contains(r"noh\.pdb: record 1: no hydrogens").all()


@pytest.mark.parametrize("data_codes, model_codes, words", [
    (True, False, r"train\.pt: built with ligand chemistry codes.*--set ligand_chemistry=true"),
    (False, True, r"train\.pt: no ligand chemistry codes.*--ligand-chemistry"),
])
def test_training_refuses_data_and_model_that_disagree_on_the_codes(tmp_path, data_codes, model_codes, words):
    """Codes for a model without rows for them had stopped training with an IndexError deep in
    the embedding; a chemistry model on plain data had trained on the plain code alone."""
    from get_md.errors import TrainError
    from get_md.train.config import TrainConfig
    from get_md.train.loop import train

    sdf = _sdf_with_dg(POSES, tmp_path / "l.sdf", [-9.0, -8.0], ["a", "b"])
    ds, _ = build_dataset([Series("SYK", "syk", str(REC), str(sdf))], pocket_radius=6.0,
                          ligand_chemistry=data_codes)
    ds.save(tmp_path / "train.pt")
    model = dict(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, cutoff=10.0, mode="score",
                 task="score", ligand_chemistry=model_codes)
    cfg = TrainConfig(family="get", model=model, train_data=str(tmp_path / "train.pt"),
                      valid_data=str(tmp_path / "train.pt"), max_epochs=1, output_dir=str(tmp_path / "run"),
                      verbose=False)
    with pytest.raises(TrainError, match=words):
        train(cfg)


def _molecule(smiles: str, seed: int = 1):
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    return mol


@pytest.mark.parametrize("smiles", ["CC(=O)[O-]", "C[NH3+]", "c1cc[nH+]cc1", "Nc1cccnc1",
                                    "C[N+](=O)[O-]", "OC(=O)c1ccc(cc1)C(N)=O", "[NH3+]CC([O-])=O"])
def test_perceived_bond_orders_give_the_codes_of_the_molecule(smiles):
    """From elements, coordinates and (or without) bonds, with every hydrogen explicit, the
    perceived molecule has the codes of the molecule it came from (charge found, not given;
    up to resonance: which oxygen of a carboxylate carries the charge)."""
    from get_md.build.ligand_chemistry import perceive_molecule

    mol = _molecule(smiles)
    z = [a.GetAtomicNum() for a in mol.GetAtoms()]
    xyz = mol.GetConformer().GetPositions()
    bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
    want = sorted(chemistry_positions(mol).tolist())  # sorted: which O of a carboxylate is charged is arbitrary
    assert sorted(chemistry_positions(perceive_molecule(z, xyz, bonds)).tolist()) == want
    assert sorted(chemistry_positions(perceive_molecule(z, xyz)).tolist()) == want  # bonds from coordinates


def test_perception_refuses_a_ligand_without_hydrogens_or_with_a_wrong_charge():
    """No hydrogens, hydrogens on carbon left out (valences then filled with charges and ring
    triple bonds, which RDKit accepts), and a net charge no bond orders fit."""
    from get_md.build.ligand_chemistry import perceive_molecule

    mol = Chem.MolFromSmiles("c1ccncc1")
    AllChem.EmbedMolecule(mol, randomSeed=1)
    z = [a.GetAtomicNum() for a in mol.GetAtoms()]
    with pytest.raises(GraphError, match=r"^LIG: no hydrogens"):
        perceive_molecule(z, mol.GetConformer().GetPositions(), name="LIG")
    amide = _molecule("CC(=O)NCc1ccccc1O")  # as in a PDBQT: hydrogens on carbon left out
    keep = [a.GetIdx() for a in amide.GetAtoms() if a.GetAtomicNum() > 1 or a.GetNeighbors()[0].GetAtomicNum() != 6]
    z = [amide.GetAtomWithIdx(i).GetAtomicNum() for i in keep]
    with pytest.raises(GraphError, match=r"^LIG: its bond orders do not look like a molecule's .*hydrogens missing"):
        perceive_molecule(z, amide.GetConformer().GetPositions()[keep], name="LIG")
    acetate = _molecule("CC(=O)[O-]")
    z = [a.GetAtomicNum() for a in acetate.GetAtoms()]
    with pytest.raises(GraphError, match=r"^LIG: no bond orders fit its 7 atoms and 6 bonds at net charge 2"):
        perceive_molecule(z, acetate.GetConformer().GetPositions(), charge=2, name="LIG")


def test_trajectory_rescoring_perceives_the_ligand_chemistry(tmp_path, caplog, monkeypatch, capsys):
    """rescore-traj with a ligand-chemistry model: the example topology's ligand (CONECT bonds,
    explicit hydrogens) is perceived as the same molecule as the Vina SDF's poses of it, and
    its codes reach the scores; a ligand without hydrogens is refused naming the topology."""
    import logging

    from get_md.workflows.demo import example_file
    from get_md.workflows.trajectory import rescore_trajectory

    from get_md.build import ligand_chemistry
    from get_md.errors import WorkflowError

    torch.set_num_threads(1)
    path = _chemistry_model_file(tmp_path / "chem.pt")
    top, traj = example_file("top.pdb"), example_file("traj.xtc")
    sdf = next(Chem.SDMolSupplier(str(POSES), removeHs=False))
    with caplog.at_level(logging.INFO, logger="get_md.workflows.trajectory"):
        df = rescore_trajectory(top, traj, path, stop=3, out_csv=tmp_path / "a.csv", progress=False, parallel=1)
    assert len(df) == 3 and df["score"].notna().all()
    assert f"perceived from the topology's bonds: {Chem.MolToSmiles(Chem.RemoveHs(sdf))}" in caplog.text
    plain = lambda mol: np.full(mol.GetNumAtoms(), vocab.SMALL_MOLECULE_POSITION)  # noqa: E731
    monkeypatch.setattr(ligand_chemistry, "chemistry_positions", plain)
    df_plain = rescore_trajectory(top, traj, path, stop=3, out_csv=tmp_path / "b.csv", progress=False,
                                  parallel=1)
    assert (df["score"] - df_plain["score"]).abs().min() > 1e-3
    monkeypatch.undo()
    # the net charge given: the same molecule (+1, a protonated amine); another is refused
    df_q = rescore_trajectory(top, traj, path, stop=3, out_csv=tmp_path / "d.csv", progress=False, parallel=1,
                              ligand_charge=1)
    assert np.allclose(df_q["score"], df["score"], atol=1e-6)
    from get_md.cli import main

    assert main(["rescore-traj", str(top), str(traj), "--model", str(path), "--stop", "3", "--ligand-charge", "2",
                 "--out-csv", str(tmp_path / "e.csv"), "--quiet"]) == 2
    assert "ligand ('resname LIG'): no bond orders fit its 79 atoms and 86 bonds at net charge 2" in \
        capsys.readouterr().err
    lines = [ln for ln in Path(top).read_text().splitlines()
             if not (ln.startswith(("ATOM", "HETATM")) and ln[17:20] == "LIG" and ln[76:78].strip() == "H")
             and not ln.startswith("CONECT")]
    (tmp_path / "noh.pdb").write_text("\n".join(lines) + "\n")
    with pytest.raises(WorkflowError, match=r"noh\.pdb: ligand \('resname LIG'\): no hydrogens.*rescore-poses"):
        rescore_trajectory(tmp_path / "noh.pdb", tmp_path / "noh.pdb", path, out_csv=tmp_path / "c.csv",
                           progress=False, parallel=1)
