"""MCS-constrained posing of one ligand on a reference pose in a protein pocket (steps
1-4 of :mod:`get_md.datasets.reference_poses`): maximum common substructure, embedding with
a coordinate map, restrained minimisation, least-clashing conformer.

Part of :mod:`get_md.datasets.reference_poses`, which re-exports its public names.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Optional

import numpy as np

from get_md.datasets.pocket_clash import clash_metrics
from get_md.errors import DatasetError

logger = logging.getLogger(__name__)

#: Ligands whose closest protein heavy atom is nearer than this are dropped (Å).
MIN_DISTANCE = 2.0
#: Ligands whose MCS with the reference covers less of their heavy atoms are dropped.
MIN_MCS_FRACTION = 0.5
#: FMCS time limit per ligand (s).
MCS_TIMEOUT = 2
#: Time limit of one distance-geometry call (s): a coordinate map the ligand cannot
#: satisfy otherwise keeps RDKit retrying for many minutes.
EMBED_TIMEOUT = 4


def heavy_xyz(mol, conf_id: int = -1) -> np.ndarray:
    pos = mol.GetConformer(conf_id).GetPositions()
    idx = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    return pos[idx]


def read_reference(sdf_text: str):
    from rdkit import Chem

    mol = Chem.MolFromMolBlock(sdf_text, removeHs=False)
    if mol is None:  # fall back to a partial sanitisation
        mol = Chem.MolFromMolBlock(sdf_text, removeHs=False, sanitize=False)
        if mol is None:
            raise DatasetError("ref_ligand.sdf unreadable")
        mol.UpdatePropertyCache(strict=False)
        Chem.SanitizeMol(mol, Chem.SanitizeFlags.SANITIZE_ALL
                         ^ Chem.SanitizeFlags.SANITIZE_PROPERTIES, catchErrors=True)
    if mol.GetNumConformers() == 0:
        raise DatasetError("ref_ligand.sdf has no coordinates")
    if not any(a.GetAtomicNum() == 1 for a in mol.GetAtoms()):
        mol = Chem.AddHs(mol, addCoords=True)
    for a in mol.GetAtoms():
        a.SetIntProp("full_idx", a.GetIdx())
    heavy = Chem.RemoveHs(mol, sanitize=False)
    heavy.UpdatePropertyCache(strict=False)
    Chem.AssignStereochemistryFrom3D(heavy)
    return mol, heavy


def _ligand_from_smiles(smiles: str):
    """``(heavy, with_h)``: heavy atoms keep their indices in the hydrogenated molecule."""
    from rdkit import Chem

    heavy = Chem.MolFromSmiles(smiles)
    if heavy is None:
        raise DatasetError("SMILES unreadable")
    return heavy, Chem.AddHs(heavy)


def isomeric_key(mol) -> str:
    from rdkit import Chem

    try:
        return Chem.MolToSmiles(Chem.RemoveHs(mol))
    except Exception:  # noqa: BLE001 - RDKit raises several kinds on odd molecules
        return ""


def _mcs_pairs(lig_heavy, ref_heavy, any_atom: bool = False,
               max_matches: int = 3) -> list[list[tuple[int, int]]]:
    """Atom pairings ``[(ligand idx, reference full idx), ...]`` of the MCS, one per
    distinct way the MCS sits in the ligand (symmetry), at most ``max_matches``.
    Elements are compared unless ``any_atom`` (any heavy atom matches any other)."""
    from rdkit import Chem
    from rdkit.Chem import rdFMCS

    compare = (rdFMCS.AtomCompare.CompareAnyHeavyAtom if any_atom
               else rdFMCS.AtomCompare.CompareElements)
    res = rdFMCS.FindMCS([lig_heavy, ref_heavy], timeout=MCS_TIMEOUT, atomCompare=compare,
                         bondCompare=rdFMCS.BondCompare.CompareOrder,
                         ringMatchesRingOnly=True, completeRingsOnly=True)
    if res.numAtoms == 0 or not res.smartsString:
        return []
    patt = Chem.MolFromSmarts(res.smartsString)
    ref_match = ref_heavy.GetSubstructMatch(patt)
    if not ref_match:
        return []
    ref_full = [ref_heavy.GetAtomWithIdx(i).GetIntProp("full_idx") for i in ref_match]
    out: list[list[tuple[int, int]]] = []
    seen: set[frozenset] = set()
    for lig_match in lig_heavy.GetSubstructMatches(patt, uniquify=False, maxMatches=200):
        pairs = sorted(zip(lig_match, ref_full, strict=True))
        key = frozenset(pairs)
        if key in seen:
            continue
        seen.add(key)
        out.append(pairs)
        if len(out) >= max_matches:
            break
    return out


def _chiral_centres(mol) -> dict[int, str]:
    from rdkit import Chem

    return dict(Chem.FindMolChiralCenters(mol, includeUnassigned=False,
                                          useLegacyImplementation=False))


def _stereo_ok(posed, conf_id: int, want: dict[int, str]) -> bool:
    """Whether the conformer's stereocentres have the CIP labels the SMILES asked for."""
    from rdkit import Chem

    if not want:
        return True
    m = Chem.Mol(posed, confId=conf_id)
    m = Chem.RemoveHs(m)
    Chem.AssignStereochemistryFrom3D(m)
    got = _chiral_centres(m)
    return all(got.get(i) == lab for i, lab in want.items())


