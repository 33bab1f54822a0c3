"""get-md rescore-poses (get_md.workflows.poses) on real docking poses, with tiny models.

Receptor and poses: prolif's GPCR and its 9 Vina poses (tests/data/prolif), PoseBusters'
1ia1 for the PoseBusters flags. Models: 1-layer GETs of width 16 (random weights), so
the numbers mean nothing; the tests check the workflow: one row per record, tags,
sorting, skipped records, per-residue sums, resume after a kill, Dask = one process.

Outputs, tags, skipped records and input errors here; input formats, resume, parallel
runs, PoseBusters and the pocket in tests/test_poses_runs.py; shared inputs and models
in tests/poses_helpers.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from get_md.workflows._common import (
    get_module,
    resolve_model,
    run_model,
)
from get_md.workflows.poses import rescore_poses
from poses_helpers import (
    COMMON,
    LIG_PDB,
    POSES_SDF,
    REC,
    make_baseline,
    make_models,
    read_sdf,
)
from rdkit import Chem

from get_md.units import EV_TO_KCAL_MOL

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models(tmp_path_factory)


@pytest.fixture(scope="module")
def baseline(models, tmp_path_factory):
    """One uninterrupted single-process run with a potential: table + output files."""
    return make_baseline(models, tmp_path_factory)


def test_loaded_module_forces_switch_off(models):
    spec, _ = resolve_model(models["energy"])
    mod = get_module(spec)
    assert mod.compute_forces is False
    from get_md.graph import MolecularGraph

    g = MolecularGraph.from_atoms(torch.tensor([[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]),
                                  torch.tensor([8, 1, 1]))
    out = run_model(spec, g)
    assert "forces" not in out and out["energy"].shape == (1,)
    # totals in float64, summed from the per-atom energies (float32 totals round too coarsely
    # for interaction energies, differences of totals)
    assert out["energy"].dtype == torch.float64
    assert float(out["energy"][0]) == pytest.approx(float(out["energies"].double().sum()), abs=1e-12)


def test_potential_outputs_sorted_and_tagged(baseline):
    df, d = baseline
    assert len(df) == 9 and sorted(df["pose"]) == list(range(1, 10))
    assert (df["status"] == "ok").all()
    assert list(df["rank"]) == list(range(1, 10))          # --sort score: best first
    e = df["interaction_energy_eV"]
    assert (e.diff().dropna() >= 0).all()                    # lowest energy first
    assert e.tolist() == pytest.approx((df["e_complex_eV"] - df["e_pocket_eV"] - df["e_ligand_eV"]).tolist())
    assert df["interaction_energy_kcal_mol"].tolist() == pytest.approx((e * EV_TO_KCAL_MOL).tolist())
    assert df["e_pocket_eV"].nunique() == 1                  # E(pocket) once

    csv = pd.read_csv(d / "out.csv")
    assert csv["pose"].tolist() == df["pose"].tolist()
    mols = read_sdf(d / "out.sdf")
    assert len(mols) == 9 and all(m is not None for m in mols)
    assert [int(m.GetProp("get_pose")) for m in mols] == df["pose"].tolist()
    assert [int(m.GetProp("get_rank")) for m in mols] == list(range(1, 10))
    for m, v in zip(mols, df["interaction_energy_eV"], strict=True):
        assert float(m.GetProp("get_interaction_energy")) == pytest.approx(v, abs=1e-6)
        assert m.HasProp("get_interaction_energy_kcal_mol")
        assert m.GetNumAtoms() == 79
    assert not (d / "out.csv.partial").exists()


def test_sdf_output_keeps_input_records_and_replaces_own_tags(models, baseline, tmp_path):
    """SDF in, SDF out: each molecule block is the input's, byte for byte; the input's
    data items are kept; rescoring the output again replaces get_md's tags, not adds."""
    from get_md.build.molecule import iter_sdf_texts, split_sdf_record

    _, d = baseline
    inputs = {i: split_sdf_record(t) for i, t in iter_sdf_texts(POSES_SDF)}
    by_record = {}
    for k, text in iter_sdf_texts(d / "out.sdf"):
        block, items = split_sdf_record(text)
        tags = dict(items)
        pose = int(tags["get_pose"])
        by_record[k] = tags
        assert block == inputs[pose][0]
        for key, value in inputs[pose][1]:
            assert tags[key] == value
    again = tmp_path / "again.sdf"
    rescore_poses(REC, d / "out.sdf", models["energy"], out_sdf=again, **COMMON)
    for _, text in iter_sdf_texts(again):
        _, items = split_sdf_record(text)
        keys = [k for k, _ in items]
        assert len(keys) == len(set(keys)), keys          # no duplicated tags
        tags = dict(items)
        # get_pose now numbers the records of out.sdf; same molecule, same energy
        before = by_record[int(tags["get_pose"])]
        assert float(tags["get_interaction_energy"]) == pytest.approx(float(before["get_interaction_energy"]), abs=1e-5)


