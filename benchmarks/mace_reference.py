"""Train a MACE model (mace-torch) on the shipped potential's data split, as a reference point.

Same data as ``get-xtb-organic``: ``get_md/datasets/data/xtb_organic_v2.npz`` (GFN2-xTB energies
and forces), its train / valid / test split, and the same energy treatment: energies of
charged structures get weight 0 (``config_energy_weight``; both models are charge-blind),
forces of all structures are fitted, per-element reference energies (E0s) are the
least-squares fit to the neutral training structures. The test split is scored with
:func:`get_md.train.potential.evaluate_potential`'s metrics, computed here from the MACE
calculator's energies and forces.

mace-torch is not a get_md dependency; install it where it cannot change get_md's torch,
e.g. ``pip install --target /tmp/mace_site mace-torch==0.3.16 --no-deps e3nn==0.4.4
opt_einsum_fx torch-ema matscipy torchmetrics configargparse lmdb orjson h5py`` and run with
``PYTHONPATH=/tmp/mace_site``.

Example:
    PYTHONPATH=/tmp/mace_site python benchmarks/mace_reference.py --work /tmp/mace_ref \\
        --epochs 12 --threads 1 --out benchmarks/results/mace_reference.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "get_md" / "datasets" / "data" / "xtb_organic_v2.npz"


def write_splits(data_path: Path, work: Path) -> dict:
    """extxyz files of the train / valid / test splits; E0s fitted on neutral training structures."""
    import ase
    import ase.io

    with np.load(data_path) as z:
        d = {k: z[k] for k in z.files}  # NpzFile re-reads an array on every access
    offsets = np.concatenate([[0], np.cumsum(d["n_atoms"])])
    files, counts = {}, {}
    for split in ("train", "valid", "test"):
        frames = []
        for i in np.flatnonzero(d["split"] == split):
            a, b = offsets[i], offsets[i + 1]
            atoms = ase.Atoms(numbers=d["atomic_numbers"][a:b], positions=d["positions"][a:b])
            atoms.info["REF_energy"] = float(d["energy"][i])
            atoms.info["total_charge"] = int(d["charge"][i])
            atoms.info["config_energy_weight"] = 1.0 if int(d["charge"][i]) == 0 else 0.0
            atoms.arrays["REF_forces"] = d["forces"][a:b].astype(np.float64)
            frames.append(atoms)
        path = work / f"{split}.xyz"
        ase.io.write(path, frames, format="extxyz")
        files[split], counts[split] = path, len(frames)
    # E0s: least squares of neutral training energies on element counts (as get_md does)
    train = np.flatnonzero((d["split"] == "train") & (d["charge"] == 0))
    zs = sorted({int(z) for z in d["atomic_numbers"]})
    A = np.zeros((len(train), len(zs)))
    for r, i in enumerate(train):
        z, c = np.unique(d["atomic_numbers"][offsets[i]:offsets[i + 1]], return_counts=True)
        for zz, cc in zip(z, c, strict=True):
            A[r, zs.index(int(zz))] = cc
    e0 = np.linalg.lstsq(A, d["energy"][train], rcond=None)[0]
    return {"files": files, "counts": counts, "E0s": {z: float(v) for z, v in zip(zs, e0, strict=True)}}


def evaluate(model_path: Path, test_xyz: Path, threads: int) -> dict:
    import ase.io
    import torch
    from mace.calculators import MACECalculator

    torch.set_num_threads(threads)
    calc = MACECalculator(model_paths=str(model_path), device="cpu", default_dtype="float64")
    e_err, ea_err, f_err, neutral = [], [], [], []
    t0 = time.perf_counter()
    for atoms in ase.io.read(test_xyz, index=":"):
        ref_e, ref_f = atoms.info["REF_energy"], atoms.arrays["REF_forces"]
        atoms.calc = calc
        de = atoms.get_potential_energy() - ref_e
        e_err.append(de)
        ea_err.append(de / len(atoms))
        f_err.append((atoms.get_forces() - ref_f).ravel())
        neutral.append(atoms.info.get("total_charge", 0) == 0)
    from get_md.train.potential import error_metrics

    f64 = torch.float64
    metrics = error_metrics(torch.tensor(e_err, dtype=f64), torch.tensor(ea_err, dtype=f64),
                            torch.from_numpy(np.concatenate(f_err)), torch.tensor(neutral))
    return {**metrics, "eval_s": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, help="scratch directory (extxyz files, MACE run)")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channels", type=int, default=32, help="MACE channels (hidden irreps Cx0e + Cx1o)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", default=None, help="JSON results file")
    p.add_argument("--evaluate-only", action="store_true",
                   help="score an already trained WORK/mace_ref.model on the test split (no training)")
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    splits = write_splits(Path(args.data), work)
    c = args.channels
    cmd = [
        sys.executable, "-m", "mace.cli.run_train", "--name", "mace_ref", "--work_dir", str(work),
        "--train_file", str(splits["files"]["train"]), "--valid_file", str(splits["files"]["valid"]),
        "--energy_key", "REF_energy", "--forces_key", "REF_forces",
        "--E0s", json.dumps(splits["E0s"]).replace('"', ""),
        "--model", "MACE", "--hidden_irreps", f"{c}x0e + {c}x1o", "--r_max", "5.0",
        "--num_interactions", "2", "--correlation", "3", "--max_L", "1",
        "--batch_size", str(args.batch_size), "--valid_batch_size", "32", "--max_num_epochs", str(args.epochs),
        "--loss", "weighted", "--energy_weight", "1.0", "--forces_weight", "10.0",
        "--lr", "0.01", "--eval_interval", "1", "--device", "cpu", "--default_dtype", "float32",
        "--seed", str(args.seed), "--num_workers", "0", "--restart_latest",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    t0 = time.perf_counter()
    if not args.evaluate_only:
        subprocess.run(cmd, check=True, env=env)
    train_s = time.perf_counter() - t0 if not args.evaluate_only else None
    model = work / "mace_ref.model"
    test = evaluate(model, splits["files"]["test"], args.threads)
    import mace

    report = {
        "benchmark": "mace_reference", "mace_version": getattr(mace, "__version__", "unknown"),
        "command": " ".join(["python", "benchmarks/mace_reference.py", *(argv or sys.argv[1:])]),
        "data": str(Path(args.data).name), "counts": splits["counts"],
        "settings": {"epochs": args.epochs, "threads": args.threads, "hidden_irreps": f"{c}x0e + {c}x1o",
                     "r_max": 5.0, "num_interactions": 2, "correlation": 3, "max_L": 1,
                     "loss": "weighted, energy 1 (per atom, charged structures weight 0), forces 10",
                     "lr": 0.01, "batch_size": args.batch_size, "dtype": "float32"},
        "train_wall_s": None if train_s is None else round(train_s, 1), "test": test,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
