"""The two MD engines of ``get-md md``: ASE's integrators with :class:`GETCalculator`,
or OpenMM's with the get_md force (:func:`get_md.plugins.openmm.create_force`).

Both take the same settings in the same units (time step fs, temperature K, friction
1/ps) and give the same :class:`Snapshot` (Å, Å/fs, eV), so the run loop
(:mod:`.run`) does not know which one it drives. An engine's ``state()`` is the exact
state the run resumes from (positions, velocities and the thermostat's random stream).

Example:
    >>> engine = make_engine("ase", atoms, potential, settings)  # doctest: +SKIP
    >>> engine.advance(10); engine.snapshot().temperature_K       # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np

from get_md.errors import WorkflowError
from get_md.units import EV_TO_KJ_PER_MOL

#: Boltzmann constant in eV/K (CODATA 2018).
K_B_EV = 8.617333262e-5
#: Å/fs per nm/ps.
NM_PER_PS_TO_A_PER_FS = 0.01
ENGINES = ("ase", "openmm")


@dataclass(frozen=True)
class Snapshot:
    """The system at one step: positions [N, 3] Å, velocities [N, 3] Å/fs, energies eV."""

    positions: np.ndarray
    velocities: np.ndarray
    potential_energy: float
    kinetic_energy: float
    temperature_K: float


def temperature(kinetic_energy_ev: float, n_atoms: int) -> float:
    """Instantaneous temperature (K) of ``n_atoms`` with their centre-of-mass motion
    removed (3N − 3 degrees of freedom; both engines remove it).

    Example:
        >>> round(temperature(0.0129260, 2), 1)  # 2 atoms: 3 degrees of freedom
        100.0
    """
    dof = max(3 * n_atoms - 3, 1)
    return 2.0 * kinetic_energy_ev / (dof * K_B_EV)


class AseEngine:
    """ASE's ``Langevin`` (``friction`` > 0) or ``VelocityVerlet`` on a :class:`GETCalculator`."""

    def __init__(self, atoms, calculator, timestep_fs: float, temperature_K: float, friction_per_ps: float,
                 seed: int):
        from ase import units
        from ase.md.langevin import Langevin
        from ase.md.verlet import VelocityVerlet

        self.atoms = atoms
        self.atoms.calc = calculator
        self.rng = np.random.default_rng(seed)
        from ase.constraints import FixCom

        self.atoms.set_constraint(FixCom())  # the centre of mass stays put, as in OpenMM's run
        if friction_per_ps > 0:
            # ASE's friction is per ASE time unit: 1/ps = 1e-3 / units.fs
            self.dynamics = Langevin(atoms, timestep=timestep_fs * units.fs, temperature_K=temperature_K,
                                     friction=friction_per_ps * 1e-3 / units.fs, fixcm=False, rng=self.rng)
        else:
            self.dynamics = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)

    def set_positions(self, positions: np.ndarray) -> None:
        self.atoms.set_positions(positions)

    def set_velocities(self, velocities: np.ndarray) -> None:
        from ase import units

        self.atoms.set_velocities(velocities / units.fs)  # Å/fs -> Å per ASE time unit (units.fs of them a fs)

    def advance(self, steps: int) -> None:
        self.dynamics.run(steps)

    def snapshot(self) -> Snapshot:
        from ase import units

        epot = float(self.atoms.get_potential_energy())
        ekin = float(self.atoms.get_kinetic_energy())
        return Snapshot(self.atoms.get_positions(), self.atoms.get_velocities() * units.fs, epot, ekin,
                        temperature(ekin, len(self.atoms)))

    def state(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, positions=self.atoms.get_positions(), momenta=self.atoms.get_momenta(),
                 rng=np.array(json.dumps(self.rng.bit_generator.state)))
        return buf.getvalue()

    def restore(self, state: bytes) -> None:
        try:
            data = np.load(io.BytesIO(state), allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - numpy raises several kinds for bytes that are no npz
            raise WorkflowError("not a saved ASE engine state") from e
        with data:
            positions, momenta = data["positions"], data["momenta"]
            if positions.shape != (len(self.atoms), 3) or momenta.shape != positions.shape:
                raise WorkflowError(f"positions {positions.shape} and momenta {momenta.shape} for a structure of "
                                 f"{len(self.atoms)} atoms")
            if not (np.isfinite(positions).all() and np.isfinite(momenta).all()):
                raise WorkflowError("NaN or infinite positions or momenta")
            self.atoms.set_positions(positions)
            self.atoms.set_momenta(momenta)
            self.rng.bit_generator.state = json.loads(str(data["rng"]))


class OpenMMEngine:
    """OpenMM's ``LangevinMiddleIntegrator`` (``friction`` > 0) or ``VerletIntegrator`` on a
    System of the structure's atoms holding the get_md force (TorchForce or PythonForce,
    ``backend``), a ``CMMotionRemover``, on the CPU platform (Reference where it is absent)."""

    def __init__(self, atoms, potential, timestep_fs: float, temperature_K: float, friction_per_ps: float,
                 seed: int, charge: float, backend: str = "auto"):
        import openmm
        from get_md.plugins.openmm import create_force
        from openmm import app, unit

        self.n_atoms = len(atoms)
        top = app.Topology()
        residue = top.addResidue("MOL", top.addChain())
        for z in atoms.numbers:
            element = app.Element.getByAtomicNumber(int(z))
            top.addAtom(element.symbol, element, residue)
        system = openmm.System()
        for mass in atoms.get_masses():
            system.addParticle(float(mass))
        periodic = bool(np.asarray(atoms.pbc).all())
        if periodic:
            box = np.asarray(atoms.cell.array, dtype=np.float64) / 10.0
            if abs(box[0, 1]) + abs(box[0, 2]) + abs(box[1, 2]) > 1e-9:
                raise WorkflowError("--engine openmm: OpenMM needs a cell whose first vector lies along x and "
                                    "second in the xy plane (a reduced triclinic box); use --engine ase")
            vectors = [openmm.Vec3(*row) for row in box]
            top.setPeriodicBoxVectors(vectors)
            system.setDefaultPeriodicBoxVectors(*vectors)
        force = create_force(potential, top, periodic=periodic, backend=backend, device=potential.device,
                             dtype=potential.dtype, charge=charge)
        system.addForce(force)
        system.addForce(openmm.CMMotionRemover())
        dt = timestep_fs * unit.femtoseconds
        if friction_per_ps > 0:
            integrator = openmm.LangevinMiddleIntegrator(temperature_K * unit.kelvin,
                                                          friction_per_ps / unit.picosecond, dt)
            integrator.setRandomNumberSeed(int(seed) % 2**31 or 1)  # 0 would mean "pick one"
        else:
            integrator = openmm.VerletIntegrator(dt)
        names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
        platform = openmm.Platform.getPlatformByName("CPU" if "CPU" in names else "Reference")
        self.context = openmm.Context(system, integrator, platform)
        self.context.setPositions(atoms.get_positions() / 10.0)
        if periodic:
            self.context.setPeriodicBoxVectors(*vectors)
        self.integrator = integrator

    def set_positions(self, positions: np.ndarray) -> None:
        self.context.setPositions(positions / 10.0)

    def set_velocities(self, velocities: np.ndarray) -> None:
        self.context.setVelocities(velocities / NM_PER_PS_TO_A_PER_FS)

    def advance(self, steps: int) -> None:
        self.integrator.step(int(steps))

    def snapshot(self) -> Snapshot:
        from openmm import unit

        s = self.context.getState(getPositions=True, getVelocities=True, getEnergy=True)
        epot = s.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) / EV_TO_KJ_PER_MOL
        ekin = s.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole) / EV_TO_KJ_PER_MOL
        x = s.getPositions(asNumpy=True).value_in_unit(unit.nanometer) * 10.0
        v = s.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond) * NM_PER_PS_TO_A_PER_FS
        return Snapshot(np.asarray(x), np.asarray(v), float(epot), float(ekin), temperature(ekin, self.n_atoms))

    def state(self) -> bytes:
        return bytes(self.context.createCheckpoint())

    def restore(self, state: bytes) -> None:
        self.context.loadCheckpoint(state)


__all__ = ["ENGINES", "AseEngine", "OpenMMEngine", "Snapshot", "temperature"]
