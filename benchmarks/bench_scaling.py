"""Cost of a GET force call against system size, sizes timed in turns.

The bare model call (forward + the autograd backward that gives forces; GET of
``plugin_common.MODEL_CONFIG``, random weights, TorchScript, float32) on periodic water
boxes of ``--sizes`` atoms, timed A B A B ... ``--rounds`` times in one process so that
the machine's drift over minutes affects every size alike (``bench_openmm.py`` times
the sizes one after the other). Reports per-size medians, the ratio of the largest to
the smallest median, of the minima (each size's least disturbed call), the ratio in
each round, and the ratio of the calls' thread CPU times (``time.thread_time``; with one
torch thread the call runs on the calling thread), which time lost to other work on
the machine does not inflate. Target of the OpenMM / ASE issue:
10,000 atoms in at most 11x the time of 1,000.

    python benchmarks/bench_scaling.py --threads 1 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
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

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_scaling.json"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    add_allocator_option(p)
    args = p.parse_args(argv)
    tuned = apply_allocator_option(args)
    torch.set_num_threads(args.threads)
    model = torch.jit.script(build_model())
    fns, atoms, cpu = {}, {}, {}
    for size in args.sizes:
        z, pos, cell = water_box(size)
        call, _ = bare_model_call(model, z, pos, cell, True)
        for _ in range(args.warmup):
            call()
        cpu[str(size)] = []

        def timed(call=call, record=cpu[str(size)]):
            t0 = time.thread_time()  # CPU time of this thread (1 torch thread: the call's)
            call()
            record.append(time.thread_time() - t0)

        fns[str(size)] = (timed, 1)
        atoms[str(size)] = int(len(z))
    times = interleaved_times(fns, args.rounds)
    for size in args.sizes:
        times[str(size)]["cpu_s"] = cpu[str(size)]
    small, large = str(min(args.sizes)), str(max(args.sizes))
    ratio = times[large]["median_s"] / times[small]["median_s"]
    ratio_min = times[large]["min_s"] / times[small]["min_s"]  # best case of each: least disturbed
    per_round = [b / a for a, b in zip(times[small]["samples_s"], times[large]["samples_s"], strict=True)]
    for size in args.sizes:
        t = times[str(size)]
        print(f"{atoms[str(size)]:6d} atoms  median {t['median_s']:.3f} s  samples "
              + " ".join(f"{x:.3f}" for x in t["samples_s"]))
    print(f"{large}/{small}: ratio of medians {ratio:.2f}x, of minima {ratio_min:.2f}x, per round "
          + " ".join(f"{r:.2f}" for r in per_round))
    cpu_ratio = statistics.median(cpu[large]) / statistics.median(cpu[small])
    print(f"{large}/{small}: ratio of median thread CPU times {cpu_ratio:.2f}x")
    result = {"benchmark": "bench_scaling", "machine": {**machine_info(args.threads), "malloc_tuned": tuned},
              "settings": {"model": {"family": "get", **MODEL_CONFIG, "dtype": "float32", "weights": "random"},
                           "system": "water box, 1.0 g/cm^3 (periodic)", "rounds": args.rounds,
                           "warmup": args.warmup, "what": "forward + autograd backward for forces, plain executor"},
              "atoms": atoms, "times": times, "ratio_of_medians": ratio, "ratio_of_minima": ratio_min, "cpu_ratio_of_medians": cpu_ratio,
              "ratio_per_round": per_round}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
