"""Congeneric series with experimental binding free energies, as pK-labelled complexes.

A *series* is one protein structure (PDB) and an SDF of ligand poses placed in its
pocket, each record tagged with its experimental binding free energy ``r_exp_dg``
(kcal/mol), as in the Schrödinger public FEP+ benchmark. :func:`build_dataset`
turns series into a :class:`~get_md.train.data.MolecularDataset` whose samples are
the complexes the rescoring workflow builds for the same files (receptor from
:func:`get_md.build.from_pdb`, waters dropped; pocket residues within
``pocket_radius`` of the ligand; ligand in segment 1), labelled

    pK = -ΔG / (RT ln 10),  RT ln 10 = 1.3643 kcal/mol at 298.15 K.

Every series name, file stem and target passes :func:`get_md.datasets.targets.is_excluded`
first: the targets kept for independent evaluation are never read. Ligands that
recur (protomer copies ``NAME_1`` of ``NAME`` in one series; the same compound of the
same target in another series or source) are kept once, by target and InChIKey
skeleton, within one preparation of the structures (:attr:`Series.preparation`): OpenFE's,
OpenFF's or MCompChem's preparation of a Schrödinger complex is a second sample of it.

Sample names are ``"TARGET|series|ligand"`` so that splits can go by target.

Example:
    >>> from get_md.datasets.affinity import schrodinger_series, build_dataset
    >>> series = schrodinger_series("fep_benchmark_inputs/structure_inputs")  # doctest: +SKIP
    >>> ds, report = build_dataset(series)                                    # doctest: +SKIP
    >>> ds[0].targets["score"]                                                # doctest: +SKIP
    tensor([7.2])
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence, Union

import torch

from get_md.datasets.targets import canonical_target, is_excluded
from get_md.errors import DatasetError
from get_md.units import RT_LN10_KCAL_MOL, pk_from_dg

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: SDF tag holding the experimental binding free energy (kcal/mol).
DG_TAG = "r_exp_dg"
#: pK outside this range cannot be a measured affinity (K_d above 10 M or below 1e-17 M): an error.
PK_POSSIBLE = (-1.0, 17.0)
#: pK outside this range is unusual (K_d above 10 mM or below 10 fM): a warning.
PK_USUAL = (2.0, 14.0)


def check_pk(pk: float, who: str, measured: str, hint: str = "is its unit right?") -> float:
    """``pk`` if it can be a measured affinity; DatasetError naming ``who`` (file and record)
    and ``measured`` (the value as given) for a non-finite or impossible one, a logged
    warning for an unusual one.

    Example:
        >>> check_pk(6.0, "x.sdf: record 1", "IC50 = 1000 nM")
        6.0
    """
    if not math.isfinite(pk):
        raise DatasetError(f"{who}: {measured} is not a finite number")
    low, high = PK_POSSIBLE
    if not low <= pk <= high:
        raise DatasetError(f"{who}: {measured} gives pK {pk:.3g}, outside {low:g}..{high:g} "
                           f"(no measured affinity); {hint}")
    low, high = PK_USUAL
    if not low <= pk <= high:
        logger.warning("%s: %s gives pK %.3g, outside the usual %g..%g; %s", who, measured, pk,
                       low, high, hint)
    return pk


def _dg_hint(dg: float) -> str:
    if dg > 0:
        return "a binding free energy is negative: a flipped sign, or a pK in the ΔG tag?"
    return "ΔG must be in kcal/mol (kJ/mol divided by 4.184)"


def _folder(root: PathLike, what: str) -> Path:
    """``root`` as a Path; DatasetError naming it unless it is a folder."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: {what} folder not found")
    if not root.is_dir():
        raise DatasetError(f"{root}: is a file, not the {what} folder")
    return root


