"""The SDF output of ``rescore-poses``: the scored poses, as they were scored, with
``get_*`` tags, in the result table's order (:func:`write_pose_sdf`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator, Optional

from .options import PathLike
from .outputs import atomic_output
from .pose_records import is_nan, mol_from_graph, plain_value, pose_with_hydrogens


def _sdf_value(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6f}"
    return str(value)


def _sdf_record(mol, tags: dict) -> str:
    """One SDF record: the molecule's mol block, its own public properties, then ``tags``."""
    from rdkit import Chem

    try:
        block = Chem.MolToMolBlock(mol)
    except Exception:  # noqa: BLE001 - unsanitized aromatic MOL2 input
        block = Chem.MolToMolBlock(mol, kekulize=False)
    lines = [block.rstrip("\n")]
    props = mol.GetPropsAsDict(includePrivate=False, includeComputed=False)
    merged = {k: plain_value(v) for k, v in props.items() if k not in tags}
    merged.update(tags)
    for key, value in merged.items():
        lines.append(f">  <{key}>")
        lines.append(_sdf_value(value))
        lines.append("")
    return "\n".join(lines) + "\n$$$$\n"


def _sdf_record_text(text: str, tags: dict) -> Optional[str]:
    """An input SDF record verbatim up to ``M  END``, its own data items (those not
    replaced by ``tags``), then ``tags``; None if the record has no ``M  END``."""
    from get_md.build.molecule import split_sdf_record

    parts = split_sdf_record(text)
    if parts is None:
        return None
    lines, items = parts
    for key, value in [(k, v) for k, v in items if k not in tags] + [(k, _sdf_value(v)) for k, v in tags.items()]:
        lines += [f">  <{key}>", value, ""]
    return "\n".join(lines) + "\n$$$$\n"


def _pose_tags(row: dict, task: str, pose: int) -> dict[str, Any]:
    tags: dict[str, Any] = {}
    if task == "score":
        tags["get_score"] = row["score"]
        if row.get("score_std") is not None:
            tags["get_score_std"] = row["score_std"]
        if row.get("pose_score") is not None:
            tags["get_pose_score"] = row["pose_score"]
    else:
        tags["get_interaction_energy"] = row["interaction_energy_eV"]
        tags["get_interaction_energy_kcal_mol"] = row["interaction_energy_kcal_mol"]
    tags["get_rank"] = int(row["rank"])
    tags["get_pose"] = pose
    if "pb_valid" in row and row["pb_valid"] is not None and not is_nan(row["pb_valid"]):
        tags["pb_valid"] = bool(row["pb_valid"])
    return tags


def _scored_records(poses: PathLike, by_pose: dict, task: str) -> Iterator[tuple[int, str]]:
    """``(pose, SDF record text with tags)`` for the poses in ``by_pose``, in file order.

    SDF input is copied record by record as text (the molecule block exactly as given),
    but for records that got hydrogens (column ``n_hydrogens_added``): those, like other
    formats, go through RDKit (SDF, MOL2) or the parsed graph (PDBQT, PDB), so that the
    file holds the structure that was scored."""
    from get_md.build import base_suffix, iter_poses
    from get_md.build.molecule import iter_sdf_texts

    if base_suffix(poses) in (".sdf", ".sd", ".mol"):
        from get_md.build.molecule import parse_record

        for index, text in iter_sdf_texts(poses):
            row = by_pose.get(index)
            if row is None:
                continue
            tags = _pose_tags(row, task, index)
            if _got_hydrogens(row):  # parse again only these records
                rec = parse_record(text, "sdf", str(poses), index, True, False, 1)
                yield index, _sdf_record(pose_with_hydrogens(rec)[1], tags)
                continue
            record = _sdf_record_text(text, tags)
            if record is not None:
                yield index, record
        return
    for rec in iter_poses(poses, segment_id=1):
        row = by_pose.get(rec.index)
        if row is None or rec.graph is None:
            continue
        mol = pose_with_hydrogens(rec)[1] if _got_hydrogens(row) else rec.mol
        if mol is None:
            mol = mol_from_graph(rec.graph, str(rec.properties.get("_Name") or f"{Path(rec.source).name}#{rec.index}"))
            for k, v in rec.properties.items():
                if not k.startswith("_"):
                    mol.SetProp(k, _sdf_value(plain_value(v)))
        yield rec.index, _sdf_record(mol, _pose_tags(row, task, rec.index))


def _got_hydrogens(row: dict) -> bool:
    """Whether a result row's pose was scored with hydrogens added (``n_hydrogens_added``)."""
    value = row.get("n_hydrogens_added")
    try:
        return not (value is None or is_nan(value)) and int(value) > 0
    except (TypeError, ValueError):  # pandas' NA
        return False


def write_pose_sdf(poses: PathLike, table, out_sdf: PathLike, task: str) -> int:
    """Write the scored poses of ``table`` (in its row order) to ``out_sdf`` atomically,
    as they were scored (hydrogens added where ``n_hydrogens_added`` says so).

    The input file is streamed again; records are written to a scratch file first and
    then copied in the table's order, so memory does not grow with the number of poses.
    Returns the number of records written.
    """
    import tempfile

    wanted = table[table["status"] == "ok"]
    order = [int(p) for p in wanted["pose"]]
    if not order:
        with atomic_output(out_sdf):
            pass
        return 0
    by_pose = {int(r["pose"]): r for r in wanted.to_dict("records")}
    offsets: dict[int, tuple[int, int]] = {}
    out_sdf = Path(out_sdf)
    with tempfile.TemporaryFile(mode="w+b", dir=out_sdf.parent if out_sdf.parent.exists() else None) as scratch:
        for index, record in _scored_records(poses, by_pose, task):
            data = record.encode()
            offsets[index] = (scratch.tell(), len(data))
            scratch.write(data)
        with atomic_output(out_sdf, mode="wb") as fh:
            for pose in order:
                if pose not in offsets:
                    continue
                start, size = offsets[pose]
                scratch.seek(start)
                fh.write(scratch.read(size))
    return len(offsets)
