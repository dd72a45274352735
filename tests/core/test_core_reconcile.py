"""Reconcile on real kernel maps (the LB object's own pinned maps)."""

from array import array

import pytest
from core_helpers import dump_all

from l4lb import maglev, reconcile
from l4lb.errors import InvalidConfig
from l4lb.model import Service
from l4lb.reconcile import (
    BACKEND_DEL, BACKEND_UPD, FILTER_LOWER, FILTER_RAISE, HINT_SET, LIVE_OFF, LIVE_ON, MAGLEV_DEL, MAGLEV_SET, MASTER_DEL,
    MASTER_UPD, NEIGH_UPD, REVNAT_DEL, REVNAT_UPD, SLOT_DEL, SLOT_UPD, apply, dump, plan_fast_path, plan_service,
    plan_services, read_state,
)
from l4lb.structs import (
    LB4_BACKEND, LB4_SERVICE, LB4_SERVICE_FRONT, U32, be16_to_port, be32_to_ip, front_bucket, ip_to_be32, port_to_be16,
    vip_bucket,
)

SEED = dict(id=1, frontend="40.1.1.1:80", backends="20.1.1.10:80,20.1.1.20:80,20.1.1.30:80,20.1.1.40:80")
NEIGH = {"20.1.1.10": "02:00:14:01:01:0a", "20.1.1.20": "02:00:14:01:01:14"}


def svc(**kw):
    d = dict(SEED)
    d.update(kw)
    return Service.parse(d)


def phases(plan):
    return [w.phase for w in plan.writes]


def invariant(maps):
    """What the datapath relies on at every instant: a master's slots exist and name existing
    backends; every Maglev table names existing backends; every master has its reverse NAT;
    every master's VIP passes the VIP filter; a service is live (fast path) only on the frontend
    whose master names it with backends."""
    st = read_state(maps)
    masters = {f: LB4_SERVICE.unpack(slots[0][1]) for f, slots in st.fronts.items() if 0 in slots}
    for front in masters:
        assert st.vip_filter.get(vip_bucket(front[0]), 0) > 0, f"master {front}: its VIP is filtered out"
    for sid, value in st.live.items():
        front = LB4_SERVICE_FRONT.unpack(value)
        assert front in masters, f"service {sid} live on {front}, which has no master"
        _, count, owner, _, _ = masters[front]
        assert owner == sid and count > 0, f"service {sid} live on {front}, whose master is {owner} count {count}"
    for front, slots in st.fronts.items():
        if 0 not in slots:
            continue
        _, count, sid, _, _ = LB4_SERVICE.unpack(slots[0][1])
        for s in range(1, count + 1):
            assert s in slots, f"master {front} count {count} but slot {s} missing"
            bid = LB4_SERVICE.unpack(slots[s][1])[0]
            assert bid in st.backends, f"slot {s} -> backend {bid} missing"
        assert sid in st.revnat, f"service {sid} live without reverse NAT"
        assert sid in st.maglev, f"service {sid} live without Maglev table"
    for sid, table in st.maglev.items():
        for bid in set(array("I", table)) - {0}:      # 0 = no backend (drop)
            assert bid in st.backends, f"Maglev of {sid} -> backend {bid} missing"


def apply_stepwise(maps, plan):
    """Apply one write at a time, checking the datapath invariant after each."""
    for w in plan.writes:
        apply(maps, reconcile.Plan([w]))
        invariant(maps)


def backends_of(d):
    return [(b["ip"], b["port"]) for b in d["backends"]]


