"""A second preparation of the Schrödinger series whose heavy-atom poses differ: every
ligand but the series' first re-posed from its SMILES on the first one
(``get_md.datasets.ligand_posing.pose_ligand``: MCS-constrained embedding, restrained MMFF
minimisation in the pocket, least-clashing conformer — the recipe that posed the Uni-FEP
series), written as :func:`get_md.datasets.affinity.posed_series` folders whose records
carry ``preparation = reposed`` (so ``affinity data`` keeps them next to Schrödinger's own
poses instead of dropping them as duplicates).

Series of the targets kept for independent evaluation are never read; ``--targets`` picks
targets (default: every target not held out or used for validation by
``get_md.train.affinity``).

    python benchmarks/repose_series.py --schrodinger structure_inputs --out data/reposed --shard 0/2 &
    python benchmarks/repose_series.py --schrodinger structure_inputs --out data/reposed --shard 1/2
    python -m get_md.train.affinity data --schrodinger structure_inputs --posed data/reposed --out data/affinity_reposed
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def repose_series(series, out_dir: Path, seed: int = 0) -> dict:
    """Re-pose every ligand of ``series`` (a Schrödinger :class:`Series`) on its first one."""
    from rdkit import Chem

    from get_md.datasets.affinity import DG_TAG
    from get_md.datasets.ligand_posing import heavy_xyz, pose_ligand, read_reference
    from get_md.datasets.pocket_clash import pocket_near_reference

    t0 = time.perf_counter()
    records = [m for m in Chem.SDMolSupplier(series.ligands, removeHs=False) if m is not None]
    if len(records) < 2:
        return {"series": series.name, "posed": 0, "dropped": 0, "seconds": 0.0}
    ref_full, ref_heavy = read_reference(Chem.MolToMolBlock(records[0]))
    pdb_text = Path(series.protein).read_text(errors="replace")
    pocket_xyz, _ = pocket_near_reference(pdb_text, heavy_xyz(ref_full))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "protein.pdb").write_text(pdb_text)
    posed = dropped = 0
    with Chem.SDWriter(str(out_dir / "ligands.sdf.part")) as w:
        for rec in records[1:]:
            if not rec.HasProp(DG_TAG):
                continue
            smiles = Chem.MolToSmiles(Chem.RemoveHs(rec))
            try:
                mol, info = pose_ligand(smiles, ref_full, ref_heavy, pocket_xyz, seed=seed)
            except Exception as e:  # noqa: BLE001 - one odd ligand must not stop the series
                mol, info = None, {"reason": f"{type(e).__name__}: {e}"}
            if mol is None:
                dropped += 1
                continue
            for key in list(mol.GetPropNames()):
                mol.ClearProp(key)
            mol.SetProp("_Name", rec.GetProp("_Name"))
            for key, value in ((DG_TAG, rec.GetProp(DG_TAG)), ("target", series.target),
                               ("series", f"reposed:{series.name}"), ("preparation", "reposed"),
                               ("source", f"{series.source} (re-posed on its first ligand)"),
                               ("mcs_fraction", f"{info['mcs_fraction']:.3f}")):
                mol.SetProp(key, str(value))
            w.write(mol)
            posed += 1
    if posed:
        (out_dir / "ligands.sdf.part").rename(out_dir / "ligands.sdf")
    else:  # an empty ligands.sdf would stop `affinity data`; the folder marks the series done
        (out_dir / "ligands.sdf.part").unlink()
        (out_dir / "protein.pdb").unlink()
        (out_dir / "none_posed").write_text("every ligand dropped\n")
    return {"series": series.name, "posed": posed, "dropped": dropped,
            "seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> int:
    from get_md.datasets.affinity import schrodinger_series
    from get_md.train.affinity import HELD_OUT_TARGETS, VALID_TARGETS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schrodinger", required=True, help="structure_inputs folder")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--targets", nargs="*", help="only these targets (default: the training ones)")
    ap.add_argument("--shard", default="0/1", help="K/N: every N-th series from the K-th")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    k, n = (int(x) for x in args.shard.split("/"))
    kept_out = set(HELD_OUT_TARGETS) | set(VALID_TARGETS)
    series = [s for s in schrodinger_series(args.schrodinger) if s.target != "EXCLUDED"
              and (s.target in set(args.targets) if args.targets else s.target not in kept_out)]
    for s in series[k::n]:
        folder = args.out / s.name.replace("/", "__")
        if (folder / "ligands.sdf").is_file() or (folder / "none_posed").is_file():
            continue
        print(json.dumps(repose_series(s, folder, args.seed)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
