"""GFN2-xTB labels (tblite): energies (eV) and forces (eV/Å) of each geometry, and the
molecule identity that decides its split."""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, Tuple

import numpy as np

from get_md.datasets.xtb.sampling import add_conformers, langevin_frames
from get_md.datasets.xtb.spec import (
    ALLOWED_Z,
    MAX_FORCE,
    T_RANGE,
    MolSpec,
    SkipMolecule,
    rdkit_modules,
    rng_for,
)

log = logging.getLogger("get_md.datasets.xtb")


def xtb_calculator(charge: int):
    """tblite GFN2-xTB ASE calculator, closed shell, quiet."""
    from tblite.ase import TBLite

    return TBLite(method="GFN2-xTB", charge=float(charge), multiplicity=1, verbosity=0)


def xtb_label(numbers: np.ndarray, positions: np.ndarray, charge: int,
              calc=None) -> Tuple[float, np.ndarray]:
    """GFN2-xTB energy (eV) and forces (eV/Å) of one geometry."""
    from ase import Atoms

    atoms = Atoms(numbers=numbers, positions=positions)
    atoms.calc = calc if calc is not None else xtb_calculator(charge)
    energy = float(atoms.get_potential_energy())
    forces = np.array(atoms.get_forces(), dtype=np.float64)
    return energy, forces


def canonical_identity(mol) -> str:
    """Uncharged, stereo-free canonical SMILES without H: the molecule's split identity."""
    Chem, _ = rdkit_modules()
    from rdkit.Chem.MolStandardize import rdMolStandardize

    m = Chem.RemoveHs(mol)
    try:
        m = rdMolStandardize.Uncharger().uncharge(m)
    except Exception:  # noqa: BLE001 - fall back to the charged form
        pass
    return Chem.MolToSmiles(m, isomericSmiles=False)


def label_molecule(spec: MolSpec, seed: int) -> Dict[str, Any]:
    """Build, sample and label one molecule; raises :class:`SkipMolecule`."""
    Chem, _ = rdkit_modules()
    rng = rng_for(seed, spec.key)
    try:
        mol = spec.build(rng)
    except SkipMolecule:
        raise
    except Exception as e:  # noqa: BLE001 - RDKit / parser errors become skips
        raise SkipMolecule(f"build failed: {type(e).__name__}: {e}") from e
    numbers = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
    bad = sorted({int(z) for z in numbers} - ALLOWED_Z)
    if bad:
        raise SkipMolecule(f"elements outside H C N O F P S Cl Br I: Z={bad}")
    if any(a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
        raise SkipMolecule("radical (open shell)")
    charge = int(Chem.GetFormalCharge(mol))
    if abs(charge) > spec.max_abs_charge:
        raise SkipMolecule(f"total charge {charge} beyond ±{spec.max_abs_charge}")
    if (int(numbers.sum()) - charge) % 2:
        raise SkipMolecule(f"odd electron count with charge {charge}")
    try:
        add_conformers(mol, spec.n_conformers, rng)
    except SkipMolecule:
        raise
    except Exception as e:  # noqa: BLE001
        raise SkipMolecule(f"conformer generation failed: {type(e).__name__}: {e}") from e

    geoms, ids, temps = [], [], []
    for c, conf in enumerate(list(mol.GetConformers())[: spec.n_conformers]):
        if spec.md:
            t = float(rng.uniform(*T_RANGE))
            frames = langevin_frames(mol, conf.GetId(), t, spec.n_frames, rng)
        else:
            t = 0.0
            frames = np.asarray(conf.GetPositions())[None]
        for k, x in enumerate(frames):
            geoms.append(x.astype(np.float32))  # labels belong to the stored float32 positions
            ids.append(f"{spec.key}:conf{c}:frame{k}")
            temps.append(t)

    calc = xtb_calculator(charge)
    energies, forces, kept, failures = [], [], [], []
    for i, (x, sid) in enumerate(zip(geoms, ids, strict=True)):
        try:
            e, f = xtb_label(numbers, x.astype(np.float64), charge, calc=calc)
        except Exception as err:  # noqa: BLE001 - SCF failures are logged and skipped
            failures.append(f"{sid}: {type(err).__name__}: {str(err).strip()[:120]}")
            calc = xtb_calculator(charge)
            continue
        if not (np.isfinite(e) and np.all(np.isfinite(f))):
            failures.append(f"{sid}: non-finite xTB result")
            continue
        if np.abs(f).max() > MAX_FORCE:
            failures.append(f"{sid}: max |F| {np.abs(f).max():.1f} eV/Å > {MAX_FORCE}")
            continue
        energies.append(e)
        forces.append(f.astype(np.float32))
        kept.append(i)
    for msg in failures:
        log.warning("frame skipped: %s", msg)
    if not energies:
        raise SkipMolecule("no frame labelled: " + "; ".join(failures)[:400])
    return {
        "key": spec.key,
        "group": spec.group or "smi:" + canonical_identity(mol),
        "smiles": Chem.MolToSmiles(Chem.RemoveHs(mol)),
        "charge": charge,
        "numbers": numbers,
        "positions": np.stack([geoms[i] for i in kept]),
        "energy": np.array(energies, dtype=np.float64),
        "forces": np.stack(forces),
        "frame_ids": np.array([ids[i] for i in kept]),
        "temperature": np.array([temps[i] for i in kept], dtype=np.float32),
        "info": json.dumps(spec.info, sort_keys=True),
        "failed_frames": len(failures),
    }
