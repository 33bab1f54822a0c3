"""CPU performance settings for large systems.

Graphs of thousands of atoms make tensors of tens to hundreds of MB. glibc's malloc
serves such blocks with ``mmap`` and returns them to the system on ``free``, so every
forward and backward pass page-faults its buffers in again: on a 10,000-atom water box
this doubled the time of a GET force call (29.5 s -> 14.1 s with the setting below,
one thread) and made the cost grow 15x from 1,000 to 10,000 atoms instead of 10x.
:func:`tune_cpu_allocator` keeps freed memory in the process heap instead (the same as
starting Python with ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647``). The
price: the process keeps its peak memory until it exits.

The ``get-md`` command line calls it; library users (ASE, OpenMM) call it once at the
start of a long MD run or rescoring job.

Example:
    >>> from get_md.perf import tune_cpu_allocator
    >>> tune_cpu_allocator()   # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import sys
import threading
from typing import Optional

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_applied = False
_flush_state = threading.local()
_TEAM_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def set_threads(n: Optional[int]) -> None:
    """``torch.set_num_threads(n)`` for a command's ``--threads`` (None: torch's default, one
    thread per core). Give 1 to processes that run side by side: two affinity members at the
    default on 2 cores took 537 s an epoch instead of 116 s.

    Raises:
        ConfigError: ``n`` below 1.

    Example:
        >>> set_threads(None)  # torch's default
    """
    if n is None:
        return
    if n < 1:
        from get_md.errors import ConfigError

        raise ConfigError(f"--threads must be >= 1, got {n}")
    import torch

    torch.set_num_threads(int(n))


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the heap (glibc ``mallopt``); True if applied (Linux glibc only)."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or no libc: nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    _applied = bool(ok)
    return _applied


def plain_executor():
    """Context manager: TorchScript calls in this thread skip the profiling executor's
    optimisation passes (``torch.jit.optimized_execution(False)``; thread-local).

    get_md's ASE calculator, OpenMM PythonForce and rescoring workflows call their
    models inside it. With the default executor, a GET force call (forward + autograd
    backward) runs a symbolically differentiated graph whose backward splits fused
    kernels such as SiLU's into separate elementwise passes, after several slow
    profiling calls. Measured on a 1,000-atom water box (GET d_hidden 64, 3 layers,
    float32, 1 thread, 10 calls per process, alternating processes): steady state
    0.65-0.69 s instead of 0.90-0.93 s, peak memory 1.25 GB instead of 2.8 GB, and no
    slow first calls; a 10,000-atom box called first at full size needed 9.5 GB
    instead of more than the machine's 23 GB. Outputs are the same to float rounding.

    ``openmmtorch.TorchForce`` runs the module in OpenMM's C++ loop, on the thread that
    calls ``simulation.step``; :func:`get_md.plugins.openmm.create_force` therefore
    switches that thread to the plain executor for good (:func:`use_plain_executor`).
    """
    import torch

    return torch.jit.optimized_execution(False)


def use_plain_executor() -> bool:
    """Switch the calling thread to TorchScript's plain executor (as inside
    :func:`plain_executor`) until :func:`restore_executor`; returns the previous setting.

    For models called where no context manager can reach, such as an
    ``openmmtorch.TorchForce`` run from OpenMM's C++ loop on this thread. Thread-local,
    like ``plain_executor``; the results are the same, only the speed changes (nequip
    likewise sets TorchScript's executor options for the process when it loads a model).

    Example:
        >>> from get_md.perf import restore_executor, use_plain_executor
        >>> previous = use_plain_executor()
        >>> restore_executor(previous)
    """
    import torch

    return bool(torch._C._get_graph_executor_optimize(False))


def restore_executor(optimize: bool) -> None:
    """Set the calling thread's TorchScript executor back (``optimize``: the value
    :func:`use_plain_executor` returned)."""
    import torch

    torch._C._get_graph_executor_optimize(bool(optimize))


@functools.lru_cache(maxsize=1)
def _gomp_parallel():
    """``GOMP_parallel`` of the OpenMP runtime torch loaded (libgomp, or LLVM's libomp,
    which exports it too), typed for a ``void (*)(void *)`` callback; None where not found."""
    if not sys.platform.startswith("linux"):
        return None
    import os

    import torch

    torch_dir = os.path.dirname(torch.__file__)
    try:
        with open("/proc/self/maps") as maps:
            # the runtime in torch's own folder first (another library may have loaded a
            # second OpenMP runtime, whose threads are not torch's)
            paths = sorted({line.split()[-1] for line in maps
                            if any(name in line for name in ("libgomp", "libomp", "libiomp"))},
                           key=lambda path: (not path.startswith(torch_dir), path))
        parallel = ctypes.CDLL(paths[0]).GOMP_parallel if paths else None
    except (OSError, AttributeError):
        return None
    if parallel is not None:
        parallel.argtypes = [_TEAM_CALLBACK, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        parallel.restype = None
    return parallel


def _openmp_team_call(fn) -> int:
    """Run the Python callable ``fn()`` once on each thread of the calling thread's
    OpenMP team (torch's intra-op CPU workers); returns how many threads ran it, 0
    where there is no team to reach (one thread, or no OpenMP runtime found)."""
    import torch

    n_threads = torch.get_num_threads()
    parallel = _gomp_parallel() if n_threads > 1 else None
    if parallel is None:
        return 0
    ran = []

    def on_thread(_data) -> None:
        fn()
        ran.append(1)

    callback = _TEAM_CALLBACK(on_thread)  # kept alive until the call returns
    parallel(callback, None, n_threads, 0)
    return len(ran)


def _set_flush_denormal(enable: bool) -> None:
    """FTZ/DAZ on or off on the calling thread and its OpenMP team."""
    import torch

    def on_thread() -> None:
        torch.set_flush_denormal(enable)

    on_thread()
    _openmp_team_call(on_thread)


@contextlib.contextmanager
def flush_denormals():
    """Context manager: CPU arithmetic treats subnormal float32 values (below
    1.2e-38) as zero, on the calling thread and on torch's OpenMP worker threads
    (x86 FTZ/DAZ through ``torch.set_flush_denormal``; restored on exit).

    Trained networks make subnormals: SiLU of a pre-activation below about -87 is
    one, and weight decay leaves weights there (:func:`get_md.export.flush_subnormal_`
    zeroes those in saved files). Each subnormal operand sends an x86 multiply down a
    microcode path about 100 times slower, and a matrix product waits for its slowest
    thread. Measured on get-affinity rescoring (32 poses, 10 A pocket, 2 threads):
    19.6-22.0 poses/s instead of 12.4-13.1
    (``benchmarks/results/bench_rescore_affinity_flush.json``). Values of that size
    change no output a model reports (they are 1e-30 of the activations around them).

    ``torch.set_flush_denormal`` sets only the thread that calls it, and torch's
    OpenMP workers keep the mode they had when they started; this manager therefore
    also runs it once on each worker of the calling thread's team (through the
    OpenMP runtime's ``GOMP_parallel``). Where that runtime is not found (not Linux,
    one thread) only the calling thread is set. Nested use is cheap: only the
    outermost level switches.

    Example:
        >>> import torch
        >>> from get_md.perf import flush_denormals
        >>> with flush_denormals():
        ...     y = torch.tensor([1e-39]) * 1.0
        >>> float(y[0]) < 1e-38   # 0.0 on x86 CPUs with FTZ/DAZ, else the subnormal itself
        True
    """
    depth = getattr(_flush_state, "depth", 0)
    _flush_state.depth = depth + 1
    try:
        if depth == 0:
            _set_flush_denormal(True)
        yield
    finally:
        _flush_state.depth = depth
        if depth == 0:
            _set_flush_denormal(False)
