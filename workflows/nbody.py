"""N-body charged particles (EGNN's "nbody_small"): data, training, evaluation and rollout.

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

Clipping acts on each particle's total force, so it is not antisymmetric: total
momentum is conserved to round-off in every step where no component is clipped,
and changes in the steps where one is (about 0.3 % of force components in
nbody_small data: close encounters of opposite charges).

Models read velocities and charges through ``forward_with_vectors(positions,
velocities, charges, <graph tensors>)``; each particle is one block of one atom
with a dummy element (Z = 1), so charges enter only through the charges input.
``NBodyGeoMFormer`` is GeoMFormer in dense attention mode with two equivariant
outputs: ``vectors`` (displacement x(40) - x(30)) and ``velocities`` (v(40)), each
a vector head plus a learnt multiple of the input velocity. GET (``input_vectors=True``)
reads velocities as a second coordinate channel x + v and charges through an
embedding; it outputs the displacement only, so its rollouts estimate velocities
as displacement / interval time.
Rotation augmentation is unnecessary: both models are E(3)-equivariant by design.

Training notes (measured here: 3000 training systems, 1000 validation systems, d_model
64, 4 layers, 8 heads, 32 radial kernels, batch 100, AdamW lr 5e-4 with cosine decay,
one CPU thread: about 450 training systems per CPU-second, 6.8 CPU-s per epoch with
validation every 5 epochs). Validation position MSE, best epoch:

* GeoMFormer's encoder, no regularisation: 0.0079 (epoch 25), then overfits
  (training MSE 0.0027);
* + global charge-flip augmentation: 0.0071 (35);
* + dropout 0.1 and weight EMA 0.995: 0.0064 (60);
* + q_i q_j pair features (``charge_pairs``, the defaults): 0.0059 (40 of 100 epochs;
  0.0060 with 50 epochs). Most of the error comes from a few close encounters: the
  worst 5 % of systems carry 64 % of the squared error (median system 0.0003);
* no gain from: velocity loss weight 1.0 (0.0075), dropout 0.15 + weight decay 0.01
  (0.0063), d_model 128 (0.0065 at epoch 30 against 0.0063; overfits sooner), 2
  shared-weight substeps (same curve as 1 at epoch 25), averaging two models (0.0057),
  flipping charges at test time.

Example:
    >>> data = simulate(8, seed=1, n_frames=41)
    >>> data["loc"].shape, data["charges"].shape
    ((8, 41, 5, 3), (8, 5, 1))
    >>> s = make_samples(data)
    >>> tuple(s.displacement.shape)
    (8, 5, 3)
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from get_md.atomic import atomic_output, atomic_path
from get_md.models.geomformer import GeoMFormer, VectorHead

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


class NBodyError(ValueError):
    """Bad N-body data, model or option; the message names the file."""


# ============================================================================ simulator
def _pair_indices(n: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    i, j = np.triu_indices(n, 1)
    m = np.zeros((n, len(i)))
    m[i, np.arange(len(i))] = 1.0
    m[j, np.arange(len(i))] = -1.0
    return i, j, m


def _simulate_chunk(x: np.ndarray, v: np.ndarray, q: np.ndarray, n_frames: int, dt: float,
                    sample_freq: int, max_force: Optional[float]) -> Tuple[np.ndarray, np.ndarray, int]:
    """Integrate one chunk in place. x, v: [N, 3, S]; q: [N, S]. Returns loc, vel [T, N, 3, S]."""
    n, _, s = x.shape
    pi, pj, incidence = _pair_indices(n)
    n_pairs = len(pi)
    qq_dt = q[pi] * q[pj] * dt  # [P, S]
    d = np.empty((n_pairs, 3, s))
    r2 = np.empty((n_pairs, s))
    tmp = np.empty((n_pairs, s))
    kick = np.empty((n, 3 * s))
    lim = None if max_force is None else float(max_force) * dt
    n_clipped = 0

    def add_kick() -> int:
        np.subtract(x[pi], x[pj], out=d)
        np.einsum("pks,pks->ps", d, d, out=r2)
        np.sqrt(r2, out=tmp)
        np.multiply(tmp, r2, out=tmp)
        np.divide(qq_dt, tmp, out=tmp)
        np.multiply(d, tmp[:, None, :], out=d)
        np.matmul(incidence, d.reshape(n_pairs, 3 * s), out=kick)
        clipped = 0
        if lim is not None and (kick.max() > lim or kick.min() < -lim):
            clipped = int(np.count_nonzero(np.abs(kick) > lim))
            np.clip(kick, -lim, lim, out=kick)
        np.add(v, kick.reshape(n, 3, s), out=v)
        return clipped

    loc = np.empty((n_frames, n, 3, s))
    vel = np.empty((n_frames, n, 3, s))
    n_clipped += add_kick()
    frame = 0
    step = 0
    while frame < n_frames:
        step += 1
        x += dt * v
        if step % sample_freq == 0:
            loc[frame] = x
            vel[frame] = v
            frame += 1
            if frame == n_frames:
                break
        n_clipped += add_kick()
    return loc, vel, n_clipped


def simulate(
    n_samples: int,
    seed: int = 0,
    n_frames: int = DEFAULT_FRAMES,
    n_particles: int = 5,
    *,
    dt: float = 1e-3,
    sample_freq: int = 100,
    max_force: Optional[float] = 100.0,
    loc_std: float = 1.0,
    vel_norm: float = 0.5,
    init_box: Optional[float] = 5.0,
    initial: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None,
    chunk: int = 1000,
) -> Dict[str, Any]:
    """Simulate charged-particle trajectories, all samples at once (numpy, float64).

    Args:
        n_samples: trajectories S (ignored when ``initial`` is given).
        seed: seed of ``numpy.random.default_rng`` (charges, positions, velocities).
        n_frames: saved frames T; frame k is the state after step ``sample_freq * (k + 1)``.
        n_particles: particles N.
        dt, sample_freq, max_force: time step, steps between frames, clip of each
            component of a particle's total force (None: no clipping).
        loc_std, vel_norm: initial position spread and speed.
        init_box: initial positions beyond +-init_box are reflected back (EGNN; None: off).
        initial: ``(loc [S, N, 3], vel [S, N, 3], charges [S, N(, 1)])`` to continue from a
            saved frame instead of drawing a start; frame k of the result is then saved
            frame ``f + k + 1`` of the run that saved frame f.
        chunk: samples integrated together (cache-sized; does not change results).

    Returns:
        ``{"loc": [S, T, N, 3], "vel": [S, T, N, 3], "charges": [S, N, 1], "protocol": {...}}``
        (float64), the protocol holding the seed and settings and ``n_clipped``, the number
        of clipped force components.

    Example:
        >>> d = simulate(4, seed=0, n_frames=3)
        >>> d["loc"].shape
        (4, 3, 5, 3)
    """
    if n_frames < 1:
        raise NBodyError(f"n_frames must be >= 1, got {n_frames}")
    if initial is None:
        if n_samples < 1 or n_particles < 2:
            raise NBodyError(f"need n_samples >= 1 and n_particles >= 2, got {n_samples}, {n_particles}")
        rng = np.random.default_rng(seed)
        q = rng.choice(np.array([-1.0, 1.0]), size=(n_samples, n_particles))
        x = rng.standard_normal((n_samples, n_particles, 3)) * loc_std
        v = rng.standard_normal((n_samples, n_particles, 3))
        v *= vel_norm / np.linalg.norm(v, axis=-1, keepdims=True)
        if init_box is not None:  # EGNN's _clamp on the initial frame
            over, under = x > init_box, x < -init_box
            x[over] = 2 * init_box - x[over]
            v[over] = -np.abs(v[over])
            x[under] = -2 * init_box - x[under]
            v[under] = np.abs(v[under])
    else:
        x0, v0, q0 = (np.asarray(a, dtype=np.float64) for a in initial)
        x, v = x0.copy(), v0.copy()
        q = q0.reshape(x.shape[0], x.shape[1])
        if x.ndim != 3 or x.shape[-1] != 3 or v.shape != x.shape:
            raise NBodyError(f"initial loc/vel must be [S, N, 3], got {x.shape}, {v.shape}")
    s_total, n, _ = x.shape
    loc = np.empty((s_total, n_frames, n, 3))
    vel = np.empty((s_total, n_frames, n, 3))
    n_clipped = 0
    for a in range(0, s_total, max(1, int(chunk))):
        b = min(s_total, a + max(1, int(chunk)))
        xc = np.ascontiguousarray(x[a:b].transpose(1, 2, 0))
        vc = np.ascontiguousarray(v[a:b].transpose(1, 2, 0))
        qc = np.ascontiguousarray(q[a:b].T)
        lc, vlc, nc = _simulate_chunk(xc, vc, qc, n_frames, dt, sample_freq, max_force)
        loc[a:b] = lc.transpose(3, 0, 1, 2)
        vel[a:b] = vlc.transpose(3, 0, 1, 2)
        n_clipped += nc
    protocol = dict(PROTOCOL)
    protocol.update(dt=dt, sample_freq=sample_freq, max_force=max_force, loc_std=loc_std,
                    vel_norm=vel_norm, init_box=init_box, n_particles=n, n_frames=n_frames,
                    seed=None if initial is not None else int(seed), n_samples=s_total,
                    n_clipped=n_clipped, continued=initial is not None)
    return {"loc": loc, "vel": vel, "charges": q.reshape(s_total, n, 1).copy(), "protocol": protocol}


def energy_terms(loc: np.ndarray, vel: np.ndarray, charges: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Kinetic 0.5 sum v^2 and potential sum_{i<j} q_i q_j / r_ij, over leading axes.

    Args:
        loc, vel: [..., N, 3]; charges: [N], [N, 1] or broadcastable [..., N(, 1)].

    Example:
        >>> k, u = energy_terms(np.array([[0., 0, 0], [1, 0, 0]]), np.zeros((2, 3)), np.ones(2))
        >>> float(k), float(u)
        (0.0, 1.0)
    """
    loc, vel = np.asarray(loc, dtype=np.float64), np.asarray(vel, dtype=np.float64)
    n = loc.shape[-2]
    q = np.asarray(charges, dtype=np.float64)
    if q.shape[-1] == 1 and q.ndim >= 2 and q.shape[-2] == n:
        q = q[..., 0]
    kinetic = 0.5 * (vel * vel).sum(axis=(-1, -2))
    i, j = np.triu_indices(n, 1)
    r = np.linalg.norm(loc[..., i, :] - loc[..., j, :], axis=-1)
    potential = (q[..., i] * q[..., j] / r).sum(-1)
    return kinetic, potential


