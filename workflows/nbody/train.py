"""Training N-body models (``get-md nbody train``): settings, loop, EMA, LR schedule, logs.

This is a loop of its own, not ``get_md.train.loop.train``: the core loop collates
``MolecularGraph`` samples and calls ``model(*graph.inputs())`` with Adam, a per-epoch
exponential LR decay, a weighted loss and early stopping. N-body training needs, at
points the core loop has no hooks for: batches sliced from stacked tensors and fed to
``forward_with_vectors`` (velocities, charges), per-epoch draws of charge flips and
training windows, AdamW with a per-step warm-up + cosine schedule, a weight EMA
updated after every step and swapped in for validation, export and the checkpoint,
validation every ``eval_every`` epochs with the best model chosen by position MSE,
and N-body metadata in the exported file. It reuses the core's ``plot_curves``,
``MetricAccumulator`` and ``get_md.export.save``.
"""

from __future__ import annotations

import csv
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from get_md.atomic import atomic_output, atomic_path

from .data import NBodySamples, batch_inputs, load_data, make_samples, pick_windows, stack_windows
from .model import build_nbody_model
from .protocol import FRAME_IN, FRAME_OUT, PARTICLE_Z, PROTOCOL, NBodyError, interval_time


@dataclass
class NBodyTrainConfig:
    """Settings of :func:`train_nbody` (the N-body training loop).

    The core loop (``get_md.train``) feeds ``model(*graph.inputs())`` from samples that
    hold a ``MolecularGraph`` and targets; N-body inputs also need velocities and
    charges, so this loop batches tensors directly (no per-sample Python work) and
    reuses the core's pieces: ``plot_curves``, ``MetricAccumulator`` and
    ``get_md.export.save``. Rotation augmentation is not used: the models are
    E(3)-equivariant.

    Attributes:
        family: "geomformer" or "get".
        model: hyper-parameters of :func:`build_nbody_model`.
        train_data, valid_data: ``.npz`` files (see :func:`simulate`).
        output_dir: log.csv, curves.png, checkpoint.pt, best.pt, model.pt, metrics.json.
        epochs: number of epochs (the LR schedule spans them).
        batch_size: systems per step.
        lr, weight_decay, warmup_epochs, min_lr_ratio: AdamW with linear warm-up and
            cosine decay to ``lr * min_lr_ratio``, stepped per batch.
        grad_clip: max gradient norm (None: off).
        velocity_weight: weight of the velocity MSE (0: train positions only).
        charge_flip: augment by flipping the sign of all charges of a system (with
            probability 1/2 per system and epoch): the dynamics depend on q_i q_j only,
            so this is an exact symmetry that the charge embedding does not build in.
        ema_decay: keep an exponential moving average of the weights (per step, e.g.
            0.995); validation, best.pt and the exported model use the averaged weights.
            0 disables it.
        max_train, max_valid: use the first samples of each file only.
        window_start: None (default) trains on frame_in -> frame_out only, the published
            protocol. An integer w < frame_in also uses the earlier windows of the same
            training trajectories: each epoch, every trajectory contributes one pair
            (t, t + frame_out - frame_in) with t drawn uniformly from w..frame_in. The
            dynamics are autonomous, so every window samples the same map; validation
            always uses frame_in -> frame_out.
        frame_in, frame_out: input and target frames.
        seed: model init and batch order.
        device, dtype, threads: where and how to run (threads: torch.set_num_threads).
        eval_every: validate every k epochs (and at the last).
        resume: continue from checkpoint.pt if present.
    """

    family: str = "geomformer"
    model: Dict[str, Any] = field(default_factory=dict)
    train_data: str = ""
    valid_data: str = ""
    output_dir: str = "runs/nbody"
    epochs: int = 100
    batch_size: int = 100
    lr: float = 5e-4
    weight_decay: float = 1e-6
    warmup_epochs: int = 2
    min_lr_ratio: float = 0.01
    grad_clip: Optional[float] = 1.0
    velocity_weight: float = 0.1
    charge_flip: bool = True
    ema_decay: float = 0.995
    max_train: Optional[int] = 3000
    max_valid: Optional[int] = 2000
    window_start: Optional[int] = None
    frame_in: int = FRAME_IN
    frame_out: int = FRAME_OUT
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    threads: Optional[int] = None
    eval_every: int = 1
    resume: bool = True
    plot: bool = True
    verbose: bool = True

    def validate(self) -> NBodyTrainConfig:
        def need(cond: bool, name: str, what: str) -> None:
            if not cond:
                raise NBodyError(f"{name} must be {what}, got {getattr(self, name)!r}")

        need(self.family in ("geomformer", "get"), "family", '"geomformer" or "get"')
        need(self.epochs >= 1, "epochs", ">= 1")
        need(self.batch_size >= 1, "batch_size", ">= 1")
        need(self.lr > 0, "lr", "positive")
        need(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", "in [0, 1]")
        need(self.warmup_epochs >= 0, "warmup_epochs", ">= 0")
        need(self.grad_clip is None or self.grad_clip > 0, "grad_clip", "positive or None")
        need(self.velocity_weight >= 0, "velocity_weight", ">= 0")
        need(0 <= self.ema_decay < 1, "ema_decay", "in [0, 1)")
        need(self.frame_out > self.frame_in >= 0, "frame_out", "> frame_in >= 0")
        need(self.window_start is None or 0 <= self.window_start <= self.frame_in, "window_start",
             "None or in [0, frame_in]")
        need(self.dtype in ("float32", "float64"), "dtype", '"float32" or "float64"')
        need(self.eval_every >= 1, "eval_every", ">= 1")
        return self

    def to_dict(self) -> Dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))


