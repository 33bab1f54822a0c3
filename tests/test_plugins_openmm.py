"""OpenMM forces (get_md.plugins.openmm): agreement with ASE, ML/MM subsets, periodic boxes,
serialisation, NVE, the TorchForce wrapper and the openmm-ml potentials."""

from __future__ import annotations

import copy
import importlib.util
import io
import time

import numpy as np
import pytest
import torch

openmm = pytest.importorskip("openmm")
from get_md.plugins.ase import GETCalculator  # noqa: E402
from get_md.plugins.openmm import (  # noqa: E402
    GeoMFormerPotentialImplFactory,
    GETPotentialImplFactory,
    add_force,
    create_force,
    have_openmmtorch,
    torchforce_module,
)
from openmm import app, unit  # noqa: E402

from get_md import export  # noqa: E402
from get_md.models import build_model  # noqa: E402
from get_md.units import EV_PER_A_TO_KJ_PER_MOL_NM, EV_TO_KJ_PER_MOL  # noqa: E402

try:
    from tests.plugin_helpers import (
        NVE_MAX_DEVIATION_REAL,
        TINY_GET,
        Tether,
        check_nve,
        ethanol,
        min_pair_distance,
        openmm_topology,
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
        openmm_topology,
        periodic_ethanol,
        tiny_geomformer,
        tiny_get,
    )

HAVE_OPENMMTORCH = have_openmmtorch()
NO_OPENMMTORCH = (
    "openmmtorch does not import here (no openmm-torch build for this torch); "
    "the TorchForce wrapper module is still tested directly"
)
HAVE_OPENMMML = importlib.util.find_spec("openmmml") is not None


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny_get.pt"
    export.save(tiny_get(), path, {"elements": ["H", "C", "N", "O"]})
    return path


@pytest.fixture(scope="module")
def ase_calc(model_file):
    return GETCalculator(model_file, dtype=torch.float64)


def reference_platform():
    return openmm.Platform.getPlatformByName("Reference")


def system_for(masses, box_nm=None):
    system = openmm.System()
    for m in masses:
        system.addParticle(float(m))
    if box_nm is not None:
        system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*row) for row in np.asarray(box_nm)])
    return system


def energy_forces(system, positions_nm, groups=-1, box_nm=None):
    """Potential energy (kJ/mol) and forces (kJ/mol/nm) of ``system`` at ``positions_nm``."""
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), reference_platform())
    if box_nm is not None:
        ctx.setPeriodicBoxVectors(*[openmm.Vec3(*row) for row in np.asarray(box_nm)])
    ctx.setPositions(np.asarray(positions_nm))
    state = ctx.getState(getEnergy=True, getForces=True, groups=groups)
    e = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    f = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return e, np.asarray(f)


