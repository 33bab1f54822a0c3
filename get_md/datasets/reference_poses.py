"""Pocket poses for affinity series that give one reference pose and SMILES for the rest.

The Uni-FEP benchmark (``dptech-corp/Uni-FEP-Benchmarks``, Apache-2.0) ships each
congeneric series as a folder ``uni_fep_benchmarks/<Source>|<Target>|<Assay>/`` with a
protein structure (``protein.pdb``), one ligand posed in its pocket (``ref_ligand.sdf``)
and ``result_dG.csv`` listing every ligand of the series by SMILES with its
experimental binding free energy. This module places every ligand of such a series in
the pocket by *MCS-constrained embedding on the reference*:

1. the maximum common substructure (heavy atoms, elements compared, complete rings
   only) between the ligand and the reference is found with :mod:`rdkit.Chem.rdFMCS`;
   when it covers less than half the ligand, the search is repeated letting any heavy
   atom match any other (an aza / CH swap in a ring otherwise removes the whole ring),
   which the ``mcs_compare`` tag records (``elements`` or ``any_heavy_atom``);
2. the ligand (with hydrogens) is embedded several times with distance geometry, the
   MCS atoms held to the reference's internal geometry (a coordinate map), and each
   conformer is aligned on the MCS atoms;
3. each conformer is minimised with MMFF94 (UFF when MMFF lacks parameters), the MCS
   atoms moved onto the reference coordinates and held there by stiff position
   restraints, and conformers whose stereocentres no longer match the SMILES are
   discarded;
4. the conformer with the lowest protein clash score
   ``sum over ligand/protein heavy-atom pairs of max(0, 3.0 Å - d)^2`` wins, the protein
   heavy atoms being those within 12 Å of the reference (waters left out); conformers
   with no protein heavy atom nearer than 2.0 Å rank before any that have one, and when
   none of the first conformers (6 by default) is clear of the protein, 24 more are tried.

A ligand identical to the reference (same isomeric heavy-atom SMILES) keeps the
reference pose as it is. A ligand is dropped, with its reason logged, when the MCS
covers less than half its heavy atoms, when no conformer embeds (or keeps its
stereochemistry), or when its closest protein heavy atom lies nearer than 2.0 Å.

Series of the targets reserved for independent evaluation
(:data:`get_md.datasets.targets.EXCLUDED_TARGETS`) are recognised by folder name and
never read; the cyclic-peptide series are skipped too.

Output, under an output root (resumable: a series whose folder exists is not rebuilt;
each series folder is written under ``<root>/.tmp`` and renamed into place)::

    <root>/<safe series name>/protein.pdb   copy of the source file
    <root>/<safe series name>/ligands.sdf   posed ligands with hydrogens, tagged
                                            (r_exp_dg, smiles, target, series, source,
                                            pose_method, mcs_size, mcs_fraction,
                                            mcs_compare, mcs_rmsd, clash_score,
                                            min_protein_distance)
    <root>/<safe series name>/dropped.csv   ligands left out, with the reason
    <root>/<safe series name>/summary.json  counts and timing of the series
    <root>/manifest.csv                     one row per built series
    <root>/skipped.csv                      series not built (excluded / failed), why

:func:`get_md.datasets.affinity.posed_series` reads the result.

Example:
    >>> from get_md.datasets.reference_poses import build_all
    >>> repo = "/work/.mirror/dptech-corp+Uni-FEP-Benchmarks/repo"
    >>> manifest = build_all(repo, "/work/data/unifep", limit=2)  # doctest: +SKIP
    >>> list(manifest.columns[:6])                                # doctest: +SKIP
    ['folder', 'target', 'n_ligands', 'n_posed', 'n_dropped', 'seconds']

Command line::

    OMP_NUM_THREADS=1 python -m get_md.datasets.reference_poses \\
        --repo /work/.mirror/dptech-corp+Uni-FEP-Benchmarks/repo --out /work/data/unifep

The pieces live in :mod:`get_md.datasets.unifep_sources` (the benchmark repository and
its series), :mod:`get_md.datasets.pocket_clash` (pocket atoms, clash metrics) and
:mod:`get_md.datasets.ligand_posing` (steps 1-4 for one ligand); every name is
re-exported here.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from get_md.datasets.ligand_posing import (  # noqa: F401  (re-exported: the old import path)
    EMBED_TIMEOUT,
    MCS_TIMEOUT,
    MIN_DISTANCE,
    MIN_MCS_FRACTION,
    heavy_xyz,
    isomeric_key,
    pose_ligand,
    read_reference,
)
from get_md.datasets.pocket_clash import (  # noqa: F401
    CLASH_DISTANCE,
    POCKET_CUTOFF,
    clash_metrics,
    pocket_near_reference,
    read_pocket_atoms,
)
from get_md.datasets.targets import canonical_target
from get_md.datasets.unifep_sources import (  # noqa: F401
    SERIES_DIR,
    SOURCE,
    PathLike,
    list_series,
    read_source,
    safe_series_name,
    series_target,
    skip_reason,
    target_field,
)
from get_md.errors import DatasetError

logger = logging.getLogger(__name__)

#: Default output root.
DEFAULT_OUT = "/work/data/unifep"

_MANIFEST_COLUMNS = ["folder", "target", "n_ligands", "n_posed", "n_dropped", "seconds"]


# --------------------------------------------------------------------------- series


def _fmt(x) -> str:
    if isinstance(x, float):
        return "inf" if math.isinf(x) else f"{x:.4f}"
    return str(x)


def build_series(repo: PathLike, folder: str, out_dir: PathLike, seed: int = 0,
                 n_confs: int = 6, any_atom_fallback: bool = True) -> dict:
    """Pose every ligand of one series and write its output folder.

    The folder is written under ``<parent of out_dir>/.tmp`` and renamed to ``out_dir``
    when complete.

    Args:
        repo: benchmark repository (bare git repository or checked-out folder).
        folder: series folder name, e.g. ``"ChEMBL|ADK|CHEMBL642224"``.
        out_dir: the series' output folder (must not exist).
        seed: random seed of the embeddings.
        n_confs: conformers tried per ligand.
        any_atom_fallback: see :func:`pose_ligand`.

    Returns:
        The series summary (also written to ``summary.json``): ``folder``, ``target``,
        ``n_ligands``, ``n_posed``, ``n_dropped``, ``seconds`` and more.

    Raises:
        ValueError: for a series of an excluded target, or unreadable inputs.

    Example:
        >>> s = build_series(repo, "ChEMBL|ADK|CHEMBL642224", "/tmp/adk")  # doctest: +SKIP
        >>> s["n_posed"], s["n_ligands"]  # doctest: +SKIP
        (9, 9)
    """
    from rdkit import Chem

    why = skip_reason(folder)
    if why is not None:
        raise DatasetError(f"{folder}: {why}")
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    target = series_target(folder)
    base = f"{SERIES_DIR}/{folder}"
    pdb_bytes = read_source(repo, f"{base}/protein.pdb")
    ref_full, ref_heavy = read_reference(read_source(repo, f"{base}/ref_ligand.sdf").decode())
    table = pd.read_csv(io.BytesIO(read_source(repo, f"{base}/result_dG.csv")))
    dg_col = next(c for c in table.columns if c.startswith("exp_dG"))
    pocket_xyz, overlapping = pocket_near_reference(pdb_bytes.decode(errors="replace"),
                                                    heavy_xyz(ref_full))
    if overlapping:
        logger.info("%s: HETATM residues on the reference left out of the pocket: %s",
                    folder, overlapping)
    ref_key = isomeric_key(ref_heavy)
    ref_clash, ref_min_d = clash_metrics(heavy_xyz(ref_full), pocket_xyz)

    posed: list = []
    dropped: list[dict] = []
    n_reference = 0
    for smiles, name, dg in zip(table["ligand_smiles"].astype(str),
                                table["ligand_name"].astype(str),
                                pd.to_numeric(table[dg_col], errors="coerce"), strict=True):
        if not np.isfinite(dg):
            dropped.append({"ligand_name": name, "smiles": smiles, "reason": "no exp_dG"})
            continue
        heavy = Chem.MolFromSmiles(smiles)
        if heavy is not None and ref_key and Chem.MolToSmiles(heavy) == ref_key:
            mol = Chem.Mol(ref_full)
            info = {"mcs_size": heavy.GetNumHeavyAtoms(), "mcs_fraction": 1.0,
                    "mcs_compare": "elements", "mcs_rmsd": 0.0,
                    "clash_score": round(ref_clash, 4), "min_protein_distance": round(ref_min_d, 4),
                    "pose_method": "reference"}
            n_reference += 1
        else:
            try:
                mol, info = pose_ligand(smiles, ref_full, ref_heavy, pocket_xyz,
                                        n_confs=n_confs, seed=seed,
                                        any_atom_fallback=any_atom_fallback)
            except Exception as e:  # noqa: BLE001 - one odd ligand must not stop the series
                mol, info = None, {"reason": f"error: {type(e).__name__}: {e}"}
            info["pose_method"] = "mcs_embed"
        if mol is None:
            logger.info("%s: dropped %s: %s", folder, name, info.get("reason"))
            dropped.append({"ligand_name": name, "smiles": smiles, **info})
            continue
        for k in list(mol.GetPropNames()):
            mol.ClearProp(k)
        mol.SetProp("_Name", name)
        tags = {"r_exp_dg": float(dg), "smiles": smiles, "target": target, "series": folder,
                "source": SOURCE, "pose_method": info["pose_method"],
                "mcs_size": info["mcs_size"], "mcs_fraction": info["mcs_fraction"],
                "mcs_compare": info["mcs_compare"],
                "mcs_rmsd": info["mcs_rmsd"], "clash_score": info["clash_score"],
                "min_protein_distance": info["min_protein_distance"]}
        for k, v in tags.items():
            mol.SetProp(k, _fmt(v))
        posed.append((mol, info))

    seconds = time.perf_counter() - t0
    summary = {
        "folder": folder, "target": target, "n_ligands": int(len(table)),
        "n_posed": len(posed), "n_dropped": len(dropped), "seconds": round(seconds, 2),
        "dir": out_dir.name, "n_reference": n_reference,
        "reference_min_protein_distance": round(ref_min_d, 4),
        "reference_clash_score": round(ref_clash, 4),
        "pocket_atoms": int(len(pocket_xyz)), "hetatm_on_reference": overlapping,
        "n_any_atom_mcs": sum(i.get("mcs_compare") == "any_heavy_atom" for _, i in posed),
        "seed": seed, "n_confs": n_confs, "any_atom_fallback": any_atom_fallback,
        "source": SOURCE,
    }
    _write_series(out_dir, pdb_bytes, [m for m, _ in posed], dropped, summary)
    return summary


def _write_series(out_dir: Path, pdb_bytes: bytes, mols: Sequence, dropped: list[dict],
                  summary: dict) -> None:
    from rdkit import Chem

    tmp_root = out_dir.parent / ".tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    tmp = tmp_root / f"{out_dir.name}.{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    (tmp / "protein.pdb").write_bytes(pdb_bytes)
    with Chem.SDWriter(str(tmp / "ligands.sdf")) as w:
        for m in mols:
            w.write(m)
    cols = ["ligand_name", "smiles", "reason", "mcs_size", "mcs_fraction", "mcs_compare",
            "mcs_rmsd",
            "clash_score", "min_protein_distance"]
    with (tmp / "dropped.csv").open("w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        wr.writeheader()
        wr.writerows(dropped)
    (tmp / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    os.rename(tmp, out_dir)


def _build_one(args: tuple) -> tuple[str, Optional[dict], Optional[str]]:
    repo, folder, out_dir, seed, fallback = args
    try:
        return folder, build_series(repo, folder, out_dir, seed=seed,
                                    any_atom_fallback=fallback), None
    except Exception as e:  # noqa: BLE001 - one broken series must not stop the build
        logger.exception("%s failed", folder)
        return folder, None, f"{type(e).__name__}: {e}"


def read_manifest(out_root: PathLike) -> pd.DataFrame:
    """The manifest of the built series under ``out_root`` (from their ``summary.json``).

    Example:
        >>> read_manifest("/work/data/unifep").n_posed.sum()  # doctest: +SKIP
        7012
    """
    rows = []
    for p in sorted(Path(out_root).glob("*/summary.json")):
        s = json.loads(p.read_text())
        rows.append({k: s.get(k) for k in [*_MANIFEST_COLUMNS, "dir", "n_reference"]})
    return pd.DataFrame(rows, columns=[*_MANIFEST_COLUMNS, "dir", "n_reference"])


def build_all(repo: PathLike, out_root: PathLike = DEFAULT_OUT, limit: Optional[int] = None,
              workers: int = 1, seed: int = 0, any_atom_fallback: bool = True,
              targets: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Build every series of the benchmark not excluded, skipping those already built.

    Writes ``manifest.csv`` (built series) and ``skipped.csv`` (excluded, skipped and
    failed series with the reason) under ``out_root``.

    Args:
        repo: benchmark repository (bare git repository or checked-out folder).
        out_root: output root.
        limit: build (or find built) at most this many series, in name order.
        workers: worker processes (1: in this process).
        seed: random seed of the embeddings.
        any_atom_fallback: see :func:`pose_ligand`.
        targets: build only the series of these targets (any spelling
            :func:`~get_md.datasets.targets.canonical_target` knows, e.g. ``"Eg5"``).

    Returns:
        The manifest: one row per built series (``folder``, ``target``, ``n_ligands``,
        ``n_posed``, ``n_dropped``, ``seconds``, ``dir``, ``n_reference``);
        ``.attrs["skipped"]`` lists ``(folder, reason)`` of the others.

    Example:
        >>> df = build_all(repo, "/tmp/unifep", limit=3)  # doctest: +SKIP
        >>> int(df.n_posed.sum()) > 0  # doctest: +SKIP
        True
    """
    out_root = Path(out_root)
    all_series = list_series(repo)  # a wrong --repo fails before anything is written
    out_root.mkdir(parents=True, exist_ok=True)
    skipped: list[tuple[str, str]] = []
    todo: list[tuple] = []
    names: dict[str, str] = {}
    n_taken = 0
    wanted = None if targets is None else {canonical_target(t) for t in targets}
    for folder in all_series:
        why = skip_reason(folder)
        if why is not None:
            skipped.append((folder, why))
            continue
        if wanted is not None and series_target(folder) not in wanted:
            continue
        if limit is not None and n_taken >= limit:
            continue
        n_taken += 1
        safe = safe_series_name(folder)
        if safe in names:
            raise DatasetError(f"series {folder!r} and {names[safe]!r} share the name {safe}")
        names[safe] = folder
        if (out_root / safe).exists():
            continue
        todo.append((str(repo), folder, str(out_root / safe), seed, any_atom_fallback))
    logger.info("%d series to build, %d already built, %d skipped", len(todo),
                n_taken - len(todo), len(skipped))

    def done(folder: str, summary: Optional[dict], err: Optional[str], i: int) -> None:
        if summary is None:
            skipped.append((folder, f"failed: {err}"))
        else:
            logger.info("[%d/%d] %s: %d/%d posed in %.1f s", i, len(todo), folder,
                        summary["n_posed"], summary["n_ligands"], summary["seconds"])

    if workers <= 1:
        for i, args in enumerate(todo, 1):
            done(*_build_one(args), i)
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=workers) as pool:
            futs = [pool.submit(_build_one, a) for a in todo]
            for i, fut in enumerate(as_completed(futs), 1):
                done(*fut.result(), i)

    manifest = read_manifest(out_root)
    manifest = manifest[manifest.folder.isin(names.values())].reset_index(drop=True) \
        if limit is not None or targets is not None else manifest
    _atomic_csv(read_manifest(out_root), out_root / "manifest.csv")
    _atomic_csv(pd.DataFrame(skipped, columns=["folder", "reason"]), out_root / "skipped.csv")
    manifest.attrs["skipped"] = skipped
    return manifest


