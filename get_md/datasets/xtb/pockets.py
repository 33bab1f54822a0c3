"""Protein-pocket clusters (60-150 atoms) cut from prolif's GPCR-ligand MD trajectory,
cut bonds capped with hydrogens; frames of a classical MD run, labelled as cut."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from get_md.datasets.xtb.spec import (
    MAX_ABS_CHARGE,
    SOURCE_SAMPLING,
    MolSpec,
    SkipMolecule,
    package_data_path,
    rdkit_modules,
    rng_for,
)

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

            folder = package_data_path("prolif", "data")
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


def cut_cluster(mol, atom_ids: Sequence[int], pos: np.ndarray):
    """Sub-molecule of ``mol`` on ``atom_ids`` at positions ``pos`` (all atoms);
    each bond to a left-out atom becomes a bond to a new H placed along it."""
    Chem, _ = rdkit_modules()
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
        sub = cut_cluster(mol, chosen, pos)
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
    rng = rng_for(seed, "pocket")
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
