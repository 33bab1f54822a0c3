"""Structure builders (get_md.build) on real files, and their errors on malformed ones."""

from __future__ import annotations

import gzip
import logging
import os
import re
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest
import torch
from rdkit import Chem

from get_md import vocab
from get_md.build import (
    GraphError,
    autodock_element,
    from_ase,
    from_mdtraj,
    from_mmcif,
    from_mol2,
    from_openmm,
    from_pdb,
    from_pdbqt,
    from_rdkit,
    from_sdf,
    iter_poses,
    make_complex,
    pocket_complex,
    read_pose_records,
    read_poses,
    residue_kind,
    select_pocket,
    topology_template,
)
from get_md.graph import TENSOR_FIELDS, MolecularGraph, batch_graphs

DATA = Path(__file__).parent / "data"
REC = DATA / "prolif" / "rec.pdb"
LIG_PDB = DATA / "prolif" / "lig.pdb"
TOP = DATA / "prolif" / "top.pdb"
POSES_SDF = DATA / "prolif" / "vina_output.sdf"
POSES_MOL2 = DATA / "prolif" / "vina_output.mol2"
POSE_PDBQT = DATA / "prolif" / "vina_output_ligand_1.pdbqt"
P1IA1 = DATA / "posebusters" / "1ia1" / "1ia1_protein_one_lig_removed.pdb"
L1IA1 = DATA / "posebusters" / "1ia1" / "1ia1_ligand.sdf"


def _prolif_traj_xtc() -> Path:
    import prolif

    return Path(os.path.dirname(prolif.__file__)) / "data" / "traj.xtc"


def _atom_lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.startswith(("ATOM", "HETATM"))]


def _write(tmp_path: Path, name: str, lines) -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n" if isinstance(lines, list) else lines)
    return p


def _same_graph(a: MolecularGraph, b: MolecularGraph) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in TENSOR_FIELDS) and (
        a.names == b.names and a.block_labels == b.block_labels
    )


@pytest.fixture(scope="module")
def rec() -> MolecularGraph:
    return from_pdb(REC)


@pytest.fixture(scope="module")
def poses() -> list[MolecularGraph]:
    return from_sdf(POSES_SDF)


# ------------------------------------------------------------------- PDB family
def test_pdb_receptor_matches_mdtraj(rec):
    top = md.load_topology(str(REC))
    assert rec.num_graphs == 1
    assert rec.num_atoms == top.n_atoms == 4988
    assert rec.num_blocks == top.n_residues == 302
    assert rec.block_labels[0] == "A:38:TYR" and rec.block_labels[-1] == "B:387:LYS"
    assert vocab.block_type_name(int(rec.block_types[0])) == "TYR"
    assert rec.segment_ids.tolist() == [0] * 302
    assert int((rec.atomic_numbers == 1).sum()) == sum(a.element.symbol == "H" for a in top.atoms)
    # atom position codes: CA -> "A", CB -> "B", backbone N -> ""
    names = [a.name for a in top.atoms]
    ca = names.index("CA")
    assert vocab.ATOM_POSITIONS[int(rec.atom_positions[ca])] == "A"
    assert vocab.ATOM_POSITIONS[int(rec.atom_positions[names.index("N")])] == ""
    ref = md.load(str(REC)).xyz[0] * 10.0
    assert np.allclose(rec.positions.numpy(), ref, atol=1e-4)
    assert not bool(rec.pbc.any()) and float(rec.cell.abs().sum()) == 0.0


def test_pdb_selection_options(rec):
    heavy = from_pdb(REC, hydrogens=False)
    assert heavy.num_atoms == int((rec.atomic_numbers != 1).sum())
    assert heavy.num_blocks == rec.num_blocks
    chain_b = from_pdb(REC, chains=["B"], segment_id=3)
    assert all(lab.startswith("B:") for lab in chain_b.block_labels)
    assert set(chain_b.segment_ids.tolist()) == {3}
    some = from_pdb(REC, residues=["A:38", ("B", 387), 39])
    assert some.block_labels == ["A:38:TYR", "A:39:ILE", "B:387:LYS"]
    periodic = from_pdb(TOP, periodic=True)
    assert periodic.pbc.all()
    assert torch.allclose(periodic.cell[0].diagonal(), torch.tensor([89.691, 87.957, 102.020]))


def test_pdb_ligand_atoms_are_blocks():
    g = from_pdb(TOP)
    top = md.load_topology(str(TOP))
    lig_atoms = top.select("resname LIG")
    assert g.num_atoms == top.n_atoms
    assert g.num_blocks == (top.n_residues - 1) + lig_atoms.size  # 302 residues + 79 atoms
    lig = g.block_ids[torch.as_tensor(lig_atoms)]
    z = g.atomic_numbers[torch.as_tensor(lig_atoms)]
    assert torch.equal(g.block_types[lig], z + vocab.LIGAND_OFFSET)
    assert (g.atom_positions[torch.as_tensor(lig_atoms)] == vocab.SMALL_MOLECULE_POSITION).all()
    assert g.block_labels[-1] == "G:1:LIG:H7"