def test_potential_per_residue_sums_to_total(baseline):
    df, d = baseline
    res = pd.read_csv(d / "out.residues.csv")
    assert set(res.columns) >= {"pose", "residue", "contribution_eV", "contribution_kcal_mol"}
    sums = res.groupby("pose")["contribution_eV"].sum()
    for pose, e in zip(df["pose"], df["interaction_energy_eV"], strict=True):
        assert sums[pose] == pytest.approx(e, abs=1e-4)
    assert "ligand" in set(res["residue"]) and "A:109:TYR" in set(res["residue"])


def test_potential_sees_atom_sets_like_the_ase_calculator(models, baseline):
    """Potentials are trained on atom sets: rescoring must give E(complex), E(pocket) and
    E(ligand) equal to the ASE calculator on the same atoms (every atom its own block),
    not the energies of residue-block graphs the model never saw."""
    from ase import Atoms
    from get_md.plugins.ase import GETCalculator

    from get_md.build import from_pdb, from_sdf, select_pocket

    df, _ = baseline
    calc = GETCalculator(models["energy"], dtype=torch.float64)
    receptor = from_pdb(REC)
    ref = from_pdb(LIG_PDB)
    pocket = select_pocket(receptor, ref.positions, COMMON["pocket_radius"])
    pose = from_sdf(POSES_SDF)[0]
    row = df.set_index("pose").loc[1]

    def energy(z, pos):
        atoms = Atoms(numbers=z.tolist(), positions=pos.double().numpy())
        atoms.calc = calc
        return atoms.get_potential_energy()

    e_pocket = energy(pocket.atomic_numbers, pocket.positions)
    e_lig = energy(pose.atomic_numbers, pose.positions)
    e_cplx = energy(torch.cat([pocket.atomic_numbers, pose.atomic_numbers]),
                    torch.cat([pocket.positions.double(), pose.positions.double()]))
    assert row["e_pocket_eV"] == pytest.approx(e_pocket, abs=2e-4)
    assert row["e_ligand_eV"] == pytest.approx(e_lig, abs=2e-4)
    assert row["e_complex_eV"] == pytest.approx(e_cplx, abs=2e-4)
    # the residue-block graph of the same atoms gives a different energy: the conversion matters
    spec, _ = resolve_model(models["energy"])
    residue_spec = spec.__class__(**{**spec.__dict__, "blocks": "residues"})
    assert float(run_model(residue_spec, pocket)["energy"][0]) != pytest.approx(e_pocket, abs=1e-2)