#: Settings that may change when resuming.
_RESUMABLE = {"device", "threads", "output_dir", "resume", "plot", "verbose", "train_data",
              "valid_data", "eval_every"}
_LOG_COLUMNS = ["epoch", "lr", "train_loss", "train_vectors_mae", "train_vectors_rmse",
                "train_velocities_mae", "train_velocities_rmse", "valid_loss", "valid_mse",
                "valid_vectors_mae", "valid_vectors_rmse", "valid_velocities_mae",
                "valid_velocities_rmse", "best", "samples_per_s", "epoch_time_s", "elapsed_s"]


@dataclass
class NBodyTrainResult:
    output_dir: Path
    model_path: Path
    best_epoch: int
    best_valid_mse: float
    last_epoch: int
    history: List[Dict[str, float]] = field(default_factory=list)


class _EMA:
    """Exponential moving average of a model's floating-point parameters and buffers."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = float(decay)
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()
                       if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Average in the current weights; the decay ramps up as (1 + step) / (10 + step)."""
        decay = min(self.decay, (1.0 + step) / (10.0 + step))
        state = model.state_dict()
        keys = list(self.shadow)
        torch._foreach_lerp_([self.shadow[k] for k in keys], [state[k].detach() for k in keys],
                             1.0 - decay)

    def swap(self, model: nn.Module) -> None:
        """Exchange the model's weights and the averaged ones (call twice to undo)."""
        state = model.state_dict()
        with torch.no_grad():
            for k, v in self.shadow.items():
                tmp = state[k].detach().clone()
                state[k].copy_(v)
                v.copy_(tmp)


def _lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    t = min(1.0, (step - warmup) / span)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def _atomic_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _write_log(path: Path, rows: Sequence[Mapping[str, float]]) -> None:
    with atomic_output(path, newline="") as f:
        w = csv.writer(f)
        w.writerow(_LOG_COLUMNS)
        for r in rows:
            w.writerow([_fmt(r.get(c, float("nan"))) for c in _LOG_COLUMNS])


def _fmt(v: Any) -> str:
    if isinstance(v, (int, bool)) or (isinstance(v, float) and v.is_integer() and abs(v) < 2**53):
        return str(int(v))
    return repr(float(v))


