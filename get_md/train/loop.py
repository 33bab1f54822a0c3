"""The training loop: Adam, exponential LR decay, early stopping, resumable checkpoints.

Outputs in ``config.output_dir``:

* ``log.csv`` — one row per epoch, appended as it goes (epoch, lr, train/valid loss
  and per-target MAE/RMSE — energy per atom when ``energy_per_atom`` — whether the
  epoch was the best so far, epoch time, elapsed time);
* ``curves.png`` — loss and metric curves, redrawn every epoch;
* ``checkpoint.pt`` — model, optimiser, scheduler, epoch, best metric, early-stop
  counter and RNG states, replaced atomically every epoch;
* ``best.pt`` — the weights with the best validation loss (plus family and config);
* ``model.pt`` — at the end, the best model exported with ``get_md.export.save``.

Running again with the same output directory resumes from ``checkpoint.pt``;
``log.csv`` is cut back to the checkpoint's epoch, so an interruption neither
loses nor duplicates rows, and the resumed run gives the same rows and weights
as an uninterrupted one (same device and thread count). A run that stopped early
stays stopped; one that reached ``max_epochs`` continues when rerun with a larger one.

Example:
    >>> from get_md.train import TrainConfig, train
    >>> result = train(TrainConfig(family="get", model={"d_hidden": 32},
    ...                            train_data="data/train.pt", output_dir="runs/demo"))  # doctest: +SKIP
    >>> result.model_path                                                               # doctest: +SKIP
    PosixPath('runs/demo/model.pt')
"""

from __future__ import annotations

import csv
import importlib
import math
import os
import random
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch

from get_md.atomic import atomic_path
from get_md.errors import TrainError
from get_md.train.batching import BlockBatchSampler, collate
from get_md.train.config import TrainConfig
from get_md.train.data import LABELS, MolecularDataset, Sample
from get_md.train.loss import MetricAccumulator, WeightedLoss

__all__ = [
    "TrainConfig", "TrainError", "TrainResult", "build_model_for", "fit_energy_statistics",
    "plot_curves", "train",
]

CHECKPOINT_FORMAT = "get_md.checkpoint"
CHECKPOINT_VERSION = 1
LOG_NAME = "log.csv"
CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"
MODEL_NAME = "model.pt"
CURVES_NAME = "curves.png"


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    output_dir: Path
    model_path: Path
    best_epoch: int
    best_valid_loss: float
    last_epoch: int
    stopped_early: bool
    history: list[dict[str, float]] = field(default_factory=list)


# ----------------------------------------------------------------------------- models
def build_model_for(family: str, model_config: Mapping[str, Any],
                    factory: Optional[Any] = None) -> torch.nn.Module:
    """Build a model: ``factory(**config)``, a ``"module:callable"`` family, or ``build_model``.

    Example:
        >>> m = build_model_for("get", {"d_hidden": 32})  # doctest: +SKIP
    """
    cfg = dict(model_config)
    if factory is not None:
        return factory(**cfg)
    if ":" in family:
        mod_name, _, attr = family.partition(":")
        try:
            fn = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as e:
            raise TrainError(f"cannot import model factory {family!r} ({e})") from e
        return fn(**cfg)
    from get_md.models import build_model

    try:
        return build_model(family, **cfg)
    except TypeError as e:
        raise TrainError(f"invalid hyper-parameters for model family {family!r}: {e}") from e


# ----------------------------------------------------------------------------- helpers
def _atomic_torch_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _rng_state() -> dict:
    import numpy as np

    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"name": np_state[0], "key": torch.from_numpy(np_state[1].astype("int64")),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["key"].numpy().astype("uint32"), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _as_dataset(obj: Any, what: str) -> MolecularDataset:
    if isinstance(obj, MolecularDataset):
        return obj
    if isinstance(obj, (list, tuple)) and all(isinstance(s, Sample) for s in obj):
        return MolecularDataset(obj, name=what)
    if isinstance(obj, (str, os.PathLike)):
        return MolecularDataset.load(obj)
    raise TrainError(f"{what}: expected a MolecularDataset, a list of Sample or a file path")


