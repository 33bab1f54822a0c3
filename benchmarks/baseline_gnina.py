"""gnina's CNN (gninatorch) for the classical affinity baselines.

Part of ``benchmarks/affinity_baselines.py`` (which re-exports every name). gninatorch
needs ``molgrid``, which imports only with ``numpy<2``, so it runs in its own virtual
environment (created on first use) through a small worker script, as a subprocess.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # sibling modules, as the other benchmarks import theirs
    sys.path.insert(0, _HERE)
from baseline_records import _one_line  # noqa: E402

DEFAULT_GNINA_VENV = "/tmp/get_md_gnina_venv"
"""Default location of the virtual environment that runs gninatorch."""

DEFAULT_GNINA_CNN = "default"
"""gnina's default CNN: the ensemble of five models used by gnina 1.0."""

GNINA_PACKAGES: tuple[str, ...] = ("numpy<2", "molgrid==0.5.5", "gninatorch==0.0.2")
"""Packages installed in the gnina environment besides torch."""


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
