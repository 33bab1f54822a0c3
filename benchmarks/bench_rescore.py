"""Rescoring throughput: poses/s and frames/s of get_md's workflows against AutoDock Vina.

System: prolif's GPCR receptor (``tests/data/prolif/rec.pdb``) and its 9 Vina poses of
the 79-atom ligand LIG, repeated to ``--n-poses``; the pocket is cut around the crystal
ligand (``lig.pdb``, ``--reference``) with the radius (from ``--radii``) that makes
pocket + ligand closest to ``--target-atoms`` (300). Frames: prolif's ``traj.xtc`` (same complex, 250 frames),
``--frames`` of them, same pocket radius.

Measured, in one process and one run:

* ``poses_e2e``: :func:`get_md.workflows.poses.rescore_poses` end to end (receptor
  parsing, union pocket, pose parsing, complexes, model, CSV + SDF writing), best and
  median of ``--repeats``;
* ``poses_model``: the batched model calls alone on prebuilt complexes (for a potential:
  complex + ligand graphs per pose reusing the pocket's terms as the workflow does, the
  pocket once), one call at a time (the workflow runs one batch per thread at once);
* ``frames_e2e`` / ``frames_model``: the same for
  :func:`get_md.workflows.trajectory.rescore_trajectory` (complex + pocket + ligand per
  frame for a potential, the complex reusing its frame's pocket terms; model:
  ``score_frames`` one batch at a time);
* ``vina``: AutoDock Vina 1.2 ``score()`` (score_only) of the same poses (Vina PDBQT
  files), receptor PDBQT prepared by meeko's ``mk_prepare_receptor.py``; the grid-map
  computation is timed separately. If vina or meeko is missing the reason is recorded.

Model: ``--model`` (file or shipped name); default the shipped default potential when
installed, else a GET potential with random weights: d_hidden=64, 3 layers, cutoff 5 Å
(speed does not depend on the weights).

    python benchmarks/bench_rescore.py                       # CPU, default threads
    python benchmarks/bench_rescore.py --threads 1 --n-poses 45 --frames 25
    python benchmarks/bench_rescore.py --device cuda --batch-size 64

Result: ``benchmarks/results/bench_rescore.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plugin_common import add_allocator_option, apply_allocator_option, write_result  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT / "tests" / "data" / "prolif"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "bench_rescore.json"
BENCH_MODEL = dict(d_hidden=64, d_radial=32, n_rbf=16, n_head=4, n_layers=3, cutoff=5.0)


def _prolif_data() -> Path:
    import prolif

    return Path(prolif.__file__).resolve().parent / "data"


def machine_info(threads: int) -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "available_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": threads,
        "loadavg_start": list(os.getloadavg()),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------ model
def resolve_model(arg, tmp: Path) -> tuple[str, dict]:
    from get_md import export, runtime, zoo

    if arg:
        path = runtime.resolve_model_path(arg)
        return str(path), {"source": str(arg), **_meta_summary(export.read_metadata(path))}
    info = zoo.available().get(zoo.DEFAULT_POTENTIAL)
    if info and info.get("present"):
        path = zoo.path(zoo.DEFAULT_POTENTIAL)
        return str(path), {"source": f"shipped default potential {zoo.DEFAULT_POTENTIAL}",
                           **_meta_summary(export.read_metadata(path))}
    from get_md.models import build_model

    torch.manual_seed(0)
    model = build_model("get", **BENCH_MODEL)
    path = tmp / "bench_get_d64_l3.pt"
    export.save(model, path, {"description": "benchmark: random weights"})
    return str(path), {"source": "GET potential, random weights (no shipped default installed)",
                       **_meta_summary(export.read_metadata(path))}


def _meta_summary(meta: dict) -> dict:
    cfg = meta.get("config") or {}
    keys = ("d_hidden", "d_radial", "n_rbf", "n_head", "n_layers", "cutoff", "mode", "task")
    return {"family": meta.get("family"), "task": meta.get("task"),
            "config": {k: cfg.get(k) for k in keys if k in cfg}}


# ------------------------------------------------------------------------------ system
def make_pose_file(n_poses: int, tmp: Path) -> Path:
    text = (DATA / "vina_output.sdf").read_text()
    records = [r for r in text.split("$$$$\n") if r.strip()]
    out = tmp / f"poses_{n_poses}.sdf"
    with open(out, "w") as fh:
        for i in range(n_poses):
            fh.write(records[i % len(records)] + "$$$$\n")
    return out


def choose_radius(radii, target_atoms: int) -> tuple[float, int, int]:
    """Pocket radius around the crystal ligand giving pocket + ligand closest to the target."""
    from get_md.workflows.poses import load_receptor, load_reference

    from get_md.build import select_pocket

    rec = load_receptor(DATA / "rec.pdb")
    ref, _ = load_reference(DATA / "lig.pdb")
    best = None
    for r in radii:
        pocket = select_pocket(rec, ref, r)
        total = pocket.num_atoms + 79
        if best is None or abs(total - target_atoms) < abs(best[1] + 79 - target_atoms):
            best = (r, pocket.num_atoms, pocket.num_blocks)
    return best


_CPU: list[float] = []


def _timed(fn, repeats: int, device: str) -> list[float]:
    """Wall times of ``repeats`` calls; the process CPU times go to ``_CPU``."""
    out = []
    _CPU.clear()
    for _ in range(repeats):
        _sync(device)
        t, c = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t)
        _CPU.append(time.process_time() - c)
    return out


def _summary(times: list[float], n: int, unit: str, cpu: list[float] | None = None) -> dict:
    best, med = min(times), statistics.median(times)
    cpu = list(_CPU) if cpu is None else cpu
    out = {"n": n, "seconds": times, "best_s": best, "median_s": med,
           f"{unit}_per_s_best": n / best, f"{unit}_per_s_median": n / med}
    if cpu:
        out["cpu_seconds"] = cpu
        out[f"{unit}_per_cpu_s"] = n / statistics.median(cpu)
    return out


# ------------------------------------------------------------------------------ get_md
def bench_poses(model: str, poses: Path, radius: float, args, tmp: Path) -> dict:
    from get_md.workflows._common import environment_cache, run_model
    from get_md.workflows._common import resolve_model as resolve_spec
    from get_md.workflows.poses import load_receptor, load_reference, pocket_index, rescore_poses

    from get_md.build import iter_poses, make_complex, select_pocket
    from get_md.graph import batch_graphs

    common = dict(reference=DATA / "lig.pdb", pocket_radius=radius, batch_size=args.batch_size,
                  device=args.device, progress=False, resume=False)

    def e2e():
        rescore_poses(DATA / "rec.pdb", poses, model, out_csv=tmp / "p.csv", out_sdf=tmp / "p.sdf", **common)

    rescore_poses(DATA / "rec.pdb", DATA / "vina_output.sdf", model, **common)  # warm-up
    e2e_times = _timed(e2e, args.repeats, args.device)
    e2e_cpu = list(_CPU)

    spec, _ = resolve_spec(model, args.device)
    rec = load_receptor(DATA / "rec.pdb")
    pocket = select_pocket(rec, load_reference(DATA / "lig.pdb")[0], radius)
    ligs = [r.graph for r in iter_poses(poses, segment_id=1)]
    cplx = [make_complex(pocket, g) for g in ligs]
    bs = args.batch_size or 16

    cache = environment_cache(spec, pocket)  # the pocket's reusable terms, as the workflow does

    def model_only():
        if spec.is_potential:
            run_model(spec, pocket)
        for i in range(0, len(cplx), bs):
            graphs = cplx[i:i + bs] + (ligs[i:i + bs] if spec.is_potential else [])
            env = None if cache is None else (pocket_index(pocket, ligs[i:i + bs]), cache)
            run_model(spec, batch_graphs(graphs), env)

    model_only()  # warm-up
    model_times = _timed(model_only, args.repeats, args.device)
    return {"e2e": _summary(e2e_times, len(ligs), "poses", e2e_cpu),
            "model": _summary(model_times, len(ligs), "poses"),
            "batch_size": bs, "complex_atoms": cplx[0].num_atoms}


def bench_frames(model: str, radius: float, args, tmp: Path) -> dict:
    import mdtraj as md
    import numpy as np
    from get_md.workflows._common import resolve_model as resolve_spec
    from get_md.workflows.trajectory import choose_pocket, rescore_trajectory, score_frames

    from get_md.build import topology_template

    top_path, xtc = DATA / "top.pdb", _prolif_data() / "traj.xtc"
    stride = max(1, 250 // args.frames)
    common = dict(ligand="resname LIG", stride=stride, stop=stride * args.frames,
                  pocket_radius=radius, batch_size=args.batch_size, device=args.device,
                  progress=False, resume=False)

    def e2e():
        return rescore_trajectory(top_path, xtc, model, out_csv=tmp / "t.csv", **common)

    n = len(rescore_trajectory(top_path, xtc, model, **{**common, "stop": stride * 2}))  # warm-up
    e2e_times = _timed(e2e, args.repeats, args.device)
    e2e_cpu = list(_CPU)
    n = len(e2e())

    spec, _ = resolve_spec(model, args.device)
    traj = md.load(str(xtc), top=str(top_path), stride=stride)[: args.frames]
    top = traj.topology
    rec_idx, lig_idx = top.select("protein"), top.select("resname LIG")
    sel = np.union1d(choose_pocket(top, traj.xyz[0], rec_idx, lig_idx, radius), lig_idx)
    seg = np.isin(sel, lig_idx).astype(np.int64)
    tpl = topology_template(top, sel, segments=seg).graph
    lig_mask = torch.as_tensor(seg.astype(bool))
    pos = [torch.as_tensor(traj.xyz[i][sel] * 10.0) for i in range(traj.n_frames)]
    bs = args.batch_size or 16

    def model_only():  # the workflow's batch scorer on prebuilt positions, one batch at a time
        for i in range(0, len(pos), bs):
            score_frames(spec, tpl, lig_mask, [(k, 0.0, p.numpy()) for k, p in enumerate(pos[i:i + bs])])

    model_only()
    model_times = _timed(model_only, args.repeats, args.device)
    return {"e2e": _summary(e2e_times, n, "frames", e2e_cpu), "model": _summary(model_times, len(pos), "frames"),
            "batch_size": bs, "complex_atoms": tpl.num_atoms, "stride": stride}


# ------------------------------------------------------------------------------ Vina
def bench_vina(n_poses: int, args, tmp: Path) -> dict:
    try:
        import vina as vina_mod
        from vina import Vina
    except Exception as e:  # noqa: BLE001
        return {"available": False, "reason": f"import vina failed: {type(e).__name__}: {e}"}
    prep = shutil.which("mk_prepare_receptor.py")
    if prep is None:
        return {"available": False, "reason": "meeko's mk_prepare_receptor.py not found (pip install meeko)"}
    # CHARMM histidine names -> Amber names known to meeko's templates; residues whose
    # templates do not match (chain termini here) are dropped (-x), away from the pocket
    fixed = tmp / "rec_fixed.pdb"
    fixed.write_text(re.sub(r"(?m)^((?:ATOM  |HETATM).{11})HS([DEP]) ",
                            lambda m: m.group(1) + {"D": "HID", "E": "HIE", "P": "HIP"}[m.group(2)] + " ",
                            (DATA / "rec.pdb").read_text()))
    t = time.perf_counter()
    proc = subprocess.run([prep, "--read_pdb", str(fixed), "-o", str(tmp / "rec_mk"), "-p", "-x"],
                          capture_output=True, text=True)
    prep_s = time.perf_counter() - t
    rec_pdbqt = tmp / "rec_mk.pdbqt"
    if proc.returncode != 0 or not rec_pdbqt.exists():
        return {"available": False, "reason": "receptor preparation failed: " + proc.stderr[-500:]}
    vina_dir = _prolif_data() / "vina"
    ligs = [(vina_dir / f"vina_output_ligand_{i}.pdbqt").read_text() for i in range(1, 10)]
    remark = [float(re.search(r"VINA RESULT:\s+(\S+)", s).group(1)) for s in ligs]
    v = Vina(sf_name="vina", cpu=args.threads, verbosity=0)
    v.set_receptor(str(rec_pdbqt))
    xyz = [[float(ln[30:38]), float(ln[38:46]), float(ln[46:54])]
           for s in ligs for ln in s.splitlines() if ln.startswith(("ATOM", "HETATM"))]
    lo = [min(c[k] for c in xyz) for k in range(3)]
    hi = [max(c[k] for c in xyz) for k in range(3)]
    center = [(a + b) / 2 for a, b in zip(lo, hi, strict=True)]
    box = [b - a + 8.0 for a, b in zip(lo, hi, strict=True)]  # 4 Å padding around all poses
    v.set_ligand_from_string(ligs[0])
    t = time.perf_counter()
    v.compute_vina_maps(center=center, box_size=box)
    maps_s = time.perf_counter() - t
    scores = []
    for s in ligs:
        v.set_ligand_from_string(s)
        scores.append(float(v.score()[0]))

    set_s, score_s = [], []
    for _ in range(args.repeats):
        a = b = 0.0
        for i in range(n_poses):
            t0 = time.perf_counter()
            v.set_ligand_from_string(ligs[i % 9])
            t1 = time.perf_counter()
            v.score()
            a, b = a + (t1 - t0), b + (time.perf_counter() - t1)
        set_s.append(a)
        score_s.append(b)
    return {"available": True, "version": getattr(vina_mod, "__version__", "?"),
            "receptor_prep": "meeko mk_prepare_receptor.py -x (4 terminal residues dropped)",
            "receptor_prep_s": prep_s, "maps_s": maps_s, "box_center": center, "box_size": box,
            "score_only": _summary([a + b for a, b in zip(set_s, score_s, strict=True)], n_poses,
                                   "poses", []),
            "score_call_only": _summary(score_s, n_poses, "poses", []),
            "set_ligand_s_per_pose": statistics.median(set_s) / n_poses,
            "scores_kcal_mol": scores, "docking_remark_scores": remark,
            "note": "score_only = set_ligand_from_string + score() per pose (what scoring a pose "
                    "file costs: Vina rebuilds its precalculated tables for every ligand it is "
                    "given); score_call_only = score() alone on grid maps. "
                    "'docking_remark_scores' are the docking run's own scores (other receptor "
                    "preparation)"}


# ------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model file or shipped name (default: shipped potential, "
                    "else a random-weight GET d_hidden=64, 3 layers, cutoff 5)")
    ap.add_argument("--n-poses", type=int, default=90)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--target-atoms", type=int, default=300)
    ap.add_argument("--radii", type=float, nargs="+", default=[2.0, 2.5, 3.0, 3.5, 4.0, 4.5])
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: on a shared machine more threads "
                         "can be far slower; try the machine's free cores)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip", nargs="*", default=[], choices=["poses", "frames", "vina"])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    add_allocator_option(ap)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    allocator_tuned = apply_allocator_option(args)  # as `get-md` does
    result = {"benchmark": "bench_rescore", "machine": {**machine_info(args.threads), "allocator_tuned": allocator_tuned},
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        model, model_info = resolve_model(args.model, tmp)
        result["model"] = model_info
        radius, pocket_atoms, pocket_res = choose_radius(args.radii, args.target_atoms)
        result["system"] = {"receptor": "prolif rec.pdb (GPCR, 4988 atoms)", "ligand_atoms": 79,
                            "pocket_radius": radius, "pocket_atoms": pocket_atoms,
                            "pocket_residues": pocket_res, "complex_atoms": pocket_atoms + 79}
        print(f"model: {model_info['source']}; pocket radius {radius} Å -> "
              f"{pocket_atoms} + 79 atoms", flush=True)
        poses = make_pose_file(args.n_poses, tmp)
        if "poses" not in args.skip:
            result["poses"] = bench_poses(model, poses, radius, args, tmp)
            print("poses:", json.dumps({k: round(v, 2) for k, v in result["poses"]["e2e"].items()
                                        if k.endswith("_best")}),
                  json.dumps({k: round(v, 2) for k, v in result["poses"]["model"].items()
                              if k.endswith("_best")}), flush=True)
        if "frames" not in args.skip:
            result["frames"] = bench_frames(model, radius, args, tmp)
            print("frames:", json.dumps({k: round(v, 2) for k, v in result["frames"]["e2e"].items()
                                         if k.endswith("_best")}),
                  json.dumps({k: round(v, 2) for k, v in result["frames"]["model"].items()
                              if k.endswith("_best")}), flush=True)
        if "vina" not in args.skip:
            result["vina"] = bench_vina(args.n_poses, args, tmp)
            v = result["vina"]
            print("vina:", json.dumps({k: round(x, 2) for k, x in v["score_only"].items()
                                       if k.endswith("_best")}) if v.get("available") else v["reason"],
                  flush=True)
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