def test_seed_service_roundtrip(lbmaps):
    s = svc()
    plan = plan_service(lbmaps, s, neighbors=NEIGH)
    assert plan.changed
    # the seed's update order: neighbours, backends, Maglev, slots, reverse NAT, master last
    assert phases(plan) == sorted(phases(plan))
    assert [w.map for w in plan.writes][:2] == ["nodeport_neigh4"] * 2
    assert [w.phase for w in plan.writes if w.map == "lb4_services_v2"][-1] == MASTER_UPD
    # the VIP passes the filter before the master is written; the fast path is on after it
    assert [(w.phase, w.map) for w in plan.writes][-2:] == [(LIVE_ON, "lb4_service_by_id"),
                                                           (HINT_SET, "lb4_front_hint")]
    assert {w.phase for w in plan.writes} == {NEIGH_UPD, BACKEND_UPD, MAGLEV_SET, SLOT_UPD, REVNAT_UPD,
                                              FILTER_RAISE, MASTER_UPD, LIVE_ON, HINT_SET}
    assert plan.diff["before"] == {} and plan.diff["after"]["1"]["count"] == 4
    apply(lbmaps, plan)
    invariant(lbmaps)
    (d,) = dump(lbmaps)
    assert (d["id"], d["vip"], d["port"], d["protocol"], d["count"]) == (1, "40.1.1.1", 80, "tcp", 4)
    assert backends_of(d) == [("20.1.1.10", 80), ("20.1.1.20", 80), ("20.1.1.30", 80), ("20.1.1.40", 80)]
    assert [b["backend_id"] for b in d["backends"]] == [1, 2, 3, 4]
    shares = [b["maglev_slots"] for b in d["backends"]]
    assert sum(shares) == 2039 and max(shares) - min(shares) <= 1
    assert reconcile.neighbors(lbmaps) == NEIGH
    # the table in the kernel is the Python table
    st = read_state(lbmaps)
    expect = maglev.build_bytes([(f"20.1.1.{x}:80", 1, i + 1) for i, x in enumerate((10, 20, 30, 40))], 2039)
    assert st.maglev[1] == expect
    # idempotent: nothing to write the second time (neighbours, Maglev content included)
    again = plan_service(lbmaps, s, neighbors=NEIGH)
    assert not again.changed and again.writes == []
    assert again.diff["before"] == again.diff["after"]
    # input order does not matter
    shuffled = svc(backends="20.1.1.40:80,20.1.1.10:80,20.1.1.30:80,20.1.1.20:80")
    assert not plan_service(lbmaps, shuffled).changed


def test_grow_and_shrink(lbmaps):
    apply(lbmaps, plan_service(lbmaps, svc(backends="20.1.1.10:80,20.1.1.20:80")))
    grow = plan_service(lbmaps, svc())
    # new backends first, new slots before the master count goes up
    assert phases(grow) == [BACKEND_UPD, BACKEND_UPD, MAGLEV_SET, SLOT_UPD, SLOT_UPD, MASTER_UPD]
    apply_stepwise(lbmaps, grow)
    assert dump(lbmaps)[0]["count"] == 4
    assert not plan_service(lbmaps, svc()).changed

    shrink = plan_service(lbmaps, svc(backends="20.1.1.10:80,20.1.1.30:80"))
    p = phases(shrink)
    # master count first, then the surplus slots, then the unreferenced backends
    assert p.index(MASTER_UPD) < p.index(SLOT_DEL) < p.index(BACKEND_DEL)
    assert p.index(MAGLEV_SET) < p.index(MASTER_UPD)
    apply_stepwise(lbmaps, shrink)
    (d,) = dump(lbmaps)
    assert backends_of(d) == [("20.1.1.10", 80), ("20.1.1.30", 80)] and d["count"] == 2
    st = read_state(lbmaps)
    assert sorted(st.backends) == [1, 3]                 # .20 (id 2) and .40 (id 4) gone
    assert sorted(st.fronts[next(iter(st.fronts))]) == [0, 1, 2]
    assert not plan_service(lbmaps, svc(backends="20.1.1.10:80,20.1.1.30:80")).changed