@dataclass(frozen=True)
class Series:
    """One protein structure and the ligand poses measured against it.

    Attributes:
        target: canonical target key (:func:`canonical_target`).
        name: series name (unique within its source).
        protein: PDB file.
        ligands: SDF file of posed ligands with the ``r_exp_dg`` tag.
        source: where the files come from (data set and commit).
        measured: pK by SDF record name, for sets that keep their measurements outside
            the SDF (OpenFF, MCompChem, OpenFE); None: each record's ``r_exp_dg`` tag.
        preparation: which preparation of the structures this is (``""`` for
            Schrödinger's own and the poses built on Uni-FEP's references). Duplicates
            are removed within a preparation only, so that one complex prepared twice
            (protonation, poses and receptor set up by different groups) is kept twice.
    """

    target: str
    name: str
    protein: str
    ligands: str
    source: str = ""
    measured: Optional[Mapping[str, float]] = field(default=None, compare=False, repr=False)
    preparation: str = ""


@dataclass
class BuildReport:
    """What :func:`build_dataset` kept and left out, and why."""

    series: list[dict] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    duplicates: int = 0
    failures: list[str] = field(default_factory=list)


def schrodinger_series(root: PathLike, source: str = "schrodinger/public_binding_free_energy_benchmark") -> list[Series]:
    """The series of the Schrödinger public FEP+ benchmark's ``structure_inputs`` folder
    (one ``subset_metadata.csv`` per subset), excluded targets left out by name.

    Example:
        >>> [s.target for s in schrodinger_series("structure_inputs")][:2]  # doctest: +SKIP
        ['BRD4', 'FTASE']
    """
    root = _folder(root, "structure_inputs")
    out: list[Series] = []
    for meta in sorted(root.glob("*/subset_metadata.csv")):
        with meta.open(newline="") as fh:
            for row in csv.DictReader(fh):
                protein = (row.get("Protein") or "").strip()
                stem = (row.get("Input file naming scheme") or "").strip()
                if not stem:
                    continue
                name = f"{meta.parent.name}/{stem}"
                if is_excluded(protein, stem, name):
                    out.append(Series("EXCLUDED", name, "", "", source))
                    continue
                out.append(Series(canonical_target(protein or stem), name,
                                  str(meta.parent / f"{stem}_protein.pdb"),
                                  str(meta.parent / f"{stem}_ligands.sdf"), source))
    return out


def posed_series(root: PathLike) -> list[Series]:
    """Series written by :mod:`get_md.datasets.reference_poses` (``<root>/<series>/protein.pdb``
    and ``ligands.sdf`` whose records carry ``target``, ``series`` and ``source`` tags, and
    ``preparation`` where the poses re-prepare series of another source)."""
    root = _folder(root, "posed series")
    out: list[Series] = []
    for sdf in sorted(root.glob("*/ligands.sdf")):
        folder = sdf.parent
        tags = _first_record_tags(sdf)
        target = tags.get("target", folder.name)
        name = tags.get("series", folder.name)
        if is_excluded(target, name, folder.name):
            out.append(Series("EXCLUDED", name, "", "", tags.get("source", "")))
            continue
        out.append(Series(canonical_target(target), name, str(folder / "protein.pdb"), str(sdf),
                          tags.get("source", ""), preparation=tags.get("preparation", "")))
    return out


#: concentration units of OpenFF protein-ligand-benchmark measurements, in mol/L
_MOLAR = {"pM": 1e-12, "nM": 1e-9, "uM": 1e-6, "µM": 1e-6, "mM": 1e-3, "M": 1.0}