def _datasets(config: TrainConfig) -> tuple[MolecularDataset, MolecularDataset, dict]:
    if config.dataset is not None:
        data = _as_dataset(config.dataset, "dataset")
        train_src = config.dataset if isinstance(config.dataset, str) else (data.name or "dataset")
    elif config.train_data:
        data = MolecularDataset.load(config.train_data)
        train_src = str(config.train_data)
    else:
        raise TrainError("no training data: set train_data (a dataset file) or dataset")
    if len(data) == 0:
        raise TrainError(f"{train_src}: training dataset is empty")
    if config.valid_dataset is not None or config.valid_data:
        valid = _as_dataset(config.valid_dataset if config.valid_dataset is not None
                            else config.valid_data, "valid_data")
        train_ds = data
        valid_src = str(config.valid_data or valid.name or "valid_dataset")
    else:
        train_ds, valid = data.split(config.valid_fraction, seed=config.seed)
        valid_src = f"{config.valid_fraction:g} of {train_src} (seed {config.seed})"
    if len(valid) == 0:
        raise TrainError(f"{valid_src}: validation dataset is empty")
    if valid.target_names != train_ds.target_names:
        raise TrainError(f"training targets {train_ds.target_names} and validation targets "
                         f"{valid.target_names} differ")
    info = {"train": train_src, "valid": valid_src, "n_train": len(train_ds),
            "n_valid": len(valid), "targets": train_ds.target_names}
    return train_ds, valid, info


def _columns(targets: list[str]) -> list[str]:
    cols = ["epoch", "lr", "train_loss"]
    cols += [f"train_{t}_{m}" for t in targets for m in ("mae", "rmse")]
    cols += ["valid_loss"] + [f"valid_{t}_{m}" for t in targets for m in ("mae", "rmse")]
    return cols + ["best", "epoch_time_s", "elapsed_s"]


def _read_log(path: Path, columns: list[str], up_to_epoch: int) -> list[dict[str, float]]:
    """Rows of an existing log with epoch <= ``up_to_epoch``; rewrites the file if it had more."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return []
    if rows[0] != columns:
        raise TrainError(f"{path}: columns {rows[0]} differ from this run's {columns}; "
                         "use a new output_dir")
    kept: list[list[str]] = []
    for r in rows[1:]:
        if len(r) != len(columns):
            break  # a partial last line from a kill
        try:
            if int(r[0]) > up_to_epoch:
                break
        except ValueError:
            break
        kept.append(r)
    if len(kept) != len(rows) - 1:
        _write_csv(path, columns, kept)
    return [{c: float(v) for c, v in zip(columns, r, strict=True)} for r in kept]


def _write_csv(path: Path, columns: list[str], rows: list[list[str]]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        w.writerows(rows)
    os.replace(tmp, path)


def _append_row(path: Path, columns: list[str], row: Mapping[str, float]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(columns)
        w.writerow([_fmt(row[c]) for c in columns])
        f.flush()
        os.fsync(f.fileno())


def _fmt(v: float) -> str:
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 2**53):
        return str(int(v))
    return repr(float(v))


def plot_curves(history: list[Mapping[str, float]], path: Union[str, os.PathLike],
                energy_per_atom: bool = True) -> None:
    """Write training curves (loss, per-target MAE, learning rate) as a PNG (Agg, no pyplot).

    Example:
        >>> plot_curves(result.history, "curves.png")  # doctest: +SKIP
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    if not history:
        return
    epochs = [h["epoch"] for h in history]
    targets = sorted({k[len("valid_"):-len("_mae")] for k in history[0]
                      if k.startswith("valid_") and k.endswith("_mae")})
    width = 3.6 * (2 + len(targets))
    fig = Figure(figsize=(width, 3.2), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 + len(targets), squeeze=False)[0]

    def positive(vals: list[float]) -> bool:
        return all(v > 0 and math.isfinite(v) for v in vals)

    ax = axes[0]
    for key, style in (("train_loss", "-"), ("valid_loss", "--")):
        vals = [h[key] for h in history]
        ax.plot(epochs, vals, style, marker="o", ms=3, label=key.replace("_", " "))
    if positive([h["train_loss"] for h in history] + [h["valid_loss"] for h in history]):
        ax.set_yscale("log")
    best = [h["epoch"] for h in history if h.get("best")]
    if best:
        ax.axvline(best[-1], color="grey", lw=0.8, ls=":", label=f"best (epoch {int(best[-1])})")
    ax.set_xlabel("epoch")
    ax.set_title("loss")
    ax.legend(fontsize=8)
    units = {"energy": "eV/atom" if energy_per_atom else "eV", "forces": "eV/Å", "score": "pK", "vectors": ""}
    for ax, t in zip(axes[1:-1], targets, strict=True):
        for split, style in (("train", "-"), ("valid", "--")):
            vals = [h[f"{split}_{t}_mae"] for h in history]
            ax.plot(epochs, vals, style, marker="o", ms=3, label=f"{split} MAE")
        if positive([h[f"valid_{t}_mae"] for h in history]):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(f"{t} MAE" + (f" ({units[t]})" if units.get(t) else ""))
        ax.legend(fontsize=8)
    ax = axes[-1]
    ax.plot(epochs, [h["lr"] for h in history], "-", marker="o", ms=3)
    ax.set_xlabel("epoch")
    ax.set_title("learning rate")
    fig.subplots_adjust(left=0.9 / width, right=1 - 0.2 / width, bottom=0.16, top=0.9,
                        wspace=0.35)  # fixed layout: tight_layout costs ~1 s per redraw
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# ----------------------------------------------------------------------------- epochs
def _forward(model: torch.nn.Module, graph, device: torch.device, dtype: torch.dtype,
             need_forces: bool) -> dict[str, torch.Tensor]:
    graph = graph.to(device=device, dtype=dtype)
    inputs = list(graph.inputs())
    if need_forces:
        # forces = -dE/dx inside the model; a leaf that requires grad lets the model
        # differentiate, and create_graph (model.training) lets the loss reach the weights
        inputs[0] = inputs[0].detach().requires_grad_(True)
    return model(*inputs)