def total_energy(loc: np.ndarray, vel: np.ndarray, charges: np.ndarray) -> np.ndarray:
    """Kinetic plus Coulomb energy (unit masses), [...] for [..., N, 3] inputs."""
    k, u = energy_terms(loc, vel, charges)
    return k + u


def total_momentum(vel: np.ndarray) -> np.ndarray:
    """Sum of velocities (unit masses), [..., 3]."""
    return np.asarray(vel, dtype=np.float64).sum(axis=-2)


# ============================================================================ files
def save_data(path: PathLike, data: Mapping[str, Any]) -> Path:
    """Write ``loc``, ``vel``, ``charges`` (and the protocol as JSON) to an ``.npz`` file atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        raise NBodyError(f"{path}: N-body data files must end in .npz")
    arrays = {k: np.asarray(data[k]) for k in DATA_KEYS}
    arrays["protocol"] = np.array(json.dumps(data.get("protocol", {}), default=str))
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)
    return path


def check_data(data: Mapping[str, Any], name: str = "data", frame_out: Optional[int] = None,
               frame_in: Optional[int] = None) -> None:
    """Check keys, shapes and finiteness (and that frames exist); raise NBodyError naming ``name``."""
    missing = [k for k in DATA_KEYS if k not in data]
    if missing:
        raise NBodyError(f"{name}: missing arrays {missing}; an N-body file needs {list(DATA_KEYS)} "
                         f"(loc, vel [S, T, N, 3]; charges [S, N, 1])")
    loc, vel, q = (np.asarray(data[k]) for k in DATA_KEYS)
    for k, a in (("loc", loc), ("vel", vel), ("charges", q)):
        if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.integer):
            raise NBodyError(f"{name}: {k} must be numeric, got dtype {a.dtype}")
    if loc.ndim != 4 or loc.shape[-1] != 3:
        raise NBodyError(f"{name}: loc must have shape (S, T, N, 3), got {loc.shape}")
    if vel.shape != loc.shape:
        raise NBodyError(f"{name}: vel has shape {vel.shape}, loc {loc.shape}; they must match")
    s, t, n, _ = loc.shape
    if s < 1 or t < 1 or n < 2:
        raise NBodyError(f"{name}: need >= 1 sample, >= 1 frame and >= 2 particles, got shape {loc.shape}")
    if q.shape not in ((s, n, 1), (s, n)):
        raise NBodyError(f"{name}: charges must have shape ({s}, {n}, 1), got {q.shape}")
    for k, a in (("loc", loc), ("vel", vel), ("charges", q)):
        bad = ~np.isfinite(a)
        if bad.any():
            idx = np.argwhere(bad)[0]
            raise NBodyError(f"{name}: {k} has {int(bad.sum())} non-finite values "
                             f"(first at sample {int(idx[0])}, index {tuple(int(i) for i in idx[1:])})")
    for what, f in (("frame-in", frame_in), ("frame-out", frame_out)):
        if f is not None and not 0 <= f < t:
            raise NBodyError(f"{name}: {what} {f} is out of range; the file has T={t} frames "
                             f"(0..{t - 1}), so {what} must be < {t}")


def load_data(path: PathLike, frame_out: Optional[int] = None, frame_in: Optional[int] = None) -> Dict[str, Any]:
    """Read and check an ``.npz`` file of ``loc``, ``vel``, ``charges`` (see :func:`check_data`).

    Example:
        >>> data = load_data("nbody_test.npz", frame_out=40)  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise NBodyError(f"{path}: N-body data file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            data: Dict[str, Any] = {k: z[k] for k in z.files if k != "protocol"}
            proto = json.loads(str(z["protocol"])) if "protocol" in z.files else {}
    except (OSError, ValueError, EOFError) as e:
        raise NBodyError(f"{path}: cannot read as an .npz N-body file ({e})") from e
    except Exception as e:  # zipfile.BadZipFile and friends
        raise NBodyError(f"{path}: cannot read as an .npz N-body file ({type(e).__name__}: {e})") from e
    check_data(data, str(path), frame_out=frame_out, frame_in=frame_in)
    data["protocol"] = proto if isinstance(proto, dict) else {}
    data["source"] = str(path)
    return data


def _as_data(data: Union[PathLike, Mapping[str, Any]], frame_in: Optional[int] = None,
             frame_out: Optional[int] = None) -> Dict[str, Any]:
    if isinstance(data, (str, os.PathLike)):
        return load_data(data, frame_out=frame_out, frame_in=frame_in)
    name = str(data.get("source", "data"))
    check_data(data, name, frame_out=frame_out, frame_in=frame_in)
    return dict(data)


def interval_time(protocol: Optional[Mapping[str, Any]], frame_in: int, frame_out: int) -> float:
    """Time between two saved frames, (frame_out - frame_in) * sample_freq * dt (1.0 for 30 -> 40)."""
    p = dict(PROTOCOL)
    p.update({k: v for k, v in (protocol or {}).items() if v is not None})
    return float((frame_out - frame_in) * int(p["sample_freq"]) * float(p["dt"]))


# ============================================================================ samples
@dataclass
class NBodySamples:
    """Model inputs and targets of a data set, as tensors (one row per trajectory).

    Attributes:
        positions, velocities: [S, N, 3] at ``frame_in``.
        charges: [S, N].
        displacement: [S, N, 3], x(frame_out) - x(frame_in) (the "vectors" target).
        velocities_out: [S, N, 3], v(frame_out).
    """

    positions: torch.Tensor
    velocities: torch.Tensor
    charges: torch.Tensor
    displacement: torch.Tensor
    velocities_out: torch.Tensor
    frame_in: int = FRAME_IN
    frame_out: int = FRAME_OUT
    source: str = ""

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_particles(self) -> int:
        return int(self.positions.shape[1])

    def to(self, device: Any = None, dtype: Optional[torch.dtype] = None) -> NBodySamples:
        kw = {f.name: getattr(self, f.name).to(device=device, dtype=dtype)
              for f in fields(self) if isinstance(getattr(self, f.name), torch.Tensor)}
        return NBodySamples(**kw, frame_in=self.frame_in, frame_out=self.frame_out, source=self.source)

    def inputs(self, index: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, ...]:
        """``forward_with_vectors`` arguments for the samples at ``index`` (all if None)."""
        if index is None:
            return batch_inputs(self.positions, self.velocities, self.charges)
        return batch_inputs(self.positions[index], self.velocities[index], self.charges[index])


def make_samples(data: Union[PathLike, Mapping[str, Any]], frame_in: int = FRAME_IN,
                 frame_out: int = FRAME_OUT, max_samples: Optional[int] = None,
                 dtype: torch.dtype = torch.float32) -> NBodySamples:
    """Inputs (frame ``frame_in``) and targets (frame ``frame_out``) of a data file or dict.

    Example:
        >>> s = make_samples(simulate(3, n_frames=41), max_samples=2)
        >>> len(s), s.n_particles
        (2, 5)
    """
    if frame_out <= frame_in:
        raise NBodyError(f"frame-out ({frame_out}) must be after frame-in ({frame_in})")
    d = _as_data(data, frame_in=frame_in, frame_out=frame_out)
    sl = slice(None) if max_samples is None else slice(0, int(max_samples))
    loc = torch.as_tensor(np.asarray(d["loc"])[sl], dtype=torch.float64)
    vel = torch.as_tensor(np.asarray(d["vel"])[sl], dtype=torch.float64)
    q = torch.as_tensor(np.asarray(d["charges"])[sl], dtype=torch.float64).reshape(loc.shape[0], loc.shape[2])
    return NBodySamples(
        positions=loc[:, frame_in].to(dtype), velocities=vel[:, frame_in].to(dtype), charges=q.to(dtype),
        displacement=(loc[:, frame_out] - loc[:, frame_in]).to(dtype),
        velocities_out=vel[:, frame_out].to(dtype), frame_in=frame_in, frame_out=frame_out,
        source=str(d.get("source", "")),
    )


_TEMPLATE: Dict[Tuple[int, int, str], Tuple[torch.Tensor, ...]] = {}


def _template(batch: int, n: int, device: torch.device) -> Tuple[torch.Tensor, ...]:
    """Index tensors of ``batch`` systems of ``n`` particles, each a one-atom block (Z = 1)."""
    key = (batch, n, str(device))
    if key not in _TEMPLATE:
        from get_md.graph import MolecularGraph

        one = MolecularGraph.from_atoms(torch.zeros(n, 3), torch.full((n,), PARTICLE_Z))
        atoms = batch * n
        _TEMPLATE[key] = (
            one.atomic_numbers.repeat(batch).to(device),
            torch.arange(atoms, device=device),
            one.atom_positions.repeat(batch).to(device),
            one.block_types.repeat(batch).to(device),
            one.segment_ids.repeat(batch).to(device),
            torch.arange(batch, device=device).repeat_interleave(n),
            torch.zeros(batch, 3, dtype=torch.bool, device=device),
        )
        if len(_TEMPLATE) > 64:
            _TEMPLATE.pop(next(iter(_TEMPLATE)))
    return _TEMPLATE[key]


def batch_inputs(positions: torch.Tensor, velocities: torch.Tensor,
                 charges: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """``forward_with_vectors`` arguments for B systems: positions/velocities [B, N, 3], charges [B, N].

    Every particle is one block of one atom of element ``PARTICLE_Z`` (as
    ``MolecularGraph.from_atoms`` builds it); no Python loop over systems.
    """
    b, n, _ = positions.shape
    z, block_ids, atom_pos, block_types, seg, batch_ids, pbc = _template(b, n, positions.device)
    cell = torch.zeros(b, 3, 3, dtype=positions.dtype, device=positions.device)
    return (positions.reshape(b * n, 3), velocities.reshape(b * n, 3), charges.reshape(b * n),
            z, block_ids, atom_pos, block_types, seg, batch_ids, cell, pbc)


# ============================================================================ models
class NBodyGeoMFormer(GeoMFormer):
    """GeoMFormer (dense attention) with charge-pair features and two equivariant outputs.

    Outputs: ``vectors`` = VectorHead(X, Z) + a * v (displacement) and ``velocities`` =
    VectorHead'(X, Z) + b * v (velocity at the target frame), a and b learnt scalars
    initialised to the interval time and 1 (the constant-velocity guess), so the heads
    learn corrections.

    With ``charge_pairs`` (default), the pair products q_i q_j enter as EGNN's and
    SEGNN's N-body models use them (edge attributes): the attention bias reads
    GELU(W [phi(r_ij) q_i q_j]) besides GELU(W phi(r_ij)), and the initial encodings get
    charge-signed centrality terms sum_j q_i q_j phi(r_ij) (invariant) and
    sum_j q_i q_j (r_ij / |r_ij|) phi(r_ij) (equivariant, force-like). Without it the
    encoder is GeoMFormer's. Equivariant; invariant to translations. Dense mode only.

    Args:
        velocity_head: also predict the velocity at the target frame (for rollouts).
        interval: time between input and target frames (initial value of a).
        charge_pairs: use q_i q_j pair features (see above).
        substeps: apply the network this many times per interval (shared weights).
        **kwargs: GeoMFormer hyper-parameters (``mode`` must be "dense"; ``task`` is "vectors").

    Example:
        >>> m = NBodyGeoMFormer(d_model=16, n_layers=1, n_heads=2, n_rbf=8)
        >>> s = make_samples(simulate(2, n_frames=41))
        >>> sorted(m.forward_with_vectors(*s.inputs()))
        ['vectors', 'velocities']
    """

    def __init__(self, velocity_head: bool = True, interval: float = 1.0, charge_pairs: bool = True,
                 substeps: int = 1, **kwargs: Any):
        kwargs.pop("task", None)
        kwargs.pop("nbody", None)
        kwargs.setdefault("mode", "dense")
        kwargs.setdefault("cutoff", 10.0)
        if kwargs["mode"] != "dense":
            raise NBodyError(f"NBodyGeoMFormer supports mode='dense' only, got {kwargs['mode']!r}")
        if int(substeps) < 1:
            raise NBodyError(f"substeps must be >= 1, got {substeps}")
        super().__init__(task="vectors", charge_pairs=bool(charge_pairs), **kwargs)
        self.config.update(nbody=True, velocity_head=bool(velocity_head), interval=float(interval),
                           substeps=int(substeps))
        self.substeps = int(substeps)
        self.has_velocity_head = bool(velocity_head) or self.substeps > 1
        self.velocity_head = VectorHead(self.d_model)
        self.velocity_skip = nn.Parameter(torch.tensor([float(interval), 1.0]))

    @torch.jit.export
    def forward_with_vectors(
        self,
        positions: torch.Tensor,
        velocities: torch.Tensor,
        charges: torch.Tensor,
        atomic_numbers: torch.Tensor,
        block_ids: torch.Tensor,
        atom_positions: torch.Tensor,
        block_types: torch.Tensor,
        segment_ids: torch.Tensor,
        batch_ids: torch.Tensor,
        cell: torch.Tensor,
        pbc: torch.Tensor,
    ) -> Dict[str, torch.Tensor]:
        """``vectors`` [N, 3] (displacement) and ``velocities`` [N, 3] for a batch of systems.

        With ``substeps`` K > 1 the network is applied K times with shared weights, each
        application moving the particles by its displacement (step-size factor 1/K on
        the velocity skip) and replacing the velocities, so that later applications see
        the intermediate geometry.
        """
        atom_batch = batch_ids[block_ids]
        pos = positions
        vel = velocities
        frac = 1.0 / float(self.substeps)
        for _ in range(self.substeps):
            x, z = self.encode(pos, vel, charges, atomic_numbers, block_ids, atom_positions,
                               block_types, atom_batch, cell, pbc)
            step = self.head(x, z) * frac + self.velocity_skip[0] * frac * vel
            if self.has_velocity_head:
                vel = self.velocity_head(x, z) + self.velocity_skip[1] * vel
            pos = pos + step
        out: Dict[str, torch.Tensor] = {}
        out["vectors"] = pos - positions
        if self.has_velocity_head:
            out["velocities"] = vel
        return out


def build_nbody_model(family: str = "geomformer", **config: Any) -> nn.Module:
    """Build an N-body model from hyper-parameters: ``NBodyGeoMFormer``, or GET with
    ``input_vectors=True`` (velocities as a second coordinate channel x + v, charges
    embedded; potential mode with a 20 Å cutoff by default so that all pairs connect;
    displacement output only).

    ``build_nbody_model(meta["family"], **meta["config"])`` rebuilds an exported
    N-body model's architecture.

    Example:
        >>> build_nbody_model("geomformer", d_model=16, n_layers=1, n_heads=2).mode
        'dense'
    """
    family = family.lower()
    if family == "geomformer":
        return NBodyGeoMFormer(**config)
    if family == "get":
        from get_md.models.get import GET

        cfg = {k: v for k, v in config.items() if k not in ("task", "input_vectors", "velocity_head",
                                                              "interval", "nbody")}
        cfg.setdefault("mode", "potential")
        cfg.setdefault("cutoff", 20.0)
        cfg.setdefault("compute_forces", False)
        return GET(task="vectors", input_vectors=True, **cfg)
    raise NBodyError(f"unknown model family {family!r}; choose geomformer or get")


# ============================================================================ prediction
def load_nbody_model(model: Union[None, PathLike, nn.Module], device: Any = "cpu",
                     dtype: Optional[torch.dtype] = None) -> Tuple[nn.Module, Dict[str, Any], str]:
    """A model module, its metadata and a label, from a module, a file, a zoo name or None.

    None means the shipped model ``ZOO_NAME``; a missing one is a clear error.
    """
    if isinstance(model, nn.Module):
        m = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device=device)
        meta = {"family": getattr(model, "family", None), "config": getattr(model, "config", None)}
        return m.eval(), meta, type(model).__name__
    from get_md import export, zoo

    if model is None:
        try:
            path = zoo.path(ZOO_NAME)
        except zoo.ZooError as e:
            raise NBodyError(
                f"no shipped N-body model: get_md.zoo has no model named {ZOO_NAME!r} ({e}); "
                "train one with 'get-md nbody train' and pass --model PATH, or register it with "
                f"get_md.zoo.register({ZOO_NAME!r}, PATH)") from e
        label = ZOO_NAME
    else:
        path = export.resolve_model_path(model)
        label = str(model)
    module, meta = export.load(path, device=device)
    if dtype is not None:
        module = module.to(dtype=dtype)
    if not hasattr(module, "forward_with_vectors"):
        raise NBodyError(f"{path}: model has no forward_with_vectors(positions, velocities, charges, "
                         "...) method; N-body models read velocities and charges (train one with "
                         "'get-md nbody train')")
    if meta.get("task") != "vectors":
        raise NBodyError(f"{path}: model task is {meta.get('task')!r}; N-body needs a 'vectors' model")
    meta["path"] = str(path)
    return module, meta, label


def predict(model: nn.Module, positions: torch.Tensor, velocities: torch.Tensor, charges: torch.Tensor,
            batch_size: int = 500) -> Dict[str, torch.Tensor]:
    """Model outputs for many systems: ``vectors`` (and ``velocities`` if given), each [S, N, 3].

    Runs without gradients in batches of ``batch_size`` systems, in the dtype and
    device of ``positions``.
    """
    s, n, _ = positions.shape
    outs: Dict[str, List[torch.Tensor]] = {}
    with torch.no_grad():
        for a in range(0, s, batch_size):
            b = min(s, a + batch_size)
            o = model.forward_with_vectors(*batch_inputs(positions[a:b], velocities[a:b], charges[a:b]))
            for k in ("vectors", "velocities"):
                if k in o:
                    outs.setdefault(k, []).append(o[k].reshape(b - a, n, 3))
    if "vectors" not in outs:
        raise NBodyError("model returned no 'vectors' output")
    return {k: torch.cat(v) for k, v in outs.items()}


def _model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        return p.dtype
    return torch.float32


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def evaluate(model: Union[None, PathLike, nn.Module], data: Union[PathLike, Mapping[str, Any]],
             frame_in: int = FRAME_IN, frame_out: int = FRAME_OUT, device: Any = "cpu",
             batch_size: int = 500, dtype: Optional[torch.dtype] = None) -> Dict[str, Any]:
    """Position MSE of a model predicting frame ``frame_out`` from frame ``frame_in`` (EGNN's metric).

    Args:
        model: a module with ``forward_with_vectors``, a model file, a zoo name, or None
            for the shipped ``geomformer-nbody``.
        data: an ``.npz`` file or a dict from :func:`simulate` / :func:`load_data`.

    Returns:
        ``{"mse", "n_samples", "frame_in", "frame_out", "model", "model_path", "data",
        "mse_velocity" (if the model predicts velocities), "baselines": {"zero_displacement",
        "constant_velocity"}}``; MSE averaged over samples, particles and coordinates.

    Example:
        >>> evaluate("runs/nbody/model.pt", "nbody_test.npz")["mse"]  # doctest: +SKIP
        0.0039
    """
    d = _as_data(data, frame_in=frame_in, frame_out=frame_out)
    module, meta, label = load_nbody_model(model, device=device, dtype=dtype)
    dt_model = _model_dtype(module)
    s = make_samples(d, frame_in, frame_out, dtype=torch.float64)
    dev = _model_device(module)
    sm = s.to(device=dev, dtype=dt_model)
    out = predict(module, sm.positions, sm.velocities, sm.charges, batch_size)
    disp = out["vectors"].to(device="cpu", dtype=torch.float64)
    err = disp - s.displacement
    tau = interval_time(d.get("protocol"), frame_in, frame_out)
    res: Dict[str, Any] = {
        "mse": float(err.pow(2).mean()),
        "n_samples": len(s),
        "frame_in": frame_in,
        "frame_out": frame_out,
        "model": label,
        "model_path": meta.get("path"),
        "data": str(d.get("source", "")) or None,
    }
    if "velocities" in out:
        v = out["velocities"].to(device="cpu", dtype=torch.float64)
        res["mse_velocity"] = float((v - s.velocities_out).pow(2).mean())
    res["baselines"] = {
        "zero_displacement": float(s.displacement.pow(2).mean()),
        "constant_velocity": float((s.velocities * tau - s.displacement).pow(2).mean()),
    }
    return res


# ============================================================================ training
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


def _stack_windows(windows: Sequence[NBodySamples]) -> NBodySamples:
    """The windows' tensors stacked along a leading window axis ([W, S, ...]), built once."""
    kw = {f.name: torch.stack([getattr(w, f.name) for w in windows])
          for f in fields(windows[0]) if isinstance(getattr(windows[0], f.name), torch.Tensor)}
    return NBodySamples(**kw, frame_in=windows[-1].frame_in, frame_out=windows[-1].frame_out,
                        source=windows[-1].source)


def _pick_windows(stacked: NBodySamples, pick: torch.Tensor) -> NBodySamples:
    """Row i of window ``pick[i]`` for every trajectory i (one training pair each), from
    :func:`_stack_windows`."""
    rows = torch.arange(pick.numel(), device=pick.device)
    kw = {f.name: getattr(stacked, f.name)[pick, rows]
          for f in fields(stacked) if isinstance(getattr(stacked, f.name), torch.Tensor)}
    return NBodySamples(**kw, frame_in=stacked.frame_in, frame_out=stacked.frame_out, source=stacked.source)


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
        windows = _stack_windows([make_samples(train_raw, t, t + gap, config.max_train, dtype).to(device)
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
            epoch_samples = _pick_windows(windows, pick.to(tr.positions.device))
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


# ============================================================================ rollout
def rollout(model: Union[None, PathLike, nn.Module], data: Union[PathLike, Mapping[str, Any]],
            sample: int = 0, steps: int = 5, frame_in: int = FRAME_IN, frame_out: int = FRAME_OUT,
            out_dir: Optional[PathLike] = None, device: Any = "cpu",
            dtype: Optional[torch.dtype] = torch.float64) -> Dict[str, Any]:
    """Autoregressive rollout of one system over ``steps`` intervals, against the simulator.

    From (x, v, q) at ``frame_in`` of trajectory ``sample``, each interval applies the
    model: x <- x + vectors; v <- velocities (the model's second equivariant output).
    Models without a velocity output get v <- vectors / interval time (the mean velocity
    over the interval, a crude estimate; noted in the result). The reference is the
    simulator continued from the same frame (same integrator, exact continuation).

    Writes to ``out_dir`` (if given): ``rollout.csv`` (per interval: time, position MSE,
    total energy and momentum of reference and prediction, and their drift from the
    start), ``trajectories.png`` (xy, xz, yz projections, reference vs prediction),
    ``drift.png`` (energy and momentum drift) and ``rollout.json``.

    Returns:
        Summary: per-interval MSE, final drifts, file paths, velocity source.
    """
    if steps < 1:
        raise NBodyError(f"steps must be >= 1, got {steps}")
    d = _as_data(data, frame_in=frame_in, frame_out=frame_out)
    name = str(d.get("source", "data"))
    s_total = np.asarray(d["loc"]).shape[0]
    if not 0 <= sample < s_total:
        raise NBodyError(f"{name}: sample {sample} out of range (0..{s_total - 1})")
    module, meta, label = load_nbody_model(model, device=device, dtype=dtype)
    proto = dict(PROTOCOL)
    proto.update({k: v for k, v in (d.get("protocol") or {}).items() if v is not None})
    k_frames = frame_out - frame_in
    tau = interval_time(proto, frame_in, frame_out)
    x0 = np.asarray(d["loc"], dtype=np.float64)[sample, frame_in]
    v0 = np.asarray(d["vel"], dtype=np.float64)[sample, frame_in]
    q = np.asarray(d["charges"], dtype=np.float64)[sample].reshape(-1)
    ref = simulate(1, n_frames=steps * k_frames, initial=(x0[None], v0[None], q[None]),
                   dt=float(proto["dt"]), sample_freq=int(proto["sample_freq"]),
                   max_force=proto.get("max_force"))
    ref_loc = np.concatenate([x0[None], ref["loc"][0]])  # [steps*k + 1, N, 3], saved-frame resolution
    ref_vel = np.concatenate([v0[None], ref["vel"][0]])
    ref_x, ref_v = ref_loc[::k_frames], ref_vel[::k_frames]  # [steps + 1, N, 3]

    mdt, mdev = _model_dtype(module), _model_device(module)
    x = torch.as_tensor(x0, dtype=mdt, device=mdev)[None]
    v = torch.as_tensor(v0, dtype=mdt, device=mdev)[None]
    qt = torch.as_tensor(q, dtype=mdt, device=mdev)[None]
    pred_x, pred_v = [x0], [v0]
    velocity_source = "model"
    for _ in range(steps):
        o = predict(module, x, v, qt, batch_size=1)
        x_new = x + o["vectors"]
        if "velocities" in o:
            v = o["velocities"]
        else:
            velocity_source = "displacement / interval time"
            v = o["vectors"] / tau
        x = x_new
        pred_x.append(x[0].double().cpu().numpy())
        pred_v.append(v[0].double().cpu().numpy())
    px, pv = np.stack(pred_x), np.stack(pred_v)
    times = np.arange(steps + 1) * tau
    mse = ((px - ref_x) ** 2).mean(axis=(1, 2))
    e_ref, e_pred = total_energy(ref_x, ref_v, q), total_energy(px, pv, q)
    p_ref, p_pred = total_momentum(ref_v), total_momentum(pv)
    result: Dict[str, Any] = {
        "model": label, "model_path": meta.get("path"), "data": name, "sample": sample,
        "frame_in": frame_in, "frame_out": frame_out, "steps": steps, "interval_time": tau,
        "velocity_source": velocity_source,
        "mse": [float(m) for m in mse[1:]],
        "energy_drift_pred": float(e_pred[-1] - e_pred[0]),
        "energy_drift_ref": float(e_ref[-1] - e_ref[0]),
        "momentum_drift_pred": float(np.linalg.norm(p_pred[-1] - p_pred[0])),
        "momentum_drift_ref": float(np.linalg.norm(p_ref[-1] - p_ref[0])),
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        csv_path = out / "rollout.csv"
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["interval", "frame", "time", "mse", "energy_ref", "energy_pred",
                        "energy_drift_ref", "energy_drift_pred", "px_ref", "py_ref", "pz_ref",
                        "px_pred", "py_pred", "pz_pred", "momentum_drift_ref", "momentum_drift_pred"])
            for i in range(steps + 1):
                w.writerow([i, frame_in + i * k_frames, repr(float(times[i])), repr(float(mse[i])),
                            repr(float(e_ref[i])), repr(float(e_pred[i])),
                            repr(float(e_ref[i] - e_ref[0])), repr(float(e_pred[i] - e_pred[0])),
                            *(repr(float(c)) for c in p_ref[i]), *(repr(float(c)) for c in p_pred[i]),
                            repr(float(np.linalg.norm(p_ref[i] - p_ref[0]))),
                            repr(float(np.linalg.norm(p_pred[i] - p_pred[0])))])
        _plot_trajectories(ref_loc, px, q, out / "trajectories.png",
                           f"{label}: sample {sample}, {steps} x {k_frames} frames from frame {frame_in}")
        _plot_drift(times, e_ref, e_pred, p_ref, p_pred, mse, out / "drift.png")
        result["files"] = {"csv": str(csv_path), "trajectories": str(out / "trajectories.png"),
                           "drift": str(out / "drift.png"), "json": str(out / "rollout.json")}
        (out / "rollout.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _plot_trajectories(ref_loc: np.ndarray, pred: np.ndarray, q: np.ndarray, path: Path, title: str) -> None:
    fig = _figure(13, 4.4)
    axes = fig.subplots(1, 3)
    colors = [f"C{i % 10}" for i in range(ref_loc.shape[1])]
    for ax, (a, b), lab in zip(axes, ((0, 1), (0, 2), (1, 2)), ("xy", "xz", "yz"), strict=True):
        for i in range(ref_loc.shape[1]):
            ax.plot(ref_loc[:, i, a], ref_loc[:, i, b], "-", color=colors[i], lw=1.2,
                    label=f"particle {i} (q={q[i]:+g}) reference" if lab == "xy" else None)
            ax.plot(pred[:, i, a], pred[:, i, b], "--o", color=colors[i], lw=1.0, ms=3, alpha=0.8,
                    label="model" if (lab == "xy" and i == 0) else None)
            ax.plot(ref_loc[0, i, a], ref_loc[0, i, b], "k*", ms=7)
        ax.set_xlabel("xyz"[a])
        ax.set_ylabel("xyz"[b])
        ax.set_title(f"{lab} projection")
        ax.set_aspect("equal", adjustable="datalim")
    axes[0].legend(fontsize=6, loc="best")
    fig.suptitle(f"{title} (solid: simulator, dashed: model, *: start)", fontsize=9)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.12, top=0.86, wspace=0.3)
    fig.savefig(path, format="png")


def _plot_drift(times: np.ndarray, e_ref: np.ndarray, e_pred: np.ndarray, p_ref: np.ndarray,
                p_pred: np.ndarray, mse: np.ndarray, path: Path) -> None:
    fig = _figure(13, 3.8)
    axes = fig.subplots(1, 3)
    axes[0].plot(times, e_ref - e_ref[0], "-o", ms=3, label="simulator")
    axes[0].plot(times, e_pred - e_pred[0], "--o", ms=3, label="model")
    axes[0].set_title("total energy drift E(t) - E(0)")
    axes[1].plot(times, np.linalg.norm(p_ref - p_ref[0], axis=-1), "-o", ms=3, label="simulator")
    axes[1].plot(times, np.linalg.norm(p_pred - p_pred[0], axis=-1), "--o", ms=3, label="model")
    axes[1].set_title("|P(t) - P(0)| (total momentum drift)")
    axes[2].plot(times[1:], mse[1:], "-o", ms=3, color="C3")
    if np.all(mse[1:] > 0):
        axes[2].set_yscale("log")
    axes[2].set_title("position MSE vs simulator")
    for ax in axes:
        ax.set_xlabel("time")
        if ax is not axes[2]:
            ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.15, top=0.9, wspace=0.3)
    fig.savefig(path, format="png")


# ============================================================================ CLI
def _dtype_arg(text: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[text]


def _cmd_generate(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    data = simulate(args.samples, seed=args.seed, n_frames=args.frames)
    data["protocol"]["command"] = getattr(args, "command_line", None)
    path = save_data(args.out, data)
    dt = time.perf_counter() - t0
    print(json.dumps({"out": str(path), "samples": args.samples, "frames": args.frames,
                      "seed": args.seed, "n_clipped": data["protocol"]["n_clipped"],
                      "seconds": round(dt, 2)}))
    return 0


def model_config(family: str = "geomformer", d_model: int = 64, n_layers: int = 4, n_heads: int = 8,
                 n_rbf: int = 32, cutoff: float = 10.0, dropout: float = 0.1, ffn_mult: int = 2,
                 charge_pairs: bool = True, substeps: int = 1, velocity_head: bool = True) -> Dict[str, Any]:
    """Hyper-parameters of :func:`build_nbody_model` from the ``get-md nbody train`` options
    (their defaults are these arguments' defaults).

    Example:
        >>> model_config("get")["cutoff"]
        20.0
    """
    if family == "geomformer":
        return {"d_model": d_model, "n_layers": n_layers, "n_heads": n_heads, "n_rbf": n_rbf,
                "cutoff": cutoff, "dropout": dropout, "velocity_head": velocity_head,
                "ffn_mult": ffn_mult, "charge_pairs": charge_pairs, "substeps": substeps}
    return {"d_hidden": d_model, "d_radial": max(8, d_model // 2), "n_layers": n_layers,
            "n_head": n_heads, "n_rbf": n_rbf, "cutoff": max(cutoff, 20.0), "dropout": dropout}


def _cmd_train(args: argparse.Namespace) -> int:
    model = model_config(args.family, args.d_model, args.n_layers, args.n_heads, args.n_rbf, args.cutoff,
                         args.dropout, args.ffn_mult, not args.no_charge_pairs, args.substeps,
                         not args.no_velocity_head)
    cfg = NBodyTrainConfig(
        family=args.family, model=model, train_data=args.train, valid_data=args.valid,
        output_dir=args.out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
        min_lr_ratio=args.min_lr_ratio, grad_clip=args.grad_clip if args.grad_clip > 0 else None,
        velocity_weight=0.0 if args.no_velocity_head else args.velocity_weight,
        charge_flip=not args.no_charge_flip, ema_decay=args.ema_decay,
        max_train=args.max_train, max_valid=args.max_valid, window_start=args.window_start,
        frame_in=args.frame_in,
        frame_out=args.frame_out, seed=args.seed, device=args.device, dtype=args.dtype,
        threads=args.threads, eval_every=args.eval_every, resume=not args.no_resume,
        verbose=not args.quiet,
    )
    res = train_nbody(cfg, command=getattr(args, "command_line", None))
    if args.register:
        from get_md import export, zoo

        zoo.register(args.register, res.model_path, export.read_metadata(res.model_path)["description"])
        print(f"registered {args.register} in the model zoo", file=sys.stderr)
    print(json.dumps({"model": str(res.model_path), "best_epoch": res.best_epoch,
                      "valid_mse": res.best_valid_mse, "epochs": res.last_epoch}))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    res = evaluate(args.model, args.data, args.frame_in, args.frame_out, device=args.device,
                   batch_size=args.batch_size, dtype=_dtype_arg(args.dtype) if args.dtype else None)
    print(json.dumps(res))
    return 0


def _cmd_rollout(args: argparse.Namespace) -> int:
    res = rollout(args.model, args.data, sample=args.sample, steps=args.steps, frame_in=args.frame_in,
                  frame_out=args.frame_out, out_dir=args.out, device=args.device,
                  dtype=_dtype_arg(args.dtype))
    print(json.dumps(res))
    return 0


def register_cli(sub: Any) -> None:
    """Add ``get-md nbody {generate,train,evaluate,rollout}`` to the argparse sub-parsers."""
    p = sub.add_parser("nbody", help="N-body charged particles: generate, train, evaluate, rollout",
                       description="EGNN's charged-particle N-body task (5 particles, 3-D): "
                                   "predict positions at frame 40 from frame 30.")
    nsub = p.add_subparsers(dest="nbody_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])

    g = nsub.add_parser("generate", help="simulate trajectories to an .npz file",
                        description="Simulate trajectories (EGNN protocol) and write loc, vel "
                                    "[S, T, N, 3] and charges [S, N, 1] to an .npz file.")
    g.add_argument("--out", required=True, help="output .npz file")
    g.add_argument("--samples", type=int, default=3000, help="trajectories (default 3000)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                   help=f"saved frames T, one per 100 steps (default {DEFAULT_FRAMES}, as EGNN)")
    g.set_defaults(func=_cmd_generate)

    t = nsub.add_parser("train", help="train an N-body model (resumable)",
                        description="Train a GeoMFormer (dense attention) or GET model to predict "
                                    "x(frame-out) - x(frame-in) and v(frame-out). Rerunning with "
                                    "the same --out resumes from its checkpoint.")
    t.add_argument("--train", required=True, help="training .npz")
    t.add_argument("--valid", required=True, help="validation .npz")
    t.add_argument("--family", choices=["geomformer", "get"], default="geomformer")
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--d-model", type=int, default=64, help="feature channels (default 64)")
    t.add_argument("--n-layers", type=int, default=4, help="layers (default 4)")
    t.add_argument("--n-heads", type=int, default=8, help="attention heads (default 8)")
    t.add_argument("--n-rbf", type=int, default=32, help="Gaussian basis size (default 32)")
    t.add_argument("--ffn-mult", type=int, default=2, help="FFN width / d-model (default 2)")
    t.add_argument("--cutoff", type=float, default=10.0, help="radial basis range (default 10)")
    t.add_argument("--dropout", type=float, default=0.1, help="dropout (default 0.1)")
    t.add_argument("--substeps", type=int, default=1,
                   help="apply the network K times per interval, shared weights (cost x K)")
    t.add_argument("--no-charge-pairs", action="store_true",
                   help="GeoMFormer's encoder without the q_i q_j pair features")
    t.add_argument("--no-velocity-head", action="store_true",
                   help="predict displacement only (rollouts then estimate v as displacement/time)")
    t.add_argument("--velocity-weight", type=float, default=0.1,
                   help="loss weight of the velocity MSE (default 0.1)")
    t.add_argument("--no-charge-flip", action="store_true",
                   help="no augmentation by flipping all charges of a system (an exact symmetry)")
    t.add_argument("--ema-decay", type=float, default=0.995,
                   help="per-step decay of an exponential moving average of the weights used for "
                        "validation and export (default 0.995; 0: off)")
    t.add_argument("--epochs", type=int, default=100)
    t.add_argument("--batch-size", type=int, default=100)
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--weight-decay", type=float, default=1e-6)
    t.add_argument("--warmup-epochs", type=int, default=2)
    t.add_argument("--min-lr-ratio", type=float, default=0.01)
    t.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0: off)")
    t.add_argument("--max-train", type=int, default=3000, help="training systems used (default 3000)")
    t.add_argument("--max-valid", type=int, default=2000, help="validation systems used (default 2000)")
    t.add_argument("--frame-in", type=int, default=FRAME_IN)
    t.add_argument("--register", default=None, metavar="NAME",
                   help=f"copy the trained model into the model zoo under NAME (the shipped one is {ZOO_NAME})")
    t.add_argument("--window-start", type=int, default=None,
                   help="also train on the earlier 10-frame windows of the training trajectories, "
                        "input frames drawn from WINDOW_START..frame-in (default: frame-in only)")
    t.add_argument("--frame-out", type=int, default=FRAME_OUT)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu")
    t.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--eval-every", type=int, default=1, help="validate every k epochs")
    t.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    t.add_argument("--quiet", "-q", action="store_true")
    t.set_defaults(func=_cmd_train)

    e = nsub.add_parser("evaluate", help="position MSE of a model on a data file (JSON)",
                        description="Print one JSON object: mse (over samples, particles and "
                                    "coordinates, as EGNN), n_samples, model, baselines.")
    e.add_argument("--data", required=True, help=".npz file (any T > frame-out)")
    e.add_argument("--model", default=None, help=f"model file or zoo name (default: {ZOO_NAME})")
    e.add_argument("--frame-in", type=int, default=FRAME_IN)
    e.add_argument("--frame-out", type=int, default=FRAME_OUT)
    e.add_argument("--device", default="cpu")
    e.add_argument("--dtype", choices=["float32", "float64"], default=None)
    e.add_argument("--batch-size", type=int, default=500)
    e.set_defaults(func=_cmd_evaluate)

    r = nsub.add_parser("rollout", help="autoregressive rollout vs the simulator (PNG, CSV)",
                        description="Apply the model repeatedly from frame-in of one trajectory "
                                    "and compare with the simulator continued as long.")
    r.add_argument("--data", required=True, help=".npz file")
    r.add_argument("--model", default=None, help=f"model file or zoo name (default: {ZOO_NAME})")
    r.add_argument("--sample", type=int, default=0, help="trajectory index (default 0)")
    r.add_argument("--steps", type=int, default=5, help="intervals of frame-out - frame-in frames")
    r.add_argument("--out", required=True, help="output directory")
    r.add_argument("--frame-in", type=int, default=FRAME_IN)
    r.add_argument("--frame-out", type=int, default=FRAME_OUT)
    r.add_argument("--device", default="cpu")
    r.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    r.set_defaults(func=_cmd_rollout)


__all__ = [
    "DEFAULT_FRAMES", "FRAME_IN", "FRAME_OUT", "PROTOCOL", "ZOO_NAME", "NBodyError",
    "NBodyGeoMFormer", "NBodySamples", "NBodyTrainConfig", "NBodyTrainResult", "batch_inputs",
    "build_nbody_model", "check_data", "energy_terms", "evaluate", "load_data", "load_nbody_model",
    "make_samples", "model_config", "predict", "register_cli", "rollout", "save_data", "simulate", "total_energy",
    "total_momentum", "train_nbody",
]
