"""Tests of the GFN2-xTB data generator (get_md.train.xtb_data); tiny molecules only."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tblite")
pytest.importorskip("rdkit")

from get_md.train import xtb_data as X  # noqa: E402


def _check_dataset(d, n_mols):
    m = len(d["energy"])
    n = int(d["n_atoms"].sum())
    assert d["positions"].shape == (n, 3)
    assert d["forces"].shape == (n, 3)
    assert d["atomic_numbers"].shape == (n,)
    for k in ("n_atoms", "charge", "source", "split", "molecule", "temperature"):
        assert d[k].shape == (m,), k
    assert np.all(np.isfinite(d["energy"])) and np.all(np.isfinite(d["forces"]))
    assert set(d["split"]) <= {"train", "valid", "test"}
    assert len(set(d["molecule"])) == n_mols
    json.loads(str(d["meta"]))


def test_tiny_molecules_label_and_assemble(tmp_path):
    specs = X.smiles_specs(["O", "C"], n_frames=2)
    counts = X.generate(specs, tmp_path / "store", seed=3)
    assert counts == {"done": 0, "new": 2, "skipped": 0, "geometries": 4}
    d = X.assemble(tmp_path / "store", tmp_path / "out.npz", seed=3)
    _check_dataset(d, 2)
    assert list(d["n_atoms"]) == [3, 3, 5, 5]  # smiles:0 (water) then smiles:1 (methane)
    assert list(d["atomic_numbers"][:3]) == [8, 1, 1]
    assert d["source"][0] == "smiles:0:conf0:frame0" and d["source"][3] == "smiles:1:conf0:frame1"
    # GFN2-xTB total energies: water about -137.9 eV, methane about -113.6 eV
    assert np.allclose(d["energy"][:2], -137.9, atol=0.5)
    assert np.allclose(d["energy"][2:], -113.6, atol=0.5)
    # thermal geometries: forces clearly away from zero, but not absurd
    fmax = np.abs(d["forces"]).max()
    assert 0.05 < fmax < X.MAX_FORCE
    # the two frames of a molecule differ
    assert not np.allclose(d["positions"][:3], d["positions"][3:6])
    # the file on disk holds the same arrays, loadable without pickle
    with np.load(tmp_path / "out.npz") as z:
        assert np.array_equal(z["energy"], d["energy"])
        assert z["source"].dtype.kind == "U"


def test_forces_are_minus_gradient_of_energy():
    rng = np.random.default_rng(0)
    numbers = np.array([8, 1, 1])
    pos = np.array([[0.0, 0.0, 0.12], [0.0, 0.76, -0.47], [0.0, -0.76, -0.47]])
    pos = pos + 0.05 * rng.standard_normal(pos.shape)
    e0, f = X.xtb_label(numbers, pos, charge=0)
    h = 1e-4
    for atom, axis in ((0, 2), (1, 1)):
        plus, minus = pos.copy(), pos.copy()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        ep, _ = X.xtb_label(numbers, plus, charge=0)
        em, _ = X.xtb_label(numbers, minus, charge=0)
        fd = -(ep - em) / (2 * h)
        assert abs(fd - f[atom, axis]) < 1e-3, (atom, axis, fd, f[atom, axis])
    assert abs(f[0, 2]) > 0.05  # a displaced geometry, so the check is not trivial


def _fake_record(store, key, group, n_frames=2, n_atoms=3):
    X._atomic_savez(
        store / X._safe_name(key), key=key, group=group, smiles="O", charge=0,
        numbers=np.array([8, 1, 1][:n_atoms]),
        positions=np.zeros((n_frames, n_atoms, 3), np.float32),
        energy=np.arange(n_frames, dtype=np.float64),
        forces=np.zeros((n_frames, n_atoms, 3), np.float32),
        frame_ids=np.array([f"{key}:conf0:frame{k}" for k in range(n_frames)]),
        temperature=np.full(n_frames, 500.0, np.float32), info="{}")


def test_split_is_by_molecule(tmp_path):
    store = tmp_path / "store"
    groups = [f"smi:C{'C' * i}O" for i in range(60)]
    for i, g in enumerate(groups):
        _fake_record(store, f"src:{i}", g, n_frames=3)
        if i % 7 == 0:  # the same compound again from another source: must share the split
            _fake_record(store, f"other:{i}", g, n_frames=1)
    d = X.assemble(store, tmp_path / "out.npz", seed=0)
    by_mol = {}
    for mol, s in zip(d["molecule"], d["split"], strict=True):
        by_mol.setdefault(str(mol), set()).add(str(s))
    assert all(len(s) == 1 for s in by_mol.values())
    sets = {s: {m for m, ss in by_mol.items() if s in ss} for s in X.SPLITS}
    assert not (sets["train"] & sets["test"]) and not (sets["train"] & sets["valid"])
    assert not (sets["valid"] & sets["test"])
    # the split is deterministic and about 80/10/10 over many molecules
    many = [X.split_of(f"smi:{i}", seed=0) for i in range(4000)]
    frac = {s: many.count(s) / len(many) for s in X.SPLITS}
    assert abs(frac["train"] - 0.8) < 0.03 and abs(frac["test"] - 0.1) < 0.03
    assert many == [X.split_of(f"smi:{i}", seed=0) for i in range(4000)]
    # protonation states and stereo share one identity
    from rdkit import Chem

    zw = Chem.AddHs(Chem.MolFromSmiles("[NH3+]CC([O-])=O"))
    neutral = Chem.AddHs(Chem.MolFromSmiles("NCC(O)=O"))
    assert X.canonical_identity(zw) == X.canonical_identity(neutral)
    r = Chem.MolFromSmiles("C[C@H](N)C(=O)O")
    s = Chem.MolFromSmiles("C[C@@H](N)C(=O)O")
    assert X.canonical_identity(r) == X.canonical_identity(s)


def test_resume_skips_done_and_skipped(tmp_path):
    store = tmp_path / "store"
    specs = X.smiles_specs(["O", "C[Si](C)(C)C"], n_frames=1)
    counts = X.generate(specs, store, seed=0)
    assert counts["new"] == 1 and counts["skipped"] == 1
    reasons = [json.loads(line) for line in (store / "skipped.jsonl").read_text().splitlines()]
    assert reasons[0]["key"] == "smiles:1" and "elements" in reasons[0]["reason"]
    before = {p.name: p.stat().st_mtime_ns for p in store.glob("*.npz")}

    calls = []

    def must_not_build(rng):
        calls.append(1)
        raise AssertionError("a labelled or skipped molecule was rebuilt")

    again = [X.MolSpec(key=s.key, build=must_not_build, n_frames=1) for s in specs]
    counts = X.generate(again, store, seed=0)
    assert counts == {"done": 2, "new": 0, "skipped": 0, "geometries": 0}
    assert not calls
    assert {p.name: p.stat().st_mtime_ns for p in store.glob("*.npz")} == before
    # a new molecule in the list is labelled, the old ones still are not
    more = again + X.smiles_specs(["C"], n_frames=1, prefix="extra")
    counts = X.generate(more, store, seed=0)
    assert counts["new"] == 1 and counts["done"] == 2 and not calls
    assert X.done_keys(store) == {"smiles:0", "extra:0"}


def test_charge_and_electron_checks(tmp_path):
    specs = [
        X.MolSpec(key="radical", build=X._from_smiles("[CH3]"), n_frames=1),
        X.MolSpec(key="dication", build=X._from_smiles("C[N+](C)(C)CC[N+](C)(C)C"),
                  n_frames=1),
    ]
    for spec in specs:
        with pytest.raises(X.SkipMolecule):
            X.label_molecule(spec, seed=0)


def test_peptide_smiles_and_cluster_cut():
    from rdkit import Chem
    from rdkit.Chem import AllChem

    for termini, q in (("capped", 0), ("neutral", 0), ("zwitterion", 0)):
        mol = Chem.MolFromSmiles(X.peptide_smiles("PKD", termini, charged=[False, True, True]))
        assert mol is not None and Chem.GetFormalCharge(mol) == q
    assert Chem.GetFormalCharge(Chem.MolFromSmiles(X.peptide_smiles("K", charged=[True]))) == 1

    # cut the middle residue out of a tripeptide: two H caps, sane valences
    mol = Chem.AddHs(Chem.MolFromSequence("GAG"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    pos = mol.GetConformer().GetPositions()
    resnum = [a.GetPDBResidueInfo().GetResidueNumber() if a.GetPDBResidueInfo() else None
              for a in mol.GetAtoms()]
    # hydrogens inherit the residue of their heavy atom
    for a in mol.GetAtoms():
        if a.GetAtomicNum() == 1:
            resnum[a.GetIdx()] = resnum[a.GetNeighbors()[0].GetIdx()]
    ala = [i for i, r in enumerate(resnum) if r == 2]
    sub = X._cut_cluster(mol, ala, pos)
    assert sub.GetNumAtoms() == len(ala) + 2
    assert Chem.GetFormalCharge(sub) == 0
    caps = [a for a in sub.GetAtoms() if a.GetIdx() >= len(ala)]
    assert all(a.GetAtomicNum() == 1 for a in caps)
    xyz = sub.GetConformer().GetPositions()
    for a in caps:
        nb = a.GetNeighbors()[0]
        assert 0.9 < np.linalg.norm(xyz[a.GetIdx()] - xyz[nb.GetIdx()]) < 1.2


def test_generator_lives_in_datasets_and_old_module_reexports_it():
    """The generator is ``get_md.datasets.xtb`` (modules under 600 lines); the old module
    ``get_md.train.xtb_data`` (named in stored commands) re-exports the same objects and
    still runs as ``python -m get_md.train.xtb_data``; the shipped data and its README sit in
    ``get_md/datasets/data/``, which pyproject.toml installs as package data."""
    import subprocess
    import sys
    from pathlib import Path

    import get_md.datasets.xtb as new
    from get_md.datasets import DATA_DIR

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    assert all(getattr(X, name) is getattr(new, name) for name in new.__all__)
    assert X.SkipMolecule.__module__ == "get_md.datasets.xtb.spec"
    for path in Path(new.__file__).parent.glob("*.py"):
        assert len(path.read_text().splitlines()) < 600, path
    for module in ("get_md.train.xtb_data", "get_md.datasets.xtb"):
        out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0 and "--n-molecules" in out.stdout, (module, out.stderr[-500:])
    assert (DATA_DIR / "xtb_organic_v2.npz").is_file() and (DATA_DIR / "README.md").is_file()
    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "get_md.datasets.xtb" in project["packages"]
    assert "data/*.npz" in project["package-data"]["get_md.datasets"]
    assert not any("data/" in p for p in project["package-data"]["get_md.zoo"])


def test_generator_has_no_held_out_target_source():
    """The generator cannot label a source named for a target held out of all training."""
    from get_md.datasets.targets import is_excluded
    from get_md.datasets.xtb.sources import SOURCES, plan_specs
    from get_md.datasets.xtb.spec import DEFAULT_PLAN, SOURCE_SAMPLING
    from get_md.errors import DatasetError

    for name in (*SOURCES, *DEFAULT_PLAN, *SOURCE_SAMPLING):
        assert not is_excluded(name), name
    with pytest.raises(DatasetError, match="'cdk2' is a target held out"):
        plan_specs({"cdk2": 3}, seed=0)