def test_remove(lbmaps):
    apply(lbmaps, plan_service(lbmaps, svc()))
    rm = plan_service(lbmaps, 1, state="absent")
    p = phases(rm)
    # the fast path goes off before the master goes; the filter is lowered after it
    assert p[:2] == [LIVE_OFF, MASTER_DEL] and p == sorted(p)
    assert p.index(MASTER_DEL) < p.index(FILTER_LOWER)
    assert p.count(SLOT_DEL) == 4 and p.count(BACKEND_DEL) == 4
    assert p.index(REVNAT_DEL) < p.index(MAGLEV_DEL) < p.index(BACKEND_DEL)
    assert rm.diff["after"] == {} and rm.diff["before"]["1"]["count"] == 4
    apply_stepwise(lbmaps, rm)
    st = read_state(lbmaps)
    assert not st.fronts and not st.backends and not st.revnat and not st.maglev
    assert not st.live and not st.vip_filter
    assert not plan_service(lbmaps, svc(), state="absent").changed


def test_shared_backends_and_ids(lbmaps):
    a = svc()
    b = svc(id=2, frontend="40.1.1.2:80", backends="20.1.1.30:80,20.1.1.50:80")
    c = svc(id=3, frontend="40.1.1.1:53", protocol="udp", backends="20.1.1.10:80")
    apply(lbmaps, plan_services(lbmaps, [a, b, c]))
    invariant(lbmaps)
    st = read_state(lbmaps)
    # .30 shared by services 1 and 2: one id; udp .10 is another backend (proto differs)
    idents = {(be32_to_ip(x[0]), be16_to_port(x[1]), x[2]): bid
              for bid, x in ((bid, LB4_BACKEND.unpack(v)) for bid, v in st.backends.items())}
    assert idents == {("20.1.1.10", 80, 6): 1, ("20.1.1.20", 80, 6): 2, ("20.1.1.30", 80, 6): 3,
                      ("20.1.1.40", 80, 6): 4, ("20.1.1.50", 80, 6): 5, ("20.1.1.10", 80, 17): 6}
    # removing service 1 keeps the shared backend, frees the others; the lowest free id is reused
    rm = plan_service(lbmaps, 1, state="absent")
    deleted = sorted(U32.unpack(w.key)[0] for w in rm.writes if w.phase == BACKEND_DEL)
    assert deleted == [1, 2, 4]
    apply(lbmaps, rm)
    invariant(lbmaps)
    apply(lbmaps, plan_service(lbmaps, svc(id=4, frontend="40.1.1.4:80", backends="20.1.1.99:80")))
    d4 = [d for d in dump(lbmaps) if d["id"] == 4][0]
    assert d4["backends"][0]["backend_id"] == 1
    # the remaining services are untouched (ids stable)
    assert not plan_services(lbmaps, [b, c]).changed


def test_weight_zero_drain(lbmaps):
    apply(lbmaps, plan_service(lbmaps, svc()))
    drain = svc(backends="20.1.1.10:80,20.1.1.20:80@0,20.1.1.30:80,20.1.1.40:80")
    plan = plan_service(lbmaps, drain)
    assert phases(plan) == [MAGLEV_SET]           # only the table changes
    apply(lbmaps, plan)
    (d,) = dump(lbmaps)
    assert d["count"] == 4
    by = {b["ip"]: b["maglev_slots"] for b in d["backends"]}
    assert by["20.1.1.20"] == 0 and sum(by.values()) == 2039
    assert 2 in read_state(lbmaps).backends        # kept for existing flows
    assert not plan_service(lbmaps, drain).changed
    # weights: 2:1 shares
    w = svc(backends="20.1.1.10:80@2,20.1.1.20:80@1")
    apply(lbmaps, plan_service(lbmaps, w))
    by = {b["ip"]: b["maglev_slots"] for b in dump(lbmaps)[0]["backends"]}
    assert abs(by["20.1.1.10"] - 2 * by["20.1.1.20"]) <= 3
    assert not plan_service(lbmaps, w).changed


