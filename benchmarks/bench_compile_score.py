"""Does ``torch.compile`` pay for the score model? TorchScript file vs the same weights
eager vs eager through ``torch.compile`` (Inductor, dynamic shapes), model calls only.

A score ensemble (``get-affinity``) cannot be exported to pt2 (its heavy-atom and receptor
selections depend on the data, :mod:`get_md.export_pt2`), so the only compiled path is the
eager model (:func:`get_md.export.rebuild`) through :func:`get_md.runtime.compile_module`,
where ``torch.compile`` breaks the graph at each data-dependent selection. Inputs are the
batches ``bench_rescore.py`` times (its receptor, 10 Å pocket, ``--n-poses`` copies of the
example poses, ``--batch-size`` poses a call); the three are timed in turns, ``--rounds``
times, one torch thread by default; the first compiled call (compilation) is timed apart.

    OMP_NUM_THREADS=1 python benchmarks/bench_compile_score.py --model get-affinity --rounds 3

Result: ``benchmarks/results/bench_compile_score.json`` (seconds per pass over all poses,
median and minimum per variant, compile time, largest score difference to TorchScript).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rescore import DATA, machine_info, make_pose_file  # noqa: E402
from plugin_common import write_result  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "bench_compile_score.json"


def batches(n_poses: int, radius: float, batch_size: int, tmp: Path) -> list:
    """Input tuples of the complexes of ``n_poses`` poses, ``batch_size`` per call."""
    from get_md.workflows.poses import load_receptor, load_reference

    from get_md.build import iter_poses, make_complex, select_pocket
    from get_md.graph import batch_graphs

    pocket = select_pocket(load_receptor(DATA / "rec.pdb"), load_reference(DATA / "lig.pdb")[0], radius)
    cplx = [make_complex(pocket, r.graph) for r in iter_poses(make_pose_file(n_poses, tmp), segment_id=1)]
    return [batch_graphs(cplx[i:i + batch_size]).inputs() for i in range(0, len(cplx), batch_size)]


def main(argv=None) -> int:
    from get_md import export, runtime
    from get_md.perf import flush_denormals, plain_executor

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="get-affinity")
    ap.add_argument("--n-poses", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--radius", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    path = runtime.resolve_model_path(args.model, task="score")
    scripted, meta = export.load(path)
    eager, _ = export.rebuild(path)
    for mod in (scripted, *getattr(eager, "members", [])):
        if hasattr(mod, "compute_forces"):
            mod.compute_forces = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = runtime.compile_module(eager, str(path))
    with tempfile.TemporaryDirectory() as tmp:
        inputs = batches(args.n_poses, args.radius, args.batch_size, Path(tmp))

    def run(mod) -> torch.Tensor:
        return torch.cat([mod(*x)["score"] for x in inputs])

    times: dict[str, list[float]] = {"torchscript": [], "eager": [], "compiled": []}
    mods = {"torchscript": scripted, "eager": eager, "compiled": compiled}
    with torch.no_grad(), plain_executor(), flush_denormals():
        ref = run(scripted)
        t0 = time.perf_counter()
        got = run(compiled)  # compiles (a batch of another size may compile again)
        compile_s = time.perf_counter() - t0
        run(compiled)
        run(eager)
        for _ in range(args.rounds):
            for name, mod in mods.items():
                t0 = time.perf_counter()
                run(mod)
                times[name].append(time.perf_counter() - t0)
    summary = {name: {"median_s": statistics.median(t), "min_s": min(t), "times_s": t,
                      "poses_per_s_median": args.n_poses / statistics.median(t)} for name, t in times.items()}
    ratio = {name: summary["torchscript"]["median_s"] / s["median_s"] for name, s in summary.items()}
    result = {
        "benchmark": "bench_compile_score",
        "machine": machine_info(args.threads),
        "settings": vars(args) | {"model_path": str(path), "weights_sha256": meta.get("weights_sha256")},
        "complex_atoms_per_batch": [int(x[0].shape[0]) for x in inputs],
        "summary": summary,
        "speed_vs_torchscript": ratio,
        "first_compiled_pass_s": compile_s,
        "max_abs_score_difference_compiled_vs_torchscript": float((got - ref).abs().max()),
    }
    for name, s in summary.items():
        print(f"{name:12s} {s['median_s']:.3f} s per {args.n_poses} poses (min {s['min_s']:.3f}); "
              f"x{ratio[name]:.2f} of TorchScript")
    print(f"first compiled pass {compile_s:.1f} s; max |score difference| {result['max_abs_score_difference_compiled_vs_torchscript']:.2e}")
    write_result(Path(args.out), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
