"""Affinity data: targets kept out of training, pK labels, deduplication, splits by target.

The series here are made from PoseBusters' 1ia1 (receptor + crystal ligand) and
prolif's GPCR with its Vina poses, with ``r_exp_dg`` tags written by the tests.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from affinity_helpers import _sdf_with_dg
from rdkit import Chem

from get_md.datasets.affinity import (
    DG_TAG,
    Series,
    assert_no_excluded,
    build_dataset,
    collect_series,
    folder_series,
    pk_from_dg,
    plb_pk,
    plb_series,
    posed_series,
    sample_series,
    sample_target,
    schrodinger_series,
    sdf_activity_pk,
    split_by_target,
)
from get_md.datasets.targets import EXCLUDED_TARGETS, canonical_target, is_excluded
from get_md.errors import DatasetError

DATA = Path(__file__).parent / "data"
REC = DATA / "prolif" / "rec.pdb"
POSES = DATA / "prolif" / "vina_output.sdf"


# ----------------------------------------------------------------------------- exclusion
@pytest.mark.parametrize("name", [
    # the eight targets as the public sets spell them: names, genes, series and file stems
    "BACE1", "bace", "cr_bace2", "hc_bace1", "pb_bace3", "Bace1_4zsp", "bace_ciordia_retro",
    "CDK2", "cdk2_ligands.sdf", "JNK1", "jnk1_manual_flips", "MAPK8", "Mcl1", "frag_mcl1_noweak",
    "mcl1_extra_flips", "P38", "p38α", "p38alpha", "frag_p38", "MAPK14", "ChEMBL|MAPK14|CHEMBL1",
    "PTP1B", "PTPN1", "ptp1b_protein.pdb", "Thrombin", "thrombin_whole_map", "throm_nozob_hip75",
    "F2", "ChEMBL|F2|CHEMBL3", "TYK2", "tyk2",
])
def test_excluded_targets_are_caught_in_every_spelling(name):
    assert is_excluded(name)


@pytest.mark.parametrize("name", [
    "CDK8", "cdk8_koehler", "CDK20", "Factor Xa", "F10", "fxa_set3", "F2R", "MAPK10", "MAPK1",
    "PTPN11", "shp2", "SYK", "HSP90", "JAK2", "Eg5", "p2y1_meta_sub",
])
def test_other_targets_are_not_excluded(name):
    assert not is_excluded(name)


def test_every_excluded_target_has_a_canonical_key():
    for name, key in [("p38", "P38A"), ("MAPK14", "P38A"), ("F2", "THROMBIN"), ("PTPN1", "PTP1B"),
                      ("MAPK8", "JNK1"), ("bace", "BACE1"), ("Mcl1", "MCL1"), ("cdk2", "CDK2"),
                      ("tyk2", "TYK2")]:
        assert canonical_target(name) == key
    assert {canonical_target(n) for n in ("BACE1", "CDK2", "JNK1", "MCL1", "p38", "PTP1B", "thrombin",
                                          "TYK2")} == set(EXCLUDED_TARGETS)
    assert canonical_target("cMet") == canonical_target("MET")
    assert canonical_target("Factor Xa") == canonical_target("F10")


def _schrodinger_tree(root: Path, rows: list[tuple[str, str]]) -> Path:
    """A ``structure_inputs``-like folder: subset ``set1`` with one series per (protein, stem)."""
    sub = root / "set1"
    sub.mkdir(parents=True)
    lines = ["Group name,Group abbreviation,Protein,Input file naming scheme,Reference PDB"]
    for protein, stem in rows:
        lines.append(f"Set,set1,{protein},{stem},XXXX")
        (sub / f"{stem}_protein.pdb").write_bytes(REC.read_bytes())
        _sdf_with_dg(POSES, sub / f"{stem}_ligands.sdf", [-9.0, -8.0, -7.0], ["a", "b", "c"])
    (sub / "subset_metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def test_excluded_series_are_never_read(tmp_path):
    root = _schrodinger_tree(tmp_path / "si", [("SYK", "syk"), ("Thrombin", "thrombin_core"),
                                               ("BACE1", "2Q15_lig17to21_alpha05")])
    # the excluded series' files are removed: reading them would fail the build
    for f in (tmp_path / "si" / "set1").glob("thrombin_core_*"):
        f.unlink()
    for f in (tmp_path / "si" / "set1").glob("2Q15_*"):
        f.unlink()
    series = schrodinger_series(root)
    assert [s.target for s in series] == ["SYK", "EXCLUDED", "EXCLUDED"]
    ds, report = build_dataset(series, pocket_radius=5.0)
    assert sorted(report.excluded) == ["set1/2Q15_lig17to21_alpha05", "set1/thrombin_core"]
    assert {sample_target(s) for s in ds} == {"SYK"} and len(ds) == 3
    assert_no_excluded(ds)


def test_a_series_of_an_excluded_target_that_slips_through_is_refused(tmp_path):
    sdf = _sdf_with_dg(POSES, tmp_path / "l.sdf", [-9.0], ["a"])
    with pytest.raises(ValueError, match="reserved for independent evaluation"):
        build_dataset([Series("F10", "jacs/p38", str(REC), str(sdf))])


def test_assert_no_excluded_catches_a_sample(tmp_path):
    sdf = _sdf_with_dg(POSES, tmp_path / "l.sdf", [-9.0], ["a"])
    ds, _ = build_dataset([Series("SYK", "s", str(REC), str(sdf))], pocket_radius=5.0)
    ds[0].graph.names[0] = "TYK2|tyk2|a"
    with pytest.raises(ValueError, match="TYK2"):
        assert_no_excluded(ds)


def test_posed_series_reads_tags_and_excludes(tmp_path):
    for folder, target in (("a", "SYK"), ("b", "MAPK14")):
        d = tmp_path / folder
        d.mkdir()
        (d / "protein.pdb").write_bytes(REC.read_bytes())
        mols = [m for m in Chem.SDMolSupplier(str(POSES), removeHs=False)][:2]
        with Chem.SDWriter(str(d / "ligands.sdf")) as w:
            for i, m in enumerate(mols):
                m.SetProp("_Name", f"l{i}")
                for k, v in ((DG_TAG, "-8.5"), ("target", target), ("series", f"ChEMBL|{target}|X"),
                             ("source", "test")):
                    m.SetProp(k, v)
                w.write(m)
    series = posed_series(tmp_path)
    assert [s.target for s in series] == ["SYK", "EXCLUDED"]
    assert series[0].preparation == ""   # Uni-FEP poses: the default preparation


def test_reposed_series_are_kept_next_to_the_original_poses(tmp_path):
    """Records tagged ``preparation`` (benchmarks/repose_series.py) form their own
    preparation: the same ligands re-posed are second samples, not duplicates."""
    schr = _schrodinger_tree(tmp_path / "si", [("SYK", "syk")])
    d = tmp_path / "reposed" / "set1__syk"
    d.mkdir(parents=True)
    (d / "protein.pdb").write_bytes(REC.read_bytes())
    with Chem.SDWriter(str(d / "ligands.sdf")) as w:
        for m in Chem.SDMolSupplier(str(schr / "set1" / "syk_ligands.sdf"), removeHs=False):
            for k, v in (("target", "SYK"), ("series", "reposed:set1/syk"), ("preparation", "reposed")):
                m.SetProp(k, v)
            w.write(m)
    series = collect_series(schr, [tmp_path / "reposed"])
    assert [(s.name, s.preparation) for s in series] == [("set1/syk", ""), ("reposed:set1/syk", "reposed")]
    ds, report = build_dataset(series, pocket_radius=5.0)
    assert len(ds) == 6 and report.duplicates == 0


def _plb_target(root: Path, folder: str, measurements: str) -> None:
    """A target folder in the OpenFF protein-ligand-benchmark layout."""
    (root / folder / "01_protein" / "crd").mkdir(parents=True)
    (root / folder / "02_ligands").mkdir()
    (root / folder / "00_data").mkdir()
    (root / folder / "01_protein" / "crd" / "protein.pdb").write_bytes(REC.read_bytes())
    (root / folder / "02_ligands" / "ligands.sdf").write_bytes(POSES.read_bytes())
    (root / folder / "00_data" / "ligands.yml").write_text(measurements)


def test_plb_series_reads_folders_and_never_opens_excluded_ones(tmp_path):
    _plb_target(tmp_path, "syk", "")
    (tmp_path / "tyk2" / "02_ligands").mkdir(parents=True)
    (tmp_path / "tyk2" / "02_ligands" / "ligands.sdf").write_text("not read")
    (tmp_path / "README.md").write_text("not a target")
    series = plb_series(tmp_path)
    assert [(s.target, s.name) for s in series] == [("SYK", "syk"), ("EXCLUDED", "tyk2")]
    assert series[0].protein.endswith("syk/01_protein/crd/protein.pdb")
    assert series[1].protein == series[1].ligands == ""


def test_plb_measurements_become_pk_and_a_bad_one_is_named(tmp_path):
    yml = """lig_a:
  measurement: {type: ic50, unit: nM, value: 10}
