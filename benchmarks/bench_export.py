"""TorchScript vs pt2 (torch.export) vs torch.compile for a shipped potential: energy and
forces (forward + backward) per call, export and compile time, break-even call count.

    OMP_NUM_THREADS=1 python benchmarks/bench_export.py --sizes 100 1000 --repeats 5

Writes benchmarks/results/export_formats.json. Structures: atoms on a jittered cubic grid
(1.5 Å spacing, elements H C N O), one structure per call, one torch thread by default.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from get_md import export, runtime
from get_md.graph import MolecularGraph
from get_md.models import build_model
from get_md.perf import tune_cpu_allocator

RESULTS = Path(__file__).parent / "results" / "export_formats.json"


def structure(n: int, seed: int = 0) -> MolecularGraph:
    gen = torch.Generator().manual_seed(seed)
    side = int(round(n ** (1 / 3))) + 1
    grid = torch.stack(torch.meshgrid(*[torch.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)[:n]
    pos = grid.double() * 1.5 + 0.1 * torch.randn(n, 3, generator=gen, dtype=torch.float64)
    z = torch.tensor([1, 6, 7, 8])[torch.randint(4, (n,), generator=gen)]
    return MolecularGraph.from_atoms(pos.float(), z)


def timed(lm: runtime.LoadedModel, g: MolecularGraph, repeats: int) -> list:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        r = lm.run_graph(g)
        r["forces"].sum().item()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="get-xtb-organic")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tune_cpu_allocator()

    ts_path = runtime.resolve_model_path(args.model)
    module, meta = export.load(ts_path)
    eager = build_model(meta["family"], **meta["config"])
    eager.load_state_dict(module.state_dict())
    tmp = Path(tempfile.mkdtemp())
    t = time.perf_counter()
    keep = {k: v for k, v in meta.items() if k not in export._COMPUTED and k not in ("family", "task", "cutoff")}
    export.save(eager.eval(), tmp / "model.pt2", keep, format="pt2")
    export_s = time.perf_counter() - t

    ts = runtime.load(str(ts_path), args.device, compile=False)
    p2 = runtime.load(str(tmp / "model.pt2"), args.device, compile=False)
    results = {"model": args.model, "weights_sha256": meta["weights_sha256"], "threads": args.threads,
               "device": args.device, "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
               "export_seconds": round(export_s, 2), "sizes": {}}
    for n in args.sizes:
        g = structure(n)
        row = {}
        for name, lm in (("torchscript", ts), ("pt2", p2)):
            lm.run_graph(g)  # warm-up (TorchScript's first calls optimise)
            row[name] = timed(lm, g, args.repeats)
        comp = runtime.load(str(tmp / "model.pt2"), args.device, compile=True)
        t = time.perf_counter()
        comp.run_graph(g)
        first = time.perf_counter() - t
        failed = comp.module.runner.failed
        row["compile"] = timed(comp, g, args.repeats)
        med = {k: statistics.median(v) for k, v in row.items()}
        gain = med["pt2"] - med["compile"]
        entry = {f"{k}_s_per_call": round(v, 4) for k, v in med.items()}
        entry.update({f"{k}_all_s": [round(x, 4) for x in v] for k, v in row.items()})
        entry["compile_first_call_s"] = round(first, 2)
        entry["compile_failed"] = failed
        entry["compile_breakeven_calls"] = (None if gain <= 0 or failed
                                            else int((first - med["compile"]) / gain) + 1)
        results["sizes"][str(n)] = entry
        print(n, json.dumps({k: v for k, v in entry.items() if not k.endswith("_all_s")}), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
