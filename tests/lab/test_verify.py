"""lab_verify end to end through the load balancer (SNAT, then DSR), on real namespaces.

Brings up the topology, the backends and the client (this suite's roles), the LB node and the
seed's service (lb_node / lb_service via playbooks/mode.yml and service.yml), then runs
playbooks/verify.yml. Prefix $L4LB_VERIFY_TEST_PREFIX (default l4lbt5v); teardown first and last.
The lab is shared (module fixture), state between tests is not: each test sets the mode it needs
(mode.yml changes nothing when the LB already runs it) and measures what it compares.
"""

from __future__ import annotations

import os
import time

import pytest

from labtest import run_playbook
from labutil import BACKENDS, backends, report, teardown, topology

PREFIX = os.environ.get("L4LB_VERIFY_TEST_PREFIX", "l4lbt5v")
EV = {"lab_prefix": PREFIX}


def lb(mode):
    r = run_playbook("mode.yml", dict(EV, lb_mode=mode))
    assert r.rc == 0, r.output
    return r


def verify(mode, **extra):
    t0 = time.monotonic()
    r = run_playbook("verify.yml", dict(EV, lb_mode=mode, **extra))
    checks, dist = report(r.stdout)
    return r, checks, dist, round(time.monotonic() - t0, 1)


@pytest.fixture(scope="module")
def lab():
    teardown(PREFIX)
    topology(PREFIX)
    r = backends(PREFIX)
    assert r.rc == 0, r.output
    lb("snat")
    r = run_playbook("service.yml", EV)
    assert r.rc == 0, r.output
    try:
        yield PREFIX
    finally:
        teardown(PREFIX)


def _all_pass(checks):
    return {c: res for c, (res, _) in checks.items() if res != "PASS"}


def test_snat_every_backend_answers_and_replies_pass_the_lb(lab):
    lb("snat")
    r, checks, dist, secs = verify("snat")
    print(f"\nverify snat: {secs}s, distribution {dist}")
    assert r.rc == 0, r.output
    assert not _all_pass(checks), checks
    assert set(dist) == set(BACKENDS) and sum(dist.values()) == 40
    res, detail = checks["replies through the LB (SNAT)"]
    assert res == "PASS" and int(detail.split()[0]) > 0


def test_fixed_source_ports_give_the_same_distribution(lab):
    lb("snat")
    r1, _, first, _ = verify("snat")
    assert r1.rc == 0, r1.output
    r2, _, second, _ = verify("snat")
    assert r2.rc == 0, r2.output
    assert set(first) == set(BACKENDS) and second == first


def test_wrong_mode_is_reported_and_fails(lab):
    """The LB runs SNAT; judging it as DSR must fail, with a readable report."""
    lb("snat")
    r, checks, _, _ = verify("dsr")
    assert r.rc != 0
    assert checks["replies bypass the LB (DSR)"][0] == "FAIL"
    assert checks["addresses seen by backends"][0] == "FAIL"
    assert checks["every backend answered"][0] == "PASS"
    assert "lab_verify failed:" in r.output


def test_dsr_replies_bypass_the_lb(lab):
    lb("snat")
    r, _, snat_dist, _ = verify("snat")
    assert r.rc == 0, r.output
    lb("dsr")
    r, checks, dist, secs = verify("dsr")
    print(f"\nverify dsr: {secs}s, distribution {dist}")
    assert r.rc == 0, r.output
    assert not _all_pass(checks), checks
    assert checks["replies bypass the LB (DSR)"][1].startswith("0 frames")
    # The same flows, the same Maglev table: DSR picks the same backends as SNAT did.
    assert dist == snat_dist


def test_a_backend_down_fails_the_check(lab):
    lb("dsr")
    r = backends(PREFIX, {"backend_linux_state": "absent"}, args=["--limit", "win1"])
    assert r.rc == 0, r.output
    try:
        r, checks, dist, secs = verify("dsr", lab_verify_timeout=0.5)
        assert r.rc != 0
        assert checks["requests answered"][0] == "FAIL"
        assert checks["every backend answered"][0] == "FAIL"
        assert "missing: win1" in checks["every backend answered"][1]
        assert dist.get("win1", 0) == 0
    finally:
        r = backends(PREFIX, args=["--limit", "win1"])
        assert r.rc == 0, r.output
    r, checks, _, _ = verify("dsr")
    assert r.rc == 0, checks
