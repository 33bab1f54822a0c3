"""ASE calculator (get_md.plugins.ase): properties, caching, batching, stress, optimisers, MD."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from ase import units
from ase.build import molecule
from ase.calculators.calculator import PropertyNotImplementedError
from get_md.plugins.ase import GeoMFormerCalculator, GETCalculator

from get_md import export
from get_md.errors import ModelFileError, ModelRunError, PluginError
from get_md.models import build_model

try:
    from tests.plugin_helpers import (
        NVE_MAX_DEVIATION_REAL,
        TINY_GET,
        Tether,
        check_nve,
        ethanol,
        min_pair_distance,
        periodic_ethanol,
        tiny_geomformer,
        tiny_get,
    )
except ImportError:  # tests/ is not a package: pytest puts it on sys.path
    from plugin_helpers import (
        NVE_MAX_DEVIATION_REAL,
        TINY_GET,
        Tether,
        check_nve,
        ethanol,
        min_pair_distance,
        periodic_ethanol,
        tiny_geomformer,
        tiny_get,
    )

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny_get.pt"
    export.save(tiny_get(), path, {"elements": ["H", "C", "N", "O"], "description": "test potential"})
    return path


@pytest.fixture(scope="module")
def calc64(model_file):
    return GETCalculator(model_file, dtype=torch.float64)


def test_properties_and_units(model_file, calc64):
    atoms = ethanol()
    atoms.calc = calc64
    e = atoms.get_potential_energy()
    f = atoms.get_forces()
    assert isinstance(e, float)
    assert f.shape == (9, 3) and f.dtype == np.float64
    assert np.abs(f).max() > 0.01, "perturbed test model should give non-trivial forces"
    assert atoms.get_potential_energy(force_consistent=True) == pytest.approx(e)
    assert atoms.get_potential_energies().sum() == pytest.approx(e, rel=1e-10)
    # the raw model agrees (eV, eV/Å)
    module, _ = export.load_model(model_file, dtype="float64")
    from get_md.graph import MolecularGraph

    g = MolecularGraph.from_atoms(torch.tensor(atoms.positions), torch.tensor(atoms.numbers))
    out = module(*g.inputs())
    assert float(out["energy"].detach()) == pytest.approx(e, rel=1e-12)
    np.testing.assert_allclose(out["forces"].detach().numpy(), f, atol=1e-12)
    # forces are -dE/dx (central differences, float64)
    h = 1e-5
    for i, k in [(0, 0), (4, 2), (8, 1)]:
        a = atoms.copy()
        a.calc = calc64
        a.positions[i, k] += h
        ep = a.get_potential_energy()
        a.positions[i, k] -= 2 * h
        em = a.get_potential_energy()
        assert -(ep - em) / (2 * h) == pytest.approx(f[i, k], abs=1e-6)


def test_in_memory_module_and_float32(model_file):
    atoms = ethanol()
    model = tiny_get()
    calc = GETCalculator(model)  # float32 default
    atoms.calc = calc
    e32 = atoms.get_potential_energy()
    ref = GETCalculator(model_file, dtype="float64")
    assert e32 == pytest.approx(ref.get_potential_energy(atoms), abs=1e-4)
    assert next(model.parameters()).dtype == torch.float32, "the caller's module is not changed"
    scripted = GETCalculator(torch.jit.script(tiny_get()), dtype=torch.float64)
    assert scripted.get_potential_energy(atoms) == pytest.approx(ref.get_potential_energy(atoms), rel=1e-12)
    assert "GETCalculator" in repr(calc)


def test_no_model_and_no_default(monkeypatch):
    from get_md import zoo

    monkeypatch.setattr(zoo, "DEFAULT_POTENTIAL", "no-such-default-potential")
    with pytest.raises(ValueError, match="no model given.*no-such-default-potential.*model="):
        GETCalculator()
    with pytest.raises(ValueError, match="unknown model 'not-a-model'"):
        GETCalculator("not-a-model")
    with pytest.raises(ValueError, match="not found"):
        GETCalculator("missing/dir/model.pt")
    with pytest.raises(TypeError, match="model must be"):
        GETCalculator(42)


def test_unsupported_element(calc64):
    atoms = molecule("SiH4")
    atoms.calc = calc64
    with pytest.raises(ValueError, match="Si not supported"):
        atoms.get_potential_energy()


def test_stress_requires_periodic_cell(calc64):
    atoms = ethanol()
    atoms.calc = calc64
    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        atoms.get_stress()
    assert "stress" not in calc64.results
    atoms.pbc = [True, True, False]
    atoms.cell = [8, 8, 8]
    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        atoms.get_stress()
    bad = ethanol()
    bad.pbc = True  # no cell
    bad.calc = calc64
    with pytest.raises(ValueError, match="no volume"):
        bad.get_potential_energy()


def test_stress_finite_differences(calc64):
    atoms = periodic_ethanol()
    atoms.calc = calc64
    stress = atoms.get_stress(voigt=False)
    assert np.abs(stress).max() > 1e-4
    np.testing.assert_allclose(stress, stress.T, atol=1e-10)
    volume = atoms.get_volume()
    h = 1e-5
    fd = np.zeros((3, 3))
    cell0 = atoms.cell.array.copy()
    for i in range(3):
        for j in range(i, 3):
            energies = []
            for sign in (1, -1):
                eps = np.zeros((3, 3))
                eps[i, j] += sign * h / 2
                eps[j, i] += sign * h / 2
                a = atoms.copy()
                a.set_cell(cell0 @ (np.eye(3) + eps), scale_atoms=True)
                a.calc = calc64
                energies.append(a.get_potential_energy())
            fd[i, j] = fd[j, i] = (energies[0] - energies[1]) / (2 * h) / volume
    np.testing.assert_allclose(stress, fd, atol=1e-8 + 1e-5 * np.abs(fd).max())
    # Voigt order xx yy zz yz xz xy
    v = atoms.get_stress()
    np.testing.assert_allclose(v, [stress[0, 0], stress[1, 1], stress[2, 2], stress[1, 2],
                                   stress[0, 2], stress[0, 1]])


def test_template_reused_while_only_positions_change(model_file, monkeypatch):
    calc = GETCalculator(model_file, dtype="float64")
    builds = []
    original = calc._build_graph
    monkeypatch.setattr(calc, "_build_graph", lambda *a: builds.append(1) or original(*a))
    atoms = ethanol()
    atoms.calc = calc
    e0 = atoms.get_potential_energy()
    atoms.positions[0, 0] += 0.05
    e1 = atoms.get_potential_energy()
    assert e1 != e0
    atoms.set_cell([9, 9, 9])
    atoms.pbc = True
    atoms.get_potential_energy()
    assert len(builds) == 1, "same atomic numbers: the graph template is reused"
    atoms.pbc = False
    assert atoms.get_potential_energy() == pytest.approx(e1, rel=1e-12)
    water = molecule("H2O")
    water.calc = calc
    water.get_potential_energy()
    assert len(builds) == 2
    atoms.get_potential_energy()
    atoms.positions[1, 1] += 0.01
    atoms.get_potential_energy()
    assert len(builds) == 2, "templates are cached per set of atomic numbers"


def test_calculate_batch_equals_one_by_one(calc64):
    structures = [ethanol(), molecule("H2O"), periodic_ethanol(), molecule("CH3CONH2"), molecule("CH4")]
    structures[1].positions += 0.1
    batch = calc64.calculate_batch(structures)
    chunked = calc64.calculate_batch(structures, batch_size=2)
    assert len(batch) == len(structures) == len(chunked)
    for atoms, r, rc in zip(structures, batch, chunked, strict=True):
        calc64.calculate(atoms)
        one = calc64.results
        assert set(r) == set(one)
        assert ("stress" in r) == bool(atoms.pbc.all())
        for key in one:
            np.testing.assert_allclose(r[key], one[key], rtol=1e-10, atol=1e-12, err_msg=key)
            np.testing.assert_allclose(rc[key], one[key], rtol=1e-10, atol=1e-12, err_msg=key)
    assert calc64.calculate_batch([]) == []


def test_geomformer_family_read_from_file(tmp_path):
    path = tmp_path / "geomformer.pt"
    export.save(tiny_geomformer(), path)
    calc = GeoMFormerCalculator(path, dtype="float64")
    assert GeoMFormerCalculator is GETCalculator
    assert calc.family == "geomformer"
    atoms = ethanol()
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy())
    assert atoms.get_forces().shape == (9, 3)
    gcalc = GETCalculator(tiny_get())
    assert gcalc.family == "get"


def test_score_model(tmp_path):
    torch.manual_seed(0)
    model = build_model("get", mode="score", task="score", **TINY_GET)
    path = tmp_path / "score.pt"
    export.save(model, path)
    atoms = ethanol()
    # every atom in one segment: a score model has no ligand to score against a receptor
    atoms.calc = GETCalculator(path)
    with pytest.raises(PluginError, match="score model: it scores a ligand .segment 1. against a receptor"):
        atoms.calc.get_score(atoms)
    from get_md.build import from_ase

    segments = [0, 0, 0, 1, 1, 1, 1, 1, 1]  # the C-C-O heavy atoms' first three as "receptor"
    calc = GETCalculator(path, graph_builder=lambda a: from_ase(a, segment_ids=segments))
    assert calc.task == "score"
    atoms.calc = calc
    score = calc.get_score(atoms)
    assert isinstance(score, float)
    assert calc.results["score"] == score
    with pytest.raises(PropertyNotImplementedError, match="score model"):
        atoms.get_potential_energy()
    assert calc.calculate_batch([atoms, atoms])[1]["score"] == pytest.approx(score, rel=1e-5)


def test_non_finite_weights_and_outputs_are_errors_naming_the_model(tmp_path):
    model = tiny_get()
    with torch.no_grad():
        for t in model.parameters():
            t.mul_(1e30)  # finite weights whose outputs overflow: a diverged training run
    export.save(model, tmp_path / "huge.pt")
    atoms = ethanol()
    atoms.calc = GETCalculator(tmp_path / "huge.pt")
    with pytest.raises(ModelRunError, match=r"huge\.pt returned a non-finite (energy|forces) .*damaged weights"):
        atoms.get_potential_energy()
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    export.save(model, tmp_path / "nan.pt")
    with pytest.raises(ModelFileError, match=r"nan\.pt: weights contain non-finite values .*: 16 in atom_embedding"):
        GETCalculator(tmp_path / "nan.pt")


def test_overlapping_atoms_thin_cells_and_unknown_devices_are_named(tmp_path):
    from ase import Atoms

    from get_md.errors import ConfigError, GraphError

    calc = GETCalculator(tiny_get())
    pair = Atoms("CH", positions=[[0.0, 0.0, 0.0], [1e-3, 0.0, 0.0]])
    pair.calc = calc
    with pytest.raises(GraphError, match=r"CH: atom 1 \(C\) and atom 2 \(H\) are 0.001 Å apart"):
        pair.get_potential_energy()
    flat = ethanol()
    flat.set_cell([10.0, 10.0, 1e-4])
    flat.pbc = True
    flat.calc = calc
    with pytest.raises(GraphError, match=r"periodic cell is 0.0001 Å wide along its vector 3"):
        flat.get_potential_energy()
    with pytest.raises(ConfigError, match="unknown device 'foo'"):
        GETCalculator(tiny_get(), device="foo")
    dummy = Atoms("XH", positions=[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    dummy.calc = GETCalculator("get-xtb-organic")
    with pytest.raises(GraphError, match=r"atom 1 is a dummy atom \(X, atomic number 0\)"):
        dummy.get_potential_energy()


def test_a_cell_without_volume_is_one_check_with_each_callers_remedy(tmp_path):
    """The 'no volume' check had been written twice, in the ASE calculator and in get-md md's
    reader, with different words; it is geometry_checks.check_cell's, each caller giving its
    own remedy (``hint``)."""
    from get_md.workflows.geometry_checks import check_cell
    from get_md.workflows.md.structure import read_structure

    from get_md.errors import GraphError, WorkflowError

    with pytest.raises(GraphError, match=r"^x: periodic, but its cell \[\[0.0, 0.0, 0.0\], .* has no volume "
                                         r"\(pbc=\[True, False, False\]\); set one$"):
        check_cell([[0.0, 0, 0], [0, 10.0, 0], [0, 0, 10.0]], [True, False, False], "x", hint="set one")
    check_cell(np.zeros((3, 3)), [False, False, False], "x", hint="set one")  # not periodic: no cell needed
    bad = ethanol()
    bad.pbc = True  # no cell
    bad.calc = GETCalculator(tiny_get())
    with pytest.raises(GraphError, match=r"GETCalculator: ase.Atoms C2H6O: periodic, but its cell .* has no volume "
                                         r"\(pbc=\[True, True, True\]\); set a full cell \(e.g. "
                                         r"atoms.center\(vacuum=10.0\)\) or pbc=False"):
        bad.get_potential_energy()
    xyz = tmp_path / "no_cell.xyz"
    atoms = ethanol()
    xyz.write_text("\n".join([str(len(atoms)), 'pbc="T T T"',
                              *(f"{s} {x:.6f} {y:.6f} {z:.6f}" for s, (x, y, z)
                                in zip(atoms.get_chemical_symbols(), atoms.positions, strict=True))]) + "\n")
    with pytest.raises(WorkflowError, match=r"no_cell.xyz record 1: periodic, but its cell .* has no volume "
                                            r"\(pbc=\[True, True, True\]\); give a cell \(extended XYZ: "
                                            r"Lattice=\"...\"\), or no pbc"):
        read_structure(xyz)


def test_atoms_that_moved_onto_a_periodic_image_are_named(monkeypatch):
    """The image check had run at the first call and when the cell narrowed only: atoms that
    came within 0.5 Å of a periodic image of another while the cell stayed the same (a molecule
    unwrapped across the boundary over a long run) were computed without a word. It runs again
    once an atom has moved more than IMAGE_CHECK_DRIFT (1 Å) since the last check."""
    import get_md.plugins.ase as plugin

    from get_md.errors import GraphError

    atoms = ethanol()
    atoms.set_cell([10.0, 10.0, 10.0])
    atoms.pbc = True
    atoms.calc = GETCalculator(tiny_get())
    atoms.get_potential_energy()
    calls = []
    original = plugin.check_images
    monkeypatch.setattr(plugin, "check_images", lambda *a, **k: calls.append(1) or original(*a, **k))
    for _ in range(3):
        atoms.positions[1:] += [0.3, 0.0, 0.0]  # 0.9 Å in all since the check: not checked again
        atoms.get_potential_energy()
    assert calls == []
    atoms.positions[1:] += [0.3, 0.0, 0.0]  # 1.2 Å: checked again, and passes
    atoms.get_potential_energy()
    assert len(calls) == 1
    moved = atoms.positions.copy()
    moved[8] = moved[0] - [9.7, 0.0, 0.0]  # an H onto the image of the C on the far side of the x face
    atoms.positions = moved
    with pytest.raises(GraphError, match=r"GETCalculator: ase.Atoms C2H6O: atom 1 \(C\) and a periodic image of atom 9 "
                                         r"\(H\) are 0.3 Å apart .*: atom 9 is 10.\d Å from where it was at the last check \(cell "
                                         r"10, 10, 10 Å\): atoms moved onto a periodic image of others"):
        atoms.get_potential_energy()
    assert len(calls) == 2


def test_a_periodic_cell_too_small_for_the_structure_is_named_on_a_new_cell_only(monkeypatch):
    """Ethanol in a 3 Å cubic box (its O 0.48 Å from an image of an H) had been computed
    without a word; the check runs with the first positions and when the cell narrows by
    more than 10 %, not on every call while positions or (NPT) the cell change a little."""
    import get_md.plugins.ase as plugin

    from get_md.errors import GraphError

    calc = GETCalculator(tiny_get())
    small = ethanol()
    small.set_cell([3.0, 3.0, 3.0])
    small.pbc = True
    small.calc = calc
    with pytest.raises(GraphError, match=r"GETCalculator: ase.Atoms C2H6O: atom 3 \(O\) and a periodic image of atom 7 "
                                         r"\(H\) are 0.482 Å apart \(closer than 0.5 Å; the image is atom 7 shifted by "
                                         r"\(-1, 0, 0\) cell vectors\): the cell \(3, 3, 3 Å\) is too small"):
        small.get_potential_energy()
    calls = []
    original = plugin.check_images
    monkeypatch.setattr(plugin, "check_images", lambda *a, **k: calls.append(1) or original(*a, **k))
    atoms = ethanol()
    atoms.set_cell([9.0, 9.0, 9.0])
    atoms.pbc = True
    atoms.calc = calc
    atoms.get_potential_energy()
    for _ in range(3):
        atoms.positions[0, 0] += 0.01
        atoms.get_potential_energy()
    assert len(calls) == 1, "positions only: the cell is checked once"
    atoms.set_cell([9.1, 8.9, 9.0], scale_atoms=True)  # an NPT step: a cell narrowed by 1 % is not
    atoms.get_potential_energy()
    assert len(calls) == 1
    atoms.set_cell([9.0, 7.9, 9.0], scale_atoms=True)  # narrowed by more than 10 %: checked again
    atoms.get_potential_energy()
    assert len(calls) == 2
    atoms.set_cell([3.0, 3.0, 3.0])
    atoms.set_positions(ethanol().positions)
    with pytest.raises(GraphError, match="the cell \\(3, 3, 3 Å\\) is too small"):
        atoms.get_potential_energy()


def test_a_charge_the_model_does_not_read_is_named_once(caplog):
    atoms = ethanol()
    atoms.info["charge"] = 2
    atoms.calc = GETCalculator(tiny_get())
    with caplog.at_level("WARNING"):
        e = atoms.get_potential_energy()
        atoms.positions[0, 0] += 0.01
        atoms.get_potential_energy()
    assert caplog.text.count("atoms.info['charge'] = 2 is ignored") == 1
    atoms.info["charge"] = 0
    atoms.positions[0, 0] -= 0.01
    assert atoms.get_potential_energy() == pytest.approx(e)


def test_bad_arguments_are_named_before_any_calculation():
    """Each had been a bare error from deep inside (float(), ASE, the calculator's own
    code) or a silent result: charge="abc" / None, a NaN charge, graph_builder="residues",
    calculate() without atoms, calculate_batch on one Atoms or on a str, batch_size 0 or
    1.5 (taken as "all" and as 1), half precision (ethanol off by 0.02 / 0.5 eV)."""
    from get_md.errors import ConfigError

    for charge in ("abc", None, float("nan")):
        with pytest.raises(PluginError, match=r"GETCalculator: charge must be a (finite )?number"):
            GETCalculator(tiny_get(), charge=charge)
    with pytest.raises(PluginError, match="graph_builder must be a function atoms -> MolecularGraph, got str"):
        GETCalculator(tiny_get(), graph_builder="residues")
    with pytest.raises(ConfigError, match="GETCalculator: dtype float16 is not supported"):
        GETCalculator(tiny_get(), dtype="float16")
    calc = GETCalculator(tiny_get())
    with pytest.raises(PluginError, match="GETCalculator: no atoms to compute"):
        calc.get_potential_energy()
    atoms = ethanol()
    with pytest.raises(PluginError, match="give a list of ase.Atoms, not one Atoms"):
        calc.calculate_batch(atoms)
    with pytest.raises(PluginError, match="item 1 is a str, not an ase.Atoms"):
        calc.calculate_batch([atoms, "ethanol.xyz"])
    for size in (0, 1.5, True):
        with pytest.raises(PluginError, match="batch_size must be a whole number >= 1"):
            calc.calculate_batch([atoms, atoms], batch_size=size)
    atoms.info["charge"] = "abc"
    charged = tiny_get()
    charged.needs_charge = True
    atoms.calc = GETCalculator(charged)
    with pytest.raises(PluginError, match=r"atoms.info\['charge'\] must be a number"):
        atoms.get_potential_energy()


def test_stress_asked_through_get_properties_and_pickling(calc64):
    """ASE's get_properties(["stress"]) skips get_property: a non-periodic structure had got a
    bare PropertyNotPresent('stress'). A calculator on a TorchScript file had not pickled
    ("Tried to serialize object __torch__...GET")."""
    import pickle

    atoms = ethanol()
    atoms.calc = calc64
    with pytest.raises(PropertyNotImplementedError, match="stress needs a cell periodic in all three"):
        atoms.get_properties(["energy", "stress"])
    e = atoms.get_potential_energy()
    copy = pickle.loads(pickle.dumps(calc64))
    assert copy.get_potential_energy(ethanol()) == pytest.approx(e, rel=1e-12)
    assert copy.potential.dtype == torch.float64 and copy.family == calc64.family


def test_total_charge_only_for_models_that_need_it(tmp_path):
    model = tiny_get()
    path = tmp_path / "charged.pt"
    export.save(model, path, {"needs_charge": True})
    calc = GETCalculator(path, dtype="float64")
    atoms = ethanol()
    atoms.calc = calc
    e0 = atoms.get_potential_energy()
    atoms.info["charge"] = 1
    e1 = atoms.get_potential_energy()
    assert e1 != pytest.approx(e0, abs=1e-6), "a change of total charge alone triggers a new calculation"
    batch = calc.calculate_batch([ethanol(), atoms])
    assert batch[0]["energy"] == pytest.approx(e0, rel=1e-12)
    assert batch[1]["energy"] == pytest.approx(e1, rel=1e-12)
    # a model without needs_charge ignores atoms.info["charge"]
    plain = GETCalculator(tiny_get(), dtype="float64")
    assert plain.get_potential_energy(atoms) == pytest.approx(plain.get_potential_energy(ethanol()), rel=1e-12)


def test_optimisers_lower_the_energy(calc64):
    from ase.optimize import BFGS, FIRE

    from get_md.errors import GraphError

    for opt_cls in (BFGS, FIRE):
        atoms = ethanol()
        atoms.calc = calc64
        e0 = atoms.get_potential_energy()
        f0 = np.abs(atoms.get_forces()).max()
        opt_cls(atoms, logfile=None).run(fmax=0.02, steps=5)
        assert atoms.get_potential_energy() < e0 - 1e-3, opt_cls.__name__
        assert np.abs(atoms.get_forces()).max() < f0, opt_cls.__name__
    # this random-weight toy potential has a hole at short range: BFGS runs into it, and the
    # calculator stops there instead of returning energies of overlapping atoms
    atoms = ethanol()
    atoms.calc = calc64
    with pytest.raises(GraphError, match=r"C2H6O: atom \d+ \(\w+\) and atom \d+ \(\w+\) are 0\.4\d* Å apart "
                                         r"\(closer than 0\.5 Å\): overlapping atoms"):
        BFGS(atoms, logfile=None).run(fmax=0.02, steps=60)


def test_langevin_and_vibrations(calc64, tmp_path):
    from ase.md.langevin import Langevin
    from ase.vibrations import Vibrations

    atoms = ethanol()
    atoms.calc = calc64
    Langevin(atoms, 0.5 * units.fs, temperature_K=300, friction=0.01, fixcm=False,
             rng=np.random.default_rng(0)).run(20)
    assert np.isfinite(atoms.get_potential_energy())
    water = molecule("H2O")
    water.calc = calc64
    vib = Vibrations(water, name=str(tmp_path / "vib"), delta=0.005)
    vib.run()
    freqs = vib.get_frequencies()
    assert len(freqs) == 9 and np.all(np.isfinite(np.abs(freqs)))


def run_nve_ase(calc, n_steps: int, temperature_K: float = 300.0, record_every: int = 10,
                tether: bool = True):
    """NVE VelocityVerlet (0.5 fs) on ethanol, tethered (see plugin_helpers) unless ``tether`` is False.

    Returns times (ps), total and potential energies (eV), the model's energies (eV) and the
    closest approach of two atoms (Å).
    """
    from ase.calculators.mixing import SumCalculator
    from ase.md.velocitydistribution import Stationary, ZeroRotation
    from ase.md.verlet import VelocityVerlet

    atoms = ethanol()
    atoms.calc = SumCalculator([calc, Tether(atoms.positions).ase_calculator()]) if tether else calc
    rng = np.random.default_rng(0)
    masses = atoms.get_masses()
    sigma = np.sqrt(temperature_K * units.kB / masses)[:, None]
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * sigma * masses[:, None])
    Stationary(atoms)
    ZeroRotation(atoms)
    times, etot, epot, emodel, dmin = [], [], [], [], []
    dyn = VelocityVerlet(atoms, timestep=0.5 * units.fs)

    def record():
        ep = atoms.get_potential_energy()
        times.append(dyn.nsteps * 0.5e-3)
        etot.append(ep + atoms.get_kinetic_energy())
        epot.append(ep)
        emodel.append(calc.results["energy"])
        dmin.append(min_pair_distance(atoms.positions))

    dyn.attach(record, interval=record_every)
    dyn.run(n_steps)
    return np.array(times), np.array(etot), np.array(epot), np.array(emodel), min(dmin)


def test_nve_velocity_verlet(model_file):
    """1 ps NVE (2000 x 0.5 fs) in float64: total energy drift and fluctuation bounded."""
    calc = GETCalculator(model_file, dtype=torch.float64)
    t0 = time.perf_counter()
    result = run_nve_ase(calc, 2000)
    print(f"ASE NVE 2000 steps: {time.perf_counter() - t0:.1f} s")
    check_nve(*result, 9, "ASE VelocityVerlet 1 ps")


def test_nve_velocity_verlet_shipped_potential():
    """1 ps NVE of free ethanol (no tether) with the shipped default potential, float64."""
    calc = GETCalculator(dtype=torch.float64)
    times, etot, epot, emodel, dmin = run_nve_ase(calc, 2000, tether=False)
    print(f"shipped potential, ASE NVE: E_pot range {np.ptp(epot):.3f} eV, closest approach {dmin:.2f} A")
    assert np.ptp(epot) > 0.05  # the molecule really moves on the learnt surface
    assert dmin > 0.8  # and stays a molecule
    check_nve(times, etot, epot, emodel, dmin, 9, "ASE VelocityVerlet 1 ps, shipped potential",
              max_deviation=NVE_MAX_DEVIATION_REAL)


def water_grid(per_side: int, spacing: float = 3.1):
    """A periodic cubic grid of ``per_side**3`` water molecules (Å)."""
    from ase import Atoms

    w = molecule("H2O")
    grid = np.stack(np.meshgrid(*[np.arange(per_side)] * 3, indexing="ij"), -1).reshape(-1, 1, 3) * spacing
    pos = (grid + w.positions[None]).reshape(-1, 3)
    return Atoms("H2O" * per_side ** 3, positions=pos, cell=np.eye(3) * per_side * spacing, pbc=True)


def test_float32_total_energy_summed_in_float64():
    """A float32 model's total over 3,000 atoms (-1.4e5 eV with the shipped potential's
    reference energies) is summed in float64 from the per-atom energies, so it is off the
    float64 model's by at most what storing each per-atom energy (about -45 eV) in float32
    costs: half a float32 ulp per atom, which on a grid of identical waters adds up rather
    than averaging out (measured 2.5e-3 eV against a bound of 5.7e-3 with the potential
    retrained 2026-12-05). A float32 running sum would be off by far more (the model's own
    float32 total was 1.03 eV off here, a float32 sum of the float32 energies 1.5e-2)."""
    atoms = water_grid(10)
    calc32 = GETCalculator()
    e32 = calc32.get_potential_energy(atoms)
    e64 = GETCalculator(dtype=torch.float64).get_potential_energy(atoms)
    assert abs(e64) > 1e5
    per_atom = np.abs(np.asarray(calc32.results["energies"], dtype=np.float32))
    bound = len(atoms) * float(np.spacing(per_atom.max())) / 2
    assert abs(e32 - e64) < bound, (e32 - e64, bound)


@pytest.mark.slow
def test_nve_velocity_verlet_10ps(model_file):
    calc = GETCalculator(model_file, dtype=torch.float64)
    check_nve(*run_nve_ase(calc, 20000, record_every=20), 9, "ASE VelocityVerlet 10 ps")
