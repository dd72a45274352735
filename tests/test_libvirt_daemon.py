"""The libvirt lab's confined libvirtd (module_utils/lab_topology/libvirt_daemon.py), for real:
started in the lab's host namespace, reached with libvirt-python at the URI start() returns, its
networks' bridges in that namespace; nothing in the root namespace (links, addresses, routes) or
in the host's /etc/libvirt, /var/lib/libvirt, /run/libvirt, ...; stop leaves no process and no
directory; a daemon killed mid-run is cleaned up by the next start. No VM is booted (too slow
for this file: see the issue-8 notes for the boot proof).

Own prefix (L4LB_TEST_PREFIX8D, default l4t8d) and state dir /run/<prefix>; leftovers of a killed
run are removed first."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from labtest import root_ns_snapshot

from ansible.module_utils.l4lb import procs
from ansible.module_utils.lab_topology import libvirt_daemon as daemon

libvirt = pytest.importorskip("libvirt")

PREFIX = os.environ.get("L4LB_TEST_PREFIX8D", "l4t8d")
STATE = f"/run/{PREFIX}"
NS = f"{PREFIX}-host"
BRIDGE = f"{PREFIX}-br"
HOST_DIRS = ("/etc/libvirt", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt", "/run/libvirt")

NETWORK = f"""<network>
  <name>{PREFIX}-lab</name>
  <bridge name='{BRIDGE}' stp='off' delay='0'/>
  <ip address='20.1.1.100' prefix='24'/>
  <route address='40.1.1.1' prefix='32' gateway='20.1.1.1'/>
  <dns enable='no'/>
</network>"""

pytestmark = pytest.mark.skipif(not all(shutil.which(t) for t in ("libvirtd", "virsh")),
                                reason="libvirtd/virsh not installed (scripts/setup.sh installs them)")


def host_dirs():
    """What the host has in libvirt's fixed directories (names and mtimes)."""
    out = {}
    for d in HOST_DIRS:
        if os.path.isdir(d):
            out[d] = sorted((n, os.lstat(os.path.join(d, n)).st_mtime_ns) for n in os.listdir(d))
    return out


def ip_ns(*args):
    return subprocess.run(["ip", "-n", NS, *args], capture_output=True, text=True, check=True).stdout


def clean():
    daemon.stop(PREFIX, STATE, remove_netns=True)
    shutil.rmtree(STATE, ignore_errors=True)


@pytest.fixture(scope="module")
def baseline():
    clean()
    before = {"root_ns": root_ns_snapshot(), "host_dirs": host_dirs()}
    yield before
    clean()


def descends_from(pid, ancestor) -> bool:
    while pid > 1:
        st = procs.stat(pid)
        if st is None:
            return True  # it ended meanwhile: nothing left of it
        if st.ppid == ancestor:
            return True
        pid = st.ppid
    return False


def assert_nothing_left(baseline):
    st = daemon.status(PREFIX, STATE)
    assert not st["running"] and not st["daemon_pids"] and not st["children"] and not st["stray"], st
    assert not os.path.exists(STATE)
    assert not os.path.exists(f"/run/netns/{NS}")
    assert root_ns_snapshot() == baseline["root_ns"]
    assert host_dirs() == baseline["host_dirs"]


def test_bad_input_is_refused_naming_it():
    with pytest.raises(daemon.DaemonError) as e:
        daemon.start("", "/run")
    assert "lab_prefix ''" in str(e.value) and "lab_state_dir '/run'" in str(e.value)
    with pytest.raises(daemon.DaemonError, match="lab_state_dir 'run/x' must be an absolute path"):
        daemon.stop(PREFIX, "run/x")


def test_check_mode_and_status_change_nothing(baseline):
    st = daemon.status(PREFIX, STATE)
    assert not st["running"] and not st["netns_exists"] and st["dirs"] == [], st
    r = daemon.start(PREFIX, STATE, check_mode=True)
    assert r["changed"] is True and r["netns_created"] is True
    assert r["uri"] == f"qemu+unix:///system?socket={STATE}/libvirt/libvirt-sock"
    assert daemon.stop(PREFIX, STATE, remove_netns=True, check_mode=True)["changed"] is False
    assert_nothing_left(baseline)