def _atomic_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: ``python -m get_md.datasets.reference_poses --repo R --out O``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", required=True, help="Uni-FEP-Benchmarks repository (bare or not)")
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"output root (default {DEFAULT_OUT})")
    ap.add_argument("--limit", type=int, default=None, help="at most this many series")
    ap.add_argument("--workers", type=int, default=1, help="worker processes")
    ap.add_argument("--seed", type=int, default=0, help="embedding seed")
    ap.add_argument("--targets", nargs="+", default=None,
                    help="only the series of these targets (e.g. JAK2 Eg5), to build a split first")
    ap.add_argument("--elements-only", action="store_true",
                    help="no any-heavy-atom MCS fallback for ligands below 50%% coverage")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    df = build_all(args.repo, args.out, limit=args.limit, workers=args.workers, seed=args.seed,
                   any_atom_fallback=not args.elements_only, targets=args.targets)
    failed = [s for s in df.attrs["skipped"] if s[1].startswith("failed")]
    print(f"{len(df)} series built, {int(df.n_posed.sum())} ligands posed, "
          f"{int(df.n_dropped.sum())} dropped; {len(df.attrs['skipped']) - len(failed)} "
          f"series skipped, {len(failed)} failed")
    return 0


__all__ = [
    "SOURCE", "build_all", "build_series", "clash_metrics", "list_series", "main",
    "pose_ligand", "read_manifest", "read_pocket_atoms", "read_source", "safe_series_name",
    "series_target", "skip_reason", "target_field",
]

if __name__ == "__main__":
    from get_md.cli import run_module

    raise SystemExit(run_module(main, "python -m get_md.datasets.reference_poses"))
