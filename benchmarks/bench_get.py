"""Speed and memory of get_md's GET core versus the public reference implementation.

Compares ``get_md.models.get.GETEncoder`` with ``GET`` from ``get_clean`` of
https://github.com/THUNLP-MT/GET at equal hyper-parameters, equal weights (the reference
state_dict converted with ``get_md.models.convert.convert_reference_state_dict``) and the
same inputs: protein-like single graphs of about 50, 200 and 800 blocks (~8 atoms per
block, block centres on a confined random walk, k-nearest-neighbour block edges, k=9,
self pair included, computed once here and given to both implementations).

The reference is not part of this repository. Point ``GET_REFERENCE_PATH`` at a directory
that contains ``get_clean/`` (and ``torch_scatter``, real or a plain-torch stand-in); see
benchmarks/README.md. Without it the reference side is skipped with a message.

Every measurement runs in a fresh subprocess per (implementation, size, d_edge, mode):

* time: ``--warmup`` untimed iterations, then ``--repeats`` timed iterations
  (``time.perf_counter``; ``torch.cuda.synchronize`` on CUDA); with ``--rounds R`` this
  is done in R subprocesses per implementation, alternating between implementations so
  that background load affects both alike; the median (and min/max) over all samples is
  reported, together with the 1-minute load average before/after each subprocess;
* memory (CPU): a second fresh subprocess with glibc's malloc told to serve every block of
  64 KiB or more by mmap (``MALLOC_MMAP_THRESHOLD_=65536``) so that freed tensor memory
  goes back to the OS and the resident set size follows live tensor memory. After
  imports, model construction and input loading the peak-RSS counter is reset
  (``/proc/self/clear_refs``); one iteration runs; the reported value is
  ``VmHWM - VmRSS(before)``: the peak extra resident memory of that iteration, including
  allocator overhead and one-time buffers (thread pools, first-call workspaces);
* memory (CUDA): ``torch.cuda.max_memory_allocated`` minus the allocated memory before
  the iteration.

Modes: ``fwd`` = forward under ``torch.no_grad()``; ``fwd_bwd`` = forward, then backward of
``mean(H_out**2) + mean(Z_out**2)`` to all parameters and to the input coordinates (as for
forces). Both models are in eval mode (dropout off) so that the work is deterministic.

    GET_REFERENCE_PATH=/tmp/getref python benchmarks/bench_get.py            # full run
    python benchmarks/bench_get.py --sizes 50 --repeats 3 --impls reference  # quick check
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "bench_get.json"

MODEL_CONFIG = dict(
    d_hidden=128,
    d_radial=64,
    n_channel=1,
    n_rbf=32,
    cutoff=7.0,
    n_layers=3,
    n_head=4,
    residual=True,
    dropout=0.1,
    z_requires_grad=True,
    pre_norm=False,
    sparse_k=3,
)
K_NEIGHBOURS = 9
MEAN_ATOMS_PER_BLOCK = 8


# --------------------------------------------------------------------------- inputs


def make_inputs(n_blocks: int, d_hidden: int, d_edge: int, seed: int) -> dict:
    """One protein-like graph: blocks on a confined 3.8 A random walk, 5-11 atoms each."""
    gen = torch.Generator().manual_seed(seed)
    step = 3.8
    radius_of_gyration = 2.2 * n_blocks ** 0.38  # empirical scaling of folded proteins
    confine = math.sqrt(5.0 / 3.0) * radius_of_gyration + step
    centres = torch.zeros(n_blocks, 3)
    for i in range(1, n_blocks):
        d = torch.randn(3, generator=gen)
        d = step * d / d.norm()
        if (centres[i - 1] + d).norm() > confine:
            d = -d
        centres[i] = centres[i - 1] + d
    atoms_per_block = torch.randint(MEAN_ATOMS_PER_BLOCK - 3, MEAN_ATOMS_PER_BLOCK + 4,
                                    (n_blocks,), generator=gen)
    block_id = torch.repeat_interleave(torch.arange(n_blocks), atoms_per_block)
    n_atoms = block_id.numel()
    Z = centres[block_id] + 1.5 * torch.randn(n_atoms, 3, generator=gen)
    Z = Z.unsqueeze(1)  # [N, n_channel=1, 3]
    batch_id = torch.zeros(n_blocks, dtype=torch.long)
    # kNN on block centres of mass, the block itself included (as get_clean.knn_edges)
    com = torch.zeros(n_blocks, 3).index_add_(0, block_id, Z[:, 0]) / atoms_per_block[:, None]
    k = min(K_NEIGHBOURS, n_blocks)
    nbr = torch.cdist(com, com).topk(k, dim=1, largest=False).indices  # [Nb, k]
    edges = torch.stack([torch.arange(n_blocks).repeat_interleave(k), nbr.reshape(-1)])
    H = torch.randn(n_atoms, d_hidden, generator=gen)
    edge_attr = torch.randn(edges.shape[1], d_edge, generator=gen) if d_edge > 0 else None
    return dict(H=H, Z=Z, block_id=block_id, batch_id=batch_id, edges=edges,
                edge_attr=edge_attr)


# --------------------------------------------------------------------------- models


def _add_reference_to_path() -> str | None:
    ref = os.environ.get("GET_REFERENCE_PATH")
    if not ref:
        return None
    ref = str(Path(ref).resolve())
    if ref not in sys.path:
        sys.path.insert(0, ref)
    return ref


def build_reference(cfg: dict):
    _add_reference_to_path()
    import get_clean  # imported from GET_REFERENCE_PATH

    return get_clean.GET(act_fn=torch.nn.SiLU(), **cfg)


def build_get_md(cfg: dict, reference_state_dict: dict | None):
    """get_md side: same constructor signature as the reference GET."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from get_md.models.get import GETEncoder

    model = GETEncoder(act_fn=torch.nn.SiLU(), **cfg)
    if reference_state_dict is not None:
        from get_md.models import convert

        if hasattr(convert, "load_reference_into"):  # strict, tolerates get_md-only buffers
            convert.load_reference_into(model, reference_state_dict)
        else:
            model.load_state_dict(convert.convert_reference_state_dict(reference_state_dict))
    return model


