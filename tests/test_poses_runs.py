"""get-md rescore-poses (get_md.workflows.poses), runs: MOL2 / PDBQT inputs, resume after
a kill, progress store, Dask and parallel batches equal one process, pocket reuse, thread
fan-out and prefetch, PoseBusters flags, CUDA batch size, unsupported pocket residues.
Tiny random models (see tests/test_poses.py)."""

from __future__ import annotations

import json
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
    resolve_model,
)
from get_md.workflows.poses import rescore_poses
from poses_helpers import (
    COMMON,
    L1IA1,
    LIG_PDB,
    P1IA1,
    POSE_PDBQT,
    POSES_MOL2,
    POSES_SDF,
    REC,
    TINY,
    make_baseline,
    make_models,
    read_sdf,
)
from rdkit import Chem

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models(tmp_path_factory)


@pytest.fixture(scope="module")
def baseline(models, tmp_path_factory):
    """One uninterrupted single-process run with a potential: table + output files."""
    return make_baseline(models, tmp_path_factory)


def test_mol2_and_vina_pdbqt_inputs(models, tmp_path):
    df = rescore_poses(REC, POSES_MOL2, models["score"], out_sdf=tmp_path / "m.sdf", **COMMON)
    assert len(df) == 9 and (df["status"] == "ok").all()
    assert len(read_sdf(tmp_path / "m.sdf")) == 9
    df = rescore_poses(REC, POSE_PDBQT, models["score"], out_csv=tmp_path / "q.csv",
                       out_sdf=tmp_path / "q.sdf", **COMMON)
    assert len(df) == 1 and df["vina_score"].iloc[0] == pytest.approx(-11.8)
    (mol,) = read_sdf(tmp_path / "q.sdf")
    assert float(mol.GetProp("vina_score")) == pytest.approx(-11.8)   # input tags kept
    assert mol.HasProp("get_score")


def test_vina_flexible_residues_are_not_ligand_atoms(models, tmp_path, caplog):
    """A flexible-side-chain Vina pose (BEGIN_RES ... END_RES after the ligand) scores its
    ligand alone, against the receptor file's side chain, with one warning; before, the
    side chain's atoms were read as ligand atoms on top of the receptor's copy and the
    pose was skipped as overlapping."""
    pose = POSE_PDBQT.read_text()
    # the flexible part of the first pocket residue of the receptor, as Vina writes it
    residue = next(ln[17:26] for ln in REC.read_text().splitlines() if ln.startswith("ATOM") and "TYR" in ln)
    atoms = [ln for ln in REC.read_text().splitlines()
             if ln.startswith("ATOM") and ln[17:26] == residue and ln[12:16].strip() not in ("N", "C", "O", "H")]
    flex = [f"BEGIN_RES {residue}", "ROOT"] + [ln[:66].ljust(70) + "  0.000 " + ln[76:78].strip() for ln in atoms[:2]]
    flex += ["ENDROOT", "BRANCH   1   2"] + [ln[:66].ljust(70) + "  0.000 " + ln[76:78].strip() for ln in atoms[2:]]
    flex += ["ENDBRANCH   1   2", f"END_RES {residue}"]
    flexible = tmp_path / "flex_out.pdbqt"
    flexible.write_text("MODEL 1\n" + pose.rstrip("\n") + "\n" + "\n".join(flex) + "\nENDMDL\n")
    plain = rescore_poses(REC, POSE_PDBQT, models["score"], out_csv=tmp_path / "a.csv", **COMMON)
    with caplog.at_level("WARNING"):
        df = rescore_poses(REC, flexible, models["score"], out_csv=tmp_path / "b.csv", **COMMON)
    assert df["status"].tolist() == ["ok"], df["error"].tolist()
    assert df["score"].iloc[0] == pytest.approx(plain["score"].iloc[0], abs=1e-6)
    assert df["flexible_residues"].iloc[0] == " ".join(residue.split())
    assert "hold flexible receptor residues" in caplog.text


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


def test_worker_processes_that_fail_to_start_get_the_main_guard_hint(monkeypatch):
    """A script calling rescore_poses(workers=...) without a main guard: Dask's worker
    processes rerun it and stop at its output lock, and the run had ended with Dask's bare
    "Nanny failed to start" (seen by running such a script; starting it here would cost
    ~10 s, so Dask's error is stood in for)."""
    distributed = pytest.importorskip("distributed")
    from get_md.workflows.rescoring.parallel import make_client

    def no_start(*args, **kwargs):
        raise RuntimeError("Nanny failed to start.")

    monkeypatch.setattr(distributed, "LocalCluster", no_start)
    with pytest.raises(WorkflowError, match=r"Nanny failed to start.*if __name__ == \"__main__\":"):
        make_client(2, None, processes=True)
    with pytest.raises(RuntimeError, match="Nanny failed"):  # threads: no script rerun, Dask's error
        make_client(2, None, processes=False)


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
    assert all(m.HasProp("pb_valid") for m in read_sdf(tmp_path / "pb.sdf"))


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


