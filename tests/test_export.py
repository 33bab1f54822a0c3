"""Exported model files: round trip, metadata, integrity checks, torch-only loading."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

from get_md import export, zoo
from get_md.export import ModelFileError
from get_md.graph import MolecularGraph, batch_graphs
from get_md.models import build_model

TINY_GET = dict(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, cutoff=4.0,
                elements=[1, 6, 8])
PROVENANCE = {"dataset": "synthetic-pairs", "command": "pytest", "metrics": {"energy_mae": 0.01},
              "description": "test model"}


def _graph() -> MolecularGraph:
    gen = torch.Generator().manual_seed(3)
    water = MolecularGraph.from_atoms(
        torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]]),
        torch.tensor([8, 1, 1]), name="water")
    other = MolecularGraph.from_atoms(torch.rand(5, 3, generator=gen) * 3.0,
                                      torch.tensor([6, 1, 1, 8, 1]), name="other")
    return batch_graphs([water, other])


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = build_model("get", **TINY_GET)
    with torch.no_grad():  # non-trivial reference energies, so the digest covers real values
        m.atom_ref.weight.normal_()
    return m.eval()


@pytest.fixture(scope="module")
def graph() -> MolecularGraph:
    return _graph()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, model) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("export") / "model.pt"
    meta = export.save(model, path, PROVENANCE)
    return path, meta


def _copy(src: Path, dst: Path, data: bytes | None = None) -> Path:
    dst.write_bytes(src.read_bytes() if data is None else data)
    return dst


def _member_offset(path: Path, suffix: str) -> tuple[int, int]:
    """Byte offset and size of the stored (uncompressed) archive member ending in ``suffix``."""
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(suffix))
    off = info.header_offset
    name_len, extra_len = struct.unpack("<HH", raw[off + 26:off + 30])
    return off + 30 + name_len + extra_len, info.file_size


def _resave(module: torch.jit.ScriptModule, path: Path, meta: dict | None) -> Path:
    extra = {} if meta is None else {"metadata.json": json.dumps(meta)}
    torch.jit.save(module, str(path), _extra_files=extra)
    return path


# ----------------------------------------------------------------------------- round trip
def test_round_trip_gives_identical_outputs(exported, model, graph):
    path, _ = exported
    loaded, meta = export.load(path)
    assert isinstance(loaded, torch.jit.ScriptModule)
    assert not loaded.training
    out = loaded(*graph.inputs())
    ref = model(*graph.inputs())
    scripted = torch.jit.script(model)
    before = scripted(*graph.inputs())
    assert set(out) == set(ref) == set(before) >= {"energy", "forces", "energies"}
    for key in ref:
        # the file holds exactly the scripted model ...
        assert torch.equal(out[key], before[key]), key
        # ... which agrees with eager torch to float32 rounding (TorchScript may
        # differentiate some subgraphs symbolically, summing in another order)
        torch.testing.assert_close(out[key], ref[key], rtol=1e-5, atol=1e-6)


def test_subnormal_weights_are_written_as_zero(graph, tmp_path):
    """Subnormal weights (left by weight decay) slow CPU arithmetic and change nothing:
    the file holds zeros there, and the outputs are the same."""
    torch.manual_seed(0)
    m = build_model("get", **TINY_GET).eval()
    w = next(p for p in m.parameters() if p.dim() == 2)
    with torch.no_grad():
        w[0, 0] = 1e-40
        w[0, 1] = -3e-39
        w[0, 2] = 1.5e-38          # normal: kept
    ref = m(*graph.inputs())
    export.save(m, tmp_path / "m.pt", PROVENANCE)
    loaded, _ = export.load(tmp_path / "m.pt")
    tiny = torch.finfo(torch.float32).tiny
    for t in loaded.state_dict().values():
        if t.is_floating_point():
            assert not bool(((t != 0) & (t.abs() < tiny)).any())
    assert any(bool((t == 1.5e-38).any()) for t in loaded.state_dict().values())
    out = loaded(*graph.inputs())
    torch.testing.assert_close(out["energy"], ref["energy"], rtol=1e-5, atol=1e-6)


def test_rescript_keeps_weights_metadata_and_outputs(exported, graph, tmp_path):
    """A model file re-scripted with this get_md's code (``export.rescript`` and
    ``get-md export MODEL.pt OUT.pt``): same weights digest, metadata and outputs."""
    path, meta = exported
    out = tmp_path / "again.pt"
    written = export.rescript(path, out)
    assert written["weights_sha256"] == meta["weights_sha256"]
    assert written["rescripted_from"] == {"get_md_version": meta["get_md_version"], "created": meta["created"]}
    for key in ("family", "task", "cutoff", "elements", "config", "training", "units", "description"):
        assert written.get(key) == meta.get(key), key
    a, _ = export.load(path)
    b, meta_b = export.load(out)
    assert meta_b == written
    ref, got = a(*graph.inputs()), b(*graph.inputs())
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], rtol=1e-5, atol=1e-5)
    cli = subprocess.run([sys.executable, "-m", "get_md.cli", "export", str(path), str(tmp_path / "cli.pt")],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert "re-scripted" in cli.stdout
    assert export.read_metadata(tmp_path / "cli.pt")["weights_sha256"] == meta["weights_sha256"]


def test_metadata_contents(exported, model):
    path, written = exported
    meta = export.read_metadata(path)
    assert meta == written == export.load(path)[1]
    assert meta["format_version"] == export.FORMAT_VERSION == 1
    assert (meta["family"], meta["task"], meta["cutoff"]) == ("get", "energy", 4.0)
    assert meta["units"]["energy"] == "eV" and meta["units"]["force"] == "eV/angstrom"
    assert meta["units"]["length"] == "angstrom"
    assert meta["elements"] == ["H", "C", "O"]
    assert meta["block_vocabulary"]["size"] > 0 and meta["block_vocabulary"]["name"]
    assert meta["config"] == json.loads(json.dumps(model.config))
    assert meta["training"] == {k: PROVENANCE[k] for k in ("dataset", "command", "metrics")}
    assert meta["description"] == "test model"
    assert meta["inputs"][0] == "positions" and len(meta["inputs"]) == 9
    import get_md

    assert meta["get_md_version"] == get_md.__version__
    assert meta["torch_version"] == torch.__version__
    assert meta["created"].endswith("+00:00")
    assert meta["weights_sha256"] == export.weights_sha256(model.state_dict())


def test_config_rebuilds_the_model(exported, graph):
    path, meta = exported
    loaded, _ = export.load(path)
    rebuilt = build_model(meta["family"], **meta["config"]).eval()
    rebuilt.load_state_dict(loaded.state_dict())
    assert torch.equal(rebuilt(*graph.inputs())["energy"], loaded(*graph.inputs())["energy"])


def test_geomformer_score_model_exports(tmp_path, graph):
    torch.manual_seed(1)
    m = build_model("geomformer", d_model=16, n_layers=1, n_heads=2, n_rbf=8, mode="dense",
                    task="score").eval()
    meta = export.save(m, tmp_path / "score.pt")
    assert (meta["family"], meta["task"], meta["units"]["score"]) == ("geomformer", "score", "pK")
    assert meta["elements"] is None
    loaded, _ = export.load(tmp_path / "score.pt")
    assert torch.equal(loaded(*graph.inputs())["score"], m(*graph.inputs())["score"])


def test_weights_digest_is_deterministic_and_value_sensitive():
    a = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3, dtype=torch.float64)}
    b = {"b": torch.zeros(3, dtype=torch.float64), "w": torch.arange(6.0).reshape(3, 2).t().contiguous().t()}
    assert export.weights_sha256(a) == export.weights_sha256(dict(a))
    assert export.weights_sha256(a) != export.weights_sha256(b)  # shape differs
    c = {"w": torch.arange(6.0).reshape(2, 3).t().contiguous().t(), "b": a["b"]}  # layout only
    assert export.weights_sha256(a) == export.weights_sha256(c)
    d = {"w": torch.arange(6.0).reshape(2, 3).double(), "b": a["b"]}
    assert export.weights_sha256(a) != export.weights_sha256(d)  # dtype differs


def test_load_model_by_path_and_dtype(exported, graph):
    path, _ = exported
    module, meta = export.load_model(str(path), dtype="float64")
    out = module(*graph.to(dtype=torch.float64).inputs())
    assert out["energy"].dtype == torch.float64 and meta["family"] == "get"


# ----------------------------------------------------------------------------- refusals
def _refused(path: Path, *words: str) -> str:
    with pytest.raises(ModelFileError) as info:
        export.load(path)
    msg = str(info.value)
    assert str(path) in msg
    for w in words:
        assert w in msg, msg
    return msg


def test_missing_file_refused(tmp_path):
    _refused(tmp_path / "nope.pt", "not found")
    with pytest.raises(ModelFileError, match="not found"):
        export.read_metadata(tmp_path / "nope.pt")


def test_garbage_refused(tmp_path):
    path = _copy(Path(), tmp_path / "garbage.pt", os.urandom(4096))
    _refused(path, "not a")
    _refused(_copy(Path(), tmp_path / "empty.pt", b""), "not a")


def test_directory_refused(tmp_path):
    _refused(tmp_path, "directory")


def test_truncated_file_refused(exported, tmp_path):
    src, _ = exported
    raw = src.read_bytes()
    for frac in (0.5, 0.97):
        _refused(_copy(src, tmp_path / f"trunc{frac}.pt", raw[: int(len(raw) * frac)]), "truncated")


def test_flipped_weight_bytes_refused(exported, tmp_path):
    src, _ = exported
    path = _copy(src, tmp_path / "flipped.pt")
    start, size = _member_offset(path, "/data/0")
    raw = bytearray(path.read_bytes())
    for i in range(start, start + min(size, 16)):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    _refused(path, "corrupted")


def test_modified_weights_refused_by_digest(exported, tmp_path):
    src, meta = exported
    module = torch.jit.load(str(src))
    with torch.no_grad():
        next(iter(module.parameters())).add_(1e-3)
    path = _resave(module, tmp_path / "modified.pt", meta)  # valid archive, stale digest
    _refused(path, "SHA-256")


def test_missing_metadata_refused(exported, tmp_path):
    src, _ = exported
    path = _resave(torch.jit.load(str(src)), tmp_path / "nometa.pt", None)
    _refused(path, "metadata.json")


def test_newer_format_version_refused(exported, tmp_path):
    src, meta = exported
    newer = dict(meta, format_version=export.SUPPORTED_FORMAT_VERSION + 1)
    path = _resave(torch.jit.load(str(src)), tmp_path / "future.pt", newer)
    _refused(path, "format version", "newer")
    with pytest.raises(ModelFileError, match="newer"):
        export.read_metadata(path)


def test_save_refuses_computed_keys(model, tmp_path):
    with pytest.raises(ValueError, match="weights_sha256"):
        export.save(model, tmp_path / "x.pt", {"weights_sha256": "0" * 64})


# ----------------------------------------------------------------------------- torch only
def test_exported_file_runs_without_get_md(exported, graph, tmp_path):
    path, _ = exported
    inputs_path, outputs_path = tmp_path / "inputs.pt", tmp_path / "outputs.pt"
    torch.save(list(graph.inputs()), inputs_path)
    script = textwrap.dedent(f"""
        import sys

        class BlockGetMd:
            def find_spec(self, name, path=None, target=None):
                if name == "get_md" or name.startswith("get_md."):
                    raise ImportError("get_md is blocked in this test")
                return None

        sys.meta_path.insert(0, BlockGetMd())
        try:
            import get_md  # noqa: F401
        except ImportError:
            pass
        else:
            raise SystemExit("get_md was importable")
        import torch
        module = torch.jit.load({str(path)!r})
        out = module(*torch.load({str(inputs_path)!r}))
        torch.save(dict(out), {str(outputs_path)!r})
        assert not any(m == "get_md" or m.startswith("get_md.") for m in sys.modules)
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    out = torch.load(outputs_path)
    ref, _ = export.load(path)
    expected = ref(*graph.inputs())
    assert set(out) == set(expected)
    for key in expected:
        assert torch.equal(out[key], expected[key]), key


