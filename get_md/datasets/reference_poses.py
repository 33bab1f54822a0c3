"""Pocket poses for affinity series that give one reference pose and SMILES for the rest.

The Uni-FEP benchmark (``dptech-corp/Uni-FEP-Benchmarks``, Apache-2.0) ships each
congeneric series as a folder ``uni_fep_benchmarks/<Source>|<Target>|<Assay>/`` with a
protein structure (``protein.pdb``), one ligand posed in its pocket (``ref_ligand.sdf``)
and ``result_dG.csv`` listing every ligand of the series by SMILES with its
experimental binding free energy. This module places every ligand of such a series in
the pocket by *MCS-constrained embedding on the reference*:

1. the maximum common substructure (heavy atoms, elements compared, complete rings
   only) between the ligand and the reference is found with :mod:`rdkit.Chem.rdFMCS`;
   when it covers less than half the ligand, the search is repeated letting any heavy
   atom match any other (an aza / CH swap in a ring otherwise removes the whole ring),
   which the ``mcs_compare`` tag records (``elements`` or ``any_heavy_atom``);
2. the ligand (with hydrogens) is embedded several times with distance geometry, the
   MCS atoms held to the reference's internal geometry (a coordinate map), and each
   conformer is aligned on the MCS atoms;
3. each conformer is minimised with MMFF94 (UFF when MMFF lacks parameters), the MCS
   atoms moved onto the reference coordinates and held there by stiff position
   restraints, and conformers whose stereocentres no longer match the SMILES are
   discarded;
4. the conformer with the lowest protein clash score
   ``sum over ligand/protein heavy-atom pairs of max(0, 3.0 Å - d)^2`` wins, the protein
   heavy atoms being those within 12 Å of the reference (waters left out); conformers
   with no protein heavy atom nearer than 2.0 Å rank before any that have one, and when
   none of the first conformers (6 by default) is clear of the protein, 24 more are tried.

A ligand identical to the reference (same isomeric heavy-atom SMILES) keeps the
reference pose as it is. A ligand is dropped, with its reason logged, when the MCS
covers less than half its heavy atoms, when no conformer embeds (or keeps its
stereochemistry), or when its closest protein heavy atom lies nearer than 2.0 Å.

Series of the targets reserved for independent evaluation
(:data:`get_md.datasets.targets.EXCLUDED_TARGETS`) are recognised by folder name and
never read; the cyclic-peptide series are skipped too.

Output, under an output root (resumable: a series whose folder exists is not rebuilt;
each series folder is written under ``<root>/.tmp`` and renamed into place)::

    <root>/<safe series name>/protein.pdb   copy of the source file
    <root>/<safe series name>/ligands.sdf   posed ligands with hydrogens, tagged
                                            (r_exp_dg, smiles, target, series, source,
                                            pose_method, mcs_size, mcs_fraction,
                                            mcs_compare, mcs_rmsd, clash_score,
                                            min_protein_distance)
    <root>/<safe series name>/dropped.csv   ligands left out, with the reason
    <root>/<safe series name>/summary.json  counts and timing of the series
    <root>/manifest.csv                     one row per built series
    <root>/skipped.csv                      series not built (excluded / failed), why

:func:`get_md.datasets.affinity.posed_series` reads the result.

Example:
    >>> from get_md.datasets.reference_poses import build_all
    >>> repo = "/work/.mirror/dptech-corp+Uni-FEP-Benchmarks/repo"
    >>> manifest = build_all(repo, "/work/data/unifep", limit=2)  # doctest: +SKIP
    >>> list(manifest.columns[:6])                                # doctest: +SKIP
    ['folder', 'target', 'n_ligands', 'n_posed', 'n_dropped', 'seconds']

Command line::

    OMP_NUM_THREADS=1 python -m get_md.datasets.reference_poses \\
        --repo /work/.mirror/dptech-corp+Uni-FEP-Benchmarks/repo --out /work/data/unifep
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import re
import shutil
import subprocess
import time
import unicodedata
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd

from get_md.datasets.targets import canonical_target, is_excluded

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Value of the ``source`` tag of every record written here.
SOURCE = "Uni-FEP-Benchmarks ac521c2"
#: Folder of the series inside the benchmark repository.
SERIES_DIR = "uni_fep_benchmarks"
#: Default output root.
DEFAULT_OUT = "/work/data/unifep"

#: Protein heavy atoms farther than this from every reference heavy atom are ignored (Å).
POCKET_CUTOFF = 12.0
#: Distance below which a ligand/protein heavy-atom pair adds to the clash score (Å).
CLASH_DISTANCE = 3.0
#: Ligands whose closest protein heavy atom is nearer than this are dropped (Å).
MIN_DISTANCE = 2.0
#: Ligands whose MCS with the reference covers less of their heavy atoms are dropped.
MIN_MCS_FRACTION = 0.5
#: FMCS time limit per ligand (s).
MCS_TIMEOUT = 2
#: Time limit of one distance-geometry call (s): a coordinate map the ligand cannot
#: satisfy otherwise keeps RDKit retrying for many minutes.
EMBED_TIMEOUT = 4

_WATERS = frozenset({"HOH", "WAT", "H2O", "DOD", "TIP", "TIP3", "TIP4", "SOL", "T3P", "SPC"})
_GREEK = {"α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "κ": "kappa", "μ": "mu"}
_MANIFEST_COLUMNS = ["folder", "target", "n_ligands", "n_posed", "n_dropped", "seconds"]


# --------------------------------------------------------------------------- sources


def _is_git_repo(repo: PathLike) -> bool:
    p = Path(repo)
    return not (p / SERIES_DIR).is_dir() and ((p / "HEAD").is_file() or (p / ".git").exists())


def read_source(repo: PathLike, relpath: str) -> bytes:
    """Bytes of ``relpath`` in ``repo`` (a bare git repository, read at ``HEAD``, or a
    checked-out folder).

    Example:
        >>> path = "uni_fep_benchmarks/ChEMBL|ADK|CHEMBL642224/result_dG.csv"
        >>> read_source(repo, path)[:12]  # doctest: +SKIP
        b'ligand_smile'
    """
    if not _is_git_repo(repo):
        return (Path(repo) / relpath).read_bytes()
    res = subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{relpath}"],
                         capture_output=True, check=False)
    if res.returncode != 0:
        raise FileNotFoundError(f"{relpath}: {res.stderr.decode(errors='replace').strip()}")
    return res.stdout


def list_series(repo: PathLike) -> list[str]:
    """Folder names of the benchmark's series, sorted (names only: nothing is read).

    Example:
        >>> list_series(repo)[:2]  # doctest: +SKIP
        ['ChEMBL|ADK|CHEMBL642224', 'ChEMBL|ADK|CHEMBL642225']
    """
    if not _is_git_repo(repo):
        return sorted(p.name for p in (Path(repo) / SERIES_DIR).iterdir() if p.is_dir())
    res = subprocess.run(["git", "-C", str(repo), "ls-tree", "-d", "-z", "--name-only",
                          f"HEAD:{SERIES_DIR}"], capture_output=True, check=True)
    return sorted(n for n in res.stdout.decode("utf-8").split("\0") if n)


def target_field(folder: str) -> str:
    """The target part of a series folder name (second ``|`` field, else the name).

    Example:
        >>> target_field("ChEMBL|MAPK14|CHEMBL123"), target_field("Merck8|SYK")
        ('MAPK14', 'SYK')
    """
    parts = folder.split("|")
    return parts[1] if len(parts) > 1 else folder


def _transliterate(text: str) -> str:
    for k, v in _GREEK.items():
        text = text.replace(k, v).replace(k.upper(), v)
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def series_target(folder: str) -> str:
    """Canonical target key of a series (Greek letters spelt out first).

    Example:
        >>> series_target("Merck8|HIF-2α"), series_target("Hermite|Eg5")
        ('EPAS1', 'KIF11')
    """
    return canonical_target(_transliterate(target_field(folder)))


def skip_reason(folder: str) -> Optional[str]:
    """Why a series is not built from its name alone, or ``None`` to build it.

    Example:
        >>> skip_reason("ChEMBL|F2|CHEMBL1"), skip_reason("CyclicPeptide|PCSK9")
        ('excluded target', 'cyclic peptide')
    """
    tf = target_field(folder)
    if is_excluded(folder, tf) or is_excluded(_transliterate(folder), _transliterate(tf)):
        return "excluded target"
    if folder.lstrip('"').startswith("CyclicPeptide"):
        return "cyclic peptide"
    if is_excluded(safe_series_name(folder)):
        return "excluded target"
    return None


def safe_series_name(folder: str) -> str:
    """File-system name of a series folder (ASCII letters, digits, ``.+-_``).

    Example:
        >>> safe_series_name("ChEMBL|ADK|CHEMBL642224"), safe_series_name('"Merck8|HIF-2α"')
        ('ChEMBL_ADK_CHEMBL642224', 'Merck8_HIF-2alpha')
    """
    name = re.sub(r"[^A-Za-z0-9.+-]+", "_", _transliterate(folder)).strip("_.")
    return name or "series"


# --------------------------------------------------------------------------- protein


def read_pocket_atoms(pdb_text: str) -> tuple[np.ndarray, list[tuple[str, bool]]]:
    """Heavy-atom coordinates of a PDB's first model, waters and hydrogens left out.

    Alternate locations keep their first occurrence. Returns ``(xyz, keys)`` where
    ``keys[i]`` is ``(residue key, is_hetatm)`` of atom ``i``.

    Example:
        >>> xyz, keys = read_pocket_atoms(read_source(repo, path).decode())  # doctest: +SKIP
        >>> xyz.shape  # doctest: +SKIP
        (2435, 3)
    """
    xyz: list[tuple[float, float, float]] = []
    keys: list[tuple[str, bool]] = []
    seen: set[tuple[str, str]] = set()
    for line in pdb_text.splitlines():
        rec = line[:6]
        if rec.startswith("ENDMDL"):
            break
        if rec not in ("ATOM  ", "HETATM"):
            continue
        resname = line[17:20].strip().upper()
        if resname in _WATERS or line[17:21].strip().upper() in _WATERS:
            continue
        name = line[12:16]
        element = line[76:78].strip().upper() if len(line) >= 78 else ""
        if not element:
            element = re.sub(r"[^A-Za-z]", "", name)[:1].upper()
        if element in ("H", "D"):
            continue
        res_key = f"{line[21]}:{line[22:27].strip()}:{resname}"
        atom_key = (res_key, name)
        if atom_key in seen:
            continue
        seen.add(atom_key)
        try:
            xyz.append((float(line[30:38]), float(line[38:46]), float(line[46:54])))
        except ValueError:
            continue
        keys.append((res_key, rec == "HETATM"))
    return np.asarray(xyz, dtype=float).reshape(-1, 3), keys


def _pocket(pdb_text: str, ref_xyz: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Protein heavy atoms within :data:`POCKET_CUTOFF` of the reference; HETATM residues
    sitting on the reference (an atom within 1 Å: a copy of the ligand) are left out."""
    xyz, keys = read_pocket_atoms(pdb_text)
    if len(xyz) == 0:
        return xyz, []
    d = _min_dist_each(xyz, ref_xyz)
    overlapping = sorted({k for (k, het), di in zip(keys, d, strict=True) if het and di < 1.0})
    keep = d <= POCKET_CUTOFF
    if overlapping:
        keep &= np.array([k not in overlapping for k, _ in keys])
    return xyz[keep], overlapping


