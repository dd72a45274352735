"""The whole lab under change, with real traffic from the client namespace (issue 5):

- `site.yml` twice: the second run reports changed=0; teardown leaves nothing behind;
- mode switch SNAT -> DSR -> SNAT while the client sends 500 requests at <= 50/s: no failure;
- forced reload under the same loop: no failure, and a keep-alive connection opened before the
  reload still works after it;
- a backend removed from the service: only the flows it served move (fixed source ports);
- weight 0 drains a backend: no new flows to it, its established connection keeps working.

Own prefix (L4LB_TEST_PREFIX6, default l4lbt6); swept before and after. Client loops are bounded
in count and time and only ever address the lab's VIP from the lab's client namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from labtest import REPO, lab_namespaces, run_playbook

PREFIX = os.environ.get("L4LB_TEST_PREFIX6", "l4lbt6")
CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "http_client.py")
BACKENDS = {"win1": "20.1.1.10", "win2": "20.1.1.20", "linux1": "20.1.1.30", "linux2": "20.1.1.40"}
VARS = {"lab_prefix": PREFIX}


def play(playbook, extra=None, args=()):
    r = run_playbook(playbook, extra_vars={**VARS, **(extra or {})}, args=args)
    assert r.rc == 0, r.output[-4000:]
    return r


def client(*args, timeout=180):
    """Run the bounded HTTP client inside the lab's client namespace."""
    p = subprocess.run(["nsenter", f"--net=/run/netns/{PREFIX}-client", "--", sys.executable, CLIENT, *args],
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


class Background:
    """The client running while the test changes the lab."""

    def __init__(self, *args):
        self.result = None
        self.thread = threading.Thread(target=self._run, args=args, daemon=True)
        self.thread.start()

    def _run(self, *args):
        self.result = client(*args)

    def join(self):
        self.thread.join(timeout=200)
        assert self.result is not None, "client did not finish"
        return self.result


def service(backends):
    return {"lb_services": [{"id": 1, "frontend": "40.1.1.1:80", "protocol": "tcp", "backends": backends}]}


ALL = [f"{ip}:80" for ip in BACKENDS.values()]


def attached_program():
    """Name of the XDP program on the LB node's eth0, read from the kernel."""
    out = subprocess.run(["ip", "-n", f"{PREFIX}-lb", "-j", "-d", "link", "show", "dev", "eth0"],
                         capture_output=True, text=True, check=True).stdout
    xdp = json.loads(out)[0].get("xdp", {})
    prog = xdp.get("prog") or (xdp.get("attached") or [{}])[0].get("prog", {})
    return prog.get("name")


@pytest.fixture(scope="module")
def lab():
    play("teardown.yml")
    first = play("site.yml")
    assert first.changed > 0
    yield
    play("teardown.yml")
    assert lab_namespaces(PREFIX) == []


def test_site_twice_is_idempotent(lab):
    r = play("site.yml")
    assert r.changed == 0, r.output[-3000:]


def test_mode_switch_under_load_loses_no_request(lab):
    load = Background("load", "--count", "500", "--rate", "50")
    assert attached_program() == "lb_xdp_snat"
    time.sleep(2)
    r = play("mode.yml", {"lb_mode": "dsr"})
    assert r.changed > 0 and attached_program() == "lb_xdp_dsr", "mode.yml did not switch to DSR"
    time.sleep(2)
    r = play("mode.yml", {"lb_mode": "snat"})
    assert r.changed > 0 and attached_program() == "lb_xdp_snat", "mode.yml did not switch back to SNAT"
    res = load.join()
    assert res["failures"] == [], res["failures"][:5]
    assert sum(res["counts"].values()) == 500
    assert set(res["counts"]) == set(BACKENDS)


def test_forced_reload_keeps_requests_and_long_lived_connections(lab):
    hold = Background("hold", "--seconds", "12", "--interval", "0.3")
    load = Background("load", "--count", "400", "--rate", "50")
    time.sleep(3)
    r = play("mode.yml", {"lb_node_force_reload": True})
    assert r.changed > 0, "a forced reload must reload"
    res, held = load.join(), hold.join()
    assert res["failures"] == [], res["failures"][:5]
    assert held["failures"] == [], held["failures"]
    assert len(held["counts"]) == 1, "a keep-alive connection stays on one backend"
    assert sum(held["counts"].values()) >= 30


def test_removed_backend_moves_only_its_flows(lab):
    """120 established flows from fixed source ports; linux2 leaves the service. Every flow on
    another backend keeps its backend (connection tracking, not just Maglev); linux2's flows
    break and, reopened from the same ports, land on the remaining backends."""
    play("service.yml", service(ALL))
    p = subprocess.Popen(["nsenter", f"--net=/run/netns/{PREFIX}-client", "--", sys.executable, CLIENT,
                          "sticky", "--base-port", "21000", "--count", "120"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        if not line:
            p.kill()
            raise AssertionError(f"sticky client failed: {p.stderr.read()}")
        first = json.loads(line)["first"]
        assert set(first.values()) == set(BACKENDS), first
        play("service.yml", service([b for b in ALL if not b.startswith(BACKENDS["linux2"])]))
        p.stdin.write("go\n")
        p.stdin.flush()
        out = json.loads(p.stdout.readline())
        p.wait(timeout=120)
    finally:
        p.kill()
        play("service.yml", service(ALL))
    second, reopened = out["second"], out["reopened"]
    kept = {port: b for port, b in first.items() if b != "linux2"}
    assert {port: second.get(port) for port in kept} == kept, "a flow of a remaining backend moved"
    served_by_removed = {port for port, b in first.items() if b == "linux2"}
    assert set(reopened) == served_by_removed
    assert all(b in BACKENDS and b != "linux2" for b in reopened.values()), reopened


def test_weight_zero_drains_new_flows_but_keeps_established(lab):
    play("service.yml", service(ALL))
    # An established keep-alive connection, then drain whichever backend it landed on.
    hold = Background("hold", "--seconds", "10", "--interval", "0.5")
    time.sleep(1.5)
    deadline = time.time() + 5
    while hold.result is None and time.time() < deadline and not _held_backend():
        time.sleep(0.2)
    victim = _held_backend() or "win1"
    drained = [f"{ip}:80@0" if name == victim else f"{ip}:80" for name, ip in BACKENDS.items()]
    play("service.yml", service(drained))
    try:
        fresh = client("flows", "--base-port", "22000", "--count", "60")
        held = hold.join()
    finally:
        play("service.yml", service(ALL))
    assert victim not in fresh["counts"], fresh["counts"]
    assert fresh["failures"] == []
    assert held["failures"] == [] and list(held["counts"]) == [victim]


def _held_backend():
    """The backend of the one established keep-alive flow, from the LB's dumpstate."""
    p = subprocess.run([sys.executable, os.path.join(REPO, "bin", "l4lbctl"), "--netns", f"{PREFIX}-lb",
                        "--pin-dir", f"/sys/fs/bpf/{PREFIX}/lb", "--json", "service", "dumpstate", "--id", "1",
                        "--idle-after", "2"], capture_output=True, text=True)
    if p.returncode != 0:
        return None
    active = [c for c in json.loads(p.stdout)["connections"] if c["state"] == "ACTIVE"]
    by_ip = {ip: name for name, ip in BACKENDS.items()}
    return by_ip.get(active[0]["backend_ip"]) if len(active) == 1 else None
