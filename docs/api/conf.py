"""Sphinx configuration for the API reference (``make docs``).

Why Sphinx autodoc: the docstrings are reStructuredText already (``literal``,
``::`` blocks), so they render as written; ``-W -n`` fails the build on any
warning and on any cross-reference that resolves to nothing, with no plugin.

The pages list what each module exports: the ``api-module`` directive below
reads the module's ``__all__`` at build time, so a name added to ``__all__``
appears in the reference (table row and entry) without editing these files.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import TypeVar

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import microthreads  # noqa: E402

project = "microthreads"
author = "The microthreads authors"
copyright = "2026, " + author
version = release = microthreads.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.autosummary"]
templates_path: list[str] = []
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_theme_options = {"page_width": "1100px", "sidebar_width": "220px"}
html_static_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# A method that overrides a stdlib one without a docstring of its own (the
# cooperative socket's recv) is documented by its class, not by the stdlib's text.
autodoc_inherit_docstrings = False
autosummary_generate = False

# No network here, so no intersphinx: references into the standard library or
# greenlet cannot be resolved and are not checked. Every reference to a
# microthreads name must resolve (-n turns a miss into a warning, -W into a
# failure).
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"(?!microthreads\b).*")]


def _home(obj):
    """The module that defines ``obj``."""
    return (obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", "")) or ""


def _public_names(module, only_own):
    """The names of ``module.__all__`` (without one: the public names that
    the module defines, in source order). With ``only_own``, only those that
    microthreads defines: ``microthreads.net.socket`` re-exports the whole
    stdlib module, which is the stdlib's to document."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [name for name, obj in vars(module).items()
                 if not name.startswith("_") and _home(obj) == module.__name__]
    for name in names:
        obj = getattr(module, name)
        if not only_own or _home(obj).split(".")[0] == "microthreads":
            yield name, obj


class ApiModule(SphinxDirective):
    """``.. api-module:: microthreads.net``: the module's docstring, a table
    of its public names with their one-line summaries, and an entry for each
    (a submodule in ``__all__`` links to its own section; a stdlib object or
    an alias gets a line saying what it is). ``:only-own:`` leaves out the
    names whose objects microthreads does not define."""

    required_arguments = 1
    option_spec = {"only-own": directives.flag}

    def run(self):
        modname = self.arguments[0]
        module = importlib.import_module(modname)
        lines = [f".. automodule:: {modname}", "", ".. autosummary::", "   :nosignatures:", ""]
        entries = []
        for name, obj in _public_names(module, "only-own" in self.options):
            lines.append(f"   {name}")
            if inspect.ismodule(obj):           # its own section documents it
                continue
            kind = "function"
            if inspect.isclass(obj):
                kind = "exception" if issubclass(obj, BaseException) else "class"
            if _home(obj).split(".")[0] != "microthreads":      # queue.Empty, as it is
                entries += [f".. py:{kind}:: {name}", "",
                            f"   The standard library's ``{_home(obj)}.{obj.__qualname__}``,"
                            " the same object.", ""]
            elif getattr(obj, "__name__", name) != name:       # an alias (SocketType)
                entries += [f".. py:{kind}:: {name}", "",
                            f"   Another name for :py:obj:`{obj.__name__}`.", ""]
            else:
                entries += [f".. auto{kind}:: {name}",
                            *(["   :members:"] if kind != "function" else []), ""]
        lines += ["", *entries]
        content = StringList(lines, source=f"<api-module {modname}>")
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, content, container)
        return container.children


def _type_variable(app, env, node, contnode):
    """Let a type variable in a signature (``T`` of ``Pool.map``) stand as
    plain text: it names no entry. Any other miss stays a warning."""
    modname, _, name = node.get("reftarget", "").rpartition(".")
    if node.get("refdomain") == "py" and modname.split(".")[0] == "microthreads":
        try:
            obj = getattr(importlib.import_module(modname), name)
        except (ImportError, AttributeError):
            return None
        if isinstance(obj, TypeVar):
            return contnode
    return None


def setup(app):
    app.add_directive("api-module", ApiModule)
    app.connect("missing-reference", _type_variable)
    return {"parallel_read_safe": True}