def build(impl: str, cfg: dict, weights_path: str | None):
    sd = torch.load(weights_path) if weights_path else None
    if impl == "reference":
        model = build_reference(cfg)
        if sd is not None:
            model.load_state_dict(sd)
        return model
    if impl == "get_md":
        return build_get_md(cfg, sd)
    raise ValueError(impl)


# --------------------------------------------------------------------------- worker


def _proc_status() -> dict:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, val = line.split(":")
                out[key] = int(val.split()[0]) * 1024  # kB -> bytes
    return out


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def worker(args) -> dict:
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    device = torch.device(args.device)
    cfg = json.loads(args.config)
    data = torch.load(args.inputs)
    torch.manual_seed(args.seed)  # only matters when no reference weights are given
    model = build(args.impl, cfg, args.weights).to(device).eval()
    inp = {k: (v.to(device) if v is not None else None) for k, v in data.items()}
    params = [p for p in model.parameters() if p.requires_grad]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step():
        if args.mode == "fwd":
            with torch.no_grad():
                H, Z = model(inp["H"], inp["Z"], inp["block_id"], inp["batch_id"],
                             inp["edges"], inp["edge_attr"])
            return H, Z
        for p in params:
            p.grad = None
        Z_in = inp["Z"].clone().requires_grad_(True)
        H, Z = model(inp["H"], Z_in, inp["block_id"], inp["batch_id"], inp["edges"],
                     inp["edge_attr"])
        loss = H.pow(2).mean() + Z.pow(2).mean()
        loss.backward()
        return H.detach(), Z.detach()

    result = dict(impl=args.impl, mode=args.mode, kind=args.kind,
                  threads=torch.get_num_threads(), device=str(device))
    if args.kind == "memory":
        gc.collect()
        if device.type == "cuda":
            sync()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            step()
            sync()
            result.update(peak_bytes=torch.cuda.max_memory_allocated() - before,
                          method="torch.cuda.max_memory_allocated delta, one cold iteration")
        else:
            ok = _reset_peak_rss()
            before = _proc_status()
            step()
            after = _proc_status()
            result.update(
                peak_bytes=after["VmHWM"] - before["VmRSS"], baseline_rss_bytes=before["VmRSS"],
                malloc_mmap_threshold=os.environ.get("MALLOC_MMAP_THRESHOLD_"),
                method=("peak RSS (VmHWM after clear_refs reset) minus RSS before, one cold "
                        "iteration" if ok else
                        "clear_refs unavailable: VmHWM since process start minus RSS before"))
        return result

    load_before = os.getloadavg()
    for _ in range(args.warmup):
        step()
    sync()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        H, Z = step()
        sync()
        times.append(time.perf_counter() - t0)
    if args.save_outputs:
        torch.save({"H": H.cpu(), "Z": Z.cpu()}, args.save_outputs)
    result.update(times_s=times, median_s=statistics.median(times), min_s=min(times),
                  max_s=max(times), warmup=args.warmup, repeats=args.repeats,
                  loadavg_1min_before=load_before[0], loadavg_1min_after=os.getloadavg()[0])
    return result


# --------------------------------------------------------------------------- driver


