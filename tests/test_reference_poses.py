"""Uni-FEP-style series posed on their reference ligand (get_md.datasets.reference_poses).

A series folder is made from PoseBusters' 1ia1 (receptor + crystal ligand as the
reference pose) and a fluorinated analogue given as SMILES only, as Uni-FEP gives it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affinity_helpers import _analogue
from rdkit import Chem

from get_md.datasets.affinity import posed_series
from get_md.datasets.reference_poses import SERIES_DIR, build_series

DATA = Path(__file__).parent / "data" / "posebusters" / "1ia1"


def _series(root: Path, folder: str) -> None:
    ref = Chem.MolFromMolFile(str(DATA / "1ia1_ligand.sdf"), removeHs=False)
    ref = Chem.AddHs(ref, addCoords=True)
    d = root / SERIES_DIR / folder
    d.mkdir(parents=True)
    (d / "protein.pdb").write_bytes((DATA / "1ia1_protein_one_lig_removed.pdb").read_bytes())
    Chem.MolToMolFile(ref, str(d / "ref_ligand.sdf"))
    analogue = Chem.MolToSmiles(_analogue(ref, 1))
    (d / "result_dG.csv").write_text(
        "ligand_smiles,ligand_name,exp_dG (kcal/mol),fep_dG (kcal/mol),fep_dG_std (kcal/mol)\n"
        f"{Chem.MolToSmiles(ref)},ref_1uM,-8.19,-8.0,0.3\n{analogue},fluoro_10uM,-6.82,-7.0,0.3\n")


def test_analogue_posed_on_its_reference_and_read_back(tmp_path):
    _series(tmp_path / "repo", "ChEMBL|DHFR|CHEMBL1")
    out = tmp_path / "out" / "dhfr"
    summary = build_series(tmp_path / "repo", "ChEMBL|DHFR|CHEMBL1", out, seed=0)
    assert summary["n_posed"] == 2 and summary["n_dropped"] == 0
    mols = list(Chem.SDMolSupplier(str(out / "ligands.sdf"), removeHs=False))
    assert [m.GetProp("pose_method") for m in mols] == ["reference", "mcs_embed"]
    assert [float(m.GetProp("r_exp_dg")) for m in mols] == [-8.19, -6.82]
    ref, posed = mols
    assert posed.GetNumAtoms() == ref.GetNumAtoms() and float(posed.GetProp("mcs_fraction")) > 0.9
    assert float(posed.GetProp("mcs_rmsd")) < 0.6               # the core sits on the reference
    assert float(posed.GetProp("min_protein_distance")) >= 2.0   # no atom inside the protein
    # the common heavy atoms overlay the reference pose
    core = Chem.RemoveHs(ref)
    match = posed.GetSubstructMatch(core)
    assert match
    shift = posed.GetConformer().GetPositions()[list(match)] - core.GetConformer().GetPositions()
    assert float(np.sqrt((shift ** 2).sum(axis=1).mean())) < 1.0
    series = posed_series(tmp_path / "out")
    assert [s.target for s in series] == ["DHFR"]


def test_excluded_series_is_refused_unread(tmp_path):
    # nothing is on disk for it: refusing must not need to read anything
    with pytest.raises(ValueError, match="(?i)exclud|reserved"):
        build_series(tmp_path / "repo", "ChEMBL|MAPK14|CHEMBL1", tmp_path / "out" / "p38")


def test_build_all_targets_builds_only_those_series(tmp_path):
    from get_md.datasets.reference_poses import build_all

    _series(tmp_path / "repo", "ChEMBL|DHFR|CHEMBL1")
    _series(tmp_path / "repo", "Hermite|Eg5")
    df = build_all(tmp_path / "repo", tmp_path / "out", targets=["KIF11"])  # Eg5's gene name
    assert list(df.folder) == ["Hermite|Eg5"]
    assert [s.target for s in posed_series(tmp_path / "out")] == ["KIF11"]


def test_wrong_repository_is_one_error_line_before_any_output(tmp_path, capsys):
    """A --repo that is not the benchmark had stopped the build with a bare FileNotFoundError
    traceback, after creating the output folder."""
    from get_md.cli import run_module
    from get_md.datasets.reference_poses import main

    (tmp_path / "empty").mkdir()
    for repo in (tmp_path / "nope", tmp_path / "empty"):
        rc = run_module(main, "python -m get_md.datasets.reference_poses",
                        ["--repo", str(repo), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and err == [f"python -m get_md.datasets.reference_poses: error: {repo}: not the "
                                   f"Uni-FEP-Benchmarks repository (no {SERIES_DIR}/ folder, not a git "
                                   "repository)"], err
    assert not (tmp_path / "out").exists()