def test_waters_and_ions(tmp_path):
    lines = _atom_lines(REC)[:27]  # first residue, TYR A 38
    lines += [
        "HETATM 9001  O   HOH W   1      10.000  10.000  10.000  1.00  0.00           O",
        "HETATM 9002  H1  HOH W   1      10.957  10.000  10.000  1.00  0.00           H",
        "HETATM 9003  H2  HOH W   1       9.760  10.927  10.000  1.00  0.00           H",
        "HETATM 9004 NA    NA I   2      20.000  20.000  20.000  1.00  0.00          NA",
        "HETATM 9005 ZN    ZN I   3      25.000  20.000  20.000  1.00  0.00          ZN",
    ]
    p = _write(tmp_path, "with_water.pdb", lines)
    dry = from_pdb(p)
    assert [vocab.block_type_name(int(t)) for t in dry.block_types] == ["TYR", "ION", "ION"]
    wet = from_pdb(p, waters=True)
    assert [vocab.block_type_name(int(t)) for t in wet.block_types] == ["TYR", "HOH", "ION", "ION"]
    assert wet.num_atoms == 27 + 3 + 2


def test_residue_kinds():
    assert residue_kind("HSD", [7, 6, 6, 6]) == "protein"
    assert residue_kind("MSE", [7, 6, 6, 34]) == "protein"  # modified residue, from the wwPDB dictionary
    assert residue_kind("DA5", [15, 8, 8]) == "nucleic"
    assert residue_kind("WAT", [8, 1, 1]) == "water"
    assert residue_kind("CL", [17]) == "ion"
    assert residue_kind("LIG", [6, 6, 8]) == "ligand"


