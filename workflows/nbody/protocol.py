"""The N-body task: EGNN's charged-particle protocol, frame numbers and shared names.

The protocol is that of Satorras, Hoogeboom & Welling (EGNN, ICML 2021), section 5.1,
as written in their generator (``n_body_system/dataset/synthetic_sim.py``,
``ChargedParticlesSim``), used since by SEGNN, GET and GeoMFormer:

* 5 particles in 3-D, unit masses, no box (the generator's box of half-width 5 only
  reflects initial positions beyond it, which we copy); charges +1 or -1 with
  probability 1/2 each; initial positions N(0, 1); initial velocities of norm 0.5 in
  a uniformly random direction;
* force on i: F_i = sum_j q_i q_j (x_i - x_j) / |x_i - x_j|^3 (like charges repel);
  each component of the *total* force on a particle is clipped to +-100;
* time step 1e-3, kick-drift integration (symplectic Euler): before the loop
  v += dt F(x0); then each step x += dt v, (save), v += dt F(x);
* a frame (x, v) is saved every 100 steps, the first after step 100: frame k holds
  the state after step 100 (k + 1) (the generator overwrites its initial frame);
  EGNN's files hold 49 frames (T = 5000 steps);
* task: from positions, velocities and charges at frame 30 predict positions at
  frame 40 (1000 steps, time 1.0 later); metric: MSE over samples, particles and
  coordinates. Sizes 3000 / 2000 / 2000 (train / valid / test).
  Published MSE: EGNN 0.0071, SEGNN 0.0043, GeoMFormer 0.0047 (EGNN's fitted linear
  model 0.0819; moving on at constant velocity gives about 0.11, standing still 0.27).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Union

from get_md.errors import NBodyError  # noqa: F401 (re-exported: get_md.workflows.nbody.NBodyError)

PathLike = Union[str, "os.PathLike[str]"]

#: The simulation and task protocol (EGNN nbody_small, charged particles, 3-D).
PROTOCOL: Dict[str, Any] = {
    "name": "nbody_small (EGNN, Satorras et al. 2021; charged particles, 3-D)",
    "n_particles": 5,
    "dim": 3,
    "charges": [-1.0, 1.0],
    "loc_std": 1.0,
    "vel_norm": 0.5,
    "dt": 1e-3,
    "sample_freq": 100,
    "max_force": 100.0,
    "init_box": 5.0,
    "integrator": "kick-drift (symplectic Euler); frame k = state after step sample_freq*(k+1)",
    "frame_in": 30,
    "frame_out": 40,
    "n_frames": 49,
    "sizes": {"train": 3000, "valid": 2000, "test": 2000},
}
FRAME_IN = 30
FRAME_OUT = 40
DEFAULT_FRAMES = 49
#: Zoo name of the shipped N-body model.
ZOO_NAME = "geomformer-nbody"
#: Dummy element of every particle (charges go through the model's charges input).
PARTICLE_Z = 1
DATA_KEYS = ("loc", "vel", "charges")


def interval_time(protocol: Optional[Mapping[str, Any]], frame_in: int, frame_out: int) -> float:
    """Time between two saved frames, (frame_out - frame_in) * sample_freq * dt (1.0 for 30 -> 40)."""
    p = dict(PROTOCOL)
    p.update({k: v for k, v in (protocol or {}).items() if v is not None})
    return float((frame_out - frame_in) * int(p["sample_freq"]) * float(p["dt"]))