def _run_epoch(model: torch.nn.Module, data: MolecularDataset, sampler: BlockBatchSampler,
               loss_fn: WeightedLoss, device: torch.device, dtype: torch.dtype,
               optimizer: Optional[torch.optim.Optimizer], grad_clip: Optional[float],
               epoch: int) -> MetricAccumulator:
    training = optimizer is not None
    model.train(training)
    need_forces = "forces" in loss_fn.weights
    grad = training or need_forces or bool(getattr(model, "compute_forces", False))
    acc = MetricAccumulator()
    with torch.set_grad_enabled(grad):
        for b, idx in enumerate(sampler):
            graph, targets = collate([data[i] for i in idx])
            targets = {k: v.to(device=device, dtype=dtype) for k, v in targets.items()}
            num_atoms = torch.bincount(graph.atom_batch_ids, minlength=graph.num_graphs).to(device)
            out = _forward(model, graph, device, dtype, need_forces)
            errs = loss_fn.errors(out, targets, num_atoms)
            if training:
                assert optimizer is not None
                loss, _ = loss_fn.reduce(errs)
                if not bool(torch.isfinite(loss)):
                    raise TrainError(f"loss became {float(loss)} in epoch {epoch}, batch {b + 1}; "
                                     "lower lr or set grad_clip, then rerun to resume")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                optimizer.step()
            acc.update({k: v.detach() for k, v in errs.items()})
    return acc


