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


# The default lab's places ("make lab", prefix l4lb) belong to the user: a test works under its
# own prefix. One that made them anyway fails the session (they did not exist when it started).
DEFAULT_LAB_PLACES = ("/run/l4lb", "/sys/fs/bpf/l4lb", "/var/lib/l4lb-lab/l4lb", os.path.join(REPO, "build", "report", "l4lb"))
_absent_at_start = []


def pytest_sessionstart(session):
    _absent_at_start[:] = [p for p in DEFAULT_LAB_PLACES if not os.path.lexists(p)]


def pytest_sessionfinish(session, exitstatus):
    made = [p for p in _absent_at_start if os.path.lexists(p)]
    if made:
        session.config.get_terminal_writer().line(
            f"tests made the default lab's directories {', '.join(made)}: a test must use its own prefix", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
