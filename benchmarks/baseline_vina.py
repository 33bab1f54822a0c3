"""Vina and Vinardo scoring in place for the classical affinity baselines.

Part of ``benchmarks/affinity_baselines.py`` (which re-exports every name): the receptor
PDBQT (meeko's polymer API), ligand PDBQT strings, the box covering every pose and the
``Vina.score()`` calls.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # sibling modules, as the other benchmarks import theirs
    sys.path.insert(0, _HERE)
from baseline_records import _one_line  # noqa: E402


def prepare_receptor_pdbqt(clean_pdb: str) -> tuple[str, dict[str, Any]]:
    """Prepares a rigid receptor PDBQT with meeko's polymer API.

    Residues whose names meeko's default residue templates do not know (cofactors, ligands,
    unusual ions) are left out beforehand: meeko would otherwise try to download their
    chemical-component definitions. Residues that match no template are deleted by meeko
    (``allow_bad_res``). Missing hydrogens are added from the templates.

    Args:
        clean_pdb: Receptor PDB text without waters (see :func:`clean_receptor_pdb`).

    Returns:
        The PDBQT text and a dict listing ``dropped_unknown_residues`` and
        ``deleted_by_meeko`` (``"RESNAME CHAIN:NUM"`` strings).

    Raises:
        RuntimeError: If no receptor atom is left or meeko fails.
    """
    from meeko import MoleculePreparation, PDBQTWriterLegacy, Polymer, ResidueChemTemplates

    templates = ResidueChemTemplates.create_from_defaults()
    known = set(templates.residue_templates) | set(templates.ambiguous)
    lines: list[str] = []
    dropped: dict[str, None] = {}
    for line in clean_pdb.splitlines():
        if line[:6].strip() in ("ATOM", "HETATM"):
            resname = line[17:21].strip()
            if resname not in known:
                dropped[f"{resname} {line[21].strip()}:{line[22:27].strip()}"] = None
                continue
        elif line[:6].strip() == "CONECT":
            continue
        lines.append(line)
    if not any(ln[:6].strip() in ("ATOM", "HETATM") for ln in lines):
        raise RuntimeError("no receptor residue known to meeko's templates")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        polymer = Polymer.from_pdb_string(
            "\n".join(lines) + "\n", templates, MoleculePreparation(), allow_bad_res=True
        )
    rigid, _flex = PDBQTWriterLegacy.write_from_polymer(polymer)
    log = getattr(polymer, "log", {}) or {}
    deleted = [str(r) for key in ("no_match", "no_mol") for r in log.get(key, [])]
    if not rigid.strip():
        raise RuntimeError("meeko produced an empty receptor PDBQT")
    return rigid, {"dropped_unknown_residues": list(dropped), "deleted_by_meeko": deleted}


def ligand_pdbqt(mol: Any) -> str:
    """Writes a posed ligand as a Vina PDBQT string with meeko, keeping its coordinates.

    Macrocycles are kept rigid (no ring opening, no pseudo atoms) so that the pose is scored
    as given.

    Args:
        mol: RDKit molecule with explicit hydrogens and a 3D conformer.

    Returns:
        The PDBQT string.

    Raises:
        RuntimeError: If meeko cannot prepare or write the molecule.
    """
    from meeko import MoleculePreparation, PDBQTWriterLegacy

    setups = MoleculePreparation(rigid_macrocycles=True).prepare(mol)
    if len(setups) != 1:
        raise RuntimeError(f"meeko returned {len(setups)} molecule setups, expected 1")
    pdbqt, ok, err = PDBQTWriterLegacy.write_string(setups[0], bad_charge_ok=True)
    if not ok:
        raise RuntimeError(f"meeko PDBQT writer: {_one_line(err)}")
    return pdbqt


def pose_box(mols: Sequence[Any], padding: float = 8.0) -> tuple[list[float], list[float]]:
    """Computes a Vina box that covers every pose.

    Args:
        mols: RDKit molecules with 3D conformers.
        padding: Margin added on each side of the coordinate extent (Å).

    Returns:
        ``(center, size)``, each a list of three floats (Å).

    Raises:
        ValueError: If ``mols`` is empty.
    """
    if not mols:
        raise ValueError("no pose to build the box from")
    xyz = np.concatenate([m.GetConformer().GetPositions() for m in mols], axis=0)
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    center = ((lo + hi) / 2.0).tolist()
    size = (hi - lo + 2.0 * padding).tolist()
    return [float(c) for c in center], [float(s) for s in size]


def run_vina_scoring(
    sf_name: str,
    receptor_pdbqt_path: str,
    ligands: dict[int, str],
    center: Sequence[float],
    size: Sequence[float],
    cpu: int = 0,
) -> tuple[dict[int, float], dict[int, str], dict[str, float]]:
    """Scores prepared ligands in place with one Vina scoring function.

    Args:
        sf_name: ``"vina"`` or ``"vinardo"``.
        receptor_pdbqt_path: Rigid receptor PDBQT file.
        ligands: Record index -> ligand PDBQT string.
        center: Box center (Å).
        size: Box edge lengths (Å).
        cpu: Threads for the grid maps (0: all).

    Returns:
        Scores (kcal/mol) and errors by record index, and timings: ``maps_s`` (receptor
        loading and grid maps) and ``score_s`` (sum of the ``score()`` calls alone).
    """
    from vina import Vina

    t0 = time.perf_counter()
    v = Vina(sf_name=sf_name, cpu=cpu, verbosity=0)
    v.set_receptor(rigid_pdbqt_filename=receptor_pdbqt_path)
    v.compute_vina_maps(center=list(center), box_size=list(size))
    maps_s = time.perf_counter() - t0
    scores: dict[int, float] = {}
    errors: dict[int, str] = {}
    score_s = 0.0
    for idx, pdbqt in ligands.items():
        try:
            v.set_ligand_from_string(pdbqt)
            t1 = time.perf_counter()
            energies = v.score()
            score_s += time.perf_counter() - t1
            scores[idx] = float(energies[0])
        except Exception as exc:  # noqa: BLE001
            errors[idx] = _one_line(exc)
    return scores, errors, {"maps_s": maps_s, "score_s": score_s}
