"""get_md.perf: the CPU allocator setting."""

import sys

import pytest

from get_md.perf import tune_cpu_allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tune_cpu_allocator_applies_once_and_is_idempotent():
    assert tune_cpu_allocator() is True
    assert tune_cpu_allocator() is True