def test_maglev_swap_is_a_new_inner_map(lbmaps):
    apply(lbmaps, plan_service(lbmaps, svc()))
    old_id = lbmaps.inner_map_ids()[1]
    apply(lbmaps, plan_service(lbmaps, svc(backends="20.1.1.10:80,20.1.1.20:80,20.1.1.30:80")))
    new_id = lbmaps.inner_map_ids()[1]
    assert new_id != old_id
    table = array("I", lbmaps.read_inner(new_id)[0])
    assert len(table) == 2039 and set(table) == {1, 2, 3}


def test_move_frontend_and_prune(lbmaps):
    apply(lbmaps, plan_services(lbmaps, [svc(), svc(id=2, frontend="40.1.1.2:80")]))
    moved = svc(frontend="40.1.1.9:8080")
    plan = plan_services(lbmaps, [moved])
    p = phases(plan)
    assert p.index(MASTER_UPD) < p.index(MASTER_DEL) < p.index(SLOT_DEL)
    # moved: off on the old frontend before any master changes, on the new one after
    assert p.index(LIVE_OFF) < p.index(MASTER_UPD) and p.index(MASTER_DEL) < p.index(LIVE_ON)
    apply_stepwise(lbmaps, plan)
    ds = {d["id"]: d for d in dump(lbmaps)}
    assert (ds[1]["vip"], ds[1]["port"]) == ("40.1.1.9", 8080) and 2 in ds
    # prune removes service 2; backends still used by service 1 stay
    prune = plan_services(lbmaps, [moved], prune=True)
    assert {w.phase for w in prune.writes} == {LIVE_OFF, MASTER_DEL, HINT_SET, FILTER_LOWER, SLOT_DEL, REVNAT_DEL,
                                               MAGLEV_DEL}
    apply_stepwise(lbmaps, prune)
    assert [d["id"] for d in dump(lbmaps)] == [1]
    assert not plan_services(lbmaps, [moved], prune=True).changed


def test_frontend_taken_by_other_service(lbmaps):
    apply(lbmaps, plan_service(lbmaps, svc()))
    before = dump_all(lbmaps)
    with pytest.raises(InvalidConfig, match="already used by service 1"):
        plan_service(lbmaps, svc(id=2))
    assert dump_all(lbmaps) == before
    # replacing it in one set with prune is allowed (old one removed, new one written)
    plan = plan_services(lbmaps, [svc(id=2)], prune=True)
    apply_stepwise(lbmaps, plan)
    assert [d["id"] for d in dump(lbmaps)] == [2]


BAD_INPUTS = [
    dict(id=0), dict(id=65536), dict(frontend="40.1.1.300:80"), dict(frontend="40.1.1.1:0"),
    dict(frontend="40.1.1.1:65536"), dict(protocol="icmp"), dict(backends=""), dict(backends=[]),
    dict(backends="20.1.1.10:80,20.1.1.10:80"), dict(backends="20.1.1.10:80@x"),
    dict(backends=[f"10.9.{i // 200}.{i % 200 + 1}:80" for i in range(1025)]),
    dict(backends="20.1.1.10:0"), dict(backends="20.1.1.10:99999"), dict(backends="20.1.1.x:80"),
]


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[repr(b)[:50] for b in BAD_INPUTS])
def test_bad_input_touches_nothing(lbmaps, bad):
    apply(lbmaps, plan_service(lbmaps, svc(), neighbors=NEIGH))
    before = dump_all(lbmaps)
    data = dict(SEED)
    data.update(bad)
    with pytest.raises(InvalidConfig):
        plan = plan_service(lbmaps, data, neighbors=NEIGH)
        apply(lbmaps, plan)
    with pytest.raises(InvalidConfig):
        apply(lbmaps, plan_services(lbmaps, [svc(id=5, frontend="40.1.1.5:80"), data], prune=True))
    assert dump_all(lbmaps) == before


