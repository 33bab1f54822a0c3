"""GFN2-xTB labelled training data for get_md's default organic / biomolecular potential.

The generator picks molecules from offline sources (QM9 SMILES, the NCI set and
the kinase-ligand SDFs shipped with RDKit, MiniDrugBank from openmmforcefields,
capped and free small peptides built here, and protein-pocket clusters cut from
prolif's GPCR-ligand trajectory), makes thermally distorted geometries and
labels each with GFN2-xTB energy (eV) and forces (eV/Å) from tblite.

How geometries are made
-----------------------
Small molecules get a conformer (the file's 3D structure, or RDKit ETKDGv3 +
MMFF94 minimisation) and then a short Langevin (BAOAB) MD run on the MMFF94
surface (UFF where MMFF lacks parameters) at a temperature drawn per
conformer from ``T_RANGE`` (350-800 K); snapshots 50 fs apart after 100 fs of
thermalisation are labelled. Force-field MD costs ~1 ms per step against
20 ms-3 s for one xTB call, so nearly all of the budget goes into labels,
while the snapshots follow a Boltzmann-like distribution (bond stretches,
angle bends and torsions in proportion to their stiffness) rather than
isotropic noise; the hot end covers the distortions an MD run with the
trained potential must stay stable in. Pocket clusters are cut from frames of
a classical MD trajectory, which are thermal already, and labelled as cut.

Each labelled molecule is written to its own ``.npz`` in a store directory
as soon as it is done (atomic rename), skipped molecules are logged to
``skipped.jsonl``; a rerun with the same arguments skips both. ``assemble``
concatenates the store into one compressed file (see :func:`assemble`) and
assigns ``train`` / ``valid`` / ``test`` by molecule: the split is a hash of
the molecule's identity (uncharged, stereo-free canonical SMILES, so the same
compound met in two sources, as two conformers or as two protonation states,
lands in one split; for pocket clusters the centre residue).

Example:
    >>> from get_md.train.xtb_data import smiles_specs, generate, assemble
    >>> specs = smiles_specs(["O", "C"], n_frames=2)        # doctest: +SKIP
    >>> generate(specs, "/tmp/store", seed=0)               # doctest: +SKIP
    >>> data = assemble("/tmp/store", "/tmp/tiny.npz", seed=0)  # doctest: +SKIP

Command line (the shipped file was made with the command in
``get_md/zoo/data/README.md``)::

    OMP_NUM_THREADS=1 python -m get_md.train.xtb_data --out get_md/zoo/data/xtb_organic_v1.npz \\
        --store /tmp/xtb_store --n-molecules 2698 --seed 0
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from get_md.atomic import atomic_output

log = logging.getLogger("get_md.train.xtb_data")

#: Elements the potential is trained for: H C N O F P S Cl Br I.
ALLOWED_Z = frozenset({1, 6, 7, 8, 9, 15, 16, 17, 35, 53})
#: MD temperature range (K) for force-field sampling, drawn per conformer.
T_RANGE = (350.0, 800.0)
#: Frames whose largest xTB force component exceeds this (eV/Å) are dropped as outliers.
MAX_FORCE = 30.0
SPLITS = ("train", "valid", "test")

# BAOAB settings for the force-field MD (fs, 1/fs, steps).
MD_DT = 0.5
MD_GAMMA = 0.02
MD_EQUIL_STEPS = 200
MD_STRIDE = 100
# (kcal/mol/Å)/amu -> Å/fs²
_ACC = 4.184e-4
_KB_KCAL = 0.0019872041  # kcal/mol/K

# Default molecules per source (``--n-molecules`` scales these).
DEFAULT_PLAN: Dict[str, int] = {
    "qm9": 1200,
    "nci": 420,
    "minidrugbank": 371,
    "cdk2": 47,
    "egfr": 150,
    "peptide": 260,
    "pocket": 250,
}
# Conformers per molecule and labelled frames per conformer, per source.
SOURCE_SAMPLING: Dict[str, Tuple[int, int]] = {
    "qm9": (1, 2),
    "nci": (1, 3),
    "minidrugbank": (2, 2),  # the file's conformer + one ETKDG conformer
    "cdk2": (1, 3),
    "egfr": (1, 3),
    "peptide": (1, 3),
    "pocket": (1, 1),
}
MAX_ABS_CHARGE = {"pocket": 2}
DEFAULT_MAX_ABS_CHARGE = 1


class SkipMolecule(Exception):
    """Raised for a molecule that cannot be labelled (reason in the message)."""


# ----------------------------------------------------------------------------- specs


@dataclass
class MolSpec:
    """One molecule to label.

    ``build(rng)`` returns an RDKit molecule with explicit hydrogens and at
    least one 3D conformer. With ``md=True`` each conformer seeds a force-field
    MD run giving ``n_frames`` snapshots; with ``md=False`` the conformers are
    labelled as they are. ``n_conformers`` counts conformers wanted in total
    (file conformer included); missing ones come from ETKDG.
    """

    key: str
    build: Callable[[np.random.Generator], Any]
    n_conformers: int = 1
    n_frames: int = 3
    md: bool = True
    max_abs_charge: int = DEFAULT_MAX_ABS_CHARGE
    group: Optional[str] = None  # split identity; default: canonical SMILES
    info: Dict[str, Any] = field(default_factory=dict)


def _rng_for(seed: int, name: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``name`` (stable under reordering)."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode())])


def _rdkit():
    from rdkit import Chem, RDLogger
    from rdkit.Chem import AllChem

    RDLogger.DisableLog("rdApp.*")
    return Chem, AllChem


def _from_smiles(smiles: str):
    def build(rng: np.random.Generator):
        Chem, _ = _rdkit()
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            raise SkipMolecule(f"SMILES does not parse: {smiles}")
        return Chem.AddHs(mol)

    return build


def _from_mol(molblock: str):
    def build(rng: np.random.Generator):
        Chem, _ = _rdkit()
        mol = Chem.MolFromMolBlock(molblock, removeHs=False)
        if mol is None:
            raise SkipMolecule("mol block does not parse")
        if not any(a.GetAtomicNum() == 1 for a in mol.GetAtoms()):
            mol = Chem.AddHs(mol, addCoords=True)
        return mol

    return build


def smiles_specs(smiles: Sequence[str], n_frames: int = 2, n_conformers: int = 1,
                 prefix: str = "smiles") -> List[MolSpec]:
    """Specs for a list of SMILES (ETKDG conformers, MMFF MD frames); used by tests."""
    return [
        MolSpec(key=f"{prefix}:{i}", build=_from_smiles(s), n_conformers=n_conformers,
                n_frames=n_frames, info={"smiles": s})
        for i, s in enumerate(smiles)
    ]


def _pick(n_total: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """The first ``n`` of a seeded permutation (prefix-stable when n grows)."""
    return rng.permutation(n_total)[: min(n, n_total)]


def _data_path(package: str, *parts: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed")
    return Path(list(spec.submodule_search_locations)[0], *parts)


def qm9_specs(n: int, seed: int) -> List[MolSpec]:
    """QM9 molecules (SMILES read from qm9pack's CSV; geometries regenerated by ETKDG)."""
    import csv

    csv.field_size_limit(10**8)
    folder = _data_path("qm9pack", "data")
    rows: List[Tuple[int, str]] = []
    for part in ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv"):
        with open(folder / part, newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            i_idx, i_smi = header.index("Index"), header.index("SMILES")
            for row in reader:
                rows.append((int(row[i_idx]), row[i_smi]))
    nq, fr = SOURCE_SAMPLING["qm9"]
    out = []
    for j in _pick(len(rows), n, _rng_for(seed, "qm9")):
        idx, smi = rows[int(j)]
        out.append(MolSpec(key=f"qm9:{idx}", build=_from_smiles(smi), n_conformers=nq,
                           n_frames=fr, info={"smiles": smi}))
    return out


def nci_specs(n: int, seed: int, max_heavy: int = 35) -> List[MolSpec]:
    """NCI molecules from RDKit's ``Data/NCI/first_5K.smi``; half of the picks are
    drawn from molecules with F, P, S, Cl, Br or I to cover those elements."""
    Chem, _ = _rdkit()
    from rdkit import RDConfig

    path = Path(RDConfig.RDDataDir, "NCI", "first_5K.smi")
    plain, hetero = [], []
    with open(path) as fh:
        for line in fh:
            parts = line.split()
            if len(parts) < 2:
                continue
            smi, ident = parts[0], parts[1]
            mol = Chem.MolFromSmiles(smi)
            if mol is None or "." in smi or mol.GetNumAtoms() > max_heavy or mol.GetNumAtoms() < 3:
                continue
            zs = {a.GetAtomicNum() for a in mol.GetAtoms()}
            if not zs <= ALLOWED_Z or abs(Chem.GetFormalCharge(mol)) > DEFAULT_MAX_ABS_CHARGE:
                continue
            if any(a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
                continue
            (hetero if zs & {9, 15, 16, 17, 35, 53} else plain).append((ident, smi))
    rng = _rng_for(seed, "nci")
    n_het = min(len(hetero), n // 2)
    picks = [hetero[int(j)] for j in _pick(len(hetero), n_het, rng)]
    picks += [plain[int(j)] for j in _pick(len(plain), n - n_het, rng)]
    nq, fr = SOURCE_SAMPLING["nci"]
    return [MolSpec(key=f"nci:{ident}", build=_from_smiles(smi), n_conformers=nq, n_frames=fr,
                    info={"smiles": smi}) for ident, smi in picks]


def sdf_specs(name: str, path: Path, n: int, seed: int) -> List[MolSpec]:
    """Molecules from a 3D SDF with hydrogens; the file's conformer is the first."""
    Chem, _ = _rdkit()
    blocks = []
    for i, mol in enumerate(Chem.SDMolSupplier(str(path), removeHs=False, sanitize=True)):
        if mol is None:
            log.warning("%s: record %d does not parse, skipped", path, i)
            continue
        blocks.append((i, mol.GetProp("_Name") if mol.HasProp("_Name") else "",
                       Chem.MolToMolBlock(mol)))
    nq, fr = SOURCE_SAMPLING[name]
    out = []
    for j in sorted(int(k) for k in _pick(len(blocks), n, _rng_for(seed, name))):
        i, title, block = blocks[j]
        out.append(MolSpec(key=f"{name}:{i}", build=_from_mol(block), n_conformers=nq,
                           n_frames=fr, info={"title": title}))
    return out


def minidrugbank_specs(n: int, seed: int) -> List[MolSpec]:
    return sdf_specs("minidrugbank", _data_path("openmmforcefields", "data", "minidrugbank",
                                                "MiniDrugBank.sdf"), n, seed)


def cdk2_specs(n: int, seed: int) -> List[MolSpec]:
    from rdkit import RDConfig

    return sdf_specs("cdk2", Path(RDConfig.RDContribDir, "Fastcluster", "testdata", "cdk2.sdf"),
                     n, seed)


def egfr_specs(n: int, seed: int) -> List[MolSpec]:
    from rdkit import RDConfig

    return sdf_specs("egfr", Path(RDConfig.RDContribDir, "PBF", "testData", "egfr.sdf"), n, seed)


# Residue fragments "N[C@@H](side chain)C(=O)" for L-amino acids; charged variants
# for K, R, D, E, H (HIP). Histidine neutral form is HIE (H on NE2).
_SIDE_CHAINS: Dict[str, Tuple[str, Optional[str]]] = {
    "A": ("C", None), "R": ("CCCNC(=N)N", "CCCNC(N)=[NH2+]"), "N": ("CC(N)=O", None),
    "D": ("CC(=O)O", "CC(=O)[O-]"), "C": ("CS", None), "Q": ("CCC(N)=O", None),
    "E": ("CCC(=O)O", "CCC(=O)[O-]"), "H": ("Cc1c[nH]cn1", "Cc1c[nH]c[nH+]1"),
    "I": ("C(C)CC", None), "L": ("CC(C)C", None), "K": ("CCCCN", "CCCC[NH3+]"),
    "M": ("CCSC", None), "F": ("Cc1ccccc1", None), "S": ("CO", None), "T": ("C(C)O", None),
    "W": ("Cc1c[nH]c2ccccc12", None), "Y": ("Cc1ccc(O)cc1", None), "V": ("C(C)C", None),
}
_AA = "ARNDCQEGHILKMFPSTWYV"


def peptide_smiles(seq: str, termini: str = "capped", charged: Sequence[bool] = ()) -> str:
    """SMILES of a peptide. ``termini``: 'capped' (acetyl / N-methylamide), 'neutral'
    (NH2 ... COOH) or 'zwitterion' (NH3+ ... COO-). ``charged[i]`` picks the charged
    side chain of residue i where it has one.

    >>> peptide_smiles("A")
    'CC(=O)N[C@@H](C)C(=O)NC'
    """
    parts = []
    for i, aa in enumerate(seq):
        if aa == "G":
            res = "NCC(=O)"
        elif aa == "P":
            res = "N1[C@@H](CCC1)C(=O)"
        else:
            neutral, ion = _SIDE_CHAINS[aa]
            side = ion if (ion is not None and i < len(charged) and charged[i]) else neutral
            res = f"N[C@@H]({side})C(=O)"
        parts.append(res)
    body = "".join(parts)
    if termini == "capped":
        return "CC(=O)" + body + "NC"
    if termini == "neutral":
        return body + "O"
    if termini == "zwitterion":
        first = "[NH3+]" if not body.startswith("N1") else "[NH2+]1"
        body = first + body[2 if body.startswith("N1") else 1:]
        return body + "[O-]"
    raise ValueError(f"unknown termini {termini!r}")


def peptide_specs(n: int, seed: int) -> List[MolSpec]:
    """Random mono-, di- and tripeptides (capped, neutral or zwitterionic termini)."""
    Chem, _ = _rdkit()
    rng = _rng_for(seed, "peptide")
    nq, fr = SOURCE_SAMPLING["peptide"]
    out, seen = [], set()
    tries = 0
    while len(out) < n and tries < 50 * n:
        tries += 1
        length = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
        seq = "".join(rng.choice(list(_AA), size=length))
        termini = str(rng.choice(["capped", "neutral", "zwitterion"], p=[0.5, 0.25, 0.25]))
        charged = [bool(rng.random() < 0.5) for _ in seq]
        smi = peptide_smiles(seq, termini, charged)
        mol = Chem.MolFromSmiles(smi)
        if mol is None:
            raise RuntimeError(f"bad peptide SMILES {smi}")
        if abs(Chem.GetFormalCharge(mol)) > DEFAULT_MAX_ABS_CHARGE or mol.GetNumAtoms() > 40:
            continue
        can = Chem.MolToSmiles(mol)
        if can in seen:
            continue
        seen.add(can)
        out.append(MolSpec(key=f"peptide:{seq}:{termini}:{len(out)}", build=_from_smiles(smi),
                           n_conformers=nq, n_frames=fr, info={"smiles": smi, "sequence": seq}))
    return out


# ----------------------------------------------------------------------------- pockets

_POCKET_CACHE: Dict[str, Any] = {}
_CAP_LENGTH = {6: 1.09, 7: 1.01, 8: 0.96, 16: 1.34}


def _prolif_system():
    """prolif's GPCR + ligand trajectory as an RDKit molecule (charges inferred by
    MDAnalysis' RDKit converter) plus the trajectory; cached per process."""
    if "mol" not in _POCKET_CACHE:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import MDAnalysis as mda

            folder = _data_path("prolif", "data")
            u = mda.Universe(str(folder / "top.pdb"), str(folder / "traj.xtc"))
            sel = u.select_atoms("protein or resname LIG")
            mol = sel.convert_to("RDKIT")
        order = np.array([a.GetIntProp("_MDAnalysis_index") for a in mol.GetAtoms()])
        resid = np.array([a.GetPDBResidueInfo().GetResidueNumber() for a in mol.GetAtoms()])
        resname = np.array([a.GetPDBResidueInfo().GetResidueName() for a in mol.GetAtoms()])
        chain = np.array([a.GetPDBResidueInfo().GetChainId() for a in mol.GetAtoms()])
        _POCKET_CACHE.update(u=u, mol=mol, order=order, resid=resid, resname=resname,
                             chain=chain)
    return _POCKET_CACHE


def _frame_positions(system: Dict[str, Any], frame: int) -> np.ndarray:
    u = system["u"]
    u.trajectory[frame]
    return np.asarray(u.atoms.positions, dtype=np.float64)[system["order"]]


def _cut_cluster(mol, atom_ids: Sequence[int], pos: np.ndarray):
    """Sub-molecule of ``mol`` on ``atom_ids`` at positions ``pos`` (all atoms);
    each bond to a left-out atom becomes a bond to a new H placed along it."""
    Chem, _ = _rdkit()
    keep = sorted(set(int(i) for i in atom_ids))
    index = {old: new for new, old in enumerate(keep)}
    rw = Chem.RWMol()
    coords = []
    for old in keep:
        a = mol.GetAtomWithIdx(old)
        na = Chem.Atom(a.GetAtomicNum())
        na.SetFormalCharge(a.GetFormalCharge())
        na.SetIsAromatic(a.GetIsAromatic())
        na.SetNoImplicit(True)
        rw.AddAtom(na)
        coords.append(pos[old])
    for b in mol.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        if i in index and j in index:
            rw.AddBond(index[i], index[j], b.GetBondType())
        elif (i in index) != (j in index):
            inside, outside = (i, j) if i in index else (j, i)
            if b.GetBondType() != Chem.BondType.SINGLE:
                raise SkipMolecule(f"cut through a non-single bond {inside}-{outside}")
            z = mol.GetAtomWithIdx(inside).GetAtomicNum()
            d = pos[outside] - pos[inside]
            h = rw.AddAtom(Chem.Atom(1))
            rw.AddBond(index[inside], h, Chem.BondType.SINGLE)
            coords.append(pos[inside] + d / np.linalg.norm(d) * _CAP_LENGTH.get(z, 1.09))
    out = rw.GetMol()
    Chem.SanitizeMol(out)
    conf = Chem.Conformer(out.GetNumAtoms())
    for k, xyz in enumerate(coords):
        conf.SetAtomPosition(k, [float(x) for x in xyz])
    conf.Set3D(True)
    out.AddConformer(conf, assignId=True)
    return out


def _pocket_builder(frame: int, center: Tuple[str, int], target: int, with_ligand: bool):
    def build(rng: np.random.Generator):
        system = _prolif_system()
        mol, resid, resname, chain = (system[k] for k in ("mol", "resid", "resname", "chain"))
        pos = _frame_positions(system, frame)
        res_keys = np.array([f"{c}:{n}:{r}" for c, n, r in zip(chain, resname, resid, strict=True)])
        heavy = np.array([a.GetAtomicNum() > 1 for a in mol.GetAtoms()])
        lig_mask = resname == "LIG"
        core = (chain == center[0]) & (resid == center[1]) & ~lig_mask
        if with_ligand:
            core = core | lig_mask
        # distance of every residue to the core (closest heavy-heavy pair)
        core_xyz = pos[core & heavy]
        cand = [k for k in dict.fromkeys(res_keys[~core])]
        dist = {}
        for k in cand:
            m = (res_keys == k) & heavy
            d = np.linalg.norm(pos[m][:, None, :] - core_xyz[None, :, :], axis=-1)
            dist[k] = float(d.min())
        chosen = list(np.flatnonzero(core))
        n_atoms = len(chosen) + 2  # about two caps per residue
        for k in sorted(cand, key=dist.__getitem__):
            if dist[k] > 6.0:
                break
            m = np.flatnonzero(res_keys == k)
            if n_atoms + len(m) + 2 > target:
                continue
            chosen.extend(m.tolist())
            n_atoms += len(m) + 2
        sub = _cut_cluster(mol, chosen, pos)
        return sub

    return build


def pocket_specs(n: int, seed: int, pocket_radius: float = 8.0) -> List[MolSpec]:
    """Clusters of 60-150 atoms cut from prolif's GPCR-ligand MD trajectory: a pocket
    residue (or the ligand) and its nearest whole residues, cut bonds capped with H."""
    system = _prolif_system()
    resid, resname, chain = system["resid"], system["resname"], system["chain"]
    mol = system["mol"]
    heavy = np.array([a.GetAtomicNum() > 1 for a in mol.GetAtoms()])
    pos0 = _frame_positions(system, 0)
    lig = (resname == "LIG") & heavy
    centers = []
    for c, rn, r in dict.fromkeys(zip(chain, resname, resid, strict=True)):
        if rn == "LIG":
            continue
        m = (chain == c) & (resid == r) & heavy
        d = np.linalg.norm(pos0[m][:, None] - pos0[lig][None], axis=-1).min()
        if d < pocket_radius:
            centers.append((str(c), int(r), str(rn)))
    n_frames = len(system["u"].trajectory)
    rng = _rng_for(seed, "pocket")
    nq, fr = SOURCE_SAMPLING["pocket"]
    out = []
    for i in range(n):
        frame = int(rng.integers(n_frames))
        with_ligand = bool(rng.random() < 0.25)
        target = int(rng.integers(100, 151)) if with_ligand else int(rng.integers(60, 151))
        c, r, rn = centers[int(rng.integers(len(centers)))]
        group = f"prolif_pocket:{'LIG+' if with_ligand else ''}{c}:{rn}{r}"
        key = f"pocket:{i}"
        out.append(MolSpec(
            key=key, build=_pocket_builder(frame, (c, r), target, with_ligand), n_conformers=nq,
            n_frames=fr, md=False, max_abs_charge=MAX_ABS_CHARGE["pocket"], group=group,
            info={"traj_frame": frame, "center": f"{c}:{rn}{r}", "with_ligand": with_ligand,
                  "target_atoms": target}))
    return out


SOURCES: Dict[str, Callable[[int, int], List[MolSpec]]] = {
    "qm9": qm9_specs,
    "nci": nci_specs,
    "minidrugbank": minidrugbank_specs,
    "cdk2": cdk2_specs,
    "egfr": egfr_specs,
    "peptide": peptide_specs,
    "pocket": pocket_specs,
}


def plan_specs(plan: Dict[str, int], seed: int) -> List[MolSpec]:
    """Specs for every source in ``plan`` (source name -> number of molecules)."""
    specs: List[MolSpec] = []
    for name, n in plan.items():
        if n <= 0:
            continue
        if name not in SOURCES:
            raise ValueError(f"unknown source {name!r}; known: {sorted(SOURCES)}")
        got = SOURCES[name](n, seed)
        log.info("source %s: %d molecules", name, len(got))
        specs.extend(got)
    return specs


# ----------------------------------------------------------------------------- geometry


def _force_field(mol, conf_id: int):
    _, AllChem = _rdkit()
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
    _, AllChem = _rdkit()
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


# ----------------------------------------------------------------------------- labels


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
    Chem, _ = _rdkit()
    from rdkit.Chem.MolStandardize import rdMolStandardize

    m = Chem.RemoveHs(mol)
    try:
        m = rdMolStandardize.Uncharger().uncharge(m)
    except Exception:  # noqa: BLE001 - fall back to the charged form
        pass
    return Chem.MolToSmiles(m, isomericSmiles=False)


def label_molecule(spec: MolSpec, seed: int) -> Dict[str, Any]:
    """Build, sample and label one molecule; raises :class:`SkipMolecule`."""
    Chem, _ = _rdkit()
    rng = _rng_for(seed, spec.key)
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


# ----------------------------------------------------------------------------- store


def _safe_name(key: str) -> str:
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)
    return f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:8]}.npz"


def _atomic_savez(path: Path, **arrays: Any) -> None:
    with atomic_output(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def _skipped(store: Path) -> Dict[str, str]:
    out: Dict[str, str] = {}
    p = store / "skipped.jsonl"
    if p.exists():
        for line in p.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a torn last line from an interruption
                continue
            out[rec["key"]] = rec["reason"]
    return out


def done_keys(store: str | os.PathLike) -> set:
    """Keys of the molecules labelled in ``store``."""
    store = Path(store)
    keys = set()
    for p in store.glob("*.npz"):
        if p.name.startswith(".tmp-"):
            continue
        with np.load(p) as z:
            keys.add(str(z["key"]))
    return keys


def generate(specs: Sequence[MolSpec], store: str | os.PathLike, seed: int,
             retry_skipped: bool = False, time_limit_s: Optional[float] = None) -> Dict[str, int]:
    """Label ``specs`` into ``store`` (one ``.npz`` per molecule); molecules already
    labelled, or skipped before (unless ``retry_skipped``), are not recomputed.
    Returns counts: done (already there), new, skipped, geometries (new)."""
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    skipped = {} if retry_skipped else _skipped(store)
    have = {p.name for p in store.glob("*.npz")}
    todo = [s for s in specs if _safe_name(s.key) not in have and s.key not in skipped]
    counts = {"done": len(specs) - len(todo), "new": 0, "skipped": 0, "geometries": 0}
    log.info("%d molecules: %d already labelled or skipped, %d to do", len(specs),
             counts["done"], len(todo))
    t0 = time.time()
    for i, spec in enumerate(todo):
        if time_limit_s is not None and time.time() - t0 > time_limit_s:
            log.warning("time limit reached after %d molecules; rerun to resume", i)
            break
        t = time.time()
        try:
            rec = label_molecule(spec, seed)
        except SkipMolecule as e:
            log.warning("[%d/%d] %s skipped: %s", i + 1, len(todo), spec.key, e)
            with open(store / "skipped.jsonl", "a") as fh:
                fh.write(json.dumps({"key": spec.key, "reason": str(e)}) + "\n")
            counts["skipped"] += 1
            continue
        rec["seconds"] = time.time() - t
        _atomic_savez(store / _safe_name(spec.key), **rec)
        counts["new"] += 1
        counts["geometries"] += len(rec["energy"])
        log.info("[%d/%d] %s: %d atoms, %d frames, q=%+d, %.2f s (elapsed %.0f s)", i + 1,
                 len(todo), spec.key, len(rec["numbers"]), len(rec["energy"]), rec["charge"],
                 rec["seconds"], time.time() - t0)
    return counts


def split_of(group: str, seed: int, fractions: Tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """Deterministic split of a molecule identity: a hash of (seed, group) in [0, 1)."""
    h = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2.0**64
    if u < fractions[0]:
        return "train"
    if u < fractions[0] + fractions[1]:
        return "valid"
    return "test"


def assemble(store: str | os.PathLike, out: str | os.PathLike, seed: int,
             keys: Optional[Sequence[str]] = None,
             fractions: Tuple[float, float, float] = (0.8, 0.1, 0.1)) -> Dict[str, np.ndarray]:
    """Concatenate the store into one compressed ``.npz`` (written atomically).

    Arrays: ``positions`` [sum N, 3] Å (float32), ``atomic_numbers`` [sum N],
    ``n_atoms`` [M], ``energy`` [M] eV (float64), ``forces`` [sum N, 3] eV/Å
    (float32), ``charge`` [M], ``source`` [M] ("<source>:<id>:conf<c>:frame<k>"),
    ``split`` [M] (train / valid / test by molecule identity), ``molecule`` [M]
    (that identity), ``temperature`` [M] (K of the force-field MD, 0 for
    pocket clusters taken from the trajectory as cut), ``meta`` (JSON string).
    Molecules are ordered by key (or by ``keys``).
    """
    store = Path(store)
    recs = []
    for p in sorted(store.glob("*.npz")):
        if p.name.startswith(".tmp-"):
            continue
        with np.load(p) as z:
            recs.append({k: z[k] for k in z.files})
    if keys is not None:
        order = {k: i for i, k in enumerate(keys)}
        recs = [r for r in recs if str(r["key"]) in order]
        recs.sort(key=lambda r: order[str(r["key"])])
    else:
        recs.sort(key=lambda r: str(r["key"]))
    if not recs:
        raise ValueError(f"{store}: no labelled molecules to assemble")
    pos, zs, nat, en, frc, chg, src, spl, mol, temp = ([] for _ in range(10))
    for r in recs:
        nf, n = r["positions"].shape[:2]
        s = split_of(str(r["group"]), seed, fractions)
        for k in range(nf):
            pos.append(r["positions"][k])
            frc.append(r["forces"][k])
            zs.append(r["numbers"])
        nat += [n] * nf
        en.append(r["energy"])
        chg += [int(r["charge"])] * nf
        src += [str(x) for x in r["frame_ids"]]
        spl += [s] * nf
        mol += [str(r["group"])] * nf
        temp.append(r["temperature"])
    try:
        from importlib.metadata import version

        tbl = version("tblite")
    except Exception:  # noqa: BLE001
        tbl = "unknown"
    data = {
        "positions": np.concatenate(pos).astype(np.float32),
        "atomic_numbers": np.concatenate(zs).astype(np.int8),
        "n_atoms": np.array(nat, dtype=np.int32),
        "energy": np.concatenate(en).astype(np.float64),
        "forces": np.concatenate(frc).astype(np.float32),
        "charge": np.array(chg, dtype=np.int8),
        "source": np.array(src),
        "split": np.array(spl),
        "molecule": np.array(mol),
        "temperature": np.concatenate(temp).astype(np.float32),
        "meta": np.array(json.dumps({
            "method": "GFN2-xTB", "code": f"tblite {tbl}", "units": {"energy": "eV",
            "forces": "eV/Angstrom", "positions": "Angstrom", "charge": "e"},
            "seed": seed, "split_fractions": list(fractions),
            "generator": "get_md.train.xtb_data"})),
    }
    out = Path(out)
    _atomic_savez(out, **data)
    return data


def summary(data: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """Counts and statistics of an assembled dataset (for the README / CLI)."""
    from ase.data import chemical_symbols

    nat = data["n_atoms"]
    zs, cnt = np.unique(data["atomic_numbers"], return_counts=True)
    split = data["split"]
    out: Dict[str, Any] = {
        "geometries": int(len(nat)),
        "molecules": int(len(np.unique(data["molecule"]))),
        "atoms_total": int(nat.sum()),
        "atoms_min": int(nat.min()), "atoms_median": float(np.median(nat)),
        "atoms_max": int(nat.max()),
        "geometries_60_150_atoms": int(((nat >= 60) & (nat <= 150)).sum()),
        "elements": {chemical_symbols[int(z)]: int(c) for z, c in zip(zs, cnt, strict=True)},
        "charges": {int(q): int(c) for q, c in zip(*np.unique(data["charge"], return_counts=True), strict=True)},
    }
    for s in SPLITS:
        m = split == s
        out[f"{s}_geometries"] = int(m.sum())
        out[f"{s}_molecules"] = int(len(np.unique(data["molecule"][m])))
    src = np.array([s.split(":")[0] for s in data["source"]])
    out["by_source"] = {k: int(v) for k, v in zip(*np.unique(src, return_counts=True), strict=True)}
    e_per_atom = data["energy"] / nat
    f = data["forces"]
    fn = np.linalg.norm(f, axis=1)
    out["energy_eV"] = {"min": float(data["energy"].min()), "max": float(data["energy"].max())}
    out["energy_per_atom_eV"] = {"mean": float(e_per_atom.mean()), "std": float(e_per_atom.std()),
                                 "min": float(e_per_atom.min()), "max": float(e_per_atom.max())}
    out["force_component_eV_A"] = {"mean": float(f.mean()), "std": float(f.std()),
                                   "rms": float(np.sqrt((f ** 2).mean())),
                                   "max_abs": float(np.abs(f).max())}
    out["force_norm_eV_A"] = {"mean": float(fn.mean()), "median": float(np.median(fn)),
                              "p99": float(np.percentile(fn, 99)), "max": float(fn.max())}
    return out


# ----------------------------------------------------------------------------- CLI


def scaled_plan(n_molecules: Optional[int], sources: Optional[Sequence[str]] = None) -> Dict[str, int]:
    """DEFAULT_PLAN restricted to ``sources`` and scaled to ``n_molecules`` in total."""
    plan = {k: v for k, v in DEFAULT_PLAN.items() if sources is None or k in sources}
    if n_molecules is None:
        return plan
    total = sum(plan.values())
    scaled = {k: int(round(v * n_molecules / total)) for k, v in plan.items()}
    return {k: max(v, 1) if plan[k] else 0 for k, v in scaled.items()}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m get_md.train.xtb_data",
        description="Generate GFN2-xTB (tblite) energies and forces for organic and "
                    "biomolecular structures; resumable.")
    parser.add_argument("--out", required=True, help="final compressed .npz")
    parser.add_argument("--store", default=None,
                        help="directory of per-molecule results (default: OUT without .npz + '_parts')")
    parser.add_argument("--n-molecules", type=int, default=None,
                        help=f"molecules in total, shared across sources as DEFAULT_PLAN "
                             f"({sum(DEFAULT_PLAN.values())} by default)")
    parser.add_argument("--sources", default=None,
                        help=f"comma-separated subset of {','.join(DEFAULT_PLAN)}, or name=count pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retry-skipped", action="store_true")
    parser.add_argument("--time-limit", type=float, default=None, help="stop after SECONDS (resumable)")
    parser.add_argument("--assemble-only", action="store_true",
                        help="write OUT from the store without labelling more")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    if args.sources and "=" in args.sources:
        plan = {k: int(v) for k, v in (p.split("=") for p in args.sources.split(","))}
    else:
        plan = scaled_plan(args.n_molecules, args.sources.split(",") if args.sources else None)
    store = Path(args.store) if args.store else Path(str(Path(args.out).with_suffix("")) + "_parts")
    t0 = time.time()
    specs = plan_specs(plan, args.seed)
    keys = [s.key for s in specs]
    if not args.assemble_only:
        counts = generate(specs, store, args.seed, retry_skipped=args.retry_skipped,
                          time_limit_s=args.time_limit)
        log.info("labelling: %s in %.0f s", counts, time.time() - t0)
    data = assemble(store, args.out, args.seed, keys=keys)
    info = summary(data)
    info["wall_seconds_this_run"] = round(time.time() - t0, 1)
    info["plan"] = plan
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
