"""Fixtures for the datapath tests: objects compiled once per session into a tmp dir, each test's
program loaded with its own pin root under /sys/fs/bpf/l4lbt3-<pid>/ (removed at the end; roots of
killed runs are swept at start). Nothing is attached to any interface: BPF_PROG_TEST_RUN only."""

from __future__ import annotations

import itertools
import os
import shutil
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
for p in (os.path.join(REPO, "module_utils"), HERE):
    if p not in sys.path:
        sys.path.insert(0, p)

from l4lb import build  # noqa: E402
import dp_helpers as H  # noqa: E402

PIN_ROOT = f"{H.PIN_PREFIX}{os.getpid()}"
_counter = itertools.count()


def pytest_configure(config):
    if os.geteuid() != 0:
        return
    H.sweep_stale_pins()


def pytest_unconfigure(config):
    shutil.rmtree(PIN_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def pin_root():
    if os.geteuid() != 0 or not os.path.ismount("/sys/fs/bpf"):
        pytest.skip("needs root and bpffs at /sys/fs/bpf")
    os.makedirs(PIN_ROOT, exist_ok=True)
    yield PIN_ROOT
    shutil.rmtree(PIN_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def objdir(tmp_path_factory):
    return tmp_path_factory.mktemp("bpfobj")


def _cfg(mode, **kw):
    return build.BuildConfig(lb_ip=H.LB_IP, lb_mac=H.LB_MAC, ifindex=1, mode=mode, **kw)


@pytest.fixture(scope="session")
def compiled(objdir):
    """Compile on demand: compiled(mode, **BuildConfig kwargs) -> CompileResult (cached)."""
    cache = {}

    def get(mode="snat", **kw):
        key = (mode, tuple(sorted(kw.items())))
        if key not in cache:
            name = f"lb_{mode}_{len(cache)}.o"
            cache[key] = build.compile_lb(_cfg(mode, **kw), objdir / name)
        return cache[key]

    return get


@pytest.fixture
def make_lb(compiled, pin_root):
    """make_lb(mode, **BuildConfig kwargs) -> a fresh LbEnv with empty maps."""
    envs = []

    def make(mode="snat", **kw):
        res = compiled(mode, **kw)
        root = os.path.join(pin_root, f"t{next(_counter)}")
        env = H.LbEnv(res.path, root, mode, maglev_size=kw.get("maglev_size", 2039),
                      snat_port_min=kw.get("snat_port_min", H.S.SNAT_PORT_MIN_DEFAULT),
                      snat_port_max=kw.get("snat_port_max", H.S.SNAT_PORT_MAX_DEFAULT))
        envs.append((env, root))
        return env

    yield make
    for env, root in envs:
        env.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def lb_snat(make_lb):
    return make_lb("snat")


@pytest.fixture
def lb_dsr(make_lb):
    return make_lb("dsr")


@pytest.fixture(scope="session")
def decap_objs(objdir):
    return {k: build.compile_decap(k, objdir / f"decap_{k}.o").path for k in ("xdp", "tc")}
