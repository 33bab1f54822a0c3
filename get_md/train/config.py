"""Training configuration: the :class:`TrainConfig` dataclass and JSON / YAML config files.

A config file holds the fields of :class:`TrainConfig` (JSON; YAML when PyYAML is
installed). Relative paths in a file (``train_data``, ``valid_data``,
``output_dir``) are taken relative to the file's folder.

Example config (``train.json``)::

    {
      "family": "get",
      "model": {"d_hidden": 64, "n_layers": 3, "task": "energy"},
      "train_data": "data/train.pt",
      "valid_fraction": 0.1,
      "max_blocks": 300,
      "lr": 1e-3, "lr_gamma": 0.98, "max_epochs": 200, "patience": 20,
      "loss_weights": {"energy": 1.0, "forces": 10.0},
      "output_dir": "runs/get-energy"
    }

Example:
    >>> cfg = TrainConfig(family="get", model={"d_hidden": 32}, train_data="train.pt")
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

from get_md.errors import ConfigError

PathLike = Union[str, "os.PathLike[str]"]


# fields that may change between a run and its resumption
RESUMABLE_CHANGES = frozenset({
    "max_epochs", "patience", "device", "output_dir", "resume", "verbose", "plot",
    "export_metadata", "train_data", "valid_data", "dataset", "valid_dataset", "model_factory",
})
_OBJECT_FIELDS = ("dataset", "valid_dataset", "model_factory")
_PATH_FIELDS = ("train_data", "valid_data", "output_dir")


# numeric fields: name -> whether it must be a whole number
_NUMBER_FIELDS = {
    "valid_fraction": False, "max_blocks": True, "lr": False, "weight_decay": False,
    "lr_gamma": False, "max_epochs": True, "patience": True, "min_delta": False,
    "grad_clip": False, "seed": True, "ema_decay": False,
}
#: selection metrics (``select_metric``): None is the validation loss
SELECT_METRICS = (None, "score_series")
#: switches: JSON true / false (a string such as "false" is not one)
_BOOL_FIELDS = ("energy_per_atom", "neutral_energy_only", "fit_energy_reference", "resume", "plot",
                "verbose")
#: model hyper-parameters of the built-in families that must be positive integers
POSITIVE_INT_HYPERPARAMETERS = ("d_hidden", "d_radial", "n_rbf", "n_head", "n_layers", "d_edge",
                                "d_model", "n_heads", "ffn_mult")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_number(name: str, value: Any, whole: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a finite number (a whole one if ``whole``)."""
    if not _is_number(value):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if whole and value != int(value):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")


def _check_number_types(config: TrainConfig) -> None:
    """Numeric fields hold finite numbers (not strings, booleans, NaN or infinity); whole-number
    fields given as floats (``"max_epochs": 2.0``) become ints; switches are booleans."""
    for name, whole in _NUMBER_FIELDS.items():
        value = getattr(config, name)
        if name in ("grad_clip", "ema_decay") and value is None:
            continue
        _check_number(name, value, whole)
        if whole:
            setattr(config, name, int(value))
    for name in _BOOL_FIELDS:
        value = getattr(config, name)
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")


def _check_loss_weights(weights: Optional[Mapping[str, Any]]) -> None:
    """Weights are finite numbers >= 0, and not all zero."""
    if not weights:
        return
    for name, value in weights.items():
        _check_number(f"loss_weights.{name}", value)
        if value < 0:
            raise ConfigError(f"loss_weights.{name} must be >= 0, got {value!r}")
    if all(value == 0 for value in weights.values()):
        raise ConfigError("loss_weights are all zero; nothing to train")


def check_model_config(model: Mapping[str, Any], prefix: str = "model.") -> None:
    """Architecture sizes (``d_hidden``, ``n_layers``, ...) present in ``model`` are positive
    integers; raise :class:`ConfigError` naming the field.

    Example:
        >>> check_model_config({"d_hidden": -3})
        Traceback (most recent call last):
        ...
        get_md.errors.ConfigError: model.d_hidden must be a positive integer, got -3
    """
    for name in POSITIVE_INT_HYPERPARAMETERS:
        if name not in model:
            continue
        value = model[name]
        if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0):
            raise ConfigError(f"{prefix}{name} must be a positive integer, got {value!r}")


