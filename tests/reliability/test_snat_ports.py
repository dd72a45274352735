"""SNAT ports come back (issue 15), on the embedded lab in SNAT mode with the default lifetimes:

- 1,000 new connections per second for 30 s (30,000: 1.65 times the pool of 18,144 the LB used
  to burn for good), the server closing first: none fails, the LB refuses no SYN, then 200 more
  and lab_verify with its fixed source ports pass;
- one fixed client tuple reconnects 100 times in a row, every time at once;
- 20,000 spoofed SYNs (no handshake) from 150 unused lab addresses while a real client connects:
  its refused share stays within the stated bound (f ** SNAT_PROBES, f = held ports / all
  ports); once the SYN timeout has passed, 200 new connections: 0 failed;
- the GC loop keeps the SNAT map to flows in their guard time: at the end (after the others'
  time), no entry is over its time by more than two GC periods and the sustained load's flows
  past their guard are gone.

Own prefix (L4LB_TEST_PREFIX15, default l4lbt15), swept before and after. Every client loop is
bounded in count and time; all traffic stays inside the lab's namespaces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from labtest import MODULE_UTILS, lab_namespaces, run_playbook

sys.path.insert(0, MODULE_UTILS)
from l4lb import agent, ct  # noqa: E402
from l4lb.lifetimes import CtTimeouts  # noqa: E402
from l4lb.structs import SNAT_PORT_MAX_DEFAULT, SNAT_PORT_MIN_DEFAULT  # noqa: E402

PREFIX = os.environ.get("L4LB_TEST_PREFIX15", "l4lbt15")
LOAD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conn_load.py")
PIN_DIR = f"/sys/fs/bpf/{PREFIX}/lb"
VARS = {"lab_prefix": PREFIX, "lb_mode": "snat"}
BACKENDS = 4
PORTS_PER_BACKEND = SNAT_PORT_MAX_DEFAULT - SNAT_PORT_MIN_DEFAULT + 1   # the lab has 4 backends <= SNAT_SLOTS
SNAT_PROBES = 8
GC_EVERY_S = 5                       # lb_node_gc_every, the lab's default
ORPHAN_GAP_S = 3 * GC_EVERY_S        # two GC periods and the passes' own time
SUSTAINED = {}                       # when the sustained load ran, what the CT map held after it


def play(playbook, extra=None):
    r = run_playbook(playbook, extra_vars={**VARS, **(extra or {})})
    assert r.rc == 0, r.output[-4000:]
    return r


def load(*args, timeout=200):
    p = subprocess.run(["nsenter", f"--net=/run/netns/{PREFIX}-client", "--", sys.executable, LOAD, *args],
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def counters():
    with agent.open_maps(PIN_DIR) as maps:
        reasons = ct.reason_stats(maps)
        return ({k: v["packets"] for k, v in reasons.items()},
                len(ct.snat_slots(maps)), len(maps["ct4_global"].items_list()))


@pytest.fixture(scope="module")
def lab():
    play("teardown.yml")
    play("site.yml")
    yield
    play("teardown.yml")
    assert lab_namespaces(PREFIX) == []


def test_sustained_short_connections_never_run_out_of_ports(lab):
    before, _, _ = counters()
    started = time.monotonic()
    r = load("pace", "--rate", "1000", "--seconds", "30")
    SUSTAINED.update(started=started, rate=r["rate"], cts=counters()[2])
    assert r["started"] == 30000 and r["failed"] == 0, r
    assert r["rate"] > 900, r           # the load really was 1,000/s
    after, snat, _ = counters()
    assert after.get("DROP_SNAT_PORTS", 0) == before.get("DROP_SNAT_PORTS", 0)
    assert snat <= BACKENDS * PORTS_PER_BACKEND
    more = load("pace", "--rate", "100", "--seconds", "2")
    assert more["started"] == 200 and more["failed"] == 0, more
    play("verify.yml")


def test_fixed_tuple_reconnects_every_time(lab):
    r = load("reconnect", "--port", "22100", "--count", "100")
    assert r["ok"] == 100, r


def test_syn_flood_costs_ports_only_for_the_syn_timeout(lab):
    t = CtTimeouts()
    rate, count = 1300.0, 20000
    # the sustained load's flows may still hold ports (their guard): they count as held too
    before, held_before, _ = counters()
    flood = {}
    th = threading.Thread(target=lambda: flood.update(load("synflood", "--count", str(count), "--rate", str(rate))))
    th.start()
    time.sleep(t.syn + 1)                # the held share is at its peak from here on
    during = load("pace", "--rate", "100", "--seconds", "6")
    th.join(timeout=120)
    assert flood["sent"] == count, flood
    held = held_before + min(flood["rate"] * t.syn, count)
    f = held / (BACKENDS * PORTS_PER_BACKEND)
    bound = f ** SNAT_PROBES
    # a refused SYN is retransmitted after 1 s: "slow" counts the real connections refused once
    refused = during["slow"] + during["failed"]
    assert refused <= 2 + 5 * bound * during["started"], (during, bound)
    _, snat_peak, _ = counters()
    # the map itself: flood flows until the GC's next pass after their SYN timeout, plus the
    # real flows (server-closed: guarded time_wait)
    assert snat_peak <= held_before + flood["rate"] * (t.syn + 2 * 5) + during["started"] + 200, (snat_peak, held)
    # the flood's last SYNs hold their ports for the SYN timeout, then until the GC's next pass
    # (every 5 s): past both, nothing of the flood is left to collide with
    time.sleep(t.syn + 5 + 1)
    after = load("pace", "--rate", "100", "--seconds", "2")
    assert after["started"] == 200 and after["failed"] == 0 and after["slow"] == 0, after
    print(f"flood {flood['rate']}/s: held <= {held:.0f} ports, f = {f:.3f}, bound {bound:.2e}, "
          f"refused {refused}/{during['started']}; SNAT entries at the end of the flood {snat_peak}; "
          f"DROP_SNAT_PORTS {counters()[0].get('DROP_SNAT_PORTS', 0) - before.get('DROP_SNAT_PORTS', 0)}")


def test_port_exhaustion_is_visible_in_dumpstate_and_verify(lab):
    """Two ports per backend: a burst of server-closed connections runs out of them; the refusal
    shows as DROP_SNAT_PORTS in dumpstate and in lab_verify's report."""
    play("mode.yml", {"lb_node_snat_port_min": 61000, "lb_node_snat_port_max": 61001})
    try:
        before, _, _ = counters()
        load("pace", "--rate", "200", "--seconds", "1", "--timeout", "1")
        after, _, _ = counters()
        assert after.get("DROP_SNAT_PORTS", 0) > before.get("DROP_SNAT_PORTS", 0)
        p = subprocess.run([sys.executable, os.path.join(os.path.dirname(MODULE_UTILS), "bin", "l4lbctl"),
                            "--netns", f"{PREFIX}-lb", "--pin-dir", PIN_DIR, "service", "dumpstate", "--id", "1"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and "WARN DROP_SNAT_PORTS: " in p.stdout, p.stdout + p.stderr
        r = run_playbook("verify.yml", extra_vars={**VARS, "lab_verify_fail": False})
        assert r.rc == 0, r.output[-3000:]
        assert any("DROP_SNAT_PORTS" in line and "WARN" in line for line in r.output.splitlines()), r.output[-3000:]
    finally:
        play("mode.yml")


def test_gc_keeps_only_flows_in_their_guard_time(lab):
    """Last in this file: by now the other tests' time has passed, so most of the sustained
    load's flows are past their guard (time_wait, server-closed) and must be gone, and no entry
    at all may be over its time by more than two GC periods. No idle wait of its own, unless run
    alone (then it makes a shorter load and waits for it)."""
    t = CtTimeouts()
    slack_s = 2 * GC_EVERY_S + 2
    if not SUSTAINED:
        started = time.monotonic()
        r = load("pace", "--rate", "1000", "--seconds", "20")
        SUSTAINED.update(started=started, rate=r["rate"], cts=counters()[2])
    # the load's flows closed from its start on; those that closed before now - guard - slack are due
    wait = SUSTAINED["started"] + t.time_wait + slack_s + 10 - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    due = SUSTAINED["rate"] * (time.monotonic() - SUSTAINED["started"] - t.time_wait - slack_s)
    with agent.open_maps(PIN_DIR) as maps:
        overdue = ct.gc(maps, t, now_ns=ct.monotonic_ns() - slack_s * 10**9, dry_run=True)
        held = len(ct.snat_slots(maps))
        cts = len(maps["ct4_global"].items_list())
        # this look is not atomic: a slot seen without its flow may be one whose flow the GC
        # loop deleted between the look's reads. The GC frees an orphan on its second look, so
        # only one still there, unchanged, two periods and a pass later was missed.
        time.sleep(ORPHAN_GAP_S)
        again = ct.gc(maps, t, dry_run=True)
    missed = {k: v for k, v in overdue["suspects"].items() if again["suspects"].get(k) == v}
    # nothing the GC should have taken two periods ago is there, no slot left without its flow
    assert overdue["ct_deleted"] == 0, overdue
    assert missed == {}, (missed, overdue["suspects"])
    # and that was not for want of flows to take: the load's due flows are gone (the later
    # tests' flows, about 1,100 real ones, may still be in their guard)
    assert SUSTAINED["cts"] - cts >= min(due, SUSTAINED["cts"]) - 2000, (SUSTAINED, due, cts, held)
