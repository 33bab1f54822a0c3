"""Coordinate checks of trajectory frames (get_md.workflows.geometry_checks) in
``get-md rescore-traj``, and trajectories cut short.

A frame with a NaN / inf coordinate, an atom 10^5 nm away, a ligand atom on a pocket
atom or two atoms 0.001 Å apart is reported (``status`` "skipped", the reason naming
the file, the frame and the atom in ``error``) and never reaches the model; the other
frames are scored as if the bad ones were not there. A truncated XTC keeps its intact
frames and names the damaged one.

System: prolif's GPCR residues 60-110 + ligand (tests/data/prolif), frames of prolif's
traj.xtc; a 1-layer GET of width 16 (random weights).
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
from get_md.workflows._common import CRASH_ENV, CRASH_EXIT_CODE

from get_md.cli import main

DATA = Path(__file__).parent / "data"
TOP = DATA / "prolif" / "top.pdb"
TINY = dict(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, cutoff=5.0)


def _xtc() -> Path:
    import prolif

    return Path(os.path.dirname(prolif.__file__)) / "data" / "traj.xtc"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from get_md.export import save
    from get_md.models import build_model

    d = tmp_path_factory.mktemp("model")
    torch.manual_seed(1)
    save(build_model("get", **TINY), d / "energy.pt")
    return d / "energy.pt"


@pytest.fixture(scope="module")
def system(tmp_path_factory) -> dict:
    """10 frames (stride 25) of residues 60-110 + ligand: topology PDB, coordinates (nm),
    and a pocket atom next to the ligand's first atom."""
    d = tmp_path_factory.mktemp("system")
    traj = md.load(str(_xtc()), top=str(TOP), stride=25)
    sub = traj.atom_slice(traj.topology.select("resname LIG or (protein and resid 60 to 110)"))
    sub[0].save_pdb(str(d / "sub.pdb"))
    lig = sub.topology.select("resname LIG")
    prot = sub.topology.select("protein")
    dist = np.linalg.norm(sub.xyz[0, prot] - sub.xyz[0, lig[0]], axis=1)
    return {"dir": d, "top": d / "sub.pdb", "xyz": sub.xyz.copy(), "time": sub.time.copy(),
            "topology": sub.topology, "lig": lig, "near": int(prot[np.argmin(dist)])}


def _dcd(system, xyz, path: Path) -> Path:
    md.Trajectory(xyz, system["topology"], time=system["time"][: len(xyz)]).save_dcd(str(path))
    return path


def _argv(system, traj, model, out, *extra) -> list[str]:
    return ["rescore-traj", str(system["top"]), str(traj), "--model", str(model), "--pocket-radius", "4",
            "--batch-size", "3", "--chunk", "4", "--out-csv", str(out), "--quiet", *extra]


def _ident(top, i: int) -> str:
    """How messages name topology atom ``i``: ``(chain:residue:name)`` of its identity."""
    a = top.atom(i)
    return f":{a.residue.resSeq}:{a.residue.name}:{a.name})"


# ----------------------------------------------------------------------------- checks
def test_checks_pass_every_real_frame_with_margin():
    """All 250 frames of prolif's trajectory, pocket (10 Å, hydrogens included) + ligand:
    no check trips, and the closest pair of atoms stays well above the 0.5 Å limit."""
    from get_md.workflows import geometry_checks as gc
    from get_md.workflows.trajectory import choose_pocket

    traj = md.load(str(_xtc()), top=str(TOP))
    top = traj.topology
    lig, rec = top.select("resname LIG"), top.select("protein")
    sel = np.union1d(choose_pocket(top, traj.xyz[0], rec, lig, 10.0), lig)
    xyz = traj.xyz[:, sel] * 10.0
    assert len(sel) > 1000 and sum(top.atom(int(i)).element.symbol == "H" for i in sel) > 400
    assert gc.frame_problems(xyz, str) == [None] * traj.n_frames
    closest = min(gc.closest_pair(f, 2.0)[2] for f in xyz)
    assert 0.85 < closest < 1.2                                 # X-H bonds; the limit is 0.5
    assert np.abs(xyz).max() < gc.MAX_COORDINATE / 100