def _read_log(path: Path, up_to: int) -> List[Dict[str, float]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != _LOG_COLUMNS:
        return []
    out = []
    for r in rows[1:]:
        if len(r) != len(_LOG_COLUMNS):
            break
        try:
            row = {c: float(v) for c, v in zip(_LOG_COLUMNS, r, strict=True)}
        except ValueError:
            break
        if row["epoch"] > up_to:
            break
        out.append(row)
    return out


def _epoch_pass(model: nn.Module, s: NBodySamples, batch_size: int, vel_weight: float,
                optimizer: Optional[torch.optim.Optimizer] = None, sched: Any = None,
                grad_clip: Optional[float] = None, order: Optional[torch.Tensor] = None,
                epoch: int = 0, flip: Optional[torch.Tensor] = None,
                ema: Optional[_EMA] = None) -> Tuple[Any, float]:
    from get_md.train.loss import MetricAccumulator

    training = optimizer is not None
    model.train(training)
    acc = MetricAccumulator()
    n = len(s)
    idx_all = order if order is not None else torch.arange(n)
    total, count = 0.0, 0
    with torch.set_grad_enabled(training):
        for a in range(0, n, batch_size):
            idx = idx_all[a:a + batch_size].to(s.positions.device)
            q = s.charges[idx]
            if flip is not None:
                q = q * flip[idx].to(q)[:, None]
            out = model.forward_with_vectors(*batch_inputs(s.positions[idx], s.velocities[idx], q))
            b = idx.numel()
            err_x = out["vectors"].view(b, -1, 3) - s.displacement[idx]
            errs = {"vectors": err_x.detach()}
            loss = err_x.pow(2).mean()
            if "velocities" in out:
                err_v = out["velocities"].view(b, -1, 3) - s.velocities_out[idx]
                errs["velocities"] = err_v.detach()
                if vel_weight > 0:
                    loss = loss + vel_weight * err_v.pow(2).mean()
            if training:
                if not bool(torch.isfinite(loss)):
                    raise NBodyError(f"loss became {float(loss)} in epoch {epoch}; lower lr, "
                                     "then rerun to resume from the last checkpoint")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                optimizer.step()
                if sched is not None:
                    sched.step()
                if ema is not None:
                    ema.update(model, sched.last_epoch if sched is not None else 0)
            acc.update(errs)
            total += float(loss.detach()) * b
            count += b
    return acc, total / max(count, 1)


def train_nbody(config: NBodyTrainConfig, command: Optional[str] = None) -> NBodyTrainResult:
    """Train an N-body model; resumable (rerun with the same output directory).

    Writes in ``output_dir``: ``log.csv`` (one row per epoch), ``curves.png``,
    ``checkpoint.pt`` (every epoch, atomic), ``best.pt`` (best valid position MSE),
    ``model.pt`` (best model exported with metadata: protocol, frames, seeds, metrics)
    and ``metrics.json``.

    Example:
        >>> cfg = NBodyTrainConfig(model={"d_model": 64}, train_data="train.npz",
        ...                        valid_data="valid.npz", epochs=10, output_dir="runs/nb")
        >>> result = train_nbody(cfg)  # doctest: +SKIP
    """
    from get_md import export
    from get_md.train.loop import plot_curves

    config.validate()
    if config.threads:
        torch.set_num_threads(int(config.threads))
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path, ckpt_path = out_dir / "log.csv", out_dir / "checkpoint.pt"
    best_path, model_path = out_dir / "best.pt", out_dir / "model.pt"
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if config.verbose else (lambda m: None)
    device = torch.device(config.device)
    dtype = torch.float64 if config.dtype == "float64" else torch.float32

    if not config.train_data or not config.valid_data:
        raise NBodyError("train_data and valid_data (.npz files from 'get-md nbody generate') are required")
    train_raw = load_data(config.train_data, frame_out=config.frame_out, frame_in=config.frame_in)
    valid_raw = load_data(config.valid_data, frame_out=config.frame_out, frame_in=config.frame_in)
    tr = make_samples(train_raw, config.frame_in, config.frame_out, config.max_train, dtype).to(device)
    windows: Optional[NBodySamples] = None  # [W, S, ...] training windows (window_start only)
    if config.window_start is not None:
        gap = config.frame_out - config.frame_in
        windows = stack_windows([make_samples(train_raw, t, t + gap, config.max_train, dtype).to(device)
                                  for t in range(config.window_start, config.frame_in + 1)])
    va = make_samples(valid_raw, config.frame_in, config.frame_out, config.max_valid, dtype).to(device)
    tau = interval_time(train_raw.get("protocol"), config.frame_in, config.frame_out)

    random.seed(config.seed)
    np.random.seed(config.seed % 2**32)
    torch.manual_seed(config.seed)
    model_cfg = dict(config.model)
    if config.family == "geomformer":
        model_cfg.setdefault("interval", tau)
    model = build_nbody_model(config.family, **model_cfg).to(device=device, dtype=dtype)
    # family as the core's build_model_for reads it (so 'get-md export best.pt' rebuilds the model)
    ckpt_family = "get_md.workflows.nbody:NBodyGeoMFormer" if config.family == "geomformer" else "get"
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(tr) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warm = steps_per_epoch * config.warmup_epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, total_steps, warm, config.min_lr_ratio))

    ema = _EMA(model, config.ema_decay) if config.ema_decay > 0 else None
    start, best_mse, best_epoch, elapsed = 1, math.inf, 0, 0.0
    history: List[Dict[str, float]] = []
    if config.resume and ckpt_path.exists():
        try:
            ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise NBodyError(f"{ckpt_path}: cannot read checkpoint ({e}); move it away to start over") from e
        old = ck.get("config", {})
        diff = sorted(k for k, v in config.to_dict().items()
                      if k not in _RESUMABLE and k != "model" and old.get(k) != v)
        # the model is compared by its full hyper-parameters (defaults filled in)
        if json.loads(json.dumps(ck.get("model_config", {}), default=str)) != \
                json.loads(json.dumps(dict(model.config), default=str)):
            diff.append("model")
        if diff:
            raise NBodyError(f"{ckpt_path}: checkpoint was written with different settings for {diff}; "
                             "use a new output directory (or --no-resume) to start over")
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        if ema is not None:
            ema.shadow = {k: v.to(device=device) for k, v in ck["ema"].items()}
        start = int(ck["epoch"]) + 1
        best_mse, best_epoch, elapsed = float(ck["best_valid_mse"]), int(ck["best_epoch"]), float(ck["elapsed_s"])
        torch.set_rng_state(ck["torch_rng"])
        history = _read_log(log_path, int(ck["epoch"]))
        _write_log(log_path, history)
        say(f"resuming {out_dir} after epoch {ck['epoch']} (best valid MSE {best_mse:.6g} at epoch {best_epoch})")
    else:
        for p in (log_path, ckpt_path, best_path):
            if p.exists():
                p.unlink()
    n_params = sum(p.numel() for p in model.parameters())
    say(f"training nbody {config.family} ({n_params} parameters) on {len(tr)} systems "
        f"(valid {len(va)}), frames {config.frame_in} -> {config.frame_out}, output {out_dir}")

    gen = torch.Generator()
    for epoch in range(start, config.epochs + 1):
        t0 = time.perf_counter()
        lr = float(optimizer.param_groups[0]["lr"])
        gen.manual_seed(config.seed * 1_000_003 + epoch)
        order = torch.randperm(len(tr), generator=gen)
        flip = None
        if config.charge_flip:
            flip = torch.randint(0, 2, (len(tr),), generator=gen).mul(2).sub(1).to(tr.positions.device)
        epoch_samples = tr
        if windows is not None:
            pick = torch.randint(0, windows.positions.shape[0], (len(tr),), generator=gen)
            epoch_samples = pick_windows(windows, pick.to(tr.positions.device))
        tr_acc, tr_loss = _epoch_pass(model, epoch_samples, config.batch_size, config.velocity_weight, optimizer,
                                      sched, config.grad_clip, order, epoch, flip, ema)
        t_train = time.perf_counter() - t0
        row: Dict[str, float] = {"epoch": epoch, "lr": lr, "train_loss": tr_loss}
        row.update({f"train_{k}": v for k, v in tr_acc.compute().items()})
        improved = False
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            if ema is not None:
                ema.swap(model)  # validate (and keep as best) the averaged weights
            va_acc, va_loss = _epoch_pass(model, va, 500, config.velocity_weight)
            mse = va_acc.mean("vectors", "mse")
            row.update({"valid_loss": va_loss, "valid_mse": mse})
            row.update({f"valid_{k}": v for k, v in va_acc.compute().items()})
            if mse < best_mse:
                improved = True
                best_mse, best_epoch = mse, epoch
                _atomic_save({"format": "get_md.best", "model": model.state_dict(), "family": ckpt_family,
                              "model_config": dict(model.config), "epoch": epoch, "valid_loss": va_loss,
                              "valid_metrics": {"mse": mse}}, best_path)
            if ema is not None:
                ema.swap(model)
        dt = time.perf_counter() - t0
        elapsed += dt
        row.update({"best": int(improved), "samples_per_s": round(len(tr) / max(t_train, 1e-9), 1),
                    "epoch_time_s": round(dt, 3), "elapsed_s": round(elapsed, 3)})
        history.append(row)
        _write_log(log_path, history)
        _atomic_save({"format": "get_md.nbody.checkpoint", "epoch": epoch, "model": model.state_dict(),
                      "optimizer": optimizer.state_dict(), "scheduler": sched.state_dict(),
                      "best_valid_mse": best_mse, "best_epoch": best_epoch, "elapsed_s": elapsed,
                      "torch_rng": torch.get_rng_state(), "config": config.to_dict(),
                      "ema": ema.shadow if ema is not None else {},
                      "family": ckpt_family, "model_config": dict(model.config)}, ckpt_path)
        if config.plot:
            plot_rows = [dict(h) for h in history if "valid_mse" in h and math.isfinite(h["valid_mse"])]
            if plot_rows:
                plot_curves(plot_rows, out_dir / "curves.png", energy_per_atom=False)
        va_text = f"  valid MSE {row['valid_mse']:.5g}" if "valid_mse" in row else ""
        say(f"epoch {epoch:4d}  lr {lr:.2e}  train {tr_loss:.5g}{va_text}{'  *' if improved else ''}  "
            f"({dt:.1f} s, {row['samples_per_s']:.0f} samples/s)")

    if not best_path.exists():
        raise NBodyError(f"{out_dir}: no validated epoch; nothing to export")
    best = torch.load(best_path, map_location="cpu", weights_only=True)
    model.load_state_dict(best["model"])
    model.to(device="cpu", dtype=torch.float32)
    metrics = {"best_epoch": best_epoch, "valid_mse": best_mse,
               "valid_mse_velocity": next((h.get("valid_velocities_rmse", float("nan")) ** 2
                                           for h in history if int(h["epoch"]) == best_epoch), None)}
    tr_proto = dict(train_raw.get("protocol") or {})
    va_proto = dict(valid_raw.get("protocol") or {})
    meta = {
        "description": f"N-body ({PROTOCOL['name']}) {config.family}: positions at frame "
                       f"{config.frame_out} from frame {config.frame_in}",
        "elements": [PARTICLE_Z],
        "application": "nbody",
        "builder": "get_md.workflows.nbody:build_nbody_model (family, **config)",
        "outputs": ["vectors", "velocities"] if getattr(model, "has_velocity_head", False) else ["vectors"],
        "units": {"length": "simulation units", "vectors": "displacement (simulation units)",
                  "velocities": "simulation units"},
        "nbody": {"protocol": {k: v for k, v in tr_proto.items() if k not in ("seed", "n_samples")}
                  or PROTOCOL, "frame_in": config.frame_in, "frame_out": config.frame_out,
                  "interval_time": tau, "train_seed": tr_proto.get("seed"),
                  "valid_seed": va_proto.get("seed"), "training_seed": config.seed,
                  "n_train": len(tr), "n_valid": len(va)},
        "dataset": {"train": str(config.train_data), "valid": str(config.valid_data),
                    "n_train": len(tr), "n_valid": len(va)},
        "command": command or " ".join(sys.argv),
        "metrics": metrics,
        "training": {"config": config.to_dict(), "epochs": history[-1]["epoch"] if history else 0},
    }
    export.save(model, model_path, meta)
    (out_dir / "metrics.json").write_text(json.dumps({"best_epoch": best_epoch, "valid_mse": best_mse,
                                                      "model": str(model_path)}, indent=2) + "\n")
    say(f"best epoch {best_epoch} (valid MSE {best_mse:.6g}); model written to {model_path}")
    return NBodyTrainResult(out_dir, model_path, best_epoch, best_mse,
                            int(history[-1]["epoch"]) if history else 0, history)