@pytest.mark.parametrize("call", [
    lambda m: plan_service(m, SEED, neighbors={"20.1.1.10": "nope"}),
    lambda m: plan_service(m, SEED, neighbors={"20.1.1.1000": "02:00:00:00:00:01"}),
    lambda m: plan_service(m, SEED, maglev_size=2040),
    lambda m: plan_service(m, SEED, maglev_size=4093),
    lambda m: plan_service(m, SEED, state="gone"),
    lambda m: plan_service(m, 0, state="absent"),
    lambda m: plan_services(m, [SEED, dict(SEED, frontend="40.1.1.2:80")]),
    lambda m: plan_services(m, [SEED, dict(SEED, id=2)]),
    lambda m: plan_services(m, [SEED], absent=[1]),
])
def test_bad_call_touches_nothing(lbmaps, call):
    apply(lbmaps, plan_service(lbmaps, svc(), neighbors=NEIGH))
    before = dump_all(lbmaps)
    with pytest.raises(InvalidConfig):
        apply(lbmaps, call(lbmaps))
    assert dump_all(lbmaps) == before


def test_check_mode_and_json(lbmaps):
    import json
    plan = reconcile.reconcile(lbmaps, [svc()], neighbors=NEIGH, check_mode=True)
    assert plan.changed and not read_state(lbmaps).fronts
    json.dumps(plan.to_dict())
    assert all(isinstance(x, str) and x for x in plan.describe())
    assert plan.counts()["lb4_services_v2:update"] == 5


def test_maglev_tampering_is_detected(lbmaps):
    """The no-op shortcut (fingerprint-named inner map) still compares the content read back."""
    from l4lb import libbpf
    apply(lbmaps, plan_service(lbmaps, svc()))
    mid = lbmaps.inner_map_ids()[1]
    table, _, _, name = lbmaps.read_inner(mid)
    assert name.startswith("mg") and len(name) == 15
    assert not plan_service(lbmaps, svc()).changed
    assert not plan_services(lbmaps, [svc()], full_maglev_check=True).changed
    # someone rewrites one slot of the live table in place
    bad = array("I", table)
    bad[0] = 3 if bad[0] != 3 else 4
    with libbpf.Map(libbpf.map_fd_by_id(mid)) as inner:
        inner.update(U32.pack(0), bad.tobytes())
    plan = plan_service(lbmaps, svc())
    assert phases(plan) == [MAGLEV_SET]
    apply(lbmaps, plan)
    assert lbmaps.read_inner(lbmaps.inner_map_ids()[1])[0] == table
    # rewriting the same content in place is not a change
    with libbpf.Map(libbpf.map_fd_by_id(lbmaps.inner_map_ids()[1])) as inner:
        inner.update(U32.pack(0), table)
    assert not plan_service(lbmaps, svc()).changed


def test_open_errors_and_size_learning(lbmaps, tmp_path):
    from l4lb.errors import L4LBError
    with pytest.raises(L4LBError, match="lb4_services_v2 is not pinned"):
        reconcile.LBMaps.open(str(tmp_path))
    apply(lbmaps, plan_service(lbmaps, svc()))
    with reconcile.LBMaps.open(lbmaps.pin_dir) as again:
        assert again.maglev_size == 2039 and again._size_known
        with pytest.raises(InvalidConfig, match="4093 does not match the datapath's table size 2039"):
            plan_service(again, svc(), maglev_size=4093)
        with pytest.raises(L4LBError, match="not open"):
            reconcile.LBMaps({}, "/nowhere")["lb4_backends"]


def _backend_macs(lbmaps) -> dict:
    return {be32_to_ip(x[0]): x[4].hex(":") for x in map(LB4_BACKEND.unpack, read_state(lbmaps).backends.values())}