def test_frame_problems_name_the_atom():
    from get_md.workflows import geometry_checks as gc

    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(4.0)] * 3), -1).reshape(-1, 3) * 1.5
    xyz = np.repeat(grid[None], 6, 0) + rng.normal(0, 0.05, (6, len(grid), 3))
    xyz[1, 5, 2] = np.nan
    xyz[2, 7, 0] = -np.inf
    xyz[3, 9] = [1.0e6, 0.0, 0.0]
    xyz[4, 11] = xyz[4, 12] + [0.001, 0.0, 0.0]
    xyz[5, 3] = xyz[5, 40]
    got = gc.frame_problems(xyz, lambda i: f"atom #{i}")
    assert got[0] is None
    assert "atom #5 has non-finite coordinates" in got[1]
    assert "atom #7 has non-finite coordinates" in got[2]
    assert "atom #9 has a coordinate beyond ±100000 Å" in got[3]
    assert "atom #11 and atom #12 are 0.001 Å apart" in got[4]
    assert "atom #3 and atom #40 are 0 Å apart" in got[5]


# ----------------------------------------------------------------------------- workflow
def test_bad_frames_are_reported_skipped_and_never_scored(system, model, tmp_path, capsys, caplog,
                                                          monkeypatch):
    import get_md.workflows.rescoring.trajectory as traj_module

    xyz = system["xyz"].copy()
    lig, near, top = system["lig"], system["near"], system["topology"]
    xyz[1, near] = np.nan                                       # a NaN pocket atom
    xyz[3, lig[0]] = xyz[3, near]                                # a ligand atom on a pocket atom
    xyz[4, lig[2]] = [1.0e5, 0.0, 0.0]                          # 10^5 nm away
    xyz[6, lig[1]] = np.inf
    xyz[8, lig[3]] = xyz[8, lig[4]] + [0.0001, 0.0, 0.0]        # 0.001 Å apart
    bad = _dcd(system, xyz, tmp_path / "bad.dcd")
    clean = _dcd(system, system["xyz"], tmp_path / "clean.dcd")

    seen = []
    real = traj_module.run_model

    def spy(spec, graph, *args, **kwargs):
        seen.append(graph.positions.clone())
        return real(spec, graph, *args, **kwargs)

    monkeypatch.setattr(traj_module, "run_model", spy)
    rc = main(_argv(system, bad, model, tmp_path / "bad.csv"))
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "Traceback" not in out + err
    assert "scored 5 of 10 frame(s) (5 skipped" in out
    assert seen and all(bool(torch.isfinite(p).all()) and float(p.abs().max()) < 1e4 for p in seen)

    df = pd.read_csv(tmp_path / "bad.csv")
    assert df["frame"].tolist() == list(range(10))
    status = dict(zip(df["frame"], df["status"], strict=True))
    assert [f for f, s in status.items() if s != "ok"] == [1, 3, 4, 6, 8]
    errors = dict(zip(df["frame"], df["error"], strict=True))
    for f in (1, 3, 4, 6, 8):
        assert errors[f].startswith(f"{bad}: frame {f}: "), errors[f]
        assert np.isnan(df.loc[df["frame"] == f, "interaction_energy_eV"].iloc[0])
    assert "non-finite" in errors[1] and _ident(top, near) in errors[1]
    assert "0 Å apart" in errors[3] and _ident(top, near) in errors[3] and _ident(top, lig[0]) in errors[3]
    assert "beyond ±100000 Å" in errors[4] and _ident(top, lig[2]) in errors[4]
    assert "non-finite" in errors[6] and _ident(top, lig[1]) in errors[6]
    assert "0.001 Å apart" in errors[8] and _ident(top, lig[3]) in errors[8]
    assert "skipped frame" in caplog.text and f"{bad}: frame 3" in caplog.text   # and logged

    # the good frames are scored as in the clean trajectory
    assert main(_argv(system, clean, model, tmp_path / "clean.csv")) == 0
    ref = pd.read_csv(tmp_path / "clean.csv").set_index("frame")
    good = df[df["status"] == "ok"].set_index("frame")
    assert good.index.tolist() == [0, 2, 5, 7, 9]
    for col in ("interaction_energy_eV", "e_complex_eV", "e_ligand_eV"):
        assert good[col].tolist() == pytest.approx(ref.loc[good.index, col].tolist(), abs=1e-5)


