"""N-body workflow: simulator (EGNN protocol), data files, evaluate, train, rollout, CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from get_md.workflows import nbody
from get_md.workflows.nbody import (
    NBodyError,
    batch_inputs,
    build_nbody_model,
    energy_terms,
    evaluate,
    load_data,
    make_samples,
    rollout,
    save_data,
    simulate,
    total_energy,
    total_momentum,
)
from get_md.workflows.nbody.protocol import PARTICLE_Z

from get_md import export
from get_md.cli import main
from get_md.testing.model_suite import ModelSuite, random_molecule

TINY = ["--d-model", "16", "--n-layers", "1", "--n-heads", "2", "--n-rbf", "8"]


def _reference_egnn(x0, v0, q, n_steps, dt=1e-3, max_f=100.0, sample_freq=100):
    """Plain loop transcribing EGNN's ChargedParticlesSim.sample_trajectory (one system)."""
    x, v = x0.copy(), v0.copy()
    n = len(q)

    def force(x):
        f = np.zeros_like(x)
        for i in range(n):
            for j in range(n):
                if i != j:
                    r = x[i] - x[j]
                    f[i] += q[i] * q[j] * r / np.sqrt((r ** 2).sum()) ** 3
        return np.clip(f, -max_f, max_f)

    v += dt * force(x)
    frames = []
    for i in range(1, n_steps):
        x += dt * v
        if i % sample_freq == 0:
            frames.append((x.copy(), v.copy()))
        v += dt * force(x)
    return frames


# ----------------------------------------------------------------------------- simulator
def test_simulate_shapes_dtypes_and_seed():
    a = simulate(6, seed=3, n_frames=5)
    b = simulate(6, seed=3, n_frames=5)
    c = simulate(6, seed=4, n_frames=5)
    assert a["loc"].shape == a["vel"].shape == (6, 5, 5, 3)
    assert a["charges"].shape == (6, 5, 1)
    assert a["loc"].dtype == np.float64 and a["charges"].dtype == np.float64
    assert set(np.unique(a["charges"])) <= {-1.0, 1.0}
    for k in ("loc", "vel", "charges"):
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["loc"], c["loc"])
    # chunking does not change results
    d = simulate(6, seed=3, n_frames=5, chunk=4)
    np.testing.assert_allclose(d["loc"], a["loc"], rtol=0, atol=1e-12)


def test_frames_match_egnn_generator_and_continuation():
    data = simulate(2, seed=7, n_frames=3)
    # recover the initial state by drawing as simulate does
    rng = np.random.default_rng(7)
    q = rng.choice(np.array([-1.0, 1.0]), size=(2, 5))
    x = rng.standard_normal((2, 5, 3))
    v = rng.standard_normal((2, 5, 3))
    v *= 0.5 / np.linalg.norm(v, axis=-1, keepdims=True)
    ref = _reference_egnn(x[0], v[0], q[0], n_steps=400)  # saves after steps 100, 200, 300
    assert len(ref) == 3
    for k in range(3):  # frame k = state after step 100 (k + 1)
        np.testing.assert_allclose(data["loc"][0, k], ref[k][0], atol=1e-10)
        np.testing.assert_allclose(data["vel"][0, k], ref[k][1], atol=1e-10)
    # continuing from frame 0 reproduces frames 1 and 2
    cont = simulate(0, n_frames=2, initial=(data["loc"][:, 0], data["vel"][:, 0], data["charges"]))
    np.testing.assert_allclose(cont["loc"], data["loc"][:, 1:], atol=1e-10)
    np.testing.assert_allclose(cont["vel"], data["vel"][:, 1:], atol=1e-10)


def _separated():
    x = np.array([[0.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0], [4.0, 4.0, 4.0]])
    v = np.array([[0.3, -0.2, 0.1], [-0.1, 0.2, 0.0], [0.2, 0.1, -0.3], [0.0, -0.2, 0.2], [-0.1, 0.0, 0.1]])
    q = np.array([1.0, -1.0, 1.0, 1.0, -1.0])
    return x[None], v[None], q[None]


