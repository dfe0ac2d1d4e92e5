"""What an installed microthreads says about itself."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

import pytest

import microthreads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_version_is_the_one_the_package_metadata_reports():
    try:
        installed = importlib.metadata.version("microthreads")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("microthreads is not installed (pip install -e .)")
    assert microthreads.__version__ == installed


def _python(code):
    """Run ``code`` in a fresh interpreter (process-wide state: sys.modules,
    patches); its stdout, or the failure with its stderr."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_importing_microthreads_imports_no_asyncio_and_patches_nothing():
    out = _python(
        "import socket, sys, time\n"
        "real = socket.socket, time.sleep\n"
        "import microthreads\n"
        "names = ('asyncio', 'microthreads.aio', 'microthreads.monkey',\n"
        "         'microthreads.net', 'microthreads.subprocess')\n"
        "loaded = [name for name in names if name in sys.modules]\n"
        "print(loaded, (socket.socket, time.sleep) == real)\n")
    assert out == "[] True\n"


def test_the_documented_submodules_are_reachable_after_a_plain_import():
    out = _python(
        "import sys\n"
        "import microthreads\n"
        "def main():\n"
        "    done = microthreads.subprocess.run([sys.executable, '-c', 'print(6 * 7)'],\n"
        "                                       capture_output=True, text=True, timeout=30)\n"
        "    return done.stdout.strip()\n"
        "print(microthreads.run(main))\n"
        "print(microthreads.monkey.is_patched('socket'), callable(microthreads.monkey.patch_all))\n"
        "print(microthreads.net.connect is not None, microthreads.testing.VirtualClock.__name__)\n"
        "print(callable(microthreads.aio.run), 'aio' in dir(microthreads))\n"
        "try:\n"
        "    microthreads.no_such_thing\n"
        "except AttributeError as exc:\n"
        "    print(exc)\n")
    assert out.splitlines() == [
        "42", "False True", "True VirtualClock", "True True",
        "module 'microthreads' has no attribute 'no_such_thing'"]
