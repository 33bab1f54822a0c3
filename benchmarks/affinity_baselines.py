"""Classical affinity baselines: score protein-ligand poses in place with Vina, Vinardo and gnina.

For one receptor (PDB, may contain hydrogens, waters, ions and cofactors) and one SDF of 3D
ligand poses already placed in the pocket, every SDF record is scored without any docking or
minimisation:

* ``vina`` / ``vinardo``: AutoDock Vina 1.2 ``score()`` (the ``--score_only`` total, kcal/mol,
  lower is better) with ``Vina(sf_name="vina")`` and ``Vina(sf_name="vinardo")``. The receptor
  PDBQT is prepared with meeko's polymer API (waters removed, missing hydrogens added from
  meeko's residue templates); ligands with ``MoleculePreparation`` + ``PDBQTWriterLegacy``
  after ``Chem.AddHs(addCoords=True)``. One box covers every pose (ligand extent + padding).
* ``gnina_cnnscore`` / ``gnina_cnnaffinity``: gnina's CNN pose score (0-1) and affinity (pK,
  higher is better) from ``gninatorch`` (the trained gnina weights in PyTorch). gninatorch
  needs ``molgrid``, which imports only with ``numpy<2``, so it runs in its own virtual
  environment (created on first use) through a small worker script, as a subprocess.
* ``heavy_atoms``: ligand heavy-atom count (RDKit).

A record that fails (unparsable, no 3D coordinates, preparation or scoring error) keeps NaN
scores and an explanation in the ``error`` column; it never stops the run. If gnina cannot be
run at all, its columns are NaN and the reason is printed and written to ``error``.

Usage::

    python benchmarks/affinity_baselines.py RECEPTOR.pdb LIGANDS.sdf --out scores.csv
    python benchmarks/affinity_baselines.py rec.pdb poses.sdf --out s.csv --methods vina vinardo
    python benchmarks/affinity_baselines.py rec.pdb poses.sdf --out s.csv --gnina-cnn \
        crossdock_default2018 --gnina-venv /tmp/my_gnina_venv

As a module::

    from benchmarks.affinity_baselines import score_poses, last_timings
    df = score_poses("rec.pdb", "poses.sdf", methods=("vina", "gnina"))
    print(last_timings()["vina"]["score_rate_poses_per_s"])
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ALL_METHODS: tuple[str, ...] = ("vina", "vinardo", "gnina")
"""Scoring methods understood by :func:`score_poses`."""

DEFAULT_GNINA_VENV = "/tmp/get_md_gnina_venv"
"""Default location of the virtual environment that runs gninatorch."""

DEFAULT_GNINA_CNN = "default"
"""gnina's default CNN: the ensemble of five models used by gnina 1.0."""

GNINA_PACKAGES: tuple[str, ...] = ("numpy<2", "molgrid==0.5.5", "gninatorch==0.0.2")
"""Packages installed in the gnina environment besides torch."""

WATER_RESNAMES = frozenset(
    {"HOH", "WAT", "H2O", "DOD", "D2O", "TIP", "TIP3", "TIP4", "TIP5", "SOL", "T3P", "T4P", "SPC"}
)
"""Residue names treated as water and removed from the receptor."""

OUTPUT_COLUMNS: tuple[str, ...] = (
    "record",
    "name",
    "heavy_atoms",
    "vina",
    "vinardo",
    "gnina_cnnscore",
    "gnina_cnnaffinity",
    "gnina_model",
    "error",
)
"""Columns of the DataFrame returned by :func:`score_poses`, in order."""

_LAST_TIMINGS: dict[str, Any] = {}