def test_energy_conserved_without_clipping():
    x, v, q = _separated()
    d = simulate(0, n_frames=20, initial=(x, v, q), max_force=None)
    e = total_energy(d["loc"][0], d["vel"][0], q[0])
    e0 = total_energy(x[0], v[0], q[0])
    k, u = energy_terms(d["loc"][0], d["vel"][0], q[0])
    assert np.all(np.isfinite(e)) and np.ptp(k) > 1e-3  # particles do move and exchange energy
    assert np.max(np.abs(e - e0)) < 2e-3 * (np.abs(k).mean() + np.abs(u).mean())


def test_momentum_exact_without_clipping_and_clipping_not_antisymmetric():
    x, v, q = _separated()
    d = simulate(0, n_frames=20, initial=(x, v, q))
    assert d["protocol"]["n_clipped"] == 0
    p = total_momentum(d["vel"][0])
    np.testing.assert_allclose(p, np.broadcast_to(v[0].sum(0), p.shape), atol=1e-12)
    # a close opposite-charge pair: its forces exceed 100 and are clipped per particle,
    # while the distant third particle's force is not -> momentum changes
    x2 = np.array([[[0.0, 0.0, 0.0], [0.05, 0.0, 0.0], [3.0, 1.0, 0.0]]])
    v2 = np.zeros((1, 3, 3))
    q2 = np.array([[1.0, -1.0, 1.0]])
    d2 = simulate(0, n_frames=1, initial=(x2, v2, q2))
    assert d2["protocol"]["n_clipped"] > 0
    assert np.abs(total_momentum(d2["vel"][0, 0])).max() > 1e-6
    # with two particles clipping stays symmetric: momentum exact
    d3 = simulate(0, n_frames=1, initial=(x2[:, :2], v2[:, :2], q2[:, :2]))
    assert d3["protocol"]["n_clipped"] > 0
    assert np.abs(total_momentum(d3["vel"][0, 0])).max() < 1e-12


def test_baselines_zero_and_constant_velocity():
    s = make_samples(simulate(200, seed=11, n_frames=41), dtype=torch.float64)
    zero = float(s.displacement.pow(2).mean())
    cv = float((s.velocities * 1.0 - s.displacement).pow(2).mean())
    assert np.isfinite(zero) and np.isfinite(cv)
    assert 0 < cv < zero  # moving on with the current velocity beats standing still


