"""The API reference (``make docs``): it builds without a warning or a broken
reference, and a real browser shows a table of every public name, each
linked to its entry on the page.

Needs Sphinx (the ``test`` extra on Python 3.11+, or ``make docs``) and
Chromium (``make system-deps``); skips with the reason where either is missing.
Set MICROTHREADS_DOCS_SCREENSHOT=path.png to keep the browser's screenshot.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser

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
    """The reference built as ``make docs`` builds it (-W -n), in a temporary directory."""
    if importlib.util.find_spec("sphinx") is None:
        pytest.skip("Sphinx is not installed (pip install -e '.[docs]', or make docs)")
    out = tmp_path_factory.mktemp("docs") / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-W", "-n", "--keep-going", "-q",
         os.path.join(ROOT, "docs", "api"), str(out)],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"the docs build failed:\n{result.stderr}"
    assert result.stderr == "", f"the docs build warned:\n{result.stderr}"
    return out / "index.html"


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


def test_the_rendered_reference_tables_every_public_name_each_linked_to_its_entry(
        built_docs, chromium):
    page = ApiTables()
    page.feed(chromium("--dump-dom", built_docs.as_uri()))
    assert page.tables, "no API table on the rendered page"
    targets = {href.lstrip("#") for table in page.tables for href, _ in table}
    for module in (microthreads, microthreads.net):
        for name in module.__all__:
            full = f"{module.__name__}.{name}"
            assert full in targets or f"module-{full}" in targets, f"{full} is not tabled"
    for table in page.tables:
        for href, text in table:
            assert href.startswith("#") and href[1:] in page.ids, f"{text} links nowhere: {href}"


def test_the_reference_page_renders_as_a_picture(built_docs, chromium, tmp_path):
    shot = tmp_path / "api.png"
    chromium("--window-size=1280,2000", f"--screenshot={shot}", built_docs.as_uri())
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 50_000, "the screenshot is nearly empty: the page did not render"
    keep = os.environ.get("MICROTHREADS_DOCS_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