def test_score_model_union_pocket_per_residue_and_sort_none(models, tmp_path):
    df = rescore_poses(REC, POSES_SDF, models["score"], pocket_radius=3.0, batch_size=5,
                       per_residue=True, sort="none", out_csv=tmp_path / "s.csv",
                       out_sdf=tmp_path / "s.sdf", progress=False)
    assert isinstance(df, pd.DataFrame)
    assert df["pose"].tolist() == list(range(1, 10))        # input order
    assert sorted(df["rank"]) == list(range(1, 10))
    best = df.loc[df["score"].idxmax()]
    assert best["rank"] == 1                                 # highest score ranks first
    res = df.attrs["per_residue"]
    sums = res.groupby("pose")["contribution"].sum()
    for pose, s in zip(df["pose"], df["score"], strict=True):
        assert sums[pose] == pytest.approx(s, abs=1e-4)
    assert (tmp_path / "s.residues.csv").exists()
    # the streamed union pocket is the pocket around all pose atoms at once
    from get_md.build import from_pdb, read_poses, select_pocket

    allpos = torch.cat([g.positions for g in read_poses(POSES_SDF)])
    assert df.attrs["pocket_residues"] == select_pocket(from_pdb(REC), allpos, 3.0).block_labels
    mols = read_sdf(tmp_path / "s.sdf")
    assert [int(m.GetProp("get_pose")) for m in mols] == list(range(1, 10))
    assert all(m.HasProp("get_score") and m.HasProp("get_rank") for m in mols)


def test_pose_file_parsed_once_when_it_fits(models, tmp_path, monkeypatch):
    """The union-pocket pass keeps the parsed records of a small file for scoring; a file
    over ``KEEP_POSE_ATOMS`` is read a second time. Same scores either way."""
    from get_md.workflows.rescoring import poses as poses_module

    import get_md.build as build

    parsed = []
    real = build.iter_poses

    def counting(path, **kwargs):
        for rec in real(path, **kwargs):
            parsed.append(rec.index)
            yield rec

    monkeypatch.setattr(build, "iter_poses", counting)
    kept = rescore_poses(REC, POSES_SDF, models["score"], pocket_radius=3.0, batch_size=4,
                         sort="none", out_csv=tmp_path / "a.csv", progress=False)
    n_once = len(parsed)
    parsed.clear()
    monkeypatch.setattr(poses_module, "KEEP_POSE_ATOMS", 10)
    again = rescore_poses(REC, POSES_SDF, models["score"], pocket_radius=3.0, batch_size=4,
                          sort="none", out_csv=tmp_path / "b.csv", progress=False)
    assert n_once == 9              # the pocket pass alone (batch_size given: no probe)
    assert len(parsed) == 3 * 9     # the pocket pass, the first 64 poses for check_site_free, scoring
    assert kept["score"].tolist() == again["score"].tolist()


def test_ligand_left_in_the_receptor_is_refused(models, tmp_path):
    """A receptor file that still holds the co-crystal ligand (a hetero group where the
    poses are) is refused, naming the group and the pose; before, the poses that did not
    overlap it within 0.5 Å were scored against it. A cofactor-like group beside the site
    passes."""
    from get_md.errors import WorkflowError

    het = [ln.replace("ATOM  ", "HETATM") for ln in LIG_PDB.read_text().splitlines()
           if ln.startswith(("ATOM", "HETATM"))]
    body = [ln for ln in REC.read_text().splitlines() if not ln.startswith("END")]
    with_ligand = tmp_path / "rec_with_ligand.pdb"
    with_ligand.write_text("\n".join(body + het + ["END"]) + "\n")
    for model in ("score", "energy"):
        with pytest.raises(WorkflowError, match=r"hetero group G:1:LIG \(43 heavy atoms\) sits where the ligand "
                                                r"is: .* record 1 of .*A ligand left in the receptor file"):
            rescore_poses(with_ligand, POSES_SDF, models[model], pocket_radius=4.0, progress=False,
                          out_csv=tmp_path / f"{model}.csv")
    # the same group moved 12 Å away (a cofactor beside the site, not on it) is no ligand left behind
    moved = [ln[:30] + f"{float(ln[30:38]) + 12.0:8.3f}" + ln[38:] for ln in het]
    beside = tmp_path / "rec_with_group_beside.pdb"
    beside.write_text("\n".join(body + moved + ["END"]) + "\n")
    from get_md.workflows.rescoring.receptor import check_site_free, load_receptor

    from get_md.build import iter_poses

    check_site_free(beside, load_receptor(beside), [("pose 1", next(iter(iter_poses(POSES_SDF))).graph)])


