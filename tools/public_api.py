"""What counts as a module's public API: one answer for the reference
(docs/conf.py) and for the test that every public name has a docstring
(tests/test_docstrings.py)."""

from __future__ import annotations

import inspect
from typing import Any, Iterator


def home(obj: Any) -> str:
    """The name of the module that defines ``obj`` ("" if it says none)."""
    return (obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", "")) or ""


def public_names(module: Any, only_own: bool = False) -> Iterator[tuple[str, Any]]:
    """``(name, object)`` for each name of ``module.__all__`` (without one:
    each public name the module defines, in source order). With
    ``only_own``, only the objects microthreads defines:
    ``microthreads.net.socket`` re-exports the whole stdlib module, which is
    the stdlib's to document."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [name for name, obj in vars(module).items()
                 if not name.startswith("_") and home(obj) == module.__name__]
    for name in names:
        obj = getattr(module, name)
        if not only_own or home(obj).split(".")[0] == "microthreads":
            yield name, obj