def test_mmcif_matches_pdb(tmp_path):
    import biotite.structure.io.pdb as pdb
    import biotite.structure.io.pdbx as pdbx

    array = pdb.PDBFile.read(str(P1IA1)).get_structure(model=1)
    cif = pdbx.CIFFile()
    pdbx.set_structure(cif, array)
    path = tmp_path / "1ia1.cif"
    cif.write(str(path))
    a, b = from_pdb(P1IA1), from_mmcif(path)
    for f in ("positions", "atomic_numbers", "block_ids", "atom_positions", "block_types"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    assert a.block_labels == b.block_labels


def test_multimodel_pdb(tmp_path):
    atoms = _atom_lines(LIG_PDB)
    shifted = [ln[:30] + f"{float(ln[30:38]) + 5.0:8.3f}" + ln[38:] for ln in atoms]
    p = _write(tmp_path, "two_models.pdb", ["MODEL        1", *atoms, "ENDMDL", "MODEL        2", *shifted, "ENDMDL"])
    m1, m2 = from_pdb(p), from_pdb(p, model=2)
    assert torch.allclose(m2.positions[:, 0] - m1.positions[:, 0], torch.full((79,), 5.0), atol=1e-3)
    assert "model 2" in m2.names[0]
    with pytest.raises(GraphError, match=r"two_models\.pdb.*model 3"):
        from_pdb(p, model=3)


def test_a_multimodel_receptor_says_which_model_is_read(tmp_path, caplog):
    """An NMR ensemble given as one receptor had been read as its first model without a word."""
    atoms = _atom_lines(REC)[:60]
    p = _write(tmp_path, "nmr.pdb", ["MODEL        1", *atoms, "ENDMDL", "MODEL        2", *atoms, "ENDMDL",
                                     "MODEL        3", *atoms, "ENDMDL"])
    with caplog.at_level("WARNING", logger="get_md"):
        from_pdb(p)
    said = [r.getMessage() for r in caplog.records if "models" in r.getMessage()]
    assert len(said) == 1 and "nmr.pdb: 3 models" in said[0] and "model 1 is read" in said[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="get_md"):
        from_pdb(_write(tmp_path, "one.pdb", atoms))
    assert not [r for r in caplog.records if "models" in r.getMessage()]


def _pdbqt_line(pdb_line: str) -> str:
    el = pdb_line[76:78].strip()
    ad = {"C": "C", "N": "NA", "O": "OA", "S": "SA", "H": "HD"}[el]
    return pdb_line[:66] + "    +0.000 " + ad


def test_pdbqt_receptor(tmp_path):
    lines = _atom_lines(REC)[:60]
    p = _write(tmp_path, "receptor.pdbqt", ["REMARK  receptor", *(_pdbqt_line(ln) for ln in lines)])
    q = from_pdbqt(p)
    ref = from_pdb(_write(tmp_path, "receptor.pdb", lines))
    assert torch.equal(q.atomic_numbers, ref.atomic_numbers)
    assert torch.equal(q.block_types, ref.block_types) and q.block_labels == ref.block_labels
    assert torch.equal(q.positions, ref.positions)
    assert [autodock_element(t) for t in ("A", "OA", "NA", "HD", "SA", "Cl", "Na", "CG0")] == [
        "C", "O", "N", "H", "S", "Cl", "Na", "C"
    ]


# ------------------------------------------------------------- small molecules
def test_sdf_matches_rdkit(poses):
    mols = [m for m in Chem.SDMolSupplier(str(POSES_SDF), removeHs=False)]
    assert len(poses) == len(mols) == 9
    for g, m in zip(poses, mols, strict=True):
        assert g.num_atoms == g.num_blocks == m.GetNumAtoms() == 79
        z = torch.tensor([a.GetAtomicNum() for a in m.GetAtoms()])
        assert torch.equal(g.atomic_numbers, z)
        assert torch.equal(g.block_types, z + vocab.LIGAND_OFFSET)
        assert torch.allclose(g.positions, torch.as_tensor(m.GetConformer().GetPositions()).float())
    assert poses[3].names[0].endswith("vina_output.sdf#4")


def test_sdf_tags_become_properties(tmp_path):
    first = POSES_SDF.read_text().split("$$$$\n")[0]
    p = _write(tmp_path, "tagged.sdf", first + "> <minimizedAffinity>\n-7.5\n\n$$$$\n")
    (record,) = read_pose_records(p)
    assert record.properties["minimizedAffinity"] == -7.5
    assert record.mol.GetNumAtoms() == record.graph.num_atoms == 79
    index, graph = record
    assert index == 1 and graph is record.graph


def test_sdf_gz_mol2_and_dispatch(tmp_path, poses):
    gz = tmp_path / "poses.sdf.gz"
    gz.write_bytes(gzip.compress(POSES_SDF.read_bytes()))
    zipped = read_poses(gz)
    mol2 = from_mol2(POSES_MOL2)
    assert len(zipped) == len(mol2) == 9
    for a, b, c in zip(poses, zipped, mol2, strict=True):
        assert torch.equal(a.positions, b.positions)
        assert torch.equal(a.atomic_numbers, c.atomic_numbers)
        assert torch.allclose(a.positions, c.positions, atol=1e-3)
    ligand = read_poses(LIG_PDB)
    assert len(ligand) == 1 and ligand[0].num_blocks == 79
    assert len(read_poses(L1IA1)) == 1  # single record without a $$$$ terminator
    with pytest.raises(GraphError, match=r"poses\.xyz.*unknown pose format"):
        read_poses(_write(tmp_path, "poses.xyz", "3\n\n"))


def test_vina_pdbqt_models_and_scores(tmp_path):
    text = POSE_PDBQT.read_text()
    second = text.replace("REMARK VINA RESULT:     -11.8", "REMARK VINA RESULT:     -10.2")
    p = _write(tmp_path, "vina_out.pdbqt", f"MODEL 1\n{text}ENDMDL\nMODEL 2\n{second}ENDMDL\n")
    records = read_pose_records(p)
    assert [r.index for r in records] == [1, 2]
    assert [r.properties["vina_score"] for r in records] == [-11.8, -10.2]
    g = records[0].graph
    elements = [
        autodock_element(ln.split()[-1]) for ln in text.splitlines() if ln.startswith("HETATM")
    ]
    assert g.num_atoms == g.num_blocks == len(elements) == 47
    assert g.atomic_numbers.tolist() == [vocab.atomic_number(e) for e in elements]
    single = read_pose_records(POSE_PDBQT)
    assert len(single) == 1 and single[0].properties["vina_score"] == -11.8


def test_from_rdkit_errors():
    from rdkit.Chem import AllChem

    m = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    with pytest.raises(GraphError, match="ethanol: molecule has no coordinates"):
        from_rdkit(m, name="ethanol")
    AllChem.EmbedMolecule(m, randomSeed=7)
    g = from_rdkit(m, name="ethanol", segment_id=1)
    assert g.num_blocks == 9 and g.segment_ids.tolist() == [1] * 9
    flat = Chem.MolFromSmiles("CCO")
    AllChem.Compute2DCoords(flat)
    with pytest.raises(GraphError, match="2D"):
        from_rdkit(flat, name="flat")
    with pytest.raises(GraphError, match="no atoms"):
        from_rdkit(Chem.Mol(), name="empty")


# ------------------------------------------------------------ malformed inputs
def _sdf_records() -> list[str]:
    text = POSES_SDF.read_text()
    return [r for r in text.split("$$$$\n") if r.strip()]


def test_truncated_sdf_record_reported_others_parse(tmp_path):
    records = _sdf_records()
    lines = records[3].splitlines()
    records[3] = "\n".join(lines[:40]) + "\n"  # record 4 cut inside its atom block
    p = _write(tmp_path, "broken.sdf", "".join(r + "$$$$\n" for r in records))
    results = list(iter_poses(p))
    assert [i for i, _ in results] == list(range(1, 10))
    bad = [(i, g) for i, g in results if isinstance(g, Exception)]
    assert len(bad) == 1 and bad[0][0] == 4
    msg = str(bad[0][1])
    assert isinstance(bad[0][1], GraphError) and "broken.sdf" in msg and "record 4" in msg
    assert "truncated" in msg
    assert all(g.num_atoms == 79 for i, g in results if i != 4)
    with pytest.raises(GraphError, match=r"broken\.sdf: record 4"):
        from_sdf(p)


def test_truncated_mol2_record(tmp_path):
    text = POSES_MOL2.read_text()
    parts = text.split("@<TRIPOS>MOLECULE")
    parts[2] = "\n".join(parts[2].splitlines()[:20]) + "\n"  # record 2 loses most atoms and all bonds
    p = _write(tmp_path, "broken.mol2", "@<TRIPOS>MOLECULE".join(parts))
    results = {i: g for i, g in iter_poses(p)}
    assert len(results) == 9
    assert isinstance(results[2], GraphError)
    assert "broken.mol2" in str(results[2]) and "record 2" in str(results[2])
    assert all(isinstance(results[i], MolecularGraph) for i in results if i != 2)


def test_sdf_nan_and_empty_records(tmp_path):
    records = _sdf_records()
    lines = records[1].splitlines()
    lines[4] = "       nan" + lines[4][10:]  # first atom of record 2
    records[1] = "\n".join(lines) + "\n"
    p = _write(tmp_path, "nan.sdf", "".join(r + "$$$$\n" for r in records[:3]))
    bad = [g for i, g in iter_poses(p) if i == 2][0]
    assert isinstance(bad, GraphError) and "nan.sdf" in str(bad) and "record 2" in str(bad)
    assert "atom 1" in str(bad)
    empty = _write(tmp_path, "empty.sdf", "")
    with pytest.raises(GraphError, match=r"empty\.sdf.*no SDF records"):
        from_sdf(empty)
    no_atoms = _write(tmp_path, "no_atoms.sdf", "\n  RDKit          3D\n\n  0  0  0  0  0  0  0  0  0  0999 V2000\nM  END\n$$$$\n")
    with pytest.raises(GraphError, match=r"no_atoms\.sdf: record 1.*no atoms"):
        read_poses(no_atoms)
    with pytest.raises(GraphError, match=r"empty\.pdb.*no ATOM/HETATM"):
        from_pdb(_write(tmp_path, "empty.pdb", ""))
    with pytest.raises(GraphError, match=r"missing\.sdf: file not found"):
        from_sdf(tmp_path / "missing.sdf")


def test_pdb_unknown_element(tmp_path):
    lines = _atom_lines(LIG_PDB)
    lines[4] = lines[4][:76] + "Xx"
    p = _write(tmp_path, "bad_element.pdb", lines)
    with pytest.raises(GraphError) as err:
        from_pdb(p)
    msg = str(err.value)
    assert "bad_element.pdb" in msg and "atom 5 (G:1:LIG:" in msg and "'Xx'" in msg


def test_pdb_without_element_columns_reads_two_letter_elements(tmp_path, caplog):
    """A PDB without columns 77-78 (GROMACS, older tools): biotite had read a calcium ion
    CA, a chloride CL, a ligand's CL1 and MSE's SE as C, C, C and S without a word that
    counted. The residue template, else the name's column alignment, decides."""
    rows = [("CA  ", " CA", "A 401", 20), ("CL  ", " CL", "A 402", 17), ("CL1 ", "UNL", "A 403", 17),
            (" C1 ", "UNL", "A 403", 6), ("SE  ", "MSE", "A   5", 34), (" CA ", "MSE", "A   5", 6),
            ("1HB ", "ALA", "A   6", 1), ("HG11", "VAL", "A   7", 1)]
    lines = [f"HETATM{k:5d} {name} {res:3s} {chain_res}    {3.0 * k:8.3f}{0.0:8.3f}{0.0:8.3f}  1.00  0.00"
             for k, (name, res, chain_res, _z) in enumerate(rows, 1)]
    with caplog.at_level("WARNING"):
        g = from_pdb(_write(tmp_path, "noelement.pdb", lines))
    assert g.atomic_numbers.tolist() == [z for *_, z in rows]
    assert "noelement.pdb: 8 atom records have no element" in caplog.text and "Cl 2 (CL of CL A:402)" in caplog.text
    pose = _write(tmp_path, "pose.pdb", [ln for ln in lines if "UNL" in ln])
    assert [r.graph.atomic_numbers.tolist() for r in iter_poses(pose)] == [[17, 6]]


def test_left_aligned_ligand_names_that_spell_metals_are_organic_atoms(tmp_path):
    """A docking tool's ligand without element columns, its names left-aligned: CA12, CD1
    and NA3 of a residue of several atoms had read as calcium, cadmium and sodium (warned,
    then refused by a model without those elements). In a residue of several atoms they are
    C, C and N; a chlorine CL1 stays Cl, a calcium ion alone in its residue stays Ca, in
    every MODEL of a multi-model file alike."""
    rows = [("CA12", "UNL", 6), ("CD1 ", "UNL", 6), ("NA3 ", "UNL", 7), ("CL1 ", "UNL", 17), ("O1  ", "UNL", 8)]
    lig = [f"HETATM{k:5d} {name} {res:3s} A   1    {1.4 * k:8.3f}{0.0:8.3f}{0.0:8.3f}  1.00  0.00"
           for k, (name, res, _z) in enumerate(rows, 1)]
    ion = f"HETATM{len(rows) + 1:5d} CA   XX  B   2    {20.0:8.3f}{0.0:8.3f}{0.0:8.3f}  1.00  0.00"
    models = []
    for m in (1, 2):
        models += [f"MODEL     {m:4d}", *lig, ion, "ENDMDL"]
    g = from_pdb(_write(tmp_path, "ligand_names.pdb", models[: len(lig) + 3]))
    assert g.atomic_numbers.tolist() == [z for *_, z in rows] + [20]
    poses = list(iter_poses(_write(tmp_path, "poses.pdb", [ln for ln in models if " XX " not in ln])))
    assert [r.graph.atomic_numbers.tolist() for r in poses] == [[z for *_, z in rows]] * 2


def test_pdb_v2_hydrogen_names_get_the_atom_positions_of_their_v3_names(tmp_path):
    """1HB / 2HG1 / 1H (PDB v2, older AMBER and Reduce files) had been given the position
    code of an eta atom ("H": the letter after the digit); they are HB1 / HG12 / H1."""
    lines = _atom_lines(REC)[:60]
    hydrogens = [k for k, ln in enumerate(lines) if ln[76:78].strip() == "H" and ln[12:16].strip()[-1].isdigit()]
    v2 = list(lines)
    for k in hydrogens:
        name = lines[k][12:16].strip()
        v2[k] = lines[k][:12] + f"{name[-1]}{name[:-1]}".ljust(4) + lines[k][16:]
    a, b = from_pdb(_write(tmp_path, "v3.pdb", lines)), from_pdb(_write(tmp_path, "v2.pdb", v2))
    assert len(hydrogens) >= 5 and torch.equal(a.atomic_numbers, b.atomic_numbers)
    assert torch.equal(a.atom_positions, b.atom_positions)
    eta = vocab.ATOM_POSITIONS.index("H")
    assert [vocab.atom_position_index(n, "H", True) == eta for n in ("1H", "1HB", "2HG1", "HH11")] == [
        False, False, False, True]


@pytest.mark.parametrize("source, name, holds", [
    (POSES_MOL2, "poses.sdf", "MOL2 records, not SDF: give it the .mol2 extension"),
    (LIG_PDB, "poses.sdf", "PDB records, not SDF: give it the .pdb extension"),
    (POSE_PDBQT, "poses.sdf", "PDBQT records, not SDF: give it the .pdbqt extension"),
    (POSES_SDF, "poses.mol2", "SDF records, not MOL2: give it the .sdf extension"),
    (POSES_SDF, "poses.pdbqt", "SDF records, not PDBQT: give it the .sdf extension"),
    (POSE_PDBQT, "pose.pdb", "PDBQT records, not PDB: give it the .pdbqt extension"),
    (REC, "receptor.cif", "PDB records, not mmCIF: give it the .pdb extension"),
])
def test_a_file_of_another_format_is_named_as_such(tmp_path, source, name, holds):
    """Content of one format under another's extension had been reported as the wrong
    format's parse failure (``cannot read the counts line 'SMALL'``, ``There are no blocks
    in the file``, ``unknown element 'A'``); now the format it holds and the extension to give."""
    path = _write(tmp_path, name, source.read_text())
    read = from_mmcif if name.endswith(".cif") else read_poses
    with pytest.raises(GraphError, match=rf"{re.escape(name)}.*the file holds {re.escape(holds)}"):
        read(path)


def test_a_pdbqt_receptor_named_pdb_is_refused(tmp_path):
    """A PDBQT receptor under .pdb: its AutoDock types sit in the element columns, where
    ``A`` is no element and ``Cl`` / ``Br`` read as C / B; refused naming the format."""
    lines = [_pdbqt_line(ln) for ln in _atom_lines(REC)[:60]]
    with pytest.raises(GraphError, match=r"receptor\.pdb: the file holds PDBQT records, not PDB"):
        from_pdb(_write(tmp_path, "receptor.pdb", lines))


def test_pdb_nan_coordinate(tmp_path):
    lines = _atom_lines(REC)[:60]
    lines[30] = lines[30][:30] + "     nan" + lines[30][38:]
    name = lines[30][12:16].strip()
    with pytest.raises(GraphError) as err:
        from_pdb(_write(tmp_path, "nan.pdb", lines))
    msg = str(err.value)
    assert "nan.pdb" in msg and f"atom 31 (A:39:ILE:{name})" in msg and "non-finite" in msg


def test_pdb_truncated_line(tmp_path):
    lines = _atom_lines(REC)[:60]
    lines[10] = lines[10][:40]
    with pytest.raises(GraphError, match=r"truncated\.pdb.*line 11"):
        from_pdb(_write(tmp_path, "truncated.pdb", lines))


def test_pdb_duplicate_atoms(tmp_path):
    lines = _atom_lines(REC)[:60]
    dup = [*lines[:9], lines[8], *lines[9:]]  # CA of TYR 38 twice
    with pytest.raises(GraphError) as err:
        from_pdb(_write(tmp_path, "dup.pdb", dup))
    msg = str(err.value)
    assert "dup.pdb" in msg and "duplicate atoms" in msg and "A:38:TYR:CA" in msg
    assert "appears twice (atoms 9 and 10 of the file in reading order): a repeated record?" in msg
    renamed = list(lines)
    renamed[9] = renamed[9][:12] + " CA " + renamed[9][16:]  # HA renamed CA: same name, new place
    with pytest.raises(GraphError, match=r"renamed\.pdb: duplicate atoms.*A:38:TYR:CA.*same name"):
        from_pdb(_write(tmp_path, "renamed.pdb", renamed))
    stacked = list(lines)
    stacked[20] = stacked[20][:30] + stacked[40][30:54] + stacked[20][54:]
    with pytest.raises(GraphError, match=r"stacked\.pdb: duplicate atoms.*identical coordinates"):
        from_pdb(_write(tmp_path, "stacked.pdb", stacked))


def test_pdb_hydrogens_sharing_a_name_are_distinct_atoms(tmp_path):
    """Maestro writes an uncapped chain's protonated N-terminus as several atoms named H
    (the FEP+ benchmark's urokinase receptor): accepted as distinct atoms; a hydrogen
    with another's name and coordinates is still a duplicate."""
    lines = _atom_lines(REC)[:60]
    k = next(i for i, ln in enumerate(lines) if ln[76:78].strip() == "H")
    res = lines[k][17:27]
    moved = lines[k][:30] + "".join(f"{float(lines[k][30 + 8 * j:38 + 8 * j]) + 1.0:8.3f}" for j in range(3)) \
        + lines[k][54:]
    g = from_pdb(_write(tmp_path, "nterm.pdb", [*lines[:k + 1], moved, *lines[k + 1:]]))
    assert g.num_atoms == len(lines) + 1
    name = lines[k][12:16].strip()
    same = [ln for ln in lines if ln[17:27] == res and ln[12:16].strip() == name]
    assert len(same) == 1  # the file had one such hydrogen; the graph now holds two
    with pytest.raises(GraphError, match=r"copy\.pdb: duplicate atoms.*identical coordinates"):
        from_pdb(_write(tmp_path, "copy.pdb", [*lines[:k + 1], lines[k], *lines[k + 1:]]))


def test_a_letter_in_a_small_files_residue_number_is_warned_about(tmp_path, caplog):
    """Biotite reads ``XXXX`` as hybrid-36 and splits the atom off into a residue of its
    own; in a file whose residues stay below 9999 that is a corrupt field: warned, naming
    the line. A file numbered up to 9999 and on in hybrid-36 is read without a word."""
    lines = _atom_lines(REC)[:60]
    k = 20
    bad = lines[k][:22] + "XXXX" + lines[k][26:]
    with caplog.at_level("WARNING"):
        g = from_pdb(_write(tmp_path, "resnum.pdb", [*lines[:k], bad, *lines[k + 1:]]))
    assert g.num_atoms == len(lines)
    assert f"resnum.pdb: line {k + 1}: residue number 'XXXX'" in caplog.text
    assert "hybrid-36" in caplog.text
    caplog.clear()
    big = [ln[:22] + "9999" + ln[26:] if i < 30 else ln[:22] + "A000" + ln[26:] for i, ln in enumerate(lines)]
    big = [ln[:12] + f" X{i:<2d}" + ln[16:] for i, ln in enumerate(big)]  # unique names across the merged residues
    with caplog.at_level("WARNING"):
        from_pdb(_write(tmp_path, "big.pdb", big))
    assert "residue number" not in caplog.text


def test_empty_selection(tmp_path):
    with pytest.raises(GraphError, match=r"rec\.pdb: selection is empty"):
        from_pdb(REC, chains=["Z"])
    with pytest.raises(GraphError, match=r"rec\.pdb: selection is empty"):
        from_pdb(REC, residues=["A:9999"])
    water = "HETATM    1  O   HOH W   1       1.000   2.000   3.000  1.00  0.00           O\nEND\n"
    (tmp_path / "water.pdb").write_text(water)
    with pytest.raises(GraphError, match=r"water\.pdb: no atoms besides water \(1 water atoms"):
        from_pdb(tmp_path / "water.pdb")
    assert from_pdb(tmp_path / "water.pdb", waters=True).num_atoms == 1


def test_pdbqt_unknown_type(tmp_path):
    text = POSE_PDBQT.read_text().replace(" 0.220 C ", " 0.220 Qq", 1)
    p = _write(tmp_path, "bad_type.pdbqt", text)
    with pytest.raises(GraphError, match=r"bad_type\.pdbqt.*line \d+.*'Qq'"):
        from_pdbqt(p)
    records = list(iter_poses(p))
    assert isinstance(records[0].error, GraphError) and "record 1" in str(records[0].error)


# --------------------------------------------------------------- trajectories
def test_mdtraj_adk_nm_to_angstrom():
    import MDAnalysis as mda
    from MDAnalysisTests.datafiles import DCD, PSF

    traj = md.load(DCD, top=PSF)
    g = from_mdtraj(traj, frame=5)
    assert g.num_atoms == traj.n_atoms == 3341
    assert g.num_blocks == traj.n_residues == 214
    assert torch.equal(g.positions, torch.as_tensor(traj.xyz[5]) * 10.0)
    universe = mda.Universe(PSF, DCD)  # MDAnalysis reads the DCD in Å
    universe.trajectory[5]
    assert np.allclose(g.positions.numpy(), universe.atoms.positions, atol=1e-3)
    assert not bool(g.pbc.any())
    ca = traj.topology.select("name CA")
    assert (g.atom_positions[torch.as_tensor(ca)] == vocab.ATOM_POSITIONS.index("A")).all()


def test_mdtraj_template_frames_cell_and_segments():
    traj = md.load(str(_prolif_traj_xtc()), top=str(TOP), stride=50)
    tpl = topology_template(traj.topology, segments=["protein", "resname LIG"])
    ref = from_pdb(TOP)
    assert torch.equal(tpl.graph.block_types, ref.block_types)
    assert torch.equal(tpl.graph.atom_positions, ref.atom_positions)
    assert tpl.graph.segment_ids.bincount().tolist() == [302, 79]
    for i in range(traj.n_frames):
        g = tpl.frame(traj, i)
        assert torch.allclose(g.positions, torch.as_tensor(traj.xyz[i] * 10.0))
        assert torch.allclose(g.cell[0], torch.as_tensor(traj.unitcell_vectors[i] * 10.0), atol=1e-4)
        assert g.pbc.all()
        same = tpl.graph.with_positions(torch.as_tensor(traj.xyz[i] * 10.0))
        assert torch.equal(same.positions, g.positions) and torch.equal(same.block_ids, g.block_ids)
    sub = from_mdtraj(traj, frame=1, atom_indices=traj.topology.select("resname LIG"), segments=1)
    assert sub.num_blocks == 79 and set(sub.segment_ids.tolist()) == {1}
    with pytest.raises(GraphError, match="selection is empty"):
        from_mdtraj(traj, atom_indices=[])


# ------------------------------------------------------------ ASE and OpenMM
def test_from_ase():
    from ase import Atoms
    from ase.build import bulk, molecule

    eth = molecule("CH3CH2OH")
    g = from_ase(eth)
    assert g.num_blocks == g.num_atoms == len(eth)
    assert torch.allclose(g.positions.double(), torch.as_tensor(eth.positions))
    cu = from_ase(bulk("Cu", cubic=True))
    assert cu.pbc.all() and torch.allclose(cu.cell[0].diagonal(), torch.full((3,), 3.61))
    water = molecule("H2O")
    two = water + water.copy()
    two.positions[3:] += 3.0
    g2 = from_ase(two, blocks=[0, 0, 0, 1, 1, 1], block_names=["HOH", "HOH"])
    assert [vocab.block_type_name(int(t)) for t in g2.block_types] == ["HOH", "HOH"]
    with pytest.raises(GraphError, match="periodic direction with a zero-length cell vector"):
        from_ase(Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]], pbc=True))
    with pytest.raises(GraphError, match="identical coordinates"):
        from_ase(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0]]))


