"""Sphinx configuration for the documentation site (``make docs``).

The site's root is ``docs/``: the pages are Markdown (MyST) or reST; the
guides are in ``docs/guide/``, the reference in ``docs/reference/`` (one page
per module), and DESIGN.md and PROTOCOL.md are pages as they are.

Why MyST (myst-parser, the one dependency beyond Sphinx): DESIGN.md,
PROTOCOL.md and CHANGELOG.md are Markdown that other tools read as files, and
the guides grew out of the README; with MyST each is one text, rendered as
written, its links checked by ``-n`` like reST's.

Why Sphinx autodoc: the docstrings are reStructuredText already (``literal``,
``::`` blocks), so they render as written; ``-W -n`` fails the build on any
warning and on any cross-reference that resolves to nothing, with no plugin.

The pages list what each module exports: the ``api-module`` directive below
reads the module's ``__all__`` at build time, so a name added to ``__all__``
appears in the reference (table row and entry) without editing these files.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import sys
from typing import TypeVar

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import microthreads  # noqa: E402

# What counts as a module's public API, shared with tests/test_docstrings.py.
_spec = importlib.util.spec_from_file_location("public_api",
                                               os.path.join(ROOT, "tools", "public_api.py"))
public_api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(public_api)
_home, _public_names = public_api.home, public_api.public_names

project = "microthreads"
author = "The microthreads authors"
copyright = "2026, " + author
version = release = microthreads.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.autosummary",
              "sphinx.ext.viewcode"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path: list[str] = []
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_theme_options = {"page_width": "1100px", "sidebar_width": "240px",
                      "description": "greenlet microthreads, straight-line code"}
# The navigation on every page: the site's table of contents, where one is, search.
html_sidebars = {"**": ["about.html", "navigation.html", "relations.html", "searchbox.html"]}
html_static_path: list[str] = []

# Headings up to ### get anchors, so `[the driver](from-asyncio.md#the-driver)`
# links land; a Markdown link to a page or anchor that does not exist is a
# warning (so a failure under -W).
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

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


class ApiModule(SphinxDirective):
    """``.. api-module:: microthreads.net``: the module's docstring, a table
    of its public names with their one-line summaries, and an entry for each
    (a submodule in ``__all__`` links to its own page; a stdlib object or
    an alias gets a line saying what it is). ``:only-own:`` leaves out the
    names whose objects microthreads does not define.

    A package whose names are defined in its submodules (``microthreads``,
    ``microthreads.net``) gets one page per submodule: ``:table-only:`` on the
    package's page gives the docstring and the table, whose rows link to the
    entries on the submodules' pages; ``.. api-module:: microthreads.sync``
    with ``:exports-of: microthreads`` gives the submodule's docstring and an
    entry, under the package's name (``microthreads.Queue``, as users import
    it), for each name of the package's ``__all__`` defined there, and for
    the names listed in ``:also:`` (``Empty Full``, the stdlib's)."""

    required_arguments = 1
    option_spec = {"only-own": directives.flag, "table-only": directives.flag,
                   "exports-of": directives.unchanged, "also": directives.unchanged}

    def run(self):
        modname = self.arguments[0]
        module = importlib.import_module(modname)
        package = self.options.get("exports-of")
        if package:
            also = set((self.options.get("also") or "").split())
            names = [(name, obj) for name, obj in _public_names(importlib.import_module(package),
                                                                 False)
                     if name in also or (_home(obj) == modname and not inspect.ismodule(obj))]
            lines = [f".. automodule:: {modname}", "", f".. currentmodule:: {package}", "",
                     ".. autosummary::", "   :nosignatures:", ""]
        else:
            names = list(_public_names(module, "only-own" in self.options))
            lines = [f".. automodule:: {modname}", "", ".. autosummary::", "   :nosignatures:", ""]
        entries = []
        for name, obj in names:
            lines.append(f"   {name}")
            if inspect.ismodule(obj) or "table-only" in self.options:   # documented elsewhere
                continue
            kind = "function"
            if inspect.isclass(obj):
                kind = "exception" if issubclass(obj, BaseException) else "class"
            if _home(obj).split(".")[0] != "microthreads":      # queue.Empty, as it is
                stdlib = _home(obj).lstrip("_")             # _queue: C's name for queue
                entries += [f".. py:{kind}:: {name}", "",
                            f"   The standard library's ``{stdlib}.{obj.__qualname__}``,"
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


#: Private names that a signature's preserved defaults would show, and what
#: they mean to a user (``timeout=_GLOBAL_DEFAULT_TIMEOUT`` is the stdlib's
#: own way to say "the default timeout").
_DEFAULTS = {"_GLOBAL_DEFAULT_TIMEOUT": "socket.getdefaulttimeout()"}


def _public_signature(app, what, name, obj, options, signature, return_annotation):
    """The reference shows no private name in a signature: defaults written
    with a module's private alias of the stdlib module it wraps
    (``family=_std.AF_INET`` in ``microthreads.net.socket``) appear under the
    stdlib module's name (``socket.AF_INET``), and parameters named ``_x``
    are left out."""
    if not signature:
        return None
    stdlib = name.split(".")[2] if name.startswith(("microthreads.net.socket.",
                                                    "microthreads.net.ssl.")) else None
    if stdlib:
        signature = re.sub(r"(?<![\w.])_std\.", stdlib + ".", signature)
    for private, public in _DEFAULTS.items():
        signature = re.sub(rf"(?<![\w.]){private}\b", public, signature)
    # A parameter named _x is the implementation's (greenlet hands Tasklet.run
    # its first switch's value): not shown.
    signature = re.sub(r"(?<=[(,])\s*_[A-Za-z]\w*(?::\s*[^,=)]+)?(?:\s*=\s*[^,)]+)?,?",
                       "", signature).replace(", )", ")").replace(",)", ")")
    return signature, return_annotation


def _maintainers_paragraphs(app, what, name, obj, options, lines):
    """A module docstring's paragraphs that name private state (``_seq``) are
    for its maintainers, who read the source: the reference leaves them out."""
    if what != "module":
        return
    kept, paragraph = [], []
    for line in [*lines, ""]:
        if line.strip():
            paragraph.append(line)
            continue
        if paragraph and not re.search(r"``_[A-Za-z]\w*", " ".join(paragraph)):
            kept += [*paragraph, ""]
        paragraph = []
    lines[:] = kept


def _own_source_only(app, modname, fullname):
    """Source links only to microthreads' code: an entry for a stdlib object
    (``microthreads.Empty`` is ``queue.Empty``, written in C as ``_queue``)
    stays without one, instead of a link to a page viewcode cannot make.
    Answering the package's own name, whose ``__init__`` defines no such
    name, leaves the entry without a link; None lets viewcode follow it."""
    obj = importlib.import_module(modname)
    for part in fullname.split("."):
        obj = getattr(obj, part, None)
    home = _home(obj)
    return home if home.split(".")[0] == "microthreads" else modname


def setup(app):
    app.add_directive("api-module", ApiModule)
    app.connect("viewcode-follow-imported", _own_source_only)
    app.connect("autodoc-process-signature", _public_signature)
    app.connect("autodoc-process-docstring", _maintainers_paragraphs)
    app.connect("missing-reference", _type_variable)
    return {"parallel_read_safe": True}
