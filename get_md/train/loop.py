"""The training loop: an epoch driver with hooks (:func:`run_loop`) and the trainer of
molecular datasets built on it (:func:`train`).

:func:`run_loop` owns what every trainer shares: the epochs, optimiser and scheduler
steps, validation, early stopping, ``log.csv``, ``best.pt`` and a resumable
``checkpoint.pt``. A trainer passes its data, loss and extras as :class:`LoopHooks`
(plain callables: batches, step, epoch loss, selection metric, per-step and per-epoch
callbacks, checkpoint extras). :func:`train` is the core trainer (Adam, exponential LR
decay per epoch, a weighted loss, block-count batching); the N-body workflow
(``get_md.workflows.nbody.train``) is another user of :func:`run_loop`.

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
File handling is in :mod:`get_md.train.checkpoint`, schedules and early stopping in
:mod:`get_md.train.schedule`, data-fitted starting statistics in
:mod:`get_md.train.fitting`, curves in :mod:`get_md.train.plots`.

Example:
    >>> from get_md.train import TrainConfig, train
    >>> result = train(TrainConfig(family="get", model={"d_hidden": 32},
    ...                            train_data="data/train.pt", output_dir="runs/demo"))  # doctest: +SKIP
    >>> result.model_path                                                               # doctest: +SKIP
    PosixPath('runs/demo/model.pt')
"""

from __future__ import annotations

import importlib
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import torch

from get_md.errors import TrainError
from get_md.perf import flush_denormals
from get_md.train.batching import BlockBatchSampler, SeriesBatchSampler, collate, series_of
from get_md.train.checkpoint import (
    BEST_NAME,
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    CHECKPOINT_VERSION,
    CURVES_NAME,
    LOG_NAME,
    MODEL_NAME,
    append_row,
    atomic_torch_save,
    grow_position_embedding,
    load_checkpoint,
    load_torch_file,
    read_init,
    read_log,
    rng_state,
    seed_everything,
    set_rng_state,
    torch_file_problem,
)
from get_md.train.config import TrainConfig
from get_md.train.data import LABELS, MolecularDataset, Sample
from get_md.train.ema import WeightAverage
from get_md.train.fitting import default_elements, fit_energy_statistics, fit_score_reference
from get_md.train.loss import DERIVED, MetricAccumulator, WeightedLoss
from get_md.train.plots import plot_curves
from get_md.train.schedule import EarlyStopping, exponential

__all__ = [
    "CHECKPOINT_FORMAT", "LoopHooks", "LoopSettings", "LoopState", "TrainConfig", "TrainError",
    "TrainResult", "build_model_for", "fit_energy_statistics", "fit_score_reference",
    "plot_curves", "run_loop", "run_pass", "train",
]

#: ``(model, batch, training) -> (loss or None, {target: errors}, samples in the batch)``
StepFn = Callable[[torch.nn.Module, Any, bool],
                  "tuple[Optional[torch.Tensor], Mapping[str, torch.Tensor], int]"]
#: ``(state, row)``: called after each epoch's row and checkpoint are written
EpochCallback = Callable[["LoopState", "dict[str, float]"], None]


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