_GNINA_WORKER = r'''
"""gninatorch worker written by get_md's benchmarks/affinity_baselines.py (runs in its venv)."""
import argparse
import json
import os
import sys
import time
import traceback

import molgrid
import torch
from gninatorch import gnina


def provider(types_file, root, batch_size):
    ep = molgrid.ExampleProvider(
        data_root=root,
        balanced=False,
        shuffle=False,
        default_batch_size=batch_size,
        iteration_scheme=molgrid.IterationScheme.SmallEpoch,
    )
    ep.populate(types_file)
    return ep


def predict(model, ensemble, ep, gmaker, n, batch_size):
    out = []
    done = 0
    while done < n:
        size = min(batch_size, n - done)
        batch = ep.next_batch(size)
        grids = torch.zeros((size, *gmaker.grid_dimensions(ep.num_types())))
        gmaker.forward(batch, grids, random_translation=0.0, random_rotation=False)
        with torch.no_grad():
            res = model(grids)
        score = torch.exp(res[0][:, -1])
        for i in range(size):
            var = float(res[2][i]) if ensemble else None
            out.append((float(score[i]), float(res[1][i]), var))
        done += size
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--types", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--cnn", default="default")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    model, ensemble = gnina.setup_gnina_model(a.cnn, 23.5, 0.5)
    model.eval()
    t_load = time.perf_counter() - t0
    gmaker = molgrid.GridMaker(resolution=0.5, dimension=23.5)
    with open(a.types) as fh:
        lines = [ln for ln in fh.read().splitlines() if ln.strip()]
    results = [None] * len(lines)
    t1 = time.perf_counter()
    try:
        ep = provider(a.types, a.root, a.batch_size)
        for i, r in enumerate(predict(model, ensemble, ep, gmaker, len(lines), a.batch_size)):
            results[i] = {"cnnscore": r[0], "cnnaffinity": r[1], "cnnvariance": r[2]}
    except Exception:
        # Isolate the failing example(s): score one example at a time.
        for i, line in enumerate(lines):
            single = os.path.join(a.root, "single_%d.types" % i)
            with open(single, "w") as fh:
                fh.write(line + "\n")
            try:
                r = predict(model, ensemble, provider(single, a.root, 1), gmaker, 1, 1)[0]
                results[i] = {"cnnscore": r[0], "cnnaffinity": r[1], "cnnvariance": r[2]}
            except Exception as exc:
                msg = str(exc).strip().splitlines()
                results[i] = {"error": type(exc).__name__ + ": " + (msg[-1] if msg else "")}
    t_score = time.perf_counter() - t1
    doc = {
        "cnn": a.cnn,
        "ensemble": bool(ensemble),
        "model_load_s": t_load,
        "score_s": t_score,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "results": results,
    }
    with open(a.out, "w") as fh:
        json.dump(doc, fh)


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
        sys.exit(1)
'''


@dataclass
class PoseRecord:
    """One SDF record and what was made of it.

    Attributes:
        index: 0-based position of the record in the SDF file.
        name: The record's title line (``_Name``).
        mol: The RDKit molecule with all hydrogens present (``Chem.AddHs(addCoords=True)``),
            or None when the record could not be used.
        heavy_atoms: Heavy-atom count, or None when the record could not be parsed.
        errors: Error messages, each prefixed by the step or method that failed.
    """

    index: int
    name: str
    mol: Any = None
    heavy_atoms: int | None = None
    errors: list[str] = field(default_factory=list)


def _one_line(exc: BaseException | str) -> str:
    """Condenses an exception or message to a single line.

    Args:
        exc: An exception or a message.

    Returns:
        ``"ExceptionType: last non-empty line"`` (or the message's last non-empty line).
    """
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    if isinstance(exc, BaseException):
        return f"{type(exc).__name__}: {last}" if last else type(exc).__name__
    return last


def _split_sdf_blocks(text: str) -> list[str]:
    """Splits SDF text into record blocks (without the ``$$$$`` delimiter lines).

    Args:
        text: Content of an SDF file.

    Returns:
        One string per record; a trailing block without ``$$$$`` counts only if non-blank.
    """
    blocks: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.strip() == "$$$$":
            blocks.append("\n".join(current) + "\n")
            current = []
        else:
            current.append(line)
    if any(ln.strip() for ln in current):
        blocks.append("\n".join(current) + "\n")
    return blocks


def read_pose_records(ligands_sdf: str | os.PathLike[str]) -> list[PoseRecord]:
    """Reads every record of an SDF file and adds missing hydrogens with coordinates.

    Records are split on ``$$$$`` lines, so that a record RDKit cannot parse still has its
    index and name. A record without a 3D conformer is rejected (poses must be placed).

    Args:
        ligands_sdf: Path of the SDF file of poses.

    Returns:
        One :class:`PoseRecord` per SDF record, in file order.
    """
    from rdkit import Chem

    text = Path(ligands_sdf).read_text(errors="replace")
    records: list[PoseRecord] = []
    for index, block in enumerate(_split_sdf_blocks(text)):
        name = block.splitlines()[0].strip() if block.strip() else ""
        rec = PoseRecord(index=index, name=name)
        records.append(rec)
        try:
            mol = Chem.MolFromMolBlock(block, sanitize=True, removeHs=False)
        except Exception as exc:  # noqa: BLE001
            rec.errors.append(f"read: {_one_line(exc)}")
            continue
        if mol is None:
            rec.errors.append("read: RDKit could not parse the record")
            continue
        rec.heavy_atoms = int(mol.GetNumHeavyAtoms())
        if mol.GetNumConformers() == 0 or not mol.GetConformer().Is3D():
            rec.errors.append("read: record has no 3D coordinates")
            continue
        try:
            rec.mol = Chem.AddHs(mol, addCoords=True)
        except Exception as exc:  # noqa: BLE001
            rec.errors.append(f"read: adding hydrogens failed: {_one_line(exc)}")
    return records


