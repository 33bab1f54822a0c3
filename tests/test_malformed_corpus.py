"""Malformed-input corpus: every bad input gets one clear line, never a traceback or a hang.

Each case is driven through the CLI (``get_md.cli.main``: rescore-poses, rescore-traj,
info) or the library API (builders, ``export.load``, the ASE calculator) and must end
in one of two ways:

* a one-line ``get-md: error: ...`` on stderr naming the file (and the record where
  there is one) and a non-zero exit code (a ``GraphError`` / ``ValueError`` naming them
  from the library), or
* a reported skip: exit 0, the bad record's row in the output CSV has a status other
  than ``ok`` and an error naming it, the good records are scored.

Inputs are small and made here from tests/data/prolif: a ~490-atom pocket of the GPCR
(receptor / topology), two of its Vina poses, a 3-frame trajectory; models are 1-layer
GETs of width 16. Cases in trajectory frames and poses that rely on the coordinate
checks of the workflows (NaN / inf / huge / overlapping atoms) accept either ending.

Input files (poses, receptors, trajectories, topologies) here; model files, the
registry and the library API in tests/test_malformed_models.py; shared fixtures in
tests/malformed_helpers.py.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from malformed_helpers import (
    _assert_error,
    _cli,
    _coords,
    _gz_cut_in_record,
    _sdf_records,
    _with_atom_line,
    make_inputs,
    make_models,
    no_hang,
)

from get_md.build import GraphError, from_pdb

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(autouse=True)
def no_hang_guard():
    with no_hang():
        yield


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return make_models(tmp_path_factory)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    return make_inputs(tmp_path_factory)


# ----------------------------------------------------------------------------- poses
def _poses_case(kind: str, inputs, d: Path) -> Path:
    """Write the poses file of case ``kind``; returns its path."""
    r1, r2 = _sdf_records(inputs)
    both = (r1 + r2).encode()
    p = d / f"{kind}.sdf"
    if kind == "truncated":
        p.write_bytes(both[: len(r1) + len(r2) // 2])
    elif kind == "truncated_gz_second_record":
        p = d / "poses.sdf.gz"
        p.write_bytes(_gz_cut_in_record(both, 1))
    elif kind == "truncated_gz_first_record":
        p = d / "poses.sdf.gz"
        p.write_bytes(gzip.compress(both)[:40])
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "binary":
        p.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif kind == "non_utf8":
        # a Latin-1 title and tag value: read with replacement characters, still scored
        rec = r1.replace("\n", "caf\udce9 \udcff\n", 1)
        rec = rec.replace("$$$$", ">  <note>\nna\udcefve\n\n$$$$")
        p.write_bytes(rec.encode("utf-8", "surrogateescape") + r2.encode())
    elif kind in ("nan", "inf", "huge", "overlap", "unknown_element"):
        edits = {
            "nan": _coords("nan"),
            "inf": _coords("inf"),
            "huge": _coords("9999999.0"),
            "overlap": None,
            "unknown_element": lambda ln: ln[:31] + "Xx " + ln[34:],
        }
        if kind == "overlap":
            second = r2.split("\n")[5]
            bad = _with_atom_line(r2, 1, lambda ln: second[:30] + ln[30:])
        else:
            bad = _with_atom_line(r2, 1, edits[kind])
        p.write_text(r1 + bad)
    elif kind == "all_bad":
        p.write_text(_with_atom_line(r1, 1, _coords("nan")))
    elif kind == "far_away":
        lines = r1.split("\n")
        n = int(lines[3][:3])
        for k in range(4, 4 + n):
            lines[k] = f"{float(lines[k][:10]) + 500.0:10.4f}" + lines[k][10:]
        p.write_text("\n".join(lines))
    elif kind == "directory":
        p.mkdir()
    elif kind == "missing":
        pass
    else:
        raise AssertionError(kind)
    return p


#: kind -> (expectation, words the error line / skipped record's error must contain)
POSE_CASES = {
    "truncated": ("skip", ["record 2", "truncated"]),
    "truncated_gz_second_record": ("skip", ["record 2", "truncated"]),
    "truncated_gz_first_record": ("error", ["record 1", "truncated"]),
    "empty": ("error", ["no SDF records"]),
    "binary": ("error", ["record 1"]),
    "non_utf8": ("ok", []),
    "nan": ("skip", ["record 2", "non-finite"]),
    "inf": ("skip", ["record 2", "non-finite"]),
    "huge": ("skip", ["record 2", "beyond"]),
    "overlap": ("skip", ["record 2", "identical coordinates"]),
    "unknown_element": ("skip", ["record 2", "unknown element 'Xx'"]),
    "all_bad": ("error", ["record 1", "non-finite"]),
    "far_away": ("error", ["rec.pdb", "no receptor atom within"]),
    "directory": ("error", ["is a directory"]),
    "missing": ("error", ["file not found"]),
}


@pytest.mark.parametrize("kind", list(POSE_CASES))
def test_bad_poses(kind, inputs, models, tmp_path, capsys):
    poses = _poses_case(kind, inputs, tmp_path)
    out_csv = tmp_path / "out.csv"
    rc, out, err = _cli(["rescore-poses", inputs["rec"], poses, "--model", models["energy"],
                         "--pocket-radius", "4", "--add-hydrogens", "no", "--quiet",
                         "--out-csv", out_csv, "--out-sdf", tmp_path / "out.sdf"], capsys)
    expect, words = POSE_CASES[kind]
    if expect == "error":
        _assert_error(rc, err, str(poses), *words)
        return
    assert rc == 0, err
    table = pd.read_csv(out_csv).sort_values("pose")
    assert table["pose"].tolist() == [1, 2]
    if expect == "ok":
        assert (table["status"] == "ok").all()
        return
    bad = table[table["pose"] == 2].iloc[0]
    assert bad["status"] != "ok"
    for word in [str(poses), *words]:
        assert word in str(bad["error"])
    assert table[table["pose"] == 1].iloc[0]["status"] == "ok"
    assert "skipped" in out


# ----------------------------------------------------------------------------- receptor
def _receptor_case(kind: str, inputs, d: Path) -> tuple[Path, list[str]]:
    """Write the receptor of case ``kind``; returns its path and words the error must hold."""
    text = inputs["rec"].read_text()
    lines = text.splitlines(keepends=True)
    atoms = [i for i, ln in enumerate(lines) if ln.startswith("ATOM")]
    p = d / f"{kind}.pdb"

    def edit(k: int, f: Callable[[str], str]) -> str:
        out = list(lines)
        out[atoms[k]] = f(out[atoms[k]])
        return "".join(out)

    if kind == "truncated_in_coordinates":
        cut = "".join(lines[: atoms[40]]) + lines[atoms[40]][:35]
        p.write_text(cut)
        return p, [f"line {atoms[40] + 1}", "truncated"]
    if kind == "truncated_in_element":
        p.write_text("".join(lines[: atoms[40]]) + lines[atoms[40]][:70])
        return p, [f"line {atoms[40] + 1}", "truncated"]
    if kind == "truncated_gz":
        p = d / "rec.pdb.gz"
        p.write_bytes(gzip.compress(text.encode())[:2000])
        return p, ["truncated"]
    if kind == "empty":
        p.write_text("")
        return p, ["no ATOM/HETATM records"]
    if kind == "binary":
        p.write_bytes(np.random.default_rng(2).integers(0, 256, 4000, dtype=np.uint8).tobytes())
        return p, ["no ATOM/HETATM records"]
    name = lines[atoms[3]][12:16].strip()
    if kind == "nan":
        p.write_text(edit(3, lambda ln: ln[:30] + f"{'nan':>8}" + ln[38:]))
        return p, ["atom 4", name, "non-finite"]
    if kind == "huge":
        p.write_text(edit(3, lambda ln: ln[:30] + "99999999" + ln[38:]))
        return p, ["atom 4", name, "beyond"]
    if kind == "overlap":
        p.write_text(edit(3, lambda ln: ln[:30] + lines[atoms[2]][30:54] + ln[54:]))
        return p, ["atom 4", name, "identical coordinates"]
    if kind == "unknown_element":
        p.write_text(edit(3, lambda ln: ln[:76] + "Xx" + ln[78:]))
        return p, ["atom 4", name, "unknown element 'Xx'"]
    if kind == "directory":
        p.mkdir()
        return p, ["is a directory"]
    if kind == "missing":
        return p, ["file not found"]
    raise AssertionError(kind)


RECEPTOR_CASES = ["truncated_in_coordinates", "truncated_in_element", "truncated_gz", "empty",
                  "binary", "nan", "huge", "overlap", "unknown_element", "directory", "missing"]


@pytest.mark.parametrize("kind", RECEPTOR_CASES)
def test_bad_receptor(kind, inputs, models, tmp_path, capsys):
    rec, words = _receptor_case(kind, inputs, tmp_path)
    rc, _, err = _cli(["rescore-poses", rec, inputs["poses"], "--model", models["energy"],
                       "--pocket-radius", "4", "--add-hydrogens", "no", "--quiet",
                       "--out-csv", tmp_path / "o.csv", "--out-sdf", tmp_path / "o.sdf"], capsys)
    _assert_error(rc, err, str(rec), *words)
    if kind not in ("directory", "missing"):  # the builder says the same to library users
        with pytest.raises(GraphError) as info:
            from_pdb(rec)
        assert str(rec) in str(info.value)


def test_non_utf8_receptor_is_read(inputs, models, tmp_path, capsys):
    """Latin-1 bytes in a REMARK do not stop a receptor from being read and scored."""
    rec = tmp_path / "latin1.pdb"
    rec.write_bytes(b"REMARK   1 caf\xe9 \xff\xfe\n" + inputs["rec"].read_bytes())
    rc, _, err = _cli(["rescore-poses", rec, inputs["poses"], "--model", models["energy"],
                       "--pocket-radius", "4", "--add-hydrogens", "no", "--quiet",
                       "--out-csv", tmp_path / "o.csv", "--out-sdf", tmp_path / "o.sdf"], capsys)
    assert rc == 0, err
    assert (pd.read_csv(tmp_path / "o.csv")["status"] == "ok").all()


# ----------------------------------------------------------------------------- trajectories
def _traj_case(kind: str, inputs, d: Path) -> tuple[Path, int]:
    """Write the trajectory of case ``kind``; returns its path and its first bad frame."""
    import mdtraj as md

    ext = "xtc" if kind.endswith("xtc") else "dcd"
    src = inputs[ext].read_bytes()
    p = d / f"{kind}.{ext}"
    if kind.startswith("truncated"):
        p.write_bytes(src[: int(len(src) * 0.6)])  # inside frame 1 of 3
        return p, 1
    if kind.startswith("empty"):
        p.write_bytes(b"")
        return p, 0
    if kind.startswith("binary"):
        p.write_bytes(np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8).tobytes())
        return p, 0
    if kind == "directory_xtc":
        p.mkdir()
        return p, 0
    if kind == "missing_xtc":
        return p, 0
    xyz = np.load(inputs["xyz"])
    top = md.load_topology(str(inputs["top"]))
    lig = top.select("resname LIG")
    if kind == "nan_frame_dcd":
        xyz[1, lig[0]] = np.nan
    elif kind == "inf_frame_dcd":
        xyz[1, lig[0]] = np.inf
    elif kind == "huge_frame_dcd":
        xyz[1, lig[0]] = 1.0e6  # nm
    elif kind == "overlap_frame_dcd":
        xyz[1, lig[1]] = xyz[1, lig[0]]
    else:
        raise AssertionError(kind)
    md.Trajectory(xyz, top, time=np.arange(3.0)).save_dcd(str(p))
    return p, 1


#: kind -> words the error line must contain (besides the file) when the run stops
TRAJ_CASES = {
    "truncated_xtc": ["frame"],
    "truncated_dcd": ["frame 1", "truncated"],
    "empty_xtc": ["frame 0"],
    "empty_dcd": ["frame 0"],
    "binary_xtc": ["frame 0"],
    "binary_dcd": ["frame 0"],
    "directory_xtc": ["is a directory"],
    "missing_xtc": ["file not found"],
    "nan_frame_dcd": ["frame 1"],
    "inf_frame_dcd": ["frame 1"],
    "huge_frame_dcd": ["frame 1"],
    "overlap_frame_dcd": ["frame 1"],
}


@pytest.mark.parametrize("kind", list(TRAJ_CASES))
def test_bad_trajectory(kind, inputs, models, tmp_path, capsys):
    """A bad frame stops the run with one line naming file and frame, or is a reported skip:
    its row's status is not "ok" and its error names file and frame; the frames before it
    are scored. A run that scores nothing must not exit 0."""
    traj, bad_frame = _traj_case(kind, inputs, tmp_path)
    out_csv = tmp_path / "t.csv"
    rc, out, err = _cli(["rescore-traj", inputs["top"], traj, "--model", models["energy"],
                         "--pocket-radius", "4", "--quiet", "--out-csv", out_csv], capsys)
    if rc != 0:
        _assert_error(rc, err, str(traj), *TRAJ_CASES[kind])
        return
    table = pd.read_csv(out_csv)
    assert "status" in table.columns, f"bad frame {bad_frame} scored as if it were fine"
    status = dict(zip(table["frame"], table["status"], strict=True))
    errors = dict(zip(table["frame"], table["error"].fillna(""), strict=True))
    assert status.get(bad_frame, "ok") != "ok", table
    assert str(traj) in errors[bad_frame] and f"frame {bad_frame}" in errors[bad_frame]
    assert all(status[f] == "ok" for f in range(bad_frame)), table
    assert (table["status"] == "ok").any(), "nothing scored, yet exit code 0"
    if kind.endswith("_frame_dcd"):  # a bad frame in the middle: the frames after it count
        assert status.get(2) == "ok", table


def _unknown_element_topology(text: str) -> tuple[str, list[str]]:
    """The topology with its first ligand atom renamed QQ, element Xx."""
    lines = text.splitlines(keepends=True)
    k = next(i for i, ln in enumerate(lines) if ln.startswith(("ATOM", "HETATM")) and ln[17:20] == "LIG")
    ln = lines[k]
    lines[k] = ln[:12] + " QQ " + ln[16:76] + "Xx" + ln[78:]
    return "".join(lines), [f"atom {int(ln[6:11])}", "LIG:QQ", "no element"]


TOPOLOGY_CASES = ["truncated", "empty", "binary", "unknown_element"]


@pytest.mark.parametrize("kind", TOPOLOGY_CASES)
def test_bad_topology(kind, inputs, models, tmp_path, capsys):
    text = inputs["top"].read_bytes()
    top = tmp_path / f"{kind}.pdb"
    words: list[str] = []
    if kind == "unknown_element":
        body, words = _unknown_element_topology(text.decode())
        top.write_text(body)
    else:
        top.write_bytes({"truncated": text[: len(text) // 2 + 17], "empty": b"",
                         "binary": bytes(range(256)) * 8}[kind])
    rc, _, err = _cli(["rescore-traj", top, inputs["dcd"], "--model", models["energy"],
                       "--quiet", "--out-csv", tmp_path / "t.csv"], capsys)
    _assert_error(rc, err, str(top), *words)


def test_empty_ligand_selection(inputs, models, tmp_path, capsys):
    rc, _, err = _cli(["rescore-traj", inputs["top"], inputs["dcd"], "--model", models["energy"],
                       "--ligand", "resname XYZ", "--quiet", "--out-csv", tmp_path / "t.csv"],
                      capsys)
    _assert_error(rc, err, str(inputs["top"]), "resname XYZ")


def test_empty_pocket(inputs, models, tmp_path, capsys):
    """No receptor atom within the pocket radius of the ligand: an empty pocket."""
    rc, _, err = _cli(["rescore-traj", inputs["top"], inputs["dcd"], "--model", models["energy"],
                       "--pocket-radius", "0.01", "--quiet", "--out-csv", tmp_path / "t.csv"],
                      capsys)
    _assert_error(rc, err, f"frame 0 of {inputs['dcd']}", "no receptor atom")