def machine_info(threads: int, device: str) -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = dict(
        cpu_model=cpu,
        logical_cpus=os.cpu_count(),
        cpus_available=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        torch_threads=threads,
        torch_interop_threads=1,
        torch_version=torch.__version__,
        python=platform.python_version(),
        platform=platform.platform(),
        device=device,
    )
    try:
        with open("/proc/meminfo") as fh:
            info["mem_total_kb"] = int(fh.readline().split()[1])
    except OSError:
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def get_md_available() -> str | None:
    """None if importable, else the reason."""
    code = (f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); "
            "from get_md.models.get import GETEncoder; "
            "from get_md.models.convert import convert_reference_state_dict")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["?"])[-1]


def reference_available() -> str | None:
    ref = os.environ.get("GET_REFERENCE_PATH")
    if not ref:
        return "GET_REFERENCE_PATH is not set (see benchmarks/README.md)"
    code = f"import sys; sys.path.insert(0, {str(Path(ref).resolve())!r}); import get_clean"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["?"])[-1]


def run_worker(ns: dict, kind: str, threads: int, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--kind", kind]
    for key, val in ns.items():
        if val is not None:
            cmd += [f"--{key.replace('_', '-')}", str(val)]
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if kind == "memory":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(error=f"timeout after {timeout:.0f} s")
    if r.returncode != 0:
        return dict(error=(r.stderr.strip().splitlines() or ["?"])[-1])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description="GET core: get_md vs reference (time, memory)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 800],
                    help="number of blocks per input graph")
    ap.add_argument("--d-edge", type=int, nargs="+", default=[16],
                    help="edge feature sizes; the reference only supports d_edge > 0")
    ap.add_argument("--modes", nargs="+", default=["fwd", "fwd_bwd"], choices=["fwd", "fwd_bwd"])
    ap.add_argument("--impls", nargs="+", default=["reference", "get_md"],
                    choices=["reference", "get_md"])
    ap.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5, help="timed iterations per subprocess")
    ap.add_argument("--rounds", type=int, default=1,
                    help="timing subprocesses per implementation, run alternately; "
                         "all samples are pooled")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=1800.0, help="per subprocess, seconds")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    # worker-only arguments
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--kind", default="time", help=argparse.SUPPRESS)
    ap.add_argument("--impl", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    ap.add_argument("--save-outputs", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args)))
        return

    # turn SIGTERM into an exception so that subprocess.run kills the running worker and
    # the temporary directory is removed
    def _terminate(signum, frame):
        raise SystemExit(f"terminated by signal {signum}")

    signal.signal(signal.SIGTERM, _terminate)

    skipped = {}
    impls = []
    for impl in args.impls:
        why = reference_available() if impl == "reference" else get_md_available()
        if why:
            skipped[impl] = why
            print(f"[skip] {impl}: {why}", flush=True)
        else:
            impls.append(impl)
    if not impls:
        sys.exit("nothing to benchmark")

    report = dict(
        benchmark="GET core forward / forward+backward, get_md vs reference",
        machine=machine_info(args.threads, args.device),
        settings=dict(model=MODEL_CONFIG, act_fn="SiLU", k_neighbours=K_NEIGHBOURS,
                      mean_atoms_per_block=MEAN_ATOMS_PER_BLOCK, warmup=args.warmup,
                      repeats=args.repeats, rounds=args.rounds, seed=args.seed,
                      statistic="median wall time over all rounds x repeats",
                      memory=("CPU: peak RSS increase during one cold iteration in a fresh "
                              "process, MALLOC_MMAP_THRESHOLD_=65536; CUDA: "
                              "max_memory_allocated increase"),
                      reference_path=os.environ.get("GET_REFERENCE_PATH"),
                      weights="reference init (seeded), converted for get_md"),
        skipped=skipped,
        loadavg_at_start=os.getloadavg(),
        results=[],
        comparisons=[],
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="bench_get_") as tmp:
        for d_edge in args.d_edge:
            cfg = dict(MODEL_CONFIG, d_edge=d_edge)
            run_impls = list(impls)
            if d_edge == 0 and "reference" in run_impls:
                run_impls.remove("reference")
                print("[skip] reference at d_edge=0: reference GET requires edge_attr "
                      "(att_mlp input width assumes it)", flush=True)
            weights = None
            if "reference" in impls:  # equal weights for both implementations
                torch.manual_seed(args.seed)
                ref_model = build_reference(cfg)
                weights = os.path.join(tmp, f"weights_e{d_edge}.pt")
                torch.save(ref_model.state_dict(), weights)
                del ref_model
            for n_blocks in args.sizes:
                inputs = make_inputs(n_blocks, cfg["d_hidden"], d_edge, args.seed + n_blocks)
                inp_path = os.path.join(tmp, f"inputs_{n_blocks}_e{d_edge}.pt")
                torch.save(inputs, inp_path)
                shape = dict(n_blocks=n_blocks, n_atoms=int(inputs["H"].shape[0]),
                             n_block_edges=int(inputs["edges"].shape[1]), d_edge=d_edge)
                outs = {}
                for mode in args.modes:
                    recs = {impl: dict(shape, impl=impl, mode=mode) for impl in run_impls}
                    samples = {impl: [] for impl in run_impls}
                    runs = {impl: [] for impl in run_impls}
                    # timing: --rounds fresh subprocesses per implementation, alternating,
                    # so that background load hits both sides alike
                    for _ in range(args.rounds):
                        for impl in run_impls:
                            out_path = os.path.join(
                                tmp, f"out_{impl}_{n_blocks}_e{d_edge}_{mode}.pt")
                            ns = dict(impl=impl, mode=mode, config=json.dumps(cfg),
                                      inputs=inp_path, weights=weights, seed=args.seed,
                                      threads=args.threads, warmup=args.warmup,
                                      repeats=args.repeats, device=args.device,
                                      save_outputs=out_path)
                            t = run_worker(ns, "time", args.threads, args.timeout)
                            runs[impl].append(t)
                            if "error" in t:
                                continue
                            samples[impl].extend(t["times_s"])
                            outs[(impl, mode)] = out_path
                    for impl in run_impls:
                        rec = recs[impl]
                        errors = [t["error"] for t in runs[impl] if "error" in t]
                        rec["time"] = dict(runs=runs[impl])
                        if samples[impl]:
                            xs = samples[impl]
                            rec["time"].update(median_s=statistics.median(xs), min_s=min(xs),
                                               max_s=max(xs), n_samples=len(xs))
                        if errors:
                            rec["time"]["error"] = errors[0]
                        if not args.no_memory:
                            ns_mem = dict(impl=impl, mode=mode, config=json.dumps(cfg),
                                          inputs=inp_path, weights=weights, seed=args.seed,
                                          threads=args.threads, warmup=0, repeats=1,
                                          device=args.device)
                            rec["memory"] = run_worker(ns_mem, "memory", args.threads,
                                                       args.timeout)
                        report["results"].append(rec)
                        t = rec["time"]
                        msg = (f"{impl:9s} blocks={n_blocks:4d} atoms={shape['n_atoms']:5d} "
                               f"d_edge={d_edge:2d} {mode:7s} ")
                        if "median_s" in t:
                            msg += (f"median {t['median_s'] * 1e3:9.1f} ms "
                                    f"(min {t['min_s'] * 1e3:.1f}, max {t['max_s'] * 1e3:.1f})")
                        else:
                            msg += f"ERROR {t.get('error')}"
                        m = rec.get("memory", {})
                        if "peak_bytes" in m:
                            msg += f"  peak +{m['peak_bytes'] / 2**20:8.1f} MiB"
                        elif "error" in m:
                            msg += f"  memory ERROR {m['error']}"
                        print(msg, flush=True)
                    # ratios reference / get_md
                    by = {r["impl"]: r for r in report["results"]
                          if r["n_blocks"] == n_blocks and r["d_edge"] == d_edge
                          and r["mode"] == mode}
                    if "reference" in by and "get_md" in by:
                        ref, new = by["reference"], by["get_md"]
                        comp = dict(shape, mode=mode)
                        if "median_s" in ref["time"] and "median_s" in new["time"]:
                            comp["time_ratio_reference_over_get_md"] = (
                                ref["time"]["median_s"] / new["time"]["median_s"])
                            comp["min_time_ratio_reference_over_get_md"] = (
                                ref["time"]["min_s"] / new["time"]["min_s"])
                        rm, nm = ref.get("memory", {}), new.get("memory", {})
                        if rm.get("peak_bytes") and nm.get("peak_bytes"):
                            comp["memory_ratio_reference_over_get_md"] = (
                                rm["peak_bytes"] / nm["peak_bytes"])
                        if ("reference", mode) in outs and ("get_md", mode) in outs:
                            a = torch.load(outs[("reference", mode)])
                            b = torch.load(outs[("get_md", mode)])
                            comp["max_abs_diff_H"] = float((a["H"] - b["H"]).abs().max())
                            comp["max_abs_diff_Z"] = float((a["Z"] - b["Z"]).abs().max())
                        report["comparisons"].append(comp)
                        print(f"  ratio reference/get_md: {json.dumps(comp)}", flush=True)
                # write after every size so that a long run leaves partial results
                args.out.write_text(json.dumps(report, indent=2))
    report["loadavg_at_end"] = os.getloadavg()
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
