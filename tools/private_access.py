"""Count reaches into another object's private state across the modules of
microthreads/ and chat/ (the runtime and the service on it: one count, one limit).

A reach is one of:

- an attribute access ``obj._name`` (one leading underscore, not a dunder),
  read or stored, where ``obj`` is not ``self`` or ``cls`` and the same
  module does not own ``_name``;
- ``from module import _name`` of a module of the package (not the
  module's own).

A module owns the private names it defines: a function or class, a class
attribute, a ``__slots__`` entry, a module-level name, a ``self._name = ...``
store; and a name it stores on other objects (``g._seq = 0``: the hub keeps
its per-greenlet wait state on the greenlets it parks) when no other module
defines it. So a module may use its own private state freely, through any
object; what it may not do is read, write or import another module's.
Also checks that the modules of the packages import no circle among themselves,
counting imports inside functions too (a deferred import hides a circle, it
does not break it); imports under ``if TYPE_CHECKING:`` do not count.

    python tools/private_access.py            # the count and every reach
    python tools/private_access.py --quiet    # the count only

Exit status 1 if the count is over ``LIMIT`` or an import circle exists.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

#: The most reaches the packages may have together (issue 11: at most 10).
LIMIT = 10
ROOT = Path(__file__).resolve().parent.parent
#: The packages counted, and whose imports of each other are followed.
PACKAGES = (ROOT / "microthreads", ROOT / "chat")
NAMES = tuple(package.name for package in PACKAGES)


def _ours(module: str) -> bool:
    """Whether ``module`` (dotted) is one of PACKAGES' modules."""
    return module.split(".")[0] in NAMES


def _paths() -> list[Path]:
    """Every module of PACKAGES."""
    return sorted(path for package in PACKAGES for path in package.rglob("*.py"))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined(tree: ast.Module) -> tuple[set[str], set[str]]:
    """(the private names this module defines, those it stores on other objects)."""
    defined: set[str] = set()
    stored: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                defined.add(node.attr)
            else:
                stored.add(node.attr)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    defined.add(target.id)
                    if target.id == "__slots__" and node.value is not None:
                        for elt in ast.walk(node.value):
                            if isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                                defined.add(elt.value)
    private = {name for name in defined if _is_private(name)}
    return private, {name for name in stored if _is_private(name)} - private


def _package_module(node: ast.ImportFrom, path: Path) -> str | None:
    """The package module a ``from ... import`` reads, or None if not the package's."""
    if node.level:
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        base = package.split(".")
        base = base[:len(base) - node.level + 1]
        return ".".join(base + ([node.module] if node.module else []))
    if _ours(node.module or ""):
        return node.module
    return None


def reaches(path: Path, elsewhere: set[str] | None = None) -> list[tuple[int, str]]:
    """(line, source text) of each reach into another module's private state.

    ``elsewhere``: the private names the package's other modules define (a
    store of one of them on another object is a reach, not ownership).
    """
    tree = ast.parse(path.read_text(), str(path))
    defined, stored = _defined(tree)
    owned = defined | (stored - (elsewhere or set()))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr) \
                and node.attr not in owned:
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.ImportFrom) and _package_module(node, path) is not None:
            for alias in node.names:
                if _is_private(alias.name):
                    found.append((node.lineno, f"from {'.' * node.level}{node.module or ''}"
                                               f" import {alias.name}"))
    return sorted(found)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """The package modules this module imports, wherever the import runs."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not _ours(target):
                continue
            names = [f"{target}.{alias.name}" for alias in node.names]
            found.update(name for name in names if _exists(name))
            found.add(target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names
                         if _ours(alias.name))
    found.discard(module)
    return {name for name in found if _exists(name)}


def _runtime_imports(tree: ast.AST) -> list[ast.stmt]:
    """Every import statement that runs, at module level or inside a function;
    not those under ``if TYPE_CHECKING:`` (annotations only)."""
    found: list[ast.stmt] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found.extend(_runtime_imports(ast.Module(body=node.orelse, type_ignores=[])))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        else:
            found.extend(_runtime_imports(node))
    return found


def _exists(module: str) -> bool:
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def import_cycles() -> list[list[str]]:
    """Every circle of imports among the packages' modules.

    A package's ``__init__`` importing its submodules is not a circle: the
    edges from a submodule to its own package are left out.
    """
    graph = {}
    for path in _paths():
        module = _module_name(path)
        graph[module] = {target for target in imports(path)
                         if not module.startswith(target + ".")}
    cycles, seen = [], set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            cycle = stack[stack.index(node):]
            key = frozenset(cycle)
            if key not in seen:
                seen.add(key)
                cycles.append(cycle + [node])
            return
        for target in sorted(graph.get(node, ())):
            visit(target, stack + [node])

    for module in graph:
        visit(module, [])
    return cycles


def count() -> dict[str, list[tuple[int, str]]]:
    """{module path: its reaches}, for every module with at least one."""
    paths = _paths()
    defined = {path: _defined(ast.parse(path.read_text(), str(path)))[0] for path in paths}
    result = {}
    for path in paths:
        elsewhere = set().union(*(names for other, names in defined.items() if other != path))
        found = reaches(path, elsewhere)
        if found:
            result[str(path.relative_to(ROOT))] = found
    return result


def main(argv: list[str]) -> int:
    found = count()
    total = sum(len(items) for items in found.values())
    if "--quiet" not in argv:
        for path, items in found.items():
            for line, text in items:
                print(f"{path}:{line}: {text}")
    print(f"private reaches across modules: {total} (limit {LIMIT})")
    cycles = import_cycles()
    for cycle in cycles:
        print("import circle: " + " -> ".join(cycle))
    print(f"import circles: {len(cycles)}")
    return 1 if total > LIMIT or cycles else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
