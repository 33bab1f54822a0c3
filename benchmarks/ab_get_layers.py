"""A/B timing of two versions of ``get_md/models/get_layers.py`` in one process.

Separate processes on a shared machine differ by up to 1.3x for their whole life, so a
small change is timed here by loading an older copy of the module beside the working
tree's and alternating calls of the two GET encoders (same weights seed, same inputs as
``bench_get.py``, 1 torch thread): old, new, new, old, ... Prints the largest output
difference, each version's median and minimum, and the ratio old / new.

    git show HEAD~1:get_md/models/get_layers.py > /tmp/get_layers_old.py
    python benchmarks/ab_get_layers.py /tmp/get_layers_old.py --blocks 200 --rounds 10
    python benchmarks/ab_get_layers.py /tmp/get_layers_old.py --blocks 200 --rounds 10 --mode fwd

Since issue 15 the attention layer ``GETLayer`` lives in ``get_attention.py``, which
``get_layers.py`` imports; an old ``get_layers.py`` from after that split would import
the working tree's layer, so pass the old ``get_attention.py`` too (older revisions hold
both in ``get_layers.py``):

    git show REV:get_md/models/get_attention.py > /tmp/get_attention_old.py
    python benchmarks/ab_get_layers.py /tmp/get_layers_old.py --old-attention /tmp/get_attention_old.py
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import bench_get  # noqa: E402

ATTENTION = "get_md.models.get_attention"


def load_module(path: Path, name: str, attention=None):
    """Import the file at ``path`` as a module called ``name``; with ``attention`` (a
    module), its ``from get_md.models.get_attention import ...`` binds that module's names."""
    saved = sys.modules.get(ATTENTION)
    if attention is not None:
        sys.modules[ATTENTION] = attention
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is not None:
            sys.modules[ATTENTION] = saved
        else:
            sys.modules.pop(ATTENTION, None)
    return module


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", type=Path, help="the other get_layers.py")
    p.add_argument("--old-attention", type=Path, default=None,
                   help="the get_attention.py that goes with it (revisions after issue 15)")
    p.add_argument("--blocks", type=int, default=200)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--mode", choices=["fwd", "fwd_bwd"], default="fwd_bwd")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    old_attention = None if args.old_attention is None else load_module(args.old_attention, "get_attention_old")
    versions = {"old": load_module(args.old, "get_layers_old", old_attention),
                "new": load_module(HERE.parent / "get_md" / "models" / "get_layers.py", "get_layers_new")}
    inp = bench_get.make_inputs(args.blocks, bench_get.MODEL_CONFIG["d_hidden"], 16, 0)
    models = {}
    for key, module in versions.items():
        torch.manual_seed(0)
        models[key] = module.GETEncoder(act_fn=torch.nn.SiLU(), **dict(bench_get.MODEL_CONFIG, d_edge=16)).eval()

    def call(model):
        args_ = (inp["H"], inp["Z"], inp["block_id"], inp["batch_id"], inp["edges"], inp["edge_attr"])
        if args.mode == "fwd":
            with torch.no_grad():
                return model(*args_)
        for prm in model.parameters():
            prm.grad = None
        Z = inp["Z"].clone().requires_grad_(True)
        H, Z_out = model(args_[0], Z, *args_[2:])
        (H.pow(2).mean() + Z_out.pow(2).mean()).backward()
        return H, Z_out

    a, b = call(models["old"]), call(models["new"])
    print(f"max |H_old - H_new| {(a[0] - b[0]).abs().max().item():.3g}, "
          f"max |Z_old - Z_new| {(a[1] - b[1]).abs().max().item():.3g}")
    times = {key: [] for key in models}
    for r in range(args.rounds):
        for key in (("old", "new") if r % 2 == 0 else ("new", "old")):
            t0 = time.perf_counter()
            call(models[key])
            times[key].append(time.perf_counter() - t0)
    for key, ts in times.items():
        print(f"{key}: median {statistics.median(ts):.3f} s, min {min(ts):.3f} s")
    print(f"old / new: ratio of medians {statistics.median(times['old']) / statistics.median(times['new']):.3f}, "
          f"of minima {min(times['old']) / min(times['new']):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
