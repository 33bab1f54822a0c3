"""Geometries to label: conformers (ETKDGv3 + MMFF94 / UFF minimisation) and thermal
snapshots from BAOAB Langevin MD on the force-field surface."""

from __future__ import annotations

import math

import numpy as np

from get_md.datasets.xtb.spec import SkipMolecule, rdkit_modules

# BAOAB settings for the force-field MD (fs, 1/fs, steps).
MD_DT = 0.5
MD_GAMMA = 0.02
MD_EQUIL_STEPS = 200
MD_STRIDE = 100
# (kcal/mol/Å)/amu -> Å/fs²
_ACC = 4.184e-4
_KB_KCAL = 0.0019872041  # kcal/mol/K


def _force_field(mol, conf_id: int):
    _, AllChem = rdkit_modules()
    props = AllChem.MMFFGetMoleculeProperties(mol)
    if props is not None:
        ff = AllChem.MMFFGetMoleculeForceField(mol, props, confId=conf_id)
        if ff is not None:
            return ff, "MMFF94"
    if AllChem.UFFHasAllMoleculeParams(mol):
        return AllChem.UFFGetMoleculeForceField(mol, confId=conf_id), "UFF"
    raise SkipMolecule("no MMFF94 or UFF parameters")


def add_conformers(mol, n_total: int, rng: np.random.Generator) -> None:
    """Bring ``mol`` to ``n_total`` conformers with ETKDGv3 + force-field minimisation."""
    _, AllChem = rdkit_modules()
    need = n_total - mol.GetNumConformers()
    if need <= 0:
        return
    params = AllChem.ETKDGv3()
    params.randomSeed = int(rng.integers(1, 2**31 - 1))
    params.clearConfs = False
    params.pruneRmsThresh = -1.0
    before = {c.GetId() for c in mol.GetConformers()}
    ids = list(AllChem.EmbedMultipleConfs(mol, need, params))
    if not ids:
        params.useRandomCoords = True
        ids = list(AllChem.EmbedMultipleConfs(mol, need, params))
    if not ids and not before:
        raise SkipMolecule("ETKDG embedding failed")
    for cid in ids:
        ff, _ = _force_field(mol, cid)
        ff.Minimize(maxIts=1000)
        pos = np.array(ff.Positions()).reshape(-1, 3)
        conf = mol.GetConformer(cid)
        for k, xyz in enumerate(pos):
            conf.SetAtomPosition(k, xyz.tolist())


def langevin_frames(mol, conf_id: int, temperature: float, n_frames: int,
                    rng: np.random.Generator, equil_steps: int = MD_EQUIL_STEPS,
                    stride: int = MD_STRIDE, dt: float = MD_DT,
                    gamma: float = MD_GAMMA) -> np.ndarray:
    """Snapshots [n_frames, N, 3] (Å) of BAOAB Langevin MD on MMFF94 (or UFF) at
    ``temperature`` K, started from conformer ``conf_id`` with Maxwell-Boltzmann
    velocities; the first after ``equil_steps``, then every ``stride`` steps."""
    ff, _ = _force_field(mol, conf_id)
    x = np.array(ff.Positions(), dtype=np.float64).reshape(-1, 3)
    m = np.array([a.GetMass() for a in mol.GetAtoms()])[:, None]
    kt = _KB_KCAL * temperature
    sigma = np.sqrt(kt / m * _ACC)  # Å/fs
    v = rng.standard_normal(x.shape) * sigma
    v -= (m * v).sum(0) / m.sum()
    c1 = math.exp(-gamma * dt)
    c2 = math.sqrt(1.0 - c1 * c1)

    conf = mol.GetConformer(conf_id)
    start = np.array(conf.GetPositions())

    # ForceField.CalcGrad(pos) corrupts the force field's state in the RDKit used
    # here (NaN afterwards); set the conformer's coordinates and re-point instead.
    def acc(pos: np.ndarray) -> np.ndarray:
        conf.SetPositions(pos)
        ff.Initialize()
        g = np.asarray(ff.CalcGrad()).reshape(-1, 3)
        return -g / m * _ACC

    a = acc(x)
    frames = []
    total = equil_steps + stride * (n_frames - 1)
    for step in range(1, total + 1):
        v += 0.5 * dt * a
        x += 0.5 * dt * v
        v = c1 * v + c2 * sigma * rng.standard_normal(x.shape)
        x += 0.5 * dt * v
        a = acc(x)
        v += 0.5 * dt * a
        if not np.all(np.isfinite(x)):
            raise SkipMolecule(f"force-field MD blew up at T={temperature:.0f} K")
        if step >= equil_steps and (step - equil_steps) % stride == 0:
            frames.append(x.copy())
    conf.SetPositions(start)
    return np.stack(frames)
