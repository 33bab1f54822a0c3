"""Model files as ``torch.export`` programs (``.pt2``): the second model-file format.

``get_md.export.save(model, "model.pt2", metadata, format="pt2")`` writes a
``torch.export.save`` archive with the same ``metadata.json`` extra file as a
TorchScript model file (``"format": "pt2"`` added) and the same ``weights_sha256``
(computed over the model's own state-dict names, so a shipped model converted to pt2
keeps its registry digest). :func:`get_md.export.load` (and so ``get_md.runtime``, the
ASE calculator, rescoring) detects the format by content and returns a
:class:`Pt2Module`, called like the TorchScript module::

    module, meta = get_md.export.load("model.pt2")
    out = module(*graph.inputs())          # Dict[str, Tensor], as the TorchScript file

Decisions (torch 2.13, measured on the GET and GeoMFormer models of this package):

* **Graph building stays outside the exported program, in eager Python.** Neighbour
  lists (cell lists, ``torch.unique`` groupings, periodic images) branch on data
  (``bool(pbc.any())``, ``int(counts.sum())``, "is every block edge one pair"):
  ``torch.export`` stops at the first such branch, and ``draft_export`` specialises
  them to the example's values (a program exported on 12 atoms failed a runtime
  assertion ``edges <= 144`` on 30). The model's own graph code (``GET._potential_pairs``
  / ``_score_pairs``, ``get_md.nn.neighbors.radius_graph``) therefore runs eagerly on a
  weight-less copy of the architecture built from the file's ``config``, and its
  tensors enter the program as inputs with dynamic sizes (atoms, blocks, structures,
  pairs, pair groups, block edges). While exporting, those graph functions are replaced
  by ones that return the inputs; the branches that remain are fixed to their general
  form (periodic shifts always added: zero shifts add exact zeros; GET's general pair
  grouping, not its one-pair-per-edge shortcut). So a pt2 file needs get_md to run,
  unlike a TorchScript file, which needs torch alone.
* **Forces and stress by autograd around the program, not inside it.** A program that
  calls ``torch.autograd.grad`` does not export (torch 2.13, strict=False: "We found a
  fake tensor in the exported program constant's list"). The program returns the
  energy of positions and of a symmetric strain [G, 3, 3] given as an input (zeros);
  :class:`Pt2Module` differentiates it: forces = -dE/dx, stress = (1/V) dE/d(strain),
  as the models' heads do. Non-strict export (``strict=False``) traces the model's
  plain Python.
* While exporting, ``int(tensor)`` in the model modules (``n_graphs = int(batch_id.max()) + 1``
  and the like) is shadowed by a version that keeps the value symbolic (``.item()``), row
  chunking is off, and sizes 0/1 are not specialised (``backed_size_oblivious``). Models
  that took counts from shapes (``cell.shape[0]``) would need none of this.
* Inputs outside the program's shapes (fewer than 2 atoms, no pair, or blocks of several
  atoms for a program exported on atom blocks and the reverse) run the same weights
  eagerly in :class:`Pt2Module`, with a warning.
* A pt2 file runs in the dtype it was exported in (the graph holds dtypes); it moves to
  another device with ``torch.export.passes.move_to_device_pass``.

Not exportable here (``save`` raises ValueError): GET score models with
``heavy_atoms_only``, ``contact_radius`` or ``receptor_radius`` (data-dependent selections
of atoms) and
model ensembles; export their members, or use TorchScript.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

from get_md.errors import ModelFileError

Graph = Tuple[torch.Tensor, ...]

#: Marker in metadata.json.
FORMAT = "pt2"


class _Periodic:
    """Stands in for the ``pbc`` tensor inside the exported program, so that the model's
    ``bool(pbc.any())`` takes a fixed branch (see the module docstring)."""

    def __init__(self, value: bool):
        self.value = value

    def any(self, *args: Any, **kwargs: Any) -> bool:
        return self.value


def _symbolic_int(x: Any) -> Any:
    """``int`` for the model modules while exporting: a tensor's value stays symbolic
    (``.item()``, computed when the program runs) instead of being fixed to the example's."""
    if isinstance(x, torch.Tensor):
        return x.item()
    if isinstance(x, torch.SymInt):
        return x
    return int(x)


