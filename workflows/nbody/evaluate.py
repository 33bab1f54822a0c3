"""Evaluating N-body models: one-interval position MSE (EGNN's metric) and rollouts."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Union

import numpy as np
import torch
from torch import nn

from get_md.runtime import module_device, module_dtype

from .data import as_data, charge_warning, make_samples
from .model import load_nbody_model, predict
from .plots import plot_drift, plot_trajectories
from .protocol import FRAME_IN, FRAME_OUT, PROTOCOL, NBodyError, PathLike, interval_time
from .simulate import simulate, total_energy, total_momentum

logger = logging.getLogger(__name__)


def _warn_charges(d: Mapping[str, Any], warn: Optional[Callable[[str], None]]) -> None:
    """Pass a warning about charges other than ±1 to ``warn`` (default: the module's logger)."""
    message = charge_warning(d, str(d.get("source", "data")))
    if message is not None:
        (warn or logger.warning)(message)


def evaluate(model: Union[None, PathLike, nn.Module], data: Union[PathLike, Mapping[str, Any]],
             frame_in: int = FRAME_IN, frame_out: int = FRAME_OUT, device: Any = "cpu",
             batch_size: int = 500, dtype: Optional[torch.dtype] = None,
             warn: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Position MSE of a model predicting frame ``frame_out`` from frame ``frame_in`` (EGNN's metric).

    Args:
        model: a module with ``forward_with_vectors``, a model file, a zoo name, or None
            for the shipped ``geomformer-nbody``.
        data: an ``.npz`` file or a dict from :func:`simulate` / :func:`load_data`.
        batch_size: systems per forward call (>= 1).
        warn: called with a one-line warning (charges other than ±1); default: logged.

    Returns:
        ``{"mse", "n_samples", "frame_in", "frame_out", "model", "model_path", "data",
        "mse_velocity" (if the model predicts velocities), "baselines": {"zero_displacement",
        "constant_velocity"}}``; MSE averaged over samples, particles and coordinates.

    Example:
        >>> evaluate("runs/nbody/model.pt", "nbody_test.npz")["mse"]  # doctest: +SKIP
        0.0039
    """
    if batch_size < 1:
        raise NBodyError(f"batch_size must be >= 1, got {batch_size}")
    d = as_data(data, frame_in=frame_in, frame_out=frame_out)
    _warn_charges(d, warn)
    module, meta, label = load_nbody_model(model, device=device, dtype=dtype)
    dt_model = module_dtype(module)
    s = make_samples(d, frame_in, frame_out, dtype=torch.float64)
    dev = module_device(module)
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


def rollout(model: Union[None, PathLike, nn.Module], data: Union[PathLike, Mapping[str, Any]],
            sample: int = 0, steps: int = 5, frame_in: int = FRAME_IN, frame_out: int = FRAME_OUT,
            out_dir: Optional[PathLike] = None, device: Any = "cpu",
            dtype: Optional[torch.dtype] = torch.float64,
            warn: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
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
    d = as_data(data, frame_in=frame_in, frame_out=frame_out)
    _warn_charges(d, warn)
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

    mdt, mdev = module_dtype(module), module_device(module)
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
        plot_trajectories(ref_loc, px, q, out / "trajectories.png",
                          f"{label}: sample {sample}, {steps} x {k_frames} frames from frame {frame_in}")
        plot_drift(times, e_ref, e_pred, p_ref, p_pred, mse, out / "drift.png")
        result["files"] = {"csv": str(csv_path), "trajectories": str(out / "trajectories.png"),
                           "drift": str(out / "drift.png"), "json": str(out / "rollout.json")}
        (out / "rollout.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
