"""Systems, model and machine record shared by bench_openmm.py and bench_ase.py.

* :func:`water_box`: liquid-density water (29.9 Å^3 per molecule, 1.0 g/cm^3) in a cubic
  periodic box: oxygens on a random subset of a cubic lattice, TIP3P-like geometry
  (0.9572 Å, 104.52°), random orientations; ``periodic=False`` gives the same atoms as a
  non-periodic cluster at organic density.
* :data:`MODEL_CONFIG`: GET, d_hidden 64, 3 layers, cutoff 5 Å (random weights: speed only).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Tuple

import numpy as np
import torch

MODEL_CONFIG = dict(d_hidden=64, d_radial=32, n_rbf=16, n_head=4, n_layers=3, cutoff=5.0)
WATER_VOLUME = 29.9  # Å^3 per molecule at 1.0 g/cm^3


def water_box(n_atoms: int, seed: int = 0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(atomic numbers [N], positions [N, 3] Å, cell [3, 3] Å) of about ``n_atoms`` atoms of water."""
    rng = np.random.default_rng(seed)
    n_w = max(1, round(n_atoms / 3))
    side = (n_w * WATER_VOLUME) ** (1.0 / 3.0)
    m = math.ceil(n_w ** (1.0 / 3.0))
    grid = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1).reshape(-1, 3)
    sites = grid[np.sort(rng.choice(len(grid), n_w, replace=False))]
    oxygens = (sites + 0.5) * (side / m)
    half = np.deg2rad(104.52) / 2
    local = 0.9572 * np.array([[np.sin(half), np.cos(half), 0.0], [-np.sin(half), np.cos(half), 0.0]])
    pos, z = [], []
    for o in oxygens:
        q, r = np.linalg.qr(rng.normal(size=(3, 3)))
        rot = q * np.sign(np.diag(r))
        pos += [o, o + local[0] @ rot.T, o + local[1] @ rot.T]
        z += [8, 1, 1]
    return np.asarray(z), np.asarray(pos), np.eye(3) * side


def build_model(dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.nn.Module:
    from get_md.models import build_model as _build

    torch.manual_seed(seed)
    return _build("get", **MODEL_CONFIG).to(dtype).eval()


def _summary(samples: list) -> dict:
    return {"median_s": float(np.median(samples)), "min_s": float(min(samples)),
            "max_s": float(max(samples)), "samples_s": [float(s) for s in samples]}


def median_time(fn, repeats: int, warmup: int = 1) -> dict:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times; seconds per call."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return _summary(samples)


def interleaved_times(fns: dict, repeats: int) -> dict:
    """Time several ``name -> (fn, calls per run)`` in turns (A B C A B C ...), so that
    the machine's drift affects all alike; seconds per call, as :func:`median_time`.
    Warm them up before."""
    samples: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, (fn, per) in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t0) / per)
    return {name: _summary(v) for name, v in samples.items()}


def bare_model_call(model, z, pos, cell, periodic: bool, mode: str = "plain"):
    """``(call, last)``: a function running the bare model (forward + the autograd
    backward that gives forces) on the graph of ``z``, ``pos`` (Å) and ``cell`` under
    the executor ``mode``, and a dict holding its last output under ``"out"``."""
    from get_md.graph import MolecularGraph

    g = MolecularGraph.from_atoms(torch.tensor(pos, dtype=torch.float32), torch.tensor(z),
                                  cell=torch.tensor(cell, dtype=torch.float32) if periodic else None,
                                  pbc=torch.ones(3, dtype=torch.bool) if periodic else None)
    inputs = g.inputs()
    last: dict = {}

    def call():
        with torch.no_grad(), executor(mode):
            last["out"] = model(*inputs)

    return call, last


def executor(name: str):
    """The TorchScript executor mode for timed calls: ``plain`` (what get_md's plugins use,
    :func:`get_md.perf.plain_executor`) or ``default`` (torch's profiling executor)."""
    import contextlib

    from get_md.perf import plain_executor

    return plain_executor() if name == "plain" else contextlib.nullcontext()


def time_bare_model(model, z, pos, cell, periodic: bool, repeats: int, warmup: int,
                    mode: str = "plain") -> dict:
    """:func:`bare_model_call` timed by :func:`median_time`; adds the energy (eV) of
    the last call."""
    call, last = bare_model_call(model, z, pos, cell, periodic, mode)
    res = median_time(call, repeats, warmup=warmup)
    res["what"] = "forward + autograd backward for forces"
    res["energy_eV"] = float(last["out"]["energy"].sum())
    return res


def machine_info(threads: int) -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu_model": cpu,
        "logical_cpus": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": threads,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        import openmm

        info["openmm_version"] = openmm.__version__
    except ImportError:
        pass
    try:
        import ase

        info["ase_version"] = ase.__version__
    except ImportError:
        pass
    return info


def command_line(script: str, argv=None) -> str:
    """``python benchmarks/SCRIPT ARGS...`` as run (``argv``: the arguments given to ``main``,
    None: ``sys.argv[1:]``), shell-quoted, for a result's ``command`` field."""
    import shlex
    import sys

    return f"python benchmarks/{script} " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))


def write_result(out: Path, result: dict) -> None:
    """Write a benchmark's result dict to ``out`` as indented JSON (folders made as
    needed) and say where."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def add_allocator_option(parser) -> None:
    """``--no-tune-allocator`` (default: :func:`get_md.perf.tune_cpu_allocator` before timing)."""
    parser.add_argument("--no-tune-allocator", action="store_true",
                        help="leave glibc malloc as is (default: get_md.perf.tune_cpu_allocator())")


def apply_allocator_option(args) -> bool:
    """Tune the allocator unless ``--no-tune-allocator``; whether it was tuned (for the JSON)."""
    from get_md.perf import tune_cpu_allocator

    return False if args.no_tune_allocator else tune_cpu_allocator()
