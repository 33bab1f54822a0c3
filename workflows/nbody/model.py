"""N-body models: ``NBodyGeoMFormer``, builders, loading a model file, batched prediction.

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
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from get_md import runtime
from get_md.models.geomformer import GeoMFormer, VectorHead
from get_md.zoo import ZooError

from .data import batch_inputs
from .protocol import ZOO_NAME, NBodyError, PathLike


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
        >>> from get_md.workflows.nbody import make_samples, simulate
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
    """A model module, its metadata and a label, from a module, a file, a zoo name or None,
    through :mod:`get_md.runtime` (an in-memory module is copied, never changed in place;
    ``dtype`` None keeps the model's own).

    None means the shipped model ``ZOO_NAME``; a missing one is a clear error.
    """
    dtype = runtime.parse_dtype(dtype, default=None)
    if isinstance(model, nn.Module):
        m = runtime.prepare_module(model, device, dtype)
        meta = {"family": getattr(model, "family", None), "config": getattr(model, "config", None)}
        return m, meta, type(model).__name__
    try:
        path = runtime.resolve_model_path(ZOO_NAME if model is None else model)
    except ZooError as e:
        if model is not None:
            raise
        raise NBodyError(
            f"no shipped N-body model: get_md.zoo has no model named {ZOO_NAME!r} ({e}); "
            "train one with 'get-md nbody train' and pass --model PATH, or register it with "
            f"get_md.zoo.register({ZOO_NAME!r}, PATH)") from e
    label = ZOO_NAME if model is None else str(model)
    module, meta = runtime.load_model(path, device=device, dtype=dtype)
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
