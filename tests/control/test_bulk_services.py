"""The whole service set in one call (issue 12), on the real kernel in the slice's LB namespace:
``lb_service services=`` (apply, no-op rerun, prune vs leave-alone, check mode, per-service
diff, bad input refused before any write), ``lb_neighbor addresses=`` and
``l4lbctl service apply -f FILE``.
"""

from __future__ import annotations

import json
import os

import pytest

from control_lab import BE_IP, PIN_DIR, PROGRAM, VIP, l4lbctl, lb_maps_snapshot

pytestmark = pytest.mark.usefixtures("slice_lab")

IDS = range(101, 131)   # 30 services x 4 backends, all on the slice's one backend address


def service(sid, first_port=None, state=None):
    base = first_port or 2000 + 4 * sid
    s = {"id": sid, "frontend": f"{VIP}:{1000 + sid}",
         "backends": [f"{BE_IP}:{base + k}" for k in range(4)]}
    if state:
        s["state"] = state
    return s


SET = [service(sid) for sid in IDS]


def bulk(run_module, services, prune=False, **kw):
    return run_module("lb_service", {"services": services, "prune": prune, "pin_dir": PIN_DIR}, **kw)


def programmed():
    """{id: service} as the maps hold them."""
    from l4lb import reconcile
    with reconcile.LBMaps.open(os.path.join(PIN_DIR, "maps")) as maps:
        return {s["id"]: s for s in reconcile.dump(maps)}



@pytest.fixture()
def empty(run_module, program):
    """No service programmed (prune to the empty set)."""
    r = bulk(run_module, [], prune=True)
    assert not r.get("failed"), r
    assert programmed() == {}


def test_apply_then_rerun_changes_nothing(run_module, empty):
    r = bulk(run_module, SET)
    assert not r.get("failed"), r
    assert r["changed"] is True
    assert r["services"] == {"create": list(IDS), "update": [], "remove": []}
    assert sorted(r["changes"]) == sorted(str(i) for i in IDS)
    assert any("master" in w for w in r["changes"]["101"])
    have = programmed()
    assert sorted(have) == list(IDS)
    assert [f"{b['ip']}:{b['port']}" for b in have[105]["backends"]] == service(105)["backends"]

    again = bulk(run_module, SET)
    assert again["changed"] is False, again
    assert again["unchanged"] == len(IDS) and again["changes"] == {} and again["counts"] == {}


def test_check_mode_and_diff_list_only_what_changes(run_module, empty):
    before = lb_maps_snapshot()
    r = bulk(run_module, SET, check=True, diff=True)
    assert r["changed"] is True and len(r["services"]["create"]) == len(IDS)
    assert lb_maps_snapshot() == before, "check mode must not write"
    assert sorted(r["diff"]["after"]) == sorted(str(i) for i in IDS) and r["diff"]["before"] == {}

    bulk(run_module, SET)
    changed = [service(sid, first_port=9000) if sid == 110 else service(sid) for sid in IDS]
    before = lb_maps_snapshot()
    r = bulk(run_module, changed, check=True, diff=True)
    assert r["changed"] is True
    assert r["services"] == {"create": [], "update": [110], "remove": []}
    assert r["unchanged"] == len(IDS) - 1
    assert list(r["diff"]["before"]) == ["110"] and list(r["diff"]["after"]) == ["110"]
    assert [b["port"] for b in r["diff"]["after"]["110"]["backends"]] == [9000, 9001, 9002, 9003]
    assert lb_maps_snapshot() == before, "check mode must not write"

    r = bulk(run_module, changed, diff=True)
    assert r["services"]["update"] == [110]
    assert [b["port"] for b in programmed()[110]["backends"]] == [9000, 9001, 9002, 9003]


def test_leave_alone_vs_prune(run_module, empty):
    one = run_module("lb_service", {**service(99), "pin_dir": PIN_DIR})   # the per-service form
    assert one["changed"] is True and one["writes"], one
    r = bulk(run_module, SET[:5])
    assert r["services"]["remove"] == [] and 99 in programmed(), "without prune, others stay"

    r = bulk(run_module, SET[:5] + [service(106, state="absent")], prune=False)
    assert r["changed"] is False, "an absent service that is not there changes nothing"

    r = bulk(run_module, SET[:3], prune=True, diff=True)
    assert r["changed"] is True
    assert r["services"] == {"create": [], "update": [], "remove": [99, 104, 105]}
    assert sorted(r["diff"]["before"]) == ["104", "105", "99"] and r["diff"]["after"] == {}
    assert sorted(programmed()) == [101, 102, 103]
    snap = lb_maps_snapshot()
    assert len(snap["lb4_backends"]) == 12, "the removed services' backends are gone"
    assert len(snap["maglev_tables"]) == 3

    r = bulk(run_module, [service(101, state="absent")])
    assert r["services"]["remove"] == [101] and sorted(programmed()) == [102, 103]
    assert bulk(run_module, SET[:3], prune=True)["services"]["create"] == [101]