def _init_weights(path: str) -> dict:
    """Model weights of a ``best.pt`` / ``checkpoint.pt`` file (fine-tuning start)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several kinds for bad files
        raise TrainError(f"{path}: cannot read initial weights ({e})") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise TrainError(f"{path}: not a get_md checkpoint (no 'model' weights)")
    return ckpt["model"]


def fit_energy_statistics(model: torch.nn.Module, data: MolecularDataset) -> dict[str, Any]:
    """Set an energy model's per-element reference energies and output scale from data.

    If the model has an ``atom_ref`` embedding (eV per element), it gets the
    least-squares fit of the structures' energies to their element counts; if it has
    an ``energy_scale`` buffer, it gets the RMS of the reference forces (or, without
    forces, the RMS of the per-atom energy residuals). Models without these are left alone.

    Returns:
        What was set: ``{"atom_ref": {Z: eV}, "energy_scale": float}`` (possibly empty).

    Example:
        >>> fit_energy_statistics(model, train_set)  # doctest: +SKIP
        {'atom_ref': {1: -13.6, 8: -2041.3}, 'energy_scale': 0.71}
    """
    if getattr(model, "task", "energy") != "energy" or "energy" not in data.target_names:
        return {}
    if "charge" in data.target_names:  # ions shift the energy by their ionisation terms
        neutral = [s for s in data.samples if float(s.targets["charge"][0]) == 0.0]
        if neutral:
            data = MolecularDataset(neutral, name=data.name)
    done: dict[str, Any] = {}
    zs = _default_elements(data)
    col = {z: i for i, z in enumerate(zs)}
    counts = torch.zeros(len(data), len(zs), dtype=torch.float64)
    energy = torch.zeros(len(data), dtype=torch.float64)
    n_atoms = torch.zeros(len(data), dtype=torch.float64)
    for g, s in enumerate(data.samples):
        for z, c in zip(*torch.unique(s.graph.atomic_numbers, return_counts=True), strict=True):
            counts[g, col[int(z)]] = float(c)
        energy[g] = float(s.targets["energy"][0])
        n_atoms[g] = s.num_atoms
    residual = energy
    ref = getattr(model, "atom_ref", None)
    if isinstance(ref, torch.nn.Embedding) and ref.embedding_dim == 1:
        sol = torch.linalg.lstsq(counts, energy[:, None], driver="gelsd").solution[:, 0]
        with torch.no_grad():
            ref.weight[torch.tensor(zs, device=ref.weight.device), 0] = sol.to(ref.weight)
        residual = energy - counts @ sol
        done["atom_ref"] = {z: float(v) for z, v in zip(zs, sol, strict=True)}
    scale_buf = getattr(model, "energy_scale", None)
    if isinstance(scale_buf, torch.Tensor) and scale_buf.numel() == 1:
        if "forces" in data.target_names:
            f = torch.cat([s.targets["forces"].double().reshape(-1) for s in data.samples])
            scale = float(f.pow(2).mean().sqrt())
        else:
            scale = float((residual / n_atoms).pow(2).mean().sqrt())
        if math.isfinite(scale) and scale > 1e-8:
            with torch.no_grad():
                scale_buf.fill_(scale)
            done["energy_scale"] = scale
    return done


def fit_score_reference(model: torch.nn.Module, data: MolecularDataset) -> dict[str, Any]:
    """Set a score model's per-element references of ligand atoms from data.

    A GET score model adds ``atom_ref[Z]`` of every ligand atom (segments other than
    0; heavy atoms only for ``heavy_atoms_only`` models) to its score. Fitted by least
    squares of the training scores to the ligands' element counts, it starts training
    from a size-and-composition baseline (what "bigger ligands bind better" predicts)
    that the network then corrects: the last layer of the model's ``head`` is zeroed, so
    that training starts from the baseline itself. Models without ``atom_ref`` are left alone.

    Returns:
        ``{"ligand_atom_ref": {Z: score units}}`` or ``{}``.

    Example:
        >>> fit_score_reference(score_model, train_set)  # doctest: +SKIP
        {'ligand_atom_ref': {6: 0.21, 7: 0.19, 8: 0.17}}
    """
    ref = getattr(model, "atom_ref", None)
    if (getattr(model, "task", "") != "score" or "score" not in data.target_names
            or not isinstance(ref, torch.nn.Embedding) or ref.embedding_dim != 1):
        return {}
    heavy_only = bool(getattr(model, "heavy_atoms_only", False))
    ligand_z = []
    for s in data.samples:
        z = s.graph.atomic_numbers[s.graph.atom_segment_ids != 0]
        ligand_z.append(z[z != 1] if heavy_only else z)
    zs = sorted({int(v) for z in ligand_z for v in z.tolist()})
    if not zs:
        return {}
    col = {z: i for i, z in enumerate(zs)}
    counts = torch.zeros(len(data), len(zs), dtype=torch.float64)
    for g, z in enumerate(ligand_z):
        for v, c in zip(*torch.unique(z, return_counts=True), strict=True):
            counts[g, col[int(v)]] = float(c)
    score = torch.tensor([float(s.targets["score"][0]) for s in data.samples], dtype=torch.float64)
    sol = torch.linalg.lstsq(counts, score[:, None], driver="gelsd").solution[:, 0]
    with torch.no_grad():
        ref.weight[torch.tensor(zs, device=ref.weight.device), 0] = sol.to(ref.weight)
        # the network starts as a correction of zero: the model starts at the baseline
        last = model.head[-1] if isinstance(getattr(model, "head", None), torch.nn.Sequential) else None
        if isinstance(last, torch.nn.Linear):
            last.weight.zero_()
            last.bias.zero_()
    return {"ligand_atom_ref": {z: float(v) for z, v in zip(zs, sol, strict=True)}}


def _default_elements(data: MolecularDataset) -> list[int]:
    zs: set[int] = set()
    for s in data.samples:
        zs.update(int(z) for z in torch.unique(s.graph.atomic_numbers))
    return sorted(zs)


# ----------------------------------------------------------------------------- train
def train(config: TrainConfig, command: Optional[str] = None) -> TrainResult:
    """Train a model as ``config`` says; resume from ``output_dir/checkpoint.pt`` if present.

    Args:
        config: the run's settings.
        command: the command line, recorded in the exported model's provenance.

    Returns:
        A :class:`TrainResult` (paths, best epoch and loss, history rows).

    Raises:
        TrainError: no data, a checkpoint from a different configuration, a non-finite loss.

    Example:
        >>> cfg = TrainConfig(family="get", model={"d_hidden": 32},
        ...                   train_data="train.pt", max_epochs=50, output_dir="runs/a")
        >>> result = train(cfg)  # doctest: +SKIP
    """
    config.validate()
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path, ckpt_path = out_dir / LOG_NAME, out_dir / CHECKPOINT_NAME
    best_path, model_path = out_dir / BEST_NAME, out_dir / MODEL_NAME
    device = torch.device(config.device)
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if config.verbose else (lambda msg: None)

    train_ds, valid_ds, data_info = _datasets(config)
    weights = config.loss_weights or {t: 1.0 for t in train_ds.target_names if t not in LABELS}
    missing = sorted(set(weights) - set(train_ds.target_names))
    if missing:
        raise TrainError(f"loss_weights name targets {missing} that the data lacks "
                         f"(data has {train_ds.target_names})")
    loss_fn = WeightedLoss(weights, config.loss, config.energy_per_atom, config.neutral_energy_only)
    columns = _columns(loss_fn.targets)

    _seed_everything(config.seed)
    model = build_model_for(config.family, config.model, config.model_factory)
    model.to(device=device, dtype=dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.lr_gamma)
    train_sampler = BlockBatchSampler(train_ds.block_counts(), config.max_blocks, shuffle=True,
                                      seed=config.seed)
    valid_sampler = BlockBatchSampler(valid_ds.block_counts(), config.max_blocks, shuffle=False)

    start_epoch, best_loss, best_epoch, bad_epochs = 1, math.inf, 0, 0
    elapsed, stopped_early = 0.0, False
    history: list[dict[str, float]] = []
    if config.resume and ckpt_path.exists():
        try:
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise TrainError(f"{ckpt_path}: cannot read checkpoint ({e}); move it away to start over") from e
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise TrainError(f"{ckpt_path}: not a get_md training checkpoint")
        diff = config.differences(ckpt["config"])
        if diff:
            raise TrainError(f"{ckpt_path}: checkpoint was written with different settings for "
                             f"{diff}; use a new output_dir or resume=False to start over")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch = int(ckpt["epoch"]) + 1
        best_loss, best_epoch = float(ckpt["best_valid_loss"]), int(ckpt["best_epoch"])
        bad_epochs, elapsed = int(ckpt["bad_epochs"]), float(ckpt["elapsed_s"])
        stopped_early = bool(ckpt["stopped_early"])
        history = _read_log(log_path, columns, int(ckpt["epoch"]))
        _set_rng_state(ckpt["rng"])
        say(f"resuming {out_dir} after epoch {ckpt['epoch']} (best valid loss {best_loss:.6g} "
            f"at epoch {best_epoch})")
    else:
        for p in (log_path, ckpt_path, best_path):
            if p.exists():
                p.unlink()
        if config.init_from:
            model.load_state_dict(_init_weights(config.init_from))
            say(f"initial weights from {config.init_from}")
        elif config.fit_energy_reference:
            fitted = fit_energy_statistics(model, train_ds) or fit_score_reference(model, train_ds)
            if fitted:
                say(f"fitted reference statistics: {fitted}")

    model_config = dict(getattr(model, "config", None) or config.model)
    family = str(getattr(model, "family", config.family))
    if not best_path.exists() and start_epoch > 1:
        raise TrainError(f"{best_path}: missing; cannot resume (use resume=False to start over)")
    say(f"training {family} on {data_info['n_train']} structures "
        f"(valid {data_info['n_valid']}), targets {loss_fn.targets}, output {out_dir}")

    epoch = start_epoch - 1
    for epoch in range(start_epoch, config.max_epochs + 1):
        if stopped_early:
            break
        t0 = time.perf_counter()
        lr = float(optimizer.param_groups[0]["lr"])
        train_sampler.set_epoch(epoch)
        tr = _run_epoch(model, train_ds, train_sampler, loss_fn, device, dtype, optimizer,
                        config.grad_clip, epoch)
        va = _run_epoch(model, valid_ds, valid_sampler, loss_fn, device, dtype, None, None, epoch)
        scheduler.step()
        valid_loss = loss_fn.epoch_loss(va)
        improved = valid_loss < best_loss - config.min_delta
        if improved:
            best_loss, best_epoch, bad_epochs = valid_loss, epoch, 0
            _atomic_torch_save({"format": "get_md.best", "model": model.state_dict(),
                                "family": family, "model_config": model_config,
                                "epoch": epoch, "valid_loss": valid_loss,
                                "valid_metrics": va.compute()}, best_path)
        else:
            bad_epochs += 1
        stopped_early = bad_epochs >= config.patience
        dt = time.perf_counter() - t0
        elapsed += dt
        row: dict[str, float] = {"epoch": epoch, "lr": lr, "train_loss": loss_fn.epoch_loss(tr)}
        row.update({f"train_{k}": v for k, v in tr.compute().items()})
        row["valid_loss"] = valid_loss
        row.update({f"valid_{k}": v for k, v in va.compute().items()})
        row.update({"best": int(improved), "epoch_time_s": round(dt, 3), "elapsed_s": round(elapsed, 3)})
        _append_row(log_path, columns, row)
        history.append(row)
        _atomic_torch_save({
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": epoch,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "best_valid_loss": best_loss,
            "best_epoch": best_epoch, "bad_epochs": bad_epochs, "stopped_early": stopped_early,
            "elapsed_s": elapsed, "rng": _rng_state(), "config": config.to_dict(),
            "family": family, "model_config": model_config,
        }, ckpt_path)
        if config.plot:
            plot_curves(history, out_dir / CURVES_NAME, config.energy_per_atom)
        say(f"epoch {epoch:4d}  lr {lr:.3e}  train {row['train_loss']:.5g}  "
            f"valid {valid_loss:.5g}{'  *' if improved else ''}  ({dt:.1f} s)")
        if stopped_early:
            say(f"early stop: no improvement for {config.patience} epochs")

    last_epoch = int(history[-1]["epoch"]) if history else epoch
    if not best_path.exists():
        raise TrainError(f"{out_dir}: no epoch finished; nothing to export")
    best = torch.load(best_path, map_location="cpu", weights_only=True)
    model.load_state_dict(best["model"])
    meta = dict(config.export_metadata)
    if not model_config.get("elements") and not getattr(model, "elements", None):
        meta.setdefault("elements", _default_elements(train_ds))
    best_row = next((h for h in history if int(h["epoch"]) == best_epoch), None)
    metrics = {"best_epoch": best_epoch, "valid_loss": best_loss}
    if best_row is not None:
        metrics.update({k: v for k, v in best_row.items() if k.startswith("valid_")})
    meta["dataset"] = data_info
    meta["command"] = command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    meta["metrics"] = metrics
    meta["training"] = {"config": config.to_dict(), "epochs": last_epoch,
                        "stopped_early": stopped_early}
    from get_md import export

    export.save(model, model_path, meta)
    say(f"best epoch {best_epoch} (valid loss {best_loss:.6g}); model written to {model_path}")
    return TrainResult(output_dir=out_dir, model_path=model_path, best_epoch=best_epoch,
                       best_valid_loss=best_loss, last_epoch=last_epoch,
                       stopped_early=stopped_early, history=history)
