"""The resumable store (one ``.npz`` per labelled molecule, ``skipped.jsonl``), the
assembled data set with its by-molecule split, and its summary."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from get_md.atomic import atomic_output
from get_md.datasets.xtb.label import label_molecule
from get_md.datasets.xtb.spec import SPLITS, MolSpec, SkipMolecule
from get_md.errors import DatasetError

log = logging.getLogger("get_md.datasets.xtb")


def safe_name(key: str) -> str:
    """The store file name of a molecule key (readable, plus a hash of the key)."""
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)
    return f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:8]}.npz"


def atomic_savez(path: Path, **arrays: Any) -> None:
    """``np.savez_compressed`` to ``path`` through a temporary file and a rename."""
    with atomic_output(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def _skipped(store: Path) -> Dict[str, str]:
    out: Dict[str, str] = {}
    p = store / "skipped.jsonl"
    if p.exists():
        for line in p.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a torn last line from an interruption
                continue
            out[rec["key"]] = rec["reason"]
    return out


def done_keys(store: str | os.PathLike) -> set:
    """Keys of the molecules labelled in ``store``."""
    store = Path(store)
    keys = set()
    for p in store.glob("*.npz"):
        if p.name.startswith(".tmp-"):
            continue
        with np.load(p) as z:
            keys.add(str(z["key"]))
    return keys


def generate(specs: Sequence[MolSpec], store: str | os.PathLike, seed: int,
             retry_skipped: bool = False, time_limit_s: Optional[float] = None) -> Dict[str, int]:
    """Label ``specs`` into ``store`` (one ``.npz`` per molecule); molecules already
    labelled, or skipped before (unless ``retry_skipped``), are not recomputed.
    Returns counts: done (already there), new, skipped, geometries (new)."""
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    skipped = {} if retry_skipped else _skipped(store)
    have = {p.name for p in store.glob("*.npz")}
    todo = [s for s in specs if safe_name(s.key) not in have and s.key not in skipped]
    counts = {"done": len(specs) - len(todo), "new": 0, "skipped": 0, "geometries": 0}
    log.info("%d molecules: %d already labelled or skipped, %d to do", len(specs),
             counts["done"], len(todo))
    t0 = time.time()
    for i, spec in enumerate(todo):
        if time_limit_s is not None and time.time() - t0 > time_limit_s:
            log.warning("time limit reached after %d molecules; rerun to resume", i)
            break
        t = time.time()
        try:
            rec = label_molecule(spec, seed)
        except SkipMolecule as e:
            log.warning("[%d/%d] %s skipped: %s", i + 1, len(todo), spec.key, e)
            with open(store / "skipped.jsonl", "a") as fh:
                fh.write(json.dumps({"key": spec.key, "reason": str(e)}) + "\n")
            counts["skipped"] += 1
            continue
        rec["seconds"] = time.time() - t
        atomic_savez(store / safe_name(spec.key), **rec)
        counts["new"] += 1
        counts["geometries"] += len(rec["energy"])
        log.info("[%d/%d] %s: %d atoms, %d frames, q=%+d, %.2f s (elapsed %.0f s)", i + 1,
                 len(todo), spec.key, len(rec["numbers"]), len(rec["energy"]), rec["charge"],
                 rec["seconds"], time.time() - t0)
    return counts


def split_of(group: str, seed: int, fractions: Tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """Deterministic split of a molecule identity: a hash of (seed, group) in [0, 1)."""
    h = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2.0**64
    if u < fractions[0]:
        return "train"
    if u < fractions[0] + fractions[1]:
        return "valid"
    return "test"


def assemble(store: str | os.PathLike, out: str | os.PathLike, seed: int,
             keys: Optional[Sequence[str]] = None,
             fractions: Tuple[float, float, float] = (0.8, 0.1, 0.1)) -> Dict[str, np.ndarray]:
    """Concatenate the store into one compressed ``.npz`` (written atomically).

    Arrays: ``positions`` [sum N, 3] Å (float32), ``atomic_numbers`` [sum N],
    ``n_atoms`` [M], ``energy`` [M] eV (float64), ``forces`` [sum N, 3] eV/Å
    (float32), ``charge`` [M], ``source`` [M] ("<source>:<id>:conf<c>:frame<k>"),
    ``split`` [M] (train / valid / test by molecule identity), ``molecule`` [M]
    (that identity), ``temperature`` [M] (K of the force-field MD, 0 for
    pocket clusters taken from the trajectory as cut), ``meta`` (JSON string).
    Molecules are ordered by key (or by ``keys``).
    """
    store = Path(store)
    recs = []
    for p in sorted(store.glob("*.npz")):
        if p.name.startswith(".tmp-"):
            continue
        with np.load(p) as z:
            recs.append({k: z[k] for k in z.files})
    if keys is not None:
        order = {k: i for i, k in enumerate(keys)}
        recs = [r for r in recs if str(r["key"]) in order]
        recs.sort(key=lambda r: order[str(r["key"])])
    else:
        recs.sort(key=lambda r: str(r["key"]))
    if not recs:
        raise DatasetError(f"{store}: no labelled molecules to assemble")
    pos, zs, nat, en, frc, chg, src, spl, mol, temp = ([] for _ in range(10))
    for r in recs:
        nf, n = r["positions"].shape[:2]
        s = split_of(str(r["group"]), seed, fractions)
        for k in range(nf):
            pos.append(r["positions"][k])
            frc.append(r["forces"][k])
            zs.append(r["numbers"])
        nat += [n] * nf
        en.append(r["energy"])
        chg += [int(r["charge"])] * nf
        src += [str(x) for x in r["frame_ids"]]
        spl += [s] * nf
        mol += [str(r["group"])] * nf
        temp.append(r["temperature"])
    try:
        from importlib.metadata import version

        tbl = version("tblite")
    except Exception:  # noqa: BLE001
        tbl = "unknown"
    data = {
        "positions": np.concatenate(pos).astype(np.float32),
        "atomic_numbers": np.concatenate(zs).astype(np.int8),
        "n_atoms": np.array(nat, dtype=np.int32),
        "energy": np.concatenate(en).astype(np.float64),
        "forces": np.concatenate(frc).astype(np.float32),
        "charge": np.array(chg, dtype=np.int8),
        "source": np.array(src),
        "split": np.array(spl),
        "molecule": np.array(mol),
        "temperature": np.concatenate(temp).astype(np.float32),
        "meta": np.array(json.dumps({
            "method": "GFN2-xTB", "code": f"tblite {tbl}", "units": {"energy": "eV",
            "forces": "eV/Angstrom", "positions": "Angstrom", "charge": "e"},
            "seed": seed, "split_fractions": list(fractions),
            "generator": "get_md.datasets.xtb"})),
    }
    out = Path(out)
    atomic_savez(out, **data)
    return data


def excluded_mask(source: np.ndarray) -> np.ndarray:
    """Which records come from a source named for a target held out of all training
    (:func:`get_md.datasets.targets.excluded_records`), as a bool array.

    Example:
        >>> excluded_mask(np.array(["qm9:1:conf0:frame0", "cdk2:4:conf0:frame1"])).tolist()
        [False, True]
    """
    from get_md.datasets.targets import excluded_records

    return np.array(excluded_records(source), dtype=bool)


def drop_excluded(src: str | os.PathLike, out: str | os.PathLike) -> Dict[str, Any]:
    """Copy an assembled data set without the records of held-out targets.

    Every array indexed by structure or by atom is filtered; ``meta`` gains
    ``"dropped"`` (source prefix -> number of structures removed) and ``"derived_from"``.
    The split of the remaining structures is unchanged (it is by molecule). Returns the
    ``dropped`` counts. Written atomically.
    """
    with np.load(src, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    drop = excluded_mask(data["source"])
    n_atoms = data["n_atoms"].astype(np.int64)
    atom_keep = np.repeat(~drop, n_atoms)
    per_atom = {"positions", "atomic_numbers", "forces"}
    out_data: Dict[str, np.ndarray] = {}
    for k, v in data.items():
        if k == "meta":
            continue
        out_data[k] = v[atom_keep] if k in per_atom else v[~drop]
    prefixes = [str(s).split(":")[0] for s in data["source"][drop]]
    dropped = {p: prefixes.count(p) for p in sorted(set(prefixes))}
    meta = json.loads(str(data["meta"])) if "meta" in data else {}
    meta["dropped"] = dropped
    meta["derived_from"] = Path(src).name
    out_data["meta"] = np.array(json.dumps(meta))
    atomic_savez(Path(out), **out_data)
    return dropped


def summary(data: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """Counts and statistics of an assembled dataset (for the README / CLI)."""
    from ase.data import chemical_symbols

    nat = data["n_atoms"]
    zs, cnt = np.unique(data["atomic_numbers"], return_counts=True)
    split = data["split"]
    out: Dict[str, Any] = {
        "geometries": int(len(nat)),
        "molecules": int(len(np.unique(data["molecule"]))),
        "atoms_total": int(nat.sum()),
        "atoms_min": int(nat.min()), "atoms_median": float(np.median(nat)),
        "atoms_max": int(nat.max()),
        "geometries_60_150_atoms": int(((nat >= 60) & (nat <= 150)).sum()),
        "elements": {chemical_symbols[int(z)]: int(c) for z, c in zip(zs, cnt, strict=True)},
        "charges": {int(q): int(c) for q, c in zip(*np.unique(data["charge"], return_counts=True), strict=True)},
    }
    for s in SPLITS:
        m = split == s
        out[f"{s}_geometries"] = int(m.sum())
        out[f"{s}_molecules"] = int(len(np.unique(data["molecule"][m])))
    src = np.array([s.split(":")[0] for s in data["source"]])
    out["by_source"] = {k: int(v) for k, v in zip(*np.unique(src, return_counts=True), strict=True)}
    e_per_atom = data["energy"] / nat
    f = data["forces"]
    fn = np.linalg.norm(f, axis=1)
    out["energy_eV"] = {"min": float(data["energy"].min()), "max": float(data["energy"].max())}
    out["energy_per_atom_eV"] = {"mean": float(e_per_atom.mean()), "std": float(e_per_atom.std()),
                                 "min": float(e_per_atom.min()), "max": float(e_per_atom.max())}
    out["force_component_eV_A"] = {"mean": float(f.mean()), "std": float(f.std()),
                                   "rms": float(np.sqrt((f ** 2).mean())),
                                   "max_abs": float(np.abs(f).max())}
    out["force_norm_eV_A"] = {"mean": float(fn.mean()), "median": float(np.median(fn)),
                              "p99": float(np.percentile(fn, 99)), "max": float(fn.max())}
    return out
