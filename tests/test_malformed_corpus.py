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
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import torch

from get_md import cli, export, zoo
from get_md.build import GraphError, from_mdtraj, from_pdb, from_sdf, iter_sdf
from get_md.cli import EXIT_BAD_INPUT, EXIT_INTERNAL, main

DATA = Path(__file__).parent / "data" / "prolif"
TINY = dict(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, cutoff=5.0)
#: seconds a single case may take before it counts as a hang
CASE_LIMIT_S = 120


# ----------------------------------------------------------------------------- fixtures
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(autouse=True)
def no_hang():
    """Fail a case that runs longer than CASE_LIMIT_S (SIGALRM; the main thread only)."""

    def on_alarm(signum, frame):
        raise TimeoutError(f"case ran longer than {CASE_LIMIT_S} s (a hang?)")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(CASE_LIMIT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


class _Raising(torch.nn.Module):
    """A 'potential' whose forward always raises: an error inside a TorchScript file."""

    def __init__(self):
        super().__init__()
        self.family = "get"
        self.task = "energy"
        self.cutoff = 5.0
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, positions: torch.Tensor, atomic_numbers: torch.Tensor,
                block_ids: torch.Tensor, atom_positions: torch.Tensor,
                block_types: torch.Tensor, segment_ids: torch.Tensor, batch_ids: torch.Tensor,
                cell: torch.Tensor, pbc: torch.Tensor) -> dict[str, torch.Tensor]:
        if positions.shape[0] > 0:
            raise RuntimeError("boom: this model refuses every input")
        return {"energy": self.w}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    from get_md.models import build_model

    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    export.save(build_model("get", **TINY), d / "energy.pt")
    export.save(_Raising(), d / "raising.pt")
    return {"energy": d / "energy.pt", "raising": d / "raising.pt"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Small valid inputs: pocket receptor, its topology with the ligand, 2 poses, 3 frames."""
    import mdtraj as md

    d = tmp_path_factory.mktemp("inputs")
    t = md.load_pdb(str(DATA / "top.pdb"))
    lig = t.topology.select("resname LIG")
    near = md.compute_neighbors(t, 0.4, lig)[0]
    residues = {t.topology.atom(int(i)).residue.index for i in near}
    keep = [a.index for a in t.topology.atoms if a.residue.index in residues or a.index in set(lig)]
    small = t.atom_slice(keep)
    small.unitcell_vectors = None
    small.save_pdb(str(d / "top.pdb"))
    rec = [ln for ln in (d / "top.pdb").read_text().splitlines(keepends=True)
           if not (ln.startswith(("ATOM", "HETATM")) and ln[17:20] == "LIG")]
    (d / "rec.pdb").write_text("".join(rec))
    sdf = (DATA / "vina_output.sdf").read_text()
    records = sdf.split("$$$$\n")
    (d / "poses.sdf").write_text("$$$$\n".join(records[:2]) + "$$$$\n")
    rng = np.random.default_rng(0)
    xyz = np.repeat(small.xyz, 3, axis=0) + rng.normal(0, 0.002, (3, small.n_atoms, 3)).astype(np.float32)
    frames = md.Trajectory(xyz, small.topology, time=np.arange(3.0))
    frames.save_dcd(str(d / "traj.dcd"))
    frames.save_xtc(str(d / "traj.xtc"))
    np.save(d / "xyz.npy", xyz)
    return {"dir": d, "rec": d / "rec.pdb", "top": d / "top.pdb", "poses": d / "poses.sdf",
            "dcd": d / "traj.dcd", "xtc": d / "traj.xtc", "xyz": d / "xyz.npy",
            "lig": lig.size}


# ----------------------------------------------------------------------------- helpers
def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    return rc, out, err


def _assert_error(rc: int, err: str, *names: str) -> str:
    """One ``get-md: error:`` line, naming every one of ``names``; exit code 2."""
    lines = [ln for ln in err.splitlines() if ln.startswith("get-md: error:")]
    assert rc == EXIT_BAD_INPUT, (rc, err)
    assert len(lines) == 1, err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def _sdf_records(inputs) -> list[str]:
    """The two pose records' texts, each ending with ``$$$$``."""
    text = inputs["poses"].read_text()
    return [r + "$$$$\n" for r in text.split("$$$$\n") if r.strip()]


def _with_atom_line(record: str, atom: int, edit: Callable[[str], str]) -> str:
    lines = record.split("\n")
    lines[3 + atom] = edit(lines[3 + atom])
    return "\n".join(lines)


def _coords(x: str) -> Callable[[str], str]:
    return lambda ln: f"{x:>10}" + ln[10:]


def _gz_cut_in_record(data: bytes, n_complete: int) -> bytes:
    """A prefix of ``gzip(data)`` that decompresses to exactly ``n_complete`` whole records."""
    gz = gzip.compress(data)
    for cut in range(len(gz) - 1, 10, -16):
        text = zlib.decompressobj(wbits=31).decompress(gz[:cut])
        if text.count(b"$$$$") == n_complete and len(text) > len(data) // 2:
            return gz[:cut]
    raise AssertionError("no cut point found")


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


# ----------------------------------------------------------------------------- model files
def _member_span(path: Path, suffix: str) -> tuple[int, int]:
    """Byte offset and size of the stored archive member whose name ends in ``suffix``."""
    import struct

    raw = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(suffix))
    off = info.header_offset
    name_len, extra_len = struct.unpack("<HH", raw[off + 26:off + 30])
    return off + 30 + name_len + extra_len, info.compress_size


