"""One row per ligand from a pose table (get_md.workflows.poses.per_ligand) and
``get-md rescore-poses --out-ligands``: which pose stands for a ligand, by the docking
score of the input tags, the first pose or the model's best."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from get_md.workflows.poses import per_ligand
from poses_helpers import POSES_SDF, REC, make_models
from rdkit import Chem

from get_md.cli import main
from get_md.errors import WorkflowError

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _table(**extra) -> pd.DataFrame:
    """Two ligands of three poses; pose 5 failed."""
    t = pd.DataFrame({
        "pose": [1, 2, 3, 4, 5, 6],
        "name": ["a", "a", "a", "b", "b", "b"],
        "status": ["ok", "ok", "ok", "ok", "skipped", "ok"],
        "score": [6.0, 7.5, 6.5, 5.0, math.nan, 8.0],
        "score_std": [0.1, 0.2, 0.3, 0.4, math.nan, 0.5],
    })
    return t.assign(**extra)


def test_docking_pick_takes_the_lowest_docking_score_and_ranks_ligands():
    t = _table(minimizedAffinity=[-8.0, -9.5, -7.0, -6.0, -12.0, -5.5])
    out = per_ligand(t)
    # a: pose 2 (-9.5); b: pose 4 (-6.0; the failed pose 5 is not a candidate)
    assert out["ligand"].tolist() == ["a", "b"]                  # a's pose scores 7.5 > b's 5.0
    assert out["pose"].tolist() == [2, 4]
    assert out["picked_by"].tolist() == ["minimizedAffinity"] * 2
    assert out["score"].tolist() == [7.5, 5.0]
    assert out["docking_score"].tolist() == [-9.5, -6.0]
    assert out["best_of_poses"].tolist() == [7.5, 8.0]
    assert out["n_poses"].tolist() == [3, 2]
    assert out["rank"].tolist() == [1, 2]


def test_first_and_score_picks_still_report_the_docking_score():
    t = _table(minimizedAffinity=[-8.0, -9.5, -7.0, -6.0, -12.0, -5.5])
    out = per_ligand(t, pick="first").set_index("ligand")
    assert out["pose"].to_dict() == {"a": 1, "b": 4} and set(out["picked_by"]) == {"first"}
    assert out["docking_score"].to_dict() == {"a": -8.0, "b": -6.0}


def test_meeko_free_energy_and_prefixed_tags_are_read():
    meeko = [json.dumps({"free_energy": e}) for e in (-7.0, -6.0, -8.0, -5.0, -9.0, -6.0)]
    out = per_ligand(_table(input_meeko=meeko))
    assert out.set_index("ligand")["pose"].to_dict() == {"a": 3, "b": 6}
    assert set(out["picked_by"]) == {"meeko:free_energy"}


def test_without_docking_tags_the_first_pose_stands_for_the_ligand():
    out = per_ligand(_table())
    assert out.set_index("ligand")["pose"].to_dict() == {"a": 1, "b": 4}
    assert set(out["picked_by"]) == {"first"}
    assert "docking_score" not in out


def test_score_pick_and_potential_tables():
    out = per_ligand(_table(), pick="score")
    assert out.set_index("ligand")["pose"].to_dict() == {"a": 2, "b": 6}
    assert out["ligand"].tolist() == ["b", "a"]                  # 8.0 before 7.5
    energy = _table().drop(columns=["score", "score_std"]).assign(
        interaction_energy_kcal_mol=[-10.0, -30.0, -20.0, -5.0, math.nan, -40.0])
    out = per_ligand(energy, pick="score")                        # lowest energy is best
    assert out.set_index("ligand")["pose"].to_dict() == {"a": 2, "b": 6}
    assert out["ligand"].tolist() == ["b", "a"]


def test_poses_without_a_name_are_one_ligand_with_a_warning(caplog):
    t = _table(name=["", "", "", "", "", ""])
    with caplog.at_level("WARNING", logger="get_md.workflows.poses"):
        out = per_ligand(t)
    assert len(out) == 1 and out["n_poses"].iloc[0] == 5
    assert "5 pose(s) have no 'name'" in caplog.text


def test_one_name_over_different_molecules_is_warned_about(caplog):
    """Poses grouped under one name whose heavy atoms differ are different molecules (a
    docking tool that names every record "ligand"): one pose would stand for all of them.
    Protonation states of one ligand (hydrogens alone differ) are not."""
    t = _table(ligand_formula=["C20H20N2O", "C20H21N2O", "C20H19N2O", "C9H9Cl", "C9H9Cl", "C9H8ClF"])
    with caplog.at_level("WARNING", logger="get_md.workflows.poses"):
        out = per_ligand(t)
    assert len(out) == 2
    assert "1 ligand name(s) hold poses of different molecules (heavy atoms differ): 'b' (C9Cl, C9ClF)" in caplog.text
    assert "'a'" not in caplog.text                          # only hydrogens differ in a
    caplog.clear()
    with caplog.at_level("WARNING", logger="get_md.workflows.poses"):
        per_ligand(t.assign(ligand_formula=["C2H6O"] * 6))
    assert "different molecules" not in caplog.text


def test_pose_table_gives_each_pose_its_formula(tmp_path_factory, tmp_path):
    from get_md.workflows.poses import rescore_poses

    models = make_models(tmp_path_factory)
    df = rescore_poses(REC, POSES_SDF, models["score"], pocket_radius=3.0, progress=False,
                       out_csv=tmp_path / "p.csv")
    import re

    from rdkit.Chem import rdMolDescriptors

    mol = next(iter(Chem.SDMolSupplier(str(POSES_SDF), removeHs=False)))
    formula = re.sub(r"[+-]\d*$", "", rdMolDescriptors.CalcMolFormula(mol))  # without the charge
    assert set(df["ligand_formula"]) == {formula}


def test_ligand_key_and_bad_options():
    t = _table(ID=["x", "y", "x", "y", "y", "y"])
    assert per_ligand(t, key="ID").set_index("ligand")["n_poses"].to_dict() == {"x": 2, "y": 3}
    with pytest.raises(WorkflowError, match="pick must be one of"):
        per_ligand(t, pick="best")
    with pytest.raises(WorkflowError, match="'nope' is not a column"):
        per_ligand(t, key="nope")


def test_cli_writes_one_row_per_ligand(tmp_path_factory, tmp_path, capsys):
    models = make_models(tmp_path_factory)
    mols = [m for m in Chem.SDMolSupplier(str(POSES_SDF), removeHs=False)]
    sdf = tmp_path / "docked.sdf"
    writer = Chem.SDWriter(str(sdf))
    for i, m in enumerate(mols[:6]):
        m.SetProp("_Name", "lig1" if i < 3 else "lig2")
        m.SetProp("minimizedAffinity", f"{-6.0 - (i % 3 == 1)}")  # second pose of each best
        writer.write(m)
    writer.close()
    out = tmp_path / "ligands.csv"
    assert main(["rescore-poses", str(REC), str(sdf), "--model", str(models["score"]),
                 "--out-csv", str(tmp_path / "p.csv"), "--out-sdf", str(tmp_path / "p.sdf"),
                 "--out-ligands", str(out), "--pocket-radius", "3", "--quiet"]) == 0
    assert "2 ligand(s), pose picked by minimizedAffinity 2" in capsys.readouterr().out
    ligands = pd.read_csv(out)
    poses = pd.read_csv(tmp_path / "p.csv").set_index("pose")
    assert sorted(ligands["pose"]) == [2, 5]
    for _, row in ligands.iterrows():
        assert row["score"] == pytest.approx(poses.loc[row["pose"], "score"])
    assert ligands["score"].is_monotonic_decreasing
    assert not Path(str(out) + ".lock").exists()
    # a key that is neither a column nor a tag is refused before any work
    rc = main(["rescore-poses", str(REC), str(sdf), "--model", str(models["score"]),
               "--out-csv", str(tmp_path / "q.csv"), "--out-sdf", str(tmp_path / "q.sdf"),
               "--out-ligands", str(tmp_path / "l2.csv"), "--ligand-key", "series", "--quiet"])
    assert rc == 2 and not (tmp_path / "q.csv").exists()
    assert ("--ligand-key 'series' is neither a column of the pose table nor a tag of the first record"
            in capsys.readouterr().err)
    assert main(["rescore-poses", str(REC), str(sdf), "--model", str(models["score"]),
                 "--out-csv", str(tmp_path / "r.csv"), "--out-sdf", str(tmp_path / "r.sdf"),
                 "--out-ligands", str(tmp_path / "l3.csv"), "--ligand-key", "minimizedAffinity",
                 "--pocket-radius", "3", "--quiet"]) == 0


def test_cli_points_to_out_ligands_for_several_poses_per_ligand(tmp_path_factory, tmp_path, capsys):
    """Docked poses of named ligands scored without --out-ligands: one line says that the
    score ranks ligands better than poses and names the option; --quiet leaves it out."""
    models = make_models(tmp_path_factory)
    sdf = tmp_path / "docked.sdf"
    writer = Chem.SDWriter(str(sdf))
    for i, m in enumerate(list(Chem.SDMolSupplier(str(POSES_SDF), removeHs=False))[:4]):
        m.SetProp("_Name", "lig1" if i < 2 else "lig2")
        writer.write(m)
    writer.close()
    argv = ["rescore-poses", str(REC), str(sdf), "--model", str(models["score"]), "--pocket-radius", "3",
            "--out-csv", str(tmp_path / "p.csv"), "--out-sdf", str(tmp_path / "p.sdf")]
    assert main(argv) == 0
    assert "note: 2 ligand(s) have several poses" in capsys.readouterr().out
    assert main(argv + ["--quiet", "--no-resume"]) == 0
    assert "note:" not in capsys.readouterr().out


def test_cli_refuses_a_ligands_file_another_run_is_writing(tmp_path, capsys):
    from get_md.workflows._common import OutputLock

    out = tmp_path / "ligands.csv"
    with OutputLock(out, "the other run"):
        rc = main(["rescore-poses", str(REC), str(POSES_SDF), "--model", "get-affinity",
                   "--out-csv", str(tmp_path / "p.csv"), "--out-sdf", str(tmp_path / "p.sdf"),
                   "--out-ligands", str(out), "--quiet"])
    assert rc != 0
    assert "ligands.csv is being written by another get-md run" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists() and not out.exists()   # refused before any work


def test_vina_pdbqt_scores_are_docking_scores():
    t = _table(vina_score=[-7.0, -6.0, -8.0, -5.0, -9.0, -6.0], minimizedAffinity=[None] * 6)
    out = per_ligand(t)                      # an empty tag column is passed over
    assert out.set_index("ligand")["pose"].to_dict() == {"a": 3, "b": 6}
    assert set(out["picked_by"]) == {"vina_score"}
