"""Services on more than one VIP (issue 17), end to end on real namespaces, in SNAT and DSR.

Three services on two VIPs and two ports, each answered by its own backends only:

    1  40.1.1.1:80    -> win1, linux1
    2  40.1.1.2:80    -> win2, linux2
    3  40.1.1.2:8080  -> win1, linux2     (DSR: no port translation, so the backends listen on 8080)

The client routes lab_vip_range (40.1.1.0/24) through the LB node; each backend holds on lo the
VIPs of the services that list it (derived from lb_services by backend_linux) and listens on
their ports; playbooks/service.yml updates the backends, then the LB node. Adding a VIP's first
service adds the VIP on its backends, removing its last one removes it; a VIP outside the range is
refused before any change. Prefix $L4LB_VIPS_TEST_PREFIX (default l4lbt5m); teardown first and
last. The lab is shared (module fixture); each test sets the mode and the service list it needs.
"""

from __future__ import annotations

import os

import pytest

from labtest import run_playbook
from labutil import LB_IP, backends, curl, ipj, nsrun, report, teardown, topology

PREFIX = os.environ.get("L4LB_VIPS_TEST_PREFIX", "l4lbt5m")
SERVICES = [
    {"id": 1, "frontend": "40.1.1.1:80", "backends": ["20.1.1.10:80", "20.1.1.30:80"]},
    {"id": 2, "frontend": "40.1.1.2:80", "backends": ["20.1.1.20:80", "20.1.1.40:80"]},
    {"id": 3, "frontend": "40.1.1.2:8080", "backends": ["20.1.1.10:8080", "20.1.1.40:8080"]},
]
OWN = {"40.1.1.1:80": {"win1", "linux1"}, "40.1.1.2:80": {"win2", "linux2"}, "40.1.1.2:8080": {"win1", "linux2"}}
HELD = {"win1": ["40.1.1.1", "40.1.1.2"], "win2": ["40.1.1.2"], "linux1": ["40.1.1.1"], "linux2": ["40.1.1.2"]}
# Prune: the list is exactly what the LB node serves, so a service left out is removed there too.
EV = {"lab_prefix": PREFIX, "lb_services_prune": True}


def services(svcs, **extra):
    """playbooks/service.yml with this service list: the backends (VIPs, ports), then the LB."""
    return run_playbook("service.yml", dict(EV, lb_services=svcs, **extra))


def lb(mode):
    r = run_playbook("mode.yml", dict(EV, lb_mode=mode))
    assert r.rc == 0, r.output
    return r


def lo_vips(node):
    """The /32s on the node's lo (127.0.0.1/8 is not one)."""
    return sorted(a["local"] for link in ipj(PREFIX, node, "-4", "addr", "show", "dev", "lo")
                  for a in link.get("addr_info", []) if a.get("prefixlen") == 32)


def answered_by(frontend, n=12):
    """Who answers ``n`` requests to ``frontend`` from the client (kernel-chosen source ports)."""
    seen = set()
    for _ in range(n):
        status, headers, _body = curl(PREFIX, f"http://{frontend}/")
        assert " 200" in status, (frontend, status)
        seen.add(headers.get("x-backend"))
    return seen


def unanswered(frontend):
    p = nsrun(PREFIX, "client", "curl", "-s", "-o", "/dev/null", "-m", "3", f"http://{frontend}/", check=False)
    return p.returncode != 0


@pytest.fixture(scope="module")
def lab():
    teardown(PREFIX)
    topology(PREFIX)
    r = backends(PREFIX, {"lb_services": SERVICES})
    assert r.rc == 0, r.output
    lb("snat")
    r = services(SERVICES)
    assert r.rc == 0, r.output
    try:
        yield PREFIX
    finally:
        teardown(PREFIX)


def test_the_client_routes_the_range_and_the_backends_hold_their_services_vips(lab):
    routes = ipj(PREFIX, "client", "route", "show", "40.1.1.0/24")
    assert [(r["gateway"], r["dev"]) for r in routes] == [(LB_IP, "eth0")]
    for vip in ("40.1.1.1", "40.1.1.2", "40.1.1.200"):
        (got,) = ipj(PREFIX, "client", "route", "get", vip)
        assert got["gateway"] == LB_IP, got
    assert {node: lo_vips(node) for node in HELD} == HELD
    # a rerun of the same list changes nothing
    r = services(SERVICES)
    assert r.rc == 0 and r.changed == 0, r.output


