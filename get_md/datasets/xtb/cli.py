"""``python -m get_md.datasets.xtb``: label a plan of molecules into a store and
assemble the data set (the old ``python -m get_md.train.xtb_data`` runs this too)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

from get_md.datasets.xtb.sources import plan_specs
from get_md.datasets.xtb.spec import DEFAULT_PLAN
from get_md.datasets.xtb.store import assemble, generate, summary

log = logging.getLogger("get_md.datasets.xtb")


def scaled_plan(n_molecules: Optional[int], sources: Optional[Sequence[str]] = None) -> Dict[str, int]:
    """DEFAULT_PLAN restricted to ``sources`` and scaled to ``n_molecules`` in total."""
    plan = {k: v for k, v in DEFAULT_PLAN.items() if sources is None or k in sources}
    if n_molecules is None:
        return plan
    total = sum(plan.values())
    scaled = {k: int(round(v * n_molecules / total)) for k, v in plan.items()}
    return {k: max(v, 1) if plan[k] else 0 for k, v in scaled.items()}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the generator from the command line; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m get_md.datasets.xtb",
        description="Generate GFN2-xTB (tblite) energies and forces for organic and "
                    "biomolecular structures; resumable.")
    parser.add_argument("--out", required=True, help="final compressed .npz")
    parser.add_argument("--store", default=None,
                        help="directory of per-molecule results (default: OUT without .npz + '_parts')")
    parser.add_argument("--n-molecules", type=int, default=None,
                        help=f"molecules in total, shared across sources as DEFAULT_PLAN "
                             f"({sum(DEFAULT_PLAN.values())} by default)")
    parser.add_argument("--sources", default=None,
                        help=f"comma-separated subset of {','.join(DEFAULT_PLAN)}, or name=count pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retry-skipped", action="store_true")
    parser.add_argument("--time-limit", type=float, default=None, help="stop after SECONDS (resumable)")
    parser.add_argument("--assemble-only", action="store_true",
                        help="write OUT from the store without labelling more")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    if args.sources and "=" in args.sources:
        plan = {k: int(v) for k, v in (p.split("=") for p in args.sources.split(","))}
    else:
        plan = scaled_plan(args.n_molecules, args.sources.split(",") if args.sources else None)
    store = Path(args.store) if args.store else Path(str(Path(args.out).with_suffix("")) + "_parts")
    t0 = time.time()
    specs = plan_specs(plan, args.seed)
    keys = [s.key for s in specs]
    if not args.assemble_only:
        counts = generate(specs, store, args.seed, retry_skipped=args.retry_skipped,
                          time_limit_s=args.time_limit)
        log.info("labelling: %s in %.0f s", counts, time.time() - t0)
    data = assemble(store, args.out, args.seed, keys=keys)
    info = summary(data)
    info["wall_seconds_this_run"] = round(time.time() - t0, 1)
    info["plan"] = plan
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