def assert_matches_ase(e_kj, f_kj, e_ev, f_ev, rtol=1e-10):
    assert e_kj / EV_TO_KJ_PER_MOL == pytest.approx(e_ev, rel=rtol, abs=1e-10)
    atol = 1e-10 + rtol * float(np.abs(f_ev).max())
    np.testing.assert_allclose(f_kj / EV_PER_A_TO_KJ_PER_MOL_NM, f_ev, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- agreement
def test_unit_constants():
    assert EV_TO_KJ_PER_MOL == pytest.approx(unit.AVOGADRO_CONSTANT_NA.value_in_unit(unit.mole**-1)
                                             * 1.602176634e-19 / 1000, rel=1e-9)
    assert EV_PER_A_TO_KJ_PER_MOL_NM == pytest.approx(10 * EV_TO_KJ_PER_MOL)


def test_pythonforce_matches_ase(model_file, ase_calc):
    atoms = ethanol()
    atoms.calc = ase_calc
    system = system_for(atoms.get_masses())
    force = add_force(system, model_file, openmm_topology(atoms), backend="pythonforce",
                      dtype=torch.float64, forceGroup=3)
    assert isinstance(force, openmm.PythonForce)
    assert force.getForceGroup() == 3 and force.getName() == "get_md get"
    assert not force.usesPeriodicBoundaryConditions()
    e, f = energy_forces(system, atoms.positions / 10)
    assert_matches_ase(e, f, atoms.get_potential_energy(), atoms.get_forces())
    assert np.abs(f).max() > 1.0
    # atomic numbers instead of a topology; float32 agrees to float32 accuracy
    system32 = system_for(atoms.get_masses())
    add_force(system32, model_file, atoms.numbers.tolist())
    e32, f32 = energy_forces(system32, atoms.positions / 10)
    assert_matches_ase(e32, f32, atoms.get_potential_energy(), atoms.get_forces(), rtol=1e-4)


def test_ml_mm_subset(model_file, ase_calc):
    mol = ethanol()
    mol.calc = ase_calc
    from ase import Atoms

    water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    water.positions += [6.0, 0.0, 0.0]  # within 4 Å cutoff of ethanol: it must be ignored
    # system order: water O, ethanol (9 atoms), water H H
    numbers = [8, *mol.numbers.tolist(), 1, 1]
    positions = np.vstack([water.positions[:1], mol.positions, water.positions[1:]])
    masses = [16.0, *mol.get_masses().tolist(), 1.008, 1.008]
    ml = list(range(1, 10))
    system = system_for(masses)
    force = add_force(system, model_file, numbers, atoms=ml, backend="pythonforce", dtype="float64")
    assert list(force.getParticles()) == ml
    e, f = energy_forces(system, positions / 10)
    assert_matches_ase(e, f[1:10], mol.get_potential_energy(), mol.get_forces())
    assert np.all(f[[0, 10, 11]] == 0.0), "atoms outside the subset get no force"
    # TorchForce wrapper: all positions in, forces scattered back to the subset
    from get_md.plugins.openmm import _graph_template

    from get_md.runtime import load as load_potential

    lm = load_potential(model_file, dtype="float64")
    graph = _graph_template(None, np.array(numbers), np.array(ml), "atoms", lm)
    module = torchforce_module(lm, graph, np.array(ml), len(numbers), periodic=False)
    e_t, f_t = module(torch.tensor(positions / 10))
    assert float(e_t) == pytest.approx(e, rel=1e-12)
    np.testing.assert_allclose(f_t.numpy(), f, rtol=1e-10, atol=1e-10)


def test_periodic_box_matches_ase(model_file, ase_calc):
    atoms = periodic_ethanol()
    atoms.calc = ase_calc
    box_nm = atoms.cell.array / 10
    top = openmm_topology(atoms, box_nm=box_nm)
    system = system_for(atoms.get_masses(), box_nm)
    force = add_force(system, model_file, top, dtype="float64", backend="pythonforce")
    assert force.usesPeriodicBoundaryConditions()
    # shift some atoms by lattice vectors: same periodic structure
    pos = atoms.positions.copy()
    pos[2] += atoms.cell.array[0] - atoms.cell.array[2]
    e, f = energy_forces(system, pos / 10, box_nm=box_nm)
    e_free = ethanol()
    e_free.calc = ase_calc
    assert abs(atoms.get_potential_energy() - e_free.get_potential_energy()) > 1e-3, "images interact"
    assert_matches_ase(e, f, atoms.get_potential_energy(), atoms.get_forces(), rtol=1e-9)
    # the TorchForce wrapper with box vectors
    from get_md.plugins.openmm import _graph_template

    from get_md.runtime import load as load_potential

    lm = load_potential(model_file, dtype="float64")
    module = torchforce_module(lm, _graph_template(top, atoms.numbers, None, "atoms", lm), None, 9, True)
    e_t, f_t = module(torch.tensor(pos / 10), torch.tensor(box_nm))
    assert float(e_t) == pytest.approx(e, rel=1e-12)
    np.testing.assert_allclose(f_t.numpy(), f, rtol=1e-10, atol=1e-10)


def test_torchforce_module_is_one_graph_under_the_plain_executor(model_file):
    """The TorchForce wrapper holds no method or function calls (TorchForce runs a copy
    whose submodule types lack their methods; the plain executor does not inline), also
    when the model already ran with the plain executor and a second wrapper is built, and
    it gives the same energy as the model run both ways."""
    from get_md.plugins.openmm import _graph_template

    from get_md.perf import plain_executor, restore_executor, use_plain_executor
    from get_md.runtime import load as load_potential

    atoms = ethanol()
    lm = load_potential(model_file, dtype="float64")
    graph = _graph_template(None, atoms.numbers, None, "atoms", lm)
    pos = torch.tensor(atoms.positions / 10)
    energies = []
    previous = use_plain_executor()
    try:
        for _ in range(2):
            lm.run(list(graph.inputs()))  # the model's own graphs cached by the plain executor
            module = torchforce_module(lm, graph, None, len(atoms), periodic=False)
            calls = module.graph.findAllNodes("prim::CallMethod") + module.graph.findAllNodes("prim::CallFunction")
            assert calls == []
            energies.append(float(module(pos)[0]))
    finally:
        restore_executor(previous)
    with plain_executor():
        energies.append(float(module(pos)[0]))
    energies.append(float(module(pos)[0]))  # default executor
    assert energies == pytest.approx([energies[0]] * 4, rel=1e-12)


def test_serialisation_and_deepcopy(model_file):
    """PythonForce pickles its potential (XmlSerializer and deepcopy). Not run for
    TorchForce: with the PyPI openmmtorch 1.5 wheel and OpenMM 8.6.1, deserialising any
    System holding a TorchForce (even a one-line module) segfaults in openmmtorch's
    serialization proxy (docs/plugins.md, "openmm-torch with a CPU-only torch")."""
    atoms = ethanol()
    system = system_for(atoms.get_masses())
    add_force(system, model_file, atoms.numbers.tolist(), dtype="float64", backend="pythonforce")
    e0, f0 = energy_forces(system, atoms.positions / 10)
    for other in (copy.deepcopy(system),
                  openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))):
        e, f = energy_forces(other, atoms.positions / 10)
        assert e == e0
        np.testing.assert_array_equal(f, f0)
    # an eager (not scripted) module pickles too
    eager = system_for(atoms.get_masses())
    add_force(eager, tiny_get(), atoms.numbers.tolist(), dtype="float64", backend="pythonforce")
    e1, _ = energy_forces(copy.deepcopy(eager), atoms.positions / 10)
    assert e1 == pytest.approx(e0, rel=1e-12)


