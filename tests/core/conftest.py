"""Fixtures for the control-plane core tests.

Real-kernel maps: the LB object (bpf/lb_xdp.c) is compiled once per session and loaded once per
test with its own pin root, so the maps come from the program itself (pinned by name). An object
that does not compile fails every test that needs the maps: the maps' sizes are what
test_core_structs compares l4lb.structs with, so they must come from the program.

Pins live under /sys/fs/bpf/l4lbt3c-<pid>/ only (leftovers of dead runs are swept first).
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MODULE_UTILS = os.path.join(REPO, "module_utils")
if MODULE_UTILS not in sys.path:
    sys.path.insert(0, MODULE_UTILS)

from l4lb import libbpf  # noqa: E402
from l4lb.reconcile import LBMaps  # noqa: E402
from core_helpers import dump_all  # noqa: E402,F401  (unique module name: tests/ has several conftests)

BPFFS = "/sys/fs/bpf"
PIN_PREFIX = "l4lbt3c-"
_counter = [0]


def _sweep():
    for name in os.listdir(BPFFS):
        if not name.startswith(PIN_PREFIX):
            continue
        try:
            pid = int(name[len(PIN_PREFIX):])
        except ValueError:
            continue
        if pid != os.getpid() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(os.path.join(BPFFS, name), ignore_errors=True)


@pytest.fixture(scope="session")
def pin_root():
    if os.geteuid() != 0 or not os.path.isdir(BPFFS):
        pytest.skip("needs root and bpffs")
    _sweep()
    root = os.path.join(BPFFS, f"{PIN_PREFIX}{os.getpid()}")
    os.makedirs(root, exist_ok=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def lb_object(tmp_path_factory):
    """Path of the compiled LB object; a compile failure fails the tests that need it."""
    from l4lb import build
    cfg = build.BuildConfig(lb_ip="20.1.1.1", lb_mac="02:00:14:01:01:01", ifindex=1, mode="snat")
    out = tmp_path_factory.mktemp("obj") / "lb_xdp.o"
    try:
        build.compile_lb(cfg, out)
    except Exception as exc:  # noqa: BLE001 - reported as the failure
        pytest.fail(f"cannot compile the LB object bpf/lb_xdp.c: {exc}", pytrace=False)
    return str(out)


def make_maps_dir(pin_root: str, lb_object: str) -> str:
    _counter[0] += 1
    d = os.path.join(pin_root, f"t{_counter[0]}")
    os.makedirs(d)
    obj = libbpf.BpfObject(lb_object, pin_root_path=d)
    try:
        obj.load()
    finally:
        obj.close()
    return d


@pytest.fixture
def lbmaps(pin_root, lb_object):
    d = make_maps_dir(pin_root, lb_object)
    maps = LBMaps.open(d)
    try:
        yield maps
    finally:
        maps.close()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def lbmaps_other(pin_root, lb_object):
    """A second LB's maps beside ``lbmaps`` (an LB tier's other node)."""
    d = make_maps_dir(pin_root, lb_object)
    maps = LBMaps.open(d)
    try:
        yield maps
    finally:
        maps.close()
        shutil.rmtree(d, ignore_errors=True)
