"""A/B timing of training steps with and without :func:`get_md.perf.flush_denormals`.

Trains a GET member on a subset of an affinity dataset (forward, MSE on ``score``,
backward, AdamW step), alternating epochs with subnormals kept and flushed in one
process (plain, flush, plain, flush, ...), and prints each epoch's time. Starting from a
trained member's weights matters: random weights make few subnormal activations.

    python benchmarks/ab_flush_training.py --data data/affinity/train.pt \\
        --run runs/affinity/member0 --samples 120 --rounds 2

Measured 2026-12-06 (2-core Xeon VM, 1 thread, 120 complexes of the v4 affinity data,
weights of v4 member 0): plain 8.2 / 7.8 s, flushed 5.1 / 5.0 s an epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="a MolecularDataset file with 'score'")
    p.add_argument("--run", type=Path, required=True, help="a member's run folder (config.json, best.pt)")
    p.add_argument("--samples", type=int, default=120)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-blocks", type=int, default=400)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from get_md.perf import flush_denormals
    from get_md.train.batching import BlockBatchSampler, collate
    from get_md.train.data import MolecularDataset
    from get_md.train.loop import build_model_for

    config = json.loads((args.run / "config.json").read_text())
    model = build_model_for(config["family"], config["model"], None)
    model.load_state_dict(torch.load(args.run / "best.pt", map_location="cpu", weights_only=True)["model"])
    model.train()
    data = MolecularDataset.load(args.data)
    stride = max(1, len(data) // args.samples)
    subset = data.subset(list(range(0, len(data), stride))[:args.samples])
    batches = list(BlockBatchSampler(subset.block_counts(), args.max_blocks, shuffle=False))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def epoch() -> float:
        t0 = time.perf_counter()
        for batch in batches:
            graph, targets = collate([subset[i] for i in batch])
            loss = (model(*graph.inputs())["score"].view(-1) - targets["score"].view(-1)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return time.perf_counter() - t0

    for _ in range(args.rounds):
        for name, context in (("plain", contextlib.nullcontext), ("flush", flush_denormals)):
            with context():
                print(f"{name}: {epoch():.1f} s for {len(subset)} samples", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