# ----------------------------------------------------------------------------- the loop
@dataclass
class LoopHooks:
    """What a trainer plugs into :func:`run_loop`: plain callables, all optional but the first three.

    Attributes:
        batches: ``(split, epoch) -> iterable of batches`` for split ``"train"`` or
            ``"valid"``: the data order, augmentation draws and collation.
        step: ``(model, batch, training) -> (loss, errors, n)``: forward pass and loss of one
            batch. ``loss`` (a scalar tensor; may be None when not training) is what the
            optimiser minimises; ``errors`` (``{target: tensor}``) go into the epoch's
            :class:`MetricAccumulator` (the MAE / RMSE columns); ``n`` counts its samples.
        epoch_loss: ``(metrics, mean_batch_loss) -> float``: an epoch's ``train_loss`` /
            ``valid_loss`` from its accumulated errors or from the sample-weighted mean of
            the batch losses.
        valid_metric: ``metrics -> float``, the selection metric (lower is better) that
            picks ``best.pt`` and drives early stopping; None: the validation loss.
        metric_name: log the selection metric as ``valid_<metric_name>`` (and in best.pt).
        validate_at: ``epoch -> bool``, whether to validate after that epoch (default: all);
            an epoch without validation leaves its ``valid_*`` columns nan.
        after_step: called after every optimiser step (and per-step scheduler step).
        before_validation, after_validation: called around validation and the best.pt write.
        on_epoch_end: callbacks ``(state, row)`` after the epoch's row and checkpoint are written.
        on_fresh_start: called when the run starts over (no checkpoint, old outputs removed).
        check_resume: ``checkpoint -> None``, raises if the checkpoint's settings differ.
        save_extra: ``() -> dict`` merged into every checkpoint; ``load_extra(checkpoint)``
            restores it on resume.
        grad_in_eval: keep autograd on in validation (models that differentiate for forces).
    """

    batches: Callable[[str, int], Iterable[Any]]
    step: StepFn
    epoch_loss: Callable[[MetricAccumulator, float], float]
    valid_metric: Optional[Callable[[MetricAccumulator], float]] = None
    metric_name: Optional[str] = None
    validate_at: Callable[[int], bool] = lambda epoch: True
    after_step: Optional[Callable[[], None]] = None
    before_validation: Optional[Callable[[], None]] = None
    after_validation: Optional[Callable[[], None]] = None
    on_epoch_end: Sequence[EpochCallback] = ()
    on_fresh_start: Optional[Callable[[], None]] = None
    check_resume: Optional[Callable[[dict], None]] = None
    save_extra: Optional[Callable[[], dict]] = None
    load_extra: Optional[Callable[[dict], None]] = None
    grad_in_eval: bool = False


@dataclass
class LoopSettings:
    """Fixed settings of :func:`run_loop`.

    Attributes:
        output_dir: where ``log.csv``, ``checkpoint.pt`` and ``best.pt`` go.
        max_epochs: the last epoch.
        columns: the ``log.csv`` columns; the loop fills ``epoch``, ``lr``, ``train_loss``,
            ``train_*``, ``valid_loss``, ``valid_*``, ``best``, ``epoch_time_s``,
            ``elapsed_s`` and, if listed, ``samples_per_s`` (training samples per second).
        config: the run's settings (JSON-able), stored in the checkpoint.
        family, model_config: stored in ``checkpoint.pt`` and ``best.pt`` (what
            ``get-md export`` rebuilds the model from).
        patience, min_delta: early stopping (``patience=None``: never stop early).
        grad_clip: max gradient norm, or None.
        scheduler_interval: ``"epoch"`` or ``"step"``: when the LR scheduler steps.
        resume: continue from ``checkpoint.pt`` if present (else start over).
        say: progress messages.
    """

    output_dir: Path
    max_epochs: int
    columns: Sequence[str]
    config: Mapping[str, Any]
    family: str
    model_config: Mapping[str, Any]
    patience: Optional[int] = None
    min_delta: float = 0.0
    grad_clip: Optional[float] = None
    scheduler_interval: str = "epoch"
    resume: bool = True
    say: Callable[[str], None] = lambda msg: None


@dataclass
class LoopState:
    """Where a run stands: the last epoch, early-stopping state, elapsed time, log rows."""

    output_dir: Path
    stop: EarlyStopping
    epoch: int = 0
    elapsed: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def last_epoch(self) -> int:
        return int(self.history[-1]["epoch"]) if self.history else self.epoch


def run_pass(model: torch.nn.Module, batches: Iterable[Any], step: StepFn, epoch: int,
             optimizer: Optional[torch.optim.Optimizer] = None, scheduler: Any = None,
             grad_clip: Optional[float] = None, after_step: Optional[Callable[[], None]] = None,
             grad: bool = False) -> tuple[MetricAccumulator, float, int]:
    """One pass over ``batches``; trains when given an ``optimizer`` (``scheduler``, if
    given, steps after every optimiser step). Returns the accumulated errors, the
    sample-weighted mean batch loss and the number of samples."""
    training = optimizer is not None
    model.train(training)
    acc = MetricAccumulator()
    total, count = 0.0, 0
    with torch.set_grad_enabled(training or grad):
        for b, batch in enumerate(batches):
            loss, errs, n = step(model, batch, training)
            if training:
                assert optimizer is not None and loss is not None
                if not bool(torch.isfinite(loss)):
                    raise TrainError(f"loss became {float(loss)} in epoch {epoch}, batch {b + 1}; "
                                     "lower lr or set grad_clip, then rerun to resume")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                if after_step is not None:
                    after_step()
            acc.update({k: v.detach() for k, v in errs.items()})
            if loss is not None:
                total += float(loss.detach()) * n
            count += n
    return acc, total / max(count, 1), count


