"""Training N-body models (``get-md nbody train``): settings, batches, loss, weight EMA.

The epochs run in the core training loop, ``get_md.train.loop.run_loop``, which owns
the optimiser and scheduler steps, validation, best-model selection, ``log.csv``,
``best.pt`` and the resumable ``checkpoint.pt``. This module plugs in, as
``LoopHooks``: batches sliced from stacked tensors with per-epoch draws of the order,
charge flips and training windows; a step that feeds ``forward_with_vectors``
(velocities, charges) and returns the position (+ weighted velocity) MSE; a weight EMA
updated after every optimiser step and swapped in for validation; validation every
``eval_every`` epochs with the best model chosen by position MSE; the EMA weights in
the checkpoint. The LR schedule is the core's per-step warm-up + cosine
(``get_md.train.schedule.warmup_cosine``). At the end the best model is exported with
N-body metadata.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import torch
from torch import nn

from get_md.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    atomic_torch_save,
    load_torch_file,
    seed_everything,
)
from get_md.train.loop import (
    EpochCallback,
    LoopHooks,
    LoopSettings,
    LoopState,
    plot_curves,
    run_loop,
)
from get_md.train.schedule import warmup_cosine

from .data import NBodySamples, batch_inputs, load_data, make_samples, pick_windows, stack_windows
from .model import build_nbody_model
from .protocol import FRAME_IN, FRAME_OUT, PARTICLE_Z, PROTOCOL, NBodyError, interval_time


@dataclass
class NBodyTrainConfig:
    """Settings of :func:`train_nbody`.

    N-body inputs carry velocities and charges, so batches are sliced from stacked
    tensors (no per-sample Python work) and fed to ``forward_with_vectors``; the epochs,
    checkpoints and logs are the core loop's (``get_md.train.loop.run_loop``). Rotation
    augmentation is not used: the models are E(3)-equivariant.

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


def _upgrade_checkpoint(path: Path) -> None:
    """Rewrite a checkpoint of the N-body loop before it used the core loop (format
    ``get_md.nbody.checkpoint``) in the core format, so that such a run resumes."""
    if not path.exists():
        return
    ck = load_torch_file(path, "checkpoint", NBodyError, hint="move it away to start over")
    if not isinstance(ck, dict) or ck.get("format") != "get_md.nbody.checkpoint":
        return
    ck = {**ck, "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
          "best_valid_loss": ck.pop("best_valid_mse"), "bad_epochs": 0, "stopped_early": False,
          "rng": {"torch": ck.pop("torch_rng")}}
    atomic_torch_save(ck, path)


def _step(velocity_weight: float):
    """The loss hook: position MSE plus ``velocity_weight`` x velocity MSE of one batch."""

    def step(model: nn.Module, batch: Any, training: bool):
        s, idx, flip = batch
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
            if velocity_weight > 0:
                loss = loss + velocity_weight * err_v.pow(2).mean()
        return loss, errs, b

    return step


