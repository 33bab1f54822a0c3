"""The import graph of get_md, read from the source with ``ast`` (nothing is imported but
the packages' locations): no cycle among the core modules, and no module imports another
get_md module's private (``_x``) names.

Imports at module level and inside functions both count: a lazy import hides a cycle
from the interpreter, not from the design.
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
from pathlib import Path

#: Packages walked: the library and the folders installed as its subpackages.
ROOTS = ("get_md", "get_md.plugins", "get_md.workflows")

#: Core modules (prefix match for packages): no import cycle among them.
CORE = ("get_md.export", "get_md.zoo", "get_md.runtime", "get_md.graph", "get_md.units",
        "get_md.models", "get_md.nn", "get_md.build")

#: Import edges left out of the cycle check, with the reason.
ALLOWED_EDGES: dict[tuple[str, str], str] = {
    ("get_md.export", "get_md.runtime"): (
        "export.load_model / export.resolve_model_path: aliases of the runtime functions for "
        "callers of the old API, looked up on attribute access (module __getattr__); "
        "export's own code does not use runtime"
    ),
}

#: (importing module, imported module, name) allowed although private, with the reason.
ALLOWED_PRIVATE: dict[tuple[str, str, str], str] = {}


def _modules() -> dict[str, Path]:
    """Module name -> source file, for every module under :data:`ROOTS`."""
    found: dict[str, Path] = {}

    def walk(package: str) -> None:
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations, package
        locations = list(spec.submodule_search_locations)
        found[package] = Path(locations[0]) / "__init__.py"
        for info in pkgutil.iter_modules(locations):
            name = f"{package}.{info.name}"
            if info.ispkg:
                walk(name)
            else:
                found[name] = Path(info.module_finder.path) / f"{info.name}.py"

    for root in ROOTS:
        walk(root)
    return found


class _Scan:
    """The get_md imports of one module, and its uses of private attributes of the get_md
    modules it binds to a name (``from get_md import export`` ... ``export._y``)."""

    def __init__(self, name: str, path: Path, modules: dict[str, Path]):
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        #: (imported module, imported name or "", line)
        self.imports: list[tuple[str, str, int]] = []
        bound: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "get_md":
                        self.imports.append((a.name, "", node.lineno))
                        if a.asname:
                            bound[a.asname] = a.name
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] != "get_md":
                    continue
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    if sub in modules:
                        self.imports.append((sub, "", node.lineno))
                        bound[a.asname or a.name] = sub
                    else:
                        self.imports.append((target, a.name, node.lineno))
        #: (module, private attribute, line)
        self.private_attributes = [
            (bound[node.value.id], node.attr, node.lineno) for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id in bound and bound[node.value.id] != name and _private(node.attr)
        ]


def _private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def _graph() -> tuple[dict[str, Path], dict[str, _Scan]]:
    modules = _modules()
    return modules, {m: _Scan(m, p, modules) for m, p in modules.items()}


def _is_core(module: str) -> bool:
    return any(module == c or module.startswith(c + ".") for c in CORE)


def _core_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_walk_finds_the_installed_subpackages():
    modules, _ = _graph()
    for name in ("get_md.export", "get_md.runtime", "get_md.units", "get_md.plugins.ase",
                 "get_md.workflows._common", "get_md.workflows.nbody.model", "get_md.build.molecule"):
        assert name in modules, name


def test_no_import_cycle_among_core_modules():
    modules, imports = _graph()
    edges: dict[str, set[str]] = {}
    for src, scan in imports.items():
        if not _is_core(src):
            continue
        for target, _name, _line in scan.imports:
            if target in modules and _is_core(target) and target != src \
                    and (src, target) not in ALLOWED_EDGES:
                edges.setdefault(src, set()).add(target)
    cycles = _core_cycles(edges)
    assert not cycles, "import cycles among core modules: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_allowed_edges_still_exist():
    """A whitelisted edge that is gone should leave the whitelist."""
    _, imports = _graph()
    for src, target in ALLOWED_EDGES:
        assert any(t == target for t, _n, _l in imports[src].imports), (src, target)


def _private_owner(module: str) -> str:
    """The package that owns ``module``'s first private part ("" for a public module):
    ``get_md.build._common`` -> ``get_md.build``."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if _private(part):
            return ".".join(parts[:i])
    return ""


def test_no_private_names_imported_from_other_get_md_modules():
    """A private name (``from get_md.x import _y``, or ``x._y`` after ``from get_md import
    x``) never crosses modules; a private module (``get_md.build._common``) is imported
    only inside the package that owns it."""
    modules, imports = _graph()
    bad = []
    for src, scan in imports.items():
        for target, name, line in scan.imports:
            if target == src or (src, target, name) in ALLOWED_PRIVATE:
                continue
            owner = _private_owner(target)
            foreign_module = bool(owner) and src != owner and not src.startswith(owner + ".")
            if _private(name) or foreign_module:
                bad.append(f"{modules[src]}:{line} ({src}) imports {target}{'.' + name if name else ''}")
        for target, attr, line in scan.private_attributes:
            if (src, target, attr) not in ALLOWED_PRIVATE:
                bad.append(f"{modules[src]}:{line} ({src}) uses {target}.{attr}")
    assert not bad, "private names imported across get_md modules:\n" + "\n".join(bad)
