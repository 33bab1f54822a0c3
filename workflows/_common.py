"""Compatibility module: the machinery shared by the rescoring workflows now lives in
:mod:`get_md.workflows.rescoring` (one module per job: ``options``, ``outputs``,
``store``, ``model``, ``parallel``, ``pocket``, ``cli``). This module re-exports its
public names for code that imports them from here.

Patching a name here (``monkeypatch.setattr``) changes nothing: patch it in the module
that uses it (e.g. ``get_md.workflows.rescoring.model.get_module``).
"""

from __future__ import annotations

from get_md.atomic import atomic_output, atomic_path
from get_md.errors import WorkflowError
from get_md.perf import set_threads

from .rescoring.cli import setup_cli_logging
from .rescoring.model import (
    ModelRef,
    build_environment,
    environment_cache,
    get_module,
    resolve_model,
    run_model,
    score_columns,
    structure_energies,
)
from .rescoring.options import PathLike, RunOptions, add_drop_unsupported_option, add_run_options
from .rescoring.outputs import (
    OutputClaim,
    OutputLock,
    check_outputs,
    claim_outputs,
    claims_outputs,
    remove_stale_temporaries,
    stale_temporaries,
    write_csv_atomic,
)
from .rescoring.parallel import (
    DEFAULT_CPU_BATCH,
    MAX_AUTO_BATCH,
    auto_batch_size,
    chunked,
    fan_out,
    make_client,
    parallel_batches,
    prefetch,
    progress_bar,
)
from .rescoring.pocket import (
    DEFAULT_POCKET_RADIUS,
    element_check,
    pocket_radius_for,
    screen_pocket,
    supported_numbers,
    unsupported_blocks,
)
from .rescoring.poses import rank_values
from .rescoring.store import (
    CRASH_ENV,
    CRASH_EXIT_CODE,
    STORE_FORMAT,
    ProgressStore,
    file_fingerprint,
    progress_path,
)

__all__ = [
    "CRASH_ENV", "CRASH_EXIT_CODE", "DEFAULT_CPU_BATCH", "DEFAULT_POCKET_RADIUS", "MAX_AUTO_BATCH",
    "STORE_FORMAT", "ModelRef", "OutputClaim", "OutputLock", "PathLike", "ProgressStore",
    "RunOptions", "WorkflowError", "add_drop_unsupported_option", "add_run_options",
    "atomic_output", "atomic_path", "auto_batch_size", "build_environment", "check_outputs",
    "chunked", "claim_outputs", "claims_outputs", "element_check", "environment_cache",
    "fan_out", "file_fingerprint", "get_module", "make_client", "parallel_batches",
    "pocket_radius_for", "prefetch", "progress_bar", "progress_path", "rank_values",
    "remove_stale_temporaries", "resolve_model", "run_model", "score_columns", "screen_pocket",
    "set_threads", "setup_cli_logging", "stale_temporaries", "structure_energies",
    "supported_numbers", "unsupported_blocks", "write_csv_atomic",
]