@dataclass
class TrainConfig:
    """Everything :func:`get_md.train.train` needs.

    Attributes:
        family: "get", "geomformer", or "package.module:factory" for a custom model.
        model: hyper-parameters for ``build_model(family, **model)``.
        train_data: dataset file (``MolecularDataset.save``); or give ``dataset``.
        valid_data: validation dataset file; if absent, ``valid_fraction`` of the
            training data is held out (seeded split).
        dataset: a ``MolecularDataset`` object instead of ``train_data`` (not saved to files).
        valid_dataset: a ``MolecularDataset`` object instead of ``valid_data``.
        valid_fraction: held-out fraction when no validation data is given.
        max_blocks: block budget per batch (dynamic batching).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        lr_gamma: learning rate factor applied after every epoch (ExponentialLR).
        max_epochs: last epoch (1-based, counted over resumptions).
        patience: stop after this many epochs without validation improvement.
        min_delta: improvement smaller than this does not count.
        grad_clip: max gradient norm (None: no clipping).
        select_metric: what picks ``best.pt`` and drives early stopping: None, the
            validation loss; ``"score_series"``, the validation score errors minus their
            mean within each series (validation batches of one series each; training
            unchanged), blind to the per-target offsets that move the plain loss.
        ema_decay: validate, select and export an exponential moving average of the
            weights, updated after every optimiser step with this decay (e.g. 0.999:
            an average over ~1,000 steps); None: the weights themselves.
        loss_weights: target -> weight; None weighs every target of the data by 1.
        loss: "mse" or "mae" (or a map target -> kind).
        energy_per_atom: energy errors divided by atom counts.
        neutral_energy_only: with a ``charge`` label in the data, fit energies of
            neutral structures only (forces of all); see ``WeightedLoss``.
        init_from: start from the weights of this ``best.pt`` / ``checkpoint.pt``
            (fine-tuning; the reference-energy fit is then skipped).
        fit_energy_reference: before the first epoch, fit the model's per-element
            reference energies and output scale to the training data
            (see ``get_md.train.loop.fit_energy_statistics``); for score models, the
            per-element references of ligand atoms (``fit_score_reference``).
        seed: seeds model init, split and batch order.
        device: "cpu", "cuda", "cuda:1", ...
        dtype: "float32" or "float64".
        output_dir: where log.csv, curves.png, checkpoint.pt, best.pt, model.pt go.
        resume: continue from ``output_dir/checkpoint.pt`` if it exists.
        plot: write curves.png every epoch.
        verbose: print one line per epoch.
        export_metadata: extra metadata for the exported model (elements, description, ...).
        model_factory: a callable returning the model (overrides ``family``; not saved).
    """

    family: str = "get"
    model: dict = field(default_factory=dict)
    train_data: Optional[str] = None
    valid_data: Optional[str] = None
    dataset: Any = field(default=None, repr=False, compare=False)
    valid_dataset: Any = field(default=None, repr=False, compare=False)
    valid_fraction: float = 0.1
    max_blocks: int = 300
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_gamma: float = 0.99
    max_epochs: int = 100
    patience: int = 20
    min_delta: float = 0.0
    grad_clip: Optional[float] = 10.0
    select_metric: Optional[str] = None
    ema_decay: Optional[float] = None
    loss_weights: Optional[dict] = None
    loss: Union[str, dict] = "mse"
    energy_per_atom: bool = True
    neutral_energy_only: bool = False
    init_from: Optional[str] = None
    fit_energy_reference: bool = True
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    output_dir: str = "runs/train"
    resume: bool = True
    plot: bool = True
    verbose: bool = True
    export_metadata: dict = field(default_factory=dict)
    model_factory: Optional[Callable[..., Any]] = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> TrainConfig:
        """Check values; raise :class:`ConfigError` naming the field."""
        def need(cond: bool, name: str, what: str) -> None:
            if not cond:
                raise ConfigError(f"{name} must be {what}, got {getattr(self, name)!r}")

        _check_number_types(self)
        need(isinstance(self.model, dict), "model", "a map of hyper-parameters")
        need(0.0 < self.valid_fraction < 1.0, "valid_fraction", "in (0, 1)")
        need(int(self.max_blocks) > 0, "max_blocks", "positive")
        need(self.lr > 0, "lr", "positive")
        need(self.weight_decay >= 0, "weight_decay", ">= 0")
        need(self.min_delta >= 0, "min_delta", ">= 0")
        need(0.0 < self.lr_gamma <= 1.0, "lr_gamma", "in (0, 1]")
        need(int(self.max_epochs) >= 1, "max_epochs", ">= 1")
        need(int(self.patience) >= 1, "patience", ">= 1")
        need(self.grad_clip is None or self.grad_clip > 0, "grad_clip", "positive or null")
        need(self.ema_decay is None or 0.0 < self.ema_decay < 1.0, "ema_decay", "in (0, 1) or null")
        need(self.select_metric in SELECT_METRICS, "select_metric",
             " or ".join(json.dumps(m) for m in SELECT_METRICS))
        need(self.dtype in ("float32", "float64"), "dtype", '"float32" or "float64"')
        need(isinstance(self.device, str) and bool(self.device), "device", 'a device name ("cpu", "cuda", "cuda:1")')
        need(isinstance(self.export_metadata, dict), "export_metadata", "a map of metadata fields")
        need(self.loss_weights is None or isinstance(self.loss_weights, dict), "loss_weights",
             "a map target -> weight")
        _check_loss_weights(self.loss_weights)
        if self.model_factory is None and ":" not in str(self.family):
            check_model_config(self.model)
        return self

    # ----------------------------------------------------------------- dicts
    def to_dict(self) -> dict:
        """JSON-serialisable fields (dataset objects and factories left out)."""
        d = {}
        for f in fields(self):
            if f.name in _OBJECT_FIELDS:
                continue
            v = getattr(self, f.name)
            d[f.name] = json.loads(json.dumps(v, default=str)) if isinstance(v, (dict, list)) else v
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """Build from a mapping; unknown keys are an error naming them and the valid ones."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: a training config must be a map of fields")
        names = {f.name for f in fields(cls)} - set(_OBJECT_FIELDS)
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{source}: unknown config fields {unknown}; valid fields: {sorted(names)}")
        try:
            return cls(**dict(data))
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from e
        except TypeError as e:
            raise ConfigError(f"{source}: {e}") from e

    def differences(self, other: Mapping[str, Any]) -> list[str]:
        """Fields (outside ``RESUMABLE_CHANGES``) whose value differs from the dict ``other``."""
        mine = self.to_dict()
        return sorted(k for k, v in mine.items()
                      if k not in RESUMABLE_CHANGES and k in other and other[k] != v)


def json_error_text(error: json.JSONDecodeError) -> str:
    """``invalid JSON (line L column C: reason)`` for a JSON parse error.

    Example:
        >>> try:
        ...     json.loads('{"a": 1,\\n')
        ... except json.JSONDecodeError as e:
        ...     print(json_error_text(e))
        invalid JSON (line 2 column 1: Expecting property name enclosed in double quotes)
    """
    return f"invalid JSON (line {error.lineno} column {error.colno}: {error.msg})"


def _config_text(path: Path, name: str) -> str:
    """The text of the config file ``path``; ConfigError (prefixed by ``name``) if unreadable."""
    if path.is_dir():
        raise ConfigError(f"{name}: is a directory, not a config file")
    if not path.is_file():
        raise ConfigError(f"{name}: config file not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file ({e.reason} at byte {e.start})") from e


def read_config_data(path: PathLike, name: Optional[str] = None) -> Any:
    """The parsed content of a ``.json`` (or ``.yaml``/``.yml``) config file.

    ``name`` (default: the path) names the file in the not-found and directory messages,
    e.g. ``"--config cfg.json"``.

    Raises:
        ConfigError: missing file, a directory, not text, invalid JSON / YAML.
    """
    path = Path(path)
    text = _config_text(path, name or str(path))
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as e:
            raise ConfigError(f"{path}: YAML configs need PyYAML (pip install pyyaml); or use JSON") from e
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"{path}: invalid YAML ({first})") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: {json_error_text(e)}") from e


def load_config(path: PathLike) -> TrainConfig:
    """Read a :class:`TrainConfig` from a ``.json`` (or ``.yaml``/``.yml``) file.

    Relative paths in the file are resolved against the file's folder.

    Raises:
        ConfigError: missing or unparsable file, unknown fields, invalid values.

    Example:
        >>> cfg = load_config("configs/train.json")  # doctest: +SKIP
    """
    path = Path(path)
    data = read_config_data(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a training config must be a map of fields")
    data = dict(data)
    for key in _PATH_FIELDS:
        value = data.get(key)
        if isinstance(value, str) and value and not os.path.isabs(value):
            data[key] = str(path.parent / value)
    return TrainConfig.from_dict(data, source=str(path))


def save_config(config: TrainConfig, path: PathLike) -> None:
    """Write ``config.to_dict()`` as JSON."""
    Path(path).write_text(json.dumps(config.to_dict(), indent=2) + "\n")


__all__ = ["ConfigError", "TrainConfig", "check_model_config", "json_error_text", "load_config",
           "read_config_data", "save_config"]