def test_a_calpha_or_backbone_receptor_is_refused(models, tmp_path):
    """A receptor of Cα atoms alone, or of backbone atoms alone, is refused naming the
    share of heavy atoms its pocket holds; a Cα trace had been scored (7.5 against 9.7 pK
    for the shipped model on the full receptor)."""
    from get_md.errors import WorkflowError

    atoms = [ln for ln in REC.read_text().splitlines() if ln.startswith("ATOM")]
    for keep, name in (({"CA"}, "ca"), ({"N", "CA", "C", "O"}, "backbone")):
        path = tmp_path / f"{name}.pdb"
        path.write_text("\n".join(ln for ln in atoms if ln[12:16].strip() in keep) + "\nEND\n")
        with pytest.raises(WorkflowError, match=r"pocket: \d+ amino acids hold \d+ of their \d+ heavy atoms .*"
                                                r"a Cα or backbone trace\? The models were trained on all-atom"):
            rescore_poses(path, POSES_SDF, models["score"], pocket_radius=6.0, progress=False,
                          out_csv=tmp_path / f"{name}.csv")


def test_a_ligand_file_given_as_the_receptor_is_warned_about(models, tmp_path, caplog):
    """A ligand PDB given as RECEPTOR (beside the poses, not on them) had been scored as a
    79-atom 'pocket' without a word; now a warning names the file and its hetero group.
    The prolif receptor gets no such warning."""
    atoms = [ln for ln in LIG_PDB.read_text().splitlines() if ln.startswith(("ATOM", "HETATM"))]
    shifted = tmp_path / "ligand_as_receptor.pdb"
    shifted.write_text("\n".join(ln[:30] + f"{float(ln[30:38]) + 6.0:8.3f}" + ln[38:] for ln in atoms) + "\nEND\n")
    for receptor, warned in ((REC, False), (shifted, True)):
        caplog.clear()
        with caplog.at_level("WARNING", logger="get_md.workflows.poses"):
            rescore_poses(receptor, POSES_SDF, models["score"], pocket_radius=6.0, progress=False,
                          out_csv=tmp_path / f"{receptor.stem}.csv")
        said = (f"{receptor}: the receptor holds no protein or nucleic-acid residue, only G:1:LIG (43 heavy "
                "atoms): a ligand file given as the receptor?")
        assert (said in caplog.text) is warned, caplog.text


def test_poses_holding_a_counter_ion_are_warned_about_once(models, tmp_path, caplog):
    """An SDF pose with a chloride beside the ligand (a salt form kept through docking) is
    scored as one ligand with it: one warning names the first such record and its pieces."""
    from rdkit.Chem import rdmolops
    from rdkit.Geometry import Point3D

    writer = Chem.SDWriter(str(tmp_path / "salt.sdf"))
    for mol in Chem.SDMolSupplier(str(POSES_SDF), removeHs=False):
        ion = Chem.RWMol(Chem.MolFromSmiles("[Cl-]"))
        both = Chem.RWMol(rdmolops.CombineMols(mol, ion))
        conf = both.GetConformer()
        p0 = conf.GetAtomPosition(0)
        conf.SetAtomPosition(both.GetNumAtoms() - 1, Point3D(p0.x + 3.5, p0.y, p0.z))
        writer.write(both)
    writer.close()
    with caplog.at_level("WARNING", logger="get_md.workflows.poses"):
        rescore_poses(REC, tmp_path / "salt.sdf", models["score"], pocket_radius=4.0, progress=False,
                      batch_size=4, out_csv=tmp_path / "s.csv")
    assert caplog.text.count("separate molecules") == 1
    assert "record 1 holds 2 separate molecules (C33H36N5O5+, Cl-), scored together as one ligand" in caplog.text


