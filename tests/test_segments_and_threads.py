"""Issue 14 at the model / ASE level: segment labels, shared calculators in threads,
float32 far from the origin, atoms with no neighbour within the cutoff.

Most checks run the SHIPPED potential (get-xtb-organic), since that is what users run.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from get_md.plugins.ase import GETCalculator

from get_md import export
from get_md.graph import MolecularGraph

DATA = Path(__file__).parent / "data"
POTENTIAL = "get-xtb-organic"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def shipped():
    """The shipped potential file, loaded as users load it (float32)."""
    return export.load_model(POTENTIAL)


@pytest.fixture(scope="module")
def calc():
    return GETCalculator(POTENTIAL)


# --------------------------------------------------------------------- segments
@pytest.fixture(scope="module")
def rescoring_complex():
    """Pocket (atoms within 3.5 Å of a docked ligand) + ligand, built as rescore-poses
    builds it for a potential: ``make_complex`` (ligand in segment 1), one block per atom."""
    from get_md.build import from_pdb, from_sdf, make_complex, select_pocket

    receptor = from_pdb(DATA / "prolif" / "rec.pdb")
    ligand = from_sdf(DATA / "prolif" / "vina_output.sdf")[0]
    cplx = make_complex(select_pocket(receptor, ligand.positions, 3.5), ligand).as_atom_blocks()
    assert cplx.segment_ids.unique().tolist() == [0, 1]
    return cplx


def test_shipped_potential_energy_does_not_depend_on_segment_labels(shipped, rescoring_complex):
    """The potential was trained with every atom in segment 0: the same atoms with the
    ligand in segment 1 (rescoring) or in segment 0 (the ASE calculator) give one energy."""
    module, meta = shipped
    cplx = rescoring_complex
    flat = dataclasses.replace(cplx, segment_ids=torch.zeros_like(cplx.segment_ids))
    split = module(*cplx.inputs())
    one = module(*flat.inputs())
    e_split = float(split["energies"].detach().double().sum())
    e_one = float(one["energies"].detach().double().sum())
    assert abs(e_split - e_one) < 1e-4, f"segment labels moved the energy by {e_split - e_one:.4f} eV"
    np.testing.assert_allclose(split["forces"].detach().numpy(), one["forces"].detach().numpy(), atol=1e-4)
    assert meta["config"]["uses_segments"] is False  # the file says so


def test_calculator_and_rescoring_graph_agree(calc, rescoring_complex):
    """GETCalculator (every atom its own block, segment 0) and a graph_builder giving the
    rescoring graph (ligand in segment 1) give the same energy for the same atoms."""
    cplx = rescoring_complex
    atoms = Atoms(numbers=cplx.atomic_numbers.numpy(), positions=cplx.positions.double().numpy())
    atoms.calc = calc
    e_default = atoms.get_potential_energy()
    seg = GETCalculator(calc.potential, graph_builder=lambda a: cplx)
    e_segments = seg.get_potential_energy(atoms)
    assert e_segments == pytest.approx(e_default, abs=1e-4)


def test_calculator_warns_for_potentials_without_the_flag(rescoring_complex, caplog):
    """A GET potential that predates ``uses_segments`` (its code reads segment labels) and a
    graph_builder with several segments: the calculator says so and how to re-script."""
    from get_md.models import build_model

    class Old(torch.nn.Module):  # stands for a model file scripted before the flag
        family, task = "get", "energy"

        def __init__(self):
            super().__init__()
            self.inner = build_model("get", d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, cutoff=4.0)

        def forward(self, *inputs):
            return self.inner(*inputs)

    cplx = rescoring_complex
    atoms = Atoms(numbers=cplx.atomic_numbers.numpy(), positions=cplx.positions.double().numpy())
    with caplog.at_level("WARNING", logger="get_md.plugins.ase"):
        GETCalculator(Old(), graph_builder=lambda a: cplx).get_potential_energy(atoms)
    assert "get-md export OLD.pt NEW.pt" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="get_md.plugins.ase"):
        GETCalculator(Old().inner, graph_builder=lambda a: cplx).get_potential_energy(atoms)
    assert "re-script" not in caplog.text.lower()


def test_score_models_keep_reading_segments():
    """Score models (affinity, trained with the ligand in segment 1) use segments by default;
    the shipped affinity model's config, which predates the flag, rebuilds that way."""
    from get_md.models import build_model

    meta = export.read_metadata(export.resolve_model_path("get-affinity"))
    config = {k: v for k, v in meta["config"].items() if k != "members"}
    assert "uses_segments" not in config or config["uses_segments"] is True
    assert build_model("get", **config).uses_segments is True
    assert build_model("get").uses_segments is False  # potential, energy
    assert build_model("get", uses_segments=True).uses_segments is True


