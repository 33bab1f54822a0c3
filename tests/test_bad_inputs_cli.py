"""Bad input to ``get-md export``, ``train``, ``nbody evaluate`` and ``demo``: one clear
``get-md: error:`` line naming the file (or option) and the field, never a traceback, an
"unexpected X" line or torch's advice to load a file unsafely (cases B2, C6-C20, C23, A9,
A10 of the bad-input report)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from malformed_helpers import TINY, _assert_error, _cli

from get_md.errors import ConfigError, DatasetError
from get_md.models import build_model
from get_md.train import load_config
from get_md.train.data import MolecularDataset

#: torch's advice on a weights-only load failure, which invites running untrusted code
UNSAFE_ADVICE = ("weights_only", "arbitrary code")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A valid get_md checkpoint of a tiny GET energy model."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    torch.save({"model": build_model("get", **TINY).state_dict(), "family": "get",
                "model_config": dict(TINY)}, path)
    return path


def _export_error(capsys, *argv) -> str:
    rc, _, err = _cli(["export", *argv], capsys)
    line = _assert_error(rc, err)
    assert "unexpected" not in line and not any(a in line for a in UNSAFE_ADVICE), line
    return line


def _train_config(tmp_path: Path, **fields) -> Path:
    """A small training config file (fails validation before any training)."""
    cfg = {"family": "get", "model": dict(TINY), "train_data": "data.pt", "max_epochs": 1,
           "output_dir": str(tmp_path / "run"), "plot": False,
           "loss_weights": {"energy": 1.0, "forces": 1.0}}
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({**cfg, **fields}))
    return path


# ----------------------------------------------------------------------------- export --config
def test_export_config_json_list_is_not_a_config(tmp_path, capsys, checkpoint):  # B2
    cfg = tmp_path / "l.json"
    cfg.write_text("[1, 2]\n")
    line = _export_error(capsys, checkpoint, tmp_path / "x.pt", "--config", cfg)
    assert f"{cfg}: a config must be a JSON object" in line


def test_export_config_invalid_json_names_the_file(tmp_path, capsys, checkpoint):  # C10
    cfg = tmp_path / "bad.json"
    cfg.write_text('{"d_hidden": 16,\n')
    line = _export_error(capsys, checkpoint, tmp_path / "x.pt", "--config", cfg)
    assert f"{cfg}: invalid JSON (line 2 column 1" in line


def test_export_config_missing_names_the_option(tmp_path, capsys, checkpoint):  # C11
    cfg = tmp_path / "nofile.json"
    line = _export_error(capsys, checkpoint, tmp_path / "x.pt", "--config", cfg)
    assert line.endswith(f"--config {cfg}: file not found")


def test_export_config_plain_map_with_bad_size(tmp_path, capsys, checkpoint):  # C14 (export)
    cfg = tmp_path / "hp.json"
    cfg.write_text(json.dumps({**TINY, "d_hidden": -3}))
    line = _export_error(capsys, checkpoint, tmp_path / "x.pt", "--config", cfg)
    assert f"{cfg}: d_hidden must be a positive integer, got -3" in line


# ----------------------------------------------------------------------------- export CHECKPOINT
def test_export_empty_checkpoint(tmp_path, capsys):  # C6
    src = tmp_path / "EMPTY.pt"
    src.write_bytes(b"")
    assert _export_error(capsys, src, tmp_path / "x.pt").endswith(f"{src}: empty file")


def test_export_random_bytes_without_unsafe_advice(tmp_path, capsys):  # C7
    src = tmp_path / "random.pt"
    src.write_bytes(np.random.default_rng(0).bytes(300).replace(b"\x80", b"\x81"))
    line = _export_error(capsys, src, tmp_path / "x.pt")
    assert line.endswith(f"{src}: not a torch checkpoint (not a zip archive)")


def test_export_bad_pickle_without_unsafe_advice(tmp_path, capsys):  # C7 (legacy format)
    src = tmp_path / "pickle.pt"
    src.write_bytes(b"\x80\x02garbage")
    line = _export_error(capsys, src, tmp_path / "x.pt")
    assert f"{src}: cannot read checkpoint (safe (weights-only) loading failed" in line


def test_export_checkpoint_is_a_directory(tmp_path, capsys):  # C8
    src = tmp_path / "m_dir.pt"
    src.mkdir()
    line = _export_error(capsys, src, tmp_path / "x.pt")
    assert line.endswith(f"{src}: is a directory, not a checkpoint")


def test_export_zip_without_torch_records(tmp_path, capsys):  # C9
    src = tmp_path / "m_zip.pt"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("a.txt", "hello")
    line = _export_error(capsys, src, tmp_path / "x.pt")
    assert line.endswith(f"{src}: not a torch checkpoint (zip without torch records)")


# ----------------------------------------------------------------------------- export OUT / options
def test_export_out_is_a_directory(tmp_path, capsys, checkpoint):  # C12
    out = tmp_path / "cases"
    out.mkdir()
    line = _export_error(capsys, checkpoint, out)
    assert line.endswith(f"OUT {out}: is a directory; give a file name")
    assert ".tmp" not in line and list(out.iterdir()) == []


def test_export_unknown_element(tmp_path, capsys, checkpoint):  # C13
    line = _export_error(capsys, checkpoint, tmp_path / "x.pt", "--elements", "Xx,C")
    assert line.endswith("--elements: unknown element 'Xx'")
    assert not (tmp_path / "x.pt").exists()


def test_export_empty_element_list(tmp_path, capsys, checkpoint):  # C13
    line = _export_error(capsys, checkpoint, tmp_path / "x.pt", "--elements", ",")
    assert "--elements: no element symbols" in line
    assert not (tmp_path / "x.pt").exists()


def test_export_score_checkpoint_with_a_potential_config(tmp_path, capsys):
    """A score model's weights fit a GET potential: ``--config`` of a potential had silently
    exported them as an energy model; the checkpoint records what it was trained as."""
    score = dict(TINY, mode="score", task="score")
    ckpt = tmp_path / "score.pt"
    torch.save({"model": build_model("get", **score).state_dict(), "family": "get", "model_config": score}, ckpt)
    cfg = tmp_path / "pot.json"
    cfg.write_text(json.dumps(TINY))
    line = _export_error(capsys, ckpt, tmp_path / "x.pt", "--config", cfg)
    assert (f"{ckpt}: the checkpoint was trained as another model than --config / --family give "
            "(mode 'score' -> 'potential', task 'score' -> 'energy')") in line
    assert not (tmp_path / "x.pt").exists()
    cfg.write_text(json.dumps(score))  # the same model: exported
    rc, out, _ = _cli(["export", ckpt, tmp_path / "y.pt", "--config", cfg], capsys)
    assert rc == 0 and "task score" in out


def test_export_checkpoint_with_nan_weights_writes_nothing(tmp_path, capsys, checkpoint):
    """A diverged run's checkpoint had been exported to a file that every load refuses."""
    ckpt = torch.load(checkpoint, weights_only=True)
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][name] = torch.full_like(ckpt["model"][name], float("nan"))
    nan = tmp_path / "nan.pt"
    torch.save(ckpt, nan)
    out = tmp_path / "x.pt"
    line = _export_error(capsys, nan, out)
    assert f"{nan}: weights contain non-finite values (NaN or inf)" in line
    assert name in line and not out.exists()


