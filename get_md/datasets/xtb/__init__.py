"""GFN2-xTB labelled training data for get_md's default organic / biomolecular potential.

The generator picks molecules from offline sources (QM9 SMILES, the NCI set and
the kinase-ligand SDFs shipped with RDKit, MiniDrugBank from openmmforcefields,
capped and free small peptides built here, and protein-pocket clusters cut from
prolif's GPCR-ligand trajectory), makes thermally distorted geometries and
labels each with GFN2-xTB energy (eV) and forces (eV/Å) from tblite.

How geometries are made
-----------------------
Small molecules get a conformer (the file's 3D structure, or RDKit ETKDGv3 +
MMFF94 minimisation) and then a short Langevin (BAOAB) MD run on the MMFF94
surface (UFF where MMFF lacks parameters) at a temperature drawn per
conformer from ``T_RANGE`` (350-800 K); snapshots 50 fs apart after 100 fs of
thermalisation are labelled. Force-field MD costs ~1 ms per step against
20 ms-3 s for one xTB call, so nearly all of the budget goes into labels,
while the snapshots follow a Boltzmann-like distribution (bond stretches,
angle bends and torsions in proportion to their stiffness) rather than
isotropic noise; the hot end covers the distortions an MD run with the
trained potential must stay stable in. Pocket clusters are cut from frames of
a classical MD trajectory, which are thermal already, and labelled as cut.

Each labelled molecule is written to its own ``.npz`` in a store directory
as soon as it is done (atomic rename), skipped molecules are logged to
``skipped.jsonl``; a rerun with the same arguments skips both. ``assemble``
concatenates the store into one compressed file (see :func:`assemble`) and
assigns ``train`` / ``valid`` / ``test`` by molecule: the split is a hash of
the molecule's identity (uncharged, stereo-free canonical SMILES, so the same
compound met in two sources, as two conformers or as two protonation states,
lands in one split; for pocket clusters the centre residue).

Modules: :mod:`~get_md.datasets.xtb.spec` (settings, :class:`MolSpec`),
:mod:`~get_md.datasets.xtb.sources` and :mod:`~get_md.datasets.xtb.pockets` (the
molecules), :mod:`~get_md.datasets.xtb.sampling` (conformers, force-field MD),
:mod:`~get_md.datasets.xtb.label` (tblite calls), :mod:`~get_md.datasets.xtb.store`
(resumable store, assembly, split, summary) and :mod:`~get_md.datasets.xtb.cli` (the
command). ``get_md.train.xtb_data``, where this lived before, re-exports it.

Example:
    >>> from get_md.datasets.xtb import smiles_specs, generate, assemble
    >>> specs = smiles_specs(["O", "C"], n_frames=2)        # doctest: +SKIP
    >>> generate(specs, "/tmp/store", seed=0)               # doctest: +SKIP
    >>> data = assemble("/tmp/store", "/tmp/tiny.npz", seed=0)  # doctest: +SKIP

Command line (the shipped file was made with the command in
``get_md/datasets/data/README.md``)::

    OMP_NUM_THREADS=1 python -m get_md.datasets.xtb --out get_md/datasets/data/xtb_organic_v2.npz \\
        --store /tmp/xtb_store --seed 0      # the default plan: v2's 2,651 molecules
"""

from get_md.datasets.xtb.cli import main, scaled_plan
from get_md.datasets.xtb.label import canonical_identity, label_molecule, xtb_calculator, xtb_label
from get_md.datasets.xtb.pockets import cut_cluster, pocket_specs
from get_md.datasets.xtb.sampling import add_conformers, langevin_frames
from get_md.datasets.xtb.sources import (
    SOURCES,
    egfr_specs,
    from_mol,
    from_smiles,
    minidrugbank_specs,
    nci_specs,
    peptide_smiles,
    peptide_specs,
    plan_specs,
    qm9_specs,
    sdf_specs,
    smiles_specs,
)
from get_md.datasets.xtb.spec import (
    ALLOWED_Z,
    DEFAULT_MAX_ABS_CHARGE,
    DEFAULT_PLAN,
    MAX_ABS_CHARGE,
    MAX_FORCE,
    SOURCE_SAMPLING,
    SPLITS,
    T_RANGE,
    MolSpec,
    SkipMolecule,
    package_data_path,
    rng_for,
)
from get_md.datasets.xtb.store import (
    assemble,
    atomic_savez,
    done_keys,
    generate,
    safe_name,
    split_of,
    summary,
)

__all__ = [
    "ALLOWED_Z", "DEFAULT_MAX_ABS_CHARGE", "DEFAULT_PLAN", "MAX_ABS_CHARGE", "MAX_FORCE",
    "SOURCES", "SOURCE_SAMPLING", "SPLITS", "T_RANGE", "MolSpec", "SkipMolecule",
    "add_conformers", "assemble", "atomic_savez", "canonical_identity",
    "cut_cluster", "done_keys", "egfr_specs", "from_mol", "from_smiles", "generate",
    "label_molecule", "langevin_frames", "main", "minidrugbank_specs", "nci_specs",
    "package_data_path", "peptide_smiles", "peptide_specs", "plan_specs", "pocket_specs",
    "qm9_specs", "rng_for", "safe_name", "scaled_plan", "sdf_specs", "smiles_specs",
    "split_of", "summary", "xtb_calculator", "xtb_label",
]
