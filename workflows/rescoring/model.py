"""The scoring model of the rescoring workflows, over :mod:`get_md.runtime`.

:class:`ModelRef` names the model a worker loads; :func:`resolve_model` finds and checks
the file, :func:`get_module` loads it once per process (energies only, forces switched
off, shared by the process's threads), :func:`run_model` forwards a batch. Reusable
terms of a fixed pocket: :func:`environment_cache`, :func:`build_environment`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from get_md.errors import WorkflowError

from .options import PathLike

logger = logging.getLogger("get_md.workflows")


@dataclass(frozen=True)
class ModelRef:
    """What a worker needs to load the scoring model: file, device, dtype, digest
    (hashable and picklable; :func:`get_module` loads it once per process)."""

    path: str
    device: str = "cpu"
    dtype: Optional[str] = None
    sha256: str = ""
    task: str = "energy"
    name: str = ""
    blocks: str = ""  # "atoms", "residues"; "" = atoms for potentials, residues otherwise

    @property
    def atom_blocks(self) -> bool:
        """Whether the model sees every atom as its own block (see :func:`run_model`):
        potentials are trained on atom sets, score models on residue blocks."""
        return self.blocks == "atoms" or (not self.blocks and self.is_potential)

    @property
    def is_potential(self) -> bool:
        return self.task == "energy"


def resolve_model(
    model: Optional[PathLike],
    device: str = "cpu",
    dtype: Optional[str] = None,
    preferred: Sequence[str] = ("score", "energy"),
) -> tuple[ModelRef, dict]:
    """Model file and metadata for a name, a path, or None (the first shipped default of
    ``preferred`` tasks), through :mod:`get_md.runtime`. Checks the file (archive,
    digest) and the device.

    Raises:
        WorkflowError: no model, a task other than ``energy`` / ``score``, CUDA unavailable.
    """
    import torch

    from get_md import runtime

    device = str(device or "cpu")
    runtime.parse_device(device, "--device")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise WorkflowError(f"--device {device}: CUDA is not available in this torch build / machine")
    runtime.check_device(device, "--device")  # cuda:N beyond the device count, mps
    if model is None:
        found = runtime.shipped_model(preferred)
        if found is None:
            raise WorkflowError(
                "no model given and no shipped default model is installed; pass --model FILE.pt "
                "(a file written by get_md.export.save or `get-md export`)"
            )
        path = found[1]
    else:
        path = runtime.resolve_model_path(model)
    meta = runtime.verified_metadata(path)
    task = meta.get("task")
    if task not in ("energy", "score"):
        raise WorkflowError(
            f"{path}: model task is {task!r}; rescoring needs an 'energy' (potential) or 'score' model"
        )
    dt = None if dtype is None else str(runtime.model_dtype(dtype, "--dtype")).replace("torch.", "")
    # "" lets ModelRef.atom_blocks choose: atom sets for potentials, residues otherwise
    blocks = str(meta.get("blocks", ""))
    spec = ModelRef(path=str(Path(path).resolve()), device=device, dtype=dt,
                     sha256=str(meta.get("weights_sha256", "")), task=str(task),
                     name=str(model) if model is not None else Path(path).stem, blocks=blocks)
    return spec, meta


_MODULES: dict = {}
_MODULES_LOCK = threading.Lock()


def get_module(spec: ModelRef):
    """The loaded TorchScript module for ``spec``, forces off, loaded once per process.

    The threads of :func:`~get_md.workflows.rescoring.parallel.fan_out` (and of Dask
    workers) share it: a TorchScript module may be called from several threads at once,
    and nothing changes it after loading.
    """
    mod = _MODULES.get(spec)
    if mod is None:
        with _MODULES_LOCK:
            mod = _MODULES.get(spec)
            if mod is None:
                from get_md import runtime

                mod, _ = runtime.load_model(spec.path, device=spec.device, dtype=spec.dtype)
                # energies only: setting the attribute on a loaded ScriptModule switches
                # the autograd force branch off (checked in the tests)
                if hasattr(mod, "compute_forces"):
                    mod.compute_forces = False
                mod.eval()
                _MODULES[spec] = mod
    return mod


def _records_text(graph, records: Optional[str]) -> str:
    """The inputs of a model call for messages: ``records``, else the graph's distinct names."""
    if records:
        return records
    names = list(dict.fromkeys(n for n in (graph.names or []) if n))
    if len(names) > 3:
        return f"{', '.join(names[:3])} and {len(names) - 3} more"
    return ", ".join(names) or "structure"