def _untouched(run_module, services, prune=False):
    before = lb_maps_snapshot()
    r = bulk(run_module, services, prune=prune)
    assert r.get("failed"), r
    assert lb_maps_snapshot() == before, "nothing may be written before the whole set is valid"
    return r["msg"]


def test_bad_input_fails_before_any_write(run_module, empty):
    bulk(run_module, SET[:3])
    msg = _untouched(run_module, SET + [service(105)])
    assert f"services[{len(SET)}] (id 105)" in msg and "id" in msg and "services[4]" in msg, msg

    dup_front = dict(service(200), frontend=SET[7]["frontend"])
    msg = _untouched(run_module, SET + [dup_front], prune=True)
    assert "(id 200)" in msg and "frontend" in msg and "service 108" in msg, msg

    # one invalid backend among 1,000 services
    big = [service(sid, first_port=10000 + 4 * sid) for sid in range(1, 1001)]
    big[536]["backends"][2] = "20.1.1.300:80"
    msg = _untouched(run_module, big, prune=True)
    assert "services[536] (id 537)" in msg and "backends" in msg and "20.1.1.300" in msg, msg

    msg = _untouched(run_module, SET + [{"id": 300, "frontend": f"{VIP}:3000", "backends": ["20.1.1.77:80"]}])
    assert "service 300" in msg and "20.1.1.77" in msg and "next hop" in msg, msg


def test_neighbors_in_one_call(run_module, program):
    args = {"addresses": [BE_IP], "pin_dir": PIN_DIR}
    run_module("lb_neighbor", {**args, "state": "absent"})
    r = run_module("lb_neighbor", args, check=True)
    assert r["changed"] is True and r["changed_addresses"] == [BE_IP]
    r = run_module("lb_neighbor", args)
    assert r["changed"] is True and r["macs"][BE_IP]
    assert run_module("lb_neighbor", args)["changed"] is False
    r = run_module("lb_neighbor", {"addresses": [BE_IP, "20.1.1.77"], "pin_dir": PIN_DIR})
    assert r.get("failed") and "20.1.1.77" in r["msg"], r


# --- l4lbctl service apply -----------------------------------------------------------------

def test_l4lbctl_service_apply(run_module, empty, tmp_path):
    yml = tmp_path / "services.yml"
    yml.write_text("".join(f"- id: {s['id']}\n  frontend: \"{s['frontend']}\"\n  backends: {json.dumps(s['backends'])}\n"
                           for s in SET))
    p = l4lbctl("--check", "service", "apply", "-f", str(yml), check=True)
    assert p.stdout.startswith(f"would change: {len(IDS)} created, 0 updated, 0 removed"), p.stdout
    assert programmed() == {}

    p = l4lbctl("service", "apply", "-f", str(yml), check=True)
    assert p.stdout.startswith(f"changed: {len(IDS)} created"), p.stdout
    assert sorted(programmed()) == list(IDS)
    p = l4lbctl("service", "apply", "-f", str(yml), check=True)
    assert p.stdout.strip() == f"unchanged: 0 created, 0 updated, 0 removed, {len(IDS)} unchanged"

    # JSON, in the shape a playbook's -e @file takes; --prune; --json after the verb
    js = tmp_path / "services.json"
    js.write_text(json.dumps({"lb_services": SET[:2]}))
    p = l4lbctl("service", "apply", "-f", str(js), "--json", check=True)
    assert json.loads(p.stdout)["changed"] is False
    p = l4lbctl("service", "apply", "-f", str(js), "--prune", "--json", "--check", check=True)
    out = json.loads(p.stdout)
    assert out["changed"] is True and out["services"]["remove"] == list(IDS)[2:]
    assert sorted(out["diff"]["before"]) == sorted(str(i) for i in list(IDS)[2:])
    assert sorted(programmed()) == list(IDS), "--check changed nothing"
    p = l4lbctl("service", "apply", "-f", str(js), "--prune", check=True)
    assert sorted(programmed()) == [101, 102]


def test_l4lbctl_service_apply_bad_input(run_module, empty, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([service(1), dict(service(2), backends=["20.1.1.10:0"])]))
    before = lb_maps_snapshot()
    p = l4lbctl("--json", "service", "apply", "-f", str(bad))
    assert p.returncode == 1
    msg = json.loads(p.stdout)["msg"]
    assert "services[1] (id 2)" in msg and "backends port" in msg, msg
    assert lb_maps_snapshot() == before
    notalist = tmp_path / "x.yml"
    notalist.write_text("id: 1\n")
    p = l4lbctl("service", "apply", "-f", str(notalist))
    assert p.returncode == 1 and "not a list of services" in p.stderr
