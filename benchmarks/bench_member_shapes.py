"""What a score ensemble's shape costs: rescoring throughput of random-weight ensembles
that differ from the shipped ``get-affinity`` in members, width or depth.

Speed does not depend on the weights once subnormals are flushed (every workflow call
does, :func:`get_md.perf.flush_denormals`), so a random-weight file of a shape says what
a trained one of that shape would cost before hours of training are spent on it. Each
variant is the shipped file's config with some settings changed, exported with the
shipped metadata (its own pocket, heavy atoms only), then timed with
``benchmarks/bench_rescore.py`` (10 Å pocket, 32 poses, ``--threads``) in its own process,
the shipped file first, in one run.

    python benchmarks/bench_member_shapes.py --threads 2
    python benchmarks/bench_member_shapes.py --threads 1 --variants m4_h48_l1 m4_h32_l1

Result: ``benchmarks/results/bench_member_shapes.json`` (end-to-end and model-call
poses/s per variant).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name -> settings changed from the shipped file's config ("members": ensemble size)
VARIANTS = {
    "m4_h48_l2": {},
    "m2_h48_l2": {"members": 2},
    "m4_h32_l2": {"d_hidden": 32},
    "m4_h48_l1": {"n_layers": 1},
    "m4_h32_l1": {"d_hidden": 32, "n_layers": 1},
    "m2_h32_l1": {"members": 2, "d_hidden": 32, "n_layers": 1},
    "m4_h48_l2_r8": {"d_radial": 8, "n_rbf": 8},
}


def write_variant(name: str, meta: dict, out: Path, seed: int = 0) -> tuple[Path, int]:
    """A random-weight ensemble file of the shipped config (``meta``: the shipped file's
    metadata) with ``VARIANTS[name]`` applied, and its number of weights."""
    import torch

    from get_md import export
    from get_md.models.ensemble import build_ensemble

    config = {**meta["config"], **VARIANTS[name]}
    members = int(config.pop("members", 4))
    torch.manual_seed(seed)
    model = build_ensemble(meta["family"], members=members, **config).eval()
    keep = {k: meta[k] for k in ("elements", "blocks", "pocket_radius", "builder", "outputs") if k in meta}
    keep["description"] = f"random weights, shape {name} (bench_member_shapes.py)"
    path = out / f"{name}.pt"
    export.save(model, path, keep)
    return path, sum(p.numel() for p in model.parameters())


def time_file(model: str, threads: int, out: Path) -> dict:
    """``bench_rescore.py`` on ``model`` (a file or shipped name) in its own process; the
    command is recorded with the file's name only (it lives in a temporary folder)."""
    settings = ["--radii", "10", "--target-atoms", "0", "--n-poses", "32", "--threads", str(threads),
                "--repeats", "2", "--skip", "frames", "vina"]
    subprocess.run([sys.executable, str(HERE / "bench_rescore.py"), "--model", model, *settings, "--out", str(out)],
                   check=True, capture_output=True, text=True)
    res = json.loads(out.read_text())
    return {"e2e_poses_per_s": res["poses"]["e2e"]["poses_per_s_best"],
            "model_poses_per_s": res["poses"]["model"]["poses_per_s_best"],
            "command": " ".join(["python benchmarks/bench_rescore.py --model", Path(model).name, *settings])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out", type=Path, default=HERE / "results" / "bench_member_shapes.json")
    args = p.parse_args(argv)
    from get_md import export
    from get_md.runtime import resolve_model_path

    meta = export.read_metadata(resolve_model_path("get-affinity", task="score"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results["shipped"] = time_file("get-affinity", args.threads, tmp / "shipped.json")
        for name in args.variants:
            path, n_params = write_variant(name, meta, tmp)
            results[name] = {"settings": VARIANTS[name], "parameters": n_params,
                             **time_file(str(path), args.threads, tmp / f"{name}.json")}
            print(name, results[name]["e2e_poses_per_s"], results[name]["model_poses_per_s"], flush=True)
    args.out.write_text(json.dumps({"benchmark": "bench_member_shapes", "threads": args.threads,
                                    "results": results}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