#: model modules whose ``int(tensor)`` calls stay symbolic while exporting
_SYMBOLIC_INT_MODULES = (
    "get_md.models.get",
    "get_md.models.get_layers",
    "get_md.models.get_attention",
    "get_md.models.geomformer",
)


@contextlib.contextmanager
def _symbolic_ints() -> Iterator[None]:
    import importlib

    modules = [importlib.import_module(name) for name in _SYMBOLIC_INT_MODULES]
    for module in modules:
        module.int = _symbolic_int  # a module global shadows the builtin
    try:
        yield
    finally:
        for module in modules:
            del module.int


def _edge_vectors(positions, center, neighbor, cell_shifts, cell, atom_batch):
    """``get_md.nn.neighbors.edge_vectors`` without its data-dependent "any shift?" test."""
    vec = positions.index_select(0, neighbor) - positions.index_select(0, center)
    shift = torch.bmm(cell_shifts.unsqueeze(1).to(positions.dtype), cell.index_select(0, atom_batch[center]))
    return vec + shift.squeeze(1)


# ----------------------------------------------------------------------------- families
class _Adapter:
    """How one model family builds its graph eagerly and runs its core on given graph tensors."""

    #: dynamic-dimension name of each graph tensor's first dimension
    graph_dims: Tuple[str, ...] = ()
    #: the program is exported for one atom per block (blocks == atoms)
    atom_blocks: bool = True

    def check(self, model: nn.Module) -> None:
        """Raise ValueError for a model this adapter cannot export."""

    def graph(self, model: nn.Module, pos, block_ids, segment_ids, batch_ids, cell, pbc) -> Graph:
        return ()

    @contextlib.contextmanager
    def feeding(self, model: nn.Module, graph: Graph) -> Iterator[None]:
        yield

    def run(self, model, pos, vel, charges, numbers, block_ids, atom_positions, block_types,
            segment_ids, batch_ids, cell) -> Dict[str, torch.Tensor]:
        raise NotImplementedError


class _GETAdapter(_Adapter):
    def __init__(self, mode: str):
        self.mode = mode
        self.atom_blocks = mode == "potential"
        self.graph_dims = (("pairs",) * 3 + ("groups",) * 2 + ("block_edges",) * 2 + ("pairs",)
                           if mode == "potential" else
                           ("pairs",) * 3 + ("groups",) * 2 + ("block_edges",) * 2)

    def check(self, model: nn.Module) -> None:
        if (getattr(model, "heavy_atoms_only", False) or float(getattr(model, "contact_radius", 0.0)) > 0
                or float(getattr(model, "receptor_radius", 0.0)) > 0):
            raise ModelFileError("GET score models with heavy_atoms_only, contact_radius or receptor_radius "
                                 "select atoms by data and cannot be exported to pt2; use format='torchscript' "
                                 "(get-md export: an OUT ending in .pt)")

    def graph(self, model, pos, block_ids, segment_ids, batch_ids, cell, pbc) -> Graph:
        with torch.no_grad():
            if self.mode == "potential":
                model.singleton_shortcut = False  # the general grouping (see the module docstring)
                out = model._potential_pairs(pos, block_ids, segment_ids, batch_ids[block_ids], cell, pbc)
                return tuple(out[:8])
            return tuple(model._score_pairs(pos, block_ids, batch_ids, segment_ids))

    @contextlib.contextmanager
    def feeding(self, model: nn.Module, graph: Graph) -> Iterator[None]:
        name = "_potential_pairs" if self.mode == "potential" else "_score_pairs"
        extra = (False,) if self.mode == "potential" else ()
        setattr(model, name, lambda *args: tuple(graph) + extra)
        try:
            yield
        finally:
            delattr(model, name)

    def run(self, model, pos, vel, charges, numbers, block_ids, atom_positions, block_types,
            segment_ids, batch_ids, cell):
        import inspect

        extra = (None,) if "pairs" in inspect.signature(model._run).parameters else ()  # graph given: fed
        return model._run(pos, vel, charges, numbers, block_ids, atom_positions, block_types,
                          segment_ids, batch_ids, cell, _Periodic(True), *extra)


