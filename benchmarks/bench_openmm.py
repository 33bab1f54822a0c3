"""OpenMM time per step with a get_md force: TorchForce and PythonForce against the bare model.

For each size (default 100, 1,000 and 10,000 atoms of water, periodic; see
``plugin_common.water_box``) and the GET model of ``plugin_common.MODEL_CONFIG``
(d_hidden 64, 3 layers, cutoff 5 Å, random weights, float32):

Timings start after 3 untimed calls (TorchScript's profiling executor recompiles during
the first calls, which take several times longer). The bare model and the engines are
then timed in turns (model, TorchForce, PythonForce, model, ...), ``--repeats`` times,
so that the machine's drift over minutes affects them alike; medians are reported.

* ``model``: the bare model call (forward plus the autograd backward that gives forces)
  on the graph tensors, the floor any OpenMM integration can reach;
* ``pythonforce``: ``openmm.PythonForce`` (OpenMM >= 8.6) in a System with only that force
  and a VerletIntegrator (0.5 fs) on OpenMM's CPU platform: wall time per step;
* ``torchforce``: the same with ``openmmtorch.TorchForce`` when openmmtorch imports
  (recorded as unavailable otherwise).

``overhead_ms`` = time per step - bare model time: the cost of the OpenMM boundary (unit
conversion, tensors from and to NumPy or C++, the integrator). Results go to
``benchmarks/results/bench_openmm.json`` with the machine record.

    python benchmarks/bench_openmm.py                    # 100, 1000, 10000 atoms
    python benchmarks/bench_openmm.py --sizes 100 --steps 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plugin_common import (  # noqa: E402
    MODEL_CONFIG,
    add_allocator_option,
    apply_allocator_option,
    bare_model_call,
    build_model,
    interleaved_times,
    machine_info,
    water_box,
    write_result,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "bench_openmm.json"


def openmm_platform():
    import openmm

    names = [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]
    return openmm.Platform.getPlatformByName("CPU" if "CPU" in names else "Reference")


def openmm_stepper(force_backend: str, model, z, pos, cell, periodic: bool, mode: str = "plain"):
    """``(run, platform name)``: ``run(n)`` takes n VerletIntegrator steps (0.5 fs) of a
    System whose only force is get_md's (``force_backend``), under the executor ``mode``."""
    import openmm
    from get_md.plugins.openmm import add_force

    masses = {1: 1.008, 8: 15.999}
    system = openmm.System()
    for zi in z:
        system.addParticle(masses[int(zi)])
    if periodic:
        system.setDefaultPeriodicBoxVectors(*[openmm.Vec3(*row) for row in cell / 10.0])
    # TorchForce: create_force switches this thread, from which step() runs the module,
    # to the plain executor unless told not to (the "default" mode measures without it)
    add_force(system, model, z.tolist(), periodic=periodic, backend=force_backend,
              plain_executor=mode == "plain")
    integrator = openmm.VerletIntegrator(0.0005)
    platform = openmm_platform()
    ctx = openmm.Context(system, integrator, platform)
    ctx.setPositions(pos / 10.0)
    ctx.setVelocitiesToTemperature(300.0, 1)

    def run(n):
        integrator.step(n)

    run._context = ctx  # keep the Context alive with the function
    return run, platform.getName()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    p.add_argument("--steps", type=int, default=None, help="MD steps per timed sample (default by size)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3,
                   help="untimed model calls first (TorchScript optimises during the first calls)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-periodic", action="store_true", help="non-periodic clusters instead of boxes")
    p.add_argument("--backends", nargs="+", default=["torchforce", "pythonforce"])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--executor", choices=["plain", "default"], default="plain",
                   help="TorchScript executor for the bare model and TorchForce (default plain, as "
                        "get_md's plugins run; PythonForce always runs plain)")
    add_allocator_option(p)
    args = p.parse_args(argv)
    tuned = apply_allocator_option(args)

    threads = args.threads or min(4, torch.get_num_threads())
    torch.set_num_threads(threads)
    from get_md.plugins.openmm import have_openmmtorch

    torchforce_status = "available" if have_openmmtorch() else (
        f"unavailable: openmmtorch does not import with torch {torch.__version__}")
    periodic = not args.no_periodic
    model = torch.jit.script(build_model())
    records = []
    for size in args.sizes:
        z, pos, cell = water_box(size)
        steps = args.steps or (20 if size <= 200 else 5 if size <= 2000 else 2)
        rec = {"size": size, "n_atoms": int(len(z)), "periodic": periodic, "box_A": float(cell[0, 0]),
               "steps_per_sample": steps}
        bare, last = bare_model_call(model, z, pos, cell, periodic, args.executor)
        for _ in range(args.warmup):
            bare()
        fns = {"model": (bare, 1)}
        platforms = {}
        for backend in args.backends:
            if backend == "torchforce" and torchforce_status != "available":
                rec[backend] = {"skipped": torchforce_status}
                continue
            run, platforms[backend] = openmm_stepper(backend, model, z, pos, cell, periodic, args.executor)
            run(3)  # first calls (TorchScript's profiling executor optimises during them)
            fns[backend] = (lambda run=run, steps=steps: run(steps), steps)
        # model and engines in turns, so that the machine's drift affects them alike
        times = interleaved_times(fns, args.repeats)
        rec["model"] = {**times["model"], "what": "forward + autograd backward for forces",
                        "energy_eV": float(last["out"]["energy"].sum())}
        model_ms = rec["model"]["median_s"] * 1e3
        print(f"{len(z):6d} atoms  model fwd+bwd  {model_ms:9.2f} ms", flush=True)
        for backend in args.backends:
            if backend not in times:
                print(f"{len(z):6d} atoms  {backend:12s}  skipped ({torchforce_status})", flush=True)
                continue
            r = {**times[backend], "platform": platforms[backend]}
            r["ms_per_step"] = r["median_s"] * 1e3
            r["overhead_ms"] = r["ms_per_step"] - model_ms
            r["steps_per_s"] = 1.0 / r["median_s"]
            r["ns_per_day_at_0.5fs"] = r["steps_per_s"] * 86400 * 0.5e-6
            rec[backend] = r
            print(f"{len(z):6d} atoms  {backend:12s}  {r['ms_per_step']:9.2f} ms/step "
                  f"(overhead {r['overhead_ms']:+.2f} ms, {r['ns_per_day_at_0.5fs']:.3f} ns/day)", flush=True)
        records.append(rec)
    result = {
        "benchmark": "bench_openmm",
        "machine": {**machine_info(threads), "malloc_tuned": tuned},
        "settings": {"model": {"family": "get", **MODEL_CONFIG, "dtype": "float32", "weights": "random"},
                     "system": "water box, 1.0 g/cm^3" + (" (periodic)" if periodic else " (cluster)"),
                     "integrator": "VerletIntegrator 0.5 fs", "repeats": args.repeats,
                     "warmup_calls": args.warmup, "scripted": True, "executor": args.executor,
                     "torchforce": torchforce_status},
        "results": records,
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