def clean_receptor_pdb(pdb_text: str) -> tuple[str, dict[str, Any]]:
    """Removes waters, alternate locations beyond the first and extra models from a PDB.

    Only ``ATOM``/``HETATM`` records of the first model are kept (first alternate location of
    each atom, altloc flag blanked), plus ``TER``/``END`` and the ``CONECT`` records whose atoms
    all remain. Ions and cofactors are kept.

    Args:
        pdb_text: Content of the receptor PDB file.

    Returns:
        The cleaned PDB text and a dict with ``waters_removed`` (number of water atoms) and
        ``atoms`` (number of atoms kept).
    """
    kept: list[str] = []
    conect: list[str] = []
    serials: set[str] = set()
    seen: set[tuple[str, str, str, str]] = set()
    n_water = 0
    for line in pdb_text.splitlines():
        record = line[:6].strip()
        if record == "ENDMDL":
            break
        if record in ("ATOM", "HETATM"):
            line = line.ljust(80)
            if line[17:21].strip().upper() in WATER_RESNAMES:
                n_water += 1
                continue
            key = (line[21], line[22:27], line[17:21], line[12:16])
            if key in seen:
                continue
            seen.add(key)
            kept.append(line[:16] + " " + line[17:].rstrip())
            serials.add(line[6:11].strip())
        elif record == "TER":
            kept.append(line.rstrip())
        elif record == "CONECT":
            conect.append(line.rstrip())
    for line in conect:
        fields = [line[i : i + 5].strip() for i in range(6, len(line), 5)]
        fields = [f for f in fields if f]
        if fields and all(f in serials for f in fields):
            kept.append(line)
    kept.append("END")
    return "\n".join(kept) + "\n", {"waters_removed": n_water, "atoms": len(serials)}


def prepare_receptor_pdbqt(clean_pdb: str) -> tuple[str, dict[str, Any]]:
    """Prepares a rigid receptor PDBQT with meeko's polymer API.

    Residues whose names meeko's default residue templates do not know (cofactors, ligands,
    unusual ions) are left out beforehand: meeko would otherwise try to download their
    chemical-component definitions. Residues that match no template are deleted by meeko
    (``allow_bad_res``). Missing hydrogens are added from the templates.

    Args:
        clean_pdb: Receptor PDB text without waters (see :func:`clean_receptor_pdb`).

    Returns:
        The PDBQT text and a dict listing ``dropped_unknown_residues`` and
        ``deleted_by_meeko`` (``"RESNAME CHAIN:NUM"`` strings).

    Raises:
        RuntimeError: If no receptor atom is left or meeko fails.
    """
    from meeko import MoleculePreparation, PDBQTWriterLegacy, Polymer, ResidueChemTemplates

    templates = ResidueChemTemplates.create_from_defaults()
    known = set(templates.residue_templates) | set(templates.ambiguous)
    lines: list[str] = []
    dropped: dict[str, None] = {}
    for line in clean_pdb.splitlines():
        if line[:6].strip() in ("ATOM", "HETATM"):
            resname = line[17:21].strip()
            if resname not in known:
                dropped[f"{resname} {line[21].strip()}:{line[22:27].strip()}"] = None
                continue
        elif line[:6].strip() == "CONECT":
            continue
        lines.append(line)
    if not any(ln[:6].strip() in ("ATOM", "HETATM") for ln in lines):
        raise RuntimeError("no receptor residue known to meeko's templates")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        polymer = Polymer.from_pdb_string(
            "\n".join(lines) + "\n", templates, MoleculePreparation(), allow_bad_res=True
        )
    rigid, _flex = PDBQTWriterLegacy.write_from_polymer(polymer)
    log = getattr(polymer, "log", {}) or {}
    deleted = [str(r) for key in ("no_match", "no_mol") for r in log.get(key, [])]
    if not rigid.strip():
        raise RuntimeError("meeko produced an empty receptor PDBQT")
    return rigid, {"dropped_unknown_residues": list(dropped), "deleted_by_meeko": deleted}


def ligand_pdbqt(mol: Any) -> str:
    """Writes a posed ligand as a Vina PDBQT string with meeko, keeping its coordinates.

    Macrocycles are kept rigid (no ring opening, no pseudo atoms) so that the pose is scored
    as given.

    Args:
        mol: RDKit molecule with explicit hydrogens and a 3D conformer.

    Returns:
        The PDBQT string.

    Raises:
        RuntimeError: If meeko cannot prepare or write the molecule.
    """
    from meeko import MoleculePreparation, PDBQTWriterLegacy

    setups = MoleculePreparation(rigid_macrocycles=True).prepare(mol)
    if len(setups) != 1:
        raise RuntimeError(f"meeko returned {len(setups)} molecule setups, expected 1")
    pdbqt, ok, err = PDBQTWriterLegacy.write_string(setups[0], bad_charge_ok=True)
    if not ok:
        raise RuntimeError(f"meeko PDBQT writer: {_one_line(err)}")
    return pdbqt


