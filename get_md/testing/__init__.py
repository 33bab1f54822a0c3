"""Test utilities for users of get_md (needs pytest, from the ``test`` extra).

:mod:`get_md.testing.model_suite` holds :class:`~get_md.testing.model_suite.ModelSuite`,
the checks every get_md model family passes (O(3) and permutation symmetry, forces =
-dE/dx, cutoff smoothness, batching, TorchScript and export round trips). Subclass it
in a ``test_*.py`` file to run them on your own model.

Example:
    >>> from get_md.testing.model_suite import ModelSuite  # doctest: +SKIP
"""

from __future__ import annotations

import pytest

# the suite's plain asserts get pytest's detailed failure messages
pytest.register_assert_rewrite("get_md.testing.model_suite")