class _GeoMFormerAdapter(_Adapter):
    def __init__(self, mode: str, task: str):
        self.mode = mode
        self.atom_blocks = task != "score"
        self.graph_dims = ("pairs", "pairs", "pairs") if mode == "radius" else ()

    def graph(self, model, pos, block_ids, segment_ids, batch_ids, cell, pbc) -> Graph:
        if self.mode != "radius":
            if bool(pbc.any()):
                raise RuntimeError("GeoMFormer dense mode does not support periodic cells; use mode='radius'")
            return ()
        from get_md.nn.neighbors import radius_graph

        with torch.no_grad():
            return tuple(radius_graph(pos, batch_ids[block_ids], model.cutoff, cell, pbc))

    @contextlib.contextmanager
    def feeding(self, model: nn.Module, graph: Graph) -> Iterator[None]:
        import get_md.models.geomformer as gm

        saved = gm.radius_graph, gm.edge_vectors
        gm.radius_graph = lambda *args: tuple(graph)
        gm.edge_vectors = _edge_vectors
        try:
            yield
        finally:
            gm.radius_graph, gm.edge_vectors = saved

    def run(self, model, pos, vel, charges, numbers, block_ids, atom_positions, block_types,
            segment_ids, batch_ids, cell):
        return model.forward_with_vectors(pos, vel, charges, numbers, block_ids, atom_positions,
                                          block_types, segment_ids, batch_ids, cell,
                                          _Periodic(self.mode == "radius"))


def adapter_for(family: str, config: dict) -> _Adapter:
    """The adapter of a model family and graph mode."""
    mode = str(config.get("mode") or "")
    if family == "get":
        return _GETAdapter(mode or "potential")
    if family == "geomformer":
        return _GeoMFormerAdapter(mode or "dense", str(config.get("task") or "energy"))
    raise ModelFileError(f"no pt2 export for model family {family!r}")


# ----------------------------------------------------------------------------- program
class _Core(nn.Module):
    """What is exported: the model on given graph tensors, positions strained by ``strain``."""

    def __init__(self, model: nn.Module, adapter: _Adapter, energy: bool):
        super().__init__()
        self.model = model
        self.adapter = adapter
        self.energy = energy

    def forward(self, positions, strain, velocities, charges, atomic_numbers, block_ids, atom_positions,
                block_types, segment_ids, batch_ids, cell, graph: Graph) -> Dict[str, torch.Tensor]:
        if self.energy:
            sym = 0.5 * (strain + strain.transpose(1, 2))
            atom_batch = batch_ids[block_ids]
            positions = positions + torch.bmm(positions.unsqueeze(1), sym[atom_batch]).squeeze(1)
            cell = cell + torch.bmm(cell, sym)
        with self.adapter.feeding(self.model, graph):
            return self.adapter.run(self.model, positions, velocities, charges, atomic_numbers, block_ids,
                                    atom_positions, block_types, segment_ids, batch_ids, cell)


def _example_inputs(dtype: torch.dtype, atom_blocks: bool) -> List[Any]:
    """Two structures of 9 and 13 atoms (sizes that torch.export does not specialise), one
    atom per block or (``atom_blocks`` False) blocks of two atoms and one of one."""
    from get_md.graph import MolecularGraph, batch_graphs

    gen = torch.Generator().manual_seed(0)
    graphs = []
    for n in (9, 13):
        pos = (torch.rand(n, 3, generator=gen, dtype=torch.float64) * 4.0).to(dtype)
        z = torch.tensor([6, 1, 7, 8])[torch.randint(4, (n,), generator=gen)]
        g = MolecularGraph.from_atoms(pos, z)
        if not atom_blocks:
            block_ids = torch.arange(n) // 2
            n_blocks = int(block_ids[-1]) + 1
            g = MolecularGraph(positions=g.positions, atomic_numbers=g.atomic_numbers, block_ids=block_ids,
                               atom_positions=g.atom_positions, block_types=g.block_types[::2].clone(),
                               segment_ids=(torch.arange(n_blocks) >= n_blocks - 2).long(),
                               batch_ids=torch.zeros(n_blocks, dtype=torch.long), cell=g.cell, pbc=g.pbc)
        graphs.append(g)
    return batch_graphs(graphs).inputs()