def pose_box(mols: Sequence[Any], padding: float = 8.0) -> tuple[list[float], list[float]]:
    """Computes a Vina box that covers every pose.

    Args:
        mols: RDKit molecules with 3D conformers.
        padding: Margin added on each side of the coordinate extent (Å).

    Returns:
        ``(center, size)``, each a list of three floats (Å).

    Raises:
        ValueError: If ``mols`` is empty.
    """
    if not mols:
        raise ValueError("no pose to build the box from")
    xyz = np.concatenate([m.GetConformer().GetPositions() for m in mols], axis=0)
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    center = ((lo + hi) / 2.0).tolist()
    size = (hi - lo + 2.0 * padding).tolist()
    return [float(c) for c in center], [float(s) for s in size]


def _rate(n: int, seconds: float) -> float:
    """Returns ``n / seconds`` (NaN when undefined).

    Args:
        n: Number of poses.
        seconds: Elapsed time.

    Returns:
        Poses per second.
    """
    return n / seconds if n > 0 and seconds > 0 else float("nan")


def run_vina_scoring(
    sf_name: str,
    receptor_pdbqt_path: str,
    ligands: dict[int, str],
    center: Sequence[float],
    size: Sequence[float],
    cpu: int = 0,
) -> tuple[dict[int, float], dict[int, str], dict[str, float]]:
    """Scores prepared ligands in place with one Vina scoring function.

    Args:
        sf_name: ``"vina"`` or ``"vinardo"``.
        receptor_pdbqt_path: Rigid receptor PDBQT file.
        ligands: Record index -> ligand PDBQT string.
        center: Box center (Å).
        size: Box edge lengths (Å).
        cpu: Threads for the grid maps (0: all).

    Returns:
        Scores (kcal/mol) and errors by record index, and timings: ``maps_s`` (receptor
        loading and grid maps) and ``score_s`` (sum of the ``score()`` calls alone).
    """
    from vina import Vina

    t0 = time.perf_counter()
    v = Vina(sf_name=sf_name, cpu=cpu, verbosity=0)
    v.set_receptor(rigid_pdbqt_filename=receptor_pdbqt_path)
    v.compute_vina_maps(center=list(center), box_size=list(size))
    maps_s = time.perf_counter() - t0
    scores: dict[int, float] = {}
    errors: dict[int, str] = {}
    score_s = 0.0
    for idx, pdbqt in ligands.items():
        try:
            v.set_ligand_from_string(pdbqt)
            t1 = time.perf_counter()
            energies = v.score()
            score_s += time.perf_counter() - t1
            scores[idx] = float(energies[0])
        except Exception as exc:  # noqa: BLE001
            errors[idx] = _one_line(exc)
    return scores, errors, {"maps_s": maps_s, "score_s": score_s}


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Holds an exclusive lock file while the gnina venv is created or checked.

    Args:
        path: Lock file path.

    Yields:
        Nothing; the lock is released on exit.
    """
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _venv_python(venv: Path) -> Path:
    """Returns the interpreter of a virtual environment.

    Args:
        venv: Virtual environment directory.

    Returns:
        Path of its ``bin/python``.
    """
    return venv / "bin" / "python"


def _gnina_venv_ok(python: Path) -> tuple[bool, str]:
    """Checks that gninatorch, molgrid and torch import in the venv with numpy<2.

    Args:
        python: The venv interpreter.

    Returns:
        ``(ok, message)``; the message is the last error line when not ok.
    """
    if not python.exists():
        return False, f"{python} does not exist"
    code = (
        "import numpy, molgrid, torch, gninatorch.gnina; "
        "assert int(numpy.__version__.split('.')[0]) < 2, numpy.__version__; "
        "print(torch.__version__)"
    )
    proc = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, timeout=600, check=False
    )
    if proc.returncode == 0:
        return True, proc.stdout.strip()
    return False, _one_line(proc.stderr or proc.stdout or f"exit {proc.returncode}")


def _default_torch_requirements() -> list[str]:
    """Torch requirements to try, in order, for the gnina venv.

    The main environment's torch build is tried first when it is a CPU build (its wheel is
    then usually available locally and small), then whatever ``pip install torch`` resolves.

    Returns:
        Requirement strings.
    """
    reqs: list[str] = []
    with contextlib.suppress(metadata.PackageNotFoundError):
        version = metadata.version("torch")
        if "+cpu" in version:
            reqs.append(f"torch=={version}")
    reqs.append("torch")
    return reqs


def ensure_gnina_venv(
    venv: str | os.PathLike[str] | None = None,
    torch_requirement: str | None = None,
    log: Any = sys.stderr,
) -> Path:
    """Creates (once) the virtual environment in which gninatorch runs and returns its python.

    The venv is made with ``python -m venv`` from the current interpreter and gets
    ``numpy<2``, torch, ``molgrid==0.5.5`` and ``gninatorch==0.0.2`` from pip. An existing venv
    that already imports them is reused as is.

    Args:
        venv: Directory of the venv (default :data:`DEFAULT_GNINA_VENV`).
        torch_requirement: Torch requirement to install (default: the main environment's CPU
            build when there is one, else ``torch``).
        log: Stream for progress messages (None: silent).

    Returns:
        Path of the venv's interpreter.

    Raises:
        RuntimeError: If the venv cannot be created or the packages do not import.
    """
    root = Path(venv or DEFAULT_GNINA_VENV).expanduser().resolve()
    python = _venv_python(root)
    with _file_lock(root.parent / f".{root.name}.lock"):
        ok, msg = _gnina_venv_ok(python)
        if ok:
            return python
        if log is not None:
            print(f"[gnina] creating venv {root} (existing: {msg})", file=log, flush=True)
        if not python.exists():
            proc = subprocess.run(
                [sys.executable, "-m", "venv", str(root)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"python -m venv failed: {_one_line(proc.stderr)}")
        candidates = [torch_requirement] if torch_requirement else _default_torch_requirements()
        last_error = ""
        for req in candidates:
            cmd = [str(python), "-m", "pip", "install", "--quiet", *GNINA_PACKAGES, req]
            if log is not None:
                print(f"[gnina] {' '.join(cmd[1:])}", file=log, flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode == 0:
                ok, msg = _gnina_venv_ok(python)
                if ok:
                    return python
                last_error = f"installed but import failed: {msg}"
            else:
                err = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln] or [proc.stderr]
                last_error = f"pip install {req} failed: {_one_line(err[-1])}"
        raise RuntimeError(last_error or "gnina venv could not be set up")


def run_gnina_scoring(
    receptor_pdb: str,
    mols: dict[int, Any],
    venv: str | os.PathLike[str] | None = None,
    cnn: str = DEFAULT_GNINA_CNN,
    threads: int = 0,
    batch_size: int = 8,
    timeout_s: float | None = None,
) -> tuple[dict[int, tuple[float, float]], dict[int, str], dict[str, Any]]:
    """Scores poses with gnina's CNN (gninatorch) in its venv.

    Each pose is written to its own SDF file next to the receptor PDB, listed in a molgrid
    ``.types`` file, and the worker script (:data:`_GNINA_WORKER`) is run with the venv's
    python. The grid (23.5 Å, 0.5 Å resolution) is centred on each ligand as in gnina.

    Args:
        receptor_pdb: Receptor PDB text (waters already removed).
        mols: Record index -> RDKit molecule (explicit hydrogens, 3D).
        venv: gnina venv directory (created if needed; see :func:`ensure_gnina_venv`).
        cnn: gninatorch model name (``default`` ensemble, ``crossdock_default2018``, ...).
        threads: Torch threads in the worker (0: torch's default).
        batch_size: Poses per forward pass.
        timeout_s: Wall-clock limit for the worker (None: none).

    Returns:
        ``(cnnscore, cnnaffinity)`` and errors by record index, and timings/metadata:
        ``venv_setup_s``, ``model_load_s``, ``score_s`` (gridding + forward passes),
        ``subprocess_s``, ``cnn``, ``ensemble``, ``torch``, ``threads``.

    Raises:
        RuntimeError: If the venv cannot be set up or the worker fails as a whole.
    """
    from rdkit import Chem

    t0 = time.perf_counter()
    try:
        python = ensure_gnina_venv(venv)
    except Exception as exc:
        where = venv or DEFAULT_GNINA_VENV
        raise RuntimeError(f"gnina venv {where} unusable: {_one_line(exc)}") from exc
    venv_setup_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="get_md_gnina_") as tmp:
        tmpdir = Path(tmp)
        (tmpdir / "rec.pdb").write_text(receptor_pdb)
        order = sorted(mols)
        lines = []
        for idx in order:
            writer = Chem.SDWriter(str(tmpdir / f"lig_{idx}.sdf"))
            writer.write(mols[idx])
            writer.close()
            lines.append(f"rec.pdb lig_{idx}.sdf")
        (tmpdir / "poses.types").write_text("\n".join(lines) + "\n")
        worker = tmpdir / "gnina_worker.py"
        worker.write_text(_GNINA_WORKER)
        cmd = [
            str(python),
            str(worker),
            "--root",
            str(tmpdir),
            "--types",
            str(tmpdir / "poses.types"),
            "--out",
            str(tmpdir / "out.json"),
            "--cnn",
            cnn,
            "--batch-size",
            str(batch_size),
            "--threads",
            str(threads),
        ]
        t1 = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"gnina worker timed out after {timeout_s} s") from exc
        subprocess_s = time.perf_counter() - t1
        out = tmpdir / "out.json"
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(
                f"gnina worker exited {proc.returncode}: {_one_line(proc.stderr or proc.stdout)}"
            )
        doc = json.loads(out.read_text())
    scores: dict[int, tuple[float, float]] = {}
    errors: dict[int, str] = {}
    for idx, res in zip(order, doc["results"], strict=True):
        if res is None or "error" in res:
            errors[idx] = (res or {}).get("error", "no result")
        else:
            scores[idx] = (float(res["cnnscore"]), float(res["cnnaffinity"]))
    info = {
        "venv_setup_s": venv_setup_s,
        "model_load_s": doc["model_load_s"],
        "score_s": doc["score_s"],
        "subprocess_s": subprocess_s,
        "cnn": doc["cnn"],
        "ensemble": doc["ensemble"],
        "torch": doc["torch"],
        "threads": doc["threads"],
        "python": str(python),
    }
    return scores, errors, info


def score_poses_with_timings(
    receptor: str,
    ligands_sdf: str,
    methods: Sequence[str] = ALL_METHODS,
    gnina_venv: str | None = None,
    *,
    padding: float = 8.0,
    gnina_cnn: str = DEFAULT_GNINA_CNN,
    gnina_threads: int = 0,
    vina_cpu: int = 0,
    log: Any = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Scores every SDF pose in place and returns the scores and the timings.

    Args:
        receptor: Receptor PDB file.
        ligands_sdf: SDF file of posed ligands.
        methods: Any of ``"vina"``, ``"vinardo"``, ``"gnina"``.
        gnina_venv: Directory of gnina's venv (default :data:`DEFAULT_GNINA_VENV`).
        padding: Vina box margin around all poses (Å).
        gnina_cnn: gninatorch model (``default``: gnina's 5-model ensemble).
        gnina_threads: Torch threads for gnina (0: torch's default).
        vina_cpu: Threads for Vina's grid maps (0: all).
        log: Stream for progress messages (None: silent).

    Returns:
        The DataFrame described in :func:`score_poses` and a timing dict with one entry per
        method (``n_scored``, ``score_s``, ``end_to_end_s``, ``score_rate_poses_per_s``,
        ``end_to_end_rate_poses_per_s`` and method details, or ``error``), plus ``receptor``
        (preparation details) and ``n_records``. Vina end-to-end time counts what the method
        would cost alone: reading poses, receptor and ligand preparation, grid maps, scoring.
        gnina's counts reading poses, writing the inputs, starting the worker, loading the
        model and scoring, but not creating the venv (``venv_setup_s``).

    Raises:
        ValueError: If a method name is unknown.
    """
    methods = tuple(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {ALL_METHODS}")

    def say(msg: str) -> None:
        if log is not None:
            print(msg, file=log, flush=True)

    t_start = time.perf_counter()
    records = read_pose_records(ligands_sdf)
    read_s = time.perf_counter() - t_start
    usable = {r.index: r.mol for r in records if r.mol is not None}
    timings: dict[str, Any] = {"n_records": len(records), "read_s": read_s}
    t0 = time.perf_counter()
    clean_pdb, receptor_info = clean_receptor_pdb(Path(receptor).read_text(errors="replace"))
    clean_s = time.perf_counter() - t0
    timings["receptor"] = dict(receptor_info)
    scores: dict[str, dict[int, Any]] = {m: {} for m in methods}
    say(f"[read] {len(records)} records, {len(usable)} usable, {read_s:.2f} s")

    vina_methods = [m for m in methods if m in ("vina", "vinardo")]
    if vina_methods:
        shared_s = read_s + clean_s
        prep_error = ""
        ligands: dict[int, str] = {}
        with tempfile.TemporaryDirectory(prefix="get_md_vina_") as tmp:
            rec_path = str(Path(tmp) / "receptor.pdbqt")
            t0 = time.perf_counter()
            try:
                rec_pdbqt, info = prepare_receptor_pdbqt(clean_pdb)
                Path(rec_path).write_text(rec_pdbqt)
                timings["receptor"].update(info)
            except Exception as exc:  # noqa: BLE001
                prep_error = f"receptor preparation failed: {_one_line(exc)}"
            timings["receptor"]["meeko_s"] = time.perf_counter() - t0
            shared_s += timings["receptor"]["meeko_s"]
            say(f"[vina] receptor PDBQT: {timings['receptor']['meeko_s']:.2f} s {prep_error}")
            t0 = time.perf_counter()
            if not prep_error:
                for idx, mol in usable.items():
                    try:
                        ligands[idx] = ligand_pdbqt(mol)
                    except Exception as exc:  # noqa: BLE001
                        records[idx].errors.append(f"vina ligand prep: {_one_line(exc)}")
            ligand_prep_s = time.perf_counter() - t0
            shared_s += ligand_prep_s
            center: list[float] = []
            size: list[float] = []
            if not prep_error:
                try:
                    center, size = pose_box([usable[i] for i in ligands], padding)
                except ValueError as exc:
                    prep_error = str(exc)
            for sf in vina_methods:
                if prep_error:
                    timings[sf] = {"error": prep_error, "n_scored": 0}
                    say(f"[{sf}] unavailable: {prep_error}")
                    continue
                try:
                    got, errs, tim = run_vina_scoring(sf, rec_path, ligands, center, size, vina_cpu)
                except Exception as exc:  # noqa: BLE001
                    timings[sf] = {"error": _one_line(exc), "n_scored": 0}
                    say(f"[{sf}] failed: {_one_line(exc)}")
                    continue
                scores[sf] = got
                for idx, msg in errs.items():
                    records[idx].errors.append(f"{sf}: {msg}")
                e2e = shared_s + tim["maps_s"] + tim["score_s"]
                timings[sf] = {
                    "n_scored": len(got),
                    "score_s": tim["score_s"],
                    "maps_s": tim["maps_s"],
                    "ligand_prep_s": ligand_prep_s,
                    "end_to_end_s": e2e,
                    "score_rate_poses_per_s": _rate(len(got), tim["score_s"]),
                    "end_to_end_rate_poses_per_s": _rate(len(got), e2e),
                    "box_center": center,
                    "box_size": size,
                }
                say(f"[{sf}] {len(got)} poses, score {tim['score_s']:.3f} s, e2e {e2e:.2f} s")
        if prep_error:
            for r in records:
                if r.mol is not None:
                    r.errors.append(f"vina/vinardo: {prep_error}")

    gnina_model = ""
    if "gnina" in methods:
        try:
            t0 = time.perf_counter()
            got, errs, info = run_gnina_scoring(
                clean_pdb, usable, venv=gnina_venv, cnn=gnina_cnn, threads=gnina_threads
            )
            e2e = time.perf_counter() - t0 - info["venv_setup_s"] + read_s + clean_s
            scores["gnina"] = got
            for idx, msg in errs.items():
                records[idx].errors.append(f"gnina: {msg}")
            members = "5-model ensemble" if info["ensemble"] else "single model"
            gnina_model = f"{info['cnn']} ({members}, gninatorch 0.0.2)"
            timings["gnina"] = {
                **info,
                "model": gnina_model,
                "n_scored": len(got),
                "end_to_end_s": e2e,
                "score_rate_poses_per_s": _rate(len(got), info["score_s"]),
                "end_to_end_rate_poses_per_s": _rate(len(got), e2e),
            }
            say(f"[gnina] {gnina_model}: {len(got)} poses, score {info['score_s']:.2f} s")
        except Exception as exc:  # noqa: BLE001
            reason = _one_line(exc)
            timings["gnina"] = {"error": reason, "n_scored": 0}
            print(f"[gnina] unavailable, columns left NaN: {reason}", file=sys.stderr, flush=True)
            for r in records:
                if r.mol is not None:
                    r.errors.append(f"gnina: {reason}")

    rows = []
    nan = float("nan")
    for r in records:
        g = scores.get("gnina", {}).get(r.index)
        rows.append(
            {
                "record": r.index,
                "name": r.name,
                "heavy_atoms": r.heavy_atoms if r.heavy_atoms is not None else pd.NA,
                "vina": scores.get("vina", {}).get(r.index, nan),
                "vinardo": scores.get("vinardo", {}).get(r.index, nan),
                "gnina_cnnscore": g[0] if g else nan,
                "gnina_cnnaffinity": g[1] if g else nan,
                "gnina_model": gnina_model,
                "error": "; ".join(r.errors),
            }
        )
    df = pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))
    df["heavy_atoms"] = df["heavy_atoms"].astype("Int64")
    df.attrs["timings"] = copy.deepcopy(timings)
    _LAST_TIMINGS.clear()
    _LAST_TIMINGS.update(copy.deepcopy(timings))
    return df, timings


