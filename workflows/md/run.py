"""``run_md``: molecular dynamics of one structure with a get_md potential, written as it
goes and resumable (see :mod:`.store` for the files).

Units at the boundary: time step fs, temperature K, friction 1/ps; the outputs give
steps, ps, eV and K.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from get_md.errors import GetMDError, WorkflowError

from .engines import ENGINES, AseEngine, OpenMMEngine, Snapshot
from .store import RunFolder
from .structure import read_structure

log = logging.getLogger("get_md.workflows.md")

#: K: a higher --temperature is refused (a typo, or another unit: no molecule holds together).
MAX_TEMPERATURE_K = 10000.0
#: fs: a shorter --timestep is warned about (a value in ps, or a typo: time_ps stays 0).
MIN_TIMESTEP_FS = 0.01


@dataclass(frozen=True)
class MDSettings:
    """What a run does; all of it but ``steps`` must match when a run resumes.

    Attributes:
        model: shipped potential name or model file (None: the shipped default potential).
        engine: "ase" (ASE's integrators on GETCalculator) or "openmm" (OpenMM's, on the
            get_md force; TorchForce where openmm-torch loads, else PythonForce).
        timestep_fs: integration time step (fs).
        temperature_K: thermostat temperature, and that of the initial velocities (K).
        friction_per_ps: Langevin friction (1/ps); 0 runs NVE (velocity Verlet).
        interval: record a frame and a row every this many steps.
        seed: seeds the initial velocities and the thermostat's random stream.
        device, dtype: where and in which precision the model runs (float64 default:
            energy conservation).
        charge: total charge (e) for models that read it; None: the sum of an SDF/MOL2
            record's formal charges, else 0.
        record: which record of the structure file (1-based).
        periodic: use a PDB file's CRYST1 box (extended XYZ: its own ``pbc``).
        max_temperature_K: stop when the temperature exceeds this (None: 10 x
            ``temperature_K``, at least 3,000 K): a run blowing up stops with its last
            good step kept, instead of writing garbage.
        minimize_steps: minimise the energy first, for at most this many steps (0: no):
            ASE's BFGS (for either engine) until the largest force is below
            ``minimize_fmax``. Step 0 is the minimised structure.
        minimize_fmax: eV/Å, the minimiser's force tolerance.
    """

    model: Optional[str] = None
    engine: str = "ase"
    timestep_fs: float = 0.5
    temperature_K: float = 300.0
    friction_per_ps: float = 1.0
    interval: int = 10
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float64"
    charge: Optional[float] = None
    record: int = 1
    periodic: bool = False
    max_temperature_K: Optional[float] = None
    minimize_steps: int = 0
    minimize_fmax: float = 0.05

    def check(self) -> None:
        """Refuse settings no run could use, naming the option."""
        if self.engine not in ENGINES:
            raise WorkflowError(f"--engine must be one of {ENGINES}, got {self.engine!r}")
        for name, value, low in (("--timestep", self.timestep_fs, 0.0), ("--friction", self.friction_per_ps, None),
                                 ("--temperature", self.temperature_K, None)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (
                    low is not None and value <= low):
                raise WorkflowError(f"{name} must be a finite number {'> 0' if low is not None else '>= 0'}, "
                                    f"got {value!r}")
        if self.timestep_fs > 10.0:
            raise WorkflowError(f"--timestep is in fs; {self.timestep_fs} fs is far beyond a stable step for "
                                "atoms with hydrogens (0.5-1 fs) — ps given as fs?")
        if self.timestep_fs < MIN_TIMESTEP_FS:
            log.warning("--timestep is in fs; %g fs is far below a useful step for atoms with hydrogens (0.5-1 fs): "
                        "the atoms barely move, and md.csv's time_ps (6 decimals) reads 0 or nearly so — a value in ps "
                        "(0.0005 ps is 0.5 fs), or a typo?", self.timestep_fs)
        if self.temperature_K > MAX_TEMPERATURE_K:
            raise WorkflowError(f"--temperature is in K; {self.temperature_K:g} K is far beyond what a molecular "
                                f"potential describes (bonds break at a few thousand K; at most {MAX_TEMPERATURE_K:g} "
                                "K is accepted)")
        if self.friction_per_ps * self.timestep_fs * 1e-3 > 1.0:
            raise WorkflowError(
                f"--friction is in 1/ps; {self.friction_per_ps:g}/ps with --timestep {self.timestep_fs:g} fs damps the "
                f"velocities more than once per step (friction x time step = "
                f"{self.friction_per_ps * self.timestep_fs * 1e-3:.4g}, must be <= 1; ASE's Langevin blows up "
                "beyond it; typical frictions are 0.1-100/ps)")
        if isinstance(self.interval, bool) or not isinstance(self.interval, int) or self.interval < 1:
            raise WorkflowError(f"--interval must be a whole number >= 1, got {self.interval!r}")
        if self.charge is not None and (isinstance(self.charge, bool) or not isinstance(self.charge, (int, float))
                                        or not math.isfinite(self.charge)):
            raise WorkflowError(f"--charge must be a finite number (total charge in e), got {self.charge!r}")
        if self.max_temperature_K is not None and not self.max_temperature_K > 0:
            raise WorkflowError(f"--max-temperature must be > 0 K, got {self.max_temperature_K!r}")
        if isinstance(self.minimize_steps, bool) or not isinstance(self.minimize_steps, int) or self.minimize_steps < 0:
            raise WorkflowError(f"--minimize must be a whole number of steps >= 0, got {self.minimize_steps!r}")
        if not (isinstance(self.minimize_fmax, (int, float)) and math.isfinite(self.minimize_fmax)
                and self.minimize_fmax > 0):
            raise WorkflowError(f"--minimize-fmax must be a finite number > 0 eV/Å, got {self.minimize_fmax!r}")

    def temperature_limit(self) -> float:
        if self.max_temperature_K is not None:
            return float(self.max_temperature_K)
        return max(10.0 * self.temperature_K, 3000.0)


@dataclass(frozen=True)
class MDResult:
    """What a call of :func:`run_md` did."""

    out: str
    steps: int
    started_at: int
    seconds: float
    steps_per_s: float
    final: dict


def _initial_velocities(atoms, temperature_K: float, seed: int) -> np.ndarray:
    """Maxwell-Boltzmann velocities (Å/fs) at ``temperature_K``, centre of mass at rest;
    their own random stream, so that both engines start alike."""
    from ase import units

    from .engines import K_B_EV

    masses = atoms.get_masses()[:, None]
    # sqrt(kT / m) in Å per ASE time unit (eV, amu, Å); units.fs of those are a fs
    sigma = np.sqrt(K_B_EV * temperature_K / masses) * units.fs
    v = np.random.default_rng([seed, 1]).standard_normal((len(atoms), 3)) * sigma
    return v - (masses * v).sum(axis=0) / masses.sum()


def _frame(atoms, snap: Snapshot, step: int, time_ps: float):
    from ase import units

    frame = atoms.copy()
    frame.calc = None
    frame.set_positions(snap.positions)
    frame.set_velocities(snap.velocities / units.fs)
    # energies to 1e-8 eV as in md.csv (the last bits depend on the neighbour-list history)
    frame.info = {"step": step, "time_ps": round(time_ps, 9), "energy": round(snap.potential_energy, 8)}
    return frame


def _row(snap: Snapshot, step: int, time_ps: float) -> list:
    return [step, f"{time_ps:.6f}", f"{snap.potential_energy:.8f}", f"{snap.kinetic_energy:.8f}",
            f"{snap.potential_energy + snap.kinetic_energy:.8f}", f"{snap.temperature_K:.3f}"]


def _check_snapshot(snap: Snapshot, step: int, settings: MDSettings, last_good: int, out: Path) -> None:
    kept = f"the run up to step {last_good} is in {out}"
    if not (np.isfinite(snap.positions).all() and math.isfinite(snap.potential_energy)
            and math.isfinite(snap.kinetic_energy)):
        raise WorkflowError(f"MD step {step}: positions or energies are NaN or infinite; {kept}")
    limit = settings.temperature_limit()
    if snap.temperature_K > limit:
        t = f"{snap.temperature_K:.0f}" if snap.temperature_K < 1e6 else f"{snap.temperature_K:.1e}"
        raise WorkflowError(f"MD step {step}: temperature {t} K exceeds {limit:.0f} K "
                            f"(--max-temperature): the run is blowing up (time step too long, or a strained "
                            f"start structure?); {kept}")


def _minimized(atoms, potential, settings: MDSettings, charge: float) -> np.ndarray:
    """Positions (Å) after ASE's BFGS on the run's potential (either engine: one
    minimiser, one meaning of ``minimize_fmax``: the largest force, eV/Å)."""
    from ase.constraints import FixCom
    from ase.optimize import BFGS
    from get_md.plugins.ase import GETCalculator

    work = atoms.copy()
    work.set_constraint(FixCom())
    work.calc = GETCalculator(potential, settings.device, settings.dtype, charge=charge)
    before = work.get_potential_energy()
    opt = BFGS(work, logfile=None)
    try:
        converged = opt.run(fmax=settings.minimize_fmax, steps=settings.minimize_steps)
    except (GetMDError, ValueError, RuntimeError) as e:
        raise WorkflowError(f"energy minimisation, step {opt.nsteps}: {e}") from e
    fmax = float(np.linalg.norm(work.get_forces(), axis=1).max())
    log.info("get-md md: minimised in %d step(s): Epot %.4f -> %.4f eV, largest force %.3g eV/Å%s", opt.nsteps,
             before, work.get_potential_energy(), fmax, "" if converged else " (not converged: --minimize more?)")
    return work.get_positions()


def _load_potential(settings: MDSettings):
    from get_md import runtime

    potential = runtime.load(settings.model, settings.device, settings.dtype, who="get-md md")
    if potential.task != "energy":
        raise WorkflowError(f"get-md md: {potential.source} is a {potential.task} model; MD needs a potential "
                            "(an energy model, e.g. get-xtb-organic)")
    return potential


def _check_charge(atoms, charge: float, potential, explicit: bool, who: str) -> None:
    """Warn where the total charge cannot mean what the user thinks: a --charge the model
    does not read, a charge that is not whole, or an odd number of electrons (get_md's
    potentials are trained on closed-shell structures)."""
    if explicit and charge and not potential.needs_charge:
        log.warning("%s: --charge %g is ignored: model %s does not read a total charge (it gives the energy of "
                    "the charge state its training data had for these atoms)", who, charge, potential.source)
    if charge != round(charge):
        log.warning("%s: total charge %g e is not a whole number", who, charge)
        return
    electrons = int(atoms.numbers.sum()) - int(round(charge))
    if electrons % 2:
        log.warning("%s: %s with total charge %g holds %d electrons, an odd number: a radical (open shell); "
                    "get_md's potentials are trained on closed-shell structures, so energies and forces mean "
                    "little (a missing hydrogen, or another --charge?)", who, atoms.get_chemical_formula(), charge,
                    electrons)


def _make_engine(settings: MDSettings, atoms, potential, charge: float):
    from get_md.plugins.ase import GETCalculator

    if settings.engine == "ase":
        calc = GETCalculator(potential, settings.device, settings.dtype, charge=charge)
        return AseEngine(atoms, calc, settings.timestep_fs, settings.temperature_K, settings.friction_per_ps,
                         settings.seed)
    return OpenMMEngine(atoms, potential, settings.timestep_fs, settings.temperature_K,
                        settings.friction_per_ps, settings.seed, charge)


def run_md(structure, out, steps: int, settings: MDSettings = MDSettings(), resume: bool = True,
           progress: bool = False) -> MDResult:
    """Run ``steps`` MD steps of ``structure`` (resuming a run in ``out`` with the same settings).

    Args:
        structure: ``.xyz`` / ``.extxyz`` / ``.sdf`` / ``.mol`` / ``.mol2`` / ``.pdb`` file (Å).
        out: the run's folder (created).
        steps: total steps of the run; a resumed run continues to this many (more than
            before extends it).
        settings: :class:`MDSettings`.
        resume: continue a run found in ``out``; False starts over.
        progress: one line on stderr about every 10 % of the steps.

    Returns:
        :class:`MDResult`.

    Raises:
        WorkflowError (and the readers' GraphError): bad input, named; a run that blows up
        (non-finite values, temperature over the limit) stops with its last good step kept.

    Example:
        >>> run_md("ethanol.xyz", "md_out", steps=200)  # doctest: +SKIP
        MDResult(out='md_out', steps=200, ...)
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise WorkflowError(f"--steps must be a whole number >= 1, got {steps!r}")
    if not isinstance(resume, bool):
        raise WorkflowError(f"resume must be True or False, got {resume!r}")
    settings.check()
    from get_md.workflows.rescoring.outputs import OutputLock

    folder = RunFolder(out)
    try:  # the lock file lies beside the folder
        folder.out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkflowError(f"--out {folder.out}: cannot create its parent folder ({e.strerror or e})") from e
    with OutputLock(folder.out):  # a second run on the same folder stops at once
        return _run(structure, folder, int(steps), settings, resume, progress)


def _run(structure, folder: RunFolder, steps: int, settings: MDSettings, resume: bool,
         progress: bool) -> MDResult:
    atoms, formal_charge = read_structure(structure, settings.record, settings.periodic)
    potential = _load_potential(settings)  # before anything is written: a score model is refused
    charge = formal_charge if settings.charge is None else float(settings.charge)
    _check_charge(atoms, charge, potential, settings.charge is not None, f"{structure} record {settings.record}")
    p = Path(structure)
    recorded = dict(asdict(settings), structure=str(p.resolve()), structure_size=p.stat().st_size,
                    n_atoms=len(atoms), charge=charge)

    start, state = 0, None
    if resume and folder.has_run():
        before = folder.recorded_settings()
        differ = sorted(k for k in set(before) | set(recorded) if before.get(k) != recorded.get(k))
        if differ:
            raise WorkflowError(
                f"--out {folder.out} holds a run with other settings ({', '.join(differ)}: "
                + "; ".join(f"{k} {before.get(k)!r} -> {recorded.get(k)!r}" for k in differ[:3])
                + "); use another --out, or --no-resume to start over")
        found = folder.load_checkpoint()
        if found is not None:
            start, state = found
            folder.truncate_after(start, atoms.get_chemical_symbols(), f"{structure} record {settings.record}")
    if state is None:
        folder.start(recorded)

    engine = _make_engine(settings, atoms, potential, charge)
    if state is not None:
        try:
            engine.restore(state)
        except Exception as e:  # noqa: BLE001 - numpy, json and OpenMM raise several kinds for a damaged state
            why = str(e) if isinstance(e, WorkflowError) else f"{type(e).__name__}: {e}"
            raise WorkflowError(f"{folder.checkpoint}: its {settings.engine} state does not load ({why}); "
                                "start over with --no-resume") from e
        log.info("get-md md: resuming %s at step %d", folder.out, start)
        if start >= steps:
            log.warning("--out %s already holds %d steps, --steps %d runs none (a larger --steps extends the run; "
                        "nothing is dropped)", folder.out, start, steps)
    else:
        if settings.minimize_steps:
            engine.set_positions(_minimized(atoms, potential, settings, charge))
        engine.set_velocities(_initial_velocities(atoms, settings.temperature_K, settings.seed))
    dt_ps = settings.timestep_fs / 1000.0
    t0 = time.perf_counter()
    step = start
    snap = engine.snapshot()
    if state is None:
        _check_snapshot(snap, 0, settings, 0, folder.out)
        folder.record(0, 0.0, _frame(atoms, snap, 0, 0.0), _row(snap, 0, 0.0), engine.state())
    report_every = max(1, steps // 10)
    next_report = start + report_every
    while step < steps:
        n = min(settings.interval - step % settings.interval, steps - step)
        try:
            engine.advance(n)
        except (GetMDError, ValueError, RuntimeError) as e:
            raise WorkflowError(f"MD steps {step + 1}-{step + n}: {e}; the run up to step {step} is in "
                                f"{folder.out}") from e
        except Exception as e:  # OpenMMException (e.g. a NaN in the integrator)
            if type(e).__name__ != "OpenMMException":
                raise
            raise WorkflowError(f"MD steps {step + 1}-{step + n}: OpenMM: {e}; the run up to step {step} is in "
                                f"{folder.out}") from e
        snap = engine.snapshot()
        _check_snapshot(snap, step + n, settings, step, folder.out)
        step += n
        folder.record(step, step * dt_ps, _frame(atoms, snap, step, step * dt_ps), _row(snap, step, step * dt_ps),
                      engine.state())
        if progress and (step >= next_report or step == steps):
            rate = (step - start) / max(time.perf_counter() - t0, 1e-9)
            print(f"get-md md: step {step}/{steps} ({100 * step // steps}%), {step * dt_ps:.3f} ps, "
                  f"T {snap.temperature_K:.0f} K, Epot {snap.potential_energy:.4f} eV, {rate:.1f} steps/s",
                  file=sys.stderr)
            next_report = step + report_every
    seconds = time.perf_counter() - t0
    final = {"step": step, "time_ps": step * dt_ps, "potential_energy_eV": snap.potential_energy,
             "kinetic_energy_eV": snap.kinetic_energy, "temperature_K": snap.temperature_K}
    return MDResult(str(folder.out), step, start, seconds, (step - start) / seconds if seconds > 0 else 0.0, final)


__all__ = ["MDResult", "MDSettings", "run_md"]
