"""Train, evaluate and ship a potential on labelled energies and forces.

This is the recipe behind the shipped default potential (GET, potential mode,
trained on GFN2-xTB labels of ``get_md/datasets/data/xtb_organic_v2.npz``)::

    python -m get_md.train.potential --data get_md/datasets/data/xtb_organic_v2.npz \\
        --out runs/get-xtb-organic --epochs 40 --seed 0 --register get-xtb-organic

The training split trains, the validation split early-stops, and the held-out
test split (molecules never seen in training) gives the reported errors.

Example:
    >>> from get_md.train.potential import evaluate_potential
    >>> metrics = evaluate_potential(model, test_set)   # doctest: +SKIP
    >>> metrics["forces_mae_meV_per_A"]                  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from get_md.errors import ConfigError
from get_md.perf import set_threads
from get_md.train.batching import BlockBatchSampler, collate
from get_md.train.config import TrainConfig, json_error_text
from get_md.train.data import MolecularDataset
from get_md.train.labelled import load_labelled

DEFAULT_MODEL = dict(
    d_hidden=64, d_radial=32, n_rbf=16, n_head=4, n_layers=2, d_edge=16, cutoff=5.0,
    mode="potential", task="energy",
)


def evaluate_potential(model: torch.nn.Module, data: MolecularDataset, max_blocks: int = 600,
                       dtype: torch.dtype = torch.float64) -> dict[str, float]:
    """Energy and force errors of ``model`` on ``data``.

    Returns MAE and RMSE of the energy per structure (meV) and per atom (meV/atom)
    and of force components (meV/Å), the number of structures and atoms, and the
    energy errors of the neutral structures alone (``neutral_*``; the model takes no
    charge input, so ions carry an energy offset it cannot know).
    """
    model = model.to(dtype).eval()
    e_err, e_err_atom, f_err, charge = [], [], [], []
    sampler = BlockBatchSampler(data.block_counts(), max_blocks, shuffle=False)
    for idx in sampler:
        graph, targets = collate([data[i] for i in idx])
        graph = graph.to(dtype=dtype)
        out = model(*graph.inputs())
        n_atoms = torch.bincount(graph.atom_batch_ids, minlength=graph.num_graphs).to(dtype)
        de = out["energy"].detach() - targets["energy"].to(dtype).reshape(-1)
        e_err.append(de)
        e_err_atom.append(de / n_atoms)
        charge.append(targets["charge"].reshape(-1) if "charge" in targets else torch.zeros_like(de))
        f_err.append((out["forces"].detach() - targets["forces"].to(dtype)).reshape(-1))
    return error_metrics(torch.cat(e_err), torch.cat(e_err_atom), torch.cat(f_err), torch.cat(charge) == 0)


def error_metrics(e: torch.Tensor, ea: torch.Tensor, f: torch.Tensor, neutral: torch.Tensor) -> dict[str, float]:
    """The metrics of :func:`evaluate_potential` from errors (model − reference): energy per
    structure ``e`` [M] and per atom ``ea`` [M] (eV), force components ``f`` (eV/Å), and
    which structures are ``neutral`` [M] bool. Any model's errors can be scored this way
    (``benchmarks/mace_reference.py`` does, for MACE).
    """
    return {
        "n_structures": int(e.numel()),
        "n_atoms": int(f.numel() // 3),
        "energy_mae_meV": float(e.abs().mean()) * 1e3,
        "energy_rmse_meV": float(e.pow(2).mean().sqrt()) * 1e3,
        "energy_mae_meV_per_atom": float(ea.abs().mean()) * 1e3,
        "energy_rmse_meV_per_atom": float(ea.pow(2).mean().sqrt()) * 1e3,
        "forces_mae_meV_per_A": float(f.abs().mean()) * 1e3,
        "forces_rmse_meV_per_A": float(f.pow(2).mean().sqrt()) * 1e3,
        "n_neutral": int(neutral.sum()),
        "neutral_energy_mae_meV": float(e[neutral].abs().mean()) * 1e3,
        "neutral_energy_mae_meV_per_atom": float(ea[neutral].abs().mean()) * 1e3,
        "neutral_energy_rmse_meV_per_atom": float(ea[neutral].pow(2).mean().sqrt()) * 1e3,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m get_md.train.potential", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="labelled .npz (positions, energy, forces, split)")
    p.add_argument("--out", required=True, help="run directory (resumes if it has a checkpoint)")
    p.add_argument("--family", default="get")
    p.add_argument("--model", default="{}", help="JSON hyper-parameters overriding the defaults")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lr-gamma", type=float, default=0.93)
    p.add_argument("--max-blocks", type=int, default=400, help="atoms per batch (one block per atom)")
    p.add_argument("--forces-weight", type=float, default=10.0)
    p.add_argument("--energy-weight", type=float, default=1.0, help="weight of the per-atom energy MSE")
    p.add_argument("--all-energies", action="store_true",
                   help="fit energies of charged structures too (default: neutral only, forces of all)")
    p.add_argument("--init", default=None, help="start from the weights of this best.pt / checkpoint.pt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--limit", type=int, default=None, help="use at most this many training structures")
    p.add_argument("--register", default=None, help="copy the result into the model zoo under this name")
    p.add_argument("--default", action="store_true", help="make it the default potential")
    args = p.parse_args(argv)
    set_threads(args.threads)   # a count below 1 is refused, as in the other recipes
    try:  # checked before the data are read
        overrides = json.loads(args.model)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--model {args.model!r}: {json_error_text(e)}") from e
    if not isinstance(overrides, dict):
        raise ConfigError(f"--model {args.model!r}: expected a JSON object of hyper-parameters")

    t0 = time.time()
    train_set = load_labelled(args.data, "train", dtype=torch.float32, limit=args.limit)
    valid_set = load_labelled(args.data, "valid", dtype=torch.float32)
    test_set = load_labelled(args.data, "test", dtype=torch.float64)
    elements = sorted({int(z) for s in train_set.samples for z in s.graph.atomic_numbers.tolist()})
    model_cfg: dict[str, Any] = {**DEFAULT_MODEL, **overrides, "elements": elements}
    if args.family != "get":
        model_cfg = {**overrides, "elements": elements}
    command = shlex.join(["python", "-m", "get_md.train.potential", *(argv if argv is not None else sys.argv[1:])])
    config = TrainConfig(
        family=args.family, model=model_cfg, dataset=train_set, valid_dataset=valid_set,
        max_blocks=args.max_blocks, lr=args.lr, lr_gamma=args.lr_gamma, max_epochs=args.epochs,
        patience=args.patience, loss_weights={"energy": args.energy_weight, "forces": args.forces_weight},
        loss="mse", energy_per_atom=True, neutral_energy_only=not args.all_energies, init_from=args.init, seed=args.seed, dtype="float32", output_dir=args.out,
        grad_clip=10.0,
    )
    from get_md.train.loop import build_model_for, train

    result = train(config, command=command)

    best = torch.load(Path(args.out) / "best.pt", map_location="cpu", weights_only=True)
    model = build_model_for(args.family, model_cfg)
    model.load_state_dict(best["model"])
    test = evaluate_potential(model, test_set)
    valid = evaluate_potential(model, load_labelled(args.data, "valid", dtype=torch.float64))
    report = {"test": test, "valid": valid, "best_epoch": result.best_epoch, "epochs": result.last_epoch,
              "n_train": len(train_set), "wall_time_s": round(time.time() - t0, 1),
              "threads": torch.get_num_threads(), "command": command}
    (Path(args.out) / "metrics.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))

    from get_md import export

    meta = {
        "description": "GET potential (potential mode) trained on GFN2-xTB energies and forces "
                       "of drug-like molecules, peptides and pocket clusters (H C N O F P S Cl Br I)",
        "dataset": {"file": Path(args.data).name, "labels": "GFN2-xTB (tblite)",
                    "n_train": len(train_set), "n_valid": len(valid_set), "n_test": len(test_set)},
        "command": command,
        "metrics": {"test": test, "valid": valid, "best_epoch": result.best_epoch},
        "elements": elements,
        "charge": "neutral and charged molecules were labelled; the model takes no charge input, "
                  + ("energies of all structures were fitted" if args.all_energies else
                     "so energies were fitted on neutral structures only (forces on all)"),
    }
    final = Path(args.out) / "model-final.pt"
    export.save(model.float(), final, meta)
    if args.register:
        from get_md import zoo

        zoo.register(args.register, final, meta["description"], default="potential" if args.default else None)
        print(f"registered {args.register} in the model zoo", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from get_md.cli import run_module

    sys.exit(run_module(main, "python -m get_md.train.potential"))