def test_neighbour_change_rewrites_its_backend(lbmaps):
    """A backend's entry carries its next hop's MAC: a neighbour change is the neighbour's write
    and one write of each backend at that address, in that order (the datapath reads the copy)."""
    apply(lbmaps, plan_service(lbmaps, svc(), neighbors=NEIGH))
    macs = _backend_macs(lbmaps)
    assert macs == {ip: NEIGH.get(ip, "00:00:00:00:00:00") for ip in macs} and len(macs) == len(svc().backends)
    plan = plan_service(lbmaps, svc(), neighbors={"20.1.1.10": "02:00:14:01:01:ff"})
    assert [(w.map, w.op) for w in plan.writes] == [("nodeport_neigh4", "update"), ("lb4_backends", "update")]
    apply(lbmaps, plan)
    assert reconcile.neighbors(lbmaps)["20.1.1.10"] == "02:00:14:01:01:ff"
    assert _backend_macs(lbmaps)["20.1.1.10"] == "02:00:14:01:01:ff"
    assert not plan_service(lbmaps, svc(), neighbors={"20.1.1.10": "02:00:14:01:01:ff"}).changed


def test_backend_without_neighbour_gets_its_mac_when_it_comes(lbmaps):
    apply(lbmaps, plan_service(lbmaps, svc()))
    assert set(_backend_macs(lbmaps).values()) == {"00:00:00:00:00:00"}, "not known: zero"
    apply(lbmaps, plan_services(lbmaps, [], neighbors={"20.1.1.20": "02:00:14:01:01:14"}))
    macs = _backend_macs(lbmaps)
    assert macs.pop("20.1.1.20") == "02:00:14:01:01:14" and set(macs.values()) == {"00:00:00:00:00:00"}


def test_backend_map_full_is_refused_before_writing(lbmaps):
    from l4lb.structs import LB4_BACKEND as B
    cap = lbmaps["lb4_backends"].max_entries
    # an ARRAY: ids 1..cap-1 can hold backends (0 never does); all but three taken
    lbmaps["lb4_backends"].update_batch(
        [(U32.pack(i), B.pack(0x0A000000 + i, 0x5000, 6, 0, bytes(6))) for i in range(4, cap)])
    before = dump_all(lbmaps)
    with pytest.raises(InvalidConfig, match="does not fit in lb4_backends"):
        plan_service(lbmaps, svc())
    assert dump_all(lbmaps) == before
    apply(lbmaps, plan_service(lbmaps, svc(backends="20.1.1.10:80,20.1.1.20:80,20.1.1.30:80")))
    invariant(lbmaps)


def test_prune_removes_orphans(lbmaps):
    from l4lb.structs import LB4_KEY, LB4_REVERSE_NAT
    apply(lbmaps, plan_service(lbmaps, svc()))
    # leftovers of a crashed writer: slots without a master, reverse NAT without a service
    lbmaps["lb4_services_v2"].update(LB4_KEY.pack(0x09090909, 0x5000, 1, 6, 0), LB4_SERVICE.pack(1, 0, 9, 0, 0))
    lbmaps["lb4_reverse_nat"].update(reconcile.U16.pack(9), LB4_REVERSE_NAT.pack(0x09090909, 0x5000))
    assert not plan_service(lbmaps, svc()).changed            # not pruning: left alone
    plan = plan_services(lbmaps, [svc()], prune=True)
    assert sorted((w.map, w.op) for w in plan.writes) == [("lb4_reverse_nat", "delete"), ("lb4_services_v2", "delete")]
    apply(lbmaps, plan)
    assert not plan_services(lbmaps, [svc()], prune=True).changed


