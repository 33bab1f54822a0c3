"""Simulation-engine plugins: ASE calculator and OpenMM forces.

* :mod:`get_md.plugins.ase` — :class:`~get_md.plugins.ase.GETCalculator`;
* :mod:`get_md.plugins.openmm` — :func:`~get_md.plugins.openmm.create_force`,
  :func:`~get_md.plugins.openmm.add_force` and the openmm-ml potential factories.

Submodules are imported on use, so ``import get_md.plugins`` needs neither ASE nor OpenMM.
"""
