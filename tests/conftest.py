"""Fixtures shared by several test files.

``one_thread``: torch on one thread for a whole test module (the tiny test models run
fastest on one thread, and the machine's few cores are shared). A module opts in with
``pytestmark = pytest.mark.usefixtures("one_thread")``.
"""

from __future__ import annotations

from typing import Iterator

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """torch.set_num_threads(1) for the module's tests; the previous count is restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