def score_poses(
    receptor: str,
    ligands_sdf: str,
    methods: Sequence[str] = ALL_METHODS,
    gnina_venv: str | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Scores every pose of an SDF file in place against a receptor with classical baselines.

    Args:
        receptor: Receptor PDB file (hydrogens, waters, ions and cofactors allowed; waters are
            removed).
        ligands_sdf: SDF file of 3D poses already placed in the pocket, with or without
            hydrogens.
        methods: Any of ``"vina"``, ``"vinardo"``, ``"gnina"``; columns of methods not run
            stay NaN.
        gnina_venv: Directory of the venv that runs gninatorch (default
            :data:`DEFAULT_GNINA_VENV`, created on first use).
        **kwargs: Passed to :func:`score_poses_with_timings` (``padding``, ``gnina_cnn``,
            ``gnina_threads``, ``vina_cpu``, ``log``).

    Returns:
        One row per SDF record with columns :data:`OUTPUT_COLUMNS`: ``record`` (0-based),
        ``name`` (``_Name``), ``heavy_atoms``, ``vina`` and ``vinardo`` (kcal/mol, lower is
        better), ``gnina_cnnscore`` (0-1) and ``gnina_cnnaffinity`` (pK, higher is better),
        ``gnina_model`` (the CNN used) and ``error`` (empty when everything worked). The
        timings are in ``df.attrs["timings"]`` and from :func:`last_timings`.
    """
    df, _ = score_poses_with_timings(receptor, ligands_sdf, methods, gnina_venv, **kwargs)
    return df


def last_timings() -> dict[str, Any]:
    """Returns the timing dict of the latest :func:`score_poses` call.

    Returns:
        A copy of the dict described in :func:`score_poses_with_timings` (empty before any
        call). Rates are poses per second: ``score_rate_poses_per_s`` (scoring calls alone)
        and ``end_to_end_rate_poses_per_s`` (preparation included).
    """
    return copy.deepcopy(_LAST_TIMINGS)


def _format_timings(timings: dict[str, Any]) -> str:
    """Formats the per-method rates for the command line.

    Args:
        timings: The dict from :func:`score_poses_with_timings`.

    Returns:
        One line per method.
    """
    out = []
    for method in ALL_METHODS:
        t = timings.get(method)
        if t is None:
            continue
        if "error" in t:
            out.append(f"{method}: unavailable ({t['error']})")
            continue
        extra = f", model {t['model']}" if method == "gnina" else ""
        out.append(
            f"{method}: {t['n_scored']} poses, score {t['score_s']:.3f} s "
            f"({t['score_rate_poses_per_s']:.2f} poses/s), end-to-end {t['end_to_end_s']:.2f} s "
            f"({t['end_to_end_rate_poses_per_s']:.2f} poses/s){extra}"
        )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        Exit status (0 also when some records failed; see the ``error`` column).
    """
    parser = argparse.ArgumentParser(
        description="Score protein-ligand poses in place with Vina, Vinardo and gnina's CNN."
    )
    parser.add_argument("receptor", help="receptor PDB file")
    parser.add_argument("ligands", help="SDF file of posed ligands")
    parser.add_argument("--out", required=True, help="output CSV file")
    parser.add_argument(
        "--methods", nargs="+", default=list(ALL_METHODS), choices=list(ALL_METHODS)
    )
    parser.add_argument("--gnina-venv", default=None, help=f"default {DEFAULT_GNINA_VENV}")
    parser.add_argument(
        "--gnina-cnn",
        default=DEFAULT_GNINA_CNN,
        help="gninatorch model: default (5-model ensemble), crossdock_default2018, dense, ...",
    )
    parser.add_argument("--gnina-threads", type=int, default=0, help="0: torch default")
    parser.add_argument("--padding", type=float, default=8.0, help="Vina box margin (Å)")
    parser.add_argument("--timings-json", default=None, help="also write the timings here")
    args = parser.parse_args(argv)

    df, timings = score_poses_with_timings(
        args.receptor,
        args.ligands,
        methods=args.methods,
        gnina_venv=args.gnina_venv,
        padding=args.padding,
        gnina_cnn=args.gnina_cnn,
        gnina_threads=args.gnina_threads,
        log=sys.stderr,
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    if args.timings_json:
        Path(args.timings_json).write_text(json.dumps(timings, indent=2, default=str) + "\n")
    print(_format_timings(timings))
    failed = df[df["error"] != ""]
    for _, row in failed.iterrows():
        print(f"record {row['record']} ({row['name']}): {row['error']}")
    n_ok = int((df["error"] == "").sum())
    print(f"{n_ok}/{len(df)} records scored without error; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