def test_from_openmm_matches_pdb():
    from openmm import unit
    from openmm.app import PDBFile

    pdb = PDBFile(str(TOP))
    g = from_openmm(pdb.topology, pdb.positions, name="top.pdb via openmm")
    ref = from_pdb(TOP, periodic=True)
    assert torch.equal(g.block_types, ref.block_types)
    assert torch.equal(g.atom_positions, ref.atom_positions)
    assert torch.allclose(g.positions, ref.positions, atol=1e-4)
    assert torch.allclose(g.cell, ref.cell, atol=1e-3) and g.pbc.all()
    nm = np.asarray(pdb.positions.value_in_unit(unit.nanometer))
    g2 = from_openmm(pdb.topology, nm, atom_indices=np.arange(100))
    assert g2.num_atoms == 100
    assert torch.allclose(g2.positions, ref.positions[:100], atol=1e-4)


# ---------------------------------------------------------- complexes, pocket
def test_pocket_complex_1ia1():
    receptor = from_pdb(P1IA1)
    ligand = from_sdf(L1IA1)[0]
    radius = 8.0
    pocket = select_pocket(receptor, ligand, radius)
    assert 0 < pocket.num_blocks < receptor.num_blocks
    # every kept block has an atom within the radius; every dropped block has none
    d = torch.cdist(receptor.positions, ligand.positions).min(dim=1).values
    block_min = torch.full((receptor.num_blocks,), float("inf")).scatter_reduce(
        0, receptor.block_ids, d, reduce="amin"
    )
    kept = set(pocket.block_labels)
    for label, dmin in zip(receptor.block_labels, block_min.tolist(), strict=True):
        assert (label in kept) == (dmin <= radius)
    cplx = pocket_complex(receptor, ligand, radius)
    assert cplx.num_atoms == pocket.num_atoms + ligand.num_atoms
    assert cplx.segment_ids.tolist() == [0] * pocket.num_blocks + [1] * ligand.num_blocks
    assert "1ia1_protein_one_lig_removed.pdb" in cplx.names[0] and "1ia1_ligand.sdf" in cplx.names[0]


