"""Starting statistics fitted from the training data: per-element reference energies,
energy scale, and the ligand-atom baseline of score models.

Example:
    >>> from get_md.train.fitting import fit_energy_statistics
    >>> fit_energy_statistics(model, train_set)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any

import torch

from get_md.train.data import MolecularDataset

__all__ = ["default_elements", "fit_energy_statistics", "fit_score_reference"]


def fit_energy_statistics(model: torch.nn.Module, data: MolecularDataset) -> dict[str, Any]:
    """Set an energy model's per-element reference energies and output scale from data.

    If the model has an ``atom_ref`` embedding (eV per element), it gets the
    least-squares fit of the structures' energies to their element counts; if it has
    an ``energy_scale`` buffer, it gets the RMS of the reference forces (or, without
    forces, the RMS of the per-atom energy residuals). Models without these are left alone.

    Returns:
        What was set: ``{"atom_ref": {Z: eV}, "energy_scale": float}`` (possibly empty).

    Example:
        >>> fit_energy_statistics(model, train_set)  # doctest: +SKIP
        {'atom_ref': {1: -13.6, 8: -2041.3}, 'energy_scale': 0.71}
    """
    if getattr(model, "task", "energy") != "energy" or "energy" not in data.target_names:
        return {}
    if "charge" in data.target_names:  # ions shift the energy by their ionisation terms
        neutral = [s for s in data.samples if float(s.targets["charge"][0]) == 0.0]
        if neutral:
            data = MolecularDataset(neutral, name=data.name)
    done: dict[str, Any] = {}
    zs = default_elements(data)
    col = {z: i for i, z in enumerate(zs)}
    counts = torch.zeros(len(data), len(zs), dtype=torch.float64)
    energy = torch.zeros(len(data), dtype=torch.float64)
    n_atoms = torch.zeros(len(data), dtype=torch.float64)
    for g, s in enumerate(data.samples):
        for z, c in zip(*torch.unique(s.graph.atomic_numbers, return_counts=True), strict=True):
            counts[g, col[int(z)]] = float(c)
        energy[g] = float(s.targets["energy"][0])
        n_atoms[g] = s.num_atoms
    residual = energy
    ref = getattr(model, "atom_ref", None)
    if isinstance(ref, torch.nn.Embedding) and ref.embedding_dim == 1:
        sol = torch.linalg.lstsq(counts, energy[:, None], driver="gelsd").solution[:, 0]
        with torch.no_grad():
            ref.weight[torch.tensor(zs, device=ref.weight.device), 0] = sol.to(ref.weight)
        residual = energy - counts @ sol
        done["atom_ref"] = {z: float(v) for z, v in zip(zs, sol, strict=True)}
    scale_buf = getattr(model, "energy_scale", None)
    if isinstance(scale_buf, torch.Tensor) and scale_buf.numel() == 1:
        if "forces" in data.target_names:
            f = torch.cat([s.targets["forces"].double().reshape(-1) for s in data.samples])
            scale = float(f.pow(2).mean().sqrt())
        else:
            scale = float((residual / n_atoms).pow(2).mean().sqrt())
        if math.isfinite(scale) and scale > 1e-8:
            with torch.no_grad():
                scale_buf.fill_(scale)
            done["energy_scale"] = scale
    return done


def fit_score_reference(model: torch.nn.Module, data: MolecularDataset) -> dict[str, Any]:
    """Set a score model's per-element references of ligand atoms from data.

    A GET score model adds ``atom_ref[Z]`` of every ligand atom (segments other than
    0; heavy atoms only for ``heavy_atoms_only`` models) to its score. Fitted by least
    squares of the training scores to the ligands' element counts, it starts training
    from a size-and-composition baseline (what "bigger ligands bind better" predicts)
    that the network then corrects: the last layer of the model's ``head`` is zeroed, so
    that training starts from the baseline itself. Models without ``atom_ref`` are left alone.

    Returns:
        ``{"ligand_atom_ref": {Z: score units}}`` or ``{}``.

    Example:
        >>> fit_score_reference(score_model, train_set)  # doctest: +SKIP
        {'ligand_atom_ref': {6: 0.21, 7: 0.19, 8: 0.17}}
    """
    ref = getattr(model, "atom_ref", None)
    if (getattr(model, "task", "") != "score" or "score" not in data.target_names
            or not isinstance(ref, torch.nn.Embedding) or ref.embedding_dim != 1):
        return {}
    heavy_only = bool(getattr(model, "heavy_atoms_only", False))
    ligand_z = []
    for s in data.samples:
        z = s.graph.atomic_numbers[s.graph.atom_segment_ids != 0]
        ligand_z.append(z[z != 1] if heavy_only else z)
    zs = sorted({int(v) for z in ligand_z for v in z.tolist()})
    if not zs:
        return {}
    col = {z: i for i, z in enumerate(zs)}
    counts = torch.zeros(len(data), len(zs), dtype=torch.float64)
    for g, z in enumerate(ligand_z):
        for v, c in zip(*torch.unique(z, return_counts=True), strict=True):
            counts[g, col[int(v)]] = float(c)
    score = torch.tensor([float(s.targets["score"][0]) for s in data.samples], dtype=torch.float64)
    sol = torch.linalg.lstsq(counts, score[:, None], driver="gelsd").solution[:, 0]
    with torch.no_grad():
        ref.weight[torch.tensor(zs, device=ref.weight.device), 0] = sol.to(ref.weight)
        # the network starts as a correction of zero: the model starts at the baseline
        last = model.head[-1] if isinstance(getattr(model, "head", None), torch.nn.Sequential) else None
        if isinstance(last, torch.nn.Linear):
            last.weight.zero_()
            last.bias.zero_()
    return {"ligand_atom_ref": {z: float(v) for z, v in zip(zs, sol, strict=True)}}


def default_elements(data: MolecularDataset) -> list[int]:
    """The atomic numbers present in ``data``, sorted."""
    zs: set[int] = set()
    for s in data.samples:
        zs.update(int(z) for z in torch.unique(s.graph.atomic_numbers))
    return sorted(zs)
