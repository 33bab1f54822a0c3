"""Small congeneric series for the affinity tests, made from prolif's Vina poses."""

from __future__ import annotations

from pathlib import Path

from rdkit import Chem

from get_md.datasets.affinity import DG_TAG


def _analogue(mol: Chem.Mol, k: int) -> Chem.Mol:
    """``mol`` with its first ``k`` hydrogens on carbon made fluorines: a different compound
    (a congeneric series from one set of poses)."""
    rw = Chem.RWMol(mol)
    hs = [a.GetIdx() for a in rw.GetAtoms()
          if a.GetAtomicNum() == 1 and a.GetNeighbors()[0].GetAtomicNum() == 6][:k]
    for i in hs:
        rw.GetAtomWithIdx(i).SetAtomicNum(9)
    out = rw.GetMol()
    Chem.SanitizeMol(out)
    return out


def _sdf_with_dg(src: Path, out: Path, dgs: list[float], names: list[str]) -> Path:
    """The first poses of ``src`` as analogues (pose ``i`` with ``i`` fluorines), tagged."""
    mols = [_analogue(m, i) for i, m in enumerate(Chem.SDMolSupplier(str(src), removeHs=False))][: len(dgs)]
    with Chem.SDWriter(str(out)) as w:
        for m, dg, name in zip(mols, dgs, names, strict=True):
            m.SetProp("_Name", name)
            m.SetProp(DG_TAG, str(dg))
            w.write(m)
    return out