def test_pocket_batch_roundtrip(rec, poses):
    complexes = [pocket_complex(rec, p, 10.0) for p in poses[:4]]
    batch = batch_graphs(complexes)
    assert batch.num_graphs == 4
    assert batch.num_atoms == sum(c.num_atoms for c in complexes)
    for a, b in zip(complexes, batch.split(), strict=True):
        assert _same_graph(a, b)


def test_pocket_errors(rec, poses):
    far = poses[0].positions + 1000.0
    with pytest.raises(GraphError, match=r"rec\.pdb.*pocket is empty.*closest"):
        select_pocket(rec, far, 10.0)
    named = poses[0].with_positions(far)
    with pytest.raises(GraphError, match=r"rec\.pdb around .*vina_output\.sdf#1"):
        select_pocket(rec, named, 10.0)
    with pytest.raises(GraphError, match="ligand has no atoms"):
        select_pocket(rec, torch.zeros(0, 3), 10.0)


def test_make_complex_rejects_ligand_inside_receptor():
    receptor = from_pdb(TOP)  # contains LIG already
    ligand = read_poses(LIG_PDB)[0]
    with pytest.raises(GraphError, match=r"top\.pdb.*also in the receptor file"):
        make_complex(receptor, ligand)
    protein = from_pdb(TOP, chains=["A", "B"])
    cplx = make_complex(protein, ligand)
    assert cplx.segment_ids.bincount().tolist() == [302, 79]
    assert re.search(r"lig\.pdb", cplx.names[0])


