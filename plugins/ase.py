"""ASE calculator for get_md models (GET, GeoMFormer).

:class:`GETCalculator` runs an exported get_md model (or one in memory) as an
``ase.calculators.calculator.Calculator``: energy, free energy (= energy), forces,
per-atom energies and, for periodic cells, stress; scoring models put ``score`` in
``results``. Units are ASE's: Å, eV, eV/Å, eV/Å^3.

The graph (element, block and segment tensors) is built once per set of atomic
numbers and reused while only positions (or the cell) change, so an optimisation
or MD run pays the model's cost and little else. :meth:`GETCalculator.calculate_batch`
evaluates many structures in one forward pass.

Example:
    >>> from ase.build import molecule
    >>> from get_md.plugins.ase import GETCalculator
    >>> atoms = molecule("CH3CH2OH")
    >>> atoms.calc = GETCalculator("potential.pt")        # doctest: +SKIP
    >>> atoms.get_potential_energy(), atoms.get_forces()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from dataclasses import replace
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress
from get_md.plugins._common import (
    IMAGES_HINT,
    cell_widths,
    check_cell,
    check_images,
    check_overlaps,
    model_positions,
    pack_module,
    total_charge,
    unpack_module,
)

from get_md import runtime
from get_md.errors import GraphError, PluginError
from get_md.graph import MolecularGraph, batch_graphs
from get_md.runtime import LoadedModel, ModelSpec

__all__ = ["GETCalculator", "GeoMFormerCalculator"]

log = logging.getLogger("get_md.plugins.ase")

ENERGY_PROPERTIES = ["energy", "free_energy", "forces", "stress", "energies"]
#: Graph templates kept per calculator (one per distinct set of atomic numbers).
_TEMPLATE_CACHE_SIZE = 64


class GETCalculator(Calculator):
    """ASE calculator running a get_md model.

    Args:
        model: a shipped model name (``get_md.zoo``), a model file written by
            ``get_md.export.save``, an in-memory ``nn.Module`` / ``ScriptModule``, or
            None for the shipped default potential. Family (GET or GeoMFormer) and
            task (energy or score) are read from the file or the module.
        device: torch device ("cpu", "cuda", ...).
        dtype: precision of weights and coordinates (float32 default; float64 for
            energy-conservation work).
        charge: total charge (e) used when ``atoms.info`` has no ``"charge"``; read only
            by models whose metadata says ``needs_charge``.
        graph_builder: optional ``f(atoms) -> MolecularGraph`` to choose blocks and
            segments (default: every atom its own block, as for small molecules:
            ``MolecularGraph.from_atoms``). Called once per set of atomic numbers.
        compile: run the model through ``torch.compile`` (pt2 files and in-memory models;
            a TorchScript file warns and runs as it is); None: the ``GET_MD_COMPILE``
            environment variable decides (see ``get_md.runtime.compile_module``).
        **kwargs: passed to ``ase.calculators.calculator.Calculator`` (``label``,
            ``directory``, ...).

    Threads may share one calculator: each property call (check, calculation and read of
    ``results``) holds the calculator's lock, so calls run one at a time and each gets its
    own structure's results. Positions are centred in float64 before the cast to
    ``dtype``, so a structure far from the origin loses no float32 precision.

    Results (``calc.results``):
        energy model: ``energy`` and ``free_energy`` (eV), ``forces`` [N, 3] (eV/Å),
        ``energies`` [N] (eV), ``stress`` Voigt [6] (eV/Å^3, ASE sign: (1/V) dE/dε)
        for cells periodic in all three directions. Score model: ``score``.

    Raises:
        get_md.GetMDError (a ValueError): no model given and no default shipped (the
            message says what to pass), a model file that does not load
            (``ModelFileError``), elements the model does not know, a periodic
            direction without a cell vector or a cell too small for the structure (an
            atom within 0.5 Å of a periodic image of another; checked with the first
            positions and when the cell narrows by more than 10 %) (``GraphError``), a model of another task
            (``PluginError``).
        ase.calculators.calculator.PropertyNotImplementedError: ``stress`` for a
            structure that is not periodic in all three directions; energy properties
            from a score model.

    Example:
        >>> from ase.optimize import BFGS
        >>> atoms.calc = GETCalculator("potential.pt", dtype="float64")  # doctest: +SKIP
        >>> BFGS(atoms).run(fmax=0.05)                                  # doctest: +SKIP
    """

    implemented_properties = list(ENERGY_PROPERTIES)
    default_parameters: dict = {}
    nolabel = True

    def __init__(
        self,
        model: ModelSpec = None,
        device: Union[str, torch.device] = "cpu",
        dtype: Union[str, torch.dtype] = torch.float32,
        *,
        charge: float = 0.0,
        graph_builder: Optional[Callable[..., MolecularGraph]] = None,
        compile: Optional[bool] = None,
        **kwargs,
    ):
        self.potential: LoadedModel = runtime.load(model, device, dtype, who=type(self).__name__,
                                                   compile=compile)
        task = self.potential.task
        if task == "score":
            self.implemented_properties = ["score"]
        elif task != "energy":
            raise PluginError(
                f"{type(self).__name__}: model {self.potential.source} has task {task!r}; "
                "an ASE calculator needs an energy (potential) or score model"
            )
        if graph_builder is not None and not callable(graph_builder):
            raise PluginError(f"{type(self).__name__}: graph_builder must be a function atoms -> MolecularGraph, "
                              f"got {type(graph_builder).__name__} {graph_builder!r:.60}")
        Calculator.__init__(self, **kwargs)
        self.default_charge = total_charge(charge, type(self).__name__)
        self.graph_builder = graph_builder
        self._templates: OrderedDict[bytes, _Template] = OrderedDict()
        self._warned_charge = False  # atoms.info["charge"] given to a model that does not read it
        #: held while the calculator's state (atoms, results, graph templates) is read or
        #: written, so threads sharing the calculator never see each other's results
        self._lock = threading.RLock()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_lock", None)
        # a TorchScript module does not pickle ("Tried to serialize object ... GET"): its bytes do
        lm = self.potential
        state["potential"] = replace(lm, module=None)
        state["_packed_module"] = pack_module(lm.module)
        return state

    def __setstate__(self, state: dict) -> None:
        packed = state.pop("_packed_module", None)
        self.__dict__.update(state)
        if packed is not None:
            self.potential = replace(self.potential, module=unpack_module(packed, self.potential.device))
        self._lock = threading.RLock()

    # ----------------------------------------------------------------- info
    @property
    def model(self) -> torch.nn.Module:
        """The underlying torch module."""
        return self.potential.module

    @property
    def metadata(self) -> dict:
        """The model's metadata (file metadata, or module attributes for in-memory models)."""
        return self.potential.metadata

    @property
    def family(self) -> str:
        return self.potential.family

    @property
    def task(self) -> str:
        return self.potential.task

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={self.potential.source!r}, family={self.family!r}, "
                f"task={self.task!r}, device={str(self.potential.device)!r}, "
                f"dtype={str(self.potential.dtype).replace('torch.', '')!r})")

    # ------------------------------------------------------------ templates
    def _template(self, atoms) -> _Template:
        numbers = np.asarray(atoms.numbers, dtype=np.int64)
        key = numbers.tobytes()
        tpl = self._templates.get(key)
        if tpl is None:
            tpl = _Template(self._build_graph(atoms, numbers))
            self._templates[key] = tpl
            while len(self._templates) > _TEMPLATE_CACHE_SIZE:
                self._templates.popitem(last=False)
        else:
            self._templates.move_to_end(key)
        return tpl

    def _build_graph(self, atoms, numbers: np.ndarray) -> MolecularGraph:
        who = f"{type(self).__name__}: ase.Atoms {atoms.get_chemical_formula()}"
        if len(numbers) == 0:
            raise GraphError(f"{who}: no atoms")
        self.potential.check_elements(numbers.tolist(), who)
        lm = self.potential
        if self.graph_builder is not None:
            g = self.graph_builder(atoms)
            if not isinstance(g, MolecularGraph) or g.num_graphs != 1 or g.num_atoms != len(numbers):
                raise PluginError(f"{who}: graph_builder must return a MolecularGraph of one structure "
                                 f"with {len(numbers)} atoms")
            if not np.array_equal(g.atomic_numbers.cpu().numpy(), numbers):
                raise PluginError(f"{who}: graph_builder changed the atom order or elements")
            g = g.to(device=lm.device, dtype=lm.dtype)
            if (lm.task == "energy" and lm.family == "get" and not hasattr(lm.module, "uses_segments")
                    and bool((g.segment_ids != 0).any())):
                log.warning("%s: model %s was written before models recorded whether they read segment "
                            "labels; a potential trained with every atom in segment 0 gives other energies "
                            "for the graph_builder's segments. Re-script it (get-md export OLD.pt NEW.pt) "
                            "to make it ignore them.", who, lm.source)
        else:
            g = MolecularGraph.from_atoms(
                torch.zeros(len(numbers), 3, dtype=lm.dtype, device=lm.device),
                torch.as_tensor(numbers, device=lm.device), name=who,
            )
        if lm.task == "score" and int(g.segment_ids.unique().numel()) < 2:
            raise PluginError(
                f"{who}: {lm.source} is a score model: it scores a ligand (segment 1) against a receptor "
                "(segment 0), and every atom here is in one segment, so its score would say nothing. Pass "
                "graph_builder=lambda a: get_md.build.from_ase(a, segment_ids=SEGMENTS) with one segment "
                "per atom, or rescore complexes with get_md.workflows.poses.rescore_poses"
            )
        return g

    def _graph(self, atoms) -> tuple[MolecularGraph, bool]:
        """Graph of ``atoms`` at its current positions and cell; and whether fully periodic."""
        lm = self.potential
        tpl = self._template(atoms)
        cell, pbc = tpl.cell_tensors(atoms, lm.device, lm.dtype, type(self).__name__)
        # centred in float64 before the cast to the model's dtype (see model_positions)
        pos = model_positions(atoms.positions, lm.device, lm.dtype, type(self).__name__)
        check_overlaps(atoms.positions, atoms.numbers, f"{type(self).__name__}: ase.Atoms "
                                                       f"{atoms.get_chemical_formula()}")
        return replace(tpl.graph, positions=pos, cell=cell, pbc=pbc), bool(np.all(atoms.pbc))

    def _total_charge(self, atoms) -> float:
        if "charge" not in atoms.info:
            return self.default_charge
        return total_charge(atoms.info["charge"], type(self).__name__, "atoms.info['charge']")

    # ------------------------------------------------------------ evaluation
    def _evaluate(self, atoms_list: Sequence) -> list[dict]:
        graphs, periodic = zip(*(self._graph(a) for a in atoms_list), strict=True)
        g = graphs[0] if len(graphs) == 1 else batch_graphs(list(graphs))
        counts = [len(a) for a in atoms_list]
        totals = [self._total_charge(a) for a in atoms_list] if self.potential.needs_charge else None
        if totals is None and not self._warned_charge and any(a.info.get("charge") for a in atoms_list):
            log.warning("%s: atoms.info['charge'] = %r is ignored: model %s does not read a total charge "
                        "(trained on neutral and charged structures alike, or on neutral ones only)",
                        type(self).__name__, next(a.info["charge"] for a in atoms_list if a.info.get("charge")),
                        self.potential.source)
            self._warned_charge = True
        out = self.potential.run_graph(g, totals)
        return _split_results(out, counts, periodic, self.task)

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        """Compute every property the model gives for ``atoms`` (ASE's calculator protocol)."""
        if properties is not None and "stress" in properties and self.task == "energy":
            # asked for by name: ASE's get_properties(["stress"]) comes here, not through get_property
            self._check_stress(atoms if atoms is not None else self.atoms)
        if properties is None:
            properties = self.implemented_properties
        if atoms is None and self.atoms is None:
            raise PluginError(f"{type(self).__name__}: no atoms to compute; pass them "
                              "(calc.calculate(atoms), calc.get_potential_energy(atoms)) or set atoms.calc = calc")
        with self._lock:
            Calculator.calculate(self, atoms, properties, system_changes)
            self.results = self._evaluate([self.atoms])[0]

    def calculate_batch(self, atoms_list: Sequence, batch_size: Optional[int] = None) -> list[dict]:
        """Results for many structures, batched into one forward pass (or ``batch_size`` at a time).

        Returns one dict per structure, with the keys of :attr:`results` (NumPy arrays and
        floats). ``self.results`` and the calculator's cached state are not changed.

        Example:
            >>> res = calc.calculate_batch([molecule("H2O"), molecule("CH4")])  # doctest: +SKIP
            >>> [r["energy"] for r in res]                                      # doctest: +SKIP
        """
        from ase import Atoms

        if isinstance(atoms_list, Atoms):
            raise PluginError(f"{type(self).__name__}.calculate_batch: give a list of ase.Atoms, not one Atoms "
                              "(calc.calculate_batch([atoms]))")
        atoms_list = list(atoms_list)
        for i, a in enumerate(atoms_list):
            if not isinstance(a, Atoms):
                raise PluginError(f"{type(self).__name__}.calculate_batch: item {i} is a {type(a).__name__}, "
                                  "not an ase.Atoms")
        if not atoms_list:
            return []
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                       or batch_size < 1):
            raise PluginError(f"{type(self).__name__}.calculate_batch: batch_size must be a whole number >= 1 "
                              f"(None: all at once), got {batch_size!r}")
        step = len(atoms_list) if batch_size is None else int(batch_size)
        out: list[dict] = []
        for start in range(0, len(atoms_list), step):
            with self._lock:  # the graph templates are shared state
                out.extend(self._evaluate(atoms_list[start:start + step]))
        return out

    def _check_stress(self, atoms) -> None:
        if atoms is not None and not np.all(atoms.pbc):
            raise PropertyNotImplementedError(
                f"{type(self).__name__}: stress needs a cell periodic in all three directions "
                f"(pbc={list(map(bool, atoms.pbc))})"
            )

    def get_property(self, name, atoms=None, allow_calculation=True):
        if name == "stress" and self.task == "energy":
            self._check_stress(atoms if atoms is not None else self.atoms)
        if self.task == "score" and name in ENERGY_PROPERTIES:
            raise PropertyNotImplementedError(
                f"{type(self).__name__}: model {self.potential.source} is a score model; it gives "
                f"'score' (calc.get_property('score', atoms)), not {name!r}"
            )
        # one lock over check, calculation and read: ASE keeps the last atoms and results
        # on the calculator, which another thread would otherwise replace in between
        with self._lock:
            return Calculator.get_property(self, name, atoms, allow_calculation)

    def get_score(self, atoms=None) -> float:
        """Score of ``atoms`` (score models), e.g. a pK affinity."""
        return self.get_property("score", atoms)

    def check_state(self, atoms, tol=1e-15):
        with self._lock:
            changes = Calculator.check_state(self, atoms, tol)
            if (self.potential.needs_charge and self.atoms is not None
                    and self._total_charge(atoms) != self._total_charge(self.atoms)):
                changes = list(changes) + ["charge"]
            return changes