def _embed(mol, pairs: list[tuple[int, int]], ref_pos: np.ndarray, n_confs: int,
           seed: int) -> list[int]:
    from rdkit.Chem import rdDistGeom
    from rdkit.Geometry import Point3D

    cmap = {li: Point3D(*map(float, ref_pos[ri])) for li, ri in pairs}
    for random_coords in (False, True):
        params = rdDistGeom.ETKDGv3()
        params.randomSeed = seed
        params.numThreads = 1
        params.useRandomCoords = random_coords
        params.enforceChirality = True
        params.timeout = EMBED_TIMEOUT
        params.SetCoordMap(cmap)
        t0 = time.perf_counter()
        ids = [i for i in rdDistGeom.EmbedMultipleConfs(mol, n_confs, params) if i >= 0]
        if ids or time.perf_counter() - t0 > 0.9 * EMBED_TIMEOUT:
            return ids
    return []


def _restrained_minimise(mol, conf_id: int, pairs: list[tuple[int, int]], ref_full,
                         max_iters: int = 1000) -> str:
    """Align on the MCS atoms, move them onto the reference and minimise with them
    restrained there (MMFF94, else UFF); returns the force field's name."""
    from rdkit.Chem import AllChem, rdMolAlign
    from rdkit.Geometry import Point3D

    ref_pos = ref_full.GetConformer().GetPositions()
    rdMolAlign.AlignMol(mol, ref_full, prbCid=conf_id, atomMap=list(pairs))
    conf = mol.GetConformer(conf_id)
    for li, ri in pairs:
        conf.SetAtomPosition(li, Point3D(*map(float, ref_pos[ri])))
    props = AllChem.MMFFGetMoleculeProperties(mol)
    if props is not None and AllChem.MMFFHasAllMoleculeParams(mol):
        ff = AllChem.MMFFGetMoleculeForceField(mol, props, confId=conf_id)
        add, method = ff.MMFFAddPositionConstraint, "MMFF94"
    else:
        ff = AllChem.UFFGetMoleculeForceField(mol, confId=conf_id)
        add, method = ff.UFFAddPositionConstraint, "UFF"
    if ff is None:
        raise DatasetError("no force field")
    for li, _ in pairs:
        add(li, 0.05, 200.0)
    ff.Initialize()
    ff.Minimize(maxIts=max_iters)
    return method


def _rank(cand: tuple) -> tuple[bool, float]:
    """Conformers clear of the protein (closest heavy atom >= MIN_DISTANCE) first, then
    the lowest clash score."""
    return (cand[1] < MIN_DISTANCE, cand[0])


def _search(mol, matches: list[list[tuple[int, int]]], ref_full, pocket_xyz: np.ndarray,
            want: dict[int, str], n_confs: int, seed: int) -> tuple[Optional[tuple], int, int]:
    """Embed, restrain-minimise and score ``n_confs`` conformers spread over the MCS
    matches; returns the best ``(score, min_d, mol, pairs used, force field)`` (or
    ``None``), the number embedded and the number that lost their stereochemistry.

    A match whose conformers all lose the SMILES' stereocentres is retried with those
    centres left out of the coordinate map."""
    from rdkit import Chem

    ref_pos = ref_full.GetConformer().GetPositions()
    n_heavy = mol.GetNumHeavyAtoms()
    per_match = max(1, math.ceil(n_confs / len(matches)))
    best = None
    n_embedded = n_stereo_bad = 0
    for m_i, pairs in enumerate(matches):
        for attempt, use in enumerate((pairs, [p for p in pairs if p[0] not in want])):
            if attempt == 1 and (len(use) == len(pairs) or len(use) / n_heavy < MIN_MCS_FRACTION):
                break
            trial = Chem.Mol(mol)
            ids = _embed(trial, use, ref_pos, per_match, seed + m_i)
            n_embedded += len(ids)
            found = False
            for cid in ids:
                try:
                    method = _restrained_minimise(trial, cid, use, ref_full)
                except Exception as e:  # noqa: BLE001 - force-field set-up can fail
                    logger.debug("minimisation failed: %s", e)
                    continue
                if not _stereo_ok(trial, cid, want):
                    n_stereo_bad += 1
                    continue
                found = True
                score, min_d = clash_metrics(heavy_xyz(trial, cid), pocket_xyz)
                cand = (score, min_d, Chem.Mol(trial, confId=cid), use, method)
                if best is None or _rank(cand) < _rank(best):
                    best = cand
            if found:
                break
    return best, n_embedded, n_stereo_bad


