"""Unit constants at get_md's boundaries (one place; every module imports them from here).

Inside models, model files and graphs: Å, eV, e, fs; scores pK = -log10 K. Conversions
happen only where data enters or leaves:

=============================  ==================  =======================================
constant                       value               used at
=============================  ==================  =======================================
``NM_TO_ANGSTROM``             10                  mdtraj / OpenMM positions and boxes (nm)
``ANGSTROM_TO_NM``             0.1                 the reverse
``EV_TO_KJ_PER_MOL``           96.48533212331      OpenMM energies (kJ/mol)
``EV_PER_A_TO_KJ_PER_MOL_NM``  964.8533212331      OpenMM forces (kJ/mol/nm)
``EV_TO_KCAL_MOL``             23.060547830619...  rescoring outputs (kcal/mol)
``PS_TO_FS``                   1000                time: mdtraj / OpenMM (ps) to fs
``RT_LN10_KCAL_MOL``           1.3642470130...     pK = -ΔG / (RT ln 10) at 298.15 K
=============================  ==================  =======================================

Energies: CODATA 2018 (e = 1.602176634e-19 C, N_A = 6.02214076e23 / mol, R =
8.314462618 J / mol / K, thermochemical calorie 4.184 J).

Example:
    >>> from get_md.units import EV_TO_KCAL_MOL, pk_from_dg
    >>> round(EV_TO_KCAL_MOL, 4), round(pk_from_dg(-8.1857), 2)
    (23.0605, 6.0)
"""

from __future__ import annotations

import math

#: Å per nm.
NM_TO_ANGSTROM = 10.0
#: nm per Å.
ANGSTROM_TO_NM = 0.1
#: 1 eV in kJ/mol (e * N_A / 1000).
EV_TO_KJ_PER_MOL = 96.48533212331
#: 1 eV/Å in kJ/mol/nm.
EV_PER_A_TO_KJ_PER_MOL_NM = 964.8533212331
#: 1 eV in kcal/mol (e * N_A / 4184 J).
EV_TO_KCAL_MOL = 1.602176634e-19 * 6.02214076e23 / 4184.0
#: fs per ps.
PS_TO_FS = 1000.0
#: Temperature of affinities given as ΔG, K.
AFFINITY_TEMPERATURE = 298.15
#: RT ln 10 at :data:`AFFINITY_TEMPERATURE`, kcal/mol: pK = -ΔG / RT_LN10_KCAL_MOL.
RT_LN10_KCAL_MOL = 8.314462618e-3 / 4.184 * AFFINITY_TEMPERATURE * math.log(10.0)


def pk_from_dg(dg_kcal_mol: float) -> float:
    """pK = -log10(K_d) from a binding free energy in kcal/mol at 298.15 K.

    Example:
        >>> round(pk_from_dg(-8.1857), 2)
        6.0
    """
    return -float(dg_kcal_mol) / RT_LN10_KCAL_MOL

