"""N-body throughput: training and inference samples/s of GeoMFormer and GET.

Both models use the hyper-parameters of ``get-md nbody train`` (``model_config``
defaults: 64 channels, 4 layers, 8 heads; GeoMFormer with q_i q_j pair features and
the velocity head, GET with a 20 Å radius graph), random weights, batches of 100
five-particle systems of the charged-particle protocol (frames 30 -> 40), float32.

* training: one optimiser step per batch (forward, loss, backward, AdamW step), the
  loop of ``train_nbody`` without data shuffling;
* inference: ``predict`` (no gradients) over the batch.

Both families are timed in the same run, alternating, so their ratio is robust to
machine noise; absolute figures depend on the load (recorded in the JSON).

Example:
    python benchmarks/bench_nbody.py --threads 1 --out benchmarks/results/bench_nbody.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plugin_common import machine_info  # noqa: E402


def _samples(n: int, seed: int):
    from get_md.workflows.nbody import make_samples, simulate

    return make_samples(simulate(n, seed=seed, n_frames=41))


def _train_step(model, opt, s, batch: int, start: int) -> None:
    from get_md.workflows.nbody import batch_inputs

    idx = torch.arange(start, start + batch) % len(s)
    out = model.forward_with_vectors(*batch_inputs(s.positions[idx], s.velocities[idx], s.charges[idx]))
    loss = (out["vectors"].view(batch, -1, 3) - s.displacement[idx]).pow(2).mean()
    if "velocities" in out:
        loss = loss + 0.1 * (out["velocities"].view(batch, -1, 3) - s.velocities_out[idx]).pow(2).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main(argv=None) -> int:
    from get_md.workflows.nbody import build_nbody_model, model_config, predict

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=100, help="systems per batch")
    p.add_argument("--steps", type=int, default=10, help="timed training steps per round")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds per family")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="JSON file (default: print only)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)

    s = _samples(max(args.batch * 4, 400), seed=11).to(dev)
    models, opts = {}, {}
    for fam in ("geomformer", "get"):
        torch.manual_seed(0)
        m = build_nbody_model(fam, **model_config(fam)).to(dev)
        models[fam] = m
        opts[fam] = torch.optim.AdamW(m.parameters(), lr=1e-4)
        m.train()
        _train_step(m, opts[fam], s, args.batch, 0)  # warm-up
        m.eval()
        predict(m, s.positions, s.velocities, s.charges, batch_size=args.batch)

    train_t = {f: [] for f in models}
    infer_t = {f: [] for f in models}
    n_inf = len(s)
    for _ in range(args.rounds):
        for fam, m in models.items():
            m.train()
            t0 = time.perf_counter()
            for k in range(args.steps):
                _train_step(m, opts[fam], s, args.batch, k * args.batch)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            train_t[fam].append((time.perf_counter() - t0) / (args.steps * args.batch))
            m.eval()
            t0 = time.perf_counter()
            predict(m, s.positions, s.velocities, s.charges, batch_size=args.batch)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            infer_t[fam].append((time.perf_counter() - t0) / n_inf)
    results = {}
    for fam, m in models.items():
        results[fam] = {
            "parameters": int(sum(p.numel() for p in m.parameters())),
            "config": model_config(fam),
            "train_samples_per_s": float(1.0 / np.median(train_t[fam])),
            "inference_samples_per_s": float(1.0 / np.median(infer_t[fam])),
            "train_samples_per_s_rounds": [float(1.0 / t) for t in train_t[fam]],
            "inference_samples_per_s_rounds": [float(1.0 / t) for t in infer_t[fam]],
        }
    ratio = {"train_geomformer_over_get": results["geomformer"]["train_samples_per_s"]
             / results["get"]["train_samples_per_s"],
             "inference_geomformer_over_get": results["geomformer"]["inference_samples_per_s"]
             / results["get"]["inference_samples_per_s"]}
    report = {"benchmark": "bench_nbody", "command": " ".join(["python", "benchmarks/bench_nbody.py",
                                                              *(argv if argv is not None else sys.argv[1:])]),
              "settings": {"batch": args.batch, "steps": args.steps, "rounds": args.rounds,
                           "device": args.device, "dtype": "float32", "n_particles": 5},
              "machine": {**machine_info(args.threads), "load_average_end": list(os.getloadavg())},
              "results": results, "ratios": ratio}
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