#: Same class: the family (GET or GeoMFormer) is read from the model file or module.
GeoMFormerCalculator = GETCalculator


#: How an ase.Atoms gets the cell that ``check_cell`` found without volume
CELL_HINT = "set a full cell (e.g. atoms.center(vacuum=10.0)) or pbc=False"

#: a periodic cell is checked for atoms on images of others (``check_images``) at first, and
#: again when its narrowest periodic width falls below this fraction of the width checked
IMAGE_CHECK_SHRINK = 0.9
#: Å: ... and again when an atom has moved farther than this since the last check (an
#: unwrapped molecule that drifts across the boundary onto an image of another)
IMAGE_CHECK_DRIFT = 1.0


class _Template:
    """Integer graph tensors for one set of atomic numbers, with the last cell's tensors."""

    def __init__(self, graph: MolecularGraph):
        self.graph = graph
        self._cell_key: Optional[bytes] = None
        self._cell: Optional[torch.Tensor] = None
        self._pbc: Optional[torch.Tensor] = None
        self._width = math.inf  # narrowest periodic width of the last cell
        self._checked_width = math.inf  # narrowest periodic width the images were checked at
        self._checked_positions: Optional[np.ndarray] = None  # positions the images were checked at

    def cell_tensors(self, atoms, device, dtype, who: str) -> tuple[torch.Tensor, torch.Tensor]:
        pbc = np.asarray(atoms.pbc, dtype=bool).reshape(3)
        cell = np.asarray(atoms.cell.array, dtype=np.float64).reshape(3, 3)
        key = pbc.tobytes() + (cell.tobytes() if pbc.any() else b"")
        if key != self._cell_key:
            if pbc.any():
                check_cell(cell, pbc, f"{who}: ase.Atoms {atoms.get_chemical_formula()}", hint=CELL_HINT)
                self._width = float(cell_widths(cell)[pbc].min())
                c = torch.as_tensor(cell, device=device).to(dtype).reshape(1, 3, 3)
            else:
                c = torch.zeros(1, 3, 3, dtype=dtype, device=device)
            self._cell = c
            self._pbc = torch.as_tensor(pbc, device=device).reshape(1, 3)
            self._cell_key = key
        if pbc.any():
            self._check_images(atoms, cell, pbc, who)
        return self._cell, self._pbc  # type: ignore[return-value]

    def _check_images(self, atoms, cell: np.ndarray, pbc: np.ndarray, who: str) -> None:
        """``check_images`` with the structure's first positions, when the cell has narrowed by
        more than IMAGE_CHECK_SHRINK and when an atom has moved farther than IMAGE_CHECK_DRIFT
        since the last check: not on every MD step (20 ms at 3,000 atoms; the test of the
        moves is one vectorised O(N) pass)."""
        x = np.asarray(atoms.positions, dtype=np.float64)
        moved = _farthest_move(x, self._checked_positions)
        narrowed = self._width < IMAGE_CHECK_SHRINK * self._checked_width
        if not narrowed and moved is not None and moved[1] <= IMAGE_CHECK_DRIFT:
            return
        hint = IMAGES_HINT if narrowed or moved is None else (
            f"atom {moved[0] + 1} is {moved[1]:.3g} Å from where it was at the last check (cell {{cell}} Å): "
            "atoms moved onto a periodic image of others (a molecule unwrapped across the boundary over a "
            "long run, or a run blowing up?)")
        check_images(x, atoms.numbers, cell, pbc, f"{who}: ase.Atoms {atoms.get_chemical_formula()}", hint=hint)
        self._checked_width = self._width
        self._checked_positions = x.copy()