def train_nbody(config: NBodyTrainConfig, command: Optional[str] = None,
                callbacks: Sequence[EpochCallback] = ()) -> NBodyTrainResult:
    """Train an N-body model in the core loop; resumable (rerun with the same output directory).

    Writes in ``output_dir``: ``log.csv`` (one row per epoch), ``curves.png``,
    ``checkpoint.pt`` (every epoch, atomic), ``best.pt`` (best valid position MSE),
    ``model.pt`` (best model exported with metadata: protocol, frames, seeds, metrics)
    and ``metrics.json``. ``callbacks`` are extra ``(state, row)`` callbacks after each
    epoch (``get_md.train.loop.LoopHooks.on_epoch_end``).

    Example:
        >>> cfg = NBodyTrainConfig(model={"d_model": 64}, train_data="train.npz",
        ...                        valid_data="valid.npz", epochs=10, output_dir="runs/nb")
        >>> result = train_nbody(cfg)  # doctest: +SKIP
    """
    from get_md import export

    config.validate()
    if config.threads:
        torch.set_num_threads(int(config.threads))
    out_dir = Path(config.output_dir)
    ckpt_path, model_path = out_dir / "checkpoint.pt", out_dir / "model.pt"
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

    seed_everything(config.seed)
    model_cfg = dict(config.model)
    if config.family == "geomformer":
        model_cfg.setdefault("interval", tau)
    model = build_nbody_model(config.family, **model_cfg).to(device=device, dtype=dtype)
    # family as the core's build_model_for reads it (so 'get-md export best.pt' rebuilds the model)
    ckpt_family = "get_md.workflows.nbody:NBodyGeoMFormer" if config.family == "geomformer" else "get"
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(tr) / config.batch_size)
    sched = warmup_cosine(optimizer, steps_per_epoch * config.epochs,
                          steps_per_epoch * config.warmup_epochs, config.min_lr_ratio)
    ema = _EMA(model, config.ema_decay) if config.ema_decay > 0 else None
    gen = torch.Generator()

    def batches(split: str, epoch: int) -> Iterator[tuple]:
        """(samples, index, charge flips) per batch: training in a per-epoch order with
        per-epoch flips and windows, validation in file order, 500 at a time."""
        if split == "valid":
            order = torch.arange(len(va))
            for a in range(0, len(va), 500):
                yield va, order[a:a + 500].to(va.positions.device), None
            return
        gen.manual_seed(config.seed * 1_000_003 + epoch)
        order = torch.randperm(len(tr), generator=gen)
        flip = None
        if config.charge_flip:
            flip = torch.randint(0, 2, (len(tr),), generator=gen).mul(2).sub(1).to(tr.positions.device)
        samples = tr
        if windows is not None:
            pick = torch.randint(0, windows.positions.shape[0], (len(tr),), generator=gen)
            samples = pick_windows(windows, pick.to(tr.positions.device))
        for a in range(0, len(samples), config.batch_size):
            yield samples, order[a:a + config.batch_size].to(samples.positions.device), flip

    def check_resume(ck: dict) -> None:
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

    def load_ema(ck: dict) -> None:
        if ema is not None:
            ema.shadow = {k: v.to(device=device) for k, v in ck["ema"].items()}

    def progress(state: LoopState, row: Dict[str, float]) -> None:
        if config.plot:
            plot_rows = [dict(h) for h in state.history if "valid_mse" in h and math.isfinite(h["valid_mse"])]
            if plot_rows:
                plot_curves(plot_rows, out_dir / "curves.png", energy_per_atom=False)
        va_text = f"  valid MSE {row['valid_mse']:.5g}" if "valid_mse" in row else ""
        say(f"epoch {row['epoch']:4d}  lr {row['lr']:.2e}  train {row['train_loss']:.5g}{va_text}"
            f"{'  *' if row['best'] else ''}  ({row['epoch_time_s']:.1f} s, {row['samples_per_s']:.0f} samples/s)")

    swap = (lambda: ema.swap(model)) if ema is not None else None  # validate and keep the averaged weights
    hooks = LoopHooks(
        batches=batches, step=_step(config.velocity_weight), epoch_loss=lambda acc, mean: mean,
        valid_metric=lambda acc: acc.mean("vectors", "mse"), metric_name="mse",
        validate_at=lambda epoch: epoch % config.eval_every == 0 or epoch == config.epochs,
        after_step=(lambda: ema.update(model, sched.last_epoch)) if ema is not None else None,
        before_validation=swap, after_validation=swap, on_epoch_end=[progress, *callbacks],
        check_resume=check_resume, load_extra=load_ema,
        save_extra=lambda: {"ema": ema.shadow if ema is not None else {}})
    settings = LoopSettings(out_dir, config.epochs, _LOG_COLUMNS, config.to_dict(), ckpt_family,
                            dict(model.config), grad_clip=config.grad_clip, scheduler_interval="step",
                            resume=config.resume, say=say)
    if config.resume:
        _upgrade_checkpoint(ckpt_path)
    n_params = sum(p.numel() for p in model.parameters())
    say(f"training nbody {config.family} ({n_params} parameters) on {len(tr)} systems "
        f"(valid {len(va)}), frames {config.frame_in} -> {config.frame_out}, output {out_dir}")
    state = run_loop(model, optimizer, sched, hooks, settings)

    history, best_epoch, best_mse = state.history, state.stop.best_epoch, state.stop.best
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
