"""The charged-particle simulator (EGNN's generator, vectorised) and its conserved quantities.

Clipping acts on each particle's total force, so it is not antisymmetric: total
momentum is conserved to round-off in every step where no component is clipped,
and changes in the steps where one is (about 0.3 % of force components in
nbody_small data: close encounters of opposite charges).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

from .protocol import DEFAULT_FRAMES, PROTOCOL, NBodyError


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


def _check_initial(x: np.ndarray, v: np.ndarray, q: np.ndarray) -> None:
    """NBodyError naming the sample and particle for non-finite values or two particles at one
    place (an infinite Coulomb force: the whole trajectory would be NaN)."""
    for name, a in (("loc", x), ("vel", v), ("charges", q)):
        bad = ~np.isfinite(a)
        if bad.any():
            idx = np.argwhere(bad)[0]
            raise NBodyError(f"initial {name}: sample {int(idx[0])}, particle {int(idx[1])} is not finite")
    same = coincident_particles(x)
    if same is not None:
        s, i, j = same
        raise NBodyError(f"initial loc: sample {s}: particles {i} and {j} are at the same place")


def coincident_particles(loc: np.ndarray) -> Optional[Tuple[int, ...]]:
    """Index of the first two particles at one place in ``loc`` [..., N, 3]: the leading
    indices, then the two particles (i < j); None if there are none.

    Example:
        >>> coincident_particles(np.array([[[0.0, 0, 0], [1, 0, 0], [0, 0, 0]]]))
        (0, 0, 2)
    """
    d2 = ((loc[..., :, None, :] - loc[..., None, :, :]) ** 2).sum(-1)
    n = loc.shape[-2]
    d2[..., np.arange(n), np.arange(n)] = np.inf
    same = np.argwhere(d2 == 0)
    return tuple(int(k) for k in same[0]) if len(same) else None


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
    if not (np.isfinite(dt) and dt > 0):
        raise NBodyError(f"dt must be a positive number, got {dt}")
    if int(sample_freq) < 1:
        raise NBodyError(f"sample_freq must be >= 1, got {sample_freq}")
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
        if x.ndim != 3 or x.shape[-1] != 3 or v.shape != x.shape:
            raise NBodyError(f"initial loc/vel must be [S, N, 3], got {x.shape}, {v.shape}")
        if q0.size != x.shape[0] * x.shape[1]:
            raise NBodyError(f"initial charges must be [S, N(, 1)] = [{x.shape[0]}, {x.shape[1]}], "
                             f"got {q0.shape}")
        q = q0.reshape(x.shape[0], x.shape[1])
        _check_initial(x, v, q)
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