def plb_series(root: PathLike, source: str = "openforcefield/protein-ligand-benchmark") -> list[Series]:
    """The targets of the OpenFF protein-ligand-benchmark's ``data`` folder, one series each
    (``<root>/<target>/01_protein/crd/protein.pdb`` and ``02_ligands/ligands.sdf``; the
    measurements in ``00_data/ligands.yml``: :func:`plb_pk`). Folders of excluded targets
    are named ``EXCLUDED`` and not opened. Cofactors (``01_protein/crd/cofactor.sdf``) are
    not part of the receptor.

    Example:
        >>> [s.target for s in plb_series("protein-ligand-benchmark/data")][:2]  # doctest: +SKIP
        ['CDK8', 'MET']
    """
    out: list[Series] = []
    root = _folder(root, "protein-ligand-benchmark data")
    for folder in sorted(p for p in root.iterdir() if (p / "02_ligands" / "ligands.sdf").is_file()):
        if is_excluded(folder.name):
            out.append(Series("EXCLUDED", folder.name, "", "", source))
            continue
        out.append(Series(canonical_target(folder.name), folder.name,
                          str(folder / "01_protein" / "crd" / "protein.pdb"),
                          str(folder / "02_ligands" / "ligands.sdf"), source))
    return out


def plb_pk(series: Series) -> dict[str, float]:
    """Measured pK of each ligand of a :func:`plb_series` series, by ligand name (the SDF
    record names), from ``00_data/ligands.yml``: IC50 / Ki / Kd in pM to M as
    −log10(value in M), p-values (``pic50``, unit ``''``) as they are, ΔG in kcal/mol or
    kJ/mol through :func:`get_md.units.pk_from_dg`.

    Raises:
        DatasetError: a measurement without a value or in a unit not listed above, naming
            the file and the ligand.

    Example:
        >>> plb_pk(plb_series("protein-ligand-benchmark/data")[0])["lig_13"]  # doctest: +SKIP
        6.2
    """
    import yaml

    path = Path(series.ligands).parents[1] / "00_data" / "ligands.yml"
    if not path.is_file():
        raise DatasetError(f"{path}: measurements file not found (series {series.name})")
    try:
        with path.open(encoding="utf-8") as fh:
            records = yaml.safe_load(fh) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DatasetError(f"{path}: invalid YAML ({first})") from e
    if not isinstance(records, dict):
        raise DatasetError(f"{path}: expected a map of ligand name -> record, got {type(records).__name__}")
    out: dict[str, float] = {}
    for name, record in records.items():
        if record is not None and not isinstance(record, dict):
            raise DatasetError(f"{path}: ligand {name}: record is not a map ({record!r})")
        m = (record or {}).get("measurement") or {}
        if not isinstance(m, dict):
            raise DatasetError(f"{path}: ligand {name}: measurement is not a map ({m!r})")
        kind, unit, value = str(m.get("type", "")).lower(), str(m.get("unit", "")), m.get("value")
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: ligand {name}: measurement has no numeric value ({value!r})") from None
        who, measured = f"{path}: ligand {name}", f"measurement {kind or '?'} {value:g} {unit!r}"
        if unit in _MOLAR and not value > 0:
            raise DatasetError(f"{who}: {measured} is not a positive concentration")
        if unit in _MOLAR:
            out[name] = check_pk(-math.log10(value * _MOLAR[unit]), who, measured)
        elif unit == "" and kind.startswith("p"):
            out[name] = check_pk(value, who, measured)
        elif unit in ("kcal/mol", "kJ/mol"):
            dg = value if unit == "kcal/mol" else value / 4.184
            out[name] = check_pk(pk_from_dg(dg), who, measured, _dg_hint(dg))
        else:
            raise DatasetError(f"{who}: {measured} is not a concentration (pM..M), a p-value or a ΔG "
                               f"(kcal/mol, kJ/mol)")
    return out


