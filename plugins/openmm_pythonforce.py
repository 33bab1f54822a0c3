"""The PythonForce backend of :mod:`get_md.plugins.openmm`: an ``openmm.PythonForce``
(OpenMM >= 8.6) whose callback, :class:`GraphPotential`, runs the model in Python.

Works with any torch. The callback is picklable (the model travels as TorchScript bytes
or a pickled module), so a System holding the force can be deep-copied and serialised.
``openmm`` is imported only when a force is built (:func:`pythonforce`).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Optional, Tuple

import numpy as np
import torch
from get_md.plugins._common import (
    check_cell,
    check_overlaps,
    model_positions,
    pack_module,
    units_warning,
    unpack_module,
)
from get_md.plugins._common import (
    total_charge as total_charge_of,  # the argument is named total_charge
)

from get_md.errors import GraphError, PluginError
from get_md.graph import MolecularGraph
from get_md.runtime import LoadedModel, atom_charges
from get_md.units import EV_PER_A_TO_KJ_PER_MOL_NM, EV_TO_KJ_PER_MOL, NM_TO_ANGSTROM

__all__ = ["GraphPotential", "pythonforce"]

log = logging.getLogger("get_md.plugins.openmm")


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
        self.total_charge = total_charge_of(total_charge, "create_force")
        self._setup(graph)

    def _setup(self, graph: MolecularGraph) -> None:
        lm = self.potential
        self.graph = graph
        self.n_atoms = graph.num_atoms
        self._inputs = graph.inputs()  # positions, cell and pbc are replaced per call
        self._numbers = graph.atomic_numbers.detach().cpu().numpy()
        self._pbc = torch.full((1, 3), self.periodic, dtype=torch.bool, device=lm.device)
        self._zero_cell = torch.zeros(1, 3, 3, dtype=lm.dtype, device=lm.device)
        self._units_checked = False  # positions far apart (Å given as nm) warned about once
        # overlapping atoms: an error on the first call (a structure given that way), a
        # warning once later (OpenMM's minimiser probes such trial steps and backs off)
        self._overlaps_checked = False
        self._overlap_warned = False
        self._charges = None
        if lm.needs_charge:
            self._charges = atom_charges([self.total_charge], [self.n_atoms], lm.device, lm.dtype)

    def evaluate(self, positions_nm, box_nm=None) -> Tuple[float, np.ndarray]:
        """Energy (kJ/mol) and forces ([n, 3], kJ/mol/nm) for positions (and box) in nm."""
        lm = self.potential
        x = np.asarray(positions_nm, dtype=np.float64)
        if x.shape != (self.n_atoms, 3):
            raise PluginError(f"get_md force: got positions of shape {x.shape}, expected ({self.n_atoms}, 3)")
        # centred in float64 before the cast (see model_positions)
        pos = model_positions(x * NM_TO_ANGSTROM, lm.device, lm.dtype, "get_md force")
        if not self._overlap_warned:
            try:
                check_overlaps(x * NM_TO_ANGSTROM, self._numbers, "get_md force (positions in nm)")
            except GraphError as e:
                if not self._overlaps_checked:
                    raise
                self._overlap_warned = True
                log.warning("%s, after the first call (a minimiser's trial step, or a run blowing up); "
                            "evaluated as it is, said once", e)
            self._overlaps_checked = True
        if not self._units_checked:
            self._units_checked = True
            text = units_warning(x * NM_TO_ANGSTROM, "get_md force (positions in nm)")
            if text:
                log.warning("%s OpenMM takes positions in nm (from Å: divide by 10, or pass them with "
                            "openmm.unit.angstrom)", text)
        cell = self._zero_cell
        if self.periodic:
            if box_nm is None:
                raise PluginError("get_md force: periodic force evaluated without box vectors")
            b = np.asarray(box_nm, dtype=np.float64).reshape(1, 3, 3) * NM_TO_ANGSTROM
            check_cell(b[0], [True, True, True], "get_md force (box vectors in nm)")
            cell = torch.as_tensor(b, device=lm.device).to(lm.dtype)
        out = lm.run(self._inputs._replace(positions=pos, cell=cell, pbc=self._pbc), self._charges)
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
            "module": pack_module(lm.module),
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
        module = unpack_module(state["module"], device)
        self.potential = replace(state["potential"], module=module, device=device)
        self.periodic = state["periodic"]
        self.total_charge = state["total_charge"]
        self._setup(state["graph"].to(device=device))



def pythonforce(potential: LoadedModel, graph: MolecularGraph, indices: Optional[np.ndarray],
                periodic: bool, total_charge: float = 0.0):
    """An ``openmm.PythonForce`` calling :class:`GraphPotential` (particle subset and
    periodic flag set; force group and name are left to the caller).

    Raises:
        ValueError: the installed OpenMM has no PythonForce (older than 8.6); the message
            says to install openmm-torch or upgrade OpenMM.
    """
    import openmm

    if not hasattr(openmm, "PythonForce"):
        raise PluginError(
            f"create_force: openmm {openmm.__version__} has no PythonForce (needs OpenMM >= 8.6); "
            "install openmm-torch for backend='torchforce' or upgrade OpenMM"
        )
    force = openmm.PythonForce(GraphPotential(potential, graph, periodic, total_charge))
    if indices is not None:
        force.setParticles([int(i) for i in indices])
    force.setUsesPeriodicBoundaryConditions(periodic)
    return force
