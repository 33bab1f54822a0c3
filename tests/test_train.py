"""Training: datasets, dynamic batching, losses, the loop (resume), and the CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Dict

import pytest
import torch
from torch import nn

from get_md import export
from get_md.cli import main
from get_md.errors import ConfigError, LossError
from get_md.graph import MolecularGraph
from get_md.train import (
    BlockBatchSampler,
    DatasetError,
    MetricAccumulator,
    MolecularDataset,
    Sample,
    TrainConfig,
    TrainError,
    WeightedLoss,
    collate,
    load_config,
    train,
)

TIMING = ("epoch_time_s", "elapsed_s")
TINY_GET = dict(d_hidden=16, d_radial=8, n_rbf=8, n_head=2, n_layers=1, cutoff=4.0)


# ----------------------------------------------------------------------------- fixtures
def make_dataset(n: int = 16, seed: int = 0, blocks_per_sample: bool = False) -> MolecularDataset:
    """Small molecules (H, C, O) with Morse-like pair energies and exact forces."""
    gen = torch.Generator().manual_seed(seed)
    eps = {1: 0.3, 6: 0.6, 8: 0.5}
    samples = []
    for i in range(n):
        na = int(torch.randint(3, 7, (1,), generator=gen))
        z = torch.tensor([1, 6, 8])[torch.randint(0, 3, (na,), generator=gen)]
        while True:
            pos = torch.rand(na, 3, generator=gen, dtype=torch.float64) * 3.0
            if (torch.cdist(pos, pos) + 10 * torch.eye(na)).min() > 0.9:
                break
        pos.requires_grad_(True)
        e = torch.tensor([eps[int(a)] for a in z], dtype=torch.float64)
        d = (pos[:, None] - pos[None]).pow(2).sum(-1).add(torch.eye(na)).sqrt()
        pair = (e[:, None] * e[None]).sqrt() * ((1 - torch.exp(-1.5 * (d - 1.3))) ** 2 - 1)
        energy = pair.triu(1).sum() - 0.5 * z.double().sum()
        forces = -torch.autograd.grad(energy, pos)[0]
        g = MolecularGraph.from_atoms(pos.detach().float(), z, name=f"mol{i}")
        samples.append(Sample(g, {"energy": energy.detach().float().reshape(1),
                                  "forces": forces.float()}))
    return MolecularDataset(samples, name="synthetic")


class PairPotential(nn.Module):
    """A tiny invariant, scriptable energy model: element embeddings + smooth pair sums.

    Stands in for GET in the loop-mechanics tests, which need many fast epochs.
    """

    __jit_ignored_attributes__ = ["config"]

    def __init__(self, hidden: int = 16, n_rbf: int = 8, cutoff: float = 4.0,
                 compute_forces: bool = True):
        super().__init__()
        self.config = dict(hidden=hidden, n_rbf=n_rbf, cutoff=cutoff, compute_forces=compute_forces)
        self.family = "pair"
        self.task = "energy"
        self.cutoff = float(cutoff)
        self.compute_forces = compute_forces
        self.embed = nn.Embedding(119, hidden)
        self.register_buffer("centers", torch.linspace(0.5, cutoff, n_rbf))
        self.radial = nn.Linear(n_rbf, hidden)
        self.out = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        self.atom_ref = nn.Embedding(119, 1)
        nn.init.zeros_(self.atom_ref.weight)
        self.register_buffer("energy_scale", torch.ones(()))

    def forward(self, positions: torch.Tensor, atomic_numbers: torch.Tensor,
                block_ids: torch.Tensor, atom_positions: torch.Tensor, block_types: torch.Tensor,
                segment_ids: torch.Tensor, batch_ids: torch.Tensor, cell: torch.Tensor,
                pbc: torch.Tensor) -> Dict[str, torch.Tensor]:
        if self.compute_forces and not positions.requires_grad:
            positions = positions.detach().requires_grad_(True)
        atom_batch = batch_ids[block_ids]
        n = positions.shape[0]
        eye = torch.eye(n, dtype=torch.bool, device=positions.device)
        same = (atom_batch[:, None] == atom_batch[None, :]) & ~eye
        diff = positions[:, None, :] - positions[None, :, :]
        d = ((diff * diff).sum(-1) + (~same).to(positions.dtype)).sqrt()
        env = torch.where(same & (d < self.cutoff),
                          0.5 * (torch.cos(math.pi * d / self.cutoff) + 1.0), torch.zeros_like(d))
        rbf = torch.exp(-4.0 * (d[:, :, None] - self.centers) ** 2) * env[:, :, None]
        h = self.embed(atomic_numbers)
        msg = (self.radial(rbf) * h[None, :, :]).sum(1)
        energies = self.out(h + msg).squeeze(-1) * self.energy_scale
        energies = energies + self.atom_ref(atomic_numbers).squeeze(-1)
        energy = torch.zeros(cell.shape[0], dtype=positions.dtype,
                             device=positions.device).index_add(0, atom_batch, energies)
        out = {"energy": energy, "energies": energies}
        if self.compute_forces:
            grads = torch.autograd.grad([energy.sum()], [positions], create_graph=self.training)
            g = grads[0]
            assert g is not None
            out["forces"] = -g
        return out


@pytest.fixture(scope="module")
def dataset() -> MolecularDataset:
    return make_dataset()


def pair_config(dataset: MolecularDataset, out: Path, **kw) -> TrainConfig:
    base = dict(family="pair", model={"hidden": 16}, dataset=dataset, model_factory=PairPotential,
                valid_fraction=0.25, max_blocks=12, lr=1e-2, lr_gamma=0.9, max_epochs=4,
                output_dir=str(out), verbose=False, loss_weights={"energy": 1.0, "forces": 1.0})
    base.update(kw)
    return TrainConfig(**base)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- data
def test_dataset_save_load_round_trip(dataset, tmp_path):
    dataset.save(tmp_path / "ds.pt")
    back = MolecularDataset.load(tmp_path / "ds.pt")
    assert len(back) == len(dataset) and back.target_names == ["energy", "forces"]
    for a, b in zip(dataset.samples, back.samples, strict=True):
        for x, y in zip(a.graph.inputs(), b.graph.inputs(), strict=True):
            assert torch.equal(x, y)
        assert all(torch.equal(a.targets[k], b.targets[k]) for k in a.targets)
        assert a.graph.names == b.graph.names


def test_dataset_errors(dataset, tmp_path):
    g = dataset[0].graph
    with pytest.raises(DatasetError, match="forces"):
        Sample(g, {"forces": torch.zeros(g.num_atoms + 1, 3)})
    with pytest.raises(DatasetError, match="unknown target"):
        Sample(g, {"dipole": torch.zeros(1)})
    with pytest.raises(DatasetError, match="same"):
        MolecularDataset([dataset[0], Sample(dataset[1].graph, {"energy": torch.zeros(1)})])
    with pytest.raises(DatasetError, match="not found"):
        MolecularDataset.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="junk.pt"):
        MolecularDataset.load(tmp_path / "junk.pt")


@pytest.mark.parametrize("change, message", [
    (lambda p: p[2].copy_(p[0] + torch.tensor([0.05, 0.0, 0.0])),
     "atoms 1 and 3 are 0.05 Å apart (overlapping atoms: < 0.1 Å)"),
    (lambda p: p[1].fill_(3e5), "atom 2 has coordinate [300000.0, 300000.0, 300000.0] beyond 100000 Å"),
], ids=["overlapping", "far"])
def test_dataset_file_with_bad_geometry_is_refused_at_load(dataset, tmp_path, change, message):
    """A .pt dataset gets the geometry checks of the .npz files: overlapping atoms or a far
    coordinate is an error naming the file and the sample, not training data."""
    g = dataset[1].graph
    positions = g.positions.clone()
    change(positions)
    bad = Sample(g.with_positions(positions), dataset[1].targets)
    MolecularDataset([dataset[0], bad, dataset[2]]).save(tmp_path / "bad.pt")
    with pytest.raises(DatasetError) as info:
        MolecularDataset.load(tmp_path / "bad.pt")
    assert str(info.value) == f"{tmp_path / 'bad.pt'}: sample 1 (mol1): {message}"


# ----------------------------------------------------------------------------- batching
def test_block_batching_respects_budget_and_covers_each_sample_once():
    gen = torch.Generator().manual_seed(0)
    counts = torch.randint(1, 30, (57,), generator=gen).tolist()
    sampler = BlockBatchSampler(counts, max_blocks=40, seed=5)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert all(sum(counts[i] for i in b) <= 40 for b in batches)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(counts)))
        # greedy filling: a batch closes only when the next sample would not fit
        for b, nxt in zip(batches[:-1], batches[1:], strict=True):
            assert sum(counts[i] for i in b) + counts[nxt[0]] > 40
        orders.append(flat)
    assert orders[0] != orders[1]
    again = BlockBatchSampler(counts, max_blocks=40, seed=5)
    again.set_epoch(1)
    assert [i for b in again for i in b] == orders[1]


def test_oversized_sample_gets_its_own_batch():
    with pytest.warns(UserWarning, match="more than max_blocks"):
        sampler = BlockBatchSampler([3, 50, 4], max_blocks=10, shuffle=False)
    assert list(sampler) == [[0], [1], [2]]


def test_collate_concatenates_targets(dataset):
    graph, targets = collate([dataset[0], dataset[1], dataset[2]])
    assert graph.num_graphs == 3
    assert targets["energy"].shape == (3,)
    assert targets["forces"].shape == (graph.num_atoms, 3)


def test_weighted_loss_and_metrics():
    loss_fn = WeightedLoss({"energy": 2.0, "forces": 1.0}, kind={"energy": "mae"},
                           energy_per_atom=True)
    out = {"energy": torch.tensor([3.0, 0.0]), "forces": torch.ones(3, 3)}
    ref = {"energy": torch.tensor([0.0, 0.0]), "forces": torch.zeros(3, 3)}
    loss, terms = loss_fn(out, ref, num_atoms=torch.tensor([2, 1]))
    assert terms["energy"].item() == pytest.approx(0.75)  # mean(|3/2|, 0)
    assert terms["forces"].item() == pytest.approx(1.0)
    assert loss.item() == pytest.approx(2.5)
    acc = MetricAccumulator()
    acc.update(loss_fn.errors(out, ref, torch.tensor([2, 1])))
    assert loss_fn.epoch_loss(acc) == pytest.approx(2.5)
    assert acc.compute()["energy_rmse"] == pytest.approx(math.sqrt(1.5**2 / 2))
    with pytest.raises(ValueError, match="forces"):
        loss_fn({"energy": out["energy"]}, ref, torch.tensor([2, 1]))


def test_series_centred_loss_ignores_each_series_offset():
    """score_series: the score errors minus their mean within each series of the batch;
    zero for predictions off by one constant per series, singletons left out; the
    pointwise term still sees the offsets."""
    from get_md.train.loss import series_centred

    loss_fn = WeightedLoss({"score": 1.0, "score_series": 1.0})
    assert loss_fn.needs_groups and not WeightedLoss({"score": 1.0}).needs_groups
    ref = {"score": torch.tensor([5.0, 6.0, 7.0, 8.0, 4.0])}
    groups = torch.tensor([0, 0, 1, 1, 2])
    shifted = {"score": ref["score"] + torch.tensor([1.0, 1.0, -2.0, -2.0, 3.0])}
    errs = loss_fn.errors(shifted, ref, groups=groups)
    assert errs["score_series"].shape == (4,) and torch.count_nonzero(errs["score_series"]) == 0
    assert errs["score"].abs().sum() > 0
    swapped = {"score": torch.tensor([6.0, 5.0, 7.0, 8.0, 4.0])}   # series 0 ranked the wrong way
    _, terms = loss_fn(swapped, ref, groups=groups)
    assert terms["score_series"].item() == pytest.approx((1.0 + 1.0 + 0.0 + 0.0) / 4)  # errors +1, -1
    assert torch.equal(series_centred(torch.tensor([2.0]), torch.tensor([0])), torch.tensor([]))
    with pytest.raises(ValueError, match="series"):
        loss_fn.errors(shifted, ref)


def test_series_loss_refuses_structures_without_a_series_name(tmp_path):
    samples = [Sample(MolecularGraph.from_atoms(torch.rand(3, 3) * 3, torch.tensor([6, 8, 1]), name=f"mol{i}"),
                      {"score": torch.tensor([float(i)])}) for i in range(6)]
    cfg = pair_config(MolecularDataset(samples, name="unnamed"), tmp_path / "run",
                      loss_weights={"score": 1.0, "score_series": 1.0})
    with pytest.raises(TrainError, match="sample 0 has no 'TARGET\\|series\\|ligand' name"):
        train(cfg)


def test_series_batches_hold_one_series_each_and_cover_every_sample_once():
    from get_md.train.batching import SeriesBatchSampler, series_of

    groups = [series_of(f"T|s{i % 3}|lig{i}") for i in range(20)]
    counts = [1 + i % 4 for i in range(20)]
    sampler = SeriesBatchSampler(groups, counts, max_blocks=6, seed=3)
    sampler.set_epoch(1)
    first = sampler.batches()
    assert sorted(i for b in first for i in b) == list(range(20))
    assert all(len({groups[i] for i in b}) == 1 for b in first)
    assert all(len(b) > 1 for b in first)   # a lone leftover joins its series' last batch
    assert sampler.batches() == first        # same epoch, same batches (resume)
    sampler.set_epoch(2)
    assert sampler.batches() != first
    with pytest.raises(DatasetError, match="series labels"):
        SeriesBatchSampler(groups[:3], counts, max_blocks=6)


# ----------------------------------------------------------------------------- loop
def test_training_decreases_loss_and_writes_outputs(dataset, tmp_path):
    result = train(pair_config(dataset, tmp_path / "run", max_epochs=6))
    rows = read_rows(tmp_path / "run" / "log.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, 7))
    train_loss = [float(r["train_loss"]) for r in rows]
    valid_loss = [float(r["valid_loss"]) for r in rows]
    assert train_loss[-1] < 0.5 * train_loss[0]
    assert min(valid_loss) < valid_loss[0]
    assert {"lr", "train_forces_mae", "valid_energy_rmse", "epoch_time_s"} <= set(rows[0])
    assert float(rows[1]["lr"]) == pytest.approx(0.9 * float(rows[0]["lr"]))
    for name in ("curves.png", "checkpoint.pt", "best.pt", "model.pt"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    assert (tmp_path / "run" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    module, meta = export.load(result.model_path)
    assert meta["family"] == "pair" and meta["elements"] == ["H", "C", "O"]
    assert meta["training"]["metrics"]["best_epoch"] == result.best_epoch
    assert meta["training"]["dataset"]["n_train"] == 12
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert export.weights_sha256(best["model"]) == meta["weights_sha256"]


def test_kill_and_resume_matches_uninterrupted_run(dataset, tmp_path):
    full = tmp_path / "full"
    train(pair_config(dataset, full, max_epochs=4, plot=False))
    part = tmp_path / "part"
    train(pair_config(dataset, part, max_epochs=2, plot=False))
    # a kill after a log row was written but before the checkpoint was replaced
    with open(part / "log.csv", "a") as f:
        f.write("3,0.0081,1.0,2.0\n")
    result = train(pair_config(dataset, part, max_epochs=4, plot=False))
    assert result.last_epoch == 4
    rows_full, rows_part = read_rows(full / "log.csv"), read_rows(part / "log.csv")
    assert len(rows_part) == 4
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in rows_full]
    assert strip == [{k: v for k, v in r.items() if k not in TIMING} for r in rows_part]
    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(part / "checkpoint.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert export.read_metadata(full / "model.pt")["weights_sha256"] == \
        export.read_metadata(part / "model.pt")["weights_sha256"]


def test_weight_average_validates_and_exports_the_average(dataset, tmp_path):
    """With ema_decay, best.pt and model.pt hold the averaged weights (not the trained ones),
    and checkpoint.pt keeps both so training goes on from the trained ones."""
    out = tmp_path / "ema"
    result = train(pair_config(dataset, out, max_epochs=1, plot=False, ema_decay=0.5))
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    trained = ckpt["model"]
    average = {k[len("module."):]: v for k, v in ckpt["ema"].items() if k.startswith("module.")}
    assert average.keys() == trained.keys()
    assert int(ckpt["ema"]["n_averaged"]) > 1  # updated after every step
    best = torch.load(out / "best.pt", weights_only=True)
    assert all(torch.equal(best["model"][k], average[k]) for k in trained)
    assert any(not torch.equal(best["model"][k], trained[k]) for k in trained)
    meta = export.read_metadata(result.model_path)
    assert export.weights_sha256(best["model"]) == meta["weights_sha256"]
    assert meta["training"]["config"]["ema_decay"] == 0.5


def test_weight_average_resumes_like_an_uninterrupted_run(dataset, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    train(pair_config(dataset, full, max_epochs=3, plot=False, ema_decay=0.7))
    train(pair_config(dataset, part, max_epochs=1, plot=False, ema_decay=0.7))
    train(pair_config(dataset, part, max_epochs=3, plot=False, ema_decay=0.7))
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]  # noqa: E731
    assert strip(read_rows(full / "log.csv")) == strip(read_rows(part / "log.csv"))
    a = torch.load(full / "best.pt", weights_only=True)
    b = torch.load(part / "best.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_weight_average_refuses_a_checkpoint_without_one(dataset, tmp_path):
    train(pair_config(dataset, tmp_path / "r", max_epochs=1, plot=False))
    with pytest.raises(TrainError, match=r"different settings for \['ema_decay'\]"):
        train(pair_config(dataset, tmp_path / "r", max_epochs=2, plot=False, ema_decay=0.9))
    # a checkpoint from before the setting existed (its config lacks the key)
    ckpt_path = tmp_path / "r" / "checkpoint.pt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    del ckpt["config"]["ema_decay"]
    torch.save(ckpt, ckpt_path)
    with pytest.raises(TrainError, match=r"checkpoint\.pt: checkpoint has no weight average"):
        train(pair_config(dataset, tmp_path / "r", max_epochs=2, plot=False, ema_decay=0.9))


def test_resume_refuses_changed_settings(dataset, tmp_path):
    train(pair_config(dataset, tmp_path / "r", max_epochs=1, plot=False))
    with pytest.raises(TrainError, match=r"lr.*resume=False \(--no-resume on the command line\)"):
        train(pair_config(dataset, tmp_path / "r", max_epochs=2, lr=0.5, plot=False))
    # resume=False starts over
    result = train(pair_config(dataset, tmp_path / "r", max_epochs=1, lr=0.5, resume=False,
                               plot=False))
    assert len(read_rows(tmp_path / "r" / "log.csv")) == 1 and result.last_epoch == 1


def _toy_run(out: Path, epochs: int, callbacks=(), probe=None):
    """A linear fit through run_loop's hooks alone: batches, step, per-step scheduler,
    after_step, validation every 2nd epoch on a named metric, extra checkpoint entries."""
    from get_md.train.loop import LoopHooks, LoopSettings, run_loop
    from get_md.train.schedule import warmup_cosine

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=gen)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(40, generator=gen)
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = warmup_cosine(opt, total_steps=4 * epochs, warmup_steps=2, min_ratio=0.1)
    counts = {"steps": 0}

    def batches(split, epoch):
        idx = torch.randperm(30) if split == "train" else torch.arange(30, 40)
        for a in range(0, len(idx), 8):
            yield idx[a:a + 8]

    def step(model, idx, training):
        if probe is not None:
            probe()
        err = model(x[idx]).squeeze(-1) - y[idx]
        return err.pow(2).mean(), {"y": err.detach()}, len(idx)

    hooks = LoopHooks(batches, step, epoch_loss=lambda acc, mean: mean,
                      valid_metric=lambda acc: acc.mean("y", "mae"), metric_name="mae",
                      validate_at=lambda epoch: epoch % 2 == 0,
                      after_step=lambda: counts.__setitem__("steps", counts["steps"] + 1),
                      on_epoch_end=callbacks, save_extra=lambda: {"steps": counts["steps"]},
                      load_extra=lambda ckpt: counts.__setitem__("steps", ckpt["steps"]))
    columns = ["epoch", "lr", "train_loss", "train_y_mae", "train_y_rmse", "valid_loss", "valid_mae",
               "valid_y_mae", "valid_y_rmse", "best", "samples_per_s", "epoch_time_s", "elapsed_s"]
    settings = LoopSettings(out, epochs, columns, {"lr": 0.1}, "linear", {}, patience=3,
                            scheduler_interval="step")
    return run_loop(model, opt, sched, hooks, settings), counts


def test_run_loop_hooks_and_resume(tmp_path):
    state, counts = _toy_run(tmp_path / "full", 4)
    rows = read_rows(tmp_path / "full" / "log.csv")
    assert counts["steps"] == 16 and [r["valid_mae"] == "nan" for r in rows] == [True, False, True, False]
    assert float(rows[0]["samples_per_s"]) > 0 and state.stop.best_epoch in (2, 4)
    assert float(rows[1]["lr"]) != float(rows[0]["lr"])  # stepped per batch, not per epoch
    best = torch.load(tmp_path / "full" / "best.pt", weights_only=True)
    assert best["valid_metrics"]["mae"] == pytest.approx(state.stop.best)

    class Kill(Exception):
        pass

    def kill(state, row):
        if row["epoch"] == 3:
            raise Kill

    with pytest.raises(Kill):
        _toy_run(tmp_path / "part", 4, callbacks=[kill])
    state2, counts2 = _toy_run(tmp_path / "part", 4)
    assert counts2["steps"] == 16 and state2.stop.best == state.stop.best
    strip = [{k: v for k, v in r.items() if k not in (*TIMING, "samples_per_s")}
             for r in read_rows(tmp_path / "part" / "log.csv")]
    assert strip == [{k: v for k, v in r.items() if k not in (*TIMING, "samples_per_s")} for r in rows]


def test_run_loop_trains_and_validates_with_subnormals_flushed(tmp_path):
    """Training and validation passes run inside get_md.perf.flush_denormals (1.55x
    faster epochs for the affinity members); the mode is restored after the loop."""
    if not torch.set_flush_denormal(False):
        pytest.skip("CPU without FTZ/DAZ")
    tiny = torch.full((100_000,), 1e-39)
    seen = []
    _toy_run(tmp_path / "run", 2, probe=lambda: seen.append(int(torch.count_nonzero(tiny * 1.0))))
    assert seen and set(seen) == {0}
    assert int(torch.count_nonzero(tiny * 1.0)) == tiny.numel()


# ----------------------------------------------------------------------------- CLI (real GET)
def test_cli_train_info_export_with_get(tmp_path, capsys):
    make_dataset(n=6, seed=1).save(tmp_path / "data.pt")
    cfg = {"family": "get", "model": TINY_GET, "train_data": "data.pt", "valid_fraction": 0.34,
           "max_blocks": 100, "lr": 5e-3, "max_epochs": 2, "output_dir": "run",
           "loss_weights": {"energy": 1.0, "forces": 1.0}}
    (tmp_path / "train.json").write_text(json.dumps(cfg))
    assert main(["train", str(tmp_path / "train.json"), "--quiet"]) == 0
    run = tmp_path / "run"
    assert len(read_rows(run / "log.csv")) == 2
    out = capsys.readouterr().out
    assert "model:" in out

    assert main(["info", str(run / "model.pt")]) == 0
    text = capsys.readouterr().out
    assert "family            get" in text and "task              energy" in text
    assert "weights_sha256" in text and "cutoff            4 Å" in text
    assert main(["info", str(run / "model.pt"), "--json", "--verify"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["family"] == "get" and meta["training"]["command"].startswith("get-md train")
    assert meta["elements"] == ["H", "C", "O"]

    assert main(["export", str(run / "best.pt"), str(tmp_path / "again.pt"),
                 "--elements", "H,C,O"]) == 0
    capsys.readouterr()
    again = export.read_metadata(tmp_path / "again.pt")
    assert again["weights_sha256"] == meta["weights_sha256"]
    assert again["config"] == meta["config"]


def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("get-md: error:") and "missing.pt" in err and len(err.splitlines()) == 1
    (tmp_path / "bad.json").write_text(json.dumps({"family": "get", "epochs": 3}))
    assert main(["train", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "unknown config fields ['epochs']" in err and len(err.splitlines()) == 1
    (tmp_path / "garbage.pt").write_bytes(b"garbage")
    assert main(["export", str(tmp_path / "garbage.pt"), str(tmp_path / "o.pt")]) == 2
    assert "garbage.pt" in capsys.readouterr().err
    assert main(["no-such-command"]) == 2


def test_yaml_config_paths_are_relative_to_the_file(tmp_path):
    pytest.importorskip("yaml")
    from get_md.train import load_config

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "cfg.yaml").write_text(
        "family: get\nmodel: {d_hidden: 16}\ntrain_data: data.pt\nlr: 0.002\n")
    cfg = load_config(tmp_path / "sub" / "cfg.yaml")
    assert cfg.train_data == str(tmp_path / "sub" / "data.pt")
    assert cfg.lr == 0.002 and cfg.model == {"d_hidden": 16}


def test_cli_extension_points(monkeypatch, capsys):
    from get_md import cli

    def register(sub):
        p = sub.add_parser("hello", help="say hello")
        p.add_argument("--name", default="world")
        p.set_defaults(func=lambda args: print(f"hello {args.name}") or 0)

    monkeypatch.setitem(cli.SUBCOMMANDS, "hello", register)
    monkeypatch.setitem(cli.EXTERNAL_SUBCOMMANDS, "broken", "json:no_such_registrar")
    monkeypatch.setitem(cli.EXTERNAL_SUBCOMMANDS, "absent", "get_md.no_such_module:register_cli")
    assert main(["hello", "--name", "GET"]) == 0
    assert capsys.readouterr().out == "hello GET\n"
    assert main(["broken", "x"]) == 2
    assert "unavailable" in capsys.readouterr().err
    assert main(["absent"]) == 2  # not registered at all: argparse usage error


# ----------------------------------------------------------------------------- bad configs and run folders
@pytest.mark.parametrize("change, message", [
    ({"resume": "no"}, "resume must be true or false, got 'no'"),
    ({"energy_per_atom": "false"}, "energy_per_atom must be true or false, got 'false'"),
    ({"export_metadata": [1, 2]}, "export_metadata must be a map of metadata fields, got [1, 2]"),
    ({"weight_decay": -1.0}, "weight_decay must be >= 0, got -1.0"),
    ({"min_delta": -0.5}, "min_delta must be >= 0, got -0.5"),
    ({"ema_decay": 1.0}, "ema_decay must be in (0, 1) or null, got 1.0"),
    ({"ema_decay": "0.99"}, "ema_decay must be a number, got '0.99'"),
])
def test_config_refuses_strings_for_switches_and_negative_decay(tmp_path, change, message):
    """A JSON string "false" for a switch had been truthy (resume / energy_per_atom silently on),
    a list of metadata and a negative weight decay had failed later as a bare TypeError / torch's
    own message."""
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"train_data": "d.pt", **change}))
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert str(info.value) == f"{cfg}: {message}"


def test_whole_number_fields_given_as_floats_train(dataset, tmp_path):
    """"max_epochs": 2.0 had passed the config check, then stopped the run with an unexpected
    TypeError ('float' object cannot be interpreted as an integer)."""
    cfg = pair_config(dataset, tmp_path / "r", max_epochs=2.0, patience=3.0, max_blocks=12.0, plot=False)
    assert (cfg.max_epochs, cfg.patience, cfg.max_blocks) == (2, 3, 12)
    assert train(cfg).last_epoch == 2


def test_device_that_torch_cannot_use_is_a_config_error(dataset, tmp_path):
    with pytest.raises(ConfigError, match=r"device must be a torch device name .*got 'gpu'"):
        train(pair_config(dataset, tmp_path / "r", device="gpu"))
    if not torch.cuda.is_available():  # had been an unexpected AssertionError from torch
        with pytest.raises(ConfigError, match=r"device 'cuda': this torch sees no CUDA device"):
            train(pair_config(dataset, tmp_path / "r", device="cuda"))


def test_misspelt_loss_kind_target_is_refused(dataset, tmp_path):
    """{"energi": "mae"} had been accepted, leaving energy at the default mse."""
    with pytest.raises(LossError, match=r"loss kinds name targets \['energi'\]"):
        train(pair_config(dataset, tmp_path / "r", loss={"energi": "mae"}))


def test_output_dir_that_is_a_file(dataset, tmp_path):
    out = tmp_path / "out"
    out.write_text("x")
    with pytest.raises(TrainError, match=f"{out}: output_dir is a file, not a folder"):
        train(pair_config(dataset, out, plot=False))


def test_resume_with_damaged_best_or_log_names_the_file(dataset, tmp_path):
    """A truncated best.pt had been found only after the remaining epochs (a bare torch error
    without the file), an undecodable log.csv had given a bare UnicodeDecodeError."""
    out = tmp_path / "r"
    train(pair_config(dataset, out, max_epochs=1, plot=False))
    best = (out / "best.pt").read_bytes()
    (out / "best.pt").write_bytes(best[: len(best) // 2])
    with pytest.raises(TrainError, match=f"{out / 'best.pt'}: truncated or damaged"):
        train(pair_config(dataset, out, max_epochs=2, plot=False))
    (out / "best.pt").write_bytes(best)
    (out / "log.csv").write_bytes(b"epoch,lr\xff\n")
    with pytest.raises(TrainError, match=f"{out / 'log.csv'}: not a readable log.csv"):
        train(pair_config(dataset, out, max_epochs=2, plot=False))
