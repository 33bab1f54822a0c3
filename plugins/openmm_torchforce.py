"""The TorchForce backend of :mod:`get_md.plugins.openmm`: a scripted wrapper module run by
``openmmtorch.TorchForce`` inside OpenMM's own C++ loop.

The wrapper takes positions [N, 3] nm (and, for periodic systems, box vectors [3, 3] nm)
and returns energy in kJ/mol and forces in kJ/mol/nm (``setOutputsForces(True)``). It
needs the openmm-torch plugin built for the installed torch; ``openmmtorch`` is imported
only when a force is built (:func:`torchforce`) or probed (:func:`have_openmmtorch`).
:func:`torchforce_module` works without openmmtorch.
"""

from __future__ import annotations

import functools
import logging
import subprocess
import sys
import warnings
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from get_md.errors import PluginError
from get_md.graph import MolecularGraph
from get_md.runtime import LoadedModel, atom_charges
from get_md.units import EV_PER_A_TO_KJ_PER_MOL_NM, EV_TO_KJ_PER_MOL, NM_TO_ANGSTROM

__all__ = ["have_openmmtorch", "torchforce", "torchforce_copies", "torchforce_module"]

log = logging.getLogger("get_md.plugins.openmm")


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


def _fixed(value: float, digits: int) -> str:
    """``value`` (>= 0) with ``digits`` decimals (TorchScript's str.format has no format spec)."""
    unit = 1
    for _ in range(digits):
        unit *= 10
    scaled = int(value * float(unit) + 0.5)
    whole = str(scaled // unit)
    frac = str(scaled % unit)
    while len(frac) < digits:
        frac = "0" + frac
    return whole + "." + frac


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
        # the PythonForce's geometry checks, on the first call of each Context only (a copy
        # made by OpenMM starts unchecked): O(N^2) distances would cost too much every step
        from get_md.workflows.geometry_checks import GROWN_DISTANCE, MIN_DISTANCE

        self.checked = False
        self.min_distance = float(MIN_DISTANCE)
        self.grown_distance = float(GROWN_DISTANCE)

    def _particle(self, i: int) -> int:
        """OpenMM's index of modelled atom ``i``."""
        return int(self.indices[i]) if self.use_subset else i

    def _check_geometry(self, pos: torch.Tensor) -> None:
        """Refuse overlapping modelled atoms (closer than 0.5 Å: no bond is that short) and
        warn where they typically lie farther than 5 Å from their nearest neighbour (Å
        values given as nm: a plausible energy with zero forces). ``pos`` in Å."""
        n = pos.shape[0]
        if n < 2:
            return
        x = pos.detach().to(torch.float64)
        nearest = torch.empty(n, dtype=x.dtype, device=x.device)
        partner = torch.empty(n, dtype=torch.long, device=x.device)
        rows = torch.arange(n, device=x.device)
        for start in range(0, n, 1024):  # 1024 x N distances at a time
            stop = min(start + 1024, n)
            d = torch.cdist(x[start:stop], x)
            d[rows[start:stop] - start, rows[start:stop]] = float("inf")
            values, columns = d.min(dim=1)
            nearest[start:stop] = values
            partner[start:stop] = columns
        k = int(torch.argmin(nearest))
        closest = float(nearest[k])
        if closest < self.min_distance:
            other = int(partner[k])
            i, j = self._particle(k), self._particle(other)
            z_i, z_j = int(self.atomic_numbers[k]), int(self.atomic_numbers[other])
            if j < i:
                i, j, z_i, z_j = j, i, z_j, z_i
            raise RuntimeError(
                f"get_md TorchForce: particles {i} and {j} (atomic numbers {z_i} and {z_j}) are "
                f"{_fixed(closest, 3)} Å apart (closer than 0.5 Å): overlapping atoms, or positions not in nm")
        typical = float(nearest.median())
        if n >= 3 and typical > self.grown_distance:
            warnings.warn(
                f"get_md TorchForce: the {n} modelled atoms are {_fixed(typical, 1)} Å from their nearest "
                "neighbour (median) where bonded atoms are about 1-1.5 Å apart: positions in Å given as nm (x10 too large)? "
                "OpenMM takes positions in nm", stacklevel=2)

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
        # the PythonForce's checks that cost nothing here: a NaN position had given a finite
        # energy (every atom isolated), a box thinner than 1 Å a plausible one
        if not bool(torch.isfinite(pos).all()):
            raise RuntimeError("get_md TorchForce: a position of a modelled atom is NaN or infinite")
        # centred in OpenMM's precision before the cast (see _common.model_positions)
        pos = (pos - pos.mean(dim=0)).to(dtype) * self.length_scale
        if not self.checked:
            self._check_geometry(pos)
            self.checked = True
        cell = self.zero_cell
        if boxvectors is not None:
            box = boxvectors.detach().to(torch.float64).reshape(3, 3) * self.length_scale
            faces = torch.linalg.cross(torch.roll(box, -1, 0), torch.roll(box, -2, 0))
            if bool((torch.linalg.det(box).abs() / torch.linalg.vector_norm(faces, dim=1) < 1.0).any()):
                raise RuntimeError("get_md TorchForce: periodic box is thinner than 1 Å along a box vector "
                                   "(every atom would lie that close to its own image); box in the wrong units?")
            cell = box.to(dtype).reshape(1, 3, 3)
        elif bool(self.pbc.any()):
            raise RuntimeError("get_md TorchForce: periodic force called without box vectors")
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



def torchforce(potential: LoadedModel, graph: MolecularGraph, indices: Optional[np.ndarray],
               n_total: int, periodic: bool, total_charge: float = 0.0,
               plain_executor: bool = True):
    """An ``openmmtorch.TorchForce`` on :func:`torchforce_module` (forces output, periodic
    flag set; force group and name are left to the caller).

    Raises:
        ValueError: ``openmmtorch`` does not import (not installed, or built for another
            torch); the message says to use ``backend='pythonforce'``.
    """
    try:
        import openmmtorch
    except Exception as e:  # noqa: BLE001 - ImportError, or OSError from a mismatched build
        raise PluginError(
            f"create_force: backend='torchforce' needs openmm-torch built for torch "
            f"{torch.__version__} (import openmmtorch failed: {e}); use backend='pythonforce'"
        ) from e
    module = torchforce_module(potential, graph, indices, n_total, periodic, total_charge)
    force = openmmtorch.TorchForce(module)
    if plain_executor:
        from get_md.perf import use_plain_executor

        if use_plain_executor():
            log.info("create_force: TorchScript's plain executor is on for this thread from now "
                     "on (get_md.perf.restore_executor(True) undoes it)")
    force.setOutputsForces(True)
    force.setUsesPeriodicBoundaryConditions(periodic)
    return force
