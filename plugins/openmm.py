"""OpenMM forces from get_md models, and openmm-ml potentials ``get`` / ``geomformer``.

:func:`create_force` returns an ``openmm.Force`` that adds a get_md energy model to a
System:

* ``backend="torchforce"``: an ``openmmtorch.TorchForce`` on a scripted wrapper module
  (positions [N, 3] nm and, for periodic systems, box vectors [3, 3] nm in; energy
  kJ/mol and forces kJ/mol/nm out, ``setOutputsForces(True)``). Runs inside OpenMM's
  own C++ loop; needs the openmm-torch plugin built for the installed torch.
* ``backend="pythonforce"``: an ``openmm.PythonForce`` (OpenMM >= 8.6) whose callback
  runs the model in Python. Works with any torch; the callback is picklable, so the
  System can be serialised and deep-copied.
* ``backend="auto"`` (default): TorchForce when ``import openmmtorch`` works and a
  System holding a TorchForce survives a copy (:func:`torchforce_copies`), otherwise
  PythonForce. (PyPI's openmmtorch 1.5 with OpenMM 8.6.1 segfaults when a TorchForce
  is cloned or deserialised, which ``copy.deepcopy``, ``XmlSerializer.deserialize``
  and openmm-ml's ``createMixedSystem`` do.)

Units are converted at the boundary: positions and box nm -> Å (x 10), energy
eV -> kJ/mol (x 96.48533212331), forces eV/Å -> kJ/mol/nm (x 964.8533212331).
``atoms=`` applies the model to a subset only (ML/MM): just those atoms go to the
model and their forces come back to them. The graph's element / block tensors are
built once, when the force is created.

openmm-ml: get_md registers ``get`` and ``geomformer`` in the ``openmmml.potentials``
entry-point group, so with openmm-ml installed::

    from openmmml import MLPotential
    potential = MLPotential("get", modelPath="potential.pt")
    system = potential.createSystem(topology, precision="double")
    mixed = potential.createMixedSystem(topology, mm_system, ligand_atoms)

Example:
    >>> import openmm
    >>> from get_md.plugins.openmm import add_force
    >>> system = openmm.System()                                     # doctest: +SKIP
    >>> force = add_force(system, "potential.pt", pdb.topology)      # doctest: +SKIP
"""

from __future__ import annotations

import copy
import functools
import io
import logging
import subprocess
import sys
from dataclasses import replace
from typing import Any, Dict, Iterable, Optional, Tuple, Union

import numpy as np
import torch
from get_md.plugins._common import model_positions

from get_md import runtime
from get_md.graph import MolecularGraph
from get_md.runtime import LoadedModel, ModelSpec, atom_charges
from get_md.units import EV_PER_A_TO_KJ_PER_MOL_NM, EV_TO_KJ_PER_MOL, NM_TO_ANGSTROM

__all__ = [
    "BACKENDS",
    "GETPotentialImpl",
    "GETPotentialImplFactory",
    "GeoMFormerPotentialImplFactory",
    "add_force",
    "create_force",
    "have_openmmtorch",
    "torchforce_copies",
    "torchforce_module",
]

log = logging.getLogger("get_md.plugins.openmm")

BACKENDS = ("auto", "torchforce", "pythonforce")
BLOCK_MODES = ("atoms", "residues")


def have_openmmtorch() -> bool:
    """Whether ``openmmtorch`` imports (TorchForce backend available)."""
    try:
        import openmmtorch  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or OSError / RuntimeError from a mismatched build
        return False
    return True


_COPY_PROBE = """
import copy, torch, openmm, openmmtorch
class M(torch.nn.Module):
    def forward(self, positions):
        return (positions ** 2).sum()
system = openmm.System()
system.addParticle(1.0)
system.addForce(openmmtorch.TorchForce(torch.jit.script(M())))
copy.deepcopy(system)
openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
"""


