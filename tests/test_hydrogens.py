"""Missing hydrogens: receptors (OpenMM Modeller + Amber14) and ligands (RDKit), and the
rescoring workflow's --add-hydrogens on PoseBusters' 1ia1 (a crystal structure without
hydrogens)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from get_md.workflows._common import WorkflowError
from get_md.workflows.poses import receptor_with_hydrogens, rescore_poses
from rdkit import Chem

from get_md.build import from_pdb
from get_md.build.hydrogens import ligand_with_hydrogens, protonate_receptor
from get_md.graph import GraphError

DATA = Path(__file__).parent / "data"
P1IA1 = DATA / "posebusters" / "1ia1" / "1ia1_protein_one_lig_removed.pdb"
L1IA1 = DATA / "posebusters" / "1ia1" / "1ia1_ligand.sdf"
TINY = dict(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, cutoff=5.0)


@pytest.fixture(scope="module")
def protonated(tmp_path_factory):
    d = tmp_path_factory.mktemp("h")
    skipped = protonate_receptor(P1IA1, d / "a.pdb")
    protonate_receptor(P1IA1, d / "b.pdb")
    return d, skipped


def test_receptor_hydrogens_added_reproducibly(protonated):
    d, skipped = protonated
    bare, full = from_pdb(P1IA1), from_pdb(d / "a.pdb")
    assert int((bare.atomic_numbers == 1).sum()) == 0
    n_h = int((full.atomic_numbers == 1).sum())
    assert 0.9 * bare.num_atoms < n_h < 1.1 * bare.num_atoms   # about one H per heavy atom in proteins
    # heavy atoms unchanged; residues without templates (cofactor, ligand) reported
    assert int((full.atomic_numbers != 1).sum()) == bare.num_atoms
    assert set(skipped) == {"A:193:NDP", "B:195:NDP", "A:194:TQ3"}
    assert (d / "a.pdb").read_text() == (d / "b.pdb").read_text()   # same hydrogens every time


def test_hydrogen_geometry_is_sane(protonated):
    d, _ = protonated
    g = from_pdb(d / "a.pdb")
    h = g.atomic_numbers == 1
    dist = torch.cdist(g.positions[h], g.positions[~h])
    nearest = dist.min(dim=1).values
    assert float(nearest.min()) > 0.9 and float(nearest.max()) < 1.15   # X-H bond lengths, Å
    hh = torch.cdist(g.positions[h], g.positions[h]) + 10 * torch.eye(int(h.sum()))
    assert float(hh.min()) > 1.3   # no two hydrogens on top of each other


def test_residue_amber_cannot_type_falls_back(tmp_path, caplog):
    """A lysine missing its side-chain end: no Amber14 template, so the hydrogens are
    placed without the force field, with a warning; they are still added."""
    lines = P1IA1.read_text().splitlines()
    lys = next(line[22:26] for line in lines if line.startswith("ATOM") and line[17:20] == "LYS")
    cut = [line for line in lines if not (line.startswith("ATOM") and line[17:20] == "LYS"
                                          and line[22:26] == lys and line[12:16].strip() in ("CE", "NZ"))]
    src = tmp_path / "cut.pdb"
    src.write_text("\n".join(cut) + "\n")
    with caplog.at_level(logging.WARNING, logger="get_md.build.hydrogens"):
        protonate_receptor(src, tmp_path / "out.pdb")
    assert "Amber14 cannot relax" in caplog.text
    assert int((from_pdb(tmp_path / "out.pdb").atomic_numbers == 1).sum()) > 1000


def test_unreadable_receptor_names_the_file(tmp_path):
    bad = tmp_path / "bad.pdb"
    bad.write_text("ATOM      1  CA  ALA A   1      xx.xxx   1.000   1.000  1.00  0.00           C\n")
    with pytest.raises(GraphError, match="bad.pdb"):
        protonate_receptor(bad, tmp_path / "out.pdb")


def test_ligand_hydrogens_keep_tags_and_heavy_atoms():
    mol = Chem.MolFromMolFile(str(L1IA1))
    mol.SetProp("vina_score", "-7.1")
    h = ligand_with_hydrogens(mol)
    assert h.GetNumAtoms() > mol.GetNumAtoms() and h.GetProp("vina_score") == "-7.1"
    conf, conf_h = mol.GetConformer(), h.GetConformer()
    for i in range(mol.GetNumAtoms()):
        assert list(conf.GetAtomPosition(i)) == list(conf_h.GetAtomPosition(i))
    assert ligand_with_hydrogens(h) is h   # nothing missing: the molecule itself


@pytest.fixture(scope="module")
def potential(tmp_path_factory):
    from get_md.export import save
    from get_md.models import build_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("m") / "pot.pt"
    save(build_model("get", **TINY), path, {"elements": ["H", "C", "N", "O", "P", "S"]})
    return path


def test_rescoring_adds_hydrogens_to_bare_structures(potential, protonated, tmp_path):
    """auto: receptor and ligand of 1ia1 get hydrogens; the energy equals scoring files
    protonated beforehand with --add-hydrogens no; the SDF holds the scored (protonated)
    pose; 'no' scores the bare atoms."""
    d, _ = protonated
    kw = dict(reference=L1IA1, pocket_radius=5.0, progress=False)
    auto = rescore_poses(P1IA1, L1IA1, potential, out_csv=tmp_path / "auto.csv", out_sdf=tmp_path / "auto.sdf", **kw)
    n_lig_h = ligand_with_hydrogens(Chem.MolFromMolFile(str(L1IA1))).GetNumAtoms()
    assert auto["status"].tolist() == ["ok"] and int(auto["n_ligand_atoms"][0]) == n_lig_h
    assert int(auto["n_hydrogens_added"][0]) == n_lig_h - Chem.MolFromMolFile(str(L1IA1)).GetNumAtoms()
    lig_h = tmp_path / "lig_h.sdf"
    with Chem.SDWriter(str(lig_h)) as w:
        w.write(ligand_with_hydrogens(Chem.MolFromMolFile(str(L1IA1))))
    pre = rescore_poses(d / "a.pdb", lig_h, potential, add_hydrogens="no", **kw)
    e_auto = float(auto["interaction_energy_eV"][0])
    # equal up to the SDF's 4-decimal coordinates of the written ligand
    assert e_auto != 0.0 and e_auto == pytest.approx(float(pre["interaction_energy_eV"][0]), abs=1e-6)
    written = next(iter(Chem.SDMolSupplier(str(tmp_path / "auto.sdf"), removeHs=False)))
    assert written.GetNumAtoms() == n_lig_h and written.HasProp("get_interaction_energy")
    bare = rescore_poses(P1IA1, L1IA1, potential, add_hydrogens="no", **kw)
    assert int(bare["n_ligand_atoms"][0]) == Chem.MolFromMolFile(str(L1IA1)).GetNumAtoms()
    assert int(bare["n_hydrogens_added"][0]) == 0
    print("interaction energies (eV): auto", e_auto, "pre-protonated", float(pre["interaction_energy_eV"][0]),
          "bare", float(bare["interaction_energy_eV"][0]))
    assert float(bare["interaction_energy_eV"][0]) != pytest.approx(e_auto, abs=1e-5)
    with pytest.raises(WorkflowError, match="add_hydrogens must be one of"):
        rescore_poses(P1IA1, L1IA1, potential, add_hydrogens="maybe", **kw)


def test_polar_only_pdbqt_receptor_is_completed(potential, protonated, tmp_path):
    """An AutoDock-style receptor (PDBQT, hydrogens on N and O only) is completed in auto
    mode to the same atoms as protonating the bare structure."""
    d, _ = protonated
    full = from_pdb(d / "a.pdb")
    lines, prev_heavy = [], ""
    for line in (d / "a.pdb").read_text().splitlines():
        if not line.startswith(("ATOM", "HETATM")):
            continue
        el = line[76:78].strip()
        if el != "H":
            prev_heavy = el
        elif prev_heavy not in ("N", "O"):   # Modeller puts each hydrogen right after its parent:
            continue                         # keep those that follow an N or O (polar ones)
        ad = {"C": "C", "N": "NA", "O": "OA", "S": "SA", "H": "HD", "P": "P"}[el]
        lines.append(line[:66].ljust(66) + "    +0.000 " + ad)
    pdbqt = tmp_path / "rec.pdbqt"
    pdbqt.write_text("\n".join(lines) + "\n")
    from get_md.build import from_pdbqt

    polar = from_pdbqt(pdbqt)
    n_h_polar = int((polar.atomic_numbers == 1).sum())
    assert 0 < n_h_polar < 0.5 * int((polar.atomic_numbers != 1).sum())
    kw = dict(reference=L1IA1, pocket_radius=5.0, progress=False)
    df = rescore_poses(pdbqt, L1IA1, potential, **kw)
    ref = rescore_poses(d / "a.pdb", L1IA1, potential, **kw)
    assert df["status"].tolist() == ["ok"]
    # same pocket composition as the fully protonated file (hydrogen positions may differ)
    assert int(df["n_ligand_atoms"][0]) == int(ref["n_ligand_atoms"][0])
    assert df.attrs["pocket_residues"] == ref.attrs["pocket_residues"]
    completed, _ = receptor_with_hydrogens(pdbqt, polar, "auto", True)
    assert int((completed.atomic_numbers == 1).sum()) == int((full.atomic_numbers == 1).sum())


def test_polar_only_pdbqt_pose_is_warned_about(potential, caplog):
    """A Vina PDBQT pose (polar hydrogens, no bond orders) cannot be completed: a warning
    names the file and record; the pose is still scored as given."""
    rec = DATA / "prolif" / "rec.pdb"
    pose = DATA / "prolif" / "vina_output_ligand_1.pdbqt"
    with caplog.at_level(logging.WARNING, logger="get_md.workflows.poses"):
        df = rescore_poses(rec, pose, potential, pocket_radius=4.0, progress=False)
    assert df["status"].tolist() == ["ok"]
    assert "vina_output_ligand_1.pdbqt: record 1 has 4 hydrogens for 43 heavy atoms" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="get_md.workflows.poses"):
        rescore_poses(rec, pose, potential, pocket_radius=4.0, progress=False, add_hydrogens="no")
    assert "hydrogens for" not in caplog.text