@contextlib.contextmanager
def _export_settings(model: nn.Module) -> Iterator[None]:
    """Model attributes for export: forces off (taken around the program), no row chunks
    (their test compares the row count with a constant, which would bound the sizes)."""
    saved: List[Tuple[Any, str, Any]] = []
    for module in model.modules():
        for name, value in (("compute_forces", False), ("chunk_rows", 0)):
            if hasattr(module, name) and not isinstance(getattr(module, name), (nn.Module, torch.Tensor)):
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, value)
    try:
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)


def _skeleton(family: str, config: dict, builder: str = "") -> nn.Module:
    """The model's architecture from its config (for the eager graph code; weights unused)."""
    import importlib

    name = builder.split(" ")[0]
    if name and ":" in name:
        mod_name, _, attr = name.partition(":")
        model = getattr(importlib.import_module(mod_name), attr)(family, **config)
    else:
        from get_md.models import build_model

        model = build_model(family, **config)
    return model.eval()


def export_program(model: nn.Module) -> torch.export.ExportedProgram:
    """``torch.export`` the model's core (see the module docstring) with dynamic sizes."""
    family = str(getattr(model, "family", ""))
    config = dict(getattr(model, "config", None) or {})
    adapter = adapter_for(family, config)
    adapter.check(model)
    if not hasattr(model, "forward_with_vectors") and family == "geomformer":
        raise ModelFileError("GeoMFormer model without forward_with_vectors")
    energy = getattr(model, "task", "") == "energy"
    dtype = next(iter(model.parameters())).dtype
    inputs = _example_inputs(dtype, adapter.atom_blocks)
    pos, numbers, block_ids, atom_positions, block_types, segment_ids, batch_ids, cell, pbc = inputs
    saved_shortcut = getattr(model, "singleton_shortcut", None)
    graph = adapter.graph(model, pos, block_ids, segment_ids, batch_ids, cell, pbc)
    core = _Core(model, adapter, energy).eval()
    n_graphs = cell.shape[0]
    args = (pos, torch.zeros(n_graphs, 3, 3, dtype=dtype), torch.zeros_like(pos), torch.zeros(pos.shape[0], dtype=dtype),
            numbers, block_ids, atom_positions, block_types, segment_ids, batch_ids, cell, graph)
    dims: Dict[str, Any] = {}

    def dim(name: str) -> Any:
        if name not in dims:  # (programs run 2 or more atoms; Pt2Module runs fewer eagerly)
            dims[name] = torch.export.Dim(name, min=2 if name == "atoms" else 0)
        return dims[name]

    atoms, structures = {0: dim("atoms")}, {0: dim("structures")}
    blocks = atoms if adapter.atom_blocks else {0: dim("blocks")}
    dynamic = (atoms, structures, atoms, atoms, atoms, atoms, atoms, blocks, blocks, blocks, structures,
               tuple({0: dim(n)} for n in adapter.graph_dims))
    import torch.fx.experimental._config as fx_config

    try:
        with torch.enable_grad(), _symbolic_ints(), _export_settings(model), \
                fx_config.patch(backed_size_oblivious=True):
            program = torch.export.export(core, args, dynamic_shapes=dynamic, strict=False)
            if any(node.target is torch.ops.higher_order.wrap_with_set_grad_enabled
                   for node in program.graph.nodes):
                # a no_grad region (GeoMFormer's graph code, emptied) does not serialise in
                # torch 2.13 ("wrap_with_set_grad_enabled is missing val field"): lower to
                # ATen, which inlines it
                program = program.run_decompositions({})
            return program
    finally:
        if saved_shortcut is not None:
            model.singleton_shortcut = saved_shortcut


def program_task(program: torch.export.ExportedProgram) -> Optional[str]:
    """The task the program computes, from its output keys (``energy``, ``score`` or
    ``vectors``); None if they name none. ``metadata.json`` can be edited, the program not."""
    spec = program.call_spec.out_spec
    keys = list(spec.context) if spec is not None and isinstance(spec.context, list) else []
    return next((task for task in ("energy", "score", "vectors") if task in keys), None)