@functools.lru_cache(maxsize=1)
def torchforce_copies() -> bool:
    """Whether a System with a TorchForce can be deep-copied and deserialised here.

    Probed once per process in a subprocess (a failing build segfaults, which would
    kill the caller): PyPI's openmmtorch 1.5 wheel with OpenMM 8.6.1 crashes there.
    False when openmmtorch does not import.
    """
    if not have_openmmtorch():
        return False
    try:
        proc = subprocess.run([sys.executable, "-c", _COPY_PROBE], capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError):
        return False
    if proc.returncode != 0:
        log.warning("openmmtorch is installed but a System with a TorchForce cannot be copied or "
                    "deserialised here (probe exit code %d); backend='auto' uses PythonForce",
                    proc.returncode)
    return proc.returncode == 0


# ------------------------------------------------------------------------ system atoms
def _system_atoms(topology_or_atomic_numbers) -> Tuple[Optional[Any], np.ndarray]:
    """(topology or None, atomic number per particle; 0 where a particle has no element)."""
    if hasattr(topology_or_atomic_numbers, "atoms") and hasattr(topology_or_atomic_numbers, "getNumAtoms"):
        top = topology_or_atomic_numbers
        z = np.array([0 if a.element is None else int(a.element.atomic_number) for a in top.atoms()],
                     dtype=np.int64)
        return top, z
    try:
        z = np.asarray(topology_or_atomic_numbers, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise TypeError(
            "topology_or_atomic_numbers must be an openmm.app.Topology or a sequence of atomic "
            f"numbers, got {type(topology_or_atomic_numbers).__name__}"
        ) from e
    return None, z


def _subset(atoms: Optional[Iterable[int]], n_total: int) -> Optional[np.ndarray]:
    if atoms is None:
        return None
    idx = np.asarray(list(atoms), dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("create_force: atoms= selects no atoms")
    if idx.min() < 0 or idx.max() >= n_total:
        raise ValueError(f"create_force: atoms= has indices outside 0..{n_total - 1}")
    if np.unique(idx).size != idx.size:
        raise ValueError("create_force: atoms= lists an atom more than once")
    return np.sort(idx)


def _describe_atom(topology, i: int) -> str:
    if topology is None:
        return f"particle {i}"
    a = list(topology.atoms())[i]
    return f"atom {i} ({a.name} of {a.residue.name}{a.residue.id})"


def _graph_template(
    topology, z_all: np.ndarray, indices: Optional[np.ndarray], blocks: str, lm: LoadedModel,
) -> MolecularGraph:
    """Graph tensors of the modelled atoms (positions are placeholders)."""
    idx = np.arange(z_all.size) if indices is None else indices
    z = z_all[idx]
    missing = np.flatnonzero(z <= 0)
    if missing.size:
        i = int(idx[missing[0]])
        raise ValueError(
            f"create_force: {_describe_atom(topology, i)} has no element (virtual site or extra "
            "particle); pass atoms= with the real atoms the model should see"
        )
    lm.check_elements(z.tolist(), "create_force")
    if blocks not in BLOCK_MODES:
        raise ValueError(f"create_force: blocks must be one of {BLOCK_MODES}, got {blocks!r}")
    if blocks == "atoms":
        g = MolecularGraph.from_atoms(torch.zeros(z.size, 3, dtype=torch.float64), torch.as_tensor(z),
                                      name="openmm system")
    else:
        if topology is None:
            raise ValueError("create_force: blocks='residues' needs a Topology, not atomic numbers")
        from get_md.build import from_openmm

        # distinct placeholder coordinates; only the integer tensors are kept
        dummy = np.arange(z_all.size * 3, dtype=np.float64).reshape(-1, 3)
        g = from_openmm(topology, dummy, box_vectors=None, atom_indices=idx.tolist(),
                        check_duplicates=False, name="openmm topology")
        g = replace(g, cell=torch.zeros(1, 3, 3, dtype=g.positions.dtype),
                    pbc=torch.zeros(1, 3, dtype=torch.bool))
    return g.to(device=lm.device, dtype=lm.dtype)


# ------------------------------------------------------------------ PythonForce backend
def _pack_module(module: torch.nn.Module):
    if isinstance(module, torch.jit.ScriptModule):
        buf = io.BytesIO()
        torch.jit.save(module, buf)
        return ("torchscript", buf.getvalue())
    ref = next(module.parameters(), None)
    if ref is not None and ref.device.type != "cpu":
        module = copy.deepcopy(module).to("cpu")
    return ("eager", module)


def _unpack_module(packed, device: torch.device) -> torch.nn.Module:
    kind, payload = packed
    if kind == "torchscript":
        module = torch.jit.load(io.BytesIO(payload), map_location=device)
    else:
        module = payload.to(device)
    module.eval()
    return module


class GraphPotential:
    """The PythonForce callback: ``state -> (energy kJ/mol, forces [n, 3] kJ/mol/nm)``.

    Holds the model and the precomputed graph tensors of the modelled atoms. With a
    particle subset (``PythonForce.setParticles``) OpenMM passes only those positions.
    Picklable (the model travels as TorchScript bytes or a pickled module), so Systems
    holding the force can be deep-copied and serialised.

    Example:
        >>> e_kj, f_kj = potential.evaluate(positions_nm, box_nm)  # doctest: +SKIP
    """

    def __init__(self, potential: LoadedModel, graph: MolecularGraph, periodic: bool,
                 total_charge: float = 0.0):
        self.potential = potential
        self.periodic = bool(periodic)
        self.total_charge = float(total_charge)
        self._setup(graph)

    def _setup(self, graph: MolecularGraph) -> None:
        lm = self.potential
        self.graph = graph
        self.n_atoms = graph.num_atoms
        self._static = graph.inputs()[1:7]
        self._pbc = torch.full((1, 3), self.periodic, dtype=torch.bool, device=lm.device)
        self._zero_cell = torch.zeros(1, 3, 3, dtype=lm.dtype, device=lm.device)
        self._charges = None
        if lm.needs_charge:
            self._charges = atom_charges([self.total_charge], [self.n_atoms], lm.device, lm.dtype)

    def evaluate(self, positions_nm, box_nm=None) -> Tuple[float, np.ndarray]:
        """Energy (kJ/mol) and forces ([n, 3], kJ/mol/nm) for positions (and box) in nm."""
        lm = self.potential
        x = np.asarray(positions_nm, dtype=np.float64)
        if x.shape != (self.n_atoms, 3):
            raise ValueError(f"get_md force: got positions of shape {x.shape}, expected ({self.n_atoms}, 3)")
        # centred in float64 before the cast (see model_positions)
        pos = model_positions(x * NM_TO_ANGSTROM, lm.device, lm.dtype, "get_md force")
        cell = self._zero_cell
        if self.periodic:
            if box_nm is None:
                raise ValueError("get_md force: periodic force evaluated without box vectors")
            b = np.asarray(box_nm, dtype=np.float64).reshape(1, 3, 3) * NM_TO_ANGSTROM
            cell = torch.as_tensor(b, device=lm.device).to(lm.dtype)
        out = lm.run((pos, *self._static, cell, self._pbc), self._charges)
        # float64 sum of the per-atom energies (a float32 model's total rounds coarsely)
        energy = float(out["energies"].detach().to("cpu", torch.float64).sum()) * EV_TO_KJ_PER_MOL
        forces = out["forces"].detach().to("cpu", torch.float64).numpy() * EV_PER_A_TO_KJ_PER_MOL_NM
        return energy, forces

    def __call__(self, state):
        from openmm import unit

        pos = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        box = None
        if self.periodic:
            box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
        return self.evaluate(pos, box)

    def __getstate__(self):
        lm = self.potential
        return {
            "module": _pack_module(lm.module),
            "potential": replace(lm, module=None, device=torch.device("cpu")),  # type: ignore[arg-type]
            "device": str(lm.device),
            "graph": self.graph.to(device="cpu"),
            "periodic": self.periodic,
            "total_charge": self.total_charge,
        }

    def __setstate__(self, state):
        device = torch.device(state["device"])
        if device.type == "cuda" and not torch.cuda.is_available():
            log.warning("get_md force was saved on %s; CUDA is not available, using the CPU", device)
            device = torch.device("cpu")
        module = _unpack_module(state["module"], device)
        self.potential = replace(state["potential"], module=module, device=device)
        self.periodic = state["periodic"]
        self.total_charge = state["total_charge"]
        self._setup(state["graph"].to(device=device))


# ------------------------------------------------------------------- TorchForce backend
class _TorchForceWrapper(torch.nn.Module):
    """positions [N_total, 3] nm (+ box [3, 3] nm) -> (energy kJ/mol, forces [N_total, 3] kJ/mol/nm)."""

    def __init__(self, model: torch.nn.Module, graph: MolecularGraph, indices: Optional[torch.Tensor],
                 n_total: int, periodic: bool, charges: Optional[torch.Tensor]):
        super().__init__()
        dtype = graph.positions.dtype
        device = graph.positions.device
        self.model = model
        self.register_buffer("atomic_numbers", graph.atomic_numbers.clone())
        self.register_buffer("block_ids", graph.block_ids.clone())
        self.register_buffer("atom_positions", graph.atom_positions.clone())
        self.register_buffer("block_types", graph.block_types.clone())
        self.register_buffer("segment_ids", graph.segment_ids.clone())
        self.register_buffer("batch_ids", graph.batch_ids.clone())
        self.register_buffer("pbc", torch.full((1, 3), bool(periodic), dtype=torch.bool, device=device))
        self.register_buffer("zero_cell", torch.zeros(1, 3, 3, dtype=dtype, device=device))
        self.use_subset = indices is not None
        self.register_buffer(
            "indices",
            indices.to(device) if indices is not None else torch.zeros(0, dtype=torch.long, device=device),
        )
        self.register_buffer(
            "charges", charges if charges is not None else torch.zeros(0, dtype=dtype, device=device)
        )
        self.n_total = int(n_total)
        self.length_scale = NM_TO_ANGSTROM
        self.energy_scale = EV_TO_KJ_PER_MOL
        self.force_scale = EV_PER_A_TO_KJ_PER_MOL_NM

    def _outputs(self, pos: torch.Tensor, cell: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.model(pos, self.atomic_numbers, self.block_ids, self.atom_positions, self.block_types,
                          self.segment_ids, self.batch_ids, cell, self.pbc)

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        dtype = self.zero_cell.dtype
        pos = positions
        if self.use_subset:
            pos = pos.index_select(0, self.indices)
        pos = pos.detach()
        # centred in OpenMM's precision before the cast (see _common.model_positions)
        pos = (pos - pos.mean(dim=0)).to(dtype) * self.length_scale
        cell = self.zero_cell
        if boxvectors is not None:
            cell = (boxvectors.detach().to(dtype) * self.length_scale).reshape(1, 3, 3)
        out = self._outputs(pos, cell)
        # float64 sum of the per-atom energies (a float32 model's total rounds coarsely)
        energy = out["energies"].detach().to(torch.float64).sum() * self.energy_scale
        forces = out["forces"].detach() * self.force_scale
        if self.use_subset:
            full = torch.zeros(self.n_total, 3, dtype=forces.dtype, device=forces.device)
            forces = full.index_copy(0, self.indices, forces)
        return energy.to(torch.float64), forces.to(positions.dtype)


class _ChargedTorchForceWrapper(_TorchForceWrapper):
    """As :class:`_TorchForceWrapper`, for models that read the total charge."""

    def _outputs(self, pos: torch.Tensor, cell: torch.Tensor) -> Dict[str, torch.Tensor]:
        return self.model.forward_with_vectors(
            pos, torch.zeros_like(pos), self.charges, self.atomic_numbers, self.block_ids,
            self.atom_positions, self.block_types, self.segment_ids, self.batch_ids, cell, self.pbc)


def torchforce_module(
    potential: LoadedModel, graph: MolecularGraph, indices: Optional[np.ndarray], n_total: int,
    periodic: bool, total_charge: float = 0.0,
) -> torch.jit.ScriptModule:
    """The scripted module handed to ``openmmtorch.TorchForce`` (usable without openmmtorch).

    ``module(positions_nm[, box_nm]) -> (energy kJ/mol, forces [n_total, 3] kJ/mol/nm)``.
    """
    idx = None if indices is None else torch.as_tensor(indices, dtype=torch.long, device=potential.device)
    charges = None
    cls = _TorchForceWrapper
    if potential.needs_charge:
        charges = atom_charges([total_charge], [graph.num_atoms], potential.device, potential.dtype)
        cls = _ChargedTorchForceWrapper
    wrapper = cls(potential.module, graph, idx, n_total, periodic, charges)
    module = torch.jit.script(wrapper.eval())
    _inline_calls(module.graph)
    return module


def _inline_calls(graph) -> None:
    """Inline every method and function call into ``graph``, in place.

    TorchForce runs a copy of the module whose submodule types lack their methods;
    TorchScript's plain executor does not inline, and then failed with "Couldn't find
    method: 'forward' on class GET". One inlining pass inlines a single level where the
    callees' graphs were cached uninlined (after plain-executor calls), so it repeats
    until no call is left.
    """
    for _ in range(1000):
        if not (graph.findAllNodes("prim::CallMethod") or graph.findAllNodes("prim::CallFunction")):
            return
        torch._C._jit_pass_inline(graph)
    raise RuntimeError("torchforce_module: TorchScript calls left after inlining 1000 levels")


# --------------------------------------------------------------------------- builders
def create_force(
    model: ModelSpec,
    topology_or_atomic_numbers,
    atoms: Optional[Iterable[int]] = None,
    periodic: Optional[bool] = None,
    backend: str = "auto",
    device: Union[str, torch.device] = "cpu",
    dtype: Union[str, torch.dtype] = torch.float32,
    forceGroup: int = 0,
    *,
    charge: float = 0.0,
    blocks: str = "atoms",
    plain_executor: bool = True,
):
    """An ``openmm.Force`` computing a get_md energy model.

    Args:
        model: shipped model name, model file path, in-memory module, or None for the
            shipped default potential.
        topology_or_atomic_numbers: ``openmm.app.Topology`` of the System, or the atomic
            number of every particle.
        atoms: indices of the particles the model acts on (ML/MM); None = all. Forces
            act on these particles only.
        periodic: use the periodic box; default: whether the topology has a box
            (atomic numbers: False).
        backend: "auto", "torchforce" or "pythonforce" (see module docstring).
        device: torch device of the model.
        dtype: model precision (float32 default; "float64" for energy conservation tests).
        forceGroup: OpenMM force group.
        charge: total charge of the modelled atoms (e), for models that read it.
        blocks: "atoms" (every atom its own block; how potentials are trained) or
            "residues" (the topology's residues as blocks, for residue-level models).
        plain_executor: TorchForce only: switch the calling thread, from which OpenMM's
            ``step`` runs the module, to TorchScript's plain executor
            (:func:`get_md.perf.use_plain_executor`; same results, a force call 1.35x
            faster on 1,000 atoms). It stays switched for that thread; False leaves
            torch's setting alone. PythonForce always calls the model with it.

    Returns:
        An ``openmmtorch.TorchForce`` or ``openmm.PythonForce`` (``name`` set to
        ``"get_md <family>"``).

    Raises:
        ValueError: bad subset, particles without element, unsupported elements, a model
            that is not an energy model, ``backend="torchforce"`` without openmmtorch.
    """
    import openmm

    if backend not in BACKENDS:
        raise ValueError(f"create_force: backend must be one of {BACKENDS}, got {backend!r}")
    lm = runtime.load(model, device, dtype, who="create_force")
    if lm.task != "energy":
        raise ValueError(f"create_force: model {lm.source} has task {lm.task!r}; an OpenMM force "
                         "needs an energy (potential) model")
    topology, z_all = _system_atoms(topology_or_atomic_numbers)
    indices = _subset(atoms, z_all.size)
    graph = _graph_template(topology, z_all, indices, blocks, lm)
    if periodic is None:
        periodic = topology is not None and topology.getPeriodicBoxVectors() is not None
    periodic = bool(periodic)
    if backend == "auto":
        backend = "torchforce" if torchforce_copies() else "pythonforce"
    if backend == "torchforce":
        try:
            import openmmtorch
        except Exception as e:  # noqa: BLE001
            raise ValueError(
                f"create_force: backend='torchforce' needs openmm-torch built for torch "
                f"{torch.__version__} (import openmmtorch failed: {e}); use backend='pythonforce'"
            ) from e
        module = torchforce_module(lm, graph, indices, z_all.size, periodic, charge)
        force = openmmtorch.TorchForce(module)
        if plain_executor:
            from get_md.perf import use_plain_executor

            if use_plain_executor():
                log.info("create_force: TorchScript's plain executor is on for this thread from now "
                         "on (get_md.perf.restore_executor(True) undoes it)")
        force.setOutputsForces(True)
        force.setUsesPeriodicBoundaryConditions(periodic)
    else:
        if not hasattr(openmm, "PythonForce"):
            raise ValueError(
                f"create_force: openmm {openmm.__version__} has no PythonForce (needs OpenMM >= 8.6); "
                "install openmm-torch for backend='torchforce' or upgrade OpenMM"
            )
        force = openmm.PythonForce(GraphPotential(lm, graph, periodic, charge))
        if indices is not None:
            force.setParticles([int(i) for i in indices])
        force.setUsesPeriodicBoundaryConditions(periodic)
    force.setForceGroup(int(forceGroup))
    force.setName(f"get_md {lm.family}")
    return force


def add_force(system, model: ModelSpec, topology_or_atomic_numbers, **kwargs):
    """Create a force with :func:`create_force` and add it to ``system``; returns the force.

    ``periodic`` defaults to the topology's box, or to ``system.usesPeriodicBoundaryConditions()``
    when atomic numbers are given. The particle count must match the System's.

    Example:
        >>> force = add_force(system, "potential.pt", topology, atoms=ligand_atoms)  # doctest: +SKIP
    """
    topology, z_all = _system_atoms(topology_or_atomic_numbers)
    if z_all.size != system.getNumParticles():
        raise ValueError(
            f"add_force: the System has {system.getNumParticles()} particles but the "
            f"{'topology' if topology is not None else 'atomic number list'} has {z_all.size}"
        )
    if kwargs.get("periodic") is None and topology is None:
        kwargs["periodic"] = bool(system.usesPeriodicBoundaryConditions())
    force = create_force(model, topology_or_atomic_numbers, **kwargs)
    system.addForce(force)
    return force


# ---------------------------------------------------------------------------- openmm-ml
class GETPotentialImpl:
    """openmm-ml ``MLPotentialImpl`` for get_md models (created by the factories below).

    Implements openmm-ml's ``MLPotentialImpl`` protocol (``addForces``,
    ``getSupportedEmbeddings``, ``getMLLongRange``, ``createMixedSystem``) without
    importing openmm-ml, whose own import loads this module through its entry points.

    ``addForces`` options (``createSystem`` / ``createMixedSystem`` keyword arguments):
    ``device`` ("cpu", "cuda", ...), ``precision`` ("single" / "double") or ``dtype``,
    ``backend`` ("auto", "torchforce", "pythonforce"), ``charge`` (total charge of the
    modelled atoms, for models that read it), ``blocks`` ("atoms" / "residues").
    """

    def __init__(self, name: str, model: ModelSpec, family: str, **defaults):
        self.name = name
        self.family = family
        self.defaults = defaults
        if model is None:  # a shipped potential of this family, the default one if it fits
            found = runtime.shipped_model(("energy",), family, others=True)
            if found is None:
                from get_md import zoo

                raise ValueError(
                    f"MLPotential({family!r}): no shipped {family} potential (shipped models: "
                    f"{', '.join(sorted(zoo.available())) or 'none'}); pass "
                    "modelPath='path/to/model.pt' (a file written by get_md.export.save)")
        source = model if model is not None else found[0]
        # loaded once on the CPU in the file's precision; create_force copies as asked
        self.potential = runtime.load(source, "cpu", defaults.get("dtype") or _precision_dtype(
            defaults.get("precision")), who=f"MLPotential({name!r})")
        if self.potential.family not in (family, "unknown"):
            raise ValueError(
                f"MLPotential({name!r}): {self.potential.source} is a {self.potential.family} model; "
                f"use MLPotential({self.potential.family!r}, modelPath=...)"
            )
        if self.potential.task != "energy":
            raise ValueError(f"MLPotential({name!r}): {self.potential.source} is a "
                             f"{self.potential.task} model, not a potential")

    def addForces(self, topology, system, atoms: Optional[Iterable[int]], forceGroup: int, **args) -> None:
        opts = dict(self.defaults)
        opts.update({k: v for k, v in args.items() if v is not None})
        dtype = opts.get("dtype") or _precision_dtype(opts.get("precision"))
        device = opts.get("device") or "cpu"
        force = create_force(
            self.potential, topology, atoms=None if atoms is None else list(atoms),
            periodic=topology.getPeriodicBoxVectors() is not None,
            backend=opts.get("backend", "auto"), device=device, dtype=dtype,
            forceGroup=forceGroup, charge=float(opts.get("charge", 0.0) or 0.0),
            blocks=opts.get("blocks", "atoms"),
        )
        system.addForce(force)

    def getMLLongRange(self) -> bool:
        """get_md potentials are local (radius graph with a smooth cutoff)."""
        return False

    def getSupportedEmbeddings(self) -> list:
        """No potential-specific embeddings: openmm-ml's generic ones (``mechanical``) apply."""
        return []

    def createMixedSystem(self, topology, system, atoms, forceGroup, interpolate, embedding,
                          returnInfo=False, **args):
        raise NotImplementedError(
            f"MLPotential({self.name!r}) has no embedding of its own; use embedding='mechanical'"
        )


def _precision_dtype(precision: Optional[str]) -> torch.dtype:
    """openmm-ml's ``precision`` ("single", "mixed", "double"; None: single) as a dtype."""
    try:
        dtype = runtime.parse_dtype(precision)
    except ValueError:
        dtype = None
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"precision must be 'single' or 'double', got {precision!r}")
    return dtype


class GETPotentialImplFactory:
    """openmm-ml factory for ``MLPotential("get", modelPath=...)``.

    ``createImpl(name, modelPath=None, **defaults)``: ``modelPath`` is a model file, a
    shipped model name or an in-memory module (also accepted as ``model=``); None picks
    a shipped GET potential. ``defaults`` are default ``addForces`` options.
    """

    family = "get"

    def createImpl(self, name: str, modelPath: ModelSpec = None, **args) -> GETPotentialImpl:
        model = modelPath if modelPath is not None else args.pop("model", None)
        return GETPotentialImpl(name, model, self.family, **args)


class GeoMFormerPotentialImplFactory(GETPotentialImplFactory):
    """openmm-ml factory for ``MLPotential("geomformer", modelPath=...)``."""

    family = "geomformer"