def _validate(model: torch.nn.Module, hooks: LoopHooks, settings: LoopSettings, state: LoopState,
              epoch: int, row: dict[str, float], best_path: Path) -> bool:
    if hooks.before_validation is not None:
        hooks.before_validation()
    va, va_mean, _ = run_pass(model, hooks.batches("valid", epoch), hooks.step, epoch,
                              grad=hooks.grad_in_eval)
    valid_loss = hooks.epoch_loss(va, va_mean)
    metric = hooks.valid_metric(va) if hooks.valid_metric is not None else valid_loss
    metrics = va.compute()
    if hooks.metric_name:
        metrics[hooks.metric_name] = metric
    row["valid_loss"] = valid_loss
    row.update({f"valid_{k}": v for k, v in metrics.items()})
    improved = state.stop.update(metric, epoch)
    if improved:
        atomic_torch_save({"format": "get_md.best", "model": model.state_dict(),
                           "family": settings.family, "model_config": dict(settings.model_config),
                           "epoch": epoch, "valid_loss": valid_loss, "valid_metrics": metrics},
                          best_path)
    if hooks.after_validation is not None:
        hooks.after_validation()
    return improved


def run_loop(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
             hooks: LoopHooks, settings: LoopSettings) -> LoopState:
    """Train ``model`` for the epochs left; resume from ``checkpoint.pt`` if present.

    Returns the final :class:`LoopState`, with the best weights (``best.pt``) loaded
    into ``model``.

    Raises:
        TrainError: a checkpoint of other settings (``hooks.check_resume``), a non-finite
            loss, or no validated epoch.

    Example:
        >>> state = run_loop(model, opt, sched, LoopHooks(batches, step, epoch_loss),
        ...                  LoopSettings("runs/x", 10, columns, {}, "get", {}))  # doctest: +SKIP
    """
    out_dir = Path(settings.output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TrainError(f"{out_dir}: output_dir is a file, not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path, ckpt_path, best_path = out_dir / LOG_NAME, out_dir / CHECKPOINT_NAME, out_dir / BEST_NAME
    say, columns = settings.say, list(settings.columns)
    state = LoopState(out_dir, EarlyStopping(settings.patience, settings.min_delta))
    start = 1
    if settings.resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        if hooks.check_resume is not None:
            hooks.check_resume(ckpt)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if hooks.load_extra is not None:
            hooks.load_extra(ckpt)
        start = int(ckpt["epoch"]) + 1
        state.stop.load_state_dict(ckpt)
        state.elapsed = float(ckpt["elapsed_s"])
        state.history = read_log(log_path, columns, int(ckpt["epoch"]))
        set_rng_state(ckpt["rng"])
        say(f"resuming {out_dir} after epoch {ckpt['epoch']} (best valid {hooks.metric_name or 'loss'} "
            f"{state.stop.best:.6g} at epoch {state.stop.best_epoch})")
    else:
        for p in (log_path, ckpt_path, best_path):
            if p.exists():
                p.unlink()
        if hooks.on_fresh_start is not None:
            hooks.on_fresh_start()
    if start > 1 and state.stop.best_epoch > 0:
        problem = torch_file_problem(best_path, "checkpoint")
        if problem is not None:  # found now, not after the remaining epochs
            raise TrainError(f"{best_path}: {problem}; cannot resume (start over with resume=False, or "
                             "--no-resume on the command line)")

    state.epoch = start - 1
    per_step = scheduler if settings.scheduler_interval == "step" else None
    for epoch in range(start, settings.max_epochs + 1):
        if state.stop.stopped:
            break
        t0 = time.perf_counter()
        lr = float(optimizer.param_groups[0]["lr"])
        with flush_denormals():  # subnormal activations as zero: 1.55x faster (see get_md.perf)
            tr, tr_mean, n_train = run_pass(model, hooks.batches("train", epoch), hooks.step, epoch,
                                            optimizer, per_step, settings.grad_clip, hooks.after_step)
            t_train = time.perf_counter() - t0
            row: dict[str, float] = {"epoch": epoch, "lr": lr, "train_loss": hooks.epoch_loss(tr, tr_mean)}
            row.update({f"train_{k}": v for k, v in tr.compute().items()})
            improved = hooks.validate_at(epoch) and _validate(model, hooks, settings, state, epoch, row,
                                                              best_path)
        if per_step is None:
            scheduler.step()
        dt = time.perf_counter() - t0
        state.elapsed += dt
        row["best"] = int(improved)
        if "samples_per_s" in columns:
            row["samples_per_s"] = round(n_train / max(t_train, 1e-9), 1)
        row.update({"epoch_time_s": round(dt, 3), "elapsed_s": round(state.elapsed, 3)})
        append_row(log_path, columns, row)
        state.history.append(row)
        state.epoch = epoch
        atomic_torch_save({
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "epoch": epoch,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), **state.stop.state_dict(),
            "elapsed_s": state.elapsed, "rng": rng_state(), "config": dict(settings.config),
            "family": settings.family, "model_config": dict(settings.model_config),
            **(hooks.save_extra() if hooks.save_extra is not None else {}),
        }, ckpt_path)
        for callback in hooks.on_epoch_end:
            callback(state, row)
        if state.stop.stopped:
            say(f"early stop: no improvement for {settings.patience} epochs")

    if not best_path.exists():
        raise TrainError(f"{out_dir}: no epoch finished with a validation; nothing to export")
    best = load_torch_file(best_path, "checkpoint", TrainError)
    model.load_state_dict(best["model"])
    return state


# ----------------------------------------------------------------------------- molecular trainer
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


def check_ligand_chemistry(model: torch.nn.Module, data: dict) -> None:
    """TrainError naming the data if its ligand atoms' codes do not fit the model: ligand
    chemistry codes (``affinity data --ligand-chemistry``) for a model without rows for
    them, or a model built with ``ligand_chemistry`` and data without the codes (it would
    train on the plain small-molecule code alone). ``data``: {source name: dataset}.

    Example:
        >>> check_ligand_chemistry(model, {"data/train.pt": train_ds})  # doctest: +SKIP
    """
    from get_md import vocab

    wants = bool((getattr(model, "config", None) or {}).get("ligand_chemistry"))
    for where, ds in data.items():
        has = any(int(ds[i].graph.atom_positions.max()) >= vocab.NUM_ATOM_POSITIONS for i in range(len(ds)))
        if has and not wants:
            raise TrainError(f"{where}: built with ligand chemistry codes (affinity data --ligand-chemistry), "
                             "which this model has no rows for: train with --set ligand_chemistry=true, or "
                             "build the data without the option")
        if wants and not has:
            raise TrainError(f"{where}: no ligand chemistry codes, and the model is built with "
                             "ligand_chemistry: build the data with affinity data --ligand-chemistry")


def _series_labels(ds: MolecularDataset) -> list[str]:
    """Each sample's series (name up to the last ``|``) for a ``score_series`` loss."""
    labels = []
    for i in range(len(ds)):
        names = ds[i].graph.names
        if not names or "|" not in names[0]:
            raise TrainError(f"{ds.name or 'dataset'}: sample {i} has no 'TARGET|series|ligand' name; "
                             "a score_series loss needs each structure's series")
        labels.append(series_of(names[0]))
    return labels


def _columns(targets: list[str]) -> list[str]:
    cols = ["epoch", "lr", "train_loss"]
    cols += [f"train_{t}_{m}" for t in targets for m in ("mae", "rmse")]
    cols += ["valid_loss"] + [f"valid_{t}_{m}" for t in targets for m in ("mae", "rmse")]
    return cols + ["best", "epoch_time_s", "elapsed_s"]


def _forward(model: torch.nn.Module, graph, device: torch.device, dtype: torch.dtype,
             need_forces: bool) -> dict[str, torch.Tensor]:
    graph = graph.to(device=device, dtype=dtype)
    inputs = graph.inputs()
    if need_forces:
        # forces = -dE/dx inside the model; a leaf that requires grad lets the model
        # differentiate, and create_graph (model.training) lets the loss reach the weights
        inputs = inputs._replace(positions=inputs.positions.detach().requires_grad_(True))
    return model(*inputs)


def _average_weights(hooks: LoopHooks, model: torch.nn.Module, decay: float, ckpt_path: Path) -> None:
    """Validate, select (``best.pt``) and export the EMA of the weights (see ``get_md.train.ema``);
    the average travels in ``checkpoint.pt`` so a resumed run goes on averaging."""
    ema = WeightAverage(model, decay)  # its first update copies the weights (start weights too)

    def load(ckpt: dict) -> None:
        if "ema" not in ckpt:
            raise TrainError(f"{ckpt_path}: checkpoint has no weight average (written without ema_decay); "
                             "use a new output_dir, or start over with resume=False (--no-resume)")
        ema.load_state_dict(ckpt["ema"])

    hooks.after_step = lambda: ema.update(model)
    hooks.before_validation = lambda: ema.swap_in(model)
    hooks.after_validation = lambda: ema.restore(model)
    hooks.save_extra = lambda: {"ema": ema.state_dict()}
    hooks.load_extra = load


def _device(name: str) -> torch.device:
    """``torch.device(name)``, or ConfigError naming the field when torch cannot use it here."""
    from get_md.errors import ConfigError

    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"device must be a torch device name (\"cpu\", \"cuda\", \"cuda:1\"), "
                          f"got {name!r}") from e
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"device {name!r}: this torch sees no CUDA device (CPU-only build or no "
                              "GPU); use \"cpu\"")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device {name!r}: this machine has {count} CUDA device(s)")
    return device