lig_b:
  measurement: {type: ki, unit: uM, value: 2.0}
lig_c:
  measurement: {type: pic50, unit: '', value: 7.5}
lig_d:
  measurement: {type: dg, unit: kcal/mol, value: -8.1855}
"""
    _plb_target(tmp_path, "cdk8", yml)
    pk = plb_pk(plb_series(tmp_path)[0])
    assert pk["lig_a"] == pytest.approx(8.0)
    assert pk["lig_b"] == pytest.approx(6.0 - math.log10(2.0))
    assert pk["lig_c"] == 7.5 and pk["lig_d"] == pytest.approx(pk_from_dg(-8.1855)) == pytest.approx(6.0, abs=1e-3)
    (tmp_path / "cdk8" / "00_data" / "ligands.yml").write_text(
        yml + "lig_e:\n  measurement: {type: ic50, unit: '%', value: 50}\n")
    with pytest.raises(DatasetError, match=r"ligands\.yml: ligand lig_e: .*'%'"):
        plb_pk(plb_series(tmp_path)[0])


def test_folder_series_reads_folders_and_never_opens_excluded_ones(tmp_path):
    """MCompChem/fep-benchmark's layout: one PDB and ligands.sdf per folder, the target from
    the folder name's first word; an excluded target's folder is not opened (its files here
    would fail if it were: no PDB at all)."""
    for folder, pdbs in (("cdk8", ["5hnb-chainA-prepared.pdb"]), ("hif2a-jmc2023", ["x.pdb"]), ("jnk1", [])):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "ligands.sdf").write_text("records")
        for name in pdbs:
            (tmp_path / folder / name).write_text("ATOM")
    (tmp_path / "README.md").write_text("not a series")
    series = folder_series(tmp_path)
    assert [(s.target, s.name) for s in series] == [("CDK8", "cdk8"), ("EPAS1", "hif2a-jmc2023"),
                                                    ("EXCLUDED", "jnk1")]
    assert series[0].protein.endswith("cdk8/5hnb-chainA-prepared.pdb") and series[2].protein == ""
    (tmp_path / "cdk8" / "second.pdb").write_text("ATOM")
    with pytest.raises(DatasetError, match=r"cdk8: 2 protein \.pdb files"):
        folder_series(tmp_path)


def test_sdf_activity_tags_become_pk_and_a_bad_value_is_named(tmp_path):
    """The tag names of that set carry the unit: IC50[nM], IC50 uM, IC50[uM](SPA), an ITC Kd
    in µM; a record without such a tag is left out; a value that is not a positive number
    names the file, the record and the tag."""
    mols = [m for m in Chem.SDMolSupplier(str(POSES), removeHs=False)][:5]
    tags = [("IC50[nM]", "10"), ("IC50 uM", "2.0"), ("IC50[uM](SPA)", "0.5"),
            ("Protein/Binding/ITC_Mean_KD_uM_HIF2a_240-350_human;(Num)", "0.1"), ("Name", "no measurement")]
    sdf = tmp_path / "ligands.sdf"
    with Chem.SDWriter(str(sdf)) as w:
        for i, (m, (tag, value)) in enumerate(zip(mols, tags, strict=True)):
            m.SetProp("_Name", f"lig{i}")
            m.SetProp(tag, value)
            w.write(m)
    pk = sdf_activity_pk(sdf)
    assert sorted(pk) == ["lig0", "lig1", "lig2", "lig3"]
    assert pk["lig0"] == pytest.approx(8.0) and pk["lig1"] == pytest.approx(6.0 - math.log10(2.0))
    assert pk["lig2"] == pytest.approx(6.0 - math.log10(0.5)) and pk["lig3"] == pytest.approx(7.0)
    mols[0].SetProp("IC50[nM]", ">10")
    with Chem.SDWriter(str(sdf)) as w:
        w.write(mols[0])
    with pytest.raises(DatasetError, match=r"ligands\.sdf: record 1 \(lig0\): IC50\[nM\] = '>10' is not a positive"):
        sdf_activity_pk(sdf)


def _openfe_tree(root: Path, schrodinger_sdf: Path, system: str = "merck/syk") -> Path:
    """IndustryBenchmarks2024's ``prepared_structures`` layout: the Schrödinger series'
    records re-written without their ``r_exp_dg`` tags (OpenFE's files carry none), next to
    a system of an excluded target whose files would fail to read."""
    folder = root / system
    folder.mkdir(parents=True)
    (folder / "protein.pdb").write_bytes(REC.read_bytes())
    with Chem.SDWriter(str(folder / "ligands.sdf")) as w:
        for m in Chem.SDMolSupplier(str(schrodinger_sdf), removeHs=False):
            m.ClearProp(DG_TAG)
            w.write(m)
    (root / "jacs_set" / "tyk2").mkdir(parents=True)
    (root / "jacs_set" / "tyk2" / "protein.pdb").write_text("not read")
    (root / "jacs_set" / "tyk2" / "ligands.sdf").write_text("not read")
    return root


def test_another_preparation_of_a_complex_is_a_second_sample_with_the_same_label(tmp_path, monkeypatch):
    """OpenFE's re-preparation of a Schrödinger series takes that series' measurements by
    ligand name; duplicates are removed within a preparation, not across them, so each
    complex comes twice (once per preparation) with one label; an excluded target's
    system is never opened."""
    schr = _schrodinger_tree(tmp_path / "si", [("SYK", "syk")])
    openfe = _openfe_tree(tmp_path / "ofe", schr / "set1" / "syk_ligands.sdf")
    opened: list[str] = []
    supplier = Chem.SDMolSupplier
    monkeypatch.setattr(Chem, "SDMolSupplier", lambda path, *a, **k: opened.append(str(path)) or supplier(path, *a, **k))
    series = collect_series(schr, openfe=openfe)
    assert opened and not [p for p in opened if "tyk2" in p]
    assert [(s.name, s.preparation) for s in series] == [("set1/syk", ""), ("openfe:merck/syk", "openfe")]
    ds, report = build_dataset(series, pocket_radius=5.0)
    assert report.duplicates == 0 and not report.failures
    by_name = {s.graph.names[0]: float(s.targets["score"]) for s in ds}
    assert sorted(by_name) == ["SYK|openfe:merck/syk|a", "SYK|openfe:merck/syk|b", "SYK|openfe:merck/syk|c",
                               "SYK|set1/syk|a", "SYK|set1/syk|b", "SYK|set1/syk|c"]
    for lig, dg in zip("abc", (-9.0, -8.0, -7.0), strict=True):
        assert by_name[f"SYK|set1/syk|{lig}"] == by_name[f"SYK|openfe:merck/syk|{lig}"] == pytest.approx(pk_from_dg(dg))
    assert len({sample_series(s) for s in ds}) == 2   # two series for the per-series figures
    # the same preparation read twice: the second copy is a duplicate
    _, again = build_dataset(series + series[1:], pocket_radius=5.0)
    assert again.duplicates == 3


def test_other_preparations_name_what_they_cannot_label(tmp_path):
    schr = _schrodinger_tree(tmp_path / "si", [("SYK", "syk")])
    with pytest.raises(DatasetError, match="give the structure_inputs folder too"):
        collect_series(None, openfe=tmp_path)
    yml = "a:\n  measurement: {type: ic50, unit: nM, value: 10}\n"
    _plb_target(tmp_path / "plb", "syk", yml)
    (tmp_path / "plb" / "syk" / "02_ligands" / "ligands.sdf").write_bytes(
        (schr / "set1" / "syk_ligands.sdf").read_bytes())
    series = collect_series(None, plb=tmp_path / "plb")
    assert [(s.name, s.preparation) for s in series] == [("plb:syk", "plb")]
    ds, report = build_dataset(series, pocket_radius=5.0)
    assert [s.graph.names[0] for s in ds] == ["SYK|plb:syk|a"] and float(ds[0].targets["score"]) == pytest.approx(8.0)
    assert len(report.failures) == 2 and "record 2: no measurement named 'b'" in report.failures[0]


# ----------------------------------------------------------------------------- labels
def test_pk_from_binding_free_energy():
    # ΔG = RT ln K_d: 1 µM at 298.15 K is -8.19 kcal/mol, pK 6
    dg = 8.314462618e-3 / 4.184 * 298.15 * math.log(1e-6)
    assert pk_from_dg(dg) == pytest.approx(6.0, abs=1e-9)


def test_dataset_labels_pockets_and_duplicates(tmp_path):
    # "b_1" is a protomer copy of "b"; the third record repeats the first compound
    sdf = _sdf_with_dg(POSES, tmp_path / "l.sdf", [-9.0, -8.0, -8.0, -7.5], ["a", "b", "b_1", "c"])
    mols = [m for m in Chem.SDMolSupplier(str(sdf), removeHs=False)]
    mols[3] = Chem.Mol(mols[0])
    mols[3].SetProp("_Name", "c")
    mols[3].SetProp(DG_TAG, "-7.5")
    with Chem.SDWriter(str(sdf)) as w:
        for m in mols:
            w.write(m)
    ds, report = build_dataset([Series("SYK", "syk", str(REC), str(sdf))], pocket_radius=6.0)
    assert [s.graph.names[0] for s in ds] == ["SYK|syk|a", "SYK|syk|b"]
    assert report.duplicates == 2
    assert float(ds[0].targets["score"]) == pytest.approx(pk_from_dg(-9.0))
    g = ds[0].graph
    assert g.segment_ids.tolist().count(1) == int((g.atom_segment_ids == 1).sum())   # atom blocks
    lig = g.positions[g.atom_segment_ids == 1]
    rec = g.positions[g.atom_segment_ids == 0]
    # every pocket residue has an atom within 6 Å of the ligand
    d = torch.cdist(rec, lig).min(dim=1).values
    per_block = torch.full((g.num_blocks,), 1e9, dtype=d.dtype).scatter_reduce(
        0, g.block_ids[g.atom_segment_ids == 0], d, reduce="amin")
    assert float(per_block[g.segment_ids == 0].max()) <= 6.0


def test_split_by_target_keeps_targets_whole(tmp_path):
    a = _sdf_with_dg(POSES, tmp_path / "a.sdf", [-9.0, -8.0], ["a", "b"])
    b = _sdf_with_dg(POSES, tmp_path / "b.sdf", [-7.0, -6.0, -5.0], ["c", "d", "e"])
    ds, _ = build_dataset([Series("SYK", "s1", str(REC), str(a)), Series("MET", "s2", str(REC), str(b))],
                          pocket_radius=5.0)
    train, held = split_by_target(ds, ["cMet"])
    assert {sample_target(s) for s in train} == {"SYK"} and len(train) == 2
    assert {sample_target(s) for s in held} == {"MET"} and len(held) == 3


# ----------------------------------------------------------------------------- bad measurements and folders
@pytest.mark.parametrize("dg, words", [
    ("nan", "r_exp_dg = nan kcal/mol is not a finite number"),
    ("-40.0", "gives pK 29.3, outside -1..17 (no measured affinity); ΔG must be in kcal/mol"),
    ("8.0", "gives pK -5.86, outside -1..17 (no measured affinity); a binding free energy is negative"),
])
def test_impossible_dg_is_a_named_failure_not_a_label(tmp_path, caplog, dg, words):
    """A NaN ΔG had stopped the whole build with a message naming neither file nor record;
    ΔG in kJ/mol (pK 29) or with a flipped sign (pK -6) had become training labels."""
    sdf = _sdf_with_dg(POSES, tmp_path / "l.sdf", [-9.0, dg], ["a", "b"])
    with caplog.at_level("WARNING", logger="get_md.datasets.affinity"):
        ds, report = build_dataset([Series("SYK", "syk", str(REC), str(sdf))], pocket_radius=5.0)
    assert [s.graph.names[0] for s in ds] == ["SYK|syk|a"]
    assert len(report.failures) == 1 and report.failures[0].startswith(f"{sdf}: record 2: ")
    assert words in report.failures[0] and words in caplog.text


def test_measurements_in_impossible_units_or_without_a_unit_are_named(tmp_path):
    """An IC50 tag without a unit had been skipped as 'no measurement' (a series without
    labels), an IC50 of 1e12 nM had become pK -3, a NaN pIC50 in ligands.yml a NaN label."""
    mol = next(iter(Chem.SDMolSupplier(str(POSES), removeHs=False)))
    sdf = tmp_path / "ligands.sdf"
    for tag, value, words in (("IC50", "5", "tag 'IC50' names no concentration unit"),
                              ("IC50[nM]", "1e12", "IC50[nM] = '1e12' gives pK -3, outside -1..17")):
        m = Chem.Mol(mol)
        m.SetProp("_Name", "lig0")
        m.SetProp(tag, value)
        with Chem.SDWriter(str(sdf)) as w:
            w.write(m)
        with pytest.raises(DatasetError, match=re.escape(f"{sdf}: record 1 (lig0): {words}")):
            sdf_activity_pk(sdf)
    for k, (yml, words) in enumerate((("lig_a:\n  measurement: {type: pic50, unit: '', value: .nan}\n", "is not a finite number"),
                       ("lig_a:\n  measurement: {type: ic50, unit: nM, value: -3}\n", "is not a positive concentration"),
                       ("lig_a: [unclosed\n", "invalid YAML"),
                       ("- a\n", "expected a map of ligand name -> record, got list"))):
        root = tmp_path / f"plb{k}"
        _plb_target(root, "syk", yml)
        with pytest.raises(DatasetError, match=re.escape(words)):
            plb_pk(plb_series(root)[0])
    (root / "syk" / "00_data" / "ligands.yml").unlink()
    with pytest.raises(DatasetError, match=r"ligands\.yml: measurements file not found"):
        plb_pk(plb_series(root)[0])


@pytest.mark.parametrize("reader", [schrodinger_series, posed_series, plb_series, folder_series])
def test_series_readers_name_a_missing_folder(tmp_path, reader):
    """A missing folder had given an empty list (Schrödinger, posed) or a bare FileNotFoundError."""
    with pytest.raises(DatasetError, match=f"{tmp_path / 'nope'}: .*folder not found"):
        reader(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match=f"{tmp_path / 'file'}: is a file, not the"):
        reader(tmp_path / "file")


def test_affinity_recipe_without_ligands_is_one_error_line(tmp_path):
    """`python -m get_md.train.affinity data` on a folder without series had written three
    empty datasets; errors of the recipe steps had been tracebacks."""
    import subprocess
    import sys

    (tmp_path / "empty").mkdir()
    run = subprocess.run([sys.executable, "-m", "get_md.train.affinity", "data", "--posed",
                          str(tmp_path / "empty"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"python -m get_md.train.affinity: error: {tmp_path / 'empty'}: no ligand with a usable "
        "r_exp_dg tag (0 series, 0 excluded, 0 failures)"]
    assert not (tmp_path / "out").exists()


def test_affinity_train_with_no_members_is_refused(tmp_path, capsys):
    """`train --members 0` had trained nothing and exited 0."""
    from get_md.train.affinity import main

    with pytest.raises(SystemExit) as info:
        main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "runs"), "--members", "0"])
    assert info.value.code == 2
    assert "--members must be >= 1" in capsys.readouterr().err


def test_training_threads_option(tmp_path, capsys, monkeypatch):
    """`--threads 1` (members trained side by side) sets torch's thread count; below 1 is refused."""
    from get_md.cli import run_module
    from get_md.train import affinity, pose

    for module, prog in ((affinity, "python -m get_md.train.affinity"), (pose, "python -m get_md.train.pose")):
        rc = run_module(module.main, prog, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "runs"),
                                            "--threads", "0"])
        assert rc == 2
        assert f"{prog}: error: --threads must be >= 1, got 0" in capsys.readouterr().err
    from get_md.train import potential  # its --threads 0 had been ignored

    rc = run_module(potential.main, "python -m get_md.train.potential",
                    ["--data", str(tmp_path / "x.npz"), "--out", str(tmp_path / "p"), "--threads", "0"])
    assert rc == 2
    assert "python -m get_md.train.potential: error: --threads must be >= 1, got 0" in capsys.readouterr().err
    calls = []
    monkeypatch.setattr(affinity.torch, "set_num_threads", calls.append)
    monkeypatch.setattr(affinity, "train_members", lambda *a, **k: [])
    affinity.main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "runs"), "--threads", "1"])
    assert calls == [1]
