"""Fixtures for the control plane's tests (helpers live in control_lab.py)."""

from __future__ import annotations

import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import control_lab as lab  # noqa: E402


@pytest.fixture(scope="session")
def slice_lab():
    """LB (20.1.1.1) and a backend (20.1.1.10) in namespaces, swept before and after."""
    lab.sweep()
    lab.build_slice()
    yield {"lb_ns": lab.LB_NS, "be_ns": lab.BE_NS, "pin_dir": lab.PIN_DIR}
    lab.sweep()


@pytest.fixture(scope="session")
def run_module():
    with tempfile.TemporaryDirectory(prefix=lab.PREFIX + "-") as d:
        yield lab.ModuleRunner(d)


@pytest.fixture(scope="module")
def program(run_module):
    """The LB program attached in SNAT mode (and removed at the end of the test module)."""
    r = run_module("xdp_program", lab.PROGRAM)
    assert not r.get("failed"), r
    yield r
    run_module("xdp_program", {**lab.PROGRAM, "state": "absent"})