def test_blocks_from_residues(model_file):
    top, positions = tripeptide()
    system = system_for([a.element.mass.value_in_unit(unit.dalton) for a in top.atoms()])
    force = add_force(system, model_file, top, dtype="float64", blocks="residues")
    assert force.getName() == "get_md get"
    e_res, _ = energy_forces(system, positions)
    system2 = system_for([a.element.mass.value_in_unit(unit.dalton) for a in top.atoms()])
    add_force(system2, model_file, top, dtype="float64")
    e_atoms, _ = energy_forces(system2, positions)
    assert np.isfinite(e_res) and e_res != pytest.approx(e_atoms)


def test_errors(model_file, tmp_path):
    atoms = ethanol()
    with pytest.raises(ValueError, match="more than once"):
        create_force(model_file, atoms.numbers.tolist(), atoms=[0, 1, 1])
    with pytest.raises(ValueError, match="outside"):
        create_force(model_file, atoms.numbers.tolist(), atoms=[0, 99])
    with pytest.raises(ValueError, match="no element"):
        create_force(model_file, [6, 1, 0])
    with pytest.raises(ValueError, match="Si not supported"):
        create_force(model_file, [14, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="backend"):
        create_force(model_file, [6, 1], backend="cuda")
    with pytest.raises(ValueError, match="particles"):
        add_force(system_for([1.0] * 3), model_file, atoms.numbers.tolist())
    with pytest.raises(ValueError, match="residues"):
        create_force(model_file, [6, 1], blocks="residues")
    torch.manual_seed(0)
    score = tmp_path / "score.pt"
    export.save(build_model("get", mode="score", task="score", **TINY_GET), score)
    with pytest.raises(ValueError, match="energy"):
        create_force(score, [6, 1])


def test_fractional_masks_and_wrong_types_are_errors_not_truncated(model_file):
    """atoms=[0.5, 1.2] had become [0, 1] and atomic numbers 6.7 had become carbon, without
    a word; a boolean mask had been called a duplicate; forceGroup 40, charge "abc" and
    add_force(None, ...) had been bare OpenMM / Python errors; float16 had run (energy off)."""
    z = ethanol().numbers.tolist()
    with pytest.raises(ValueError, match="atoms= must hold whole particle indices, got 0.5"):
        create_force(model_file, z, atoms=[0.5, 1.2])
    with pytest.raises(ValueError, match=r"atoms= is a mask of 9 booleans; .*flatnonzero"):
        create_force(model_file, z, atoms=[True] * 9)
    with pytest.raises(ValueError, match=r"flat list of particle indices, got an array of shape \(2, 2\)"):
        create_force(model_file, z, atoms=[[0, 1], [2, 3]])
    with pytest.raises(ValueError, match="atomic number of particle 0 is 6.7, not a whole number"):
        create_force(model_file, [6.7, 1.0])
    with pytest.raises(TypeError, match=r"got list \(element symbols\?"):
        create_force(model_file, ["C", "H"])
    with pytest.raises(TypeError, match=r"got Atoms \(pass atoms.numbers\)"):
        create_force(model_file, ethanol())
    with pytest.raises(ValueError, match="forceGroup must be a whole number from 0 to 31"):
        create_force(model_file, z, forceGroup=40)
    with pytest.raises(ValueError, match=r"periodic must be True, False or None .*got 'no'"):
        create_force(model_file, z, periodic="no")
    for charge in ("abc", float("nan")):
        with pytest.raises(ValueError, match="create_force: charge must be a (finite )?number"):
            create_force(model_file, z, charge=charge)
    with pytest.raises(ValueError, match="create_force: dtype float16 is not supported"):
        create_force(model_file, z, dtype="float16")
    with pytest.raises(TypeError, match="add_force: system must be an openmm.System, got NoneType"):
        add_force(None, model_file, z)


def test_positions_in_angstrom_given_as_nm_are_warned_about_once(model_file, caplog):
    """Å values passed to OpenMM as nm: every atom isolated, a plausible energy (9832 ->
    10078 kJ/mol for the tiny model) and zero forces, without a word before."""
    atoms = ethanol()
    system = system_for(atoms.get_masses())
    add_force(system, model_file, atoms.numbers.tolist(), backend="pythonforce", dtype="float64")
    with caplog.at_level("WARNING", logger="get_md.plugins.openmm"):
        energy_forces(system, atoms.positions / 10)
        assert "Å read as nm" not in caplog.text
    system = system_for(atoms.get_masses())
    add_force(system, model_file, atoms.numbers.tolist(), backend="pythonforce", dtype="float64")
    with caplog.at_level("WARNING", logger="get_md.plugins.openmm"):
        energy_forces(system, atoms.positions)
        energy_forces(system, atoms.positions * 1.01)
    assert caplog.text.count("coordinates in Å read as nm (x10 too large)") == 1
    assert "OpenMM takes positions in nm" in caplog.text


def test_torchforce_module_refuses_non_finite_positions_and_thin_boxes(model_file):
    """The TorchForce wrapper had given a finite energy for a NaN position (every atom then
    isolated) and a plausible one for a 0.05 nm box, which the PythonForce refuses."""
    from get_md.plugins.openmm import _graph_template

    from get_md.runtime import load as load_potential

    atoms = ethanol()
    lm = load_potential(model_file, dtype="float64")
    graph = _graph_template(None, atoms.numbers, None, "atoms", lm)
    free = torchforce_module(lm, graph, None, len(atoms), periodic=False)
    boxed = torchforce_module(lm, graph, None, len(atoms), periodic=True)
    pos = torch.tensor(atoms.positions / 10)
    assert np.isfinite(float(free(pos)[0]))
    assert np.isfinite(float(boxed(pos, torch.eye(3, dtype=torch.float64) * 2.0)[0]))
    bad = pos.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(Exception, match="get_md TorchForce: a position of a modelled atom is NaN or infinite"):
        free(bad)
    with pytest.raises(Exception, match="get_md TorchForce: periodic box is thinner than 1 Å"):
        boxed(pos, torch.eye(3, dtype=torch.float64) * 0.05)
    with pytest.raises(Exception, match="get_md TorchForce: periodic force called without box vectors"):
        boxed(pos)


def test_torchforce_module_checks_the_geometry_of_its_first_call(model_file):
    """The PythonForce's overlap and units checks, in the TorchForce wrapper on the first
    call of each copy: overlapping atoms had given a finite energy, Å given as nm a
    plausible energy with zero forces, without a word."""
    from get_md.plugins.openmm import _graph_template

    from get_md.runtime import load as load_potential

    atoms = ethanol()
    lm = load_potential(model_file, dtype="float64")
    pos = torch.tensor(atoms.positions / 10)
    # ML/MM: the message gives OpenMM's particle indices, not the modelled atoms' own
    indices = np.arange(len(atoms)) + 3
    graph = _graph_template(None, atoms.numbers, None, "atoms", lm)
    module = torchforce_module(lm, graph, indices, len(atoms) + 3, periodic=False)
    full = torch.zeros(len(atoms) + 3, 3, dtype=torch.float64)
    full[3:] = pos
    overlapping = full.clone()
    overlapping[6] = overlapping[3] + 0.001
    with pytest.raises(Exception, match=r"particles 3 and 6 \(atomic numbers 6 and 1\) are 0.017 Å apart"):
        module(overlapping)
    assert not module.checked
    assert np.isfinite(float(module(full)[0]))
    assert module.checked  # later calls skip the O(N^2) check
    module = torchforce_module(lm, graph, None, len(atoms), periodic=False)
    with pytest.warns(UserWarning, match="10.9 Å from their nearest neighbour.*OpenMM takes positions in nm"):
        module(pos * 10)


def test_pythonforce_refuses_overlaps_given_but_lets_the_minimiser_probe(caplog):
    """Overlapping atoms are an error on a PythonForce's first call (a structure given that
    way) and a warning later: OpenMM's minimiser had failed on an RDKit conformer of
    chloroacetic acid because its line search tried a C-H distance of 0.28 Å."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("ClCC(=O)O"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    pos_nm = mol.GetConformer().GetPositions() / 10
    system = openmm.System()
    for z in numbers:
        system.addParticle(app.Element.getByAtomicNumber(z).mass)
    system.addForce(create_force("get-xtb-organic", numbers, backend="pythonforce", dtype="float64"))

    def context(positions):
        c = openmm.Context(copy.deepcopy(system), openmm.VerletIntegrator(0.0005), reference_platform())
        c.setPositions(positions)
        return c

    overlapping = pos_nm.copy()
    overlapping[5] = overlapping[1] + 0.002
    with pytest.raises(openmm.OpenMMException, match=r"atom 2 \(C\) and atom 6 \(H\) are 0\.0\d+ Å apart"):
        context(overlapping).getState(getEnergy=True)
    c = context(pos_nm)
    e0 = c.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    with caplog.at_level("WARNING", logger="get_md.plugins.openmm"):
        openmm.LocalEnergyMinimizer.minimize(c, 1.0, 500)
    state = c.getState(getEnergy=True, getPositions=True)
    x = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    assert state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) < e0 - 10.0
    assert min_pair_distance(x) > 0.9  # a sane minimum, not a collapsed one
    assert caplog.text.count("after the first call") <= 1


@pytest.mark.skipif(not HAVE_OPENMMML, reason="openmm-ml (openmmml) is not installed")
def test_openmmml_system_of_another_topology_is_refused(model_file):
    """A System built from the solvated topology, with the unsolvated one passed to
    createMixedSystem, had been accepted and gave a NaN energy."""
    from openmmml import MLPotential

    top, positions = tripeptide()
    ff = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    modeller = app.Modeller(top, positions * unit.nanometer)
    modeller.addSolvent(ff, padding=0.3 * unit.nanometer)
    solvated = ff.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff)
    ml_atoms = [a.index for a in list(top.residues())[1].atoms()]
    potential = MLPotential("get", modelPath=str(model_file))
    with pytest.raises(ValueError, match=r"the System has \d+ particles but its topology 33 atoms"):
        potential.createMixedSystem(top, solvated, ml_atoms, backend="pythonforce")
    mixed = potential.createMixedSystem(modeller.topology, solvated, ml_atoms, backend="pythonforce")
    assert mixed.getNumParticles() == solvated.getNumParticles() + 2


@pytest.mark.skipif(not HAVE_OPENMMML, reason="openmm-ml (openmmml) is not installed")
def test_openmmml_interpolation_with_a_system_of_another_topology_is_refused(model_file):
    """With interpolate=True openmm-ml hands addForces an empty System: a System of 48
    particles with a topology of 33 atoms (and the reverse) had been built and run without a
    word, the link atoms and modelled atoms taken from the wrong particles."""
    from openmmml import MLPotential

    top, positions = tripeptide()
    ff = app.ForceField("amber14-all.xml", "amber14/tip3p.xml")
    modeller = app.Modeller(top, positions * unit.nanometer)
    modeller.addSolvent(ff, numAdded=5)
    solvated = ff.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff)
    peptide = ff.createSystem(top, nonbondedMethod=app.NoCutoff)
    ml_atoms = [a.index for a in list(top.residues())[1].atoms()]
    potential = MLPotential("get", modelPath=str(model_file))
    for topology, system, sizes in ((top, solvated, (48, 33)), (modeller.topology, peptide, (33, 48))):
        with pytest.raises(ValueError, match=rf"MLPotential\('get'\): the System has {sizes[0]} particles but its "
                                             rf"topology {sizes[1]} atoms; build the System from the topology"):
            potential.createMixedSystem(topology, system, ml_atoms, interpolate=True, backend="pythonforce")
    mixed = potential.createMixedSystem(top, peptide, ml_atoms, interpolate=True, backend="pythonforce")
    assert mixed.getNumParticles() == peptide.getNumParticles() + 2


@pytest.mark.skipif(HAVE_OPENMMTORCH, reason="openmmtorch is available")
def test_torchforce_backend_unavailable_message(model_file):
    with pytest.raises(ValueError, match="openmm-torch.*pythonforce"):
        create_force(model_file, [6, 1, 1], backend="torchforce")
    assert isinstance(create_force(model_file, [6, 1, 1]), openmm.PythonForce), "auto -> PythonForce"


def test_auto_backend_is_torchforce_only_where_it_copies(model_file):
    """``backend="auto"`` picks TorchForce only where a System holding one can be copied
    (the probe runs in a subprocess, since failing builds segfault); the System it
    builds then deep-copies with the same energy."""
    from get_md.plugins.openmm import torchforce_copies

    copies = torchforce_copies()
    if not HAVE_OPENMMTORCH:
        assert copies is False
    atoms = ethanol()
    system = system_for(atoms.get_masses())
    force = add_force(system, model_file, atoms.numbers.tolist(), dtype="float64")
    assert isinstance(force, openmm.PythonForce) != copies
    e0, _ = energy_forces(system, atoms.positions / 10)
    e1, _ = energy_forces(copy.deepcopy(system), atoms.positions / 10)
    assert e1 == pytest.approx(e0, rel=1e-12)


def test_auto_backend_dispatches_on_the_copy_probe(model_file, monkeypatch):
    """``backend="auto"`` builds with the TorchForce backend (plugins/openmm_torchforce.py)
    exactly when :func:`torchforce_copies` says so; checked without openmmtorch by putting a
    stand-in for the TorchForce builder and the probe in ``get_md.plugins.openmm``."""
    import get_md.plugins.openmm as om

    built = []

    def fake_torchforce(lm, graph, indices, n_total, periodic, charge, plain_executor):
        built.append((n_total, periodic))
        return openmm.CustomExternalForce("0")

    monkeypatch.setattr(om, "torchforce", fake_torchforce)
    monkeypatch.setattr(om, "torchforce_copies", lambda: True)
    force = create_force(model_file, [6, 1, 1], forceGroup=3)
    assert built == [(3, False)] and isinstance(force, openmm.CustomExternalForce)
    assert force.getForceGroup() == 3 and force.getName() == "get_md get"
    monkeypatch.setattr(om, "torchforce_copies", lambda: False)
    assert isinstance(create_force(model_file, [6, 1, 1]), openmm.PythonForce)
    assert len(built) == 1


@pytest.mark.skipif(not HAVE_OPENMMTORCH, reason=NO_OPENMMTORCH)
def test_torchforce_matches_pythonforce(model_file):  # pragma: no cover - needs openmmtorch
    import openmmtorch

    from get_md.perf import restore_executor

    for atoms, box in ((ethanol(), None), (periodic_ethanol(), periodic_ethanol().cell.array / 10)):
        top = openmm_topology(atoms, box_nm=box)
        results = []
        for backend in ("torchforce", "pythonforce"):
            system = system_for(atoms.get_masses(), box)
            force = add_force(system, model_file, top, backend=backend, dtype="float64")
            if backend == "torchforce":
                assert isinstance(force, openmmtorch.TorchForce) and force.getOutputsForces()
                # OpenMM runs the module on this thread: create_force gave it the plain executor
                plain = not torch._C._get_graph_executor_optimize()
            try:
                results.append(energy_forces(system, atoms.positions / 10, box_nm=box))
            finally:
                restore_executor(True)
            assert backend != "torchforce" or plain
        assert results[0][0] == pytest.approx(results[1][0], rel=1e-10)
        np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-8, atol=1e-8)


# ---------------------------------------------------------------------------------- NVE
def run_nve_openmm(model_file, n_steps: int, temperature_K: float = 300.0, record_every: int = 10,
                   tether: bool = True):
    """NVE VerletIntegrator (0.5 fs, float64, Reference platform) on ethanol, same start as the
    ASE run; the model's force is in group 1, the tether (unless ``tether`` is False) in group 0."""
    from ase import units
    from ase.md.velocitydistribution import Stationary, ZeroRotation

    atoms = ethanol()
    masses = atoms.get_masses()
    rng = np.random.default_rng(0)
    sigma = np.sqrt(temperature_K * units.kB / masses)[:, None]
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * sigma * masses[:, None])
    Stationary(atoms)
    ZeroRotation(atoms)
    v_nm_ps = atoms.get_velocities() * units.fs * 100.0  # Å/(ASE time) -> Å/fs -> nm/ps
    system = system_for(masses)
    add_force(system, model_file, atoms.numbers.tolist(), dtype="float64", forceGroup=1)
    if tether:
        system.addForce(Tether(atoms.positions).openmm_force())
    integrator = openmm.VerletIntegrator(0.0005)
    ctx = openmm.Context(system, integrator, reference_platform())
    ctx.setPositions(atoms.positions / 10)
    ctx.setVelocities(v_nm_ps)
    times, etot, epot, emodel, dmin = [], [], [], [], []
    kj = unit.kilojoule_per_mole
    for k in range(n_steps // record_every + 1):
        if k:
            integrator.step(record_every)
        s = ctx.getState(getEnergy=True, getPositions=True)
        ep = s.getPotentialEnergy().value_in_unit(kj) / EV_TO_KJ_PER_MOL
        ek = s.getKineticEnergy().value_in_unit(kj) / EV_TO_KJ_PER_MOL
        tether = ctx.getState(getEnergy=True, groups={0}).getPotentialEnergy().value_in_unit(kj)
        times.append(k * record_every * 0.5e-3)
        etot.append(ep + ek)
        epot.append(ep)
        emodel.append(ep - tether / EV_TO_KJ_PER_MOL)
        dmin.append(min_pair_distance(s.getPositions(asNumpy=True).value_in_unit(unit.angstrom)))
    return np.array(times), np.array(etot), np.array(epot), np.array(emodel), min(dmin)


def test_nve_openmm_verlet(model_file):
    """1 ps NVE in OpenMM (PythonForce, float64): same bounds as the ASE run."""
    t0 = time.perf_counter()
    result = run_nve_openmm(model_file, 2000)
    print(f"OpenMM NVE 2000 steps: {time.perf_counter() - t0:.1f} s")
    check_nve(*result, 9, "OpenMM VerletIntegrator 1 ps")


def test_nve_openmm_verlet_shipped_potential():
    """1 ps NVE of free ethanol with the shipped default potential (PythonForce, float64)."""
    from get_md import zoo

    times, etot, epot, emodel, dmin = run_nve_openmm(zoo.path(zoo.DEFAULT_POTENTIAL), 2000, tether=False)
    assert np.ptp(epot) > 0.05 and dmin > 0.8
    check_nve(times, etot, epot, emodel, dmin, 9, "OpenMM VerletIntegrator 1 ps, shipped potential",
              max_deviation=NVE_MAX_DEVIATION_REAL)


@pytest.mark.slow
def test_nve_openmm_verlet_10ps(model_file):
    check_nve(*run_nve_openmm(model_file, 20000, record_every=20), 9, "OpenMM VerletIntegrator 10 ps")


# ------------------------------------------------------------------------------ openmm-ml
def tripeptide():
    """Ala-Ala-Ala (zwitterion, amber14 hydrogens) built offline: RDKit + OpenMM Modeller."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSequence("AAA"))
    assert AllChem.EmbedMolecule(mol, randomSeed=7) == 0
    pdb = app.PDBFile(io.StringIO(Chem.MolToPDBBlock(Chem.RemoveHs(mol))))
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.addHydrogens(app.ForceField("amber14-all.xml"), pH=7.0)
    pos = np.asarray(modeller.getPositions().value_in_unit(unit.nanometer))
    return modeller.topology, pos


def _ml_energy_check(system, topology_atoms_positions, ml_atoms, ase_calc, group):
    """Energy of force group ``group`` equals the ASE energy of the ML atoms (incl. link caps)."""
    from ase import Atoms

    positions, numbers = topology_atoms_positions
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), reference_platform())
    ctx.setPositions(positions)
    ctx.computeVirtualSites()
    state = ctx.getState(getEnergy=True, getPositions=True, groups={group})
    pos = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    atoms = Atoms(numbers=[numbers[i] for i in ml_atoms], positions=pos[ml_atoms])
    atoms.calc = ase_calc
    e = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    assert e / EV_TO_KJ_PER_MOL == pytest.approx(atoms.get_potential_energy(), rel=1e-9)
    return ctx


def test_openmmml_factory_shim(model_file, ase_calc):
    """Drive the factory exactly as openmm-ml does (works without openmm-ml installed)."""
    atoms = ethanol()
    atoms.calc = ase_calc
    top = openmm_topology(atoms)
    impl = GETPotentialImplFactory().createImpl("get", modelPath=str(model_file))
    assert impl.getMLLongRange() is False
    # openmm-ml's own embeddings, routed through createMixedSystem's size check; none without it
    embeddings = impl.getSupportedEmbeddings()
    assert "mechanical" in embeddings if HAVE_OPENMMML else embeddings == []
    system = system_for(atoms.get_masses())
    impl.addForces(top, system, None, 2, precision="double", unknownOption=1)
    assert system.getForce(0).getForceGroup() == 2
    e, f = energy_forces(system, atoms.positions / 10)
    assert_matches_ase(e, f, atoms.get_potential_energy(), atoms.get_forces(), rtol=1e-9)
    with pytest.raises(ValueError, match="get model.*MLPotential\\('get'"):
        GeoMFormerPotentialImplFactory().createImpl("geomformer", modelPath=str(model_file))


def test_entry_points_registered():
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="openmmml.potentials")
           if ep.value.startswith("get_md.")}
    if not eps:
        pytest.skip("get_md is not installed with its entry points (pip install -e .)")
    assert eps == {"get": "get_md.plugins.openmm:GETPotentialImplFactory",
                   "geomformer": "get_md.plugins.openmm:GeoMFormerPotentialImplFactory"}


@pytest.mark.skipif(not HAVE_OPENMMML, reason="openmm-ml (openmmml) is not installed")
def test_openmmml_create_system(model_file, ase_calc, tmp_path):
    from openmmml import MLPotential

    atoms = ethanol()
    atoms.calc = ase_calc
    potential = MLPotential("get", modelPath=str(model_file))
    system = potential.createSystem(openmm_topology(atoms), precision="double")
    assert any(isinstance(f, openmm.CMMotionRemover) for f in system.getForces())
    e, f = energy_forces(system, atoms.positions / 10)
    assert_matches_ase(e, f, atoms.get_potential_energy(), atoms.get_forces(), rtol=1e-9)
    gpath = tmp_path / "geomformer.pt"
    export.save(tiny_geomformer(), gpath)
    gsystem = MLPotential("geomformer", modelPath=str(gpath)).createSystem(openmm_topology(atoms))
    e_g, _ = energy_forces(gsystem, atoms.positions / 10)
    assert np.isfinite(e_g)


@pytest.mark.skipif(not HAVE_OPENMMML, reason="openmm-ml (openmmml) is not installed")
def test_openmmml_mixed_system(model_file, ase_calc):
    from openmmml import MLPotential

    top, positions = tripeptide()
    ff = app.ForceField("amber14-all.xml")
    mm_system = ff.createSystem(top, nonbondedMethod=app.NoCutoff)
    residues = list(top.residues())
    ml_atoms = [a.index for a in residues[1].atoms()]  # middle residue: two link bonds
    numbers = [a.element.atomic_number for a in top.atoms()]
    potential = MLPotential("get", modelPath=str(model_file))
    mixed = potential.createMixedSystem(top, mm_system, ml_atoms, forceGroup=1, precision="double")
    n_caps = mixed.getNumParticles() - top.getNumAtoms()
    assert n_caps == 2, "two hydrogen link atoms cap the peptide bonds"
    ml_with_caps = ml_atoms + list(range(top.getNumAtoms(), mixed.getNumParticles()))
    all_pos = np.vstack([positions, np.zeros((n_caps, 3))])
    ctx = _ml_energy_check(mixed, (all_pos, numbers + [1] * n_caps), ml_with_caps, ase_calc, 1)
    ctx.getIntegrator().step(5)
    assert np.isfinite(ctx.getState(getEnergy=True).getPotentialEnergy()._value)
    # interpolation: lambda_interpolate = 0 gives the MM energy
    interp = potential.createMixedSystem(top, mm_system, ml_atoms, interpolate=True, precision="double")
    c = openmm.Context(interp, openmm.VerletIntegrator(0.001), reference_platform())
    c.setPositions(np.vstack([positions, np.zeros((n_caps, 3))]))
    c.computeVirtualSites()
    c.setParameter("lambda_interpolate", 0.0)
    e_mm, _ = energy_forces(mm_system, positions)
    assert c.getState(getEnergy=True).getPotentialEnergy().value_in_unit(
        unit.kilojoule_per_mole) == pytest.approx(e_mm, rel=1e-8)
