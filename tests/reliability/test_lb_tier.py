"""The LB tier under change (issue 14): two LB nodes (inventory/tier) behind the client's ECMP
route, real long-lived connections from the client namespace.

- DSR: 100 keep-alive connections, a request on each every 100 ms; `lb` withdrawn, then
  restored (playbooks/tier.yml): no request fails, every connection stays on its first backend,
  and the flows that crossed LB nodes each way are counted from each node's CT entries.
- DSR with a backend added to both nodes mid-run, then `lb` withdrawn and restored: exactly the
  connections that crossed to `lb2` and whose Maglev slot moved break (predicted from the table
  read from the maps and the datapath's flow hash); every other one keeps its backend.
- SNAT: the same withdraw breaks exactly the crossed connections (the backend knows them by the
  old LB's address and port); the others keep working.

The measured numbers are printed and written to $L4LB_TIER_RESULTS (default
<tmp>/<prefix>-tier-results.json). Own prefix
(L4LB_TEST_PREFIX14, default l4lbt14), swept before and after. Client loops are bounded in count
and time and address only the lab's VIP from the lab's client namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

from labtest import REPO, lab_namespaces, root_ns_snapshot, run_playbook
from l4lb import agent, flowhash, reconcile

PREFIX = os.environ.get("L4LB_TEST_PREFIX14", "l4lbt14")
TIER = os.path.join(REPO, "inventory", "tier")
CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "http_client.py")
CLIENT_IP, VIP = "20.1.1.100", "40.1.1.1"
LBS = {"lb": "20.1.1.1", "lb2": "20.1.1.2"}
BACKENDS = {"win1": "20.1.1.10", "win2": "20.1.1.20", "linux1": "20.1.1.30", "linux2": "20.1.1.40"}
RESULTS = {}


def play(playbook, extra=None):
    r = run_playbook(playbook, extra_vars={"lab_prefix": PREFIX, **(extra or {})}, args=("-i", TIER))
    assert r.rc == 0, r.output[-4000:]
    return r


def service(names):
    return {"lb_services": [{"id": 1, "frontend": f"{VIP}:80", "protocol": "tcp",
                             "backends": [f"{BACKENDS[n]}:80" for n in names]}]}


def pin_dir(node):
    return f"/sys/fs/bpf/{PREFIX}/{node}"


def ct_counts(base, count):
    """{node: {source port: packets}} of the client's flows to service 1, read from each node's
    CT map (from here, the root namespace: a read of pinned maps, no traffic)."""
    out = {}
    for node in LBS:
        rows = agent.dumpstate(pin_dir(node), 1)["connections"]
        out[node] = {r["source_port"]: r["rx_packets"] for r in rows
                     if r["source_ip"] == CLIENT_IP and base <= r["source_port"] < base + count}
    return out


def carriers(a, b, ports):
    """{port: the node whose CT entry for it counted packets between snapshots a and b}
    ('both' / None when not exactly one)."""
    out = {}
    for p in ports:
        moved = [n for n in LBS if b[n].get(p, 0) != a[n].get(p, 0)]
        out[p] = moved[0] if len(moved) == 1 else ("both" if moved else None)
    return out


def identity_table(node):
    with agent.open_maps(pin_dir(node)) as maps:
        return reconcile.maglev_tables(maps, ids={1})[1]


class Steady:
    """http_client.py steady: N keep-alive connections, a request each every interval."""

    def __init__(self, base, count, interval=0.1):
        self.base, self.count = base, count
        self.p = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{PREFIX}-client", "--", sys.executable, CLIENT, "steady",
             "--base-port", str(base), "--count", str(count), "--interval", str(interval),
             "--seconds", "140", "--timeout", "2"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if not line:
            self.p.kill()
            raise AssertionError(f"steady client failed: {self.p.stderr.read()}")
        self.first = {int(k): v for k, v in json.loads(line)["ready"].items()}

    def stop(self):
        out, err = self.p.communicate("stop\n", timeout=60)
        assert self.p.returncode == 0, err
        res = json.loads(out.strip().splitlines()[-1])
        res["ports"] = {int(k): v for k, v in res["ports"].items()}
        return res

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def withdraw_and_restore(base, count, settle=3.0, before=None):
    """Snapshots of both nodes' CT counters around a withdraw and a restore of `lb`: the carrier
    of each flow before, while withdrawn, and after the restore; `before` runs first (a change
    made while the connections run)."""
    ports = range(base, base + count)
    time.sleep(settle)
    s0 = ct_counts(base, count)
    time.sleep(settle)
    s1 = ct_counts(base, count)
    if before:
        before()
        time.sleep(settle)
    t0 = time.monotonic()
    play("tier.yml", {"lb_tier_action": "withdraw", "lb_tier_node": "lb"})
    time.sleep(settle)
    w0 = ct_counts(base, count)
    time.sleep(settle)
    w1 = ct_counts(base, count)
    play("tier.yml", {"lb_tier_action": "restore", "lb_tier_node": "lb"})
    withdrawn_s = time.monotonic() - t0
    time.sleep(settle)
    r0 = ct_counts(base, count)
    time.sleep(settle)
    r1 = ct_counts(base, count)
    return {"before": carriers(s0, s1, ports), "withdrawn": carriers(w0, w1, ports),
            "restored": carriers(r0, r1, ports), "withdrawn_s": round(withdrawn_s, 1),
            # a flow that reached lb2 while lb was out has an entry there it had not before (a
            # connection that broke on arrival counts no packets after, but has its entry)
            "new_on_lb2": sorted(p for p in ports if p in w1["lb2"] and p not in s1["lb2"])}


def crossed(c):
    """(flows that crossed lb -> lb2 on the withdraw, those that came back lb2 -> lb on the
    restore: counted packets on lb again)."""
    out = [p for p, n in c["before"].items() if n == "lb" and p in c["new_on_lb2"]]
    back = [p for p in out if c["restored"].get(p) == "lb"]
    return out, back


def record(name, data):
    RESULTS[name] = data
    print(f"\n{name}: {json.dumps(data)}")
    path = os.environ.get("L4LB_TIER_RESULTS") or os.path.join(tempfile.gettempdir(), f"{PREFIX}-tier-results.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(RESULTS, f, indent=1)


@pytest.fixture(scope="module")
def tier():
    root = root_ns_snapshot()
    play("teardown.yml")
    t = time.monotonic()
    play("site.yml", {"lb_mode": "dsr"})
    RESULTS["site_s"] = round(time.monotonic() - t, 1)
    yield
    play("teardown.yml")
    assert lab_namespaces(PREFIX) == []
    assert root_ns_snapshot() == root, "the root namespace changed"


def test_tier_is_built_with_identical_tables(tier):
    route = json.loads(subprocess.run(["ip", "-n", f"{PREFIX}-client", "-j", "route", "show", "40.1.1.0/24"],
                                      capture_output=True, text=True, check=True).stdout)
    assert [h["gateway"] for h in route[0]["nexthops"]] == list(LBS.values())
    # the client's L4 hash, in the client's namespace only
    pol = subprocess.run(["nsenter", f"--net=/run/netns/{PREFIX}-client", "--", "cat",
                          "/proc/sys/net/ipv4/fib_multipath_hash_policy"], capture_output=True, text=True, check=True)
    assert pol.stdout.strip() == "1"
    tables = {n: identity_table(n) for n in LBS}
    assert tables["lb"] == tables["lb2"] and len(set(tables["lb"])) == 4
    r = play("dumpstate.yml")
    digests = {line.split("digest ")[1].split(":")[0] for line in r.output.splitlines() if "maglev: " in line}
    assert len(digests) == 1, r.output[-2000:]


def test_dsr_withdraw_and_restore_loses_no_request(tier):
    base, count = 23000, 100
    run = Steady(base, count)
    try:
        # the datapath's choice, predicted from the table read from the maps and its flow hash
        table = identity_table("lb")
        want = {p: table[flowhash.maglev_index(CLIENT_IP, VIP, p, 80, 6, len(table))] for p in run.first}
        names = {f"{ip}:80": n for n, ip in BACKENDS.items()}
        assert {p: names[want[p]] for p in run.first} == run.first
        c = withdraw_and_restore(base, count)
    finally:
        res = run.stop() if run.p.poll() is None else None
        run.kill()
    out, back = crossed(c)
    failed = {p: v["failed"] for p, v in res["ports"].items() if v["failed"]}
    moved = {p: v["others"] for p, v in res["ports"].items() if v["others"]}
    stayed = [p for p, n in c["before"].items() if n == "lb2"]
    record("dsr_withdraw_restore", {
        "connections": count, "requests": res["requests"], "seconds": res["seconds"], "late_ticks": res["late_ticks"],
        "failed_requests": len(failed), "changed_backend": len(moved), "on_lb_before": len(out) + len(
            [p for p, n in c["before"].items() if n == "lb" and p not in out]),
        "crossed_lb_to_lb2": len(out), "crossed_back_lb2_to_lb": len(back), "stayed_on_lb2": len(stayed),
        "withdrawn_s": c["withdrawn_s"]})
    assert failed == {}, failed
    assert moved == {}, moved
    assert set(c["before"].values()) == {"lb", "lb2"}, "ECMP spread the connections over both nodes"
    assert None not in c["before"].values() and "both" not in c["before"].values(), c["before"]
    # every flow of lb crossed to lb2 and came back; lb2's own never moved
    assert sorted(out) == sorted(p for p, n in c["before"].items() if n == "lb")
    assert all(c["withdrawn"][p] == "lb2" for p in out)
    assert sorted(back) == sorted(out)
    assert all(c["withdrawn"][p] == "lb2" for p in stayed) and all(c["restored"][p] == "lb2" for p in stayed)
    assert res["requests"] >= count * 60, "about ten requests a second on each connection"


def test_dsr_backend_added_mid_run_breaks_only_maglev_moved_crossers(tier):
    base, count = 24000, 100
    play("service.yml", service(["win1", "win2", "linux1"]))
    run = Steady(base, count)
    try:
        assert "linux2" not in set(run.first.values())
        c = withdraw_and_restore(base, count, before=lambda: play("service.yml", service(list(BACKENDS))))
        table = identity_table("lb2")
    finally:
        res = run.stop() if run.p.poll() is None else None
        run.kill()
    assert table == identity_table("lb")
    names = {f"{ip}:80": n for n, ip in BACKENDS.items()}
    pick = {p: names[table[flowhash.maglev_index(CLIENT_IP, VIP, p, 80, 6, len(table))]] for p in run.first}
    out, back = crossed(c)
    slot_moved = [p for p in run.first if pick[p] != run.first[p]]
    predicted = sorted(p for p in out if pick[p] != run.first[p])
    failed = {p: v["failed"] for p, v in res["ports"].items() if v["failed"]}
    moved = {p: v["others"] for p, v in res["ports"].items() if v["others"]}
    record("dsr_backend_added", {
        "connections": count, "requests": res["requests"], "seconds": res["seconds"],
        "maglev_slot_moved": len(slot_moved), "crossed_lb_to_lb2": len(out), "crossed_back_lb2_to_lb": len(back),
        "predicted_broken": len(predicted), "failed_connections": len(failed), "changed_backend": len(moved),
        "errors": sorted({v.split(": ", 1)[-1] for v in failed.values()})[:3]})
    # the connections that broke are exactly those that crossed to lb2 (no CT entry there) after
    # their Maglev slot moved; the others kept their backend through CT on their node
    assert sorted(failed) == predicted, (failed, predicted)
    assert moved == {} or set(moved) <= set(predicted), moved
    assert slot_moved and len(out) > 0
    not_crossed = [p for p in slot_moved if p not in out]
    assert not_crossed and all(p not in failed for p in not_crossed), "CT kept slot-moved flows on their node"
    play("service.yml", service(list(BACKENDS)))


def test_snat_withdraw_breaks_the_crossed_connections(tier):
    play("mode.yml", {"lb_mode": "snat"})
    base, count = 25000, 40
    run = Steady(base, count)
    try:
        c = withdraw_and_restore(base, count)
    finally:
        res = run.stop() if run.p.poll() is None else None
        run.kill()
    on_lb = sorted(p for p, n in c["before"].items() if n == "lb")
    failed = {p: v["failed"] for p, v in res["ports"].items() if v["failed"]}
    record("snat_withdraw_restore", {
        "connections": count, "requests": res["requests"], "on_lb_before": len(on_lb),
        "failed_connections": len(failed), "errors": sorted({v.split(": ", 1)[-1] for v in failed.values()})[:3]})
    # every connection lb carried broke when it moved (lb2 gave it a new SNAT address and port,
    # which the backend does not know: a reset); lb2's own connections kept working
    assert on_lb and sorted(failed) == on_lb, (failed, on_lb)
    assert all(not v["others"] for v in res["ports"].values())
    # (no crossing count from lb2's CT here: the reset closes the entry lb2 made, and its GC
    # removes it within seconds)
    play("mode.yml", {"lb_mode": "dsr"})