def _farthest_move(x: np.ndarray, before: Optional[np.ndarray]) -> Optional[tuple[int, float]]:
    """``(i, d)``: the atom of ``x`` [N, 3] farthest from its place in ``before`` and that
    distance (Å); None without ``before`` or for another number of atoms. Vectorised, O(N)."""
    if before is None or before.shape != x.shape:
        return None
    step = x - before
    d2 = np.einsum("ij,ij->i", step, step)
    i = int(np.argmax(d2))
    return i, math.sqrt(float(d2[i]))


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _split_results(out: dict, counts: Sequence[int], periodic: Sequence[bool], task: str) -> list[dict]:
    """Per-structure ASE results from a batched model output."""
    results: list[dict] = []
    if task == "score":
        score = _numpy(out["score"]).reshape(-1)
        return [{"score": float(s)} for s in score]
    forces = _numpy(out["forces"])
    energies = _numpy(out["energies"]).reshape(-1)
    stress = _numpy(out["stress"]) if "stress" in out else None
    start = 0
    for i, n in enumerate(counts):
        # the total summed in float64 from the per-atom energies: a float32 model's own
        # total rounds at the scale of the whole structure
        energy = float(energies[start:start + n].sum())
        r = {
            "energy": energy,
            "free_energy": energy,
            "forces": forces[start:start + n].copy(),
            "energies": energies[start:start + n].copy(),
        }
        if periodic[i] and stress is not None:
            r["stress"] = full_3x3_to_voigt_6_stress(stress[i])
        results.append(r)
        start += n
    return results
