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

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_applied = False


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