def pose_ligand(smiles: str, ref_full, ref_heavy, pocket_xyz: np.ndarray, n_confs: int = 6,
                seed: int = 0, any_atom_fallback: bool = True,
                rescue_confs: int = 24) -> tuple[Optional[object], dict]:
    """Place one ligand on the reference by MCS-constrained embedding.

    Args:
        smiles: ligand SMILES (explicit hydrogens allowed).
        ref_full: reference ligand with hydrogens and its pocket pose.
        ref_heavy: the same without hydrogens, atoms tagged ``full_idx``.
        pocket_xyz: protein heavy-atom coordinates near the reference.
        n_confs: conformers embedded in all (spread over symmetry-distinct MCS matches).
        seed: random seed of the embedding.
        any_atom_fallback: when the MCS comparing elements covers less than
            :data:`MIN_MCS_FRACTION` of the ligand, retry letting any heavy atom match
            any other (an aza / CH swap in a ring otherwise removes the whole ring from
            the MCS); ``info["mcs_compare"]`` says which was used.
        rescue_confs: when no conformer keeps clear of the protein (closest heavy atom
            at least :data:`MIN_DISTANCE`), this many more are tried (0: none).

    Returns:
        ``(mol, info)``: the posed molecule with hydrogens (one conformer) or ``None``
        when the ligand is dropped, and a dict of ``mcs_size``, ``mcs_fraction``,
        ``mcs_compare``, ``mcs_rmsd``, ``clash_score``, ``min_protein_distance``,
        ``force_field`` and, for a dropped ligand, ``reason``.

    Example:
        >>> ref_full, ref_heavy = read_reference(sdf_text)  # doctest: +SKIP
        >>> mol, info = pose_ligand("c1ccccc1O", ref_full, ref_heavy, pocket)  # doctest: +SKIP
        >>> info["mcs_fraction"]  # doctest: +SKIP
        0.857
    """

    info: dict = {}
    try:
        heavy, mol = _ligand_from_smiles(smiles)
    except ValueError as e:
        return None, {"reason": str(e)}
    n_heavy = heavy.GetNumHeavyAtoms()
    matches = _mcs_pairs(heavy, ref_heavy)
    size = len(matches[0]) if matches else 0
    info["mcs_compare"] = "elements"
    if size / max(n_heavy, 1) < MIN_MCS_FRACTION and any_atom_fallback:
        alt = _mcs_pairs(heavy, ref_heavy, any_atom=True)
        if alt and len(alt[0]) > size:
            matches, size, info["mcs_compare"] = alt, len(alt[0]), "any_heavy_atom"
    info.update(mcs_size=size, mcs_fraction=round(size / max(n_heavy, 1), 4))
    if size / max(n_heavy, 1) < MIN_MCS_FRACTION:
        info["reason"] = f"MCS covers {size}/{n_heavy} heavy atoms (< {MIN_MCS_FRACTION:.0%})"
        return None, info
    want = _chiral_centres(heavy)
    ref_pos = ref_full.GetConformer().GetPositions()
    best, n_embedded, n_stereo_bad = _search(mol, matches, ref_full, pocket_xyz, want,
                                             n_confs, seed)
    if rescue_confs and best is not None and best[1] < MIN_DISTANCE:
        more, n_e, n_s = _search(mol, matches, ref_full, pocket_xyz, want, rescue_confs,
                                 seed + 7919)
        n_embedded, n_stereo_bad = n_embedded + n_e, n_stereo_bad + n_s
        if more is not None and (best is None or _rank(more) < _rank(best)):
            best = more
    if best is None:
        info["reason"] = ("embedding failed" if n_embedded == 0
                          else f"no conformer kept its stereochemistry ({n_stereo_bad} tried)")
        return None, info
    score, min_d, posed, used, method = best
    pos = posed.GetConformer().GetPositions()
    li, ri = zip(*used, strict=True)
    rmsd = float(np.sqrt(((pos[list(li)] - ref_pos[list(ri)]) ** 2).sum(-1).mean()))
    info.update(mcs_size=len(used), mcs_fraction=round(len(used) / n_heavy, 4),
                mcs_rmsd=round(rmsd, 4), clash_score=round(score, 4),
                min_protein_distance=round(min_d, 4), force_field=method)
    if min_d < MIN_DISTANCE:
        info["reason"] = f"closest protein heavy atom at {min_d:.2f} Å (< {MIN_DISTANCE} Å)"
        return None, info
    return posed, info


__all__ = [
    "EMBED_TIMEOUT", "MCS_TIMEOUT", "MIN_DISTANCE", "MIN_MCS_FRACTION", "heavy_xyz", "isomeric_key",
    "pose_ligand", "read_reference",
]