def _model_case(kind: str, good: Path, d: Path) -> tuple[Path, list[str]]:
    raw = good.read_bytes()
    p = d / f"{kind}.pt"
    if kind == "truncated":
        p.write_bytes(raw[: len(raw) // 2])
        return p, ["truncated"]
    if kind == "flipped_weight_byte":
        start, _ = _member_span(good, "/data/0")
        data = bytearray(raw)
        data[start + 3] ^= 0x01
        p.write_bytes(bytes(data))
        return p, ["corrupted"]
    if kind == "flipped_metadata_byte":
        start, _ = _member_span(good, "/extra/metadata.json")
        data = bytearray(raw)
        data[start + 5] ^= 0x01
        p.write_bytes(bytes(data))
        return p, ["metadata.json"]
    if kind == "zip_without_metadata":
        with zipfile.ZipFile(p, "w") as zf:
            zf.writestr("model/data.pkl", b"\x80\x02}q\x00.")
        return p, ["no metadata.json"]
    if kind == "metadata_not_json":
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(p, "w") as dst:
            for info in src.infolist():
                body = src.read(info)
                if info.filename.endswith("/extra/metadata.json"):
                    body = b"\xff\xfe{not json"
                dst.writestr(info, body)
        return p, ["metadata.json"]
    if kind == "stale_digest":
        module = torch.jit.load(str(good))
        meta = export.read_metadata(good)
        with torch.no_grad():
            next(iter(module.parameters())).add_(1e-3)
        torch.jit.save(module, str(p), _extra_files={"metadata.json": json.dumps(meta)})
        return p, ["SHA-256"]
    if kind == "empty":
        p.write_bytes(b"")
        return p, ["not a get_md model file"]
    if kind == "binary":
        p.write_bytes(np.random.default_rng(4).integers(0, 256, 4000, dtype=np.uint8).tobytes())
        return p, ["not a get_md model file"]
    if kind == "directory":
        p.mkdir()
        return p, ["directory"]
    if kind == "missing":
        return p, ["not found"]
    raise AssertionError(kind)


MODEL_CASES = ["truncated", "flipped_weight_byte", "flipped_metadata_byte", "zip_without_metadata",
               "metadata_not_json", "stale_digest", "empty", "binary", "directory", "missing"]


@pytest.mark.parametrize("kind", MODEL_CASES)
def test_bad_model_file_info(kind, models, tmp_path, capsys):
    """``get-md info`` verifies by default: a corrupt file is an error, not metadata + exit 0."""
    model, words = _model_case(kind, models["energy"], tmp_path)
    rc, out, err = _cli(["info", model], capsys)
    _assert_error(rc, err, str(model), *words)
    assert out == ""


def test_info_no_verify_reads_metadata_only(models, tmp_path, capsys):
    """--no-verify skips the weights check (fast); the default catches the stale digest."""
    model, _ = _model_case("stale_digest", models["energy"], tmp_path)
    rc, out, err = _cli(["info", model, "--no-verify"], capsys)
    assert rc == 0 and "family" in out and "not checked" in out
    rc, out, _ = _cli(["info", models["energy"]], capsys)
    assert rc == 0 and "integrity         OK" in out


@pytest.mark.parametrize("kind", ["truncated", "flipped_weight_byte", "zip_without_metadata",
                                  "stale_digest"])
def test_bad_model_file_in_workflows_and_api(kind, inputs, models, tmp_path, capsys):
    from get_md.plugins.ase import GETCalculator

    model, words = _model_case(kind, models["energy"], tmp_path)
    rc, _, err = _cli(["rescore-poses", inputs["rec"], inputs["poses"], "--model", model,
                       "--quiet", "--out-csv", tmp_path / "o.csv", "--out-sdf", tmp_path / "o.sdf"],
                      capsys)
    _assert_error(rc, err, str(model), *words)
    rc, _, err = _cli(["rescore-traj", inputs["top"], inputs["dcd"], "--model", model, "--quiet",
                       "--out-csv", tmp_path / "t.csv"], capsys)
    _assert_error(rc, err, str(model), *words)
    with pytest.raises(ValueError, match=str(model)):
        GETCalculator(model)


def test_error_inside_model_file(inputs, models, tmp_path, capsys):
    """torch.jit.Error raised by a model's forward: one line naming the file, input and reason;
    the traceback only with --traceback or GET_MD_TRACEBACK=1."""
    argv = ["rescore-poses", inputs["rec"], inputs["poses"], "--model", models["raising"],
            "--pocket-radius", "4", "--add-hydrogens", "no", "--quiet",
            "--out-csv", tmp_path / "o.csv", "--out-sdf", tmp_path / "o.sdf"]
    rc, _, err = _cli(argv, capsys)
    line = _assert_error(rc, err, str(models["raising"]), str(inputs["rec"]),
                         "RuntimeError: boom: this model refuses every input", "--traceback")
    assert "TorchScript" not in line
    rc, _, err = _cli(["rescore-traj", inputs["top"], inputs["dcd"], "--model", models["raising"],
                       "--pocket-radius", "4", "--quiet", "--out-csv", tmp_path / "t.csv"], capsys)
    _assert_error(rc, err, str(models["raising"]), f"{inputs['top']} frame(s) 0", "boom")
    with pytest.raises(export.ModelRunError):
        main([str(a) for a in [*argv, "--traceback"]])
    capsys.readouterr()


def test_unexpected_error_is_one_line_with_a_hint(monkeypatch, capsys):
    """An exception of no known input-error class (a bug): one line, exit 1, and the hint."""

    def handler(args) -> int:
        return [0][args.index]  # IndexError: a bug, not bad input

    def registrar(sub):
        p = sub.add_parser("boom-test")
        p.set_defaults(func=handler, index=1)

    monkeypatch.setitem(cli.SUBCOMMANDS, "boom-test", registrar)
    rc, _, err = _cli(["boom-test"], capsys)
    lines = err.strip().splitlines()
    assert rc == EXIT_INTERNAL and len(lines) == 1
    assert lines[0].startswith("get-md: error: unexpected IndexError")
    assert "--traceback" in lines[0] and "GET_MD_TRACEBACK=1" in lines[0]
    monkeypatch.setenv("GET_MD_TRACEBACK", "1")
    with pytest.raises(IndexError):
        main(["boom-test"])
    monkeypatch.delenv("GET_MD_TRACEBACK")
    with pytest.raises(IndexError):
        main(["boom-test", "--traceback"])  # also accepted after the subcommand


# ----------------------------------------------------------------------------- registry
@pytest.fixture
def tiny_zoo(models, tmp_path, monkeypatch) -> Path:
    """A zoo folder holding the tiny potential as 'tiny' (registry digest correct)."""
    d = tmp_path / "zoo"
    d.mkdir()
    monkeypatch.setattr(zoo, "ZOO_DIR", d)
    monkeypatch.setattr(zoo, "REGISTRY_PATH", d / "registry.json")
    zoo.register("tiny", models["energy"], "tiny test potential")
    return d


def test_registry_digest_checked_when_loading_by_name(tiny_zoo, capsys):
    from get_md.plugins.ase import GETCalculator

    rc, out, _ = _cli(["info", "tiny"], capsys)
    assert rc == 0 and "matches the registry entry 'tiny'" in out
    reg = json.loads((tiny_zoo / "registry.json").read_text())
    reg["models"]["tiny"]["weights_sha256"] = "0" * 64
    (tiny_zoo / "registry.json").write_text(json.dumps(reg))
    rc, out, err = _cli(["info", "tiny"], capsys)
    _assert_error(rc, err, str(tiny_zoo / "tiny.pt"), "'tiny'", "registry")
    with pytest.raises(export.ModelFileError, match="do not match the registry"):
        export.load_model("tiny")
    with pytest.raises(ValueError, match="tiny.pt"):
        GETCalculator("tiny")
    # a file outside the zoo is not checked against the registry
    assert zoo.registry_entry_for(tiny_zoo.parent / "tiny.pt") is None


def test_model_file_hashed_once_per_process(models, tmp_path, monkeypatch):
    """The weights digest is computed once per unchanged file (path, size, times)."""
    path = tmp_path / "m.pt"
    path.write_bytes(models["energy"].read_bytes())
    calls = []
    real = export.weights_sha256
    monkeypatch.setattr(export, "weights_sha256", lambda sd: calls.append(1) or real(sd))
    export.load(path)
    export.load(path)
    assert len(calls) == 1
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # "touched": hashed again
    export.load(path)
    assert len(calls) == 2


# ----------------------------------------------------------------------------- library API
def test_builders_name_file_and_record(inputs, tmp_path):
    import mdtraj as md

    r1, r2 = _sdf_records(inputs)
    p = tmp_path / "p.sdf.gz"
    p.write_bytes(_gz_cut_in_record((r1 + r2).encode(), 1))
    records = list(iter_sdf(p))
    assert [r.ok for r in records] == [True, False]
    assert f"{p}: record 2" in str(records[1].error)
    with pytest.raises(GraphError, match=r"record 2: cannot read the file"):
        from_sdf(p)
    t = md.load(str(inputs["dcd"]), top=str(inputs["top"]))
    for value, words in ((np.nan, "non-finite"), (1.0e6, "beyond")):
        t.xyz[1, 5] = value
        with pytest.raises(GraphError, match=f"frame 1: atom 6 .*{words}"):
            from_mdtraj(t, frame=1, name="t.dcd")


def test_ase_calculator_rejects_bad_coordinates(models):
    from ase import Atoms
    from get_md.plugins.ase import GETCalculator

    atoms = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [np.nan, 0.93, 0]])
    atoms.calc = GETCalculator(models["energy"])
    with pytest.raises(ValueError, match="atom 3 has non-finite"):
        atoms.get_potential_energy()


def test_cli_stdout_has_no_traceback_for_help(capsys):
    assert main(["info", "--help"]) == 0
    assert "--no-verify" in capsys.readouterr().out
