"""Training: datasets, dynamic batching by block count, losses and the training loop.

Example:
    >>> from get_md.train import MolecularDataset, TrainConfig, train
    >>> cfg = TrainConfig(family="get", model={}, train_data="train.pt")  # doctest: +SKIP
    >>> result = train(cfg)                                              # doctest: +SKIP
"""

from get_md.train.batching import BlockBatchSampler, SeriesBatchSampler, collate, series_of
from get_md.train.config import ConfigError, TrainConfig, load_config, save_config
from get_md.train.data import TARGETS, DatasetError, MolecularDataset, Sample
from get_md.train.loop import TrainError, TrainResult, build_model_for, plot_curves, train
from get_md.train.loss import LossError, MetricAccumulator, WeightedLoss

__all__ = [
    "TARGETS", "BlockBatchSampler", "ConfigError", "DatasetError", "LossError",
    "MetricAccumulator", "MolecularDataset", "Sample", "SeriesBatchSampler", "TrainConfig",
    "TrainError", "TrainResult", "WeightedLoss", "build_model_for", "collate", "load_config",
    "plot_curves", "save_config", "series_of", "train",
]
