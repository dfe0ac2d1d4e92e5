"""The programs in the README and the documentation's pages run as written.

A fenced ``python`` block right after a line ``<!-- runnable -->`` (in
README.md or a Markdown page under docs/) is a whole program: each runs in a
fresh interpreter, offline, and must exit 0 within the time limit.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNNABLE = re.compile(r"^<!-- runnable -->\n```python\n(.*?)^```", re.M | re.S)


def runnable_blocks(text):
    """The runnable programs of a Markdown text, with the line each starts on."""
    return [(text.count("\n", 0, match.start(1)) + 1, match.group(1))
            for match in RUNNABLE.finditer(text)]


def _documents():
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


BLOCKS = [(path, line, code) for path in _documents()
          for line, code in runnable_blocks(path.read_text(encoding="utf-8"))]


def test_the_readme_and_the_guides_have_runnable_programs():
    where = {path.relative_to(ROOT).as_posix() for path, _, _ in BLOCKS}
    assert {"README.md", "docs/tutorial.md", "docs/guide/blocking-libraries.md"} <= where


def test_a_block_counts_only_when_marked():
    text = ("```python\nnot me\n```\n<!-- runnable -->\n```python\nprint(1)\n```\n"
            "<!-- runnable -->\n```sh\nnor me\n```\n")
    assert runnable_blocks(text) == [(6, "print(1)\n")]


@pytest.mark.parametrize("path, line, code", BLOCKS,
                         ids=[f"{p.relative_to(ROOT)}:{n}" for p, n, _ in BLOCKS])
def test_the_program_runs_as_written(path, line, code, tmp_path):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 0, f"{path.name}:{line} failed:\n{result.stderr[-3000:]}"