def test_a_fork_of_the_daemon_is_its_child_not_a_second_daemon(tmp_path):
    """libvirtd forks before it execs qemu; until the exec the fork shows the daemon's argv
    (CI once saw two "daemons" that way). Here a shell named libvirtd, with this state dir's
    config in its argv, forks a subshell that keeps that argv."""
    conf = daemon.paths(PREFIX, str(tmp_path))["conf"]
    script = "(sleep 30; :) & sleep 30; wait"
    argv = ["libvirtd", "-c", script, "libvirtd", "--config", conf]
    proc = subprocess.Popen(argv, executable="/bin/sh", start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        forks = []
        while not forks and time.monotonic() < deadline:
            forks = [pid for pid in procs.pids() if pid != proc.pid and procs.cmdline(pid) == argv]
            time.sleep(0.05)
        assert forks and procs.stat(forks[0]).ppid == proc.pid, "the shell did not fork"
        assert daemon.daemon_pids(PREFIX, str(tmp_path)) == [proc.pid]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the shell, its fork and their sleeps
        proc.wait()


def test_start_confined_reach_idempotent_stop(baseline):
    t0 = time.monotonic()
    r = daemon.start(PREFIX, STATE)
    started_s = time.monotonic() - t0
    assert r["changed"] is True and r["netns_created"] is True and r["pid"], r
    pid = r["pid"]

    # what really runs: libvirtd with this state dir's config, in the lab's host namespace
    assert os.path.basename(procs.cmdline(pid)[0]) == "libvirtd"
    assert f"{STATE}/libvirtd/etc/libvirtd.conf" in procs.cmdline(pid)
    assert procs.netns_ino(pid) == os.stat(f"/run/netns/{NS}").st_ino != procs.netns_ino()
    st = daemon.status(PREFIX, STATE)
    assert st["running"] and st["pid"] == pid and st["daemon_pids"] == [pid] and st["stray"] == [], \
        (st, {q: procs.stat(q) for q in st["daemon_pids"]}, daemon._log_tail(f"{STATE}/libvirtd/libvirtd.log"))
    # no VM: what it may have started now is its own short work (a fork on its way to exec a
    # qemu capability probe), all below the daemon
    assert all(descends_from(child, pid) for child in st["children"]), st

    conn = libvirt.open(r["uri"])
    try:
        assert conn.getVersion() > 0 and conn.getLibVersion() >= 9000000
        # a network's bridge, address and route land in the namespace, never in the root one
        net = conn.networkDefineXML(NETWORK)
        net.create()
        assert f"{BRIDGE} " in ip_ns("-br", "link")
        assert "20.1.1.100/24" in ip_ns("-br", "addr", "show", "dev", BRIDGE)
        assert "40.1.1.1 via 20.1.1.1" in ip_ns("route")
        assert root_ns_snapshot() == baseline["root_ns"]
    finally:
        conn.close()
    # the daemon's files are below the state dir; the host's libvirt directories are untouched
    assert os.path.isfile(f"{STATE}/libvirtd/etc/qemu/networks/{PREFIX}-lab.xml")
    assert os.path.isfile(f"{STATE}/libvirtd/run/network/{PREFIX}-lab.xml")
    assert host_dirs() == baseline["host_dirs"]

    again = daemon.start(PREFIX, STATE)
    assert again["changed"] is False and again["pid"] == pid, again

    stop = daemon.stop(PREFIX, STATE, remove_netns=True)
    assert stop["changed"] is True and pid in stop["killed"] and stop["netns_removed"] is True, stop
    assert not procs.alive(pid)
    assert_nothing_left(baseline)
    assert daemon.stop(PREFIX, STATE, remove_netns=True)["changed"] is False
    assert started_s < 15, f"start took {started_s:.1f} s"


def test_a_killed_daemon_is_cleaned_up_by_the_next_start(baseline):
    first = daemon.start(PREFIX, STATE)["pid"]
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while procs.alive(first) and time.monotonic() < deadline:
        time.sleep(0.05)
    st = daemon.status(PREFIX, STATE)
    assert not st["running"] and st["dirs"], st  # what it left: its directories, a dead socket

    r = daemon.start(PREFIX, STATE)
    assert r["changed"] is True and r["pid"] != first and r["netns_created"] is False, r
    assert daemon.status(PREFIX, STATE)["running"]
    conn = libvirt.open(r["uri"])
    assert conn.getVersion() > 0
    conn.close()
    daemon.stop(PREFIX, STATE, remove_netns=True)
    assert_nothing_left(baseline)
