"""Malformed-input corpus, model files: damaged or failing model files, the registry
digest and the library API give one clear line, never a traceback or a hang (see
tests/test_malformed_corpus.py for the rules and the input-file cases)."""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from malformed_helpers import (
    _assert_error,
    _cli,
    _gz_cut_in_record,
    _sdf_records,
    make_inputs,
    make_models,
    no_hang,
)

from get_md import cli, export, zoo
from get_md.build import GraphError, from_mdtraj, from_sdf, iter_sdf
from get_md.cli import EXIT_INTERNAL, main

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


def _edited_metadata(good: Path, out: Path, **changes) -> Path:
    """``good`` with fields of its metadata.json replaced (None: removed); weights untouched,
    so the weights digest still matches."""
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename.endswith("/extra/metadata.json"):
                meta = json.loads(body)
                for key, value in changes.items():
                    if value is None:
                        meta.pop(key, None)
                    else:
                        meta[key] = value
                body = json.dumps(meta).encode()
            dst.writestr(info, body)
    return out


@pytest.mark.parametrize("changes, words", [
    ({"units": {"length": "angstrom", "energy": "kcal/mol", "force": "eV/angstrom"}},
     "metadata.json: units.energy is 'kcal/mol'; get_md runs energy models in 'eV'"),
    ({"units": {"length": "nm", "energy": "eV"}}, "metadata.json: units.length is 'nm'"),
    ({"cutoff": -5.0}, "metadata.json: cutoff must be a positive number of Å or null, got -5.0"),
    ({"cutoff": "five"}, "metadata.json: cutoff must be a positive number of Å or null, got 'five'"),
    ({"task": None}, "metadata.json: task None is not one of ['energy', 'score', 'vectors']"),
    ({"task": "energies"}, "metadata.json: task 'energies' is not one of"),
    ({"task": "score"}, "metadata.json says task 'score' but the model computes 'energy'"),
    ({"family": None}, "metadata.json: family must be a model family name, got None"),
    ({"elements": ["Xx", "C"]}, "metadata.json: elements: unknown element 'Xx'"),
    ({"elements": "HCO"}, "metadata.json: elements must be a list of element symbols, got 'HCO'"),
])
def test_edited_metadata_is_refused_by_info_and_load(models, tmp_path, capsys, changes, words):
    """Metadata edited after export (the weights digest still matches): energies declared in
    kcal/mol or lengths in nm had been run as eV / Å, a negative or NaN cutoff and an unknown
    task accepted, a text cutoff or unknown element had failed as a bare ValueError / KeyError."""
    from get_md.plugins.ase import GETCalculator

    model = _edited_metadata(models["energy"], tmp_path / "edited.pt", **changes)
    rc, out, err = _cli(["info", model], capsys)
    _assert_error(rc, err, f"{model}: {words}")
    with pytest.raises(export.ModelFileError, match=re.escape(f"{model}: {words}")):
        GETCalculator(model)


def test_an_edited_cutoff_is_refused_by_info_and_load(models, tmp_path, capsys):
    """A cutoff edited in metadata.json (the weights digest still matches) had loaded and
    verified: the engines and rescoring read the metadata's cutoff, the model its own."""
    own = export.read_metadata(models["energy"])["cutoff"]
    model = _edited_metadata(models["energy"], tmp_path / "cutoff.pt", cutoff=own + 2.0)
    words = (f"{model}: metadata.json says cutoff {own + 2.0:g} Å but the model's own is {own:g} Å (the file "
             f"was edited or not written by get_md): set \"cutoff\": {own:g} in metadata.json again, or export")
    rc, out, err = _cli(["info", model], capsys)
    _assert_error(rc, err, words)
    with pytest.raises(export.ModelFileError, match=re.escape(words)):
        export.load(model)
    nulled = _edited_metadata(models["energy"], tmp_path / "no_cutoff.pt", cutoff=None)
    with pytest.raises(export.ModelFileError, match="metadata.json says cutoff None but the model's own is"):
        export.load(nulled)
    assert export.load(models["energy"])[1]["cutoff"] == own  # the file as written still loads


def test_save_refuses_units_the_engines_do_not_convert(models, tmp_path):
    module = torch.jit.load(str(models["energy"]))
    with pytest.raises(export.ModelFileError, match=r"metadata units \{'energy': 'kcal/mol'\}"):
        export.save(module, tmp_path / "x.pt", {"units": {"energy": "kcal/mol"}})
