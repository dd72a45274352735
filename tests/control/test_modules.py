"""The Ansible modules on the real kernel, in the LB namespace of a two-node lab slice:
check mode -> real run -> idempotent rerun -> state absent -> nothing left; bad input leaves the
running program and the maps untouched; a mode switch and a forced reload keep services and CT.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest

from control_lab import (BE_IP, PIN_DIR, PROGRAM, SRC_DIR, VIP, attached_prog_id, in_lb, lb_maps_snapshot,
                         make_ct_entries)

pytestmark = pytest.mark.usefixtures("slice_lab")

SERVICE = {"id": 1, "frontend": f"{VIP}:80", "backends": [f"{BE_IP}:80"], "pin_dir": PIN_DIR}



# --- xdp_program -------------------------------------------------------------------------

def test_xdp_program_lifecycle(run_module):
    run_module("xdp_program", {**PROGRAM, "state": "absent"})
    assert attached_prog_id() == 0

    r = run_module("xdp_program", PROGRAM, check=True, diff=True)
    assert not r.get("failed"), r
    assert r["changed"] is True
    assert attached_prog_id() == 0, "check mode must not attach"
    assert not os.path.exists(PIN_DIR), "check mode must not pin"
    assert not [n for n in os.listdir("/sys/fs/bpf") if n.startswith(("lb4_", "ct4_", "l4lb_check"))], \
        "check mode must not leave pins at the bpffs root"

    r = run_module("xdp_program", PROGRAM, diff=True)
    assert not r.get("failed"), r
    assert r["changed"] is True
    assert r["attach_mode"] == "native"
    assert attached_prog_id() == r["prog_id"] != 0
    assert os.path.exists(os.path.join(PIN_DIR, "prog"))
    assert os.path.exists(os.path.join(PIN_DIR, "maps", "lb4_services_v2"))
    assert r["diff"]["after"]["prog_tag"] == r["tag"]
    assert r["build"]["defines"]["MODE_SNAT"] == "1"
    assert r["status"]["mode"] == "snat" and r["diff"]["after"]["mode"] == "snat"

    again = run_module("xdp_program", PROGRAM)
    assert again["changed"] is False, again
    assert again["prog_id"] == r["prog_id"], "an unchanged program must not be reloaded"

    r = run_module("xdp_program", {**PROGRAM, "state": "absent"}, check=True)
    assert r["changed"] is True
    assert attached_prog_id() != 0, "check mode must not detach"

    r = run_module("xdp_program", {**PROGRAM, "state": "absent"})
    assert r["changed"] is True
    assert attached_prog_id() == 0
    assert not os.path.exists(PIN_DIR)
    assert run_module("xdp_program", {**PROGRAM, "state": "absent"})["changed"] is False


def test_xdp_program_generic_on_request(run_module):
    r = run_module("xdp_program", {**PROGRAM, "attach_mode": "generic"})
    assert not r.get("failed"), r
    assert r["attach_mode"] == "generic"
    link = in_lb("ip", "-d", "link", "show", "eth0").stdout
    assert "xdpgeneric" in link
    assert run_module("xdp_program", {**PROGRAM, "attach_mode": "generic"})["changed"] is False
    run_module("xdp_program", {**PROGRAM, "state": "absent"})


# --- lb_service / lb_neighbor / lb_dumpstate ---------------------------------------------

def test_lb_service_lifecycle(run_module, program):
    run_module("lb_service", {"id": 1, "state": "absent", "pin_dir": PIN_DIR})
    before = lb_maps_snapshot()
    r = run_module("lb_service", SERVICE, check=True, diff=True)
    assert not r.get("failed"), r
    assert r["changed"] is True
    assert any("master" in w for w in r["writes"]), r["writes"]
    assert lb_maps_snapshot() == before, "check mode must not write"

    r = run_module("lb_service", SERVICE, diff=True)
    assert r["changed"] is True
    assert r["diff"]["after"]["1"]["backends"][0]["ip"] == BE_IP
    # Writes come in the seed's safe order: the master slot last of the service's entries, then
    # the tracked-flow fast path is switched on (maps.h lb4_service_by_id), then the hint.
    order = [w.split(":")[0] for w in r["writes"]]
    assert "master" in r["writes"][-3] and "fast path on" in r["writes"][-2], order
    assert r["writes"][-1].startswith("frontend hint ") and r["writes"][-1].endswith("service 0 -> 1"), order

    again = run_module("lb_service", SERVICE, diff=True)
    assert again["changed"] is False and again["writes"] == [], again

    dump = run_module("lb_dumpstate", {"id": 1, "pin_dir": PIN_DIR})
    assert dump["service"] == {"id": 1, "vip": VIP, "port": 80, "protocol": "tcp"}
    assert dump["changed"] is False

    r = run_module("lb_service", {"id": 1, "state": "absent", "pin_dir": PIN_DIR})
    assert r["changed"] is True
    snap = lb_maps_snapshot()
    assert snap["lb4_services_v2"] == [] and snap["lb4_backends"] == [] and snap["maglev_tables"] == []
    assert run_module("lb_service", {"id": 1, "state": "absent", "pin_dir": PIN_DIR})["changed"] is False


def test_lb_neighbor_lifecycle(run_module, program):
    args = {"address": BE_IP, "pin_dir": PIN_DIR}
    run_module("lb_neighbor", {**args, "state": "absent"})
    r = run_module("lb_neighbor", args, check=True)
    assert r["changed"] is True
    assert all(k != BE_IP for k in _neigh_ips())
    r = run_module("lb_neighbor", args)
    assert r["changed"] is True and re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", r["mac"])
    assert BE_IP in _neigh_ips()
    assert run_module("lb_neighbor", args)["changed"] is False
    assert run_module("lb_neighbor", {**args, "state": "absent"})["changed"] is True
    assert BE_IP not in _neigh_ips()


def _neigh_ips():
    from l4lb import reconcile
    with reconcile.LBMaps.open(os.path.join(PIN_DIR, "maps")) as maps:
        return set(reconcile.neighbors(maps))


def test_dumpstate_shows_tracked_connections(run_module, program):
    assert not run_module("lb_service", SERVICE).get("failed")
    make_ct_entries(PIN_DIR, [40001, 40002, 40003])
    dump = run_module("lb_dumpstate", {"id": 1, "pin_dir": PIN_DIR})
    rows = {c["source_port"]: c for c in dump["connections"]}
    assert {40001, 40002, 40003} <= set(rows)
    row = rows[40001]
    assert row["source_ip"] == "20.1.1.100" and row["dest_ip"] == VIP and row["dest_port"] == 80
    assert row["backend_ip"] == BE_IP and row["state"] == "ACTIVE" and row["rx_bytes"] > 0
    assert "Source IP" in dump["table"] and "Backend IP" in dump["table"]


# --- mode switch and forced reload keep services and connection tracking ------------------

def _services_and_ct():
    snap = lb_maps_snapshot()
    return {k: snap[k] for k in ("lb4_services_v2", "lb4_backends", "lb4_reverse_nat", "maglev_tables")}, \
        {k for k, _ in snap["ct4_global"]}


def test_mode_switch_and_forced_reload_keep_services_and_ct(run_module, program):
    assert not run_module("lb_service", SERVICE).get("failed")
    make_ct_entries(PIN_DIR, [41001, 41002])
    services_before, ct_before = _services_and_ct()
    assert len(ct_before) >= 2

    r = run_module("xdp_program", {**PROGRAM, "mode": "dsr"}, diff=True)
    assert r["changed"] is True and r["build"]["defines"].get("MODE_DSR") == "1"
    assert r["diff"]["before"]["mode"] == "snat" and r["status"]["mode"] == "dsr"
    assert attached_prog_id() == r["prog_id"]
    services, ct = _services_and_ct()
    assert services == services_before
    assert ct_before <= ct

    assert run_module("xdp_program", {**PROGRAM, "mode": "dsr"})["changed"] is False

    old_id = attached_prog_id()
    r = run_module("xdp_program", {**PROGRAM, "mode": "dsr", "force": True})
    assert r["changed"] is True and attached_prog_id() != old_id
    services, ct = _services_and_ct()
    assert services == services_before and ct_before <= ct

    r = run_module("xdp_program", PROGRAM)   # back to SNAT
    assert r["changed"] is True and r["build"]["defines"].get("MODE_SNAT") == "1"
    services, ct = _services_and_ct()
    assert services == services_before and ct_before <= ct


def test_program_loaded_on_older_pins_fills_the_fast_path(run_module, program):
    """Maps pinned by a program from before the fast paths lack their three maps: the next load
    creates them empty (an empty VIP filter passes every packet), and xdp_program fills them
    from the services programmed, in the same task."""
    assert not run_module("lb_service", SERVICE).get("failed")
    fast = ("lb4_service_by_id", "lb4_vip_filter", "lb4_front_hint")
    want = {k: v for k, v in lb_maps_snapshot().items() if k in fast}
    assert set(want) == set(fast)
    for name in fast:
        os.unlink(os.path.join(PIN_DIR, "maps", name))
    r = run_module("xdp_program", {**PROGRAM, "force": True})
    # service 1 live, its VIP's bucket, its frontend's hint
    assert r["changed"] is True and r["fast_path_filled"] == 3, r
    assert {k: v for k, v in lb_maps_snapshot().items() if k in want} == want
    again = run_module("xdp_program", PROGRAM)
    assert again["changed"] is False and "fast_path_filled" not in again


# --- bad input: a clear error, the running program and the maps untouched ----------------

def _patched_src(tmp_path, old, new):
    src = tmp_path / "bpf"
    shutil.copytree(SRC_DIR, src)
    text = (src / "lb_xdp.c").read_text()
    assert old in text, f"test patch anchor {old!r} not in lb_xdp.c"
    (src / "lb_xdp.c").write_text(text.replace(old, new, 1))
    return str(src)


def _untouched(run_module, fn):
    assert not run_module("lb_service", SERVICE).get("failed")
    prog_before = attached_prog_id()
    maps_before = lb_maps_snapshot()
    r = fn()
    assert r.get("failed"), r
    assert attached_prog_id() == prog_before
    after = lb_maps_snapshot()
    # CT may age or gain nothing here; everything the operator programmed must be identical.
    assert {k: v for k, v in after.items() if k != "ct4_global"} == \
        {k: v for k, v in maps_before.items() if k != "ct4_global"}
    return r["msg"]


def test_bad_device(run_module, program):
    msg = _untouched(run_module, lambda: run_module("xdp_program", {**PROGRAM, "device": "eth9"}))
    assert "eth9" in msg and "does not exist" in msg


def test_source_that_does_not_compile(run_module, program, tmp_path):
    src = _patched_src(tmp_path, "char _license[]", "this is not C;\nchar _license[]")
    msg = _untouched(run_module, lambda: run_module("xdp_program", {**PROGRAM, "src": src}))
    assert "compiling" in msg and "error" in msg, msg


def test_program_the_verifier_rejects(run_module, program, tmp_path):
    # A packet read without a bounds check: compiles, and the verifier must refuse it.
    anchor = "int LB_PROG_NAME(lb_xdp_ctx *ctx)\n{"
    src = _patched_src(tmp_path, anchor, anchor + "\n\tif (*(volatile char *)LB_CTX_DATA(ctx) == 0x42) return 1;")
    msg = _untouched(run_module, lambda: run_module("xdp_program", {**PROGRAM, "src": src}))
    assert "rejected" in msg and "invalid access to packet" in msg, msg
    assert len(msg.splitlines()) < 45, "the verifier log is trimmed to the failing instructions"


def test_mode_other_than_snat_or_dsr(run_module, program):
    msg = _untouched(run_module, lambda: run_module("xdp_program", {**PROGRAM, "mode": "nat"}))
    assert "mode" in msg and "nat" in msg


def test_backend_without_next_hop(run_module, program):
    bad = {**SERVICE, "backends": [f"{BE_IP}:80", "20.1.1.77:80"]}
    msg = _untouched(run_module, lambda: run_module("lb_service", bad))
    assert "20.1.1.77" in msg and "next hop" in msg


@pytest.mark.parametrize("args,needle", [
    ({"frontend": "40.1.1.1:0"}, "port"),
    ({"frontend": "40.1.1.300:80"}, "40.1.1.300"),
    ({"backends": ["20.1.1.10:80", "20.1.1.10:80"]}, "duplicate"),
    ({"id": 70000}, "70000"),
    ({"protocol": "sctp"}, "sctp"),
])
def test_bad_service_input(run_module, program, args, needle):
    msg = _untouched(run_module, lambda: run_module("lb_service", {**SERVICE, **args}))
    assert needle in msg, msg
