"""Outputs of the rescoring workflows: one run per output (``OUT.lock``), outputs
checked before any work, and the temporary files of a run killed while writing
removed by the next run.

Inputs: prolif's GPCR (tests/data/prolif): receptor + 9 Vina poses, and 3 frames of
residues 60-110 + ligand as a DCD. Model: a 1-layer GET of width 16 (random weights).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mdtraj as md
import pytest
import torch
from get_md.workflows._common import WorkflowError

from get_md.cli import main

DATA = Path(__file__).parent / "data" / "prolif"
TINY = dict(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, cutoff=5.0)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    import prolif

    from get_md.export import save
    from get_md.models import build_model

    d = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(1)
    save(build_model("get", **TINY), d / "energy.pt")
    xtc = Path(os.path.dirname(prolif.__file__)) / "data" / "traj.xtc"
    traj = md.load(str(xtc), top=str(DATA / "top.pdb"), stride=100)
    sub = traj.atom_slice(traj.topology.select("resname LIG or (protein and resid 60 to 110)"))
    sub[0].save_pdb(str(d / "sub.pdb"))
    sub.save_dcd(str(d / "sub.dcd"))
    return {"model": d / "energy.pt", "top": d / "sub.pdb", "dcd": d / "sub.dcd"}


def _traj(inputs, out, *extra) -> list[str]:
    return ["rescore-traj", str(inputs["top"]), str(inputs["dcd"]), "--model", str(inputs["model"]),
            "--pocket-radius", "4", "--out-csv", str(out), "--quiet", *extra]


def _poses(inputs, out_csv, out_sdf, *extra) -> list[str]:
    return ["rescore-poses", str(DATA / "rec.pdb"), str(DATA / "vina_output.sdf"), "--model",
            str(inputs["model"]), "--reference", str(DATA / "lig.pdb"), "--pocket-radius", "4",
            "--out-csv", str(out_csv), "--out-sdf", str(out_sdf), "--quiet", *extra]


def _error_line(rc: int, err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("get-md: error:")]
    assert rc == 2 and len(lines) == 1, (rc, err)
    return lines[0]


HOLD = """
import sys, time
from get_md.workflows._common import OutputLock
OutputLock(sys.argv[1], "get-md rescore-traj --stride 7 (the other run)").acquire()
print("locked", flush=True)
time.sleep(300)
"""


def test_locked_output_names_its_holder_and_a_dead_holder_is_taken_over(inputs, tmp_path, capsys, caplog):
    out = tmp_path / "t.csv"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc = main(_traj(inputs, out))
        line = _error_line(rc, capsys.readouterr().err)
        assert f"{out} is being written by another get-md run (pid {holder.pid} on " in line
        assert "--stride 7 (the other run)" in line
        assert not out.exists() and not Path(str(out) + ".partial").exists()
    finally:
        holder.kill()
        holder.wait()
    lock = Path(str(out) + ".lock")
    assert lock.exists()                                    # killed: it could not remove it
    assert main(_traj(inputs, out)) == 0
    log = caplog.text
    assert "taking over the lock" in log and f"pid {holder.pid}" in log and "that process is gone" in log
    assert out.exists() and not lock.exists()


def test_lock_held_in_process_stops_a_second_run(inputs, tmp_path):
    from get_md.workflows._common import OutputLock
    from get_md.workflows.poses import rescore_poses

    csv, sdf = tmp_path / "p.csv", tmp_path / "p.sdf"
    with OutputLock(sdf, "first run"):
        with pytest.raises(WorkflowError, match=rf"p\.sdf is being written by another get-md run "
                                                rf"\(pid {os.getpid()} on .*first run"):
            rescore_poses(DATA / "rec.pdb", DATA / "vina_output.sdf", inputs["model"],
                          reference=DATA / "lig.pdb", pocket_radius=4.0, out_csv=csv, out_sdf=sdf,
                          progress=False)
        assert not Path(str(csv) + ".lock").exists()         # the lock it did get is released
    assert not Path(str(sdf) + ".lock").exists()


@pytest.fixture
def no_work(monkeypatch):
    """Any model loading fails the test: outputs must be refused before it."""
    import get_md.workflows.rescoring.poses as poses_module
    import get_md.workflows.rescoring.trajectory as traj_module

    def work(*args, **kwargs):
        raise AssertionError("work started before the outputs were checked")

    monkeypatch.setattr(poses_module, "resolve_model", work)
    monkeypatch.setattr(traj_module, "resolve_model", work)


def test_bad_outputs_are_refused_before_any_work(inputs, tmp_path, capsys, no_work):
    a_dir = tmp_path / "results"
    a_dir.mkdir()
    line = _error_line(main(_traj(inputs, a_dir)), capsys.readouterr().err)
    assert f"--out-csv {a_dir}: is a directory" in line
    line = _error_line(main(_poses(inputs, tmp_path / "p.csv", a_dir)), capsys.readouterr().err)
    assert f"--out-sdf {a_dir}: is a directory" in line
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    line = _error_line(main(_poses(inputs, a_file / "p.csv", tmp_path / "p.sdf")), capsys.readouterr().err)
    assert f"--out-csv {a_file / 'p.csv'}: cannot create directory {a_file}" in line
    line = _error_line(main(_poses(inputs, tmp_path / "same", tmp_path / "same")), capsys.readouterr().err)
    assert "--out-csv and --out-sdf both name" in line
    line = _error_line(main(_traj(inputs, tmp_path / "t.csv", "--plot", str(a_dir))), capsys.readouterr().err)
    assert f"--plot {a_dir}: is a directory" in line
    assert not list(tmp_path.glob("*.lock")) and not list(tmp_path.glob("*.partial"))


def test_an_output_that_is_an_input_is_refused_before_any_work(inputs, tmp_path, capsys, no_work):
    import shutil

    top, dcd = shutil.copy(inputs["top"], tmp_path), shutil.copy(inputs["dcd"], tmp_path)
    rec, poses = shutil.copy(DATA / "rec.pdb", tmp_path), shutil.copy(DATA / "vina_output.sdf", tmp_path)
    before = {p: Path(p).read_bytes() for p in (top, dcd, rec, poses)}
    traj = ["rescore-traj", top, dcd, "--model", str(inputs["model"]), "--quiet"]
    line = _error_line(main(traj + ["--out-csv", str(tmp_path / "t.csv"), "--plot", top]), capsys.readouterr().err)
    assert f"--plot {top}: is the TOPOLOGY input" in line
    line = _error_line(main(traj + ["--out-csv", dcd]), capsys.readouterr().err)
    assert f"--out-csv {dcd}: is the TRAJ input" in line
    run = ["rescore-poses", rec, poses, "--model", str(inputs["model"]), "--quiet"]
    line = _error_line(main(run + ["--out-sdf", poses]), capsys.readouterr().err)
    assert f"--out-sdf {poses}: is the POSES input" in line
    line = _error_line(main(run + ["--out-csv", str(Path(rec).parent / "." / "rec.pdb")]), capsys.readouterr().err)
    assert "is the RECEPTOR input" in line
    line = _error_line(main(run + ["--out-ligands", poses]), capsys.readouterr().err)
    assert f"--out-ligands {poses}: is the POSES input" in line
    line = _error_line(main(run + ["--out-csv", str(inputs["model"])]), capsys.readouterr().err)
    assert "is the --model input" in line
    assert all(Path(p).read_bytes() == b for p, b in before.items())
    assert not list(tmp_path.glob("*.lock")) and not list(tmp_path.glob("*.partial"))


DIE_IN_FINAL_WRITE = """
import os, sys
import get_md.workflows.rescoring.trajectory as t
from get_md.atomic import atomic_output