def train(config: TrainConfig, command: Optional[str] = None,
          callbacks: Sequence[EpochCallback] = ()) -> TrainResult:
    """Train a model as ``config`` says; resume from ``output_dir/checkpoint.pt`` if present.

    Args:
        config: the run's settings.
        command: the command line, recorded in the exported model's provenance.
        callbacks: extra ``(state, row)`` callbacks after each epoch (see :class:`LoopHooks`).

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
    device = _device(config.device)
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if config.verbose else (lambda msg: None)

    train_ds, valid_ds, data_info = _datasets(config)
    weights = config.loss_weights or {t: 1.0 for t in train_ds.target_names if t not in LABELS}
    missing = sorted({DERIVED.get(t, t) for t in weights} - set(train_ds.target_names))
    if missing:
        raise TrainError(f"loss_weights name targets {missing} that the data lacks "
                         f"(data has {train_ds.target_names})")
    loss_fn = WeightedLoss(weights, config.loss, config.energy_per_atom, config.neutral_energy_only)
    # the selection metric's errors, computed on validation batches only (None: the loss)
    selector = WeightedLoss({config.select_metric: 1.0}) if config.select_metric else None
    if selector is not None and DERIVED[config.select_metric] not in train_ds.target_names:
        raise TrainError(f"select_metric {config.select_metric!r} needs target "
                         f"{DERIVED[config.select_metric]!r}; the data has {train_ds.target_names}")
    valid_groups = loss_fn.needs_groups or selector is not None

    seed_everything(config.seed)
    model = build_model_for(config.family, config.model, config.model_factory)
    check_ligand_chemistry(model, {data_info["train"]: train_ds, data_info["valid"]: valid_ds})
    model.to(device=device, dtype=dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = exponential(optimizer, config.lr_gamma)
    if loss_fn.needs_groups:  # a within-series loss: batches of one series each
        samplers = {"train": SeriesBatchSampler(_series_labels(train_ds), train_ds.block_counts(),
                                                config.max_blocks, shuffle=True, seed=config.seed)}
    else:
        samplers = {"train": BlockBatchSampler(train_ds.block_counts(), config.max_blocks, shuffle=True,
                                               seed=config.seed)}
    if valid_groups:  # a within-series loss or selection metric
        samplers["valid"] = SeriesBatchSampler(_series_labels(valid_ds), valid_ds.block_counts(),
                                               config.max_blocks, shuffle=False, seed=config.seed)
    else:
        samplers["valid"] = BlockBatchSampler(valid_ds.block_counts(), config.max_blocks, shuffle=False)
    datasets = {"train": train_ds, "valid": valid_ds}
    need_forces = "forces" in loss_fn.weights

    def batches(split: str, epoch: int) -> Iterable[Any]:
        if split == "train":
            samplers[split].set_epoch(epoch)
        for idx in samplers[split]:
            yield collate([datasets[split][i] for i in idx])

    def step(model: torch.nn.Module, batch: Any, training: bool):
        graph, targets = batch
        targets = {k: v.to(device=device, dtype=dtype) for k, v in targets.items()}
        num_atoms = torch.bincount(graph.atom_batch_ids, minlength=graph.num_graphs).to(device)
        groups = None
        if loss_fn.needs_groups or (valid_groups and not training):
            keys = [series_of(name) for name in graph.names]
            groups = torch.tensor([keys.index(k) for k in keys])
        outputs = _forward(model, graph, device, dtype, need_forces)
        errs = loss_fn.errors(outputs, targets, num_atoms, groups)
        if selector is not None and not training:
            errs.update(selector.errors(outputs, targets, num_atoms, groups))
        return (loss_fn.reduce(errs)[0] if training else None), errs, graph.num_graphs

    def fresh_start() -> None:
        if config.init_from:
            start = read_init(config.init_from)
            model.load_state_dict(grow_position_embedding(start["model"], model))
            say(f"initial weights from {config.init_from}")
            built = dict(getattr(model, "config", {}) or {})
            changed = {k: (v, built.get(k)) for k, v in (start.get("model_config") or {}).items()
                       if k in built and built[k] != v}
            if changed:  # weights fit, but e.g. another k-NN graph reads them differently
                say("warning: the initial weights were trained with another architecture: "
                    + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items())))
        elif config.fit_energy_reference:
            fitted = fit_energy_statistics(model, train_ds) or fit_score_reference(model, train_ds)
            if fitted:
                say(f"fitted reference statistics: {fitted}")

    def check_resume(ckpt: dict) -> None:
        diff = config.differences(ckpt["config"])
        if diff:
            raise TrainError(f"{out_dir / CHECKPOINT_NAME}: checkpoint was written with different "
                             f"settings for {diff}; use a new output_dir, or start over with resume=False "
                             "(--no-resume on the command line)")

    def progress(state: LoopState, row: dict[str, float]) -> None:
        if config.plot:
            plot_curves(state.history, out_dir / CURVES_NAME, config.energy_per_atom)
        say(f"epoch {row['epoch']:4d}  lr {row['lr']:.3e}  train {row['train_loss']:.5g}  "
            f"valid {row['valid_loss']:.5g}{'  *' if row['best'] else ''}  ({row['epoch_time_s']:.1f} s)")

    model_config = dict(getattr(model, "config", None) or config.model)
    family = str(getattr(model, "family", config.family))
    hooks = LoopHooks(batches=batches, step=step, epoch_loss=lambda acc, _mean: loss_fn.epoch_loss(acc),
                      on_epoch_end=[progress, *callbacks], on_fresh_start=fresh_start,
                      check_resume=check_resume, grad_in_eval=need_forces or bool(
                          getattr(model, "compute_forces", False)))
    columns = _columns(loss_fn.targets)
    if selector is not None:
        hooks.valid_metric = lambda acc: acc.mean(config.select_metric, "mse")
        hooks.metric_name = f"{config.select_metric}_mse"
        columns.insert(columns.index("best"), f"valid_{hooks.metric_name}")
    if config.ema_decay is not None:
        _average_weights(hooks, model, config.ema_decay, out_dir / CHECKPOINT_NAME)
    settings = LoopSettings(out_dir, config.max_epochs, columns, config.to_dict(),
                            family, model_config, patience=config.patience,
                            min_delta=config.min_delta, grad_clip=config.grad_clip, resume=config.resume,
                            say=say)
    say(f"training {family} on {data_info['n_train']} structures "
        f"(valid {data_info['n_valid']}), targets {loss_fn.targets}, output {out_dir}")
    state = run_loop(model, optimizer, scheduler, hooks, settings)

    best_epoch = state.stop.best_epoch
    meta = dict(config.export_metadata)
    if not model_config.get("elements") and not getattr(model, "elements", None):
        meta.setdefault("elements", default_elements(train_ds))
    best_row = next((h for h in state.history if int(h["epoch"]) == best_epoch), None)
    best_loss = state.stop.best  # the selection metric: the loss unless select_metric says otherwise
    if hooks.metric_name:
        best_loss = float(best_row["valid_loss"]) if best_row is not None else float("nan")
    metrics = {"best_epoch": best_epoch, "valid_loss": best_loss}
    if best_row is not None:
        metrics.update({k: v for k, v in best_row.items() if k.startswith("valid_")})
    meta["dataset"] = data_info
    meta["command"] = command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    meta["metrics"] = metrics
    meta["training"] = {"config": config.to_dict(), "epochs": state.last_epoch,
                        "stopped_early": state.stop.stopped}
    from get_md import export

    model_path = out_dir / MODEL_NAME
    export.save(model, model_path, meta)
    chosen = f", valid {hooks.metric_name} {state.stop.best:.6g}" if hooks.metric_name else ""
    say(f"best epoch {best_epoch} (valid loss {best_loss:.6g}{chosen}); model written to {model_path}")
    return TrainResult(output_dir=out_dir, model_path=model_path, best_epoch=best_epoch,
                       best_valid_loss=best_loss, last_epoch=state.last_epoch,
                       stopped_early=state.stop.stopped, history=state.history)