def _min_dist_each(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(len(a))
    for i in range(0, len(a), 4096):
        diff = a[i:i + 4096, None, :] - b[None, :, :]
        out[i:i + 4096] = np.sqrt((diff * diff).sum(-1)).min(1)
    return out


def clash_metrics(lig_xyz: np.ndarray, pocket_xyz: np.ndarray) -> tuple[float, float]:
    """Clash score and closest distance between ligand and protein heavy atoms.

    The score is ``sum max(0, CLASH_DISTANCE - d)^2`` over all pairs (Å²).

    Example:
        >>> clash_metrics(np.zeros((1, 3)), np.array([[2.5, 0.0, 0.0]]))
        (0.25, 2.5)
    """
    if len(pocket_xyz) == 0 or len(lig_xyz) == 0:
        return 0.0, math.inf
    diff = lig_xyz[:, None, :] - pocket_xyz[None, :, :]
    d = np.sqrt((diff * diff).sum(-1))
    score = float((np.clip(CLASH_DISTANCE - d, 0.0, None) ** 2).sum())
    return score, float(d.min())


# --------------------------------------------------------------------------- ligands


def _heavy_xyz(mol, conf_id: int = -1) -> np.ndarray:
    pos = mol.GetConformer(conf_id).GetPositions()
    idx = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
    return pos[idx]


def _read_reference(sdf_text: str):
    from rdkit import Chem

    mol = Chem.MolFromMolBlock(sdf_text, removeHs=False)
    if mol is None:  # fall back to a partial sanitisation
        mol = Chem.MolFromMolBlock(sdf_text, removeHs=False, sanitize=False)
        if mol is None:
            raise ValueError("ref_ligand.sdf unreadable")
        mol.UpdatePropertyCache(strict=False)
        Chem.SanitizeMol(mol, Chem.SanitizeFlags.SANITIZE_ALL
                         ^ Chem.SanitizeFlags.SANITIZE_PROPERTIES, catchErrors=True)
    if mol.GetNumConformers() == 0:
        raise ValueError("ref_ligand.sdf has no coordinates")
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
        raise ValueError("SMILES unreadable")
    return heavy, Chem.AddHs(heavy)


def _isomeric_key(mol) -> str:
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
        raise ValueError("no force field")
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
                score, min_d = clash_metrics(_heavy_xyz(trial, cid), pocket_xyz)
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
        >>> ref_full, ref_heavy = _read_reference(sdf_text)  # doctest: +SKIP
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


# --------------------------------------------------------------------------- series


def _fmt(x) -> str:
    if isinstance(x, float):
        return "inf" if math.isinf(x) else f"{x:.4f}"
    return str(x)


def build_series(repo: PathLike, folder: str, out_dir: PathLike, seed: int = 0,
                 n_confs: int = 6, any_atom_fallback: bool = True) -> dict:
    """Pose every ligand of one series and write its output folder.

    The folder is written under ``<parent of out_dir>/.tmp`` and renamed to ``out_dir``
    when complete.

    Args:
        repo: benchmark repository (bare git repository or checked-out folder).
        folder: series folder name, e.g. ``"ChEMBL|ADK|CHEMBL642224"``.
        out_dir: the series' output folder (must not exist).
        seed: random seed of the embeddings.
        n_confs: conformers tried per ligand.
        any_atom_fallback: see :func:`pose_ligand`.

    Returns:
        The series summary (also written to ``summary.json``): ``folder``, ``target``,
        ``n_ligands``, ``n_posed``, ``n_dropped``, ``seconds`` and more.

    Raises:
        ValueError: for a series of an excluded target, or unreadable inputs.

    Example:
        >>> s = build_series(repo, "ChEMBL|ADK|CHEMBL642224", "/tmp/adk")  # doctest: +SKIP
        >>> s["n_posed"], s["n_ligands"]  # doctest: +SKIP
        (9, 9)
    """
    from rdkit import Chem

    why = skip_reason(folder)
    if why is not None:
        raise ValueError(f"{folder}: {why}")
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    target = series_target(folder)
    base = f"{SERIES_DIR}/{folder}"
    pdb_bytes = read_source(repo, f"{base}/protein.pdb")
    ref_full, ref_heavy = _read_reference(read_source(repo, f"{base}/ref_ligand.sdf").decode())
    table = pd.read_csv(io.BytesIO(read_source(repo, f"{base}/result_dG.csv")))
    dg_col = next(c for c in table.columns if c.startswith("exp_dG"))
    pocket_xyz, overlapping = _pocket(pdb_bytes.decode(errors="replace"), _heavy_xyz(ref_full))
    if overlapping:
        logger.info("%s: HETATM residues on the reference left out of the pocket: %s",
                    folder, overlapping)
    ref_key = _isomeric_key(ref_heavy)
    ref_clash, ref_min_d = clash_metrics(_heavy_xyz(ref_full), pocket_xyz)

    posed: list = []
    dropped: list[dict] = []
    n_reference = 0
    for smiles, name, dg in zip(table["ligand_smiles"].astype(str),
                                table["ligand_name"].astype(str),
                                pd.to_numeric(table[dg_col], errors="coerce"), strict=True):
        if not np.isfinite(dg):
            dropped.append({"ligand_name": name, "smiles": smiles, "reason": "no exp_dG"})
            continue
        heavy = Chem.MolFromSmiles(smiles)
        if heavy is not None and ref_key and Chem.MolToSmiles(heavy) == ref_key:
            mol = Chem.Mol(ref_full)
            info = {"mcs_size": heavy.GetNumHeavyAtoms(), "mcs_fraction": 1.0,
                    "mcs_compare": "elements", "mcs_rmsd": 0.0,
                    "clash_score": round(ref_clash, 4), "min_protein_distance": round(ref_min_d, 4),
                    "pose_method": "reference"}
            n_reference += 1
        else:
            try:
                mol, info = pose_ligand(smiles, ref_full, ref_heavy, pocket_xyz,
                                        n_confs=n_confs, seed=seed,
                                        any_atom_fallback=any_atom_fallback)
            except Exception as e:  # noqa: BLE001 - one odd ligand must not stop the series
                mol, info = None, {"reason": f"error: {type(e).__name__}: {e}"}
            info["pose_method"] = "mcs_embed"
        if mol is None:
            logger.info("%s: dropped %s: %s", folder, name, info.get("reason"))
            dropped.append({"ligand_name": name, "smiles": smiles, **info})
            continue
        for k in list(mol.GetPropNames()):
            mol.ClearProp(k)
        mol.SetProp("_Name", name)
        tags = {"r_exp_dg": float(dg), "smiles": smiles, "target": target, "series": folder,
                "source": SOURCE, "pose_method": info["pose_method"],
                "mcs_size": info["mcs_size"], "mcs_fraction": info["mcs_fraction"],
                "mcs_compare": info["mcs_compare"],
                "mcs_rmsd": info["mcs_rmsd"], "clash_score": info["clash_score"],
                "min_protein_distance": info["min_protein_distance"]}
        for k, v in tags.items():
            mol.SetProp(k, _fmt(v))
        posed.append((mol, info))

    seconds = time.perf_counter() - t0
    summary = {
        "folder": folder, "target": target, "n_ligands": int(len(table)),
        "n_posed": len(posed), "n_dropped": len(dropped), "seconds": round(seconds, 2),
        "dir": out_dir.name, "n_reference": n_reference,
        "reference_min_protein_distance": round(ref_min_d, 4),
        "reference_clash_score": round(ref_clash, 4),
        "pocket_atoms": int(len(pocket_xyz)), "hetatm_on_reference": overlapping,
        "n_any_atom_mcs": sum(i.get("mcs_compare") == "any_heavy_atom" for _, i in posed),
        "seed": seed, "n_confs": n_confs, "any_atom_fallback": any_atom_fallback,
        "source": SOURCE,
    }
    _write_series(out_dir, pdb_bytes, [m for m, _ in posed], dropped, summary)
    return summary


def _write_series(out_dir: Path, pdb_bytes: bytes, mols: Sequence, dropped: list[dict],
                  summary: dict) -> None:
    from rdkit import Chem

    tmp_root = out_dir.parent / ".tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    tmp = tmp_root / f"{out_dir.name}.{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    (tmp / "protein.pdb").write_bytes(pdb_bytes)
    with Chem.SDWriter(str(tmp / "ligands.sdf")) as w:
        for m in mols:
            w.write(m)
    cols = ["ligand_name", "smiles", "reason", "mcs_size", "mcs_fraction", "mcs_compare",
            "mcs_rmsd",
            "clash_score", "min_protein_distance"]
    with (tmp / "dropped.csv").open("w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        wr.writeheader()
        wr.writerows(dropped)
    (tmp / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    os.rename(tmp, out_dir)


def _build_one(args: tuple) -> tuple[str, Optional[dict], Optional[str]]:
    repo, folder, out_dir, seed, fallback = args
    try:
        return folder, build_series(repo, folder, out_dir, seed=seed,
                                    any_atom_fallback=fallback), None
    except Exception as e:  # noqa: BLE001 - one broken series must not stop the build
        logger.exception("%s failed", folder)
        return folder, None, f"{type(e).__name__}: {e}"


def read_manifest(out_root: PathLike) -> pd.DataFrame:
    """The manifest of the built series under ``out_root`` (from their ``summary.json``).

    Example:
        >>> read_manifest("/work/data/unifep").n_posed.sum()  # doctest: +SKIP
        7012
    """
    rows = []
    for p in sorted(Path(out_root).glob("*/summary.json")):
        s = json.loads(p.read_text())
        rows.append({k: s.get(k) for k in [*_MANIFEST_COLUMNS, "dir", "n_reference"]})
    return pd.DataFrame(rows, columns=[*_MANIFEST_COLUMNS, "dir", "n_reference"])


def build_all(repo: PathLike, out_root: PathLike = DEFAULT_OUT, limit: Optional[int] = None,
              workers: int = 1, seed: int = 0, any_atom_fallback: bool = True) -> pd.DataFrame:
    """Build every series of the benchmark not excluded, skipping those already built.

    Writes ``manifest.csv`` (built series) and ``skipped.csv`` (excluded, skipped and
    failed series with the reason) under ``out_root``.

    Args:
        repo: benchmark repository (bare git repository or checked-out folder).
        out_root: output root.
        limit: build (or find built) at most this many series, in name order.
        workers: worker processes (1: in this process).
        seed: random seed of the embeddings.
        any_atom_fallback: see :func:`pose_ligand`.

    Returns:
        The manifest: one row per built series (``folder``, ``target``, ``n_ligands``,
        ``n_posed``, ``n_dropped``, ``seconds``, ``dir``, ``n_reference``);
        ``.attrs["skipped"]`` lists ``(folder, reason)`` of the others.

    Example:
        >>> df = build_all(repo, "/tmp/unifep", limit=3)  # doctest: +SKIP
        >>> int(df.n_posed.sum()) > 0  # doctest: +SKIP
        True
    """
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    skipped: list[tuple[str, str]] = []
    todo: list[tuple] = []
    names: dict[str, str] = {}
    n_taken = 0
    for folder in list_series(repo):
        why = skip_reason(folder)
        if why is not None:
            skipped.append((folder, why))
            continue
        if limit is not None and n_taken >= limit:
            continue
        n_taken += 1
        safe = safe_series_name(folder)
        if safe in names:
            raise ValueError(f"series {folder!r} and {names[safe]!r} share the name {safe}")
        names[safe] = folder
        if (out_root / safe).exists():
            continue
        todo.append((str(repo), folder, str(out_root / safe), seed, any_atom_fallback))
    logger.info("%d series to build, %d already built, %d skipped", len(todo),
                n_taken - len(todo), len(skipped))

    def done(folder: str, summary: Optional[dict], err: Optional[str], i: int) -> None:
        if summary is None:
            skipped.append((folder, f"failed: {err}"))
        else:
            logger.info("[%d/%d] %s: %d/%d posed in %.1f s", i, len(todo), folder,
                        summary["n_posed"], summary["n_ligands"], summary["seconds"])

    if workers <= 1:
        for i, args in enumerate(todo, 1):
            done(*_build_one(args), i)
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=workers) as pool:
            futs = [pool.submit(_build_one, a) for a in todo]
            for i, fut in enumerate(as_completed(futs), 1):
                done(*fut.result(), i)

    manifest = read_manifest(out_root)
    manifest = manifest[manifest.folder.isin(names.values())].reset_index(drop=True) \
        if limit is not None else manifest
    _atomic_csv(read_manifest(out_root), out_root / "manifest.csv")
    _atomic_csv(pd.DataFrame(skipped, columns=["folder", "reason"]), out_root / "skipped.csv")
    manifest.attrs["skipped"] = skipped
    return manifest


def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: ``python -m get_md.datasets.reference_poses --repo R --out O``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", required=True, help="Uni-FEP-Benchmarks repository (bare or not)")
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"output root (default {DEFAULT_OUT})")
    ap.add_argument("--limit", type=int, default=None, help="at most this many series")
    ap.add_argument("--workers", type=int, default=1, help="worker processes")
    ap.add_argument("--seed", type=int, default=0, help="embedding seed")
    ap.add_argument("--elements-only", action="store_true",
                    help="no any-heavy-atom MCS fallback for ligands below 50%% coverage")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    df = build_all(args.repo, args.out, limit=args.limit, workers=args.workers, seed=args.seed,
                   any_atom_fallback=not args.elements_only)
    failed = [s for s in df.attrs["skipped"] if s[1].startswith("failed")]
    print(f"{len(df)} series built, {int(df.n_posed.sum())} ligands posed, "
          f"{int(df.n_dropped.sum())} dropped; {len(df.attrs['skipped']) - len(failed)} "
          f"series skipped, {len(failed)} failed")
    return 0


__all__ = [
    "SOURCE", "build_all", "build_series", "clash_metrics", "list_series", "main",
    "pose_ligand", "read_manifest", "read_pocket_atoms", "read_source", "safe_series_name",
    "series_target", "skip_reason", "target_field",
]

if __name__ == "__main__":
    raise SystemExit(main())
