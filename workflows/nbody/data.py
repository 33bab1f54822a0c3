"""N-body data: ``.npz`` files (save, load, check), model inputs and targets, batches."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from get_md.atomic import atomic_path
from get_md.model_inputs import VectorInputs

from .protocol import DATA_KEYS, FRAME_IN, FRAME_OUT, PARTICLE_Z, NBodyError, PathLike
from .simulate import coincident_particles


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
    # two particles at one place: the model's unit pair directions are 0/0 (NaN outputs), and
    # the simulator that wrote the file would have had an infinite Coulomb force there
    same = coincident_particles(loc)
    if same is not None:
        si, ti, i, j = same
        raise NBodyError(f"{name}: loc: sample {si}, frame {ti}: particles {i} and {j} are at the same place")
    for what, f in (("frame-in", frame_in), ("frame-out", frame_out)):
        if f is not None and not 0 <= f < t:
            raise NBodyError(f"{name}: {what} {f} is out of range; the file has T={t} frames "
                             f"(0..{t - 1}), so {what} must be < {t}")


def _check_npz_file(path: Path) -> None:
    """Raise NBodyError unless ``path`` is a file that can be an ``.npz`` (zip) archive."""
    if path.is_dir():
        raise NBodyError(f"{path}: is a directory, not an N-body data file")
    if not path.is_file():
        raise NBodyError(f"{path}: N-body data file not found")
    if path.stat().st_size == 0:
        raise NBodyError(f"{path}: empty file")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            damaged = f.read(4) == b"PK\x03\x04"
        what = "truncated or damaged .npz file (incomplete zip archive)" if damaged else "not an .npz (zip) file"
        raise NBodyError(f"{path}: {what}")


def charge_warning(data: Mapping[str, Any], name: str = "data") -> Optional[str]:
    """A warning if ``data`` holds charges other than +1 and -1 (the protocol's, which the
    shipped models were trained on), else None.

    Example:
        >>> charge_warning({"charges": np.array([[[7.0], [-1.0]]])}, "x.npz")  # doctest: +ELLIPSIS
        'x.npz: charges other than ±1 (7); the model was trained on charges ±1 ...'
    """
    q = np.asarray(data["charges"], dtype=np.float64).reshape(-1)
    odd = np.unique(q[~np.isclose(np.abs(q), 1.0)])
    if odd.size == 0:
        return None
    shown = ", ".join(f"{v:g}" for v in odd[:3]) + (", ..." if odd.size > 3 else "")
    return (f"{name}: charges other than ±1 ({shown}); the model was trained on charges ±1 "
            "(EGNN N-body protocol), so its predictions for these are extrapolation")


def load_data(path: PathLike, frame_out: Optional[int] = None, frame_in: Optional[int] = None) -> Dict[str, Any]:
    """Read and check an ``.npz`` file of ``loc``, ``vel``, ``charges`` (see :func:`check_data`).

    Example:
        >>> data = load_data("nbody_test.npz", frame_out=40)  # doctest: +SKIP
    """
    path = Path(path)
    _check_npz_file(path)
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


def as_data(data: Union[PathLike, Mapping[str, Any]], frame_in: Optional[int] = None,
            frame_out: Optional[int] = None) -> Dict[str, Any]:
    """A checked data set: loaded from a file, or a mapping checked (and copied)."""
    if isinstance(data, (str, os.PathLike)):
        return load_data(data, frame_out=frame_out, frame_in=frame_in)
    name = str(data.get("source", "data"))
    check_data(data, name, frame_out=frame_out, frame_in=frame_in)
    return dict(data)


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

    def inputs(self, index: Optional[torch.Tensor] = None) -> VectorInputs:
        """``forward_with_vectors`` arguments for the samples at ``index`` (all if None)."""
        if index is None:
            return batch_inputs(self.positions, self.velocities, self.charges)
        return batch_inputs(self.positions[index], self.velocities[index], self.charges[index])


def make_samples(data: Union[PathLike, Mapping[str, Any]], frame_in: int = FRAME_IN,
                 frame_out: int = FRAME_OUT, max_samples: Optional[int] = None,
                 dtype: torch.dtype = torch.float32) -> NBodySamples:
    """Inputs (frame ``frame_in``) and targets (frame ``frame_out``) of a data file or dict.

    Example:
        >>> from get_md.workflows.nbody import simulate
        >>> s = make_samples(simulate(3, n_frames=41), max_samples=2)
        >>> len(s), s.n_particles
        (2, 5)
    """
    if frame_out <= frame_in:
        raise NBodyError(f"frame-out ({frame_out}) must be after frame-in ({frame_in})")
    d = as_data(data, frame_in=frame_in, frame_out=frame_out)
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
                 charges: torch.Tensor) -> VectorInputs:
    """``forward_with_vectors`` arguments for B systems: positions/velocities [B, N, 3], charges [B, N].

    Every particle is one block of one atom of element ``PARTICLE_Z`` (as
    ``MolecularGraph.from_atoms`` builds it); no Python loop over systems.
    """
    b, n, _ = positions.shape
    z, block_ids, atom_pos, block_types, seg, batch_ids, pbc = _template(b, n, positions.device)
    cell = torch.zeros(b, 3, 3, dtype=positions.dtype, device=positions.device)
    return VectorInputs(positions.reshape(b * n, 3), velocities.reshape(b * n, 3), charges.reshape(b * n),
                        z, block_ids, atom_pos, block_types, seg, batch_ids, cell, pbc)


def stack_windows(windows: Sequence[NBodySamples]) -> NBodySamples:
    """The windows' tensors stacked along a leading window axis ([W, S, ...]), built once."""
    kw = {f.name: torch.stack([getattr(w, f.name) for w in windows])
          for f in fields(windows[0]) if isinstance(getattr(windows[0], f.name), torch.Tensor)}
    return NBodySamples(**kw, frame_in=windows[-1].frame_in, frame_out=windows[-1].frame_out,
                        source=windows[-1].source)


def pick_windows(stacked: NBodySamples, pick: torch.Tensor) -> NBodySamples:
    """Row i of window ``pick[i]`` for every trajectory i (one training pair each), from
    :func:`stack_windows`."""
    rows = torch.arange(pick.numel(), device=pick.device)
    kw = {f.name: getattr(stacked, f.name)[pick, rows]
          for f in fields(stacked) if isinstance(getattr(stacked, f.name), torch.Tensor)}
    return NBodySamples(**kw, frame_in=stacked.frame_in, frame_out=stacked.frame_out, source=stacked.source)
