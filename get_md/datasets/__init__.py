"""Training and evaluation data sets built from public sources (affinity series, poses).

* :mod:`get_md.datasets.targets` -- canonical protein target names and the targets
  held out of every training, validation and model-selection set;
* :mod:`get_md.datasets.affinity` -- congeneric series with experimental binding free
  energies, turned into pocket + ligand graphs labelled in pK.
"""
