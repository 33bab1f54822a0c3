"""The rescoring workflows (installed as ``get_md.workflows.rescoring``): docking poses
(``get-md rescore-poses``) and trajectory frames (``get-md rescore-traj``) scored with a
GET / GeoMFormer model.

Modules, one job each:

* :mod:`.options`: :class:`RunOptions`, the options both workflows share, and their
  command-line registration;
* :mod:`.model`: the scoring model over :mod:`get_md.runtime` (resolve, load once per
  process, run, reusable pocket terms);
* :mod:`.outputs`: outputs checked before any work, one run per output (``OUT.lock``),
  atomic writes; :mod:`.store`: finished batches kept for resuming (``OUT.csv.partial``);
* :mod:`.parallel`: batch sizes, batches on threads or a Dask cluster, read-ahead,
  progress bars;
* :mod:`.pocket`: pocket radius and selection, supported elements;
* poses: :mod:`.receptor` (receptor, hydrogens, reference), :mod:`.pose_records` (pose
  records as work items), :mod:`.poses` (scoring and :func:`rescore_poses`),
  :mod:`.sdf_output`;
* trajectories: :mod:`.frames` (topology, selections, streamed and checked frames),
  :mod:`.trajectory` (scoring and :func:`rescore_trajectory`);
* :mod:`.cli`: the two subcommands.

``get_md.workflows.poses``, ``get_md.workflows.trajectory`` and
``get_md.workflows._common`` re-export the public names from here.

Example:
    >>> from get_md.workflows.rescoring import RunOptions, rescore_poses
    >>> df = rescore_poses("rec.pdb", "vina_out.sdf",
    ...                    options=RunOptions(model="potential.pt", out_csv="rescored.csv"))  # doctest: +SKIP
"""

from .options import RunOptions
from .poses import rescore_poses
from .trajectory import rescore_trajectory

__all__ = ["RunOptions", "rescore_poses", "rescore_trajectory"]