def test_a_records_sanitization_warning_is_given_once_per_process(tmp_path, caplog):
    # carbon with five bonds: RDKit cannot sanitize it; the graph is built from the raw record
    block = "\n".join([
        "pentavalent", "  test", "",
        "  6  5  0  0  0  0  0  0  0  0999 V2000",
        "    0.0000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0",
        *[f"{x:10.4f}{y:10.4f}{z:10.4f} H   0  0  0  0  0  0  0  0  0  0  0  0"
          for x, y, z in ((1.09, 0, 0), (-1.09, 0, 0), (0, 1.09, 0), (0, -1.09, 0), (0, 0, 1.09))],
        *[f"  1{k:3d}  1  0" for k in range(2, 7)],
        "M  END", "$$$$", "",
    ])
    path = tmp_path / "five.sdf"
    path.write_text(block)
    with caplog.at_level("WARNING"):
        for _ in range(2):  # a workflow reads its poses twice (pocket, then scoring)
            (rec,) = list(iter_poses(path))
            assert rec.graph is not None and rec.graph.num_atoms == 6
    assert caplog.text.count("RDKit sanitization failed") == 1


def test_a_twice_compressed_pose_file_is_named_binary(tmp_path):
    path = tmp_path / "double.sdf.gz"
    path.write_bytes(gzip.compress(gzip.compress(POSES_SDF.read_bytes())))
    (rec,) = list(iter_poses(path))[:1]
    assert rec.graph is None
    assert "record 1: binary data, not text (a compressed file inside a compressed file" in str(rec.error)


