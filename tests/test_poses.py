"""get-md rescore-poses (get_md.workflows.poses) on real docking poses, with tiny models.

Receptor and poses: prolif's GPCR and its 9 Vina poses (tests/data/prolif), PoseBusters'
1ia1 for the PoseBusters flags. Models: 1-layer GETs of width 16 (random weights), so
the numbers mean nothing; the tests check the workflow: one row per record, tags,
sorting, skipped records, per-residue sums, resume after a kill, Dask = one process.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from get_md.workflows._common import (
    CRASH_ENV,
    CRASH_EXIT_CODE,
    ProgressStore,
    WorkflowError,
    get_module,
    resolve_model,
    run_model,
)
from get_md.workflows.poses import rescore_poses
from rdkit import Chem

from get_md.units import EV_TO_KCAL_MOL

DATA = Path(__file__).parent / "data"
REC = DATA / "prolif" / "rec.pdb"
LIG_PDB = DATA / "prolif" / "lig.pdb"
POSES_SDF = DATA / "prolif" / "vina_output.sdf"
POSES_MOL2 = DATA / "prolif" / "vina_output.mol2"
POSE_PDBQT = DATA / "prolif" / "vina_output_ligand_1.pdbqt"
P1IA1 = DATA / "posebusters" / "1ia1" / "1ia1_protein_one_lig_removed.pdb"
L1IA1 = DATA / "posebusters" / "1ia1" / "1ia1_ligand.sdf"

TINY = dict(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, cutoff=5.0)
#: small pocket (about 400 atoms) so that each run takes about a second
COMMON = dict(reference=LIG_PDB, pocket_radius=4.0, batch_size=4, progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from get_md.export import save
    from get_md.models import build_model

    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    save(build_model("get", **TINY), d / "energy.pt")
    save(build_model("get", mode="score", task="score", **TINY), d / "score.pt")
    return {"energy": d / "energy.pt", "score": d / "score.pt"}


@pytest.fixture(scope="module")
def baseline(models, tmp_path_factory):
    """One uninterrupted single-process run with a potential: table + output files."""
    d = tmp_path_factory.mktemp("baseline")
    df = rescore_poses(REC, POSES_SDF, models["energy"], out_csv=d / "out.csv", out_sdf=d / "out.sdf",
                       per_residue=True, **COMMON)
    return df, d


def _read_sdf(path):
    return [m for m in Chem.SDMolSupplier(str(path), removeHs=False)]


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
    mols = _read_sdf(d / "out.sdf")
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
    mols = _read_sdf(tmp_path / "s.sdf")
    assert [int(m.GetProp("get_pose")) for m in mols] == list(range(1, 10))
    assert all(m.HasProp("get_score") and m.HasProp("get_rank") for m in mols)


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
    mols = _read_sdf(tmp_path / "o.sdf")
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

    mols = _read_sdf(POSES_SDF)
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
    assert len(_read_sdf(tmp_path / "b.sdf")) == 3
    assert np.isfinite(df.loc[[1, 8, 9], "interaction_energy_eV"]).all()


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


def test_mol2_and_vina_pdbqt_inputs(models, tmp_path):
    df = rescore_poses(REC, POSES_MOL2, models["score"], out_sdf=tmp_path / "m.sdf", **COMMON)
    assert len(df) == 9 and (df["status"] == "ok").all()
    assert len(_read_sdf(tmp_path / "m.sdf")) == 9
    df = rescore_poses(REC, POSE_PDBQT, models["score"], out_csv=tmp_path / "q.csv",
                       out_sdf=tmp_path / "q.sdf", **COMMON)
    assert len(df) == 1 and df["vina_score"].iloc[0] == pytest.approx(-11.8)
    (mol,) = _read_sdf(tmp_path / "q.sdf")
    assert float(mol.GetProp("vina_score")) == pytest.approx(-11.8)   # input tags kept
    assert mol.HasProp("get_score")


def test_resume_after_kill_gives_identical_output(models, baseline, tmp_path):
    _, base = baseline
    out_csv, out_sdf = tmp_path / "out.csv", tmp_path / "out.sdf"
    argv = ["rescore-poses", str(REC), str(POSES_SDF), "--model", str(models["energy"]),
            "--reference", str(LIG_PDB), "--pocket-radius", "4", "--batch-size", "4",
            "--per-residue", "--out-csv", str(out_csv), "--out-sdf", str(out_sdf), "--quiet",
            "--parallel", "2"]  # two batches at once: still committed in order
    env = dict(os.environ, **{CRASH_ENV: "1:torn", "OMP_NUM_THREADS": "1"})
    proc = subprocess.run([sys.executable, "-m", "get_md.cli", *argv], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == CRASH_EXIT_CODE, proc.stderr[-2000:]
    partial = Path(str(out_csv) + ".partial")
    raw = partial.read_bytes()
    assert not raw.endswith(b"\n")                           # killed in the middle of a batch line
    assert len(raw.split(b"\n")) == 3                        # header, one batch, torn line
    assert not out_csv.exists() and not out_sdf.exists()

    from get_md.cli import main

    assert main(argv) == 0                                   # the same command resumes
    assert not partial.exists()
    assert out_csv.read_bytes() == (base / "out.csv").read_bytes()
    assert out_sdf.read_bytes() == (base / "out.sdf").read_bytes()
    assert (tmp_path / "out.residues.csv").read_bytes() == (base / "out.residues.csv").read_bytes()


def test_progress_store_changed_options_start_over(tmp_path):
    path = tmp_path / "x.partial"
    s = ProgressStore(path, {"a": 1})
    s.open({"batch_size": 3})
    s.commit(0, {"rows": [{"v": 0.1}]})
    s.close()
    s = ProgressStore(path, {"a": 1})
    s.open()
    assert s.done(0) and s.state == {"batch_size": 3} and s.batches[0]["rows"][0]["v"] == 0.1
    s.close()
    s = ProgressStore(path, {"a": 2})                        # other inputs/options
    s.open()
    assert not s.done(0)
    s.close()
    header = json.loads(path.read_text().splitlines()[0])
    assert header["fingerprint"] == {"a": 2}


def test_dask_two_workers_equal_single_process(models, baseline, tmp_path):
    pytest.importorskip("distributed")
    df0, _ = baseline
    df = rescore_poses(REC, POSES_SDF, models["energy"], per_residue=True, workers=2,
                       dask_processes=False, out_csv=tmp_path / "d.csv", **COMMON)
    pd.testing.assert_frame_equal(df, df0)
    pd.testing.assert_frame_equal(df.attrs["per_residue"], df0.attrs["per_residue"])


def test_pocket_reuse_changes_no_energy(models, monkeypatch):
    """Potentials score poses reusing the pocket's terms (GET.forward_in_environment).
    In float64 the energies equal a plain forward of every complex to 1e-8 relative to
    the totals; the differences between poses (what ranks them) are far larger."""
    import get_md.workflows.rescoring.poses as poses_module
    from get_md.workflows._common import environment_cache
    from get_md.workflows.poses import load_receptor, load_reference

    from get_md.build import select_pocket

    kw = {**COMMON, "dtype": "float64", "sort": "none", "per_residue": True}
    spec, _ = resolve_model(models["energy"], dtype="float64")
    pocket = select_pocket(load_receptor(REC), load_reference(LIG_PDB)[0], COMMON["pocket_radius"])
    assert environment_cache(spec, pocket) is not None   # the reuse path runs
    reused = rescore_poses(REC, POSES_SDF, models["energy"], **kw)
    monkeypatch.setattr(poses_module, "environment_cache", lambda spec, graph: None)
    plain = rescore_poses(REC, POSES_SDF, models["energy"], **kw)
    assert list(plain["pose"]) == list(reused["pose"]) == list(range(1, 10))
    bound = 1e-8 * float(reused["e_complex_eV"].abs().max())
    for col in ("e_complex_eV", "e_ligand_eV", "e_pocket_eV", "interaction_energy_eV"):
        assert float((plain[col] - reused[col]).abs().max()) <= bound, col
    res0, res1 = reused.attrs["per_residue"], plain.attrs["per_residue"]
    assert float((res0["contribution_eV"] - res1["contribution_eV"]).abs().max()) <= bound
    e = reused["interaction_energy_eV"]
    assert float(e.max() - e.min()) > 100 * bound           # the signal the bound protects


def test_parallel_batches_equal_single_process(models, baseline, tmp_path):
    df0, _ = baseline
    df = rescore_poses(REC, POSES_SDF, models["energy"], per_residue=True, parallel=3,
                       out_csv=tmp_path / "p.csv", **COMMON)  # 3 batches (4, 4, 1) at once
    pd.testing.assert_frame_equal(df, df0)
    pd.testing.assert_frame_equal(df.attrs["per_residue"], df0.attrs["per_residue"])
    assert torch.get_num_threads() == 1                    # the caller's setting is back


def test_fan_out_in_threads_keeps_task_order_and_raises():
    import threading
    import time

    from get_md.workflows._common import auto_batch_size, fan_out, parallel_batches

    def work(i):
        time.sleep(0.05 * (i % 3 == 0))                   # some tasks finish out of order
        return i, threading.current_thread().name, torch.get_num_threads()

    got = []
    torch.set_num_threads(1)
    fan_out(work, ((i, (i,)) for i in range(10)), lambda k, r: got.append((k, r)), parallel=3)
    assert [k for k, _ in got] == list(range(10)) and [r[0] for _, r in got] == list(range(10))
    names = {r[1] for _, r in got}
    assert all(n.startswith("get_md-batch") for n in names) and len(names) > 1
    assert all(r[2] == 1 for _, r in got)                  # threads // parallel, at least 1

    def failing(i):
        if i == 4:
            raise ValueError("record 4: bad")
        return i

    seen = []
    with pytest.raises(ValueError, match="record 4"):
        fan_out(failing, ((i, (i,)) for i in range(10)), lambda k, r: seen.append(k), parallel=2)
    assert seen == [0, 1, 2, 3]
    assert not [t for t in threading.enumerate() if t.name.startswith("get_md-batch")]

    assert parallel_batches("cuda") == 1 and parallel_batches("cpu", 3) == 3
    with pytest.raises(WorkflowError, match="--parallel"):
        parallel_batches("cpu", 0)
    from get_md.workflows._common import ModelRef as ModelSpec

    cpu = ModelSpec(path="x.pt")
    assert auto_batch_size(cpu, None, None, 0, n_items=9, parallel=2) == 5   # both cores busy
    assert auto_batch_size(cpu, None, None, 0, n_items=1000, parallel=2) == 16
    assert auto_batch_size(cpu, None, 7, 0, n_items=9, parallel=2) == 7


def test_posebusters_flags(models, tmp_path):
    pytest.importorskip("posebusters")
    mol = Chem.MolFromMolFile(str(L1IA1), removeHs=False)
    moved = Chem.Mol(mol)
    conf = moved.GetConformer()
    for i in range(moved.GetNumAtoms()):
        p = conf.GetAtomPosition(i)
        conf.SetAtomPosition(i, (p.x + 0.5, p.y, p.z))
    poses = tmp_path / "two.sdf"
    with Chem.SDWriter(str(poses)) as w:
        w.write(mol)
        w.write(moved)
    df = rescore_poses(P1IA1, poses, models["score"], pocket_radius=4.0, batch_size=2,
                       posebusters="dock_fast", out_sdf=tmp_path / "pb.sdf", progress=False)
    assert "pb_valid" in df.columns and "pb_minimum_distance_to_protein" in df.columns
    assert df["pb_valid"].map(lambda v: isinstance(v, bool)).all()
    assert df.loc[df["pose"] == 1, "pb_minimum_distance_to_protein"].iloc[0]
    assert all(m.HasProp("pb_valid") for m in _read_sdf(tmp_path / "pb.sdf"))


def test_posebusters_missing_is_a_clear_error(models, monkeypatch):
    monkeypatch.setitem(sys.modules, "posebusters", None)
    with pytest.raises(WorkflowError, match="pip install posebusters"):
        rescore_poses(REC, POSES_SDF, models["score"], posebusters=True, **COMMON)


def test_bad_inputs_are_clear_errors(models, tmp_path, capsys):
    from get_md.cli import main

    with pytest.raises(WorkflowError, match="sort energy needs a potential"):
        rescore_poses(REC, POSES_SDF, models["score"], sort="energy", **COMMON)
    assert main(["rescore-poses", str(REC), str(tmp_path / "missing.sdf"),
                 "--model", str(models["score"])]) == 2
    assert "missing.sdf: file not found" in capsys.readouterr().err


@pytest.mark.gpu
def test_cuda_auto_batch_size(models, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    df = rescore_poses(REC, POSES_SDF, models["energy"], reference=LIG_PDB, pocket_radius=4.0,
                       device="cuda", out_csv=tmp_path / "g.csv", progress=False)
    assert len(df) == 9 and (df["status"] == "ok").all()


def test_prefetch_keeps_order_raises_and_stops():
    """The read-ahead thread of the workflows: same items in order, the source's error
    raised in the consumer, and an abandoned generator does not read on."""
    from get_md.workflows._common import prefetch

    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))
    assert list(prefetch(iter([]))) == []

    def failing():
        yield 1
        raise ValueError("record 2: bad")

    got = []
    with pytest.raises(ValueError, match="record 2"):
        for x in prefetch(failing()):
            got.append(x)
    assert got == [1]

    seen = []

    def counting():
        for i in range(1000):
            seen.append(i)
            yield i

    gen = prefetch(counting(), depth=2)
    assert next(gen) == 0
    gen.close()
    import time

    time.sleep(0.5)
    assert len(seen) <= 5
    import threading

    assert not [t for t in threading.enumerate() if t.name == "get_md-prefetch"], "reader thread left running"


def _with_zinc(path: Path, out: Path) -> Path:
    """``path`` (PDB) plus a Zn2+ ion 3 Å from the first atom of the reference ligand."""
    lig = next(line for line in LIG_PDB.read_text().splitlines() if line.startswith(("ATOM", "HETATM")))
    x, y, z = (float(lig[30 + 8 * k:38 + 8 * k]) for k in range(3))
    zn = f"HETATM{9999:5d} ZN    ZN B 901    {x + 3.0:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00          ZN"
    lines = path.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(("CONECT", "END")))
    out.write_text("\n".join(lines[:at] + [zn] + lines[at:]) + "\n")
    return out


def test_unsupported_pocket_residue_is_named_or_dropped(tmp_path):
    """A Zn ion in the pocket of a model without Zn: an error naming the residue and the
    option, or with drop_unsupported the same energies as the receptor without it."""
    from get_md.export import save
    from get_md.models import build_model

    torch.manual_seed(0)
    model = tmp_path / "organic.pt"
    save(build_model("get", **TINY), model, {"elements": ["H", "C", "N", "O", "S"]})
    rec_zn = _with_zinc(REC, tmp_path / "rec_zn.pdb")
    with pytest.raises(WorkflowError, match=r"rec_zn\.pdb: pocket residue\(s\) B:901:ZN hold element\(s\) Zn .*"
                                            r"--drop-unsupported"):
        rescore_poses(rec_zn, POSES_SDF, model, **COMMON)
    a = rescore_poses(REC, POSES_SDF, model, **COMMON)
    b = rescore_poses(rec_zn, POSES_SDF, model, drop_unsupported=True, **COMMON)
    assert b["interaction_energy_eV"].tolist() == pytest.approx(a["interaction_energy_eV"].tolist(), abs=1e-9)
    assert b.attrs["pocket_residues"] == a.attrs["pocket_residues"]