def die(df, path):
    with atomic_output(path, newline=""):
        os._exit(99)

t.write_csv_atomic = die
from get_md.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _temporaries(d: Path) -> list[str]:
    """Names that get_md.atomic leaves for outputs t.csv / t.png (and t.csv.partial):
    a dot, the name, a dot, mkstemp's 8 random characters, then .tmp or the suffix."""
    import re

    pattern = re.compile(r"\.(t\.csv|t\.png|t\.csv\.partial)\.[a-z0-9_]{8}(\.tmp|\.csv|\.png|\.partial)\Z")
    return sorted(p.name for p in d.iterdir() if pattern.match(p.name))


def test_temporaries_of_a_run_killed_while_writing_are_removed(inputs, tmp_path):
    out, png = tmp_path / "t.csv", tmp_path / "t.png"
    argv = _traj(inputs, out, "--plot", str(png))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", DIE_IN_FINAL_WRITE, *argv], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 99, proc.stderr[-2000:]
    (left,) = _temporaries(tmp_path)
    assert left.startswith(".t.csv.") and (tmp_path / left).stat().st_size == 0
    # what kills at other moments leave (atomic_path for the plot, the sidecar's header)
    (tmp_path / ".t.png.k2j4h6g8.png").write_bytes(b"")
    (tmp_path / ".t.csv.partial.a1b2c3d4.tmp").write_bytes(b"")
    others = [".t.csv.abc.tmp", ".other.csv.abcd1234.tmp", "t.csv.abcd1234.tmp", ".t.csv.abcd1234.tmp.keep",
              ".t.png.abcd1234.tmp.png", "notes.txt"]
    for name in others:
        (tmp_path / name).write_text("not ours")
    assert len(_temporaries(tmp_path)) == 3

    assert main(argv) == 0                                  # resumes, and cleans up
    assert _temporaries(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["t.csv", "t.png", *others])
