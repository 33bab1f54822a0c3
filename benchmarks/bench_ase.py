"""ASE calculator throughput: GETCalculator calls per second, with MACE for comparison.

For each size (default 100, 1,000 and 5,000 atoms of water in a periodic box; see
``plugin_common.water_box``) and the GET model of ``plugin_common.MODEL_CONFIG`` (d_hidden
64, 3 layers, cutoff 5 Å, random weights, float32), a call is ``atoms.get_forces()`` after
the positions moved by ~1e-3 Å (so the calculator recomputes, as in MD). Reported: calls
per second, the bare model time (forward + autograd backward) and the calculator's
overhead on top of it. With ``--stress`` the call is ``get_stress()`` as well.

Comparisons, when their packages import (nothing is downloaded; pretrained weights need
the network, so the comparison models have random weights: speed only):

* ``mace``: mace-torch's ``MACECalculator`` on a ScaleShiftMACE with MACE-OFF23-small-like
  settings (96x0e, max_L 0, 2 interactions, correlation 3, r_max 5 Å). mace-torch is not a
  get_md dependency: install it into a side folder and point ``--extra-path`` (or
  PYTHONPATH) there, e.g. ``pip install --target /tmp/mace_site --no-deps mace-torch e3nn==0.4.4
  opt-einsum-fx opt_einsum torch-ema matscipy ConfigArgParse GitPython gitdb smmap
  prettytable python_hostlist lmdb h5py torchmetrics lightning-utilities`` (about 20 s).
* ``torchani``: torchani's ASE calculator on one network of the ANI-2x architecture
  (``torchani.arch.Assembler`` as ``torchani.models.ANI2x`` builds it, cell-list neighbour
  list, random weights: ``ANI2x()`` itself downloads its weights). Install it beside
  mace-torch, e.g. ``pip install --target /tmp/ani_site --no-deps torchani==2.9.0
  huggingface_hub==0.26.2 h5py`` and add ``--extra-path /tmp/ani_site``.

Results go to ``benchmarks/results/bench_ase.json`` with the machine record.

    python benchmarks/bench_ase.py                               # 100, 1000, 5000 atoms
    python benchmarks/bench_ase.py --sizes 100 --extra-path /tmp/mace_site
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plugin_common import (  # noqa: E402
    MODEL_CONFIG,
    add_allocator_option,
    apply_allocator_option,
    build_model,
    machine_info,
    time_bare_model,
    water_box,
    write_result,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "bench_ase.json"


def make_atoms(size: int):
    from ase import Atoms

    z, pos, cell = water_box(size)
    return Atoms(numbers=z, positions=pos, cell=cell, pbc=True)


def time_calculator(calc, atoms, calls: int, warmup: int, stress: bool) -> dict:
    atoms = atoms.copy()
    atoms.calc = calc
    rng = np.random.default_rng(0)

    def call():
        atoms.positions += rng.normal(scale=1e-3, size=atoms.positions.shape)
        atoms.get_forces()
        if stress:
            atoms.get_stress()

    for _ in range(warmup):
        call()
    t0 = time.perf_counter()
    for _ in range(calls):
        call()
    per_call = (time.perf_counter() - t0) / calls
    return {"s_per_call": per_call, "calls_per_s": 1.0 / per_call, "calls": calls}


def mace_calculator():
    """A random-weight MACE-OFF23-small-like MACECalculator, or (None, reason)."""
    # e3nn 0.4.4 (pinned by mace-torch) torch.load()s its own packaged constants, which
    # torch >= 2.6's weights_only default refuses; allow it in this benchmark process only
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    try:
        from e3nn import o3
        from mace import modules
        from mace.calculators import MACECalculator
    except Exception as e:  # noqa: BLE001 - any import failure means "not available"
        return None, f"not importable ({type(e).__name__}: {e})"
    try:
        torch.manual_seed(0)
        z = [1, 6, 7, 8]
        model = modules.ScaleShiftMACE(
            r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=3,
            interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            interaction_cls_first=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
            num_interactions=2, num_elements=len(z), hidden_irreps=o3.Irreps("96x0e"),
            MLP_irreps=o3.Irreps("16x0e"), atomic_energies=np.zeros(len(z)), avg_num_neighbors=20.0,
            atomic_numbers=z, correlation=3, gate=torch.nn.functional.silu,
            atomic_inter_scale=1.0, atomic_inter_shift=0.0,
        ).float()
        calc = MACECalculator(models=model, device="cpu", default_dtype="float32")
    except Exception as e:  # noqa: BLE001
        return None, f"could not be built ({type(e).__name__}: {e})"
    import mace

    n_par = sum(p.numel() for p in model.parameters())
    return calc, (f"mace-torch {getattr(mace, '__version__', '?')}, random weights, MACE-OFF23-small-like "
                  f"({n_par} parameters)")


def torchani_calculator():
    """torchani's ASE calculator on a random-weight ANI-2x network, or (None, reason)."""
    os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
    try:
        import torchani
        from torchani.arch import Assembler
        from torchani.models import SYMBOLS_2X
    except Exception as e:  # noqa: BLE001 - any import failure means "not available"
        return None, f"not importable ({type(e).__name__}: {e})"
    try:
        torch.manual_seed(0)
        asm = Assembler(periodic_table_index=True)
        asm.set_symbols(SYMBOLS_2X)
        asm.set_global_cutoff_fn("cosine")
        asm.set_aev_computer(radial="ani2x", angular="ani2x", strategy="pyaev")
        asm.set_atomic_networks(ctor="ani2x")
        asm.set_neighborlist("cell_list")
        asm.set_gsaes_as_self_energies("wb97x-631gd")
        model = asm.assemble(1).float()
        n_par = sum(p.numel() for p in model.parameters())
        calc = model.ase()
    except Exception as e:  # noqa: BLE001
        return None, f"could not be built ({type(e).__name__}: {e})"
    return calc, (f"torchani {getattr(torchani, '__version__', '?')}, one ANI-2x network "
                  f"({n_par} parameters), random weights, cell list, float32")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    p.add_argument("--calls", type=int, default=None, help="timed calls per size (default by size)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--stress", action="store_true", help="also ask for the stress in each call")
    p.add_argument("--no-mace", action="store_true")
    p.add_argument("--no-torchani", action="store_true")
    p.add_argument("--extra-path", action="append", default=[],
                   help="folder added to sys.path (e.g. where mace-torch was installed)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    add_allocator_option(p)
    args = p.parse_args(argv)
    tuned = apply_allocator_option(args)
    for extra in args.extra_path:
        sys.path.insert(0, extra)

    threads = args.threads or min(4, torch.get_num_threads())
    torch.set_num_threads(threads)
    from get_md.plugins.ase import GETCalculator

    model = torch.jit.script(build_model())
    get_calc = GETCalculator(model)
    mace_calc, mace_status = (None, "not run (--no-mace)") if args.no_mace else mace_calculator()
    print(f"mace: {mace_status}")
    ani_calc, ani_status = (None, "not run (--no-torchani)") if args.no_torchani else torchani_calculator()
    print(f"torchani: {ani_status}")
    records = []
    for size in args.sizes:
        atoms = make_atoms(size)
        calls = args.calls or (10 if size <= 200 else 3 if size <= 2000 else 1)
        rec = {"size": size, "n_atoms": len(atoms), "box_A": float(atoms.cell[0, 0]), "calls": calls}
        rec["model"] = time_bare_model(model, atoms.numbers, atoms.positions, atoms.cell.array, True,
                                       max(calls, 1), args.warmup)  # as GETCalculator runs it
        rec["get"] = time_calculator(get_calc, atoms, calls, args.warmup, args.stress)
        rec["get"]["overhead_ms"] = (rec["get"]["s_per_call"] - rec["model"]["median_s"]) * 1e3
        print(f"{len(atoms):6d} atoms  GET model {rec['model']['median_s'] * 1e3:9.2f} ms  "
              f"GETCalculator {rec['get']['calls_per_s']:8.3f} calls/s "
              f"(overhead {rec['get']['overhead_ms']:+.2f} ms)", flush=True)
        if mace_calc is not None:
            rec["mace"] = time_calculator(mace_calc, atoms, calls, args.warmup, args.stress)
            print(f"{len(atoms):6d} atoms  MACE          {rec['mace']['calls_per_s']:8.3f} calls/s", flush=True)
        if ani_calc is not None:
            rec["torchani"] = time_calculator(ani_calc, atoms, calls, args.warmup, args.stress)
            print(f"{len(atoms):6d} atoms  torchani      {rec['torchani']['calls_per_s']:8.3f} calls/s",
                  flush=True)
        records.append(rec)
    result = {
        "benchmark": "bench_ase",
        "machine": {**machine_info(threads), "malloc_tuned": tuned},
        "settings": {"model": {"family": "get", **MODEL_CONFIG, "dtype": "float32", "weights": "random",
                               "scripted": True, "parameters": sum(p.numel() for p in model.parameters())},
                     "system": "water box, 1.0 g/cm^3, periodic", "warmup_calls": args.warmup,
                     "stress": args.stress},
        "comparisons": {"mace": mace_status, "torchani": ani_status},
        "results": records,
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