def folder_series(root: PathLike, source: str = "MCompChem/fep-benchmark") -> list[Series]:
    """One series per folder of ``root`` holding one protein ``*.pdb`` and ``ligands.sdf``
    (the layout of MCompChem/fep-benchmark: ``cdk8/5hnb-chainA-prepared.pdb``); the target
    from the folder name's first word (``hif2a-jmc2023`` -> EPAS1). Folders of excluded
    targets are named ``EXCLUDED`` and not opened. Measurements: :func:`sdf_activity_pk`.

    Example:
        >>> [s.target for s in folder_series("fep-benchmark")][:2]  # doctest: +SKIP
        ['CDK8', 'MET']
    """
    out: list[Series] = []
    root = _folder(root, "series")
    for folder in sorted(p for p in root.iterdir() if (p / "ligands.sdf").is_file()):
        target = canonical_target(re.split(r"[-_]", folder.name)[0])
        if is_excluded(folder.name) or is_excluded(target):
            out.append(Series("EXCLUDED", folder.name, "", "", source))
            continue
        proteins = sorted(folder.glob("*.pdb"))
        if len(proteins) != 1:
            raise DatasetError(f"{folder}: {len(proteins)} protein .pdb files; expected one next to ligands.sdf")
        out.append(Series(target, folder.name, str(proteins[0]), str(folder / "ligands.sdf"), source))
    return out


#: an SDF tag naming an affinity measurement and its unit: ``IC50[uM]``, ``IC50 uM``,
#: ``IC50[uM](SPA)``, ``Protein/Binding/ITC_Mean_KD_uM_...``
_ACTIVITY_TAG = re.compile(r"(IC50|EC50|K[DdIi])\b.*?\b(pM|nM|uM|µM|mM)\b|(IC50|K[DdIi]).*?_(pM|nM|uM|mM)_")
#: a tag naming such a measurement, with or without a unit (not pIC50, pKi: p-values)
_MEASUREMENT_TAG = re.compile(r"(?<![A-Za-z])(IC50|EC50|K[DdIi])(?![A-Za-z0-9])")


def sdf_activity_pk(path: PathLike) -> dict[str, float]:
    """pK = −log10(value in M) of each record of ``path``, by record name, from the first
    tag naming an IC50 / Kd / Ki and its unit (``IC50[nM]``, ``IC50 uM``,
    ``...ITC_Mean_KD_uM...``); records without such a tag are left out.

    Raises:
        DatasetError: a value that is not a positive number, naming the file, record and tag.

    Example:
        >>> sdf_activity_pk("fep-benchmark/cmet/ligands.sdf")["CHEMBL3402753_200"]  # doctest: +SKIP
        6.69...
    """
    from rdkit import Chem

    out: dict[str, float] = {}
    for i, mol in enumerate(Chem.SDMolSupplier(str(path), sanitize=False, removeHs=False), 1):
        if mol is None:
            continue
        for tag in mol.GetPropNames():
            m = _ACTIVITY_TAG.search(tag)
            if not m:
                continue
            unit = (m.group(2) or m.group(4)).replace("µ", "u")
            text = mol.GetProp(tag).strip()
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            who = f"{path}: record {i} ({mol.GetProp('_Name')})"
            if not value > 0 or math.isinf(value):
                raise DatasetError(f"{who}: {tag} = {text!r} is not a positive number")
            out[mol.GetProp("_Name")] = check_pk(-math.log10(value * _MOLAR[unit]), who,
                                                 f"{tag} = {text!r}")
            break
        else:
            unitless = [t for t in mol.GetPropNames() if _MEASUREMENT_TAG.search(t)]
            if unitless:  # had been left out as if the record had no measurement
                raise DatasetError(f"{path}: record {i} ({mol.GetProp('_Name')}): tag {unitless[0]!r} "
                                   "names no concentration unit (pM, nM, uM, mM), e.g. IC50[nM]")
    return out