def run_model(spec: ModelRef, graph, environment: Optional[tuple] = None,
              records: Optional[str] = None) -> dict:
    """Forward a (batched) MolecularGraph under ``torch.no_grad``; outputs on the CPU.

    An error raised inside the model file (``torch.jit.Error``, ``RuntimeError``) becomes
    ``get_md.export.ModelRunError`` naming the file and ``records`` (default: the graph's
    names).

    With ``spec.atom_blocks`` (potentials) the graph is first turned into one
    block per atom, the form the model was trained on; per-atom outputs keep the
    atom order of ``graph``.

    ``environment``: ``(env_index, cache)`` with ``cache`` from
    :func:`environment_cache` and ``env_index`` [N] the index of each atom in that
    environment (-1: not in it); the model then reuses the environment's terms
    (``GET.forward_in_environment``; same outputs).

    With per-atom ``energies`` in the output, ``energy`` is their sum per structure in
    float64: a float32 model's own total rounds at the scale of the whole structure
    (about 0.01 eV at 10^4-10^5 eV), too coarse for the differences of totals that
    interaction energies are.

    (``torch.inference_mode`` is avoided: a TorchScript module first run with autograd
    can fail under it.)
    """
    import torch

    from get_md.perf import flush_denormals, plain_executor
    from get_md.runtime import module_dtype

    mod = get_module(spec)
    if spec.atom_blocks:
        graph = graph.as_atom_blocks()
    g = graph.to(device=spec.device, dtype=module_dtype(mod))
    try:
        with torch.no_grad(), plain_executor(), flush_denormals():
            if environment is not None:
                out = mod.forward_in_environment(*g.inputs(), environment[0].to(spec.device),
                                                 environment[1])
            else:
                out = mod(*g.inputs())
    except (torch.jit.Error, RuntimeError) as e:
        if isinstance(e, torch.OutOfMemoryError):
            raise  # callers may retry with smaller batches
        from get_md.export import run_error

        raise run_error(spec.path, e, _records_text(graph, records)) from e
    out = {k: v.detach().to("cpu") for k, v in out.items()}
    if "energies" in out and "energy" in out:
        out["energy"] = structure_energies(out["energies"], graph.atom_batch_ids, graph.num_graphs)
    return out


def structure_energies(energies, atom_batch, n_structures: int):
    """Per-structure totals [G] (float64, eV) of per-atom energies [N] (any float dtype).

    Example:
        >>> import torch
        >>> structure_energies(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0, 0, 1]), 2)
        tensor([3., 4.], dtype=torch.float64)
    """
    import torch

    from get_md.nn.scatter import scatter_sum

    return scatter_sum(energies.detach().to("cpu", torch.float64), atom_batch.to("cpu"), n_structures)


_ENVIRONMENTS: dict = {}
_ENVIRONMENTS_LOCK = threading.Lock()


def build_environment(spec: ModelRef, graph) -> Optional[list]:
    """The model's reusable terms of fixed environments (``GET.environment_cache`` of
    ``graph``, one structure or a batch), or None where the model cannot reuse them
    (score models, files without the method, GPU). ``cache[2]`` holds the
    environment's per-atom energies (eV)."""
    import torch

    from get_md.perf import flush_denormals, plain_executor
    from get_md.runtime import module_dtype

    if not (spec.is_potential and spec.atom_blocks) or spec.device.startswith("cuda"):
        return None
    mod = get_module(spec)
    if not hasattr(mod, "environment_cache"):
        return None
    g = graph.as_atom_blocks().to(device=spec.device, dtype=module_dtype(mod))
    try:
        with torch.no_grad(), plain_executor(), flush_denormals():
            return list(mod.environment_cache(*g.inputs()))
    except (RuntimeError, torch.jit.Error) as e:  # a model or structure the method does not cover
        logger.debug("no environment reuse: %s", str(e).splitlines()[0])
        return None


def environment_cache(spec: ModelRef, graph) -> Optional[list]:
    """:func:`build_environment`, remembered per process for the same model and
    structure (the threads of :func:`~get_md.workflows.rescoring.parallel.fan_out` and
    Dask workers compute it once)."""
    digest = hashlib.sha256()
    for t in (graph.positions, graph.atomic_numbers):
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    key = (spec, digest.hexdigest())
    with _ENVIRONMENTS_LOCK:
        if key not in _ENVIRONMENTS:
            if len(_ENVIRONMENTS) > 8:
                _ENVIRONMENTS.clear()
            _ENVIRONMENTS[key] = build_environment(spec, graph)
        return _ENVIRONMENTS[key]


#: the model values of a result row (scores, energies): none of them may be NaN or infinite
MODEL_VALUE_COLUMNS = ("score", "score_std", "pose_score", "interaction_energy_eV", "e_complex_eV",
                       "e_ligand_eV", "e_pocket_eV")


def mark_non_finite(row: dict, model: PathLike, where: str) -> dict:
    """Mark an "ok" result row "skipped" if one of its model values is NaN or infinite
    (diverged or damaged weights; the row would otherwise be ranked and averaged),
    with an error naming ``where`` (the record or frame) and the model. Returns ``row``.

    Example:
        >>> mark_non_finite({"status": "ok", "error": "", "score": float("nan")}, "m.pt", "p.sdf: record 1")["error"]
        'p.sdf: record 1: model m.pt returned a non-finite score (nan): damaged weights or a diverged training run?'
    """
    import math

    if row.get("status") != "ok":
        return row
    for key in MODEL_VALUE_COLUMNS:
        value = row.get(key)
        if value is not None and not math.isfinite(float(value)):
            row["status"] = "skipped"
            row["error"] = (f"{where}: model {Path(model).name} returned a non-finite {key} ({value}): "
                            "damaged weights or a diverged training run?")
            break
    return row


def score_columns(out: dict, k: int) -> dict:
    """``score`` (and ``score_std`` for ensembles, ``pose_score`` for models with pose
    members) of structure ``k`` of a score model's outputs."""
    row = {"score": float(out["score"][k])}
    for key in ("score_std", "pose_score"):
        if key in out:
            row[key] = float(out[key][k])
    return row
