"""Every public name of the package has a docstring (DESIGN.md, "Every public
name ... states its contract and how it fails"): every module of
``microthreads`` (``import microthreads``, ``microthreads.net`` and its
submodules, ``aio``, ``monkey``, ``subprocess``, ``testing``, ``wsgi``, ...),
each name in its ``__all__`` (without one: each public name it defines), and
each public method and property of each public class.

What a docstring says is for review to judge; that there is one, this test.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import types
from pathlib import Path

import pytest

import microthreads

_TOOL = Path(__file__).resolve().parent.parent / "tools" / "public_api.py"
_spec = importlib.util.spec_from_file_location("public_api", _TOOL)
public_api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(public_api)

#: Modules that need an extra that may be missing: skipped, with the reason.
OPTIONAL = {"microthreads.wsgi": "httptools", "microthreads.wsgi.server": "httptools",
            "microthreads.wsgi.__main__": "httptools", "microthreads.websocket": "wsproto",
            "microthreads.gunicorn": "gunicorn"}


def _documented(obj):
    return bool((getattr(obj, "__doc__", None) or "").strip())


def public_names(module):
    """``(qualified name, object)`` of each public class and function of
    ``module`` that microthreads defines (submodules are walked themselves)."""
    for name, obj in public_api.public_names(module, only_own=True):
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
            yield f"{module.__name__}.{name}", obj


def _inherited_doc(cls, name):
    """The docstring of ``name`` on a microthreads base class of ``cls``: an
    implementation of a contract stated once on the base (``Poller.register``)
    needs no docstring of its own; an override of a stdlib method does."""
    for base in cls.__mro__[1:]:
        value = vars(base).get(name)
        if value is not None and public_api.home(base).startswith("microthreads"):
            value = value.fget if isinstance(value, property) else value
            return _documented(value)
    return False


def members(cls):
    """The public methods and properties that ``cls`` itself defines."""
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            yield name, value.fget
        elif isinstance(value, (staticmethod, classmethod)):
            yield name, value.__func__
        elif inspect.isfunction(value):
            yield name, value


def undocumented(module):
    """The public names of ``module`` (and of its classes) without a docstring."""
    missing = [] if _documented(module) else [module.__name__]
    for qualname, obj in public_names(module):
        if not _documented(obj):
            missing.append(qualname)
        if inspect.isclass(obj):
            missing += [f"{qualname}.{name}" for name, fn in members(obj)
                        if not _documented(fn) and not _inherited_doc(obj, name)]
    return missing


def _modules():
    yield "microthreads"
    for info in pkgutil.walk_packages(microthreads.__path__, "microthreads."):
        yield info.name


@pytest.mark.parametrize("modname", sorted(_modules()))
def test_every_public_name_of_the_module_has_a_docstring(modname):
    if modname in OPTIONAL:
        pytest.importorskip(OPTIONAL[modname])
    assert undocumented(importlib.import_module(modname)) == []


def test_the_walk_finds_a_missing_docstring_on_a_function_a_class_a_method_a_property():
    module = types.ModuleType("microthreads.example", "An example.")

    def told():
        """Told."""

    def silent():
        pass

    class Thing:
        """A thing."""

        def told(self):
            """Told."""

        def silent(self):
            pass

        @property
        def size(self):
            return 0

        def _private(self):
            pass

    class Special(Thing):
        """A thing whose ``told`` keeps the base's contract."""

        def told(self):
            pass

    for obj in (told, silent, Thing, Special):
        obj.__module__ = module.__name__
        setattr(module, obj.__name__, obj)
    assert undocumented(module) == ["microthreads.example.silent",
                                    "microthreads.example.Thing.silent",
                                    "microthreads.example.Thing.size"]
