"""get_md's error classes: one base (``get_md.GetMDError``), each class also of its builtin
base, importable where it always was; loaders keep the class of a model-file error."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import get_md
from get_md.errors import GetMDError

#: Packages walked: the library and the folders installed as its subpackages.
ROOTS = ("get_md", "get_md.plugins", "get_md.workflows")

#: Exception classes defined in get_md that are not errors, with the reason.
NOT_ERRORS: dict[str, str] = {
    "get_md.datasets.xtb.spec.SkipMolecule": (
        "control flow inside the xtb data generator: raised to skip one molecule and "
        "caught there, never seen by a caller"
    ),
}

#: Each error class, where it has always been importable, and its builtin base.
LEGACY = [
    ("get_md.export", "ModelFileError", ValueError),
    ("get_md.export", "ModelRunError", RuntimeError),
    ("get_md.zoo", "ZooError", ValueError),
    ("get_md.graph", "GraphError", ValueError),
    ("get_md.build", "GraphError", ValueError),
    ("get_md.train.config", "ConfigError", ValueError),
    ("get_md.train.data", "DatasetError", ValueError),
    ("get_md.train.loss", "LossError", ValueError),
    ("get_md.train.loop", "TrainError", ValueError),
    ("get_md.workflows._common", "WorkflowError", ValueError),
    ("get_md.workflows.nbody", "NBodyError", ValueError),
    ("get_md.workflows.nbody.protocol", "NBodyError", ValueError),
]


def _module_names() -> list[str]:
    names: list[str] = []
    for root in ROOTS:
        package = importlib.import_module(root)
        names.append(root)
        names += [m.name for m in pkgutil.walk_packages(package.__path__, root + ".")]
    return sorted(set(names))


def _exception_classes() -> dict[str, type]:
    """Every exception class defined in a get_md module: ``module.Class`` -> class."""
    found: dict[str, type] = {}
    for name in _module_names():
        module = importlib.import_module(name)  # an import error here is a failure too
        for obj in vars(module).values():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == name and not issubclass(obj, Warning)):
                found[f"{name}.{obj.__qualname__}"] = obj
    return found


def test_every_error_class_is_a_getmd_error():
    classes = _exception_classes()
    assert "get_md.errors.ModelFileError" in classes  # the walk sees the package
    assert set(NOT_ERRORS) <= set(classes), "stale NOT_ERRORS entry"
    strays = sorted(n for n, c in classes.items() if n not in NOT_ERRORS and not issubclass(c, GetMDError))
    assert not strays, f"error classes that do not derive from get_md.GetMDError: {strays}"
    defined_elsewhere = sorted(n for n, c in classes.items()
                               if n not in NOT_ERRORS and c.__module__ != "get_md.errors")
    assert not defined_elsewhere, f"define error classes in get_md/errors.py: {defined_elsewhere}"


@pytest.mark.parametrize(("module", "name", "builtin"), LEGACY)
def test_error_importable_where_it_was_and_keeps_its_builtin_base(module, name, builtin):
    cls = getattr(importlib.import_module(module), name)
    assert cls is getattr(importlib.import_module("get_md.errors"), name)
    assert issubclass(cls, GetMDError) and issubclass(cls, builtin)
    with pytest.raises(builtin, match="x.pdb: record 3"):
        raise cls("x.pdb: record 3: bad")


def test_package_exports_the_base():
    assert get_md.GetMDError is GetMDError
    assert get_md.ModelFileError is get_md.errors.ModelFileError
    assert "GetMDError" in get_md.__all__
    assert GetMDError.__mro__[1] is Exception


def test_a_bad_model_file_stays_a_model_file_error(tmp_path):
    """Loaders name their caller in the message but keep the error's class (it used to
    become a plain ValueError)."""
    from get_md.plugins.ase import GETCalculator

    from get_md.errors import ModelFileError, ZooError

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(ModelFileError, match=r"^GETCalculator: .*bad\.pt"):
        GETCalculator(str(bad))
    with pytest.raises(ZooError, match=r"^GETCalculator: .*no-such-model"):
        GETCalculator("no-such-model")


#: Builtin raises kept on purpose: TorchScript-compiled model code can raise only builtin
#: exceptions (get_md/models/ and get_md/nn/ methods that run inside model files), and
#: internal invariants that no input can trigger.
BUILTIN_RAISES_ALLOWED = {
    "get_md/export_pt2.py": "the eager graph step raises what the TorchScript model raises (periodic cell in dense mode)",
    "plugins/openmm_torchforce.py": "internal: TorchScript calls left after inlining",
    "workflows/rescoring/store.py": "internal: result-store state changed after the first batch",
}


def test_no_bare_value_or_runtime_errors_outside_compiled_model_code():
    """Errors for bad input are GetMDError subclasses (one line, file and record, CLI exit 2);
    a bare ``raise ValueError(...)`` / ``RuntimeError(...)`` is allowed only inside TorchScript
    model code (``forward`` and the methods it calls) and for the internal invariants above."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    found = []
    for folder in ("get_md", "plugins", "workflows"):
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            tree = ast.parse(path.read_text())
            for fn in ast.walk(tree):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                compiled = rel.startswith(("get_md/models/", "get_md/nn/")) and fn.name != "__init__"
                for node in ast.walk(fn):
                    if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                        name = getattr(node.exc.func, "id", None)
                        if name in ("ValueError", "RuntimeError") and not compiled \
                                and rel not in BUILTIN_RAISES_ALLOWED:
                            found.append(f"{rel}:{node.lineno} {name} in {fn.name}")
    assert not found, "raise a get_md.errors class instead:\n" + "\n".join(sorted(set(found)))