def test_score_model_leaves_an_unsupported_ion_out_by_default(tmp_path, caplog):
    """A score model (not trained with Zn) scores the pocket without the ion by default,
    with a warning naming it, as the receptor without it; drop_unsupported=False makes
    it the potential's error."""
    import logging

    from get_md.export import save
    from get_md.models import build_model

    torch.manual_seed(0)
    model = tmp_path / "score_organic.pt"
    save(build_model("get", mode="score", task="score", **TINY), model, {"elements": ["H", "C", "N", "O", "S"]})
    rec_zn = _with_zinc(REC, tmp_path / "rec_zn.pdb")
    a = rescore_poses(REC, POSES_SDF, model, **COMMON)
    with caplog.at_level(logging.WARNING):
        b = rescore_poses(rec_zn, POSES_SDF, model, **COMMON)
    assert b["score"].tolist() == pytest.approx(a["score"].tolist(), abs=1e-9)
    assert any("B:901:ZN" in r.getMessage() and "left out of the pocket" in r.getMessage() for r in caplog.records)
    with pytest.raises(WorkflowError, match=r"B:901:ZN hold element\(s\) Zn"):
        rescore_poses(rec_zn, POSES_SDF, model, drop_unsupported=False, **COMMON)


def _residue_as_cofactor(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The receptor residue nearest the ligand three ways: left out (``minus.pdb``), as a
    HETATM group of the receptor file (``het.pdb``) and as a separate SDF (``cof.sdf``)."""
    import numpy as np

    def xyz(line):
        return [float(line[30:38]), float(line[38:46]), float(line[46:54])]

    lines = REC.read_text().splitlines()
    atoms = [ln for ln in lines if ln.startswith(("ATOM", "HETATM"))]
    lig = np.array([xyz(ln) for ln in LIG_PDB.read_text().splitlines() if ln.startswith(("ATOM", "HETATM"))])
    nearest = min(atoms, key=lambda ln: np.linalg.norm(lig - xyz(ln), axis=1).min())
    key = nearest[21:27]
    residue = [ln for ln in atoms if ln[21:27] == key]
    rest = [ln for ln in lines if not (ln.startswith(("ATOM", "HETATM")) and ln[21:27] == key) and ln != "END"]
    het = ["HETATM" + ln[6:17] + "COF Z 999" + ln[26:] for ln in residue]
    (tmp_path / "minus.pdb").write_text("\n".join(rest + ["END"]) + "\n")
    (tmp_path / "het.pdb").write_text("\n".join(rest + het + ["END"]) + "\n")
    mol = Chem.MolFromPDBBlock("\n".join(residue) + "\nEND\n", removeHs=False)
    assert mol is not None and mol.GetNumAtoms() == len(residue)
    mol.SetProp("_Name", "COF")
    with Chem.SDWriter(str(tmp_path / "cof.sdf")) as w:
        w.write(mol)
    return tmp_path / "minus.pdb", tmp_path / "het.pdb", tmp_path / "cof.sdf"


def test_cofactors_file_scores_like_the_same_group_in_the_receptor_file(models, tmp_path):
    minus, het, cof = _residue_as_cofactor(tmp_path)
    in_file = rescore_poses(het, POSES_SDF, models["score"], sort="none", **COMMON)
    joined = rescore_poses(minus, POSES_SDF, models["score"], cofactors=cof, sort="none", per_residue=True,
                           **COMMON)
    without = rescore_poses(minus, POSES_SDF, models["score"], sort="none", **COMMON)
    assert (joined["status"] == "ok").all()
    assert torch.allclose(torch.tensor(joined["score"].to_numpy()), torch.tensor(in_file["score"].to_numpy()),
                          atol=1e-5)
    assert not torch.allclose(torch.tensor(joined["score"].to_numpy()), torch.tensor(without["score"].to_numpy()),
                              atol=1e-4)
    assert joined.attrs["per_residue"]["residue"].str.startswith("COF:1:COF:").any()


def test_a_cofactor_also_in_the_receptor_file_is_an_error(models, tmp_path):
    _, het, cof = _residue_as_cofactor(tmp_path)
    with pytest.raises(ValueError, match="cofactor atom 1 of .*cof.sdf.* also in the receptor file"):
        rescore_poses(het, POSES_SDF, models["score"], cofactors=cof, **COMMON)
    with pytest.raises(WorkflowError, match="nope.sdf: cofactor file not found"):
        rescore_poses(het, POSES_SDF, models["score"], cofactors=tmp_path / "nope.sdf", **COMMON)


def test_non_finite_model_values_skip_the_pose_and_a_resumed_nan_row_too(tmp_path):
    from get_md.export import save
    from get_md.models import build_model

    torch.manual_seed(0)
    model = build_model("get", **TINY)
    with torch.no_grad():
        for t in model.parameters():
            t.mul_(1e30)  # finite weights, overflowing outputs: a diverged training run
    save(model, tmp_path / "huge.pt")
    df = rescore_poses(REC, POSES_SDF, tmp_path / "huge.pt", out_csv=tmp_path / "h.csv",
                       out_sdf=tmp_path / "h.sdf", **COMMON)
    assert (df["status"] == "skipped").all() and df["rank"].isna().all()
    assert df["error"].str.contains(r"record \d+: model huge\.pt returned a non-finite interaction_energy_eV").all()
    # a progress file from before the check, holding a NaN row marked ok, resumes without a crash
    torch.manual_seed(0)
    save(build_model("get", **TINY), tmp_path / "ok.pt")
    out = dict(out_csv=tmp_path / "r.csv", out_sdf=tmp_path / "r.sdf", **COMMON)
    sidecar = tmp_path / "r.csv.partial"
    import get_md.workflows.rescoring.store as store_module

    keep = store_module.ProgressStore.remove
    store_module.ProgressStore.remove = lambda self: None  # keep the progress file of the next run
    try:
        rescore_poses(REC, POSES_SDF, tmp_path / "ok.pt", **{**out, "resume": False})
    finally:
        store_module.ProgressStore.remove = keep
    lines = sidecar.read_text().splitlines()
    batch = json.loads(lines[1])
    batch["rows"][0]["interaction_energy_eV"] = float("nan")
    lines[1] = json.dumps(batch)
    sidecar.write_text("\n".join(lines) + "\n")
    df = rescore_poses(REC, POSES_SDF, tmp_path / "ok.pt", **out)
    bad = df[df["pose"] == batch["rows"][0]["pose"]].iloc[0]
    assert bad["status"] == "skipped" and "non-finite interaction_energy_eV" in bad["error"]
    assert (df["status"] == "ok").sum() == 8


def test_a_pose_beyond_a_potentials_cutoff_is_skipped_not_scored_zero(models, tmp_path):
    """Inside the pocket radius (10 Å) but with no pocket atom within the potential's 5 Å
    cutoff: the interaction energy would be exactly 0, a meaningless best rank."""
    import numpy as np
    from get_md.workflows.poses import load_reference

    from get_md.build import from_pdb, select_pocket

    mol = next(iter(Chem.SDMolSupplier(str(POSES_SDF), removeHs=False)))
    pocket = select_pocket(from_pdb(REC), load_reference(LIG_PDB)[0], 10.0).positions.numpy()
    xyz = mol.GetConformer().GetPositions()
    away = xyz.mean(0) - pocket.mean(0)
    away /= np.linalg.norm(away)
    for step in np.arange(0.0, 30.0, 0.25):  # the first shift that leaves 6-9 Å to the pocket
        gap = np.linalg.norm((xyz + step * away)[:, None] - pocket[None], axis=-1).min()
        if 6.0 < gap < 9.0:
            break
    assert 6.0 < gap < 9.0
    conf = mol.GetConformer()
    for i, p in enumerate(xyz + step * away):
        conf.SetAtomPosition(i, p.tolist())
    with Chem.SDWriter(str(tmp_path / "far.sdf")) as w:
        w.write(mol)
    common = {**COMMON, "pocket_radius": 10.0}
    df = rescore_poses(REC, tmp_path / "far.sdf", models["energy"], **common)
    assert df["status"].tolist() == ["skipped"]
    assert "no pocket atom within the model's 5 Å cutoff of the pose" in df["error"].iloc[0]
    df = rescore_poses(REC, tmp_path / "far.sdf", models["score"], **common)  # a score model reads it
    assert df["status"].tolist() == ["ok"]


def test_a_reference_far_from_the_receptor_is_named_for_a_model_with_its_own_pocket(tmp_path, caplog):
    from get_md.export import save
    from get_md.models import build_model

    torch.manual_seed(0)
    save(build_model("get", mode="score", task="score", receptor_radius=6.0, **TINY), tmp_path / "own.pt")
    mol = Chem.MolFromPDBFile(str(LIG_PDB), removeHs=False)
    conf = mol.GetConformer()
    for i in range(mol.GetNumAtoms()):
        p = conf.GetAtomPosition(i)
        conf.SetAtomPosition(i, (p.x + 300.0, p.y, p.z))
    Chem.MolToPDBFile(mol, str(tmp_path / "far.pdb"))
    with caplog.at_level("WARNING"):
        df = rescore_poses(REC, POSES_SDF, tmp_path / "own.pt", **{**COMMON, "reference": tmp_path / "far.pdb"})
    assert (df["status"] == "ok").all()
    assert "far.pdb: the reference ligand is" in caplog.text and "adds nothing to the pocket" in caplog.text