def test_plot_of_the_pose_scores(models, tmp_path, monkeypatch):
    """--plot draws each scored pose (in input order) with its value, and refuses to
    overwrite an input before any work."""
    from get_md.workflows.rescoring import poses as poses_module

    drawn = {}
    real = poses_module.plot_pose_scores

    def spy(table, path, column, title=""):
        drawn.update(poses=table["pose"].tolist(), column=column)
        real(table, path, column, title)

    monkeypatch.setattr(poses_module, "plot_pose_scores", spy)
    rescore_poses(REC, POSES_SDF, models["energy"], pocket_radius=3.0, out_csv=tmp_path / "e.csv",
                  plot=tmp_path / "e.png", progress=False)
    assert drawn["column"] == "interaction_energy_kcal_mol"
    assert sorted(drawn["poses"]) == list(range(1, 10))
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"
    before = POSES_SDF.read_bytes()
    with pytest.raises(ValueError, match="--plot .*is the POSES input"):
        rescore_poses(REC, POSES_SDF, models["score"], plot=POSES_SDF, progress=False)
    assert POSES_SDF.read_bytes() == before


def _sdf_with_bad_record(tmp_path: Path, bad: int = 5) -> Path:
    text = POSES_SDF.read_text()
    records = text.split("$$$$\n")
    lines = records[bad - 1].splitlines()
    records[bad - 1] = "\n".join(lines[:20]) + "\n"          # truncated atom block
    out = tmp_path / "poses_bad.sdf"
    out.write_text("$$$$\n".join(records))
    return out


def test_malformed_pose_is_reported_and_skipped(models, tmp_path, caplog):
    poses = _sdf_with_bad_record(tmp_path)
    with caplog.at_level("WARNING"):
        df = rescore_poses(REC, poses, models["energy"], out_csv=tmp_path / "o.csv",
                           out_sdf=tmp_path / "o.sdf", **COMMON)
    assert len(df) == 9
    bad = df[df["pose"] == 5].iloc[0]
    assert bad["status"] == "skipped" and "record 5" in bad["error"]
    assert pd.isna(bad["rank"]) and math.isnan(bad["interaction_energy_eV"])
    assert df["pose"].iloc[-1] == 5                          # failed poses sort last
    assert (df["status"] == "ok").sum() == 8
    assert any("record 5" in r.getMessage() for r in caplog.records)
    csv = pd.read_csv(tmp_path / "o.csv")
    assert "record 5" in csv.loc[csv["pose"] == 5, "error"].iloc[0]
    mols = read_sdf(tmp_path / "o.sdf")
    assert len(mols) == 8 and 5 not in [int(m.GetProp("get_pose")) for m in mols]


def _moved(mol, edit) -> Chem.Mol:
    """A copy of ``mol`` with atom positions replaced by ``edit(index, xyz)``."""
    import numpy as np
    from rdkit.Geometry import Point3D

    mol = Chem.Mol(mol)
    conf = mol.GetConformer()
    for i in range(mol.GetNumAtoms()):
        p = conf.GetAtomPosition(i)
        conf.SetAtomPosition(i, Point3D(*(float(v) for v in edit(i, np.array([p.x, p.y, p.z])))))
    return mol


