"""Fixtures shared by every test directory; the helpers live in labtest.py."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from labtest import REPO  # noqa: E402


@pytest.fixture(scope="session")
def repo():
    return REPO