def test_export_to_pt2_of_a_model_pt2_cannot_take_names_out(tmp_path, capsys):
    """A score model with a receptor selection exported to OUT.pt2 had been refused without
    the file and with the Python API's advice only."""
    score = dict(TINY, mode="score", task="score", receptor_radius=6.0)
    ckpt = tmp_path / "score.pt"
    torch.save({"model": build_model("get", **score).state_dict(), "family": "get", "model_config": score}, ckpt)
    out = tmp_path / "x.pt2"
    line = _export_error(capsys, ckpt, out)
    assert f"{out}: GET score models with" in line and "an OUT ending in .pt" in line
    assert not out.exists()


# ----------------------------------------------------------------------------- train
def test_dataset_text_file_without_unsafe_advice(tmp_path):  # C7 (train)
    data = tmp_path / "data_text.pt"
    data.write_text("nope\n")
    with pytest.raises(DatasetError) as info:
        MolecularDataset.load(data)
    assert str(info.value) == f"{data}: not a torch dataset file (not a zip archive)"


def test_train_text_dataset_via_cli(tmp_path, capsys):  # C7 (train)
    (tmp_path / "data.pt").write_text("nope\n")
    rc, _, err = _cli(["train", _train_config(tmp_path), "--quiet"], capsys)
    line = _assert_error(rc, err, "data.pt: not a torch dataset file (not a zip archive)")
    assert not any(a in line for a in UNSAFE_ADVICE), line


def test_train_negative_model_size(tmp_path, capsys):  # C14
    cfg = _train_config(tmp_path, model={**TINY, "d_hidden": -3})
    rc, _, err = _cli(["train", cfg, "--quiet"], capsys)
    _assert_error(rc, err, f"{cfg}: model.d_hidden must be a positive integer, got -3")


@pytest.mark.parametrize("value, message", [
    ("nan", "lr must be a number, got 'nan'"),
    (float("nan"), "lr must be a finite number, got nan"),
    (float("inf"), "lr must be a finite number, got inf"),
    (True, "lr must be a number, got True"),
])
def test_train_lr_must_be_a_finite_number(tmp_path, value, message):  # C15
    cfg = _train_config(tmp_path, lr=value)
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert str(info.value) == f"{cfg}: {message}"


def test_train_lr_string_via_cli(tmp_path, capsys):  # C15
    cfg = _train_config(tmp_path, lr="nan")
    rc, _, err = _cli(["train", cfg, "--quiet"], capsys)
    _assert_error(rc, err, f"{cfg}: lr must be a number, got 'nan'")


