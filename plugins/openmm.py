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

The backends live in :mod:`get_md.plugins.openmm_torchforce` and
:mod:`get_md.plugins.openmm_pythonforce` (one file each, as in openmm-ml); their
names are importable from here too. ``openmm`` and ``openmmtorch`` are imported only
when a force is built.

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

from dataclasses import replace
from typing import Any, Iterable, Optional, Tuple, Union

import numpy as np
import torch
from get_md.plugins._common import total_charge
from get_md.plugins.openmm_pythonforce import GraphPotential, pythonforce
from get_md.plugins.openmm_torchforce import (
    have_openmmtorch,
    torchforce,
    torchforce_copies,
    torchforce_module,
)

from get_md import runtime
from get_md.errors import PluginError
from get_md.graph import MolecularGraph
from get_md.runtime import LoadedModel, ModelSpec

__all__ = [
    "BACKENDS",
    "GraphPotential",
    "GETPotentialImpl",
    "GETPotentialImplFactory",
    "GeoMFormerPotentialImplFactory",
    "add_force",
    "create_force",
    "have_openmmtorch",
    "torchforce_copies",
    "torchforce_module",
]

BACKENDS = ("auto", "torchforce", "pythonforce")
BLOCK_MODES = ("atoms", "residues")


# ------------------------------------------------------------------------ system atoms
def _system_atoms(topology_or_atomic_numbers) -> Tuple[Optional[Any], np.ndarray]:
    """(topology or None, atomic number per particle; 0 where a particle has no element)."""
    if hasattr(topology_or_atomic_numbers, "atoms") and hasattr(topology_or_atomic_numbers, "getNumAtoms"):
        top = topology_or_atomic_numbers
        z = np.array([0 if a.element is None else int(a.element.atomic_number) for a in top.atoms()],
                     dtype=np.int64)
        return top, z
    given = topology_or_atomic_numbers
    hint = {"PDBFile": " (pass pdb.topology)", "PDBxFile": " (pass pdbx.topology)",
            "Modeller": " (pass modeller.topology)", "Atoms": " (pass atoms.numbers)"}.get(type(given).__name__, "")
    try:
        values = np.asarray(given, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        if not hint and isinstance(given, (list, tuple)) and any(isinstance(v, str) for v in given):
            hint = " (element symbols? give atomic numbers, e.g. app.Element.getBySymbol('C').atomic_number)"
        raise TypeError(
            "topology_or_atomic_numbers must be an openmm.app.Topology or a sequence of atomic "
            f"numbers, got {type(given).__name__}{hint}"
        ) from e
    if given is None or hint:
        raise TypeError("topology_or_atomic_numbers must be an openmm.app.Topology or a sequence of atomic "
                        f"numbers, got {type(given).__name__}{hint}")
    bad = np.flatnonzero(values != np.round(values))
    if bad.size:
        raise PluginError(f"create_force: atomic number of particle {int(bad[0])} is {values[bad[0]]:g}, "
                          "not a whole number")
    return None, values.astype(np.int64)


def _subset(atoms: Optional[Iterable[int]], n_total: int) -> Optional[np.ndarray]:
    if atoms is None:
        return None
    given = np.asarray(list(atoms))
    if given.size == 0:
        raise PluginError("create_force: atoms= selects no atoms")
    if given.dtype == bool:
        raise PluginError(f"create_force: atoms= is a mask of {given.size} booleans; give the particle "
                          "indices (numpy.flatnonzero(mask))")
    if given.ndim != 1:
        raise PluginError(f"create_force: atoms= must be a flat list of particle indices, got an array "
                          f"of shape {given.shape}")
    if given.dtype.kind not in "iuf":
        raise PluginError(f"create_force: atoms= must hold particle indices (whole numbers), got {given[0]!r}")
    fractional = np.flatnonzero(given != np.round(given))
    if fractional.size:
        raise PluginError(f"create_force: atoms= must hold whole particle indices, got {given[fractional[0]]:g}")
    idx = given.astype(np.int64)
    if idx.min() < 0 or idx.max() >= n_total:
        raise PluginError(f"create_force: atoms= has indices outside 0..{n_total - 1}")
    if np.unique(idx).size != idx.size:
        raise PluginError("create_force: atoms= lists an atom more than once")
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
        raise PluginError(
            f"create_force: {_describe_atom(topology, i)} has no element (virtual site or extra "
            "particle); pass atoms= with the real atoms the model should see"
        )
    lm.check_elements(z.tolist(), "create_force")
    if blocks not in BLOCK_MODES:
        raise PluginError(f"create_force: blocks must be one of {BLOCK_MODES}, got {blocks!r}")
    if blocks == "atoms":
        g = MolecularGraph.from_atoms(torch.zeros(z.size, 3, dtype=torch.float64), torch.as_tensor(z),
                                      name="openmm system")
    else:
        if topology is None:
            raise PluginError("create_force: blocks='residues' needs a Topology, not atomic numbers")
        from get_md.build import from_openmm

        # distinct placeholder coordinates; only the integer tensors are kept
        dummy = np.arange(z_all.size * 3, dtype=np.float64).reshape(-1, 3)
        g = from_openmm(topology, dummy, box_vectors=None, atom_indices=idx.tolist(),
                        check_duplicates=False, name="openmm topology")
        g = replace(g, cell=torch.zeros(1, 3, 3, dtype=g.positions.dtype),
                    pbc=torch.zeros(1, 3, dtype=torch.bool))
    return g.to(device=lm.device, dtype=lm.dtype)



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
    try:
        import openmm  # noqa: F401 - the backends import it again where they need it
    except ImportError as e:
        raise ImportError(f"create_force needs OpenMM ({e}); install it with "
                          "'pip install get-md[openmm]' or from conda-forge") from e
    if backend not in BACKENDS:
        raise PluginError(f"create_force: backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(forceGroup, bool) or not isinstance(forceGroup, (int, np.integer)) or not 0 <= forceGroup <= 31:
        raise PluginError(f"create_force: forceGroup must be a whole number from 0 to 31 (OpenMM's force "
                          f"groups), got {forceGroup!r}")
    charge = total_charge(charge, "create_force")
    lm = runtime.load(model, device, dtype, who="create_force")
    if lm.task != "energy":
        raise PluginError(f"create_force: model {lm.source} has task {lm.task!r}; an OpenMM force "
                         "needs an energy (potential) model")
    topology, z_all = _system_atoms(topology_or_atomic_numbers)
    indices = _subset(atoms, z_all.size)
    graph = _graph_template(topology, z_all, indices, blocks, lm)
    if periodic is None:
        periodic = topology is not None and topology.getPeriodicBoxVectors() is not None
    elif not isinstance(periodic, (bool, np.bool_)):  # periodic="no" would have meant True
        raise PluginError(f"create_force: periodic must be True, False or None (the topology's box), got {periodic!r}")
    periodic = bool(periodic)
    if backend == "auto":
        backend = "torchforce" if torchforce_copies() else "pythonforce"
    if backend == "torchforce":
        force = torchforce(lm, graph, indices, z_all.size, periodic, charge, plain_executor)
    else:
        force = pythonforce(lm, graph, indices, periodic, charge)
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
    if not hasattr(system, "getNumParticles"):
        raise TypeError(f"add_force: system must be an openmm.System, got {type(system).__name__}")
    topology, z_all = _system_atoms(topology_or_atomic_numbers)
    if z_all.size != system.getNumParticles():
        raise PluginError(
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

                raise PluginError(
                    f"MLPotential({family!r}): no shipped {family} potential (shipped models: "
                    f"{', '.join(sorted(zoo.available())) or 'none'}); pass "
                    "modelPath='path/to/model.pt' (a file written by get_md.export.save)")
        source = model if model is not None else found[0]
        # loaded once on the CPU in the file's precision; create_force copies as asked
        self.potential = runtime.load(source, "cpu", defaults.get("dtype") or _precision_dtype(
            defaults.get("precision")), who=f"MLPotential({name!r})")
        if self.potential.family not in (family, "unknown"):
            raise PluginError(
                f"MLPotential({name!r}): {self.potential.source} is a {self.potential.family} model; "
                f"use MLPotential({self.potential.family!r}, modelPath=...)"
            )
        if self.potential.task != "energy":
            raise PluginError(f"MLPotential({name!r}): {self.potential.source} is a "
                             f"{self.potential.task} model, not a potential")

    def addForces(self, topology, system, atoms: Optional[Iterable[int]], forceGroup: int, **args) -> None:
        opts = dict(self.defaults)
        opts.update({k: v for k, v in args.items() if v is not None})
        dtype = opts.get("dtype") or _precision_dtype(opts.get("precision"))
        device = opts.get("device") or "cpu"
        # openmm-ml's interpolation passes an empty System to collect the forces in (its
        # sizes are checked in createMixedSystem)
        if system.getNumParticles():
            self._check_sizes(topology, system, " (openmm-ml's link atoms included)")
        force = create_force(
            self.potential, topology, atoms=None if atoms is None else list(atoms),
            periodic=topology.getPeriodicBoxVectors() is not None,
            backend=opts.get("backend", "auto"), device=device, dtype=dtype,
            forceGroup=forceGroup, charge=opts.get("charge", 0.0),
            blocks=opts.get("blocks", "atoms"),
        )
        system.addForce(force)

    def getMLLongRange(self) -> bool:
        """get_md potentials are local (radius graph with a smooth cutoff)."""
        return False

    def getSupportedEmbeddings(self) -> list:
        """openmm-ml's own embeddings (``mechanical``), run through :meth:`createMixedSystem`
        for its size check."""
        return sorted(_embedding_factories())

    def createMixedSystem(self, topology, system, atoms, forceGroup, interpolate, embedding,
                          returnInfo=False, **args):
        """openmm-ml's embedding ``embedding``, once ``system`` is known to hold the topology's
        particles: with ``interpolate=True`` openmm-ml hands :meth:`addForces` an empty System,
        and a System of other particles had been built without a word (link atoms and the
        modelled atoms taken from the wrong particles)."""
        self._check_sizes(topology, system, "")
        factory = _embedding_factories().get(embedding)
        if factory is None:
            raise NotImplementedError(f"MLPotential({self.name!r}) has no embedding {embedding!r} of its own; "
                                      "use embedding='mechanical'")
        return factory.createEmbedding(embedding).createMixedSystem(
            self, topology, system, atoms, forceGroup, interpolate, returnInfo=returnInfo, **args)

    def _check_sizes(self, topology, system, note: str) -> None:
        """PluginError naming both sizes if ``system`` has other particles than ``topology`` atoms."""
        n_system, n_topology = system.getNumParticles(), topology.getNumAtoms()
        if n_system != n_topology:
            raise PluginError(
                f"MLPotential({self.name!r}): the System has {n_system} particles but its topology "
                f"{n_topology} atoms{note}; build the System from the topology you pass (after "
                "Modeller.addSolvent or addHydrogens, pass modeller.topology)")


def _embedding_factories() -> dict:
    """openmm-ml's registered embeddings (name -> factory); empty without openmm-ml."""
    try:
        from openmmml.mlpotential import MLPotential
    except ImportError:
        return {}
    return dict(getattr(MLPotential, "_embeddingFactories", {}))


def _precision_dtype(precision: Optional[str]) -> torch.dtype:
    """openmm-ml's ``precision`` ("single", "mixed", "double"; None: single) as a dtype."""
    try:
        dtype = runtime.parse_dtype(precision)
    except ValueError:
        dtype = None
    if dtype not in (torch.float32, torch.float64):
        raise PluginError(f"precision must be 'single' or 'double', got {precision!r}")
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
