"""``get-md md`` / :func:`get_md.workflows.md.run_md`: energy conservation, the two engines,
resume after a kill, and bad input (shipped potential, ethanol)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

pytest.importorskip("ase")
from get_md.workflows.md import MDSettings, read_structure, run_md  # noqa: E402

from get_md.cli import main  # noqa: E402
from get_md.errors import WorkflowError  # noqa: E402

try:
    from tests.plugin_helpers import ethanol
except ImportError:  # tests/ is not a package: pytest puts it on sys.path
    from plugin_helpers import ethanol

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def ethanol_xyz(tmp_path_factory):
    import ase.io

    path = tmp_path_factory.mktemp("md") / "ethanol.xyz"
    ase.io.write(path, ethanol())
    return path


def rows(out) -> list[dict]:
    with open(out / "md.csv") as fh:
        return list(csv.DictReader(fh))


def test_nve_conserves_energy_and_records_every_interval(ethanol_xyz, tmp_path):
    res = run_md(ethanol_xyz, tmp_path / "nve", steps=100,
                 settings=MDSettings(friction_per_ps=0.0, timestep_fs=0.25, interval=10))
    table = rows(tmp_path / "nve")
    assert [int(r["step"]) for r in table] == list(range(0, 101, 10))
    assert float(table[-1]["time_ps"]) == pytest.approx(0.025)
    total = np.array([float(r["total_energy_eV"]) for r in table])
    kinetic = np.array([float(r["kinetic_energy_eV"]) for r in table])
    assert np.ptp(kinetic) > 0.05  # energy moves between kinetic and potential ...
    assert np.abs(total - total[0]).max() < 2e-3  # ... and the total stays
    import ase.io

    frames = ase.io.read(tmp_path / "nve" / "trajectory.extxyz", index=":")
    assert [f.info["step"] for f in frames] == list(range(0, 101, 10))
    com = [f.get_center_of_mass() for f in frames]
    assert np.allclose(com, com[0], atol=1e-8)
    assert res.final["step"] == 100 and res.started_at == 0


@pytest.mark.parametrize("engine", ["ase", "openmm"])
def test_a_killed_run_resumes_to_the_uninterrupted_one(engine, ethanol_xyz, tmp_path):
    """Langevin runs (random forces): a run stopped after its step-20 checkpoint, with a
    row and half a frame written after it, resumes to the same rows and frames."""
    pytest.importorskip("openmm") if engine == "openmm" else None
    settings = MDSettings(engine=engine, interval=10, seed=3)
    run_md(ethanol_xyz, tmp_path / "whole", steps=40, settings=settings)
    part = tmp_path / "part"
    run_md(ethanol_xyz, part, steps=20, settings=settings)
    checkpoint = (part / "checkpoint.npz").read_bytes()
    run_md(ethanol_xyz, part, steps=30, settings=settings)
    # killed after step 30's frame and row, before its checkpoint, while writing more
    (part / "checkpoint.npz").write_bytes(checkpoint)
    with open(part / "md.csv", "a") as fh:
        fh.write("40,0.02,-309.")
    frames = (part / "trajectory.extxyz").read_text().splitlines(keepends=True)
    with open(part / "trajectory.extxyz", "a") as fh:
        fh.writelines(frames[:4])
    res = run_md(ethanol_xyz, part, steps=40, settings=settings)
    assert res.started_at == 20
    assert (part / "md.csv").read_text() == (tmp_path / "whole" / "md.csv").read_text()
    assert (part / "trajectory.extxyz").read_text() == (tmp_path / "whole" / "trajectory.extxyz").read_text()


def test_the_engines_start_alike_and_openmm_conserves_energy(ethanol_xyz, tmp_path):
    pytest.importorskip("openmm")
    settings = dict(friction_per_ps=0.0, timestep_fs=0.25, interval=10, seed=1)
    run_md(ethanol_xyz, tmp_path / "ase", steps=10, settings=MDSettings(engine="ase", **settings))
    run_md(ethanol_xyz, tmp_path / "omm", steps=60, settings=MDSettings(engine="openmm", **settings))
    a, o = rows(tmp_path / "ase"), rows(tmp_path / "omm")
    assert float(a[0]["potential_energy_eV"]) == pytest.approx(float(o[0]["potential_energy_eV"]), abs=1e-6)
    import ase.io

    # the same initial velocities (OpenMM's kinetic energy is that of its leapfrog
    # half steps, so the recorded kinetic energies differ a little at step 0)
    first = [ase.io.read(tmp_path / run / "trajectory.extxyz", index=0) for run in ("ase", "omm")]
    assert np.allclose(first[0].get_velocities(), first[1].get_velocities(), rtol=1e-6, atol=1e-9)
    assert np.abs(first[0].get_velocities()).max() > 1e-3
    total = np.array([float(r["total_energy_eV"]) for r in o])
    assert np.abs(total - total[0]).max() < 2e-3


def test_settings_of_another_run_and_bad_input_are_refused(ethanol_xyz, tmp_path, caplog):
    out = tmp_path / "run"
    run_md(ethanol_xyz, out, steps=10, settings=MDSettings(interval=10))
    with pytest.raises(WorkflowError, match="other settings.*timestep_fs 0.5 -> 1.0"):
        run_md(ethanol_xyz, out, steps=20, settings=MDSettings(interval=10, timestep_fs=1.0))
    run_md(ethanol_xyz, out, steps=10, settings=MDSettings(interval=10, timestep_fs=1.0), resume=False)
    assert [int(r["step"]) for r in rows(out)] == [0, 10]
    with caplog.at_level("WARNING", logger="get_md.workflows.md"):  # had returned without a word
        assert run_md(ethanol_xyz, out, steps=5, settings=MDSettings(interval=10, timestep_fs=1.0)).steps == 10
    assert "already holds 10 steps, --steps 5 runs none" in caplog.text
    assert [int(r["step"]) for r in rows(out)] == [0, 10]
    with pytest.raises(WorkflowError, match="--timestep is in fs; 500.0 fs"):
        run_md(ethanol_xyz, tmp_path / "x", steps=10, settings=MDSettings(timestep_fs=500.0))
    # ASE's Langevin blew up at 10,000/ps (a 10^45 K temperature, blamed on the time step)
    with pytest.raises(WorkflowError, match=r"--friction is in 1/ps; 10000/ps with --timestep 0.5 fs.* = 5, must be <= 1"):
        run_md(ethanol_xyz, tmp_path / "x", steps=10, settings=MDSettings(friction_per_ps=1e4))
    with pytest.raises(WorkflowError, match="--temperature is in K; 1e[+]09 K is far beyond"):  # had run, at 10^9 K
        run_md(ethanol_xyz, tmp_path / "x", steps=10, settings=MDSettings(temperature_K=1e9))
    with pytest.raises(WorkflowError, match="--steps must be a whole number >= 1"):
        run_md(ethanol_xyz, tmp_path / "x", steps=0)
    with pytest.raises(WorkflowError, match="is a score model; MD needs a potential"):
        run_md(ethanol_xyz, tmp_path / "x", steps=10, settings=MDSettings(model="get-affinity"))
    assert not (tmp_path / "x").exists()  # refused before anything was written
    nan = tmp_path / "nan.xyz"
    lines = ethanol_xyz.read_text().splitlines()
    lines[3] = " ".join([lines[3].split()[0], "nan", *lines[3].split()[2:]])  # atom 2's x
    nan.write_text("\n".join(lines) + "\n")
    with pytest.raises(WorkflowError, match=r"nan.xyz record 1: atom 2 has a NaN"):
        read_structure(nan)
    numbers = tmp_path / "numbers.xyz"  # atomic numbers where symbols belong
    numbers.write_text("2\n\n6 0 0 0\n8 1.2 0 0\n")
    with pytest.raises(WorkflowError, match="'6' is not an element symbol"):
        read_structure(numbers)
    bad = tmp_path / "mol.gro"
    bad.write_text("x")
    with pytest.raises(WorkflowError, match="unknown structure format '.gro'"):
        read_structure(bad)
    deep = tmp_path / "not" / "yet" / "there"  # parent folders are created (the lock lies beside)
    assert run_md(ethanol_xyz, deep, steps=1, settings=MDSettings(interval=1)).steps == 1
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(WorkflowError, match="exists and is not a folder"):
        run_md(ethanol_xyz, afile, steps=10)


def test_a_run_that_blows_up_stops_with_its_good_steps_kept(ethanol_xyz, tmp_path):
    out = tmp_path / "hot"
    with pytest.raises(WorkflowError, match=r"MD step 10: temperature \d+ K exceeds 1 K.*up to step 0 is in"):
        run_md(ethanol_xyz, out, steps=30, settings=MDSettings(interval=10, max_temperature_K=1.0,
                                                                temperature_K=0.0))
    assert [int(r["step"]) for r in rows(out)] == [0]


def test_sdf_input_charge_and_the_command(tmp_path, capsys):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)[O-]"))  # acetate: formal charge -1
    AllChem.EmbedMolecule(mol, randomSeed=1)
    sdf = tmp_path / "acetate.sdf"
    with Chem.SDWriter(str(sdf)) as w:
        w.write(mol)
    atoms, charge = read_structure(sdf)
    assert len(atoms) == 7 and charge == -1.0
    assert main(["md", str(sdf), "--out", str(tmp_path / "cli"), "--steps", "10", "--interval", "5",
                 "--quiet", "--plot", str(tmp_path / "md.png")]) == 0
    assert (tmp_path / "md.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 10 and summary["resumed_from"] == 0
    assert json.loads((tmp_path / "cli" / "run.json").read_text())["charge"] == -1.0
    assert main(["md", str(sdf), "--out", str(tmp_path / "cli"), "--steps", "10", "--engine", "gromacs"]) == 2
    before = sdf.read_bytes()
    assert main(["md", str(sdf), "--out", str(tmp_path / "cli2"), "--steps", "10", "--plot", str(sdf)]) == 2
    assert "--plot" in capsys.readouterr().err and sdf.read_bytes() == before


def test_a_periodic_extended_xyz_runs_periodic_in_both_engines(tmp_path):
    pytest.importorskip("openmm")
    import ase.io

    atoms = ethanol()
    atoms.cell = np.diag([6.0, 6.5, 7.0])  # images within the potential's cutoff
    atoms.pbc = True
    path = tmp_path / "box.extxyz"
    ase.io.write(path, atoms)
    first = {}
    for engine in ("ase", "openmm"):
        run_md(path, tmp_path / engine, steps=5, settings=MDSettings(engine=engine, interval=5))
        first[engine] = float(rows(tmp_path / engine)[0]["potential_energy_eV"])
    free = run_md(_free_copy(atoms, tmp_path), tmp_path / "free", steps=5,
                  settings=MDSettings(interval=5))
    assert free.steps == 5
    assert first["ase"] == pytest.approx(first["openmm"], abs=1e-6)
    assert first["ase"] != pytest.approx(float(rows(tmp_path / "free")[0]["potential_energy_eV"]), abs=1e-4)
    tilted = atoms.copy()
    tilted.cell = [[6.0, 0.5, 0.0], [0.0, 6.5, 0.0], [0.0, 0.0, 7.0]]
    ase.io.write(tmp_path / "tilted.extxyz", tilted)
    with pytest.raises(WorkflowError, match="reduced triclinic box.*use --engine ase"):
        run_md(tmp_path / "tilted.extxyz", tmp_path / "t", steps=5, settings=MDSettings(engine="openmm"))


def _free_copy(atoms, tmp_path):
    import ase.io

    free = atoms.copy()
    free.pbc = False
    path = tmp_path / "free.xyz"
    ase.io.write(path, free)
    return path


def test_overlapping_atoms_are_named(ethanol_xyz, tmp_path):
    lines = ethanol_xyz.read_text().splitlines()
    lines[4] = " ".join([lines[4].split()[0], *lines[2].split()[1:]])  # atom 3 onto atom 1
    path = tmp_path / "overlap.xyz"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(WorkflowError, match=r"overlap.xyz record 1: atom 1 \(\w+\) and atom 3 \(\w+\) are 0 Å apart"):
        run_md(path, tmp_path / "o", steps=5)


def test_minimize_first_starts_both_engines_from_the_same_minimum(ethanol_xyz, tmp_path):
    pytest.importorskip("openmm")
    plain = run_md(ethanol_xyz, tmp_path / "plain", steps=1, settings=MDSettings(interval=1))
    e0 = float(rows(tmp_path / "plain")[0]["potential_energy_eV"])
    start = {}
    for engine in ("ase", "openmm"):
        run_md(ethanol_xyz, tmp_path / engine, steps=1,
               settings=MDSettings(engine=engine, interval=1, minimize_steps=100, minimize_fmax=0.02))
        start[engine] = float(rows(tmp_path / engine)[0]["potential_energy_eV"])
    assert plain.steps == 1
    assert start["ase"] < e0 - 1e-3  # ase.build's ethanol is not at this potential's minimum
    assert start["ase"] == pytest.approx(start["openmm"], abs=1e-6)
    with pytest.raises(WorkflowError, match="--minimize must be a whole number of steps >= 0"):
        run_md(ethanol_xyz, tmp_path / "x", steps=1, settings=MDSettings(minimize_steps=-1))


def test_a_resume_refuses_lost_rows_or_frames_and_a_changed_structure(ethanol_xyz, tmp_path):
    """A damaged md.csv or trajectory, or a structure whose elements changed, had resumed
    without a word: a gap in md.csv, or frames of C then N for the same atom."""
    import shutil

    structure = tmp_path / "mol.xyz"
    shutil.copy(ethanol_xyz, structure)
    run = tmp_path / "run"
    run_md(structure, run, steps=10, settings=MDSettings(interval=5))
    for name, damage, message in (
            ("md.csv", "garbage\n", r"md.csv: it holds no row, the checkpoint is at step 10: rows were lost"),
            ("trajectory.extxyz", None, r"trajectory.extxyz: it is missing or empty, the checkpoint is at step 10"),
    ):
        copy = tmp_path / f"damaged_{name}"
        shutil.copytree(run, copy)
        if damage is None:
            (copy / name).unlink()
        else:
            (copy / name).write_text(damage)
        with pytest.raises(WorkflowError, match=message):
            run_md(structure, copy, steps=20, settings=MDSettings(interval=5))
        assert damage is None or (copy / name).read_text() == damage  # nothing rewritten
    lines = structure.read_text().splitlines()
    first = lines[2].split()[0]
    other = "N" if first != "N" else "C"  # the same file size: run.json's check does not see it
    lines[2] = other + lines[2][len(first):]
    structure.write_text("\n".join(lines) + "\n")
    with pytest.raises(WorkflowError, match=rf"frame of step 0, atom 1 is {first} where .*mol.xyz record 1 has "
                                            rf"{other}: the structure file changed"):
        run_md(structure, run, steps=20, settings=MDSettings(interval=5))


def test_the_charge_is_checked_and_one_value_for_both_engines(ethanol_xyz, tmp_path, caplog):
    """An extended-XYZ ``charge=`` had stayed in atoms.info, where GETCalculator reads it
    before the run's --charge (so the ASE and OpenMM engines saw two charges), a NaN
    --charge had been refused only after run.json was written, and a --charge the model
    ignores or an odd electron count had passed without a word."""
    lines = ethanol_xyz.read_text().splitlines()
    charged = tmp_path / "charged.xyz"
    charged.write_text("\n".join([lines[0], "charge=-2", *lines[2:]]) + "\n")
    atoms, charge = read_structure(charged)
    assert charge == -2.0 and "charge" not in atoms.info
    charged.write_text("\n".join([lines[0], "charge=abc", *lines[2:]]) + "\n")
    with pytest.raises(WorkflowError, match="charged.xyz record 1: charge='abc' in the comment line is not a number"):
        read_structure(charged)
    with pytest.raises(WorkflowError, match="--charge must be a finite number"):
        run_md(ethanol_xyz, tmp_path / "nan", steps=1, settings=MDSettings(charge=float("nan")))
    assert not (tmp_path / "nan").exists()
    with caplog.at_level("WARNING", logger="get_md.workflows.md"):
        run_md(ethanol_xyz, tmp_path / "cation", steps=1, settings=MDSettings(interval=1, charge=1.0))
    text = caplog.text
    assert "--charge 1 is ignored: model get-xtb-organic" in text
    assert "C2H6O with total charge 1 holds 25 electrons, an odd number: a radical" in text


def test_a_periodic_cell_too_small_for_the_structure_is_named(ethanol_xyz, tmp_path):
    """A placeholder CRYST1 of 1 Å with --periodic had run ethanol on its own images
    (-312 eV instead of -310), and pbc="T T T" without a Lattice had been refused by
    GETCalculator without the file's name."""
    import ase.io

    atoms = ethanol()
    atoms.cell = [1.0, 1.0, 1.0]
    atoms.pbc = True
    ase.io.write(tmp_path / "placeholder.pdb", atoms)
    assert "CRYST1    1.000    1.000    1.000" in (tmp_path / "placeholder.pdb").read_text()
    with pytest.raises(WorkflowError, match=r"placeholder.pdb record 1: atom \d+ \(\w+\) and a periodic image of "
                                            r"atom \d+ \(\w+\) are 0.\d+ Å apart .*the cell \(1, 1, 1 Å\) is too small"):
        run_md(tmp_path / "placeholder.pdb", tmp_path / "p", steps=1, settings=MDSettings(periodic=True))
    lines = ethanol_xyz.read_text().splitlines()
    no_lattice = tmp_path / "no_lattice.xyz"
    no_lattice.write_text("\n".join([lines[0], 'pbc="T T T"', *lines[2:]]) + "\n")
    with pytest.raises(WorkflowError, match="no_lattice.xyz record 1: periodic, but its cell .* has no volume"):
        read_structure(no_lattice)


