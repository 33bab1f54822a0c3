"""Pieces shared by every model family's output heads.

* :func:`strained_inputs` prepares positions (and a strain for periodic cells) so
  that forces and stress can be taken by autograd;
* :func:`energy_outputs` sums per-atom energies and adds forces = -dE/dx and the
  stress (1/V) dE/d(strain), in eV, eV/Å and eV/Å^3.

Both are TorchScript-compatible. Gradient mode is switched on inside the model
when forces are wanted, so forces come out under ``torch.no_grad()`` too.

Example:
    >>> import torch
    >>> pos = torch.randn(4, 3)
    >>> leaf, p, cell, strain = strained_inputs(pos, torch.zeros(1, 3, 3), torch.zeros(4, dtype=torch.long),
    ...                                         True, False)
    >>> out = energy_outputs((p ** 2).sum(-1), torch.zeros(4, dtype=torch.long), 1, leaf, strain, cell,
    ...                      True, False, False, True)
    >>> torch.allclose(out["forces"], -2 * pos)
    True
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch

from get_md.nn.scatter import scatter_sum


def strained_inputs(
    positions: torch.Tensor,
    cell: torch.Tensor,
    atom_batch: torch.Tensor,
    want_forces: bool,
    want_stress: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(pos_leaf, pos, cell, strain)``.

    ``pos_leaf`` is what forces differentiate against (``positions`` itself when it
    already requires grad, so training can back-propagate through forces); ``pos``
    and ``cell`` carry a symmetric strain [G, 3, 3] when stress is wanted.
    """
    pos_leaf = positions
    if want_forces and not pos_leaf.requires_grad:
        pos_leaf = pos_leaf.detach().requires_grad_(True)
    pos = pos_leaf
    strain = torch.zeros(cell.shape[0], 3, 3, dtype=positions.dtype, device=positions.device)
    if want_stress:
        strain.requires_grad_(True)
        sym = 0.5 * (strain + strain.transpose(1, 2))
        pos = pos + torch.bmm(pos.unsqueeze(1), sym[atom_batch]).squeeze(1)
        cell = cell + torch.bmm(cell, sym)
    return pos_leaf, pos, cell, strain


def energy_outputs(
    energies: torch.Tensor,
    atom_batch: torch.Tensor,
    n_graphs: int,
    pos_leaf: torch.Tensor,
    strain: torch.Tensor,
    cell: torch.Tensor,
    want_forces: bool,
    want_stress: bool,
    create_graph: bool,
    grad_was_enabled: bool,
) -> Dict[str, torch.Tensor]:
    """``energy`` [G], ``energies`` [N] and, as asked, ``forces`` [N, 3] and ``stress`` [G, 3, 3]."""
    energy = scatter_sum(energies, atom_batch, n_graphs)
    out: Dict[str, torch.Tensor] = {}
    if want_forces:
        inputs = [pos_leaf, strain] if want_stress else [pos_leaf]
        grads = torch.autograd.grad([energy.sum()], inputs, create_graph=create_graph, allow_unused=True)
        g0 = grads[0]
        if g0 is None:
            g0 = torch.zeros_like(pos_leaf)
        out["forces"] = -g0
        if want_stress:
            g1 = grads[1]
            if g1 is None:
                g1 = torch.zeros_like(strain)
            volume = torch.abs(torch.linalg.det(cell.detach())).clamp(min=1e-12)
            out["stress"] = g1 / volume.view(-1, 1, 1)
        if not grad_was_enabled:
            energy = energy.detach()
            energies = energies.detach()
            out["forces"] = out["forces"].detach()
            if want_stress:
                out["stress"] = out["stress"].detach()
    out["energy"] = energy
    out["energies"] = energies
    return out
