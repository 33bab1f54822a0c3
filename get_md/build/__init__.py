"""Builders: files and in-memory systems -> :class:`~get_md.graph.MolecularGraph`.

Every builder returns a validated graph (positions in Å) or raises
:class:`~get_md.graph.GraphError` (a ValueError) naming the file and the record.

============================  ==================================================
builder                       input
============================  ==================================================
:func:`from_pdb`              PDB (.pdb, .pdb.gz), biotite
:func:`from_mmcif`            mmCIF (.cif, .cif.gz) / BinaryCIF (.bcif), biotite
:func:`from_pdbqt`            receptor PDBQT (AutoDock types -> elements)
:func:`from_atom_array`       biotite AtomArray
:func:`from_rdkit`            RDKit molecule with a 3D conformer
:func:`from_sdf`              SDF / SDF.gz, all records (strict); :func:`iter_sdf` lenient
:func:`from_mol2`             MOL2, all records (strict); :func:`iter_mol2` lenient
:func:`read_poses`            poses by extension: .sdf, .mol2, Vina .pdbqt, .pdb (strict);
                              :func:`iter_poses` lenient, yields :class:`PoseRecord`
:func:`from_mdtraj`           mdtraj Trajectory frame (nm -> Å)
:func:`topology_template`     mdtraj Topology, reused for many frames
:func:`from_ase`              ase.Atoms
:func:`from_openmm`           OpenMM Topology + positions (nm -> Å)
:func:`make_complex`          receptor (segment 0) + ligand (segment 1)
:func:`add_cofactors`         cofactor molecules joined to a receptor (segment 0)
:func:`select_pocket`         receptor blocks near a ligand
:func:`pocket_complex`        both of the above
============================  ==================================================

File helpers: :func:`open_text` / :func:`read_text` (gzip-transparent text),
:func:`base_suffix` (extension without ``.gz``).

Example:
    >>> from get_md.build import from_pdb, from_sdf, pocket_complex   # doctest: +SKIP
    >>> rec = from_pdb("rec.pdb")                                     # doctest: +SKIP
    >>> lig = from_sdf("poses.sdf")[0]                                # doctest: +SKIP
    >>> graph = pocket_complex(rec, lig, radius=10.0)                 # doctest: +SKIP
"""

from get_md.build._common import base_suffix, open_text, read_text, residue_kind
from get_md.build.atoms import from_ase, from_openmm
from get_md.build.complex import add_cofactors, make_complex, pocket_complex, select_pocket
from get_md.build.molecule import (
    PoseRecord,
    from_mol2,
    from_rdkit,
    from_sdf,
    iter_mol2,
    iter_pdb_poses,
    iter_poses,
    iter_sdf,
    read_pose_records,
    read_poses,
)
from get_md.build.structure import (
    autodock_element,
    from_atom_array,
    from_mmcif,
    from_pdb,
    from_pdbqt,
)
from get_md.build.trajectory import TopologyTemplate, from_mdtraj, topology_template
from get_md.graph import GraphError

__all__ = [
    "GraphError",
    "PoseRecord",
    "TopologyTemplate",
    "autodock_element",
    "base_suffix",
    "from_ase",
    "from_atom_array",
    "from_mdtraj",
    "from_mmcif",
    "from_mol2",
    "from_openmm",
    "from_pdb",
    "from_pdbqt",
    "from_rdkit",
    "from_sdf",
    "iter_mol2",
    "iter_pdb_poses",
    "iter_poses",
    "iter_sdf",
    "add_cofactors",
    "make_complex",
    "open_text",
    "pocket_complex",
    "read_pose_records",
    "read_text",
    "read_poses",
    "residue_kind",
    "select_pocket",
    "topology_template",
]