# ----------------------------------------------------------------------------- files + CLI
def test_generate_cli_writes_file(tmp_path, capsys):
    out = tmp_path / "d.npz"
    assert main(["nbody", "generate", "--out", str(out), "--samples", "7", "--seed", "5",
                 "--frames", "12"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["samples"] == 7
    with np.load(out) as z:
        assert z["loc"].shape == z["vel"].shape == (7, 12, 5, 3)
        assert z["charges"].shape == (7, 5, 1)
        assert z["loc"].dtype in (np.float64, np.float32)
        loc = z["loc"].copy()
    again = tmp_path / "e.npz"
    assert main(["nbody", "generate", "--out", str(again), "--samples", "7", "--seed", "5",
                 "--frames", "12"]) == 0
    with np.load(again) as z:
        np.testing.assert_array_equal(z["loc"], loc)
    assert load_data(out)["protocol"]["seed"] == 5


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for 2 epochs on 64 systems, and data files of 50 and 41 frames."""
    root = tmp_path_factory.mktemp("nbody")
    save_data(root / "train.npz", simulate(64, seed=1, n_frames=41))
    save_data(root / "valid50.npz", simulate(24, seed=2, n_frames=50))
    save_data(root / "valid41.npz", simulate(24, seed=3, n_frames=41))
    out = root / "run"
    argv = ["nbody", "train", "--train", str(root / "train.npz"), "--valid", str(root / "valid50.npz"),
            "--out", str(out), "--epochs", "2", "--batch-size", "16", "--threads", "1", "--quiet",
            "--seed", "3", "--ema-decay", "0.9", *TINY]
    rc = main(argv)
    assert rc == 0
    return root, out, argv


def test_train_writes_outputs_and_resumes(trained, capsys):
    root, out, argv = trained
    for name in ("log.csv", "curves.png", "checkpoint.pt", "best.pt", "model.pt", "metrics.json"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r["valid_mse"])) for r in rows)
    meta = export.read_metadata(out / "model.pt")
    assert meta["task"] == "vectors" and meta["application"] == "nbody"
    assert meta["nbody"]["frame_in"] == 30 and meta["nbody"]["frame_out"] == 40
    assert meta["nbody"]["train_seed"] == 1 and meta["nbody"]["training_seed"] == 3
    assert meta["outputs"] == ["vectors", "velocities"]
    assert np.isfinite(meta["training"]["metrics"]["valid_mse"])
    # rerunning the finished run resumes (no new epochs, same log)
    capsys.readouterr()
    assert main(argv) == 0
    assert len(list(csv.DictReader(open(out / "log.csv")))) == 2
    # a different setting is refused
    assert main([*argv[:-len(TINY)], "--d-model", "32", *TINY[2:]]) == 2


def test_train_runs_in_the_core_loop_and_resumes_to_the_same_result(trained, tmp_path, monkeypatch):
    """train_nbody hands its epochs to get_md.train.loop.run_loop (hooks called), and a run
    killed after epoch 1 (before any validation, so no best.pt yet) and rerun ends with the
    same log rows and weights as an uninterrupted one."""
    import get_md.workflows.nbody.train as nbody_train
    from get_md.workflows.nbody import NBodyTrainConfig, train_nbody

    import get_md.train.loop as loop

    root, _, _ = trained
    calls = []

    def spy(model, optimizer, scheduler, hooks, settings):
        calls.append((hooks, settings))
        return loop.run_loop(model, optimizer, scheduler, hooks, settings)

    monkeypatch.setattr(nbody_train, "run_loop", spy)
    model = {"d_model": 16, "n_layers": 1, "n_heads": 2, "n_rbf": 8}

    def config(out):
        return NBodyTrainConfig(model=model, train_data=str(root / "train.npz"),
                                valid_data=str(root / "valid41.npz"), output_dir=str(out), epochs=3,
                                batch_size=32, eval_every=2, ema_decay=0.9, seed=1, threads=1,
                                plot=False, verbose=False)

    seen = []
    full = train_nbody(config(tmp_path / "full"), callbacks=[lambda state, row: seen.append(row["epoch"])])
    assert seen == [1, 2, 3] and len(calls) == 1
    hooks, settings = calls[0]
    assert hooks.metric_name == "mse" and settings.scheduler_interval == "step"
    assert [hooks.validate_at(e) for e in (1, 2, 3)] == [False, True, True]

    class Kill(Exception):
        pass

    def kill(state, row):
        if row["epoch"] == 1:
            raise Kill

    with pytest.raises(Kill):
        train_nbody(config(tmp_path / "part"), callbacks=[kill])
    assert not (tmp_path / "part" / "best.pt").exists()
    part = train_nbody(config(tmp_path / "part"))
    assert len(calls) == 3 and part.best_epoch == full.best_epoch
    timing = ("samples_per_s", "epoch_time_s", "elapsed_s")
    rows = [[{k: v for k, v in r.items() if k not in timing}
             for r in csv.DictReader(open(run / "log.csv"))] for run in (tmp_path / "full", tmp_path / "part")]
    assert [int(r["epoch"]) for r in rows[1]] == [1, 2, 3] and rows[0] == rows[1]
    assert rows[0][0]["valid_mse"] == "nan"
    for name in ("checkpoint.pt", "best.pt"):
        a, b = (torch.load(run / name, weights_only=True) for run in (tmp_path / "full", tmp_path / "part"))
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    a, b = (torch.load(run / "checkpoint.pt", weights_only=True)["ema"] for run in (tmp_path / "full", tmp_path / "part"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_evaluate_cli_on_50_and_41_frames(trained, capsys):
    root, out, _ = trained
    for name in ("valid50.npz", "valid41.npz"):
        capsys.readouterr()
        assert main(["nbody", "evaluate", "--data", str(root / name), "--model", str(out / "model.pt")]) == 0
        res = json.loads(capsys.readouterr().out.strip())
        assert res["n_samples"] == 24 and np.isfinite(res["mse"]) and res["mse"] > 0
        assert res["model_path"] == str(out / "model.pt")
        direct = evaluate(out / "model.pt", root / name)
        assert direct["mse"] == pytest.approx(res["mse"], rel=1e-6)
        assert res["baselines"]["constant_velocity"] < res["baselines"]["zero_displacement"]


def test_evaluate_errors(trained, tmp_path, capsys, monkeypatch):
    root, out, _ = trained
    model = str(out / "model.pt")
    good = simulate(3, seed=0, n_frames=41)

    def check(path, *extra, expect):
        capsys.readouterr()
        rc = main(["nbody", "evaluate", "--data", str(path), "--model", model, *extra])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert expect in err, err
        return err

    missing = tmp_path / "missing_vel.npz"
    np.savez(missing, loc=good["loc"], charges=good["charges"])
    err = check(missing, expect="missing arrays ['vel']")
    assert str(missing) in err
    bad_shape = tmp_path / "bad_shape.npz"
    np.savez(bad_shape, loc=good["loc"][:, :, :, :2], vel=good["vel"][:, :, :, :2], charges=good["charges"])
    check(bad_shape, expect="loc must have shape (S, T, N, 3)")
    bad_q = tmp_path / "bad_q.npz"
    np.savez(bad_q, loc=good["loc"], vel=good["vel"], charges=good["charges"][:, :3])
    check(bad_q, expect="charges must have shape (3, 5, 1)")
    short = tmp_path / "short.npz"
    np.savez(short, loc=good["loc"][:, :40], vel=good["vel"][:, :40], charges=good["charges"])
    check(short, expect="frame-out 40 is out of range; the file has T=40 frames")
    check(root / "valid41.npz", "--frame-out", "41", expect="frame-out 41 is out of range")
    nan = tmp_path / "nan.npz"
    loc = good["loc"].copy()
    loc[1, 5, 2, 0] = np.nan
    np.savez(nan, loc=loc, vel=good["vel"], charges=good["charges"])
    err = check(nan, expect="non-finite")
    assert str(nan) in err and "sample 1" in err
    text = tmp_path / "text.npz"
    text.write_text("not an npz")
    check(text, expect=str(text))
    check(tmp_path / "absent.npz", expect="not found")
    # no shipped model registered -> clear error naming it
    from get_md import zoo

    monkeypatch.setattr(zoo, "_read_registry", lambda path=None: {"format_version": 1, "models": {}})
    capsys.readouterr()
    assert main(["nbody", "evaluate", "--data", str(root / "valid41.npz")]) == 2
    assert "geomformer-nbody" in capsys.readouterr().err
    with pytest.raises(NBodyError, match="frame-out"):
        make_samples(good, frame_in=40, frame_out=30)


def _rotation(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    return q


def test_trained_model_is_equivariant_float64(trained):
    root, out, _ = trained
    module, _ = export.load(out / "model.pt")
    module = module.to(torch.float64)
    s = make_samples(load_data(root / "valid41.npz"), dtype=torch.float64)
    base = module.forward_with_vectors(*s.inputs())
    for seed, reflect in ((0, False), (1, True)):
        rot = _rotation(seed)
        if reflect:
            rot = rot @ torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
        shift = torch.tensor([0.7, -1.3, 2.1], dtype=torch.float64)
        o = module.forward_with_vectors(*batch_inputs(s.positions @ rot.T + shift,
                                                      s.velocities @ rot.T, s.charges))
        for key in ("vectors", "velocities"):
            torch.testing.assert_close(o[key], base[key] @ rot.T, atol=1e-10, rtol=1e-9)


def test_train_get_family(trained, tmp_path, capsys):
    root, _, _ = trained
    argv = ["nbody", "train", "--family", "get", "--train", str(root / "train.npz"),
            "--valid", str(root / "valid41.npz"), "--out", str(tmp_path / "get"), "--epochs", "1",
            "--batch-size", "32", "--threads", "1", "--quiet", *TINY]
    assert main(argv) == 0
    meta = export.read_metadata(tmp_path / "get" / "model.pt")
    assert meta["family"] == "get" and meta["outputs"] == ["vectors"]
    capsys.readouterr()
    assert main(["nbody", "evaluate", "--data", str(root / "valid41.npz"),
                 "--model", str(tmp_path / "get" / "model.pt")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert np.isfinite(res["mse"]) and "mse_velocity" not in res


def test_training_windows_pick_one_pair_per_trajectory(trained, tmp_path):
    from get_md.workflows.nbody import NBodyTrainConfig, make_samples
    from get_md.workflows.nbody import pick_windows as _pick_windows
    from get_md.workflows.nbody import stack_windows as _stack_windows

    root, _, _ = trained
    data = load_data(root / "train.npz")
    windows = [make_samples(data, t, t + 10) for t in (0, 1, 2)]
    pick = torch.tensor([2, 0, 1] * 3)[: len(windows[0])]
    got = _pick_windows(_stack_windows(windows), pick)
    for i in (0, 1, 2):
        w = windows[int(pick[i])]
        assert torch.equal(got.positions[i], w.positions[i])
        assert torch.equal(got.displacement[i], w.displacement[i])
        assert torch.equal(got.velocities_out[i], w.velocities_out[i])
    # the window's target is 10 frames after its own input frame
    np.testing.assert_allclose(windows[1].displacement[0].numpy(),
                               data["loc"][0, 11] - data["loc"][0, 1], atol=1e-6)
    with pytest.raises(NBodyError, match="window_start"):
        NBodyTrainConfig(train_data="a", valid_data="b", window_start=31).validate()
    out = tmp_path / "win"
    argv = ["nbody", "train", "--train", str(root / "train.npz"), "--valid", str(root / "valid41.npz"),
            "--out", str(out), "--epochs", "1", "--batch-size", "32", "--threads", "1", "--quiet",
            "--window-start", "20", *TINY]
    assert main(argv) == 0
    meta = export.read_metadata(out / "model.pt")
    assert meta["training"]["config"]["window_start"] == 20


def test_geomformer_encoder_matches_base_without_charge_pairs():
    """Without charge pairs the N-body model's encoder is plain dense GeoMFormer; with them
    the charge products change the encoding."""
    from get_md.models.geomformer import GeoMFormer

    torch.manual_seed(0)
    m = build_nbody_model("geomformer", d_model=16, n_layers=1, n_heads=2, n_rbf=8,
                          charge_pairs=False).double()
    base = GeoMFormer(d_model=16, n_layers=1, n_heads=2, n_rbf=8, mode="dense", task="vectors",
                      cutoff=m.cutoff).double()
    base.load_state_dict({k: v for k, v in m.state_dict().items() if k in base.state_dict()})
    s = make_samples(simulate(3, seed=2, n_frames=41), dtype=torch.float64)
    inp = s.inputs()
    args = (inp.positions, inp.velocities, inp.charges, inp.atomic_numbers, inp.block_ids, inp.atom_positions,
            inp.block_types, inp.batch_ids[inp.block_ids], inp.cell, inp.pbc)
    for a, b in zip(m.encode(*args), base.encode(*args), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.manual_seed(0)
    mq = build_nbody_model("geomformer", d_model=16, n_layers=1, n_heads=2, n_rbf=8,
                           charge_pairs=True).double()
    base.load_state_dict({k: v for k, v in mq.state_dict().items() if k in base.state_dict()})
    x_q, z_q = mq.encode(*args)
    x_b, z_b = base.encode(*args)
    assert float((x_q - x_b).abs().max()) > 1e-6 and float((z_q - z_b).abs().max()) > 1e-6


def test_substeps_model_is_equivariant():
    torch.manual_seed(1)
    m = build_nbody_model("geomformer", d_model=16, n_layers=1, n_heads=2, n_rbf=8, substeps=2).double()
    s = make_samples(simulate(4, seed=6, n_frames=41), dtype=torch.float64)
    rot = _rotation(4)
    a = m.forward_with_vectors(*s.inputs())
    b = m.forward_with_vectors(*batch_inputs(s.positions @ rot.T - 2.0, s.velocities @ rot.T, s.charges))
    for key in ("vectors", "velocities"):
        torch.testing.assert_close(b[key], a[key] @ rot.T, atol=1e-10, rtol=1e-9)


def test_get_family_is_equivariant():
    model = build_nbody_model("get", d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1).double()
    s = make_samples(simulate(4, seed=5, n_frames=41), dtype=torch.float64)
    rot = _rotation(3)
    a = model.forward_with_vectors(*s.inputs())["vectors"]
    b = model.forward_with_vectors(*batch_inputs(s.positions @ rot.T + 1.0, s.velocities @ rot.T,
                                                 s.charges))["vectors"]
    torch.testing.assert_close(b, a @ rot.T, atol=1e-10, rtol=1e-9)


def test_rollout_cli_and_displacement_velocity_fallback(trained, tmp_path, capsys):
    root, out, _ = trained
    capsys.readouterr()
    assert main(["nbody", "rollout", "--data", str(root / "valid50.npz"), "--model", str(out / "model.pt"),
                 "--sample", "2", "--steps", "2", "--out", str(tmp_path / "r")]) == 0
    res = json.loads(capsys.readouterr().out.strip())
    assert res["velocity_source"] == "model" and len(res["mse"]) == 2
    for name in ("rollout.csv", "trajectories.png", "drift.png", "rollout.json"):
        assert (tmp_path / "r" / name).is_file()
    rows = list(csv.DictReader(open(tmp_path / "r" / "rollout.csv")))
    assert len(rows) == 3 and float(rows[0]["mse"]) == 0.0
    # the reference at the first interval is the file's frame 40
    data = load_data(root / "valid50.npz")
    e40 = total_energy(data["loc"][2, 40], data["vel"][2, 40], data["charges"][2])
    assert float(rows[1]["energy_ref"]) == pytest.approx(float(e40), rel=1e-9)
    # a model without velocity output: velocities estimated from the displacement
    torch.manual_seed(0)
    m = build_nbody_model("geomformer", d_model=16, n_layers=1, n_heads=2, n_rbf=8, velocity_head=False)
    res2 = rollout(m.double(), data, sample=0, steps=2)
    assert res2["velocity_source"] == "displacement / interval time"
    assert all(np.isfinite(res2["mse"]))


def test_cli_lists_nbody_actions(capsys):
    assert main(["nbody", "--help"]) == 0
    text = capsys.readouterr().out
    for action in ("generate", "train", "evaluate", "rollout"):
        assert action in text


def test_module_api_exports():
    for name in ("simulate", "make_samples", "evaluate", "rollout", "train_nbody"):
        assert callable(getattr(nbody, name))


def test_tmp_files_not_left(tmp_path):
    save_data(tmp_path / "x.npz", simulate(2, n_frames=2))
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["x.npz"]


# ----------------------------------------------------------------------------- model suite
class TestNBodyGeoMFormer(ModelSuite):
    """NBodyGeoMFormer against the shared model suite: task "vectors" (outputs ``vectors``
    and ``velocities``), dense mode only, particles of the dummy element, velocities and
    charges through ``forward_with_vectors``; rebuilt with ``build_nbody_model``."""

    family = "geomformer"
    tasks = ("vectors",)
    modes = ("dense",)
    potential_modes = ()  # no energy: no cutoff scan, separability or periodic checks
    input_vectors = True
    substeps = 1

    def make_model(self, task: str, mode: str, dtype: torch.dtype) -> torch.nn.Module:
        torch.manual_seed(0)
        return build_nbody_model("geomformer", d_model=16, n_layers=1, n_heads=2, n_rbf=8,
                                 mode=mode, substeps=self.substeps).to(dtype)

    def make_structures(self, n: int, dtype: torch.dtype, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        return [random_molecule(gen, 4 + (i * 2 + seed) % 4, dtype, elements=(PARTICLE_Z,),
                                name=f"sys{i}") for i in range(n)]

    def rebuild(self, family: str, config: dict) -> torch.nn.Module:
        return build_nbody_model(family, **config)


class TestNBodyGeoMFormerSubsteps(TestNBodyGeoMFormer):
    """The same with two network applications per interval (shared weights)."""

    substeps = 2


# ----------------------------------------------------------------------------- bad initial conditions
def test_simulate_refuses_bad_initial_conditions():
    """NaN or infinite starts and two particles at one place (an infinite force) had given
    all-NaN trajectories without a word; mismatched charges a bare numpy reshape error; dt NaN
    a NaN trajectory, sample_freq 0 a ZeroDivisionError."""
    rng = np.random.default_rng(0)
    x, v, q = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 3)), np.ones((2, 5, 1))
    bad_x = x.copy()
    bad_x[1, 3, 0] = np.nan
    same = x.copy()
    same[0, 4] = same[0, 2]
    bad_v = v.copy()
    bad_v[0, 1, 2] = np.inf
    cases = [((bad_x, v, q), {}, "initial loc: sample 1, particle 3 is not finite"),
             ((x, bad_v, q), {}, "initial vel: sample 0, particle 1 is not finite"),
             ((same, v, q), {}, "initial loc: sample 0: particles 2 and 4 are at the same place"),
             ((x, v, np.ones((2, 4, 1))), {}, "initial charges must be [S, N(, 1)] = [2, 5], got (2, 4, 1)"),
             ((x[0], v[0], q[0]), {}, "initial loc/vel must be [S, N, 3], got (5, 3), (5, 3)"),
             ((x, v, q), {"dt": float("nan")}, "dt must be a positive number, got nan"),
             ((x, v, q), {"sample_freq": 0}, "sample_freq must be >= 1, got 0")]
    for initial, kw, message in cases:
        with pytest.raises(NBodyError) as info:
            simulate(1, n_frames=2, initial=initial, **kw)
        assert str(info.value) == message
    assert np.isfinite(simulate(1, n_frames=2, initial=(x, v, q))["loc"]).all()


def test_a_data_file_with_two_particles_at_one_place_is_refused(tmp_path):
    """Only the simulator had refused them; a file written elsewhere loaded, and the model's
    pair directions there are 0/0."""
    data = simulate(2, seed=0, n_frames=3)
    data["loc"][1, 2, 4] = data["loc"][1, 2, 0]
    path = save_data(tmp_path / "same.npz", data)
    with pytest.raises(NBodyError, match=r"loc: sample 1, frame 2: particles 0 and 4 are at the same place"):
        load_data(path)


def test_train_resume_from_a_truncated_checkpoint_names_it(tmp_path, capsys):
    """A truncated checkpoint.pt had stopped `nbody train` with torch's zip error alone."""
    for name, seed in (("tr.npz", 0), ("va.npz", 1)):
        save_data(tmp_path / name, simulate(6, seed=seed, n_frames=6))
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"PK\x03\x04" + bytes(200))
    rc = main(["nbody", "train", "--train", str(tmp_path / "tr.npz"), "--valid", str(tmp_path / "va.npz"),
               "--out", str(run), "--epochs", "1", "--d-model", "8", "--n-layers", "1", "--n-heads", "2",
               "--frame-in", "1", "--frame-out", "3", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == (f"get-md: error: {run / 'checkpoint.pt'}: truncated or damaged checkpoint "
                                       "(incomplete zip archive); move it away to start over"), err