def test_bad_first_frame_is_a_clear_error(system, model, tmp_path, capsys):
    """The pocket is chosen from the first analysed frame: a NaN there is an error that
    names the file, the frame and the atom."""
    xyz = system["xyz"].copy()
    xyz[0, system["lig"][2]] = np.nan
    bad = _dcd(system, xyz, tmp_path / "first.dcd")
    rc = main(_argv(system, bad, model, tmp_path / "first.csv"))
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("get-md: error:")]
    assert f"{bad}: frame 0: " in line and "non-finite" in line and "--start" in line
    assert f"{system['topology'].atom(int(system['lig'][2]))}" in line


def test_a_calpha_trace_is_refused(system, model, tmp_path, capsys):
    """A topology whose protein holds its Cα atoms alone (a coarse-grained or trace model)
    is refused naming the share of heavy atoms; it had been scored like an all-atom one."""
    traj = md.load(str(_xtc()), top=str(TOP), stride=125)
    sub = traj.atom_slice(traj.topology.select("resname LIG or (protein and name CA)"))
    sub[0].save_pdb(str(tmp_path / "trace.pdb"))
    sub.save_dcd(str(tmp_path / "trace.dcd"))
    rc = main(["rescore-traj", str(tmp_path / "trace.pdb"), str(tmp_path / "trace.dcd"), "--model", str(model),
               "--pocket-radius", "6", "--out-csv", str(tmp_path / "t.csv"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "amino acids hold" in err and "with one atom alone): a Cα or backbone trace?" in err
    assert not (tmp_path / "t.csv").exists()


def test_a_ligand_selection_that_matches_nothing_names_the_candidates(system, model, tmp_path, capsys):
    """The default --ligand 'resname LIG' on a topology whose ligand is MOL names MOL (and
    its size) and the option to give, instead of only saying that nothing matched."""
    top = tmp_path / "mol.pdb"
    top.write_text(Path(system["top"]).read_text().replace("LIG", "MOL"))
    rc = main(_argv({**system, "top": top}, _dcd(system, system["xyz"][:2], tmp_path / "t.dcd"), model,
                    tmp_path / "t.csv"))
    err = capsys.readouterr().err
    assert rc == 2
    assert (f"ligand selection 'resname LIG' matches no atom of {top}; its residues besides protein, nucleic "
            f"acid and water: MOL (1 residue, {len(system['lig'])} atoms) (e.g. --ligand 'resname MOL')") in err


def test_a_ligand_selection_of_several_pieces_is_warned_about(system, model, tmp_path, caplog):
    """A --ligand selection that holds two separate molecules (here the ligand and a far
    residue) is scored as one ligand: a warning says so, naming the residues."""
    traj = _dcd(system, system["xyz"][:2], tmp_path / "t.dcd")
    far = int(system["topology"].atom(0).residue.index)
    with caplog.at_level("WARNING"):
        rc = main(_argv(system, traj, model, tmp_path / "t.csv", "--ligand", f"resname LIG or resid {far}",
                        "--receptor", f"protein and not resid {far}"))
    assert rc == 0
    assert "holds 2 separate pieces in frame 0" in caplog.text and "LIG" in caplog.text


def test_a_ligand_that_leaves_the_pocket_or_comes_apart_is_skipped(system, model, tmp_path):
    xyz = system["xyz"].copy()
    lig = system["lig"]
    xyz[2, lig] += [4.0, 0.0, 0.0]                        # the whole ligand 40 Å away
    xyz[5, lig[: len(lig) // 2]] += [3.0, 0.0, 0.0]       # half of it one (3 nm) box length on
    bad = _dcd(system, xyz, tmp_path / "moved.dcd")
    assert main(_argv(system, bad, model, tmp_path / "moved.csv")) == 0
    df = pd.read_csv(tmp_path / "moved.csv")
    errors = dict(zip(df["frame"], df["error"].fillna(""), strict=True))
    assert df.loc[df["status"] != "ok", "frame"].tolist() == [2, 5]
    assert "the ligand left the pocket chosen in the first frame" in errors[2]
    assert "the ligand came apart" in errors[5] and "(1 in the first frame)" in errors[5]


def test_a_trajectory_whose_atom_order_is_not_the_topologys_is_an_error(system, model, tmp_path, capsys):
    xyz = system["xyz"].copy()
    lig = system["lig"]
    xyz[:, lig] = xyz[:, lig[::-1]]                        # the ligand's atoms in another order
    bad = _dcd(system, xyz, tmp_path / "order.dcd")
    rc = main(_argv(system, bad, model, tmp_path / "order.csv"))
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("get-md: error:")]
    assert f"{bad}: frame 0: ligand atoms" in line and "bonded in the topology" in line
    assert "atom order does not match the topology's" in line
    assert "too large" not in line  # the structure itself is not scaled
    grown = _dcd(system, system["xyz"] * 10.0, tmp_path / "x10.dcd")  # Å values written as nm
    assert main(_argv(system, grown, model, tmp_path / "x10.csv")) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "Å from their nearest neighbour (median)" in line and "coordinates in Å read as nm (x10 too large)" in line


def test_a_trajectory_scaled_down_is_refused_at_its_first_frame(system, model, tmp_path, capsys, caplog,
                                                               monkeypatch):
    """Coordinates 10x too small (nm read as Å) had had a pocket built and every frame tried
    before "no frame could be scored"; the first frame says so, with the units hint that 10x
    too large coordinates get."""
    import get_md.workflows.rescoring.trajectory as traj_module

    monkeypatch.setattr(traj_module, "score_frames", lambda *a: pytest.fail("a frame was scored"))
    shrunk = _dcd(system, system["xyz"] * 0.1, tmp_path / "x01.dcd")
    with caplog.at_level("INFO"):
        rc = main(_argv(system, shrunk, model, tmp_path / "x01.csv"))
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("get-md: error:")]
    assert f"{shrunk}: frame 0 (the pocket's; every frame at this scale would be skipped): atom " in line
    assert "closer than 0.5 Å): overlapping atoms; its atoms are 0.1" in line
    assert "coordinates in nm (x10 to Å) or another unit?" in line
    assert "pocket from frame" not in caplog.text and not (tmp_path / "x01.csv").exists()


def test_a_topology_without_ligand_bonds_is_checked_on_its_own_coordinates(system, model, tmp_path, capsys):
    """No CONECT records for the ligand: the pairs of ligand atoms close in the topology
    PDB's own coordinates stand for its bonds. A trajectory in another atom order (here a
    topology written with the ligand first, as in the bad-input hunt's report) is an error;
    the same topology with the trajectory in its order is scored."""
    text = system["top"].read_text()
    plain = tmp_path / "no_conect.pdb"
    plain.write_text("".join(ln for ln in text.splitlines(keepends=True) if not ln.startswith("CONECT")))
    assert "CONECT" in text and md.load_topology(str(plain)).select("resname LIG").size == len(system["lig"])
    xyz = system["xyz"].copy()
    lig = system["lig"]
    xyz[:, lig] = xyz[:, lig[::-1]]
    bad = _dcd(system, xyz, tmp_path / "order.dcd")
    argv = _argv(system, bad, model, tmp_path / "order.csv")
    argv[1] = str(plain)
    assert main(argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"{bad}: frame 0: ligand atoms" in line and "in the topology's coordinates (it has no ligand bonds)" in line
    assert "atom order does not match the topology's" in line
    argv = _argv(system, _dcd(system, system["xyz"], tmp_path / "clean.dcd"), model, tmp_path / "clean.csv")
    argv[1] = str(plain)
    assert main(argv) == 0
    assert (pd.read_csv(tmp_path / "clean.csv")["status"] == "ok").all()


def test_mismatched_topology_and_start_past_the_end_are_said_as_such(system, model, tmp_path, capsys):
    clean = _dcd(system, system["xyz"], tmp_path / "clean.dcd")
    traj = md.Trajectory(system["xyz"][:1, :-1], system["topology"].subset(range(system["topology"].n_atoms - 1)))
    traj.save_pdb(str(tmp_path / "short.pdb"))
    argv = _argv(system, clean, model, tmp_path / "a.csv")
    argv[1] = str(tmp_path / "short.pdb")
    assert main(argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    n = system["topology"].n_atoms
    assert line == (f"get-md: error: topology {tmp_path / 'short.pdb'} has {n - 1} atoms but {clean} has {n} "
                    "per frame: they do not belong together")
    assert main(_argv(system, clean, model, tmp_path / "b.csv", "--start", "50")) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == f"get-md: error: {clean}: no frame at or after --start 50"
    xtc = tmp_path / "clean.xtc"  # mdtraj reports a seek past the end of an XTC as a damaged frame
    md.Trajectory(system["xyz"], system["topology"], time=system["time"]).save_xtc(str(xtc))
    assert main(_argv(system, xtc, model, tmp_path / "c.csv", "--start", "50")) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == f"get-md: error: --start 50 is past the end of {xtc} (10 frame(s))"


def test_resume_with_bad_frames_gives_identical_csv(system, model, tmp_path):
    xyz = system["xyz"].copy()
    xyz[1, system["near"]] = np.nan
    xyz[5, system["lig"][0]] = xyz[5, system["near"]]
    bad = _dcd(system, xyz, tmp_path / "bad.dcd")
    argv = _argv(system, bad, model, tmp_path / "a.csv")
    assert main(argv) == 0
    out = tmp_path / "b.csv"
    argv = _argv(system, bad, model, out)
    env = dict(os.environ, **{CRASH_ENV: "1:torn", "OMP_NUM_THREADS": "1"})
    proc = subprocess.run([sys.executable, "-m", "get_md.cli", *argv], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == CRASH_EXIT_CODE, proc.stderr[-2000:]
    assert Path(str(out) + ".partial").exists() and not out.exists()
    assert main(argv) == 0
    assert out.read_bytes() == (tmp_path / "a.csv").read_bytes()


def test_truncated_xtc_keeps_intact_frames_and_names_the_damaged_one(system, model, tmp_path, capsys):
    """An XTC cut inside frame 6, read in chunks of 4: frames 4 and 5 (in the chunk that
    fails) are scored, frame 6 is named, nothing is lost before it."""
    full = tmp_path / "full.xtc"
    md.Trajectory(system["xyz"], system["topology"], time=system["time"]).save_xtc(str(full))
    with md.open(str(full)) as f:
        offsets = list(f.offsets)
    raw = full.read_bytes()
    cut = tmp_path / "cut.xtc"
    cut.write_bytes(raw[: (offsets[6] + offsets[7]) // 2])
    rc = main(_argv(system, cut, model, tmp_path / "cut.csv"))
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "Traceback" not in out + err
    df = pd.read_csv(tmp_path / "cut.csv")
    assert df["frame"].tolist() == list(range(7))
    assert (df["status"].iloc[:6] == "ok").all() and df["status"].iloc[6] == "skipped"
    assert df["error"].iloc[6].startswith(f"{cut}: frame 6 cannot be read")
    ref = main(_argv(system, full, model, tmp_path / "full.csv"))
    assert ref == 0
    full_df = pd.read_csv(tmp_path / "full.csv")
    assert df["interaction_energy_eV"].iloc[:6].tolist() == pytest.approx(
        full_df["interaction_energy_eV"].iloc[:6].tolist(), abs=1e-5)