def test_train_config_is_a_directory(tmp_path, capsys):  # C16
    rc, _, err = _cli(["train", tmp_path], capsys)
    _assert_error(rc, err, f"{tmp_path}: is a directory, not a config file")


def test_train_loss_weights_all_zero(tmp_path, capsys):  # A10
    cfg = _train_config(tmp_path, loss_weights={"energy": 0.0, "forces": 0})
    rc, _, err = _cli(["train", cfg, "--quiet"], capsys)
    _assert_error(rc, err, f"{cfg}: loss_weights are all zero; nothing to train")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- nbody evaluate
def _nbody_data(charge: float = 1.0, n_samples: int = 2) -> dict:
    """Random N-body arrays of 41 frames (enough for frames 30 -> 40), charges +-``charge``."""
    rng = np.random.default_rng(0)
    loc = rng.normal(size=(n_samples, 41, 5, 3))
    q = np.where(rng.random((n_samples, 5, 1)) < 0.5, -charge, charge)
    return {"loc": loc, "vel": 0.1 * rng.normal(size=loc.shape), "charges": q}


@pytest.fixture
def nbody_file(tmp_path) -> Path:
    path = tmp_path / "nb.npz"
    np.savez(path, **_nbody_data())
    return path


def test_nbody_evaluate_batch_size_zero(capsys, nbody_file):  # C17
    rc, _, err = _cli(["nbody", "evaluate", "--data", nbody_file, "--batch-size", "0"], capsys)
    _assert_error(rc, err, "--batch-size must be >= 1, got 0")


def test_nbody_evaluate_data_is_a_directory(tmp_path, capsys):  # C18
    rc, _, err = _cli(["nbody", "evaluate", "--data", tmp_path], capsys)
    _assert_error(rc, err, f"{tmp_path}: is a directory")


def test_nbody_evaluate_text_file_named_npz(tmp_path, capsys):  # C18
    data = tmp_path / "nb_text.npz"
    data.write_text("loc,vel\n1,2\n")
    rc, _, err = _cli(["nbody", "evaluate", "--data", data], capsys)
    line = _assert_error(rc, err, f"{data}: not an .npz (zip) file")
    assert "pickle" not in line


def test_nbody_charges_other_than_one_warn(tmp_path, capsys):  # A9 (CLI: a warning line)
    data = tmp_path / "nb_charge7.npz"
    np.savez(data, **_nbody_data(charge=7.0))
    rc, _, err = _cli(["nbody", "evaluate", "--data", data, "--model", tmp_path / "none.pt"], capsys)
    warnings = [ln for ln in err.splitlines() if ln.startswith("get-md: warning:")]
    assert len(warnings) == 1, err
    assert str(data) in warnings[0] and "trained on charges ±1" in warnings[0]
    _assert_error(rc, err, "none.pt")  # the missing model, not the charges, is the error


def test_nbody_charges_warning_is_not_an_error():  # A9 (library: evaluate still runs)
    from get_md.workflows.nbody.evaluate import evaluate
    from get_md.workflows.nbody.model import build_nbody_model

    torch.manual_seed(0)
    model = build_nbody_model("geomformer", d_model=16, n_layers=1, n_heads=2, n_rbf=8)
    messages: list[str] = []
    res = evaluate(model, {**_nbody_data(charge=7.0), "source": "q7.npz"}, warn=messages.append)
    assert np.isfinite(res["mse"]) and len(messages) == 1
    assert messages[0].startswith("q7.npz: charges other than ±1 (-7, 7)")
    messages.clear()
    evaluate(model, _nbody_data(), warn=messages.append)
    assert messages == []


# ----------------------------------------------------------------------------- demo
@pytest.fixture
def no_demo_work(monkeypatch):
    """Fail at once if the demo starts rescoring (options must be checked before)."""
    from get_md.workflows import poses, trajectory

    def started(*args, **kwargs):
        raise AssertionError("the demo started work before checking its options")

    monkeypatch.setattr(poses, "rescore_poses", started)
    monkeypatch.setattr(trajectory, "rescore_trajectory", started)


def test_demo_out_is_a_file(tmp_path, capsys, no_demo_work):  # C19
    out = tmp_path / "f"
    out.touch()
    rc, _, err = _cli(["demo", "--out", out], capsys)
    _assert_error(rc, err, f"--out {out} is a file; give a folder")


def test_demo_stride_zero_before_any_work(tmp_path, capsys, no_demo_work):  # C20
    rc, _, err = _cli(["demo", "--out", tmp_path / "d", "--stride", "0"], capsys)
    _assert_error(rc, err, "--stride must be >= 1, got 0")
    assert not (tmp_path / "d").exists()


def test_demo_threads_zero(tmp_path, capsys, no_demo_work):  # C23
    rc, _, err = _cli(["demo", "--out", tmp_path / "d", "--threads", "0"], capsys)
    _assert_error(rc, err, "--threads must be >= 1, got 0")