def test_physically_broken_poses_are_skipped_with_the_reason(models, tmp_path, capsys):
    """Poses that parse but must not be scored: an atom at 1e5 Å or 1e30 Å, two atoms
    0.001 Å apart, a pose 9e4 Å from the receptor, an atom 500 Å from the rest of its
    pose, a pose atom 0.2 Å from a pocket atom. Each gets status "skipped", an error
    naming the file, the record and the atom, and no rank; the intact ones are scored."""
    import numpy as np

    from get_md.build import from_pdb, select_pocket

    mols = read_sdf(POSES_SDF)
    pocket = select_pocket(from_pdb(REC), from_pdb(LIG_PDB), COMMON["pocket_radius"])
    pocket_atom = pocket.positions[0].double().numpy()
    broken = {
        2: (_moved(mols[1], lambda i, p: [1.0e5, 0.0, 0.0] if i == 3 else p), "atom 4 (O)", "beyond"),
        3: (_moved(mols[2], lambda i, p: [1.0e30, 0.0, 0.0] if i == 3 else p), "atom 4", "beyond"),
        4: (_moved(mols[3], lambda i, p: p), "atom 5", "0.001 Å apart"),
        5: (_moved(mols[4], lambda i, p: p + [9.0e4, 0.0, 0.0]), "not in the pocket", "89"),
        6: (_moved(mols[5], lambda i, p: p + [500.0, 0.0, 0.0] if i == 7 else p), "atom 8", "from any other atom"),
        7: (_moved(mols[6], lambda i, p: pocket_atom + [0.2, 0.0, 0.0] if i == 0 else p), "atom 1", "0.2 Å from pocket"),
    }
    conf = broken[4][0].GetConformer()
    a = conf.GetAtomPosition(3)
    conf.SetAtomPosition(4, (a.x + 0.001, a.y, a.z))
    poses = tmp_path / "broken.sdf"
    with open(poses, "w") as fh:   # V3000: free-format coordinates hold 1e30
        for k, mol in enumerate(mols, 1):
            fh.write(Chem.MolToV3KMolBlock(broken[k][0] if k in broken else mol) + "$$$$\n")
    out_csv = tmp_path / "b.csv"
    argv = ["rescore-poses", str(REC), str(poses), "--model", str(models["energy"]), "--reference",
            str(LIG_PDB), "--pocket-radius", "4", "--out-csv", str(out_csv), "--out-sdf",
            str(tmp_path / "b.sdf"), "--quiet"]
    from get_md.cli import main

    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert "scored 3 of 9 pose(s) (6 skipped" in out
    df = pd.read_csv(out_csv).set_index("pose")
    assert df.loc[[1, 8, 9], "status"].eq("ok").all() and sorted(df.loc[[1, 8, 9], "rank"]) == [1, 2, 3]
    for k, (_mol, atom, why) in broken.items():
        row = df.loc[k]
        assert row["status"] == "skipped" and pd.isna(row["rank"]), k
        assert math.isnan(row["interaction_energy_eV"]), k
        assert row["error"].startswith(f"{poses}: record {k}: "), row["error"]
        assert atom in row["error"] and why in row["error"], (k, row["error"])
    assert len(read_sdf(tmp_path / "b.sdf")) == 3
    assert np.isfinite(df.loc[[1, 8, 9], "interaction_energy_eV"]).all()