def test_a_checkpoint_whose_state_does_not_load_is_named(ethanol_xyz, tmp_path):
    """A checkpoint.npz that opens but holds a damaged or another run's state had given
    numpy's bare messages ('matmul: Input operand 1 has a mismatch ...', 'This file
    contains pickled data ...') or GETCalculator's NaN error, none naming the file."""
    import io

    out = tmp_path / "run"
    run_md(ethanol_xyz, out, steps=10, settings=MDSettings(interval=5))
    good = out / "checkpoint.npz"
    with np.load(good) as data:
        step = data["step"]
        with np.load(io.BytesIO(data["state"].tobytes())) as state:
            fields = dict(state)
    for damage, message in ((lambda f: f.update(positions=f["positions"][:3], momenta=f["momenta"][:3]),
                             r"positions \(3, 3\) and momenta \(3, 3\) for a structure of 9 atoms"),
                            (lambda f: f["positions"].__setitem__((0, 0), np.nan), "NaN or infinite positions"),
                            (None, "not a saved ASE engine state")):
        if damage is None:
            blob = b"x" * 100
        else:
            changed = {k: np.array(v, copy=True) for k, v in fields.items()}
            damage(changed)
            buf = io.BytesIO()
            np.savez(buf, **changed)
            blob = buf.getvalue()
        np.savez(good, step=step, time_ps=np.float64(0.005), state=np.frombuffer(blob, dtype=np.uint8))
        with pytest.raises(WorkflowError, match=rf"checkpoint.npz: its ase state does not load \({message}"):
            run_md(ethanol_xyz, out, steps=20, settings=MDSettings(interval=5))


