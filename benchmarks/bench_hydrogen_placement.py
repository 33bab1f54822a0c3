"""How much the placement of added receptor hydrogens moves an interaction energy.

PoseBusters' 1ia1 (no hydrogens; ``tests/data/posebusters/1ia1``) is protonated
by ``get_md.build.hydrogens.protonate_receptor`` from ``--starts`` random starting
positions (``seed`` 1..N), with and without its Amber14 relaxation (``relax``), and
the crystal ligand (RDKit hydrogens) is rescored against each receptor with the
shipped potential (``rescore_poses(..., model="get-xtb-organic", add_hydrogens="no")``). Prints and writes the
spread and mean of the interaction energies per placement.

    python benchmarks/bench_hydrogen_placement.py --starts 5
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RECEPTOR = ROOT / "tests" / "data" / "posebusters" / "1ia1" / "1ia1_protein_one_lig_removed.pdb"
LIGAND = ROOT / "tests" / "data" / "posebusters" / "1ia1" / "1ia1_ligand.sdf"


def main() -> None:
    from get_md.workflows.poses import rescore_poses
    from rdkit import Chem

    from get_md.build.hydrogens import ligand_with_hydrogens, protonate_receptor

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--starts", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_hydrogen_placement.json")
    args = p.parse_args()
    result: dict = {"command": f"python benchmarks/bench_hydrogen_placement.py --starts {args.starts}"}
    with tempfile.TemporaryDirectory() as d:
        lig = Path(d) / "ligand_h.sdf"
        with Chem.SDWriter(str(lig)) as w:
            w.write(ligand_with_hydrogens(Chem.MolFromMolFile(str(LIGAND))))
        for name, amber in (("amber14", True), ("no_force_field", False)):
            values = []
            for seed in range(1, args.starts + 1):
                rec = Path(d) / f"rec_{name}_{seed}.pdb"
                protonate_receptor(RECEPTOR, rec, relax=amber, seed=seed)
                df = rescore_poses(rec, lig, model="get-xtb-organic", reference=lig, add_hydrogens="no",
                                   progress=False)
                values.append(float(df["interaction_energy_kcal_mol"][0]))
                print(name, seed, f"{values[-1]:.1f} kcal/mol", flush=True)
            result[name] = {"kcal_mol": values, "spread": float(np.ptp(values)), "mean": float(np.mean(values))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    for name in ("amber14", "no_force_field"):
        r = result[name]
        print(f"{name}: spread {r['spread']:.1f} kcal/mol, mean {r['mean']:.1f}")


if __name__ == "__main__":
    main()
