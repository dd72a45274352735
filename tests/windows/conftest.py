"""Fixtures of the Windows tests: nothing here needs a Windows host."""

from __future__ import annotations

import importlib.util
import os

import pytest

from labtest import REPO


@pytest.fixture(scope="session")
def winfilters():
    """filter_plugins/l4lb_windows.py, imported by path (as Ansible loads it)."""
    path = os.path.join(REPO, "filter_plugins", "l4lb_windows.py")
    spec = importlib.util.spec_from_file_location("l4lb_windows_filters", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