def program_state_dict(program: torch.export.ExportedProgram) -> Dict[str, torch.Tensor]:
    """The program's weights under the model's own names (for ``weights_sha256``)."""
    return {k[len("model."):] if k.startswith("model.") else k: v for k, v in program.state_dict.items()}


# ----------------------------------------------------------------------------- running
class Pt2Module(nn.Module):
    """A loaded pt2 model file, called like the TorchScript module: ``module(*graph.inputs())``
    and ``module.forward_with_vectors(positions, velocities, charges, *rest)`` give the
    model's output dict (detached). Forces and stress are computed by autograd around the
    exported program (see the module docstring)."""

    def __init__(self, program: torch.export.ExportedProgram, metadata: dict, source: str = ""):
        super().__init__()
        self.program = program
        self.core = program.module()
        self.metadata = metadata
        self.source = source
        self.family = str(metadata.get("family"))
        # the program's own task: load() refuses a metadata.json that names another
        self.task = program_task(program) or str(metadata.get("task"))
        config = dict(metadata.get("config") or {})
        self.config = config
        self.adapter = adapter_for(self.family, config)
        # the architecture from the config: its graph code runs eagerly before the program, and
        # with the program's weights it runs the inputs the program was not exported for
        self._graph_model = _skeleton(self.family, config, str(metadata.get("builder") or ""))
        # the cutoff the neighbour lists are built with (the config's): load() refuses a
        # metadata.json whose cutoff says otherwise
        self.cutoff = getattr(self._graph_model, "cutoff", metadata.get("cutoff"))
        self._graph_model.load_state_dict(program_state_dict(program))
        self._graph_model.to(dtype=next(iter(program.state_dict.values())).dtype)
        self.compute_forces = bool(config.get("compute_forces", True))
        self.dtype = next(iter(program.state_dict.values())).dtype
        self._warned = False
        #: what runs the program: ``core``, or a compiled call (``get_md.runtime.compile_module``)
        self.runner: Optional[Callable[..., Any]] = None

    def state_dict(self, *args: Any, **kwargs: Any) -> Dict[str, torch.Tensor]:  # type: ignore[override]
        return program_state_dict(self.program)

    def train(self, mode: bool = True) -> Pt2Module:
        """Inference only: a program has no training mode (``eval()`` is accepted)."""
        if mode:
            raise ModelFileError(f"{self.source or 'pt2 model'}: a pt2 model file is for inference; "
                             "train the eager model (get_md.export.rescript rebuilds it from a file)")
        self.training = False
        self._graph_model.eval()
        return self

    def to(self, *args: Any, **kwargs: Any) -> Pt2Module:  # type: ignore[override]
        device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        if dtype is not None and dtype != self.dtype:
            own, asked = (str(d).replace("torch.", "") for d in (self.dtype, dtype))
            raise ModelFileError(f"{self.source or 'pt2 model'}: a pt2 model file runs in the dtype it was "
                                 f"exported in ({own}), not {asked} (float32 is the default of "
                                 f"get_md.runtime.load and the engines): load it with dtype='{own}' "
                                 f"(--dtype {own}), or export it again in {asked}")
        if device is not None:
            device = torch.device(device)
            current = next(iter(self.program.state_dict.values())).device
            if device != current:
                from torch.export.passes import move_to_device_pass

                self.program = move_to_device_pass(self.program, device)
                self.core = self.program.module()
                self.runner = None
                self._graph_model.to(device)
        return self

    def forward(self, positions: torch.Tensor, atomic_numbers: torch.Tensor, block_ids: torch.Tensor,
                atom_positions: torch.Tensor, block_types: torch.Tensor, segment_ids: torch.Tensor,
                batch_ids: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.forward_with_vectors(positions, torch.zeros_like(positions),
                                         torch.zeros(positions.shape[0], dtype=positions.dtype,
                                                     device=positions.device),
                                         atomic_numbers, block_ids, atom_positions, block_types, segment_ids,
                                         batch_ids, cell, pbc)

    def forward_with_vectors(self, positions, velocities, charges, atomic_numbers, block_ids, atom_positions,
                             block_types, segment_ids, batch_ids, cell, pbc) -> Dict[str, torch.Tensor]:
        graph = self.adapter.graph(self._graph_model, positions.detach(), block_ids, segment_ids, batch_ids,
                                   cell, pbc)
        if not self.fits(positions.shape[0], batch_ids.shape[0], graph):
            return self._eager(positions, velocities, charges, atomic_numbers, block_ids, atom_positions,
                               block_types, segment_ids, batch_ids, cell, pbc)
        n_graphs = cell.shape[0]
        strain = torch.zeros(n_graphs, 3, 3, dtype=positions.dtype, device=positions.device)
        rest = (velocities.to(positions.dtype), charges.to(positions.dtype), atomic_numbers, block_ids,
                atom_positions, block_types, segment_ids, batch_ids, cell)
        if not (self.task == "energy" and self.compute_forces):
            with torch.no_grad():
                return dict((self.runner or self.core)(positions, strain, *rest, graph))
        want_stress = bool(pbc.any())
        with torch.enable_grad():
            pos = positions.detach().requires_grad_(True)
            inputs = [pos]
            if want_stress:
                strain.requires_grad_(True)
                inputs.append(strain)
            out = dict((self.runner or self.core)(pos, strain, *rest, graph))
            grads = torch.autograd.grad([out["energy"].sum()], inputs, allow_unused=True)
        result = {k: v.detach() for k, v in out.items()}
        result["forces"] = -grads[0] if grads[0] is not None else torch.zeros_like(positions)
        if want_stress:
            g1 = grads[1] if grads[1] is not None else torch.zeros_like(strain)
            volume = torch.abs(torch.linalg.det(cell.detach())).clamp(min=1e-12)
            result["stress"] = g1.detach() / volume.view(-1, 1, 1)
        return result


    def fits(self, n_atoms: int, n_blocks: int, graph: Graph) -> bool:
        """Whether the program takes these sizes: 2 or more atoms, at least one pair, and blocks
        of one atom each (potentials, vectors) or not all of one atom (score models)."""
        return (n_atoms >= 2 and all(t.shape[0] > 0 for t in graph)
                and (n_blocks == n_atoms) == self.adapter.atom_blocks)

    def _eager(self, *inputs: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The model run eagerly (the file's weights in the architecture of its config)."""
        if not self._warned:
            self._warned = True
            warnings.warn(f"{self.source or 'pt2 model'}: input outside the exported program's shapes "
                          "(fewer than 2 atoms, no atom pair, or another block layout); running the model eagerly",
                          stacklevel=3)
        out = self._graph_model.forward_with_vectors(*inputs)
        return {k: v.detach() for k, v in out.items()}


# ----------------------------------------------------------------------------- files
def save_program(model: nn.Module, path: Path, meta: dict, write: Callable[[Path], Any]) -> dict:
    """Export ``model`` and write it with ``meta`` (``format``, ``weights_sha256`` added);
    ``write`` gives the temporary path to write to (``get_md.atomic.atomic_path``)."""
    from get_md.export import METADATA_NAME, weights_sha256

    program = export_program(model)
    meta["format"] = FORMAT
    meta["weights_sha256"] = weights_sha256(program_state_dict(program))
    text = json.dumps(meta, indent=2, sort_keys=False)
    with write(path) as tmp:
        torch.export.save(program, str(tmp), extra_files={METADATA_NAME: text})
    return meta


def load_program(path: Path, meta: dict, device: Any = "cpu") -> Pt2Module:
    """A :class:`Pt2Module` from a pt2 model file (digest checked by the caller)."""
    try:
        program = torch.export.load(str(path))
    except Exception as e:  # damaged archives raise several kinds of errors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"{path}: cannot load pt2 (torch.export) model ({first})") from e
    try:
        module = Pt2Module(program, meta, str(path))
    except ModelFileError as e:
        raise ModelFileError(f"{path}: {e}") from e
    except (ValueError, TypeError, KeyError, RuntimeError) as e:  # the model of family + config
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()] or [type(e).__name__]
        first = " ".join(lines[:2] if lines[0].endswith(":") else lines[:1])[:240]  # load_state_dict: 2 lines
        raise ModelFileError(f"{path}: metadata.json family {meta.get('family')!r} and config do not build the "
                             f"model the program was exported from ({first}); the file was edited or not "
                             "written by get_md") from e
    return module.to(device)

