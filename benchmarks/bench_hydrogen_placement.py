"""How much the placement of added receptor hydrogens moves an interaction energy.

PoseBusters' 1ia1 (no hydrogens; ``tests/data/posebusters/1ia1``) is protonated
with OpenMM's Modeller from ``--starts`` random starting positions, with and without
the Amber14 relaxation that ``get_md.build.hydrogens.protonate_receptor`` uses, and
the crystal ligand (RDKit hydrogens) is rescored against each receptor with the
shipped potential (``rescore_poses(..., add_hydrogens="no")``). Prints and writes the
spread and mean of the interaction energies per placement.

    python benchmarks/bench_hydrogen_placement.py --starts 5
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RECEPTOR = ROOT / "tests" / "data" / "posebusters" / "1ia1" / "1ia1_protein_one_lig_removed.pdb"
LIGAND = ROOT / "tests" / "data" / "posebusters" / "1ia1" / "1ia1_ligand.sdf"


def protonated(seed: int, amber: bool, out: Path) -> None:
    """Receptor with hydrogens from one random start (templated residues only; the
    others are added back unchanged, as protonate_receptor does)."""
    from openmm import Platform
    from openmm.app import ForceField, Modeller, PDBFile

    pdb = PDBFile(str(RECEPTOR))
    Modeller._loadStandardHydrogenDefinitions()
    known = set(Modeller._residueHydrogens)
    m = Modeller(pdb.topology, pdb.positions)
    other = [r for r in m.topology.residues() if r.name not in known]
    rest = Modeller(m.topology, m.positions)
    rest.delete([r for r in m.topology.residues() if r.name in known])
    m.delete(other)
    platform = Platform.getPlatformByName("CPU")
    platform.setPropertyDefaultValue("Threads", "1")
    random.seed(seed)
    m.addHydrogens(ForceField("amber14-all.xml") if amber else None, pH=7.0, platform=platform)
    m.add(rest.topology, rest.positions)
    with open(out, "w") as fh:
        PDBFile.writeFile(m.topology, m.positions, fh, keepIds=True)


def main() -> None:
    from get_md.workflows.poses import rescore_poses
    from rdkit import Chem

    from get_md.build.hydrogens import ligand_with_hydrogens

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
                protonated(seed, amber, rec)
                df = rescore_poses(rec, lig, reference=lig, add_hydrogens="no", progress=False)
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
