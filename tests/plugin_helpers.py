"""Small models, structures and measures shared by the plugin tests (ASE, OpenMM).

The tiny GET potential has random weights plus a fixed perturbation (``noise`` x
N(0, 1) on every parameter, energy scale ``scale``) so that its forces are far from
zero (max |F| about 0.1-0.2 eV/Å on ethanol).
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch

from get_md.models import build_model

#: NVE test set-up: ethanol, 0.5 fs steps, float64, 300 K start, the tiny perturbed GET below
#: plus a harmonic tether of every atom to its starting position (TETHER_K, eV/Å^2). A random
#: network has no short-range repulsion: alone, it pulls ethanol into a blob where atoms pass
#: within 0.005 Å of each other (measured), a non-smooth point of any distance-based model
#: (one such pass gave a 6e-5 eV jump of the total energy) that no real potential visits. The
#: tether keeps the molecule's shape (closest approach 0.74 Å over 1 ps, 0.57 Å over 10 ps)
#: while the GET energy still varies by ~0.17 eV and its forces reach ~0.12 eV/Å.
TETHER_K = 1.0
#: NVE bounds. Measured over 1 ps (2000 steps), ASE and OpenMM alike: slope 6.5e-7 eV/ps
#: (7e-8 eV/ps/atom), max |E - E0| 1.1e-4 eV; over 10 ps (ASE): 2.5e-8 eV/ps, 1.1e-4 eV. Velocity
#: Verlet on a smooth potential has no systematic drift (float64 rounding is ~1e-13 eV per
#: step); its total energy fluctuates by O(dt^2) (here ~1e-4 eV), so a line fitted over 1 ps
#: can show an apparent slope of up to ~1e-4 eV/ps (1e-5 eV/ps/atom) from the fluctuation
#: alone. The slope bound sits 10x above that and 10x below 1e-3 eV/ps/atom, where an
#: integrator or a force bug (forces not -dE/dx, a unit error) shows; the deviation bound is
#: ~10x the measured fluctuation.
NVE_MAX_SLOPE_PER_ATOM = 1e-4  # eV/ps/atom
NVE_MAX_DEVIATION = 1e-3  # eV
#: Deviation bound for free ethanol on the shipped potential (no tether). Its C-H stretches
#: (period ~11 fs) make Velocity Verlet's O(dt^2) fluctuation of the total energy larger
#: than on the soft tethered toy: measured max |E - E0| 1.2e-3 eV over 1 ps at 0.5 fs (ASE
#: and OpenMM alike), with a slope of 8.5e-6 eV/ps/atom (no drift). 5e-3 eV is ~4x that and
#: ~2 % of the potential-energy range (0.25 eV) the run explores.
NVE_MAX_DEVIATION_REAL = 5e-3  # eV

TINY_GET = dict(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, cutoff=4.0)


def tiny_get(seed: int = 0, noise: float = 0.3, scale: float = -10.0, **kw) -> torch.nn.Module:
    """Tiny GET energy model with perturbed weights (float32, eval mode)."""
    torch.manual_seed(seed)
    config = dict(TINY_GET)
    config.update(kw)
    model = build_model("get", **config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * torch.randn(p.shape, generator=gen))
        if hasattr(model, "energy_scale"):
            model.energy_scale.fill_(scale)
    return model.eval()


def tiny_geomformer(seed: int = 0) -> torch.nn.Module:
    """Tiny GeoMFormer energy model (radius mode: a smooth potential)."""
    torch.manual_seed(seed)
    model = build_model("geomformer", d_model=8, n_layers=1, n_heads=2, n_rbf=6, cutoff=4.0,
                        mode="radius", task="energy")
    with torch.no_grad():
        model.atom_ref.weight.normal_()
    return model.eval()


def ethanol():
    from ase.build import molecule

    return molecule("CH3CH2OH")


def periodic_ethanol(cell=((7.0, 0.0, 0.0), (0.5, 6.5, 0.0), (-0.3, 0.4, 6.8))):
    """Ethanol in a small triclinic box: images within the 4 Å cutoff of each other."""
    atoms = ethanol()
    atoms.cell = np.asarray(cell)
    atoms.pbc = True
    return atoms


def openmm_topology(atoms, box_nm=None):
    """One-residue OpenMM Topology with the elements of ``atoms`` (box in nm, optional)."""
    from openmm import app

    top = app.Topology()
    chain = top.addChain()
    res = top.addResidue("MOL", chain)
    for sym in atoms.get_chemical_symbols():
        top.addAtom(sym, app.Element.getBySymbol(sym), res)
    if box_nm is not None:
        top.setPeriodicBoxVectors(np.asarray(box_nm))
    return top


def energy_drift(times_ps: Sequence[float], total_energy: Sequence[float]) -> Tuple[float, float]:
    """(slope of a least-squares line in eV/ps, max |E(t) - E(0)| in eV)."""
    t = np.asarray(times_ps, dtype=np.float64)
    e = np.asarray(total_energy, dtype=np.float64)
    slope = float(np.polyfit(t, e, 1)[0])
    return slope, float(np.abs(e - e[0]).max())




def min_pair_distance(positions: np.ndarray) -> float:
    p = np.asarray(positions)
    d = np.linalg.norm(p[:, None] - p[None], axis=-1)
    return float(d[np.triu_indices(len(p), 1)].min())


class Tether:
    """Harmonic tether ``E = K/2 sum |x - x0|^2`` (eV, Å) as an ASE calculator and an OpenMM force."""

    def __init__(self, x0: np.ndarray, k: float = TETHER_K):
        self.x0 = np.asarray(x0, dtype=np.float64).copy()
        self.k = float(k)

    def ase_calculator(self):
        from ase.calculators.calculator import Calculator, all_changes

        tether = self

        class _TetherCalc(Calculator):
            implemented_properties = ["energy", "forces"]

            def calculate(self, atoms=None, properties=None, system_changes=all_changes):
                Calculator.calculate(self, atoms, properties, system_changes)
                d = self.atoms.positions - tether.x0
                self.results = {"energy": 0.5 * tether.k * float((d * d).sum()), "forces": -tether.k * d}

        return _TetherCalc()

    def openmm_force(self):
        import openmm

        from get_md.units import EV_TO_KJ_PER_MOL

        f = openmm.CustomExternalForce("0.5*k*((x-x0)^2+(y-y0)^2+(z-z0)^2)")
        f.addGlobalParameter("k", self.k * EV_TO_KJ_PER_MOL * 100.0)  # eV/Å^2 -> kJ/mol/nm^2
        for name in ("x0", "y0", "z0"):
            f.addPerParticleParameter(name)
        for i, x in enumerate(self.x0 / 10.0):
            f.addParticle(i, [float(c) for c in x])
        return f


def check_nve(times, etot, epot, e_model, dmin, n_atoms, label, max_deviation=NVE_MAX_DEVIATION):
    """Assert the NVE bounds above and that the run was not trivial; print the figures."""
    slope, maxdev = energy_drift(times, etot)
    print(f"{label}: {len(times)} samples over {times[-1]:.2f} ps: slope {slope:.3e} eV/ps "
          f"({slope / n_atoms:.3e} eV/ps/atom), max |E-E0| {maxdev:.3e} eV, "
          f"Epot range {np.ptp(epot):.3f} eV, model energy range {np.ptp(e_model):.3f} eV, "
          f"closest approach {dmin:.2f} Å")
    assert np.ptp(e_model) > 0.05, "the model's energy must vary along the run (non-trivial forces)"
    assert dmin > 0.3, "atoms must not overlap (tether too weak?)"
    assert abs(slope) / n_atoms < NVE_MAX_SLOPE_PER_ATOM, f"{label}: drift {slope:.3e} eV/ps"
    assert maxdev < max_deviation, f"{label}: max deviation {maxdev:.3e} eV"
