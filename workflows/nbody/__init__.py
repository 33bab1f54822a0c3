"""N-body charged particles (EGNN's "nbody_small"): data, training, evaluation and rollout.

``get-md nbody ...`` and ``get_md.workflows.nbody`` implement the charged-particle task
of Satorras, Hoogeboom & Welling (EGNN, ICML 2021): from positions, velocities and
charges of 5 particles at frame 30, predict their positions at frame 40. The package
has one module per job; this ``__init__`` re-exports the public names, so
``from get_md.workflows.nbody import ...`` is the import to use:

* :mod:`.protocol`: the task protocol, frame numbers, ``NBodyError``, ``interval_time``;
* :mod:`.simulate`: the simulator (``simulate``) and energy / momentum;
* :mod:`.data`: ``.npz`` files (``save_data``, ``load_data``, ``check_data``), model
  inputs and targets (``NBodySamples``, ``make_samples``), batches (``batch_inputs``);
* :mod:`.model`: ``NBodyGeoMFormer``, ``build_nbody_model``, ``load_nbody_model``,
  ``predict``, ``model_config``;
* :mod:`.train`: ``NBodyTrainConfig``, ``train_nbody`` (hooks of the core loop
  ``get_md.train.loop.run_loop``: batches, loss, weight EMA);
* :mod:`.evaluate`: ``evaluate`` (position MSE) and ``rollout``; :mod:`.plots` its figures;
* :mod:`.cli`: ``register_cli`` (``get-md nbody``).

Model files and checkpoints name code here by strings that stay valid whatever module
holds it: ``get_md.workflows.nbody:build_nbody_model`` (an exported model's
``builder``, used by ``get-md export`` to re-script it) and
``get_md.workflows.nbody:NBodyGeoMFormer`` (a checkpoint's ``family``). Measured
training results are in docs/nbody.md.

Example:
    >>> data = simulate(8, seed=1, n_frames=41)
    >>> data["loc"].shape, data["charges"].shape
    ((8, 41, 5, 3), (8, 5, 1))
    >>> s = make_samples(data)
    >>> tuple(s.displacement.shape)
    (8, 5, 3)
"""

from __future__ import annotations

from .cli import register_cli
from .data import (
    NBodySamples,
    batch_inputs,
    check_data,
    load_data,
    make_samples,
    save_data,
)

# training-window helpers (tests/test_nbody.py)
from .data import pick_windows as pick_windows
from .data import stack_windows as stack_windows
from .evaluate import evaluate, rollout
from .model import NBodyGeoMFormer, build_nbody_model, load_nbody_model, model_config, predict
from .protocol import (
    DATA_KEYS,
    DEFAULT_FRAMES,
    FRAME_IN,
    FRAME_OUT,
    PARTICLE_Z,
    PROTOCOL,
    ZOO_NAME,
    NBodyError,
    interval_time,
)
from .simulate import energy_terms, simulate, total_energy, total_momentum
from .train import NBodyTrainConfig, NBodyTrainResult, train_nbody

__all__ = [
    "DATA_KEYS", "DEFAULT_FRAMES", "FRAME_IN", "FRAME_OUT", "PARTICLE_Z", "PROTOCOL", "ZOO_NAME",
    "NBodyError", "NBodyGeoMFormer", "NBodySamples", "NBodyTrainConfig", "NBodyTrainResult",
    "batch_inputs", "build_nbody_model", "check_data", "energy_terms", "evaluate", "interval_time",
    "load_data", "load_nbody_model", "make_samples", "model_config", "predict", "register_cli",
    "rollout", "save_data", "simulate", "total_energy", "total_momentum", "train_nbody",
]