def test_hydrogen_contact_with_the_pocket_is_scored_by_a_model_that_drops_hydrogens(models, tmp_path):
    """A ligand hydrogen 0.3 Å from a receptor hydrogen, heavy atoms clear: a potential
    (reads every hydrogen) skips the pose as overlapping atoms, a score model with
    ``heavy_atoms_only`` scores it, and exactly as the unmoved pose (it reads no
    hydrogen). Two heavy atoms that close are still refused by both."""
    import numpy as np
    from poses_helpers import TINY

    from get_md.build import from_pdb, select_pocket
    from get_md.export import save
    from get_md.models import build_model

    torch.manual_seed(0)
    heavy_model = tmp_path / "heavy.pt"
    save(build_model("get", mode="score", task="score", heavy_atoms_only=True, **TINY), heavy_model)
    mols = read_sdf(POSES_SDF)[:2]
    pocket = select_pocket(from_pdb(REC), from_pdb(LIG_PDB), COMMON["pocket_radius"])
    pxyz = pocket.positions.double().numpy()
    pz = pocket.atomic_numbers.numpy()
    lig = mols[0]
    lxyz = lig.GetConformer().GetPositions()
    lz = np.array([a.GetAtomicNum() for a in lig.GetAtoms()])
    lh, ph = np.flatnonzero(lz == 1), np.flatnonzero(pz == 1)
    d = np.linalg.norm(lxyz[lh, None] - pxyz[None, ph], axis=2)
    a, b = np.unravel_index(np.argmin(d), d.shape)
    h, q = int(lh[a]), int(ph[b])
    target = pxyz[q] + 0.3 * (lxyz[h] - pxyz[q]) / np.linalg.norm(lxyz[h] - pxyz[q])
    moved = _moved(lig, lambda i, xyz: target if i == h else xyz)
    # preconditions: only the hydrogen pair is closer than 0.5 Å
    assert np.linalg.norm(pxyz[pz != 1] - target, axis=1).min() > 0.5
    assert np.delete(np.linalg.norm(lxyz - target, axis=1), h).min() > 0.5
    heavy = int(np.flatnonzero(lz != 1)[0])
    clash = _moved(lig, lambda i, xyz: pxyz[pz != 1][0] + [0.2, 0.0, 0.0] if i == heavy else xyz)
    poses = tmp_path / "h_contact.sdf"
    with Chem.SDWriter(str(poses)) as w:
        for m in (lig, moved, clash):
            w.write(m)

    common = {**COMMON, "sort": "none"}
    pot = rescore_poses(REC, poses, models["energy"], **common).set_index("pose")
    assert list(pot["status"]) == ["ok", "skipped", "skipped"]
    assert f"atom {h + 1} (H)" in pot.loc[2, "error"] and "from pocket" in pot.loc[2, "error"]
    score = rescore_poses(REC, poses, heavy_model, **common).set_index("pose")
    assert list(score["status"]) == ["ok", "ok", "skipped"], score["error"].tolist()
    assert score.loc[2, "score"] == score.loc[1, "score"]
    assert f"atom {heavy + 1} (" in score.loc[3, "error"] and "from pocket" in score.loc[3, "error"]
    # the same file with a model that reads hydrogens: the tiny score model of `models`
    plain = rescore_poses(REC, poses, models["score"], **common).set_index("pose")
    assert list(plain["status"]) == ["ok", "skipped", "skipped"]


def _receptor_with(tmp_path: Path, name: str, edit) -> Path:
    """REC with ``edit(atom_lines)`` applied to its ATOM lines (a list, changed in place)."""
    lines = REC.read_text().splitlines()
    atoms = [i for i, line in enumerate(lines) if line.startswith(("ATOM", "HETATM"))]
    edit(lines, atoms)
    out = tmp_path / name
    out.write_text("\n".join(lines) + "\n")
    return out


def _set_xyz(line: str, xyz) -> str:
    return line[:30] + "".join(f"{v:8.3f}" for v in xyz) + line[54:]


