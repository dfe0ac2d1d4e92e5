"""The documentation site (``make docs``): it builds without a warning or a
broken reference; a real browser shows every page with its navigation, and
the package pages table every public name, each linked to its entry; every
link between the built pages lands on a page and an anchor that exist; the
reference shows no private name.

Needs Sphinx and myst-parser (the ``test`` extra on Python 3.11+, or
``make docs``) and Chromium (``make system-deps``); skips with the reason
where either is missing. Set MICROTHREADS_DOCS_SCREENSHOT=path.png to keep
the browser's screenshot.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import microthreads
import microthreads.net

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory):
    """The site built as ``make docs`` builds it (-W -n), in a temporary
    directory; the directory of its HTML."""
    for package in ("sphinx", "myst_parser"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} is not installed (pip install -e '.[docs]', or make docs)")
    out = tmp_path_factory.mktemp("docs") / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-W", "-n", "--keep-going", "-q",
         os.path.join(ROOT, "docs"), str(out)],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"the docs build failed:\n{result.stderr}"
    assert result.stderr == "", f"the docs build warned:\n{result.stderr}"
    return out


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    """A function running headless Chromium with the given arguments; its stdout."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("no chromium on PATH (make system-deps installs it)")
    profile = tmp_path_factory.mktemp("chromium-profile")

    def run(*args):
        result = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout
    return run


class ApiTables(HTMLParser):
    """From a page: the link target and text of each row of each API table,
    and every element id (the anchors that links can land on)."""

    def __init__(self):
        super().__init__()
        self.tables = []        # one list of (href, text) per table
        self.ids = set()
        self._in_table = self._in_link = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "table" and "autosummary" in (attrs.get("class") or "").split():
            self._in_table = True
            self.tables.append([])
        elif tag == "a" and self._in_table and "href" in attrs:
            self._in_link = True
            self.tables[-1].append((attrs["href"], ""))

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False
        elif tag == "a":
            self._in_link = False

    def handle_data(self, data):
        if self._in_link:
            href, text = self.tables[-1][-1]
            self.tables[-1][-1] = (href, text + data)


class Links(HTMLParser):
    """From a page: every element id, every href, and the visible text
    (without scripts and styles)."""

    def __init__(self):
        super().__init__()
        self.ids, self.hrefs, self.text = set(), [], []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])
        if tag in ("script", "style"):
            self._hidden += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._hidden -= 1

    def handle_data(self, data):
        if not self._hidden:
            self.text.append(data)


def _parse(path):
    page = Links()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def broken_links(html_dir):
    """Every link of every page under ``html_dir`` to a local file that does
    not exist, or to an anchor that its page does not have: ``(page, href)``."""
    html_dir = Path(html_dir)
    pages = {path.resolve(): _parse(path) for path in html_dir.rglob("*.html")}
    broken = []
    for path, page in pages.items():
        for href in page.hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith("mailto:"):
                continue                              # not this site's to check
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if not target.exists():
                broken.append((path.name, href))
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append((path.name, href))
    return broken


def test_every_link_between_the_built_pages_lands_on_a_page_and_an_anchor(built_docs):
    assert len(list(built_docs.rglob("*.html"))) > 30, "the site has too few pages"
    assert broken_links(built_docs) == []


def test_the_link_check_finds_a_missing_page_and_a_missing_anchor(tmp_path):
    (tmp_path / "a.html").write_text('<p id="here"><a href="a.html#here">ok</a>'
                                     '<a href="#nowhere">x</a><a href="gone.html">y</a>'
                                     '<a href="https://example.org/">out</a></p>')
    assert broken_links(tmp_path) == [("a.html", "#nowhere"), ("a.html", "gone.html")]


def test_every_page_has_the_sites_navigation(built_docs):
    pages = [built_docs / "index.html", built_docs / "guide" / "from-gevent.html",
             built_docs / "reference" / "microthreads.sync.html"]
    for path in pages:
        hrefs = {urlsplit(href).path.rsplit("/", 1)[-1] for href in _parse(path).hrefs}
        for page in ("intro.html", "tutorial.html", "from-gevent.html", "from-asyncio.html",
                     "blocking-libraries.html", "chat.html", "scale-out.html",
                     "benchmarks.html", "changelog.html", "PROTOCOL.html"):
            assert page in hrefs or page == path.name, f"{path.name} does not link to {page}"


def test_the_reference_shows_no_private_name(built_docs):
    for path in sorted((built_docs / "reference").glob("*.html")):
        text = "".join(_parse(path).text)
        private = sorted(set(re.findall(r"(?<![\w.])_[A-Za-z]\w*", text)))
        # a dunder, or a stdlib module of that name (_thread), is no private name
        assert [name for name in private if not name.startswith("__")
                and name not in sys.stdlib_module_names] == [], path.name


def test_every_module_has_a_reference_page_with_its_source(built_docs):
    for module in ("microthreads.sync", "microthreads.net.stream", "microthreads.aio",
                   "microthreads.testing", "microthreads.monkey", "microthreads.subprocess"):
        page = _parse(built_docs / "reference" / f"{module}.html")
        assert any("_modules/" in href for href in page.hrefs), f"{module}: no source link"


def test_the_rendered_package_pages_table_every_public_name_each_linked_to_its_entry(
        built_docs, chromium):
    reference = built_docs / "reference"
    for module in (microthreads, microthreads.net):
        page = ApiTables()
        page.feed(chromium("--dump-dom", (reference / f"{module.__name__}.html").as_uri()))
        assert page.tables, f"no API table on the rendered {module.__name__} page"
        targets = {}
        for table in page.tables:
            for href, text in table:
                path, _, anchor = href.partition("#")
                targets[anchor] = path
                ids = page.ids if not path else _parse(reference / path).ids
                assert anchor in ids, f"{text} links nowhere: {href}"
        for name in module.__all__:
            full = f"{module.__name__}.{name}"
            assert full in targets or f"module-{full}" in targets, f"{full} is not tabled"


def test_a_reference_page_renders_as_a_picture(built_docs, chromium, tmp_path):
    shot = tmp_path / "api.png"
    chromium("--window-size=1280,2000", f"--screenshot={shot}",
             (built_docs / "reference" / "microthreads.sync.html").as_uri())
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 50_000, "the screenshot is nearly empty: the page did not render"
    keep = os.environ.get("MICROTHREADS_DOCS_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
