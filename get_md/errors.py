"""The errors get_md raises for bad input, bad files and failed runs.

Every one derives from :class:`GetMDError`, so ``except get_md.GetMDError`` catches
any of them, and also from the builtin class it has always been (``ValueError``,
or ``RuntimeError`` for :class:`ModelRunError`), so existing ``except ValueError``
code keeps working. Messages are one line that names the file and the record.

The classes are importable from here and from the modules that raise them
(``get_md.export.ModelFileError``, ``get_md.graph.GraphError``, ...). This module
imports nothing heavy (no torch).

Example:
    >>> from get_md.errors import GetMDError, ModelFileError
    >>> issubclass(ModelFileError, GetMDError) and issubclass(ModelFileError, ValueError)
    True
"""

from __future__ import annotations

__all__ = [
    "GetMDError",
    "ModelFileError",
    "ModelRunError",
    "ZooError",
    "GraphError",
    "ConfigError",
    "DatasetError",
    "LossError",
    "TrainError",
    "WorkflowError",
    "NBodyError",
    "PluginError",
]


class GetMDError(Exception):
    """Base of every error get_md raises on purpose; the message names the file and record.

    The ``get-md`` command prints such an error as one line and exits with code 2.
    """


# ----------------------------------------------------------------------------- model files
class ModelFileError(GetMDError, ValueError):
    """A model file that is missing, damaged or incompatible; the message names the path."""


class ModelRunError(GetMDError, RuntimeError):
    """A model file's forward raised; the message names the file, the input and the reason."""


class ZooError(GetMDError, ValueError):
    """Unknown or missing shipped model; the message lists the available names."""


# ----------------------------------------------------------------------------- structures
class GraphError(GetMDError, ValueError):
    """A structure that cannot become a valid graph; the message names file and record."""


# ----------------------------------------------------------------------------- training
class ConfigError(GetMDError, ValueError):
    """An invalid training configuration; the message names the file and the field."""


class DatasetError(GetMDError, ValueError):
    """Invalid sample or dataset file; the message names the file and the sample."""


class LossError(GetMDError, ValueError):
    """Model outputs and targets that do not fit together."""


class TrainError(GetMDError, ValueError):
    """Training cannot start or continue; the message says why."""


# ----------------------------------------------------------------------------- workflows
class WorkflowError(GetMDError, ValueError):
    """Bad input to a workflow (a clear one-line message; the CLI prints it and exits 2)."""


class PluginError(GetMDError, ValueError):
    """Bad input to an engine integration (ASE calculator, OpenMM force): wrong atom
    selection, model task, precision or backend; the message names the call."""


class NBodyError(GetMDError, ValueError):
    """Bad N-body data, model or option; the message names the file."""
