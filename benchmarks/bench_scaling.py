"""Cost of a GET force call against system size, sizes timed in turns.

The bare model call (forward + the autograd backward that gives forces; GET of
``plugin_common.MODEL_CONFIG``, random weights, TorchScript, float32) on periodic water
boxes of ``--sizes`` atoms, timed A B A B ... ``--rounds`` times in one process so that
the machine's drift over minutes affects every size alike (``bench_openmm.py`` times
the sizes one after the other). Reports per-size medians, the ratio of the largest to
the smallest median and the ratio in each round. Target of the OpenMM / ASE issue:
10,000 atoms in at most 11x the time of 1,000.

    python benchmarks/bench_scaling.py --threads 1 --rounds 5
"""

from __future__ import annotations

import argparse
import json
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
    fns, atoms = {}, {}
    for size in args.sizes:
        z, pos, cell = water_box(size)
        call, _ = bare_model_call(model, z, pos, cell, True)
        for _ in range(args.warmup):
            call()
        fns[str(size)] = (call, 1)
        atoms[str(size)] = int(len(z))
    times = interleaved_times(fns, args.rounds)
    small, large = str(min(args.sizes)), str(max(args.sizes))
    ratio = times[large]["median_s"] / times[small]["median_s"]
    per_round = [b / a for a, b in zip(times[small]["samples_s"], times[large]["samples_s"], strict=True)]
    for size in args.sizes:
        t = times[str(size)]
        print(f"{atoms[str(size)]:6d} atoms  median {t['median_s']:.3f} s  samples "
              + " ".join(f"{x:.3f}" for x in t["samples_s"]))
    print(f"{large}/{small}: ratio of medians {ratio:.2f}x, per round "
          + " ".join(f"{r:.2f}" for r in per_round))
    result = {"benchmark": "bench_scaling", "machine": {**machine_info(args.threads), "malloc_tuned": tuned},
              "settings": {"model": {"family": "get", **MODEL_CONFIG, "dtype": "float32", "weights": "random"},
                           "system": "water box, 1.0 g/cm^3 (periodic)", "rounds": args.rounds,
                           "warmup": args.warmup, "what": "forward + autograd backward for forces, plain executor"},
              "atoms": atoms, "times": times, "ratio_of_medians": ratio, "ratio_per_round": per_round}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