def test_a_formal_charge_beyond_four_is_a_damaged_record(tmp_path):
    mol = next(iter(Chem.SDMolSupplier(str(POSES_SDF), removeHs=False)))
    n = next(a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "N")
    good = Chem.Mol(mol)
    good.GetAtomWithIdx(n).SetFormalCharge(1)
    mol.GetAtomWithIdx(n).SetFormalCharge(15)
    with Chem.SDWriter(str(tmp_path / "charges.sdf")) as w:
        w.write(good)
        w.write(mol)
    first, second = list(iter_poses(tmp_path / "charges.sdf"))
    assert first.graph is not None
    assert second.graph is None
    assert f"record 2: atom {n + 1} (N) has formal charge +15, beyond ±4" in str(second.error)


def test_poses_written_without_model_records_are_named_as_such(tmp_path):
    one = [ln for ln in (DATA / "prolif" / "vina_output_ligand_1.pdbqt").read_text().splitlines()
           if not ln.startswith(("MODEL", "ENDMDL"))]
    n_atoms = sum(ln.startswith(("ATOM  ", "HETATM")) for ln in one)
    (tmp_path / "two.pdbqt").write_text("\n".join(one + one) + "\n")
    (rec,) = list(iter_poses(tmp_path / "two.pdbqt"))
    assert rec.graph is None
    assert (f"record 1: its first atoms start over at atom {n_atoms + 1} (same serial numbers and names): "
            "several poses without MODEL / ENDMDL records?") in str(rec.error)
    (tmp_path / "one.pdbqt").write_text("\n".join(one) + "\n")
    assert list(iter_poses(tmp_path / "one.pdbqt"))[0].graph.num_atoms == n_atoms


def test_a_broken_receptor_is_named_without_saying_its_warnings_twice(tmp_path, caplog):
    """The re-read that names atoms as the file does had repeated the first read's warnings."""
    from get_md.errors import WorkflowError
    from workflows.rescoring.receptor import check_receptor

    atoms = _atom_lines(REC)[:60]
    far = atoms[5][:30] + f"{float(atoms[5][30:38]) + 500.0:8.3f}" + atoms[5][38:]
    p = _write(tmp_path, "nmr.pdb", ["MODEL        1", *atoms[:5], far, *atoms[6:], "ENDMDL",
                                     "MODEL        2", *atoms, "ENDMDL"])
    with caplog.at_level("WARNING", logger="get_md"):
        receptor = from_pdb(p)
        with pytest.raises(WorkflowError, match=r"nmr\.pdb: receptor: .*atom 6 \("):
            check_receptor(p, receptor)
    said = [r.getMessage() for r in caplog.records if "2 models" in r.getMessage()]
    assert len(said) == 1
    assert not logging.getLogger("get_md.build").disabled
