"""What an installed microthreads says about itself."""

from __future__ import annotations

import importlib.metadata

import pytest

import microthreads


def test_the_version_is_the_one_the_package_metadata_reports():
    try:
        installed = importlib.metadata.version("microthreads")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("microthreads is not installed (pip install -e .)")
    assert microthreads.__version__ == installed
