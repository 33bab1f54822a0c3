"""The examples in get_md's docstrings run (those not marked ``# doctest: +SKIP``, which
need files or data the suite does not have)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import get_md.plugins
import get_md.workflows
import pytest

import get_md


def _modules() -> list[str]:
    names = {"get_md", "get_md.plugins", "get_md.workflows"}
    # plugins/ and workflows/ are mapped into the package from other folders: walked on their own
    for package in (get_md, get_md.plugins, get_md.workflows):
        names.update(name for _, name, _ in pkgutil.walk_packages(package.__path__, package.__name__ + "."))
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name):
    try:
        module = importlib.import_module(name)
    except ImportError as e:  # an optional dependency (Dask, PoseBusters, ...) is not installed
        pytest.skip(f"{name} does not import here: {e}")
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for test in doctest.DocTestFinder(exclude_empty=True).find(module, name):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
