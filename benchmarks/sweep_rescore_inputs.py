"""Does the default ``get-md rescore-poses`` run on real prepared inputs? A robustness sweep.

For every series of the Schrödinger public FEP+ benchmark (``--schrodinger``: its
``structure_inputs`` folder), of ``--posed`` folders (:mod:`get_md.datasets.reference_poses`,
e.g. Uni-FEP series) and of the OpenFF protein-ligand-benchmark (``--plb``: its ``data``
folder; each target's ``01_protein/crd/protein.pdb`` and ``02_ligands/ligands.sdf``) and of
OpenFE's IndustryBenchmarks2024 preparation (``--openfe``: its
``industry_benchmarks/input_structures/prepared_structures`` folder; each system's
``protein.pdb``, ``ligands.sdf`` and, where there is one, ``cofactors.sdf``) and of folders
laid out as MCompChem/fep-benchmark (``--folders``: one ``*.pdb`` and ``ligands.sdf`` per
folder, :func:`get_md.datasets.affinity.folder_series`), the command a
user runs — ``get-md rescore-poses PROTEIN.pdb LIGANDS.sdf`` (``--cofactors COFACTORS.sdf``)
with the default score model — is run in its own process on the series' receptor and posed
ligands, and its exit status, the poses scored and skipped, and its
last lines are recorded. Series of targets kept for independent evaluation are never read
(:func:`get_md.datasets.targets.is_excluded`). Scores are not compared with experiment
here: that is ``bench_affinity.py``'s job, on held-out targets only.

    python benchmarks/sweep_rescore_inputs.py --schrodinger structure_inputs --posed data/unifep \\
        --workers 2 --out benchmarks/results/sweep_rescore_inputs.json
    python benchmarks/sweep_rescore_inputs.py --plb protein-ligand-benchmark/data \\
        --out benchmarks/results/sweep_rescore_inputs_plb.json
    python benchmarks/sweep_rescore_inputs.py --openfe IndustryBenchmarks2024/industry_benchmarks/input_structures/prepared_structures \
        --out benchmarks/results/sweep_rescore_inputs_openfe.json

Resumable: series already in ``OUT.jsonl`` (one line per series, written as each finishes)
are not run again; ``OUT`` gets the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Sequence


def openfe_systems(root: str) -> list[tuple[str, str, str, Optional[str]]]:
    """``(name, protein, ligands, cofactors or None)`` of each system folder under ``root``
    (OpenFE's ``prepared_structures``: ``SET/SYSTEM/protein.pdb`` and ``ligands.sdf``), less
    those of targets reserved for independent evaluation, which are not opened."""
    from get_md.datasets.targets import is_excluded

    out = []
    for protein in sorted(Path(root).glob("*/*/protein.pdb")):
        name = protein.parent.relative_to(root).as_posix()
        ligands, cofactors = protein.parent / "ligands.sdf", protein.parent / "cofactors.sdf"
        if is_excluded(name) or not ligands.is_file():
            continue
        out.append((f"openfe:{name}", str(protein), str(ligands), str(cofactors) if cofactors.is_file() else None))
    return out


def series_files(schrodinger: Optional[str], posed: Sequence[str], plb: Optional[str] = None,
                 openfe: Optional[str] = None, folders: Optional[str] = None,
                 ) -> list[tuple[str, str, str, Optional[str]]]:
    """``(name, protein, ligands, cofactors)`` of every series not reserved for independent evaluation."""
    from get_md.datasets.affinity import collect_series, folder_series, plb_series

    series = (collect_series(schrodinger, posed) + (plb_series(plb) if plb else [])
              + (folder_series(folders) if folders else []))
    return ([(s.name, s.protein, s.ligands, None) for s in series if s.target != "EXCLUDED"]
            + (openfe_systems(openfe) if openfe else []))


def run_one(name: str, protein: str, ligands: str, cofactors: Optional[str], model: Optional[str]) -> dict:
    """One ``get-md rescore-poses`` run in a fresh process (one torch thread)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "get_md.cli", "rescore-poses", protein, ligands, "--threads", "1",
               "--out-csv", f"{tmp}/out.csv", "--out-sdf", f"{tmp}/out.sdf", "--no-resume"]
        if cofactors:
            cmd += ["--cofactors", cofactors]
        if model:
            cmd += ["--model", model]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        seconds = time.perf_counter() - t0
    lines = [ln for ln in (p.stdout + p.stderr).splitlines()
             if ln.startswith(("get-md", "scored", "wrote"))]
    m = re.search(r"scored (\d+) of (\d+) pose", p.stdout + p.stderr)
    return {"series": name, "protein": protein, "ligands": ligands, "cofactors": cofactors, "rc": p.returncode,
            "scored": int(m.group(1)) if m else 0, "poses": int(m.group(2)) if m else None,
            "seconds": round(seconds, 1), "messages": lines[-6:]}


def summarise(rows: list[dict]) -> dict:
    """Counts of series that ran, and the messages of those that did not or skipped poses."""
    failed = [r for r in rows if r["rc"] != 0]
    skipped = [r for r in rows if r["rc"] == 0 and r["poses"] and r["scored"] < r["poses"]]
    return {"series": len(rows), "ran": len(rows) - len(failed), "failed": len(failed),
            "poses": sum(r["poses"] or 0 for r in rows), "scored": sum(r["scored"] for r in rows),
            "series_with_skipped_poses": len(skipped),
            "failures": [{"series": r["series"], "messages": r["messages"]} for r in failed],
            "skips": [{"series": r["series"], "messages": [m for m in r["messages"] if "skipped pose" in m]}
                      for r in skipped],
            "exit_codes": dict(Counter(str(r["rc"]) for r in rows))}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--schrodinger", help="structure_inputs folder of the Schrödinger FEP+ benchmark")
    ap.add_argument("--posed", nargs="*", default=[], help="folders of get_md.datasets.reference_poses")
    ap.add_argument("--plb", help="data folder of openforcefield/protein-ligand-benchmark")
    ap.add_argument("--openfe", help="prepared_structures folder of OpenFreeEnergy/IndustryBenchmarks2024")
    ap.add_argument("--folders", help="a folder of series folders (one *.pdb + ligands.sdf each), "
                    "as MCompChem/fep-benchmark")
    ap.add_argument("--model", help="model file or shipped name (default: the workflow's default)")
    ap.add_argument("--workers", type=int, default=2, help="runs at once (one torch thread each)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sweep_rescore_inputs.json")
    args = ap.parse_args(argv)
    if not (args.schrodinger or args.posed or args.plb or args.openfe or args.folders):
        ap.error("give --schrodinger, --posed, --plb, --openfe, --folders or several")
    jobs = series_files(args.schrodinger, args.posed, args.plb, args.openfe, args.folders)
    log = args.out.with_suffix(".jsonl")
    log.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if log.exists():
        for line in log.read_text().splitlines():
            row = json.loads(line)
            done[row["series"]] = row
    todo = [j for j in jobs if j[0] not in done]
    print(f"{len(jobs)} series, {len(done)} done before, {len(todo)} to run", flush=True)
    with open(log, "a") as fh, ThreadPoolExecutor(args.workers) as pool:
        for row in pool.map(lambda j: run_one(*j, args.model), todo):
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            done[row["series"]] = row
            if row["rc"] != 0:
                print(f"[{row['series']}] rc {row['rc']}: {row['messages'][-1] if row['messages'] else ''}",
                      flush=True)
    rows = [done[job[0]] for job in jobs]
    summary = summarise(rows)
    result = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
              "model": args.model or "default", **summary}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k not in ("failures", "skips")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
