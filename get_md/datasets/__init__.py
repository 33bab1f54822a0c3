"""Training and evaluation data sets built from public sources (affinity series, poses).

* :mod:`get_md.datasets.targets` -- canonical protein target names and the targets
  held out of every training, validation and model-selection set;
* :mod:`get_md.datasets.affinity` -- congeneric series with experimental binding free
  energies, turned into pocket + ligand graphs labelled in pK;
* :mod:`get_md.datasets.xtb` -- the GFN2-xTB (tblite) energy / force data generator
  behind the shipped potential; its output ``xtb_organic_v2.npz`` ships in
  :data:`DATA_DIR` (``get_md/datasets/data/``, with a README).
"""

from pathlib import Path

#: Folder of the data files shipped with get_md (installed as package data).
DATA_DIR = Path(__file__).resolve().parent / "data"
