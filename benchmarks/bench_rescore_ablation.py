"""What the pose-rescoring speed-ups bring: ``rescore_poses`` end to end with pocket
reuse on / off and one / two batches at a time, configurations timed in turns.

Same system as ``bench_rescore.py``: prolif's receptor, its 9 Vina poses repeated to
``--n-poses``, pocket radius ``--radius`` around the crystal ligand, the shipped default
potential. Pocket reuse (``GET.forward_in_environment``) is switched off by making
``workflows.rescoring.poses.environment_cache`` return None; ``--parallel`` is the workflow's
option. Each configuration runs once per round, ``--rounds`` rounds; best and median
poses/s are reported. With ``--frames N``, also ``rescore_trajectory`` on N frames of
prolif's trajectory (same pocket radius) with the frame's pocket reused in its complex
or not (``workflows.rescoring.trajectory.build_environment`` returning None), default
``--parallel``.

    python benchmarks/bench_rescore_ablation.py --threads 2 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rescore import DATA, machine_info, make_pose_file  # noqa: E402
from plugin_common import write_result  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "bench_rescore_ablation.json"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-poses", type=int, default=90)
    p.add_argument("--radius", type=float, default=2.5, help="pocket radius, Å (bench_rescore's choice)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=0, help="also time trajectory frames (0: no)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)

    from get_md.workflows.rescoring import poses as P
    from get_md.workflows.rescoring import trajectory as T

    from get_md.perf import tune_cpu_allocator

    tune_cpu_allocator()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp())
    pose_file = make_pose_file(args.n_poses, tmp)
    reuse = P.environment_cache
    common = dict(reference=DATA / "lig.pdb", pocket_radius=args.radius, progress=False, resume=False,
                  out_csv=tmp / "o.csv", out_sdf=tmp / "o.sdf")
    P.rescore_poses(DATA / "rec.pdb", pose_file, None, **common)  # warm-up
    configs = [(par, env) for par in (1, 2) for env in (True, False)]
    rates: dict = {c: [] for c in configs}
    try:
        for _ in range(args.rounds):
            for par, env in configs:
                P.environment_cache = reuse if env else (lambda spec, graph: None)
                t0 = time.perf_counter()
                P.rescore_poses(DATA / "rec.pdb", pose_file, None, parallel=par, **common)
                rates[(par, env)].append(args.n_poses / (time.perf_counter() - t0))
    finally:
        P.environment_cache = reuse
    frames: dict = {}
    if args.frames:
        from bench_rescore import _prolif_data

        build = T.build_environment
        stride = max(1, 250 // args.frames)
        tcommon = dict(ligand="resname LIG", stride=stride, stop=stride * args.frames, pocket_radius=args.radius,
                       progress=False, resume=False, out_csv=tmp / "t.csv")
        xtc = _prolif_data() / "traj.xtc"
        T.rescore_trajectory(DATA / "top.pdb", xtc, None, **tcommon)  # warm-up
        frames = {True: [], False: []}
        try:
            for _ in range(args.rounds):
                for env in (True, False):
                    T.build_environment = build if env else (lambda spec, graph: None)
                    t0 = time.perf_counter()
                    T.rescore_trajectory(DATA / "top.pdb", xtc, None, **tcommon)
                    frames[env].append(args.frames / (time.perf_counter() - t0))
        finally:
            T.build_environment = build
    rows = []
    for env, r in frames.items():
        rows.append({"what": "frames", "pocket_reuse": env, "frames_per_s": r, "best": max(r),
                     "median": statistics.median(r)})
        print(f"frames  pocket reuse {'on ' if env else 'off'}  best {max(r):5.1f}  "
              f"median {statistics.median(r):5.1f} frames/s")
    for (par, env), r in rates.items():
        rows.append({"what": "poses", "parallel": par, "pocket_reuse": env, "poses_per_s": r,
                     "best": max(r), "median": statistics.median(r)})
        print(f"parallel {par}  pocket reuse {'on ' if env else 'off'}  best {max(r):5.1f}  "
              f"median {statistics.median(r):5.1f} poses/s")
    result = {"benchmark": "bench_rescore_ablation", "machine": machine_info(args.threads),
              "settings": vars(args) | {"out": str(args.out)}, "results": rows}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