def test_all_weights_zero_drains_service(lbmaps):
    apply(lbmaps, plan_service(lbmaps, svc()))
    drained = svc(backends="20.1.1.10:80@0,20.1.1.20:80@0,20.1.1.30:80@0,20.1.1.40:80@0")
    plan = plan_service(lbmaps, drained)
    assert phases(plan) == [MAGLEV_SET]
    apply(lbmaps, plan)
    invariant(lbmaps)
    st = read_state(lbmaps)
    assert set(array("I", st.maglev[1])) == {0}          # "no backend": new flows are dropped
    assert sorted(st.backends) == [1, 2, 3, 4] and dump(lbmaps)[0]["count"] == 4
    assert not plan_service(lbmaps, drained).changed
    apply(lbmaps, plan_service(lbmaps, svc()))
    assert set(array("I", read_state(lbmaps).maglev[1])) == {1, 2, 3, 4}


def test_writer_lock(lbmaps):
    from l4lb.errors import L4LBError
    with lbmaps.locked():
        with reconcile.LBMaps.open(lbmaps.pin_dir) as other:
            with pytest.raises(L4LBError, match="another writer"):
                with other.locked(blocking=False):
                    pass
    with lbmaps.locked(blocking=False):
        pass
    plan = reconcile.reconcile(lbmaps, [svc()])
    assert plan.changed and not reconcile.reconcile(lbmaps, [svc()]).changed


def test_protocol_change(lbmaps):
    apply(lbmaps, plan_service(lbmaps, svc()))
    udp = svc(protocol="udp")
    plan = plan_service(lbmaps, udp)
    p = phases(plan)
    assert p.count(BACKEND_UPD) == 4 and p.count(BACKEND_DEL) == 4     # (ip, port, proto) identities
    assert p.index(MASTER_UPD) < p.index(MASTER_DEL)
    apply_stepwise(lbmaps, plan)
    (d,) = dump(lbmaps)
    assert d["protocol"] == "udp" and [b["backend_id"] for b in d["backends"]] == [5, 6, 7, 8]
    assert not plan_service(lbmaps, udp).changed


def test_many_services_chunked_swaps_no_fd_leak(lbmaps, monkeypatch):
    import os
    monkeypatch.setattr(reconcile, "INNER_CHUNK", 3)
    services = [svc(id=i, frontend=f"40.1.2.{i}:80", backends=f"20.1.2.{i}:80,20.1.3.{i}:80") for i in range(1, 11)]
    fds = len(os.listdir("/proc/self/fd"))
    plan = plan_services(lbmaps, services)
    assert phases(plan).count(MAGLEV_SET) == 10
    apply(lbmaps, plan)
    assert len(os.listdir("/proc/self/fd")) == fds
    invariant(lbmaps)
    assert sorted(lbmaps.inner_map_ids()) == list(range(1, 11))
    assert not plan_services(lbmaps, services).changed
    # remove them all in one plan: one batch delete per map
    rm = plan_services(lbmaps, [], prune=True)
    assert len([w for w in rm.writes if w.phase == MAGLEV_DEL]) == 10
    apply_stepwise(lbmaps, rm)
    assert dump(lbmaps) == [] and not read_state(lbmaps).backends


def test_apply_failure_is_reported_and_state_stays_consistent(lbmaps, monkeypatch):
    from l4lb.errors import BpfError, L4LBError
    plan = plan_service(lbmaps, svc())
    real = reconcile._set_inners

    def failing(maps, run):
        raise BpfError("bpf_map_create", 12, "lb4_maglev_in")
    monkeypatch.setattr(reconcile, "_set_inners", failing)
    with pytest.raises(L4LBError, match="apply stopped at write 5 of 14 .*create-inner lb4_maglev"):
        apply(lbmaps, plan)
    invariant(lbmaps)                                   # backends only: nothing live yet
    assert len(read_state(lbmaps).backends) == 4 and not read_state(lbmaps).fronts
    monkeypatch.setattr(reconcile, "_set_inners", real)
    rest = plan_service(lbmaps, svc())
    assert BACKEND_UPD not in phases(rest)
    apply(lbmaps, rest)
    assert not plan_service(lbmaps, svc()).changed