def schrodinger_pk(series: Series) -> dict[str, float]:
    """Measured pK of each ligand of a Schrödinger series, by record name (``r_exp_dg``)."""
    from rdkit import Chem

    out: dict[str, float] = {}
    for i, mol in enumerate(Chem.SDMolSupplier(series.ligands, sanitize=False, removeHs=False), 1):
        if mol is None or not mol.HasProp(DG_TAG):
            continue
        who = f"{series.ligands}: record {i} ({mol.GetProp('_Name')})"
        try:
            dg = float(mol.GetProp(DG_TAG))
        except ValueError:
            raise DatasetError(f"{who}: {DG_TAG} = {mol.GetProp(DG_TAG)!r} is not a number") from None
        out[mol.GetProp("_Name")] = check_pk(pk_from_dg(dg), who, f"{DG_TAG} = {dg:g} kcal/mol", _dg_hint(dg))
    return out


def openfe_series(openfe: PathLike, schrodinger: PathLike, targets: Optional[Iterable[str]] = None,
                  source: str = "OpenFreeEnergy/IndustryBenchmarks2024") -> list[Series]:
    """OpenFE's re-preparation of the Schrödinger series (``IndustryBenchmarks2024``'s
    ``prepared_structures`` folder: ``SET/SYSTEM/protein.pdb`` + ``ligands.sdf``), each
    with the measured pK of the Schrödinger series it re-prepares (by ligand name).

    For each Schrödinger series (of ``targets``, or all), the system folder of the same
    target sharing the most ligand names with it; each system is used once. Folders of
    targets reserved for independent evaluation are not opened.

    Example:
        >>> [s.name for s in openfe_series("prepared_structures", "structure_inputs")][:1]  # doctest: +SKIP
        ['openfe:bayer_macrocycles/brd4']
    """
    from rdkit import Chem

    root = _folder(openfe, "OpenFE prepared_structures")
    wanted = None if targets is None else {canonical_target(t) for t in targets}
    systems = []
    for protein in sorted(root.glob("*/*/protein.pdb")):
        rel = protein.parent.relative_to(root).as_posix()
        if is_excluded(*rel.split("/")) or not (protein.parent / "ligands.sdf").is_file():
            continue
        target = canonical_target(protein.parent.name)
        if wanted is None or target in wanted:
            names = {m.GetProp("_Name") for m in Chem.SDMolSupplier(str(protein.parent / "ligands.sdf"),
                                                                    sanitize=False) if m is not None}
            systems.append((rel, target, names))
    out: list[Series] = []
    used: set[str] = set()
    for s in schrodinger_series(schrodinger):
        if s.target == "EXCLUDED" or (wanted is not None and s.target not in wanted):
            continue
        measured = schrodinger_pk(s)
        best = max((x for x in systems if x[1] == s.target and x[0] not in used),
                   key=lambda x: len(x[2] & set(measured)), default=None)
        if best is None or not best[2] & set(measured):
            logger.info("%s: no OpenFE system shares its ligands", s.name)
            continue
        used.add(best[0])
        folder = root / best[0]
        out.append(Series(s.target, f"openfe:{best[0]}", str(folder / "protein.pdb"),
                          str(folder / "ligands.sdf"), source, measured=measured, preparation="openfe"))
    return out


def collect_series(schrodinger: Optional[PathLike], posed: Sequence[PathLike] = (),
                   plb: Optional[PathLike] = None, folders: Optional[PathLike] = None,
                   openfe: Optional[PathLike] = None) -> list[Series]:
    """The series of a Schrödinger ``structure_inputs`` folder (None: none), those of each
    ``posed`` folder, then other preparations of the same kind of data: the OpenFF
    protein-ligand-benchmark ``data`` folder (``plb``), a folder of MCompChem-style series
    folders (``folders``) and OpenFE's re-preparation of the Schrödinger series
    (``openfe``, needs ``schrodinger``). Excluded ones come back with target ``EXCLUDED``
    (OpenFE's are not listed at all).

    Example:
        >>> collect_series("structure_inputs", ["data/unifep"], plb="protein-ligand-benchmark/data")  # doctest: +SKIP
    """
    from dataclasses import replace

    series = schrodinger_series(schrodinger) if schrodinger else []
    for root in posed:
        series += posed_series(root)
    if plb:
        series += [s if s.target == "EXCLUDED" else
                   replace(s, name=f"plb:{s.name}", measured=plb_pk(s), preparation="plb")
                   for s in plb_series(plb)]
    if folders:
        series += [s if s.target == "EXCLUDED" else
                   replace(s, name=f"folders:{s.name}", measured=sdf_activity_pk(s.ligands), preparation="folders")
                   for s in folder_series(folders)]
    if openfe:
        if not schrodinger:
            raise DatasetError(f"{openfe}: OpenFE's series take their measurements from the Schrödinger "
                               "series they re-prepare: give the structure_inputs folder too")
        series += openfe_series(openfe, schrodinger)
    return series


