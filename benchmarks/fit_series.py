"""Can a score member fit the differences *within* congeneric series? A capacity check.

Takes the largest training series of an affinity dataset (``--series 5:8``: the 6th to
8th largest), trains a GET score member on the within-series loss alone (each score error
minus its series mean in the batch, :func:`get_md.train.loss.series_centred`; Adam, no
dropout) and prints the centred training RMSE (pK) as it goes, next to the labels'
within-series spread. A member that cannot bring it well below that spread cannot rank
the ligands of a series, whatever the held-out data.

    python benchmarks/fit_series.py --data data/affinity/train.pt --run runs/affinity/member0 \\
        --init --max-blocks 400 --epochs 20 --lr 1e-3

Options: ``--init`` starts from the run's ``best.pt`` (else random weights with the run's
architecture); ``--set KEY=VALUE`` changes the architecture (e.g. ``d_hidden=96
n_layers=3``, from random weights); ``--max-blocks`` sizes the batches (each holds one
series; 8000 puts a whole series in one batch); ``--full-batch`` trains on the first of
the chosen series (or its first ``--ligands N``) in one batch per step: with
``--epochs`` then counting steps.

Measured 2026-12-06 (2-core Xeon VM, 1 thread, v4 data, v4 member 0's architecture): see
docs/affinity_experiments.md, "A within-series loss (tried, not shipped)".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="a MolecularDataset file with 'score'")
    p.add_argument("--run", type=Path, required=True, help="a member's run folder (best.pt)")
    p.add_argument("--series", default="5:8", help="which series, by size rank (start:stop)")
    p.add_argument("--init", action="store_true", help="start from the run's best.pt")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="architecture changes (JSON values)")
    p.add_argument("--max-blocks", type=int, default=400)
    p.add_argument("--full-batch", action="store_true", help="the first chosen series, one batch a step")
    p.add_argument("--ligands", type=int, help="with --full-batch: only the first N ligands of the series")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--every", type=int, default=5, help="print every N epochs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    from get_md.models import build_model
    from get_md.perf import flush_denormals
    from get_md.train.batching import SeriesBatchSampler, collate, series_of
    from get_md.train.data import MolecularDataset
    from get_md.train.loss import series_centred

    ds = MolecularDataset.load(args.data)
    series = [series_of(s.graph.names[0]) for s in ds]
    names, counts = np.unique(series, return_counts=True)
    start, stop = (int(x) for x in args.series.split(":"))
    chosen = [str(names[i]) for i in np.argsort(-counts, kind="stable")[start:stop]]
    if args.full_batch:
        chosen = chosen[:1]
    index = [i for i, s in enumerate(series) if s in chosen]
    if args.full_batch and args.ligands:
        index = index[:args.ligands]
    groups = [series[i] for i in index]
    sub = ds.subset(index)
    labels = np.array([float(sub[i].targets["score"][0]) for i in range(len(sub))])
    spread = {s: round(float(labels[np.array(groups) == s].std()), 3) for s in chosen}

    best = torch.load(args.run / "best.pt", map_location="cpu", weights_only=True)
    config = dict(best["model_config"], dropout=0.0)
    for item in args.set:
        key, _, value = item.partition("=")
        config[key] = json.loads(value)
    model = build_model("get", **config)
    if args.init:
        if args.set:
            p.error("--init loads the run's weights; --set changes the architecture: choose one")
        model.load_state_dict(best["model"])
    model.train()
    print(json.dumps({"series": chosen, "ligands": len(sub), "label_within_series_std": spread,
                      "weights": sum(t.numel() for t in model.parameters()), "init": args.init,
                      "set": args.set, "max_blocks": args.max_blocks, "full_batch": args.full_batch,
                      "lr": args.lr}), flush=True)

    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    group_id = {s: k for k, s in enumerate(chosen)}
    if args.full_batch:
        batches_of = lambda epoch: [list(range(len(sub)))]  # noqa: E731
    else:
        sampler = SeriesBatchSampler(groups, sub.block_counts(), args.max_blocks, seed=args.seed)

        def batches_of(epoch):
            sampler.set_epoch(epoch)
            return list(sampler)
    t0 = time.perf_counter()
    with flush_denormals():
        for epoch in range(1, args.epochs + 1):
            errors = []
            for batch in batches_of(epoch):
                graph, targets = collate([sub[i] for i in batch])
                err = series_centred(model(*graph.inputs())["score"] - targets["score"],
                                     torch.tensor([group_id[groups[i]] for i in batch]))
                loss = err.pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                errors.append(err.detach())
            if epoch % args.every == 0 or epoch == 1:
                rmse = float(torch.cat(errors).pow(2).mean().sqrt())
                print(json.dumps({"epoch": epoch, "centred_rmse": round(rmse, 3),
                                  "elapsed_s": round(time.perf_counter() - t0, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