def test_fast_path_maps_follow_the_masters(lbmaps):
    """lb4_service_by_id / lb4_vip_filter: filled from the masters by any plan and by
    plan_fast_path (a program loaded on maps pinned before they existed starts them empty), and
    repaired when they drift."""
    apply(lbmaps, plan_services(lbmaps, [svc(), svc(id=2, frontend="40.1.1.2:53", protocol="udp"),
                                         svc(id=3, frontend="40.1.1.1:8080")]))
    st = read_state(lbmaps)
    assert sorted(st.live) == [1, 2, 3]
    assert LB4_SERVICE_FRONT.unpack(st.live[2])[2] == 17
    # one count per frontend: 40.1.1.1 has two
    buckets = {vip_bucket(f[0]) for f in st.fronts}
    assert sum(st.vip_filter[b] for b in buckets) == 3 and set(st.vip_filter) == buckets
    # each live service hinted in its frontend's bucket
    assert st.hints == {front_bucket(*LB4_SERVICE_FRONT.unpack(v)[:3]): sid for sid, v in st.live.items()}
    assert not plan_fast_path(lbmaps).changed
    # emptied (as a new pin would be): one fast-path plan fills the three again, nothing else
    for k, _v in lbmaps["lb4_service_by_id"].items_list():
        lbmaps["lb4_service_by_id"].update(k, bytes(8))
    for name in ("lb4_vip_filter", "lb4_front_hint"):
        for k, _v in lbmaps[name].items_list():
            lbmaps[name].update(k, bytes(4))
    fill = plan_fast_path(lbmaps)
    assert {w.map for w in fill.writes} == {"lb4_service_by_id", "lb4_vip_filter", "lb4_front_hint"}
    apply(lbmaps, fill)
    invariant(lbmaps)
    after = read_state(lbmaps)
    assert (after.live, after.vip_filter, after.hints) == (st.live, st.vip_filter, st.hints)
    # a stale live entry (a service that is gone) is switched off by the next plan of any service
    lbmaps["lb4_service_by_id"].update(U32.pack(9), st.live[1])
    again = plan_service(lbmaps, svc())
    assert [(w.phase, w.key) for w in again.writes] == [(LIVE_OFF, U32.pack(9))]
    apply(lbmaps, again)
    # service 3 removed: 40.1.1.1 keeps service 1's count in the filter
    apply_stepwise(lbmaps, plan_service(lbmaps, 3, state="absent"))
    st = read_state(lbmaps)
    assert sorted(st.live) == [1, 2] and sum(st.vip_filter.values()) == 2


def _colliding_ports(vip: str, n: int) -> list:
    """n TCP ports whose frontends on vip share one lb4_front_hint bucket."""
    by_bucket: dict = {}
    for port in range(1, 65536):
        ports = by_bucket.setdefault(front_bucket(ip_to_be32(vip), port_to_be16(port), 6), [])
        ports.append(port)
        if len(ports) == n:
            return ports
    raise AssertionError("no collision")


def test_front_hints_a_shared_bucket_hints_the_lowest_id(lbmaps):
    """Frontends sharing a hint bucket: the lowest live service id is hinted; when it goes the
    next one is; the rest take the service hash in the datapath."""
    p1, p2 = _colliding_ports("40.1.1.1", 2)
    bucket = front_bucket(ip_to_be32("40.1.1.1"), port_to_be16(p1), 6)
    apply(lbmaps, plan_services(lbmaps, [svc(id=7, frontend=f"40.1.1.1:{p2}"), svc(id=5, frontend=f"40.1.1.1:{p1}")]))
    assert read_state(lbmaps).hints == {bucket: 5}
    apply_stepwise(lbmaps, plan_service(lbmaps, 5, state="absent"))
    assert read_state(lbmaps).hints == {bucket: 7}
    apply_stepwise(lbmaps, plan_service(lbmaps, 7, state="absent"))
    assert read_state(lbmaps).hints == {}
    assert not plan_fast_path(lbmaps).changed