def _first_record_tags(sdf: Path) -> dict[str, str]:
    tags: dict[str, str] = {}
    key = None
    with sdf.open(errors="replace") as fh:
        for line in fh:
            if line.startswith("$$$$"):
                break
            m = re.match(r"^>\s*<([^>]+)>", line)
            if m:
                key = m.group(1)
            elif key is not None:
                tags[key] = line.strip()
                key = None
    return tags


def _skeleton_key(mol) -> Optional[str]:
    """First block of the InChIKey (connectivity; protomers and tautomers mostly agree)."""
    from rdkit import Chem

    if mol is None:
        return None
    try:
        key = Chem.MolToInchiKey(mol)
    except Exception:  # noqa: BLE001 - RDKit raises several kinds on odd molecules
        return None
    return key.split("-")[0] if key else None


def build_dataset(
    series: Iterable[Series],
    pocket_radius: float = 10.0,
    name: str = "affinity",
    ligand_chemistry: bool = False,
) -> tuple:
    """Complexes of every series as a pK-labelled dataset, and a :class:`BuildReport`.

    Args:
        series: from :func:`schrodinger_series` / :func:`posed_series`; series whose
            target is excluded are listed in the report and not read.
        pocket_radius: Å, receptor residues within this distance of the ligand.
        name: dataset name.
        ligand_chemistry: ligand atoms carry chemistry codes
            (:mod:`get_md.build.ligand_chemistry`), for models built with ``ligand_chemistry``.

    Returns:
        ``(MolecularDataset, BuildReport)``; sample targets ``{"score": [pK]}``.

    Raises:
        ValueError: a series that :func:`is_excluded` names slipped through (never
            expected: the readers mark them).
    """
    from get_md.build import from_pdb, iter_poses, make_complex, select_pocket
    from get_md.build.ligand_chemistry import with_ligand_chemistry
    from get_md.train.data import MolecularDataset, Sample

    report = BuildReport()
    samples = []
    seen: set[tuple[str, str]] = set()
    for s in series:
        if s.target == "EXCLUDED":
            report.excluded.append(s.name)
            continue
        if is_excluded(s.target, s.name, Path(s.ligands).name, Path(s.protein).name):
            raise DatasetError(f"{s.name}: target {s.target} is reserved for independent evaluation")
        kept = dup = bad = 0
        try:
            receptor = from_pdb(s.protein, segment_id=0)
        except Exception as e:  # noqa: BLE001 - one broken series must not stop the build
            report.failures.append(str(e) if str(e).startswith(s.protein) else f"{s.protein}: {e}")
            continue
        names_in_series: set[str] = set()
        records = list(iter_poses(s.ligands, segment_id=1))
        all_names = {str(r.properties.get("_Name", "")) for r in records}
        for rec in records:
            who = f"{s.ligands}: record {rec.index}"
            lig_name = str(rec.properties.get("_Name", "") or rec.index)
            base = re.sub(r"_\d+$", "", lig_name)
            if (base != lig_name and base in all_names) or lig_name in names_in_series:
                dup += 1
                continue
            if rec.error is not None or rec.graph is None:
                report.failures.append(f"{who}: {rec.error}")
                bad += 1
                continue
            if s.measured is not None:  # checked by the reader that filled it
                if lig_name not in s.measured:
                    report.failures.append(f"{who}: no measurement named {lig_name!r}")
                    bad += 1
                    continue
                pk = float(s.measured[lig_name])
            else:
                try:
                    dg = float(rec.properties[DG_TAG])
                except (KeyError, TypeError, ValueError):
                    report.failures.append(f"{who}: no numeric {DG_TAG} tag")
                    bad += 1
                    continue
                try:
                    pk = check_pk(pk_from_dg(dg), who, f"{DG_TAG} = {dg:g} kcal/mol",
                                  _dg_hint(dg))
                except DatasetError as e:  # nan, ΔG > 0 or in kJ/mol: this record only
                    logger.warning("%s", e)
                    report.failures.append(str(e))
                    bad += 1
                    continue
            key = _skeleton_key(rec.mol)
            if key is not None and (s.preparation, s.target, key) in seen:
                dup += 1
                continue
            try:
                ligand = with_ligand_chemistry(rec.graph, rec.mol) if ligand_chemistry else rec.graph
                pocket = select_pocket(receptor, ligand, pocket_radius)
                cplx = make_complex(pocket, ligand, name=f"{s.target}|{s.name}|{lig_name}")
            except Exception as e:  # noqa: BLE001
                report.failures.append(f"{who}: {e}")
                bad += 1
                continue
            if key is not None:
                seen.add((s.preparation, s.target, key))
            names_in_series.add(lig_name)
            samples.append(Sample(cplx, {"score": torch.tensor([pk])}))
            kept += 1
        report.duplicates += dup
        report.series.append({"target": s.target, "series": s.name, "source": s.source,
                              "preparation": s.preparation or "default", "kept": kept, "duplicates": dup, "failed": bad})
        logger.info("%s (%s): %d ligands, %d duplicates, %d failed", s.name, s.target, kept, dup, bad)
    return MolecularDataset(samples, name=name), report