def test_a_folder_holding_files_of_another_tool_is_not_overwritten(ethanol_xyz, tmp_path):
    """An --out folder with md.csv, trajectory.extxyz or checkpoint.npz but no run.json
    (another tool's output) had had them deleted without a word, --no-resume or not."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "md.csv").write_text("time,energy\n0,1\n")
    (other / "trajectory.extxyz").write_text("theirs\n")
    for resume in (True, False):
        with pytest.raises(WorkflowError, match=r"--out .*other holds md.csv, trajectory.extxyz but no run.json: "
                                                r"not a run of get-md md .*nothing was deleted. Give an empty"):
            run_md(ethanol_xyz, other, steps=1, settings=MDSettings(interval=1), resume=resume)
    assert (other / "md.csv").read_text() == "time,energy\n0,1\n"
    assert (other / "trajectory.extxyz").read_text() == "theirs\n"
    assert sorted(p.name for p in other.iterdir()) == ["md.csv", "trajectory.extxyz"]
    lone = tmp_path / "lone"
    lone.mkdir()
    np.savez(lone / "checkpoint.npz", x=np.zeros(2))
    with pytest.raises(WorkflowError, match=r"holds checkpoint.npz but no run.json"):
        run_md(ethanol_xyz, lone, steps=1, settings=MDSettings(interval=1))
    assert (lone / "checkpoint.npz").exists()
    own = tmp_path / "own"  # a run of get-md md (run.json) still resumes, and --no-resume starts it over
    run_md(ethanol_xyz, own, steps=2, settings=MDSettings(interval=1))
    assert run_md(ethanol_xyz, own, steps=3, settings=MDSettings(interval=1)).started_at == 2
    assert run_md(ethanol_xyz, own, steps=1, settings=MDSettings(interval=1), resume=False).started_at == 0
    assert [int(r["step"]) for r in rows(own)] == [0, 1]


def test_a_timestep_that_looks_like_ps_is_warned_about(ethanol_xyz, tmp_path, caplog):
    """--timestep 1e-9 (fs given in ps, or a typo) had run without a word, time_ps all zeros."""
    with caplog.at_level("WARNING", logger="get_md.workflows.md"):
        res = run_md(ethanol_xyz, tmp_path / "tiny", steps=2, settings=MDSettings(interval=1, timestep_fs=1e-9))
        assert res.steps == 2  # a warning: the run goes on
        assert "--timestep is in fs; 1e-09 fs is far below a useful step" in caplog.text
        assert "a value in ps (0.0005 ps is 0.5 fs), or a typo?" in caplog.text
        assert [r["time_ps"] for r in rows(tmp_path / "tiny")] == ["0.000000"] * 3
        caplog.clear()
        MDSettings(timestep_fs=0.02).check()
        MDSettings().check()
    assert "--timestep" not in caplog.text