# ----------------------------------------------------------------------------- zoo
def test_zoo_registry_and_unknown_names(tmp_path, exported):
    assert isinstance(zoo.available(), dict)
    assert isinstance(zoo.DEFAULT_POTENTIAL, str) and isinstance(zoo.DEFAULT_SCORE, str)
    with pytest.raises(zoo.ZooError, match="unknown model 'no-such-model'; shipped models"):
        zoo.path("no-such-model")
    with pytest.raises(zoo.ZooError, match="no-such-model"):
        export.load_model("no-such-model")
    reg = tmp_path / "registry.json"
    reg.write_text(json.dumps({"format_version": 1, "models": {}}))
    entry = zoo.register("tiny-get", exported[0], "tiny", default="potential", registry_path=reg)
    data = json.loads(reg.read_text())
    assert data["models"]["tiny-get"] == entry and data["default_potential"] == "tiny-get"
    assert (tmp_path / "tiny-get.pt").exists() and entry["task"] == "energy"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_load_on_cuda_matches_cpu(exported, graph):
    path, _ = exported
    cpu, _ = export.load(path)
    gpu, _ = export.load_model(str(path), device="cuda", dtype=torch.float64)
    out = gpu(*graph.to(device="cuda", dtype=torch.float64).inputs())
    ref = cpu(*graph.inputs())
    assert out["energy"].device.type == "cuda"
    assert torch.allclose(out["energy"].cpu().float(), ref["energy"], atol=1e-4)