def sample_target(sample) -> str:
    """The target key of a sample built here (first field of its name)."""
    return sample.graph.names[0].split("|", 1)[0]


def sample_series(sample) -> str:
    """The series of a sample built here: its name without the ligand (the last field),
    e.g. ``"JAK2|ChEMBL|JAK2|CHEMBL1044318"``."""
    from get_md.train.batching import series_of

    return series_of(sample.graph.names[0])


def split_by_target(dataset, held_out: Sequence[str]):
    """``(kept, held_out)`` datasets: samples of the ``held_out`` targets go to the second.

    Example:
        >>> train, test = split_by_target(ds, ["SYK", "PFKFB3"])  # doctest: +SKIP
    """
    held = {canonical_target(t) for t in held_out}
    is_held = [canonical_target(sample_target(s)) in held for s in dataset]   # both sides canonical
    inside = [i for i, h in enumerate(is_held) if h]
    outside = [i for i, h in enumerate(is_held) if not h]
    return dataset.subset(outside, f"{dataset.name}[train]"), dataset.subset(inside, f"{dataset.name}[held-out]")


def assert_no_excluded(dataset) -> None:
    """Raise ``ValueError`` if any sample of ``dataset`` belongs to an excluded target.

    Example:
        >>> assert_no_excluded(ds)  # doctest: +SKIP
    """
    for s in dataset:
        parts = s.graph.names[0].split("|")
        if is_excluded(*parts[:2]):
            raise DatasetError(f"{s.graph.names[0]}: sample of a target reserved for independent evaluation")


__all__ = [
    "DG_TAG", "PK_POSSIBLE", "PK_USUAL", "RT_LN10_KCAL_MOL", "BuildReport", "Series", "assert_no_excluded",
    "build_dataset", "check_pk",
    "pk_from_dg", "plb_pk", "plb_series", "posed_series", "sample_series", "sample_target", "schrodinger_series", "split_by_target",
]