# ---------------------------------------------------------------------- threads
def test_shared_calculator_is_thread_safe(calc):
    """Four threads on one calculator, each its own molecule: every energy and force array
    is that molecule's (serial results), over many repetitions."""
    names = ["H2O", "CH4", "CH3CH2OH", "C6H6"]
    rng = np.random.default_rng(0)
    mols = []
    for name in names:
        a = molecule(name)
        a.positions += rng.normal(scale=0.02, size=a.positions.shape)
        mols.append(a)
    serial = []
    for a in mols:
        a.calc = calc
        serial.append((a.get_potential_energy(), a.get_forces()))
    reps = 60
    errors: list[str] = []
    start = threading.Barrier(len(mols))

    def work(k: int) -> None:
        a = mols[k].copy()
        a.calc = calc
        e0, f0 = serial[k]
        start.wait()
        for r in range(reps):
            a.positions[0, 0] += 1e-3 if r % 2 == 0 else -1e-3  # a new geometry every call
            try:
                e = a.get_potential_energy()
                f = a.get_forces()
            except Exception as exc:  # another thread's state half-way: report, go on
                errors.append(f"{names[k]} rep {r}: {type(exc).__name__}: {exc}")
                continue
            if f.shape != f0.shape:
                errors.append(f"{names[k]} rep {r}: forces of shape {f.shape}, expected {f0.shape}")
            elif abs(e - e0) > 0.05 or np.abs(f - f0).max() > 0.5:
                errors.append(f"{names[k]} rep {r}: energy {e:.3f} eV, serial {e0:.3f} eV")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: a race shows up in a few calls
    try:
        threads = [threading.Thread(target=work, args=(k,)) for k in range(len(mols))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, f"{len(errors)} wrong results, e.g. {errors[:3]}"


# ---------------------------------------------------------------- far from origin
@pytest.mark.parametrize("shift", [1e6, 1e7])
def test_float32_far_from_origin(calc, shift):
    """Ethanol translated by 10^6 / 10^7 Å gives the energy and forces it has at the origin."""
    a = molecule("CH3CH2OH")
    a.calc = calc
    e0, f0 = a.get_potential_energy(), a.get_forces()
    b = a.copy()
    b.positions += np.array([shift, -0.5 * shift, 0.25 * shift])
    b.calc = calc
    assert b.get_potential_energy() == pytest.approx(e0, abs=1e-4)
    np.testing.assert_allclose(b.get_forces(), f0, atol=1e-4)


def test_float32_far_from_origin_periodic(calc):
    """A periodic water box translated by 10^6 Å: same energy, forces and stress."""
    a = molecule("H2O")
    a.set_cell([5.5, 6.0, 6.5])
    a.pbc = True
    a.center()
    a.calc = calc
    e0, f0, s0 = a.get_potential_energy(), a.get_forces(), a.get_stress()
    b = a.copy()
    b.positions += 1e6
    b.calc = calc
    assert b.get_potential_energy() == pytest.approx(e0, abs=1e-4)
    np.testing.assert_allclose(b.get_forces(), f0, atol=1e-4)
    np.testing.assert_allclose(b.get_stress(), s0, atol=1e-5)


def test_openmm_paths_far_from_origin(calc):
    """OpenMM: the PythonForce callback and the TorchForce module (float64 positions from
    OpenMM) centre before the cast to the model's float32 too."""
    pytest.importorskip("openmm")
    from get_md.plugins.openmm import GraphPotential, _graph_template, torchforce_module

    a = molecule("CH3CH2OH")
    lm = calc.potential
    graph = _graph_template(None, a.numbers, None, "atoms", lm)
    python_force = GraphPotential(lm, graph, periodic=False)
    torch_force = torchforce_module(lm, graph, None, len(a), periodic=False)
    x = a.positions / 10.0  # nm
    e0, f0 = python_force.evaluate(x)
    for shift_nm in (1e5, 1e6):  # 10^6, 10^7 Å
        e1, f1 = python_force.evaluate(x + shift_nm)
        assert e1 == pytest.approx(e0, abs=1e-2)  # kJ/mol (1e-4 eV ~ 0.01 kJ/mol)
        np.testing.assert_allclose(f1, f0, atol=1e-1)  # kJ/mol/nm (1e-4 eV/Å ~ 0.1)
        e_t, f_t = torch_force(torch.tensor(x + shift_nm, dtype=torch.float64))
        assert float(e_t) == pytest.approx(e0, abs=1e-2)
        np.testing.assert_allclose(f_t.numpy(), f0, atol=1e-1)


# ------------------------------------------------------------ isolated atoms
def test_isolated_atoms_shipped_potential(calc):
    """One atom, and two atoms 20 Å apart (beyond the 5 Å cutoff): no error, zero forces,
    and the energy of each atom is its isolated-atom energy (the limit of a neighbour
    leaving through the cutoff)."""
    single = {}
    for z in (6, 8):
        a = Atoms(numbers=[z], positions=[[1.0, 2.0, 3.0]])
        a.calc = calc
        single[z] = a.get_potential_energy()
        f = a.get_forces()
        assert f.shape == (1, 3) and np.all(f == 0.0)
        assert np.isfinite(single[z])
    pair = Atoms(numbers=[6, 8], positions=[[0.0, 0.0, 0.0], [20.0, 0.0, 0.0]])
    pair.calc = calc
    assert pair.get_potential_energy() == pytest.approx(single[6] + single[8], abs=1e-4)
    np.testing.assert_array_equal(pair.get_forces(), np.zeros((2, 3)))
    np.testing.assert_allclose(pair.get_potential_energies(), [single[6], single[8]], atol=1e-5)
    # continuity: just inside the cutoff the pair energy tends to the same limit
    near = Atoms(numbers=[6, 8], positions=[[0.0, 0.0, 0.0], [4.95, 0.0, 0.0]])
    near.calc = calc
    assert near.get_potential_energy() == pytest.approx(single[6] + single[8], abs=1e-4)


@pytest.mark.parametrize("family", ["get", "geomformer"])
def test_isolated_atoms_tiny_models(family):
    """Eager and TorchScript potentials: an atom without neighbours gives its isolated
    energy and a zero force, alone or beside a far atom."""
    from get_md.models import build_model

    torch.manual_seed(0)
    if family == "get":
        model = build_model("get", d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=2, d_edge=4,
                            cutoff=3.0)
    else:
        model = build_model("geomformer", d_model=16, n_layers=2, n_heads=2, n_rbf=8, cutoff=3.0,
                            mode="radius")
    model = model.double().eval()
    scripted = torch.jit.script(model)

    def energy(m, pos, z):
        g = MolecularGraph.from_atoms(torch.tensor(pos, dtype=torch.float64), torch.tensor(z))
        out = m(*g.inputs())
        return out["energies"].detach(), out["forces"].detach()

    for m in (model, scripted):
        e_c, f_c = energy(m, [[0.0, 0.0, 0.0]], [6])
        e_o, _ = energy(m, [[0.0, 0.0, 0.0]], [8])
        e, f = energy(m, [[0.0, 0.0, 0.0], [20.0, 0.0, 0.0]], [6, 8])
        assert torch.equal(f_c, torch.zeros(1, 3, dtype=torch.float64))
        assert torch.equal(f, torch.zeros(2, 3, dtype=torch.float64))
        torch.testing.assert_close(e, torch.cat([e_c, e_o]), rtol=0, atol=1e-12)
