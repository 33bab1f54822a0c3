"""How often bond-order perception gives a ligand the chemistry codes its SDF gives it.

``rescore-traj`` with a score model built with ``ligand_chemistry`` perceives the ligand's
bond orders and charges from its topology (elements, bonds, explicit hydrogens;
:func:`get_md.build.ligand_chemistry.perceive_molecule`). Here every ligand of every SDF
under a folder is stripped to elements, coordinates and bonds, perceived, and its codes
(:func:`~get_md.build.ligand_chemistry.chemistry_positions`, compared as multisets, since
which oxygen of a carboxylate carries the charge is arbitrary) compared with those of the
SDF's own molecule: with the net charge searched (what ``rescore-traj`` does by default)
and given (``--ligand-charge``). Targets reserved for independent evaluation are skipped by
path (:func:`get_md.datasets.targets.is_excluded`).

    python benchmarks/perceived_chemistry.py structure_inputs --out benchmarks/results/perceived_chemistry.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path


def compare(folder: Path, searched: bool) -> dict:
    from rdkit import Chem, RDLogger

    from get_md.build.ligand_chemistry import chemistry_positions, perceive_molecule
    from get_md.datasets.targets import is_excluded
    from get_md.graph import GraphError

    RDLogger.DisableLog("rdApp.*")
    counts = {"ligands": 0, "same_codes": 0, "other_codes": 0, "refused": 0}
    examples: list[dict] = []
    t0 = time.perf_counter()
    for path in sorted(folder.rglob("*.sdf")):
        if any(is_excluded(part) for part in path.relative_to(folder).parts) or is_excluded(path.stem):
            continue
        for mol in Chem.SDMolSupplier(str(path), removeHs=False):
            if mol is None:
                continue
            counts["ligands"] += 1
            z = [a.GetAtomicNum() for a in mol.GetAtoms()]
            bonds = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]
            charge = None if searched else Chem.GetFormalCharge(mol)
            name = f"{path.relative_to(folder)}: {mol.GetProp('_Name') if mol.HasProp('_Name') else '?'}"
            try:
                got = perceive_molecule(z, mol.GetConformer().GetPositions(), bonds, charge=charge, name=name)
            except GraphError as e:
                counts["refused"] += 1
                examples.append({"ligand": name, "refused": str(e)[len(name) + 2:][:160]})
                continue
            if sorted(chemistry_positions(got).tolist()) == sorted(chemistry_positions(mol).tolist()):
                counts["same_codes"] += 1
            else:
                counts["other_codes"] += 1
                examples.append({"ligand": name, "sdf": Chem.MolToSmiles(Chem.RemoveHs(mol)),
                                 "perceived": Chem.MolToSmiles(Chem.RemoveHs(got, sanitize=False))})
    n = max(counts["ligands"], 1)
    return dict(counts, same_fraction=round(counts["same_codes"] / n, 4),
                seconds=round(time.perf_counter() - t0, 1), differences=examples)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("folder", type=Path, help="folder of ligand SDF files with hydrogens and bond orders")
    p.add_argument("--out", type=Path, help="JSON result")
    args = p.parse_args()
    logging.disable(logging.WARNING)  # the ambiguity warnings, one per ligand
    result = {"command": f"python benchmarks/perceived_chemistry.py {args.folder.name}"
                         + (f" --out {args.out}" if args.out else ""),
              "charge_searched": compare(args.folder, searched=True),
              "charge_given": compare(args.folder, searched=False)}
    for key in ("charge_searched", "charge_given"):
        r = result[key]
        print(f"{key}: {r['same_codes']} of {r['ligands']} ligands with the SDF's codes, {r['other_codes']} "
              f"other, {r['refused']} refused ({r['seconds']} s)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
