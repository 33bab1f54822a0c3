"""Train, evaluate and ship the affinity score model (a GET ensemble, pK).

The recipe behind the shipped ``get-affinity`` model, in four resumable steps::

    # 1. complexes with experimental ΔG -> pK-labelled datasets split by target
    python -m get_md.train.affinity data --schrodinger DIR [--posed DIR] --out data/affinity
    # 2. ensemble members, one `get-md train` config each (seeds 0..M-1; resumes)
    python -m get_md.train.affinity train --data data/affinity --out runs/affinity --members 4
    # 3. the members as one model file, evaluated on the held-out targets
    python -m get_md.train.affinity ensemble --runs runs/affinity --data data/affinity \\
        --out get_md/zoo/get-affinity.pt --register get-affinity

A file's members can also continue training on new data (``train --init get-affinity``:
member K starts from the file's member K, keeping its architecture); the new file then
names the one it continued (``dataset.continued_from``: path, ``weights_sha256``, targets).

Splits go by target (every ligand of a protein on one side): ``HELD_OUT_TARGETS``
are never trained on nor used for model selection (they give the reported
figures), ``VALID_TARGETS`` early-stop training, the rest train. The targets of
:data:`get_md.datasets.targets.EXCLUDED_TARGETS` are not even read.

Example:
    >>> from get_md.train.affinity import ranking_metrics
    >>> m = ranking_metrics([1.0, 2.0, 3.0], [1.0, 2.5, 2.9], ["A", "A", "A"])
    >>> m["mean_spearman"]
    1.0
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from scipy.stats import rankdata

from get_md.errors import ConfigError
from get_md.perf import set_threads
from get_md.train.config import TrainConfig, save_config

#: Targets whose every ligand is held out of training and model selection (evaluation).
HELD_OUT_TARGETS = ("SYK", "CDK8", "EPAS1", "LGALS3", "MET", "ADORA2A")
#: Targets that early-stop training (validation).
VALID_TARGETS = ("TNKS2", "KIF11", "FAAH", "JAK2")
#: Residues within this distance (Å) of the ligand form the pocket (as in the GET
#: paper's LBA task, after Atom3D); the model file records it for the workflows.
POCKET_RADIUS = 6.0
#: Series with fewer ligands are left out of the per-series figures (their Spearman is noise).
MIN_SERIES_LIGANDS = 8

DEFAULT_MODEL = dict(
    d_hidden=48, d_radial=16, n_rbf=16, n_head=4, n_layers=2, d_edge=16, cutoff=10.0,
    mode="score", task="score", k_neighbors=9, sparse_k=3, knn_radius=12.0, dropout=0.1,
    heavy_atoms_only=True, contact_radius=4.0, receptor_radius=POCKET_RADIUS, ligand_chemistry=False,
)
# small batches (about 4 complexes): per complex, a 16-complex batch costs 3-5x as much on
# the CPU (its pair tensors leave the cache)
DEFAULT_TRAIN = dict(max_blocks=400, lr=5e-4, lr_gamma=0.93, max_epochs=15, patience=5,
                     grad_clip=10.0, loss="mse", fit_energy_reference=True, weight_decay=1e-5)


# ----------------------------------------------------------------------------- data
def build_splits(schrodinger: Optional[str], posed: Sequence[str], out: str,
                 pocket_radius: float = POCKET_RADIUS, plb: Optional[str] = None,
                 folders: Optional[str] = None, openfe: Optional[str] = None,
                 ligand_chemistry: bool = False) -> dict:
    """Build ``train.pt``, ``valid.pt``, ``test.pt`` and ``report.json`` in ``out``
    (sources as in :func:`get_md.datasets.affinity.collect_series`).

    Example:
        >>> build_splits("structure_inputs", [], "data/affinity")  # doctest: +SKIP
    """
    from get_md.datasets.affinity import (
        DG_TAG,
        assert_no_excluded,
        build_dataset,
        collect_series,
        sample_target,
        split_by_target,
    )

    series = collect_series(schrodinger, posed, plb=plb, folders=folders, openfe=openfe)
    data, report = build_dataset(series, pocket_radius=pocket_radius, name="affinity",
                                 ligand_chemistry=ligand_chemistry)
    if len(data) == 0:  # had written three empty datasets and a report
        from get_md.errors import DatasetError

        where = (", ".join(str(x) for x in [schrodinger, *posed, plb, folders, openfe] if x)
                 or "no folder (give --schrodinger, --posed, --plb, --folders or --openfe)")
        first = f"; first failure: {report.failures[0]}" if report.failures else ""
        raise DatasetError(f"{where}: no ligand with a usable {DG_TAG} tag ({len(series)} series, "
                           f"{len(report.excluded)} excluded, {len(report.failures)} failures{first})")
    assert_no_excluded(data)
    rest, test = split_by_target(data, HELD_OUT_TARGETS)
    train, valid = split_by_target(rest, VALID_TARGETS)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, ds in (("train", train), ("valid", valid), ("test", test)):
        ds.save(out_dir / f"{name}.pt")
    summary = {
        "pocket_radius": pocket_radius,
        "ligand_chemistry": ligand_chemistry,
        "n": {"train": len(train), "valid": len(valid), "test": len(test)},
        "targets": {name: sorted({sample_target(s) for s in ds})
                    for name, ds in (("train", train), ("valid", valid), ("test", test))},
        "excluded_series": report.excluded,
        "duplicates": report.duplicates,
        "failures": report.failures,
        "series": report.series,
    }
    (out_dir / "report.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


# ----------------------------------------------------------------------------- training
def member_config(data: str, out: str, seed: int, model: Optional[dict] = None,
                  **overrides: Any) -> TrainConfig:
    """The ``get-md train`` config of ensemble member ``seed``.

    Example:
        >>> cfg = member_config("data/affinity", "runs/affinity", 0)
        >>> cfg.model["task"], cfg.seed
        ('score', 0)
    """
    kw = dict(DEFAULT_TRAIN, plot=True)
    kw.update(overrides)
    return TrainConfig(
        family="get", model=dict(model or DEFAULT_MODEL),
        train_data=str(Path(data) / "train.pt"), valid_data=str(Path(data) / "valid.pt"),
        seed=int(seed), output_dir=str(Path(out) / f"member{seed}"), **kw,
    )


def train_members(data: str, out: str, members: int = 4, seeds: Optional[Sequence[int]] = None,
                  init: Optional[str] = None, **overrides: Any) -> list[Path]:
    """Train (or resume) members ``0..members-1`` (or ``seeds``); each writes its config
    next to its run, so ``get-md train runs/affinity/memberK/config.json`` repeats it.
    ``init`` (fine-tuning): a runs folder whose ``memberK/best.pt`` starts member K, or a
    score-model file / shipped name whose member K does (:func:`init_from_model_file`)."""
    seeds = range(members) if seeds is None else seeds
    if init is not None and not Path(init).is_dir():
        init = str(init_from_model_file(init, Path(out) / "init"))
    configs = []
    for seed in seeds:
        start = {} if init is None else {"init_from": str(Path(init) / f"member{seed}" / "best.pt"),
                                         "fit_energy_reference": False}
        configs.append(member_config(data, out, seed, **{**overrides, **start}))
    return train_configs(configs)


#: Written beside the start weights by :func:`init_from_model_file`; read by :func:`ship`.
INIT_SOURCE = "source.json"


def init_from_model_file(model: str, out: str | Path) -> Path:
    """A score-model file's members as a runs folder to fine-tune from: ``out/memberK/best.pt``
    (the weights and architecture of member K) and ``out/source.json`` (the file, its
    ``weights_sha256`` and training data), which :func:`ship` records in the new file's
    metadata as ``continued_from``. Returns ``out``.

    Example:
        >>> init_from_model_file("get-affinity", "runs/more/init")  # doctest: +SKIP
        PosixPath('runs/more/init')
    """
    from get_md import export
    from get_md.errors import ModelFileError
    from get_md.runtime import resolve_model_path

    try:
        path = resolve_model_path(model, task="score")
        ensemble, meta = export.rebuild(path)
    except ModelFileError as e:
        raise ConfigError(f"--init {model}: neither a runs folder (memberK/best.pt) nor a readable "
                          f"score-model file ({e})") from e
    members = list(getattr(ensemble, "members", []))
    if not members:
        raise ConfigError(f"{path}: not a score ensemble (no members to start from)")
    out = Path(out)
    # written whole, then renamed: the recipe runs one process per member, each writing these
    for k, member in enumerate(members):
        dest = out / f"member{k}" / "best.pt"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".best.pt.{os.getpid()}"
        torch.save({"family": meta.get("family", "get"), "model_config": dict(member.config),
                    "model": member.state_dict()}, tmp)
        os.replace(tmp, dest)
    dataset = (meta.get("training") or {}).get("dataset") or {}
    source = {"model": str(model), "path": str(path), "weights_sha256": meta.get("weights_sha256"),
              "dataset": {"n": dataset.get("n"), "targets": dataset.get("targets"),
                          "sources": dataset.get("sources")}}
    tmp = out / f".{INIT_SOURCE}.{os.getpid()}"
    tmp.write_text(json.dumps(source, indent=1) + "\n")
    os.replace(tmp, out / INIT_SOURCE)
    return out


def init_member_config(init: str, seed: int) -> dict:
    """The architecture member ``seed`` of a runs folder ``init`` was trained with
    (``memberK/best.pt``'s ``model_config``, the recipe's settings only), so that ``train
    --init`` continues the members as they are; :data:`DEFAULT_MODEL` for a checkpoint
    that records none. ``TrainError`` naming the file if it is not a checkpoint.

    Example:
        >>> init_member_config("runs/affinity", 0)["k_neighbors"]  # doctest: +SKIP
        6
    """
    from get_md.train.checkpoint import read_init

    config = read_init(str(Path(init) / f"member{seed}" / "best.pt")).get("model_config") or {}
    return dict(DEFAULT_MODEL, **{k: v for k, v in config.items() if k in DEFAULT_MODEL})


def train_configs(configs: Sequence[TrainConfig]) -> list[Path]:
    """Train (or resume) each config in turn, writing its ``config.json`` into its run first;
    the ``best.pt`` paths."""
    from get_md.train.loop import train

    paths = []
    for cfg in configs:
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
        save_config(cfg, Path(cfg.output_dir) / "config.json")
        result = train(cfg, command=f"get-md train {Path(cfg.output_dir) / 'config.json'}")
        paths.append(result.output_dir / "best.pt")
    return paths


# ----------------------------------------------------------------------------- evaluation
def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def ranking_metrics(y_true: Sequence[float], y_pred: Sequence[float], groups: Sequence[str]) -> dict:
    """Per-group Pearson and Spearman of ``y_pred`` against ``y_true`` (higher = better
    binder for both), their means over groups, and overall RMSE / Pearson.

    Example:
        >>> ranking_metrics([5, 6, 7, 8], [5.5, 5.9, 7.2, 7.1], ["A"] * 4)["per_group"]["A"]["n"]
        4
    """
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    g = np.asarray(groups)
    per = {}
    for name in sorted(set(g.tolist())):
        m = g == name
        per[name] = {"n": int(m.sum()), "pearson": _corr(t[m], p[m]),
                     "spearman": _corr(rankdata(t[m]), rankdata(p[m]))}
    sp = [v["spearman"] for v in per.values() if np.isfinite(v["spearman"])]
    pe = [v["pearson"] for v in per.values() if np.isfinite(v["pearson"])]
    return {
        "per_group": per,
        "mean_spearman": float(np.mean(sp)) if sp else float("nan"),
        "mean_pearson": float(np.mean(pe)) if pe else float("nan"),
        "rmse": float(np.sqrt(np.mean((t - p) ** 2))) if len(t) else float("nan"),
        "pearson_all": _corr(t, p),
        "n": int(len(t)),
    }


def score_labels(dataset) -> np.ndarray:
    """The ``score`` label (pK) of every sample of ``dataset``, in order."""
    return np.array([float(s.targets["score"][0]) for s in dataset])


@torch.no_grad()
def predict(model: torch.nn.Module, dataset, max_blocks: int = 400) -> dict[str, np.ndarray]:
    """Model outputs (``score``; ``score_std`` and ``pose_score`` for ensembles that give
    them) for every sample, in order."""
    from get_md.train.batching import BlockBatchSampler, collate

    model.eval()
    sampler = BlockBatchSampler(dataset.block_counts(), max_blocks, shuffle=False)
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    out: dict[str, list] = {}
    index: list[int] = []
    for idx in sampler:
        graph, _ = collate([dataset[i] for i in idx])
        res = model(*graph.to(dtype=dtype).inputs())
        for key in ("score", "score_std", "pose_score"):
            if key in res:
                out.setdefault(key, []).extend(res[key].double().tolist())
        index.extend(idx)
    order = np.argsort(index)
    return {k: np.asarray(v)[order] for k, v in out.items()}


def evaluate(model: torch.nn.Module, dataset) -> dict:
    """Held-out metrics of a score model on a dataset built by :func:`build_splits`,
    next to the ligand heavy-atom count (a score that cannot beat it is not scoring binding),
    and ``versus_heavy_atoms`` per target and per series: the model's mean Spearman minus
    the count's with its 95 % paired bootstrap interval (:mod:`get_md.train.ranking`).

    Example:
        >>> evaluate(ensemble, MolecularDataset.load("data/affinity/test.pt"))  # doctest: +SKIP
    """
    from get_md.datasets.affinity import sample_series, sample_target
    from get_md.train.ranking import bootstrap_ranking

    pred = predict(model, dataset)
    y = score_labels(dataset)
    groups = [sample_target(s) for s in dataset]
    heavy = np.array([ligand_heavy_atoms(s.graph) for s in dataset], dtype=float)
    res = {"model": ranking_metrics(y, pred["score"], groups),
           "heavy_atoms": ranking_metrics(y, heavy, groups)}
    # one target can hold several series (assays, papers); a congeneric series is the unit
    # a user ranks, so the same figures per series of at least MIN_SERIES_LIGANDS ligands
    series = np.array([sample_series(s) for s in dataset])
    names, counts = np.unique(series, return_counts=True)
    big = np.isin(series, names[counts >= MIN_SERIES_LIGANDS])
    res["by_series"] = {"model": ranking_metrics(y[big], pred["score"][big], series[big]),
                        "heavy_atoms": ranking_metrics(y[big], heavy[big], series[big])}
    # how sure "beats the heavy-atom count" is: a paired bootstrap over the ligands
    for where, keep, by in ((res, slice(None), np.asarray(groups)), (res["by_series"], big, series)):
        if len(by[keep]):
            where["versus_heavy_atoms"] = bootstrap_ranking(
                y[keep], {"model": pred["score"][keep], "heavy_atoms": heavy[keep]}, by[keep],
                baseline="heavy_atoms", n_boot=1000)["versus"]["model"]
    if "score_std" in pred:
        err = np.abs(pred["score"] - y)
        res["uncertainty"] = {"mean_score_std": float(pred["score_std"].mean()),
                              "spearman_std_vs_abs_error": _corr(rankdata(pred["score_std"]), rankdata(err))}
    return res


def ligand_heavy_atoms(graph) -> int:
    """Heavy atoms of the ligand (every segment but the receptor's, 0) of a complex graph."""
    lig = graph.atom_segment_ids != 0
    return int(((graph.atomic_numbers != 1) & lig).sum())


# ----------------------------------------------------------------------------- distillation
def relabel(teacher: str, data: str, out: str) -> dict:
    """Knowledge distillation data: ``data`` with each training ``score`` label replaced by
    the score-model file ``teacher``'s prediction (pK), written to ``out``.

    ``valid.pt`` and ``test.pt`` are copied unchanged, so early stopping and every
    reported figure stay on experiment (a teacher whose file says it trained on one of
    their targets is refused: :class:`~get_md.errors.ConfigError`); ``report.json``
    records the teacher (path and ``weights_sha256``) under ``train_labels``, which
    :func:`ship` writes into the model file's dataset metadata. Members trained on ``out``
    learn the teacher's function with the architecture they are given (e.g. one layer
    instead of two, for speed).

    Example:
        >>> relabel("get-affinity", "data/affinity", "data/affinity_distill")  # doctest: +SKIP
    """
    import shutil

    from get_md import export
    from get_md.runtime import resolve_model_path
    from get_md.train.data import MolecularDataset

    src, dst = Path(data), Path(out)
    path = resolve_model_path(teacher, task="score")
    model, meta = export.rebuild(path)
    report = json.loads((src / "report.json").read_text())
    taught = set((((meta.get("training") or {}).get("dataset") or {}).get("targets") or {}).get("train", []))
    kept = set((report.get("targets") or {}).get("valid", [])) | set((report.get("targets") or {}).get("test", []))
    if taught & kept:
        raise ConfigError(f"{path}: the teacher was trained on {sorted(taught & kept)}, validation or held-out "
                          f"targets of {src}; its scores would carry them into training")
    train = MolecularDataset.load(src / "train.pt")
    pred = predict(model, train)["score"]
    dst.mkdir(parents=True, exist_ok=True)
    y = score_labels(train)
    for sample, p in zip(train.samples, pred, strict=True):
        label = sample.targets["score"]
        sample.targets["score"] = torch.full_like(label, float(p))
    train.save(dst / "train.pt")
    for name in ("valid.pt", "test.pt"):
        shutil.copyfile(src / name, dst / name)
    report["train_labels"] = {
        "labels": "teacher", "teacher": str(path), "teacher_weights_sha256": meta.get("weights_sha256"),
        "teacher_train_rmse": float(np.sqrt(np.mean((pred - y) ** 2))),
        "teacher_train_pearson": _corr(y, pred),
    }
    (dst / "report.json").write_text(json.dumps(report, indent=1))
    return report["train_labels"]


# ----------------------------------------------------------------------------- ensemble
def assemble(runs: str, members: Optional[int] = None):
    """A :class:`~get_md.models.ensemble.ScoreEnsemble` of the ``best.pt`` of each
    ``runs/member*`` (or the first ``members`` of them)."""
    from get_md.models.ensemble import ScoreEnsemble

    return ScoreEnsemble(load_members(runs, members))


def load_members(runs: str, members: Optional[int] = None) -> list[torch.nn.Module]:
    """The ``best.pt`` models of ``runs/member*`` (or the first ``members``), in member order."""
    from get_md.models import build_model

    dirs = sorted(Path(runs).glob("member*"), key=lambda p: int(p.name[6:] or 0))
    if members is not None:
        dirs = dirs[:members]
    from get_md.train.checkpoint import load_torch_file

    models = []
    for d in dirs:
        best = load_torch_file(d / "best.pt", "checkpoint", hint="train this member again")
        m = build_model(best["family"], **best["model_config"])
        m.load_state_dict(best["model"])
        models.append(m.eval())
    if not models:
        from get_md.errors import TrainError

        raise TrainError(f"{runs}: no member*/best.pt (the runs folder of the train step)")
    return models


def ship(runs: str, data: str, out: str, register: Optional[str] = None,
         members: Optional[int] = None, command: Optional[str] = None) -> dict:
    """Assemble, evaluate on ``data/valid.pt`` (the targets that stopped training: the
    figures to choose between recipes by) and ``data/test.pt`` (held out: the figures to
    report), export; optionally register in the zoo as the default score model."""
    from get_md import export
    from get_md.train.data import MolecularDataset

    model = assemble(runs, members)
    test = MolecularDataset.load(Path(data) / "test.pt")
    metrics = evaluate(model, test)
    validation = evaluate(model, MolecularDataset.load(Path(data) / "valid.pt"))
    report = json.loads((Path(data) / "report.json").read_text())
    continued = _continued_from(runs, report)
    elements = sorted({int(z) for s in MolecularDataset.load(Path(data) / "train.pt")
                       for z in s.graph.atomic_numbers.tolist()})
    meta = {
        "description": (f"GET affinity ensemble ({model.n_members} members, score mode, heavy atoms): "
                        "pK of a protein-ligand complex, trained on congeneric series with experimental "
                        "binding free energies; score_std is the members' spread"),
        "elements": elements,
        "blocks": "residues",
        "pocket_radius": float(report.get("pocket_radius", POCKET_RADIUS)),
        "builder": "get_md.models.ensemble:build_ensemble",
        "outputs": ["score", "score_std", "member_scores", "block_scores"],
        "dataset": {"n": report["n"], "targets": report["targets"],
                    "excluded_series": report["excluded_series"],
                    "sources": sorted({s["source"] for s in report["series"]}),
                    **({"train_labels": report["train_labels"]} if "train_labels" in report else {}),
                    **({"continued_from": continued} if continued else {})},
        "metrics": {"held_out": metrics, "validation": validation},
        "command": command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    written = export.save(model, out, meta)
    if register:
        from get_md import zoo

        zoo.register(register, out, default="score")
    return {"path": str(out), "metrics": metrics, "validation": validation,
            "weights_sha256": written["weights_sha256"]}


def _continued_from(runs: str, report: dict) -> Optional[dict]:
    """``runs/init/source.json`` (members fine-tuned from a model file), refused when that
    file trained on a validation or held-out target of this data."""
    path = Path(runs) / "init" / INIT_SOURCE
    if not path.exists():
        return None
    source = json.loads(path.read_text())
    taught = set(((source.get("dataset") or {}).get("targets") or {}).get("train") or [])
    kept = set((report.get("targets") or {}).get("valid", [])) | set((report.get("targets") or {}).get("test", []))
    if taught & kept:
        raise ConfigError(f"{source.get('path')}: the members started from a file trained on "
                          f"{sorted(taught & kept)}, validation or held-out targets here")
    return source


# ----------------------------------------------------------------------------- CLI
def parse_settings(items: Sequence[str]) -> dict[str, Any]:
    """``["k_neighbors=6", "dropout=0.2"]`` -> ``{"k_neighbors": 6, "dropout": 0.2}`` (values
    read as JSON, else kept as text); keys must be settings of :data:`DEFAULT_MODEL`.

    Example:
        >>> parse_settings(["k_neighbors=6", "mode=score"])
        {'k_neighbors': 6, 'mode': 'score'}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in DEFAULT_MODEL:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with KEY one of {sorted(DEFAULT_MODEL)}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m get_md.train.affinity", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    d = sub.add_parser("data", help="build pK-labelled datasets split by target")
    d.add_argument("--schrodinger", help="structure_inputs folder of the Schrödinger FEP+ benchmark")
    d.add_argument("--posed", nargs="*", default=[], help="folders of get_md.datasets.reference_poses")
    d.add_argument("--plb", help="data folder of openforcefield/protein-ligand-benchmark (another preparation)")
    d.add_argument("--folders", help="folder of MCompChem/fep-benchmark-style series folders (another preparation)")
    d.add_argument("--openfe", help="with --schrodinger: prepared_structures folder of "
                                    "OpenFreeEnergy/IndustryBenchmarks2024 (OpenFE's re-preparation)")
    d.add_argument("--out", required=True)
    d.add_argument("--pocket-radius", type=float, default=POCKET_RADIUS)
    d.add_argument("--ligand-chemistry", action="store_true",
                   help="ligand atoms carry chemistry codes, for members trained with "
                        "--set ligand_chemistry=true")
    t = sub.add_parser("train", help="train (or resume) the ensemble members")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--members", type=int, default=4)
    t.add_argument("--seeds", type=int, nargs="*", help="train only these members (e.g. one per process)")
    t.add_argument("--epochs", type=int, default=DEFAULT_TRAIN["max_epochs"])
    t.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", dest="model_set",
                   help="change the members' architecture (e.g. k_neighbors=6 sparse_k=2; values as JSON)")
    t.add_argument("--series-weight", type=float, default=0.0,
                   help="weight of the within-series loss (score_series: errors minus their series "
                        "mean, batches of one series each); 0: pointwise MSE only")
    t.add_argument("--init", metavar="RUNS|MODEL",
                   help="start member K from RUNS/memberK/best.pt, or from member K of a score-model "
                        "file or shipped name (e.g. get-affinity); the start's architecture is kept "
                        "(--set changes it, with a warning in the log)")
    t.add_argument("--lr", type=float, default=DEFAULT_TRAIN["lr"])
    t.add_argument("--select", choices=["loss", "score_series"], default="loss",
                   help="what picks each member's best epoch and stops it early: the validation loss "
                        "(default), or the validation score errors minus their series means "
                        "(score_series: blind to per-target offsets; training unchanged)")
    t.add_argument("--threads", type=int,
                   help="torch CPU threads per process; give 1 when members train side by side "
                        "(two processes at torch's default of one thread per core ran 4.7x slower)")
    t.add_argument("--ema-decay", type=float, metavar="DECAY",
                   help="validate, select and export the moving average of the weights "
                        "(e.g. 0.999, ~1,000 steps; see get_md.train.ema); default: the weights")
    e = sub.add_parser("ensemble", help="assemble, evaluate on the held-out targets, export")
    e.add_argument("--runs", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--members", type=int)
    e.add_argument("--register", metavar="NAME", help="add to the zoo as the default score model")
    f = sub.add_parser("folds", help="cross-validation by target: the training targets of a data folder "
                                     "split into K data folders (get_md.train.affinity_folds)")
    f.add_argument("--data", required=True)
    f.add_argument("--out", required=True)
    f.add_argument("--folds", type=int, default=5)
    f.add_argument("--seed", type=int, default=0, help="decides among targets of equal size")
    lb = sub.add_parser("relabel", help="distillation data: training labels replaced by a score-model "
                                         "file's predictions (valid and test kept)")
    lb.add_argument("--teacher", required=True, help="score-model file or shipped name (e.g. get-affinity)")
    lb.add_argument("--data", required=True)
    lb.add_argument("--out", required=True)
    r = sub.add_parser("readout", help="refit the heads of a score-model file on frozen features "
                                       "(get_md.train.readout), choose the step on valid.pt")
    r.add_argument("--model", required=True, help="score-model file or shipped name (e.g. get-affinity)")
    r.add_argument("--data", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--steps", type=int, default=3000, help="full-batch Adam steps")
    r.add_argument("--lr", type=float, default=1e-3)
    r.add_argument("--series-weight", type=float, default=1.0,
                   help="weight of the within-series error next to the pointwise MSE")
    r.add_argument("--weight-decay", type=float, default=0.0)
    r.add_argument("--eval-every", type=int, default=50, help="steps between validation checks")
    argv_ = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv_)
    if args.step == "data":
        summary = build_splits(args.schrodinger, args.posed, args.out, args.pocket_radius,
                               plb=args.plb, folders=args.folders, openfe=args.openfe,
                               ligand_chemistry=args.ligand_chemistry)
        print(json.dumps({"n": summary["n"], "targets": summary["targets"]}, indent=1))
    elif args.step == "train":
        if args.members < 1 or any(seed < 0 for seed in args.seeds or []):
            p.error(f"train: --members must be >= 1 and --seeds >= 0, got {args.members} and "
                    f"{args.seeds}")  # --members 0 had trained nothing and exited 0
        set_threads(args.threads)
        init = args.init
        if init is not None and not Path(init).is_dir():
            init = str(init_from_model_file(init, Path(args.out) / "init"))
        first = args.seeds[0] if args.seeds else 0
        base = DEFAULT_MODEL if init is None else init_member_config(init, first)
        model = dict(base, **parse_settings(args.model_set))
        extra = {"loss_weights": {"score": 1.0, "score_series": args.series_weight}} if args.series_weight else {}
        train_members(args.data, args.out, args.members, args.seeds, init=init, max_epochs=args.epochs,
                      model=model, lr=args.lr, ema_decay=args.ema_decay,
                      select_metric=None if args.select == "loss" else args.select, **extra)
    elif args.step == "folds":
        from get_md.train.affinity_folds import make_folds

        summary = make_folds(args.data, args.out, args.folds, args.seed)
        print(json.dumps(summary["folds"], indent=1))
    elif args.step == "relabel":
        print(json.dumps(relabel(args.teacher, args.data, args.out), indent=1))
    elif args.step == "readout":
        from get_md.train.readout import refit

        res = refit(args.model, args.data, args.out, steps=args.steps, lr=args.lr,
                    series_weight=args.series_weight, weight_decay=args.weight_decay,
                    eval_every=args.eval_every, command=shlex.join(["python -m get_md.train.affinity", *argv_]))
        print(json.dumps(dict(brief(res), best_step=res["best_step"],
                              step0_valid_series_spearman=res["curve"][0]["valid_series_spearman"]), indent=1))
    else:
        print(json.dumps(brief(ship(args.runs, args.data, args.out, args.register, args.members)), indent=1))
    return 0


def brief(result: dict) -> dict:
    """Mean Spearman per target and per series, model and heavy-atom count, on the
    validation and held-out splits of a :func:`ship` (or readout refit) result, with the
    95 % interval of the model's difference from the count (ligands resampled, paired)."""
    out = {"path": result["path"]}
    for split, m in (("validation", result["validation"]), ("held_out", result["metrics"])):
        out[split] = {f"{who}_mean_spearman_{level}": figures[who]["mean_spearman"]
                      for level, figures in (("per_target", m), ("per_series", m["by_series"]))
                      for who in ("model", "heavy_atoms")}
        for level, figures in (("per_target", m), ("per_series", m["by_series"])):
            if "versus_heavy_atoms" in figures:   # files before 2026-12-08 do not have it
                v = figures["versus_heavy_atoms"]
                out[split][f"model_minus_heavy_atoms_{level}_95ci"] = [round(v["ci"][0], 3), round(v["ci"][1], 3)]
    return out


if __name__ == "__main__":
    from get_md.cli import run_module

    sys.exit(run_module(main, "python -m get_md.train.affinity"))
