"""get-md rescore-traj (get_md.workflows.trajectory) on prolif's GPCR + ligand trajectory.

Topology tests/data/prolif/top.pdb, trajectory prolif's installed traj.xtc (250 frames;
strided here). Tiny random models: the tests check the workflow, not the numbers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mdtraj as md
import numpy as np
import pandas as pd
import pytest
import torch
from get_md.workflows._common import CRASH_ENV, CRASH_EXIT_CODE, WorkflowError
from get_md.workflows.trajectory import rescore_trajectory

from get_md.units import EV_TO_KCAL_MOL

DATA = Path(__file__).parent / "data"
TOP = DATA / "prolif" / "top.pdb"
TINY = dict(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, cutoff=5.0)
#: 5 frames (0, 50, ..., 200), a ~400-atom pocket, batches of 2 frames
COMMON = dict(ligand="resname LIG", stride=50, pocket_radius=4.0, batch_size=2, chunk=30,
              progress=False)


def _xtc() -> Path:
    import prolif

    return Path(os.path.dirname(prolif.__file__)) / "data" / "traj.xtc"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from get_md.export import save
    from get_md.models import build_model

    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(1)
    save(build_model("get", **TINY), d / "energy.pt")
    save(build_model("get", mode="score", task="score", **TINY), d / "score.pt")
    return {"energy": d / "energy.pt", "score": d / "score.pt"}


@pytest.fixture(scope="module")
def baseline(models, tmp_path_factory):
    d = tmp_path_factory.mktemp("traj")
    df = rescore_trajectory(TOP, _xtc(), models["energy"], out_csv=d / "t.csv", plot=d / "t.png",
                            **COMMON)
    return df, d


def test_potential_rows_csv_and_plot(baseline):
    df, d = baseline
    assert isinstance(df, pd.DataFrame)
    assert df["frame"].tolist() == [0, 50, 100, 150, 200]
    ref = md.load(str(_xtc()), top=str(TOP), stride=50)
    assert df["time_ps"].tolist() == pytest.approx(ref.time.tolist())
    e = df["interaction_energy_eV"]
    assert e.tolist() == pytest.approx((df["e_complex_eV"] - df["e_pocket_eV"] - df["e_ligand_eV"]).tolist())
    assert df["interaction_energy_kcal_mol"].tolist() == pytest.approx((e * EV_TO_KCAL_MOL).tolist())
    assert np.isfinite(e).all() and e.nunique() == 5
    assert (df["status"] == "ok").all() and (df["error"] == "").all()
    csv = pd.read_csv(d / "t.csv")
    assert csv.columns.tolist() == df.columns.tolist() and csv["error"].isna().all()  # "" reads as NaN
    pd.testing.assert_frame_equal(csv.drop(columns="error"), df.drop(columns="error").reset_index(drop=True),
                                  check_exact=False, rtol=1e-12)
    assert (d / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (d / "t.csv.partial").exists()
    assert "A:109:TYR" in df.attrs["pocket_residues"]


def test_start_stop_stride_and_score_model(models):
    df = rescore_trajectory(TOP, _xtc(), models["score"], **{**COMMON, "stride": 25},
                            start=10, stop=65)
    assert df["frame"].tolist() == [10, 35, 60]
    assert "score" in df.columns and np.isfinite(df["score"]).all()


def test_empty_selection_is_a_clear_error(models, capsys):
    with pytest.raises(WorkflowError, match=r"ligand selection 'resname XYZ' matches no atom of .*top\.pdb"):
        rescore_trajectory(TOP, _xtc(), models["energy"], ligand="resname XYZ", progress=False)
    with pytest.raises(WorkflowError, match="receptor selection 'chainid 7' matches no atom"):
        rescore_trajectory(TOP, _xtc(), models["energy"], receptor="chainid 7", progress=False)
    with pytest.raises(WorkflowError, match="overlap"):
        rescore_trajectory(TOP, _xtc(), models["energy"], receptor="all", progress=False)
    # had suggested --receptor 'protein and not (all)', which selects nothing
    with pytest.raises(WorkflowError, match=r"ligand selection 'all' holds every atom of the receptor selection "
                                            r"'protein' .*, the whole system of \d+\); select the ligand alone"):
        rescore_trajectory(TOP, _xtc(), models["energy"], ligand="all", progress=False)
    from get_md.cli import main

    assert main(["rescore-traj", str(TOP), str(_xtc()), "--model", str(models["energy"]),
                 "--ligand", "resname XYZ"]) == 2
    err = capsys.readouterr().err
    assert "resname XYZ" in err and "top.pdb" in err


def test_resume_after_kill_gives_identical_csv(models, baseline, tmp_path):
    _, base = baseline
    out = tmp_path / "t.csv"
    argv = ["rescore-traj", str(TOP), str(_xtc()), "--model", str(models["energy"]),
            "--ligand", "resname LIG", "--stride", "50", "--pocket-radius", "4",
            "--batch-size", "2", "--chunk", "30", "--out-csv", str(out), "--quiet"]
    # two batches committed, the third killed in the middle of its line
    env = dict(os.environ, **{CRASH_ENV: "2:torn", "OMP_NUM_THREADS": "1"})
    proc = subprocess.run([sys.executable, "-m", "get_md.cli", *argv], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == CRASH_EXIT_CODE, proc.stderr[-2000:]
    partial = Path(str(out) + ".partial")
    assert len(partial.read_bytes().split(b"\n")) == 4 and not out.exists()  # header, 2 batches, torn

    from get_md.cli import main

    assert main(argv) == 0
    assert out.read_bytes() == (base / "t.csv").read_bytes()
    assert not partial.exists()


def test_dask_two_workers_equal_single_process(models, baseline):
    pytest.importorskip("distributed")
    df0, _ = baseline
    df = rescore_trajectory(TOP, _xtc(), models["energy"], workers=2, dask_processes=False, **COMMON)
    pd.testing.assert_frame_equal(df, df0)


def test_dask_worker_processes_equal_single_process(models, baseline):
    """The Dask path with worker processes (the default of --workers): spec, template and
    frames pickled to two spawned workers, each loading the model; same table."""
    pytest.importorskip("distributed")
    df0, _ = baseline
    df = rescore_trajectory(TOP, _xtc(), models["energy"], workers=2, dask_processes=True, **COMMON)
    pd.testing.assert_frame_equal(df, df0)


def test_pocket_reuse_changes_no_energy(models, monkeypatch):
    """Each frame's pocket is the environment of its complex (GET.forward_in_environment).
    In float64 the energies equal plain forward passes of complex, pocket and ligand to
    1e-8 relative to the totals; the differences between frames are far larger."""
    import get_md.workflows.rescoring.trajectory as traj_module

    kw = {**COMMON, "dtype": "float64"}
    caches = []
    real = traj_module.build_environment
    monkeypatch.setattr(traj_module, "build_environment", lambda spec, g: caches.append(real(spec, g)) or caches[-1])
    reused = rescore_trajectory(TOP, _xtc(), models["energy"], **kw)
    assert caches and all(c is not None for c in caches)             # the reuse path ran
    monkeypatch.setattr(traj_module, "build_environment", lambda spec, g: None)
    plain = rescore_trajectory(TOP, _xtc(), models["energy"], **kw)
    assert plain["frame"].tolist() == reused["frame"].tolist() == [0, 50, 100, 150, 200]
    bound = 1e-8 * float(reused["e_complex_eV"].abs().max())
    for col in ("e_complex_eV", "e_pocket_eV", "e_ligand_eV", "interaction_energy_eV"):
        assert float((plain[col] - reused[col]).abs().max()) <= bound, col
    e = reused["interaction_energy_eV"]
    assert float(e.max() - e.min()) > 100 * bound                    # the signal the bound protects


def test_parallel_batches_equal_single_process(models, baseline):
    df0, _ = baseline
    df = rescore_trajectory(TOP, _xtc(), models["energy"], parallel=2, **COMMON)
    pd.testing.assert_frame_equal(df, df0)


def test_multimodel_pdb_and_dcd(models, tmp_path):
    traj = md.load(str(_xtc()), top=str(TOP), stride=100)            # 3 frames
    keep = traj.topology.select("resname LIG or (protein and resid 60 to 110)")
    sub = traj.atom_slice(keep)
    sub.save_pdb(str(tmp_path / "sub.pdb"))
    sub.save_dcd(str(tmp_path / "sub.dcd"))
    kw = {**COMMON, "stride": 1}
    a = rescore_trajectory(tmp_path / "sub.pdb", tmp_path / "sub.pdb", models["score"], **kw)
    b = rescore_trajectory(tmp_path / "sub.pdb", tmp_path / "sub.dcd", models["score"], **kw)
    assert a["frame"].tolist() == b["frame"].tolist() == [0, 1, 2]
    assert a["score"].tolist() == pytest.approx(b["score"].tolist(), abs=1e-3)
    c = rescore_trajectory(tmp_path / "sub.pdb", tmp_path / "sub.pdb", models["score"], **kw, start=1)
    assert c["frame"].tolist() == [1, 2]


def test_unsupported_pocket_residue_is_named_or_dropped(tmp_path):
    """A Zn ion next to the ligand, selected into the receptor, for a model without Zn: an
    error naming the residue, or with drop_unsupported the same energies as the
    trajectory without the ion."""
    from get_md.export import save
    from get_md.models import build_model

    torch.manual_seed(1)
    model = tmp_path / "organic.pt"
    save(build_model("get", **TINY), model, {"elements": ["H", "C", "N", "O", "S"]})
    traj = md.load(str(_xtc()), top=str(TOP), stride=100)            # 3 frames
    sub = traj.atom_slice(traj.topology.select("resname LIG or (protein and resid 60 to 110)"))
    sub.save_pdb(str(tmp_path / "sub.pdb"))
    top = sub.topology.copy()
    residue = top.add_residue("ZN", top.add_chain(), resSeq=901)
    top.add_atom("ZN", md.element.zinc, residue)
    lig0 = sub.topology.select("resname LIG")[0]
    ion = sub.xyz[:, lig0:lig0 + 1] + np.array([0.3, 0.0, 0.0], dtype=np.float32)   # 3 Å, in nm
    md.Trajectory(np.concatenate([sub.xyz, ion], axis=1), top).save_pdb(str(tmp_path / "zn.pdb"))
    kw = {**COMMON, "stride": 1, "receptor": "protein or resname ZN"}
    with pytest.raises(WorkflowError, match=r"zn\.pdb: pocket residue\(s\) .*ZN.* hold element\(s\) Zn "
                                            r".*--drop-unsupported"):
        rescore_trajectory(tmp_path / "zn.pdb", tmp_path / "zn.pdb", model, **kw)
    a = rescore_trajectory(tmp_path / "sub.pdb", tmp_path / "sub.pdb", model, **kw)
    b = rescore_trajectory(tmp_path / "zn.pdb", tmp_path / "zn.pdb", model, drop_unsupported=True, **kw)
    assert b["interaction_energy_eV"].tolist() == pytest.approx(a["interaction_energy_eV"].tolist(), abs=1e-9)
    assert b.attrs["pocket_residues"] == a.attrs["pocket_residues"]


@pytest.mark.gpu
def test_cuda_auto_batch_size(models):
    if not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    df = rescore_trajectory(TOP, _xtc(), models["energy"], ligand="resname LIG", stride=50,
                            pocket_radius=4.0, device="cuda", progress=False)
    assert len(df) == 5


def test_heavy_atom_topology_is_warned_about(models, tmp_path, caplog):
    """A potential scoring a trajectory without hydrogens: a warning naming the topology."""
    import logging

    traj = md.load(str(_xtc()), top=str(TOP), stride=125)            # 2 frames
    keep = traj.topology.select("(resname LIG or (protein and resid 60 to 110)) and not element H")
    traj.atom_slice(keep).save_pdb(str(tmp_path / "heavy.pdb"))
    with caplog.at_level(logging.WARNING, logger="get_md.workflows.trajectory"):
        df = rescore_trajectory(tmp_path / "heavy.pdb", tmp_path / "heavy.pdb", models["energy"],
                                **{**COMMON, "stride": 1})
    assert len(df) == 2
    assert "heavy.pdb: the scored atoms hold 0 hydrogens" in caplog.text