def test_broken_receptor_is_a_clear_error_before_any_work(models, tmp_path, capsys, monkeypatch):
    """A receptor atom at 9999 Å: one line naming the receptor file and the atom (serial,
    residue, name), before any pose is read. Two pocket atoms 0.3 Å apart: the same."""
    import get_md.build
    from get_md.build import from_pdb, select_pocket
    from get_md.cli import main

    def far(lines, atoms):
        line = lines[atoms[500]]
        lines[atoms[500]] = _set_xyz(line, [9999.0, float(line[38:46]), float(line[46:54])])

    far_rec = _receptor_with(tmp_path, "far.pdb", far)
    serial = int(REC.read_text().splitlines()[[i for i, ln in enumerate(REC.read_text().splitlines())
                                               if ln.startswith(("ATOM", "HETATM"))][500]][6:11])

    def no_poses(*args, **kwargs):
        raise AssertionError("poses read before the receptor was checked")

    monkeypatch.setattr(get_md.build, "iter_poses", no_poses)
    argv = ["rescore-poses", str(far_rec), str(POSES_SDF), "--model", str(models["energy"]),
            "--pocket-radius", "4", "--out-csv", str(tmp_path / "f.csv"), "--quiet"]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("get-md: error:")]
    assert f"{far_rec}: receptor: atom {serial} (A:" in line and "9999" in line and "misplaced" in line
    monkeypatch.undo()

    # two pocket atoms 0.3 Å apart (an atom of the pocket's first residue moved onto another)
    pocket = select_pocket(from_pdb(REC), from_pdb(LIG_PDB), 4.0)
    first = pocket.positions[0].tolist()

    def clash(lines, atoms):
        for i in atoms:
            xyz = [float(lines[i][30 + 8 * k:38 + 8 * k]) for k in range(3)]
            if max(abs(a - b) for a, b in zip(xyz, first, strict=True)) < 1e-3:
                k = atoms[atoms.index(i) + 1]
                lines[k] = _set_xyz(lines[k], [first[0] + 0.3, first[1], first[2]])
                return
        raise AssertionError("pocket atom not found")

    clash_rec = _receptor_with(tmp_path, "clash.pdb", clash)
    argv = ["rescore-poses", str(clash_rec), str(POSES_SDF), "--model", str(models["energy"]),
            "--reference", str(LIG_PDB), "--pocket-radius", "4", "--out-csv", str(tmp_path / "c.csv"),
            "--quiet"]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("get-md: error:")]
    assert f"{clash_rec}: pocket: atom " in line and "0.3 Å apart" in line and "(A:" in line
    assert not (tmp_path / "c.csv").exists()
    assert "nm" not in line  # one clash in an intact receptor: no hint at units


def test_files_in_nm_are_named_as_wrong_units(models, tmp_path, capsys):
    """Poses, then a receptor, written in nm instead of Å: the overlap each trips says
    that the whole structure is ten times too small (coordinates in nm?), where one
    clash in an intact pose says nothing of units."""
    from get_md.workflows.geometry_checks import pose_problem

    from get_md.cli import main

    mols = read_sdf(POSES_SDF)
    poses = tmp_path / "poses_nm.sdf"
    with Chem.SDWriter(str(poses)) as w:
        for mol in mols:
            w.write(_moved(mol, lambda i, xyz: xyz / 10.0))
    out_csv = tmp_path / "nm.csv"
    argv = ["rescore-poses", str(REC), str(poses), "--model", str(models["energy"]), "--reference",
            str(LIG_PDB), "--pocket-radius", "4", "--out-csv", str(out_csv), "--out-sdf",
            str(tmp_path / "nm.sdf"), "--quiet"]
    assert main(argv) != 0  # no pose could be scored
    capsys.readouterr()
    df = pd.read_csv(out_csv)
    assert df["status"].eq("skipped").all()
    assert df["error"].str.contains("coordinates in nm").all(), df["error"][0]

    def shrink(lines, atoms):
        for i in atoms:
            lines[i] = _set_xyz(lines[i], [float(lines[i][30 + 8 * k:38 + 8 * k]) / 10 for k in range(3)])

    rec_nm = _receptor_with(tmp_path, "rec_nm.pdb", shrink)
    argv = ["rescore-poses", str(rec_nm), str(POSES_SDF), "--model", str(models["energy"]),
            "--pocket-radius", "4", "--out-csv", str(tmp_path / "r.csv"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("get-md: error:")]
    assert f"{rec_nm}: " in line and "coordinates in nm" in line

    lig = mols[0].GetConformer().GetPositions()
    lig[1] = lig[0] + [0.001, 0.0, 0.0]
    why = pose_problem(lig, lig + 50.0, lambda i: f"atom {i + 1}", str, 6.0)
    assert "overlapping atoms" in why and "nm" not in why