@pytest.mark.parametrize("mode", ["snat", "dsr"])
def test_each_service_is_answered_by_its_own_backends_only(lab, mode):
    lb(mode)
    for frontend, own in OWN.items():
        seen = answered_by(frontend)
        assert seen <= own and seen, (mode, frontend, seen)
    r = run_playbook("verify.yml", dict(EV, lb_mode=mode, lb_services=SERVICES))
    checks, dist = report(r.stdout)
    assert r.rc == 0, r.output
    # service 1 keeps the seed's report, spread over its own two backends
    assert set(dist) == {"win1", "linux1"} and sum(dist.values()) == 40, dist
    assert checks["every backend answered"][0] == "PASS"
    # one line per other service: every request answered by its own backends, all of them
    for sid, frontend in ((2, "40.1.1.2:80"), (3, "40.1.1.2:8080")):
        res, detail = checks[f"service {sid} {frontend}"]
        assert res == "PASS" and detail.startswith("40/40 answered"), (mode, detail)
        assert {part.split("=")[0] for part in detail.split("; ")[1].split()} == OWN[frontend], detail


def test_adding_and_removing_a_vips_last_service_adds_and_removes_it_on_the_backends(lab):
    lb("dsr")   # DSR: the backends accept only VIPs on their lo
    fourth = {"id": 4, "frontend": "40.1.1.3:80", "backends": ["20.1.1.30:80"]}
    try:
        r = services(SERVICES + [fourth])
        assert r.rc == 0, r.output
        assert lo_vips("linux1") == ["40.1.1.1", "40.1.1.3"]
        assert [lo_vips(n) for n in ("win1", "win2", "linux2")] == [HELD["win1"], HELD["win2"], HELD["linux2"]]
        assert answered_by("40.1.1.3:80") == {"linux1"}

        # 40.1.1.3's last service is gone: off linux1's lo, and the LB no longer serves it
        r = services(SERVICES)
        assert r.rc == 0, r.output
        assert lo_vips("linux1") == ["40.1.1.1"]
        assert unanswered("40.1.1.3:80")

        # service 2 gone (state absent): 40.1.1.2 leaves win2, whose only service it was, and
        # stays on linux2 (service 3 still sends there); service 3 gone too: off linux2 and win1
        r = services([SERVICES[0], dict(SERVICES[1], state="absent"), SERVICES[2]])
        assert r.rc == 0, r.output
        assert (lo_vips("win2"), lo_vips("linux2"), lo_vips("win1")) == ([], ["40.1.1.2"], ["40.1.1.1", "40.1.1.2"])
        assert answered_by("40.1.1.2:8080") <= OWN["40.1.1.2:8080"]
        r = services([SERVICES[0]])
        assert r.rc == 0, r.output
        assert {n: lo_vips(n) for n in HELD} == {"win1": ["40.1.1.1"], "win2": [], "linux1": ["40.1.1.1"], "linux2": []}
        assert unanswered("40.1.1.2:80") and unanswered("40.1.1.2:8080")
        assert answered_by("40.1.1.1:80") <= OWN["40.1.1.1:80"]
    finally:
        r = services(SERVICES)
        assert r.rc == 0, r.output
    assert {node: lo_vips(node) for node in HELD} == HELD


def test_a_vip_outside_the_range_is_refused_before_any_change(lab):
    outside = {"id": 9, "frontend": "50.0.0.1:80", "backends": ["20.1.1.10:80"]}
    want = ("service 9 (50.0.0.1:80): VIP 50.0.0.1 is outside lab_vip_range 40.1.1.0/24, which is all "
            "the lab routes to the LB node; widen lab_vip_range")
    r = services(SERVICES + [outside])
    assert r.rc != 0 and want in r.output, r.output
    assert r.changed == 0, r.recap
    assert lo_vips("win1") == HELD["win1"]                       # the backends were not touched
    # site.yml refuses it in its preflight, before the topology play
    r = run_playbook("site.yml", dict(EV, lb_services=SERVICES + [outside]), args=["--tags", "lab_topology"])
    assert r.rc != 0 and want in r.output, r.output
    assert r.changed == 0 and "TASK [lab_topology" not in r.output, r.output
