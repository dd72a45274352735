"""Flow lifetimes and SNAT port reclaim (bpf/include/ct.h, nat.h) on the real program, and the
control plane's GC (l4lb.ct.gc) judging the same entries the same way.

The program is built with lifetimes of a second or two and a SNAT range of ONE port, so every
new flow competes for the port the previous one holds: whether it gets it shows whether the
datapath judged the holder's flow over."""

from __future__ import annotations

import time

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

import dp_helpers as H
from dp_helpers import XDP_DROP, XDP_TX
from l4lb import ct as ctmod
from l4lb.lifetimes import CtTimeouts
from l4lb.reconcile import LBMaps

PORT = 61000
SHORT = {"syn": 1, "tcp": 2, "fin": 2, "closed": 1, "udp": 1, "time_wait": 3}
OTHER_CLIENT = "20.1.1.101"
BACKEND = H.BACKENDS[1]


@pytest.fixture
def lb(make_lb):
    env = make_lb("snat", snat_port_min=PORT, snat_port_max=PORT, ct_timeouts=tuple(sorted(SHORT.items())))
    env.set_neigh(OTHER_CLIENT, "02:00:14:01:01:65")
    env.add_service(1, H.VIP, 80, H.TCP, {1: BACKEND})
    env.add_service(2, H.VIP, 53, H.UDP, {1: BACKEND})
    return env


def tcp(lb, sport, flags, src=H.CLIENT):
    p = Ether(dst=H.LB_MAC) / IP(src=src, dst=H.VIP) / TCP(sport=sport, dport=80, flags=flags, seq=1, ack=1)
    ret, out = lb.run(p)
    return ret, (Ether(out)[TCP].sport if ret == XDP_TX else None)


def established(lb, sport):
    """A handshake the client completed (SYN, then ACK), holding PORT."""
    assert tcp(lb, sport, "S") == (XDP_TX, PORT)
    assert tcp(lb, sport, "A") == (XDP_TX, PORT)


def closed_by_backend_first(lb, sport):
    """An established flow the backend closed first (it holds TIME_WAIT), then the client."""
    established(lb, sport)
    reply(lb, "FA")
    tcp(lb, sport, "FA")


def reply(lb, flags, nat_port=PORT):
    p = Ether(dst=H.LB_MAC) / IP(src=BACKEND[0], dst=H.LB_IP) / TCP(sport=BACKEND[1], dport=nat_port, flags=flags)
    ret, _ = lb.run(p)
    assert ret == XDP_TX


def udp(lb, sport, src=H.CLIENT):
    ret, out = lb.run(Ether(dst=H.LB_MAC) / IP(src=src, dst=H.VIP) / UDP(sport=sport, dport=53))
    return ret, (Ether(out)[UDP].sport if ret == XDP_TX else None)


def gc_would_delete(lb) -> int:
    maps = LBMaps.open(lb.pin_root)
    try:
        return ctmod.gc(maps, SHORT, dry_run=True)["ct_deleted"]
    finally:
        maps.close()


def test_defaults_are_documented_values():
    assert CtTimeouts().as_dict() == {"syn": 5, "tcp": 21600, "fin": 10, "closed": 2, "udp": 60, "time_wait": 60}


def test_syn_only_flow_holds_its_port_for_the_syn_timeout(lb):
    assert tcp(lb, 30001, "S") == (XDP_TX, PORT)
    assert tcp(lb, 30002, "S")[0] == XDP_DROP          # the port is held
    assert gc_would_delete(lb) == 0
    time.sleep(1.3)
    assert gc_would_delete(lb) == 1                      # GC and datapath agree: over
    assert tcp(lb, 30002, "S") == (XDP_TX, PORT)
    assert lb.ct(H.CLIENT, H.VIP, 30001, 80, H.TCP) is None   # the old flow's entry went with it
    assert H.S.be16_to_port(lb.snat(BACKEND[0], 80, PORT, H.TCP).client_port) == 30002


def test_established_flow_keeps_its_port_past_the_syn_timeout(lb):
    established(lb, 30011)
    time.sleep(1.3)
    assert tcp(lb, 30012, "S")[0] == XDP_DROP
    assert gc_would_delete(lb) == 0


def test_idle_established_flow_is_over_after_its_lifetime(lb):
    established(lb, 30021)
    time.sleep(2.3)
    assert gc_would_delete(lb) == 1
    # Its next packet starts a new flow: counters start again.
    assert tcp(lb, 30021, "A") == (XDP_TX, PORT)
    assert lb.ct(H.CLIENT, H.VIP, 30021, 80, H.TCP).rx_packets == 1


def test_backend_closed_first_guards_the_port_for_other_clients(lb):
    closed_by_backend_first(lb, 30031)                   # TIME_WAIT at the backend
    c = lb.ct(H.CLIENT, H.VIP, 30031, 80, H.TCP)
    assert c.ct_flags & H.S.CT_F_BACKEND_TW and c.ct_flags & H.S.CT_F_CLIENT_FIN
    time.sleep(1.3)                                      # past "closed", inside time_wait
    assert tcp(lb, 40000, "S", src=OTHER_CLIENT)[0] == XDP_DROP
    assert gc_would_delete(lb) == 0                      # GC keeps the guard record too
    assert tcp(lb, 30032, "S") == (XDP_TX, PORT)         # the same client may (newer timestamps)


def test_backend_time_wait_guard_ends(lb):
    closed_by_backend_first(lb, 30041)
    time.sleep(3.3)
    assert gc_would_delete(lb) == 1
    assert tcp(lb, 40001, "S", src=OTHER_CLIENT) == (XDP_TX, PORT)


def test_client_closed_first_frees_the_port_after_closed_timeout(lb):
    established(lb, 30051)
    tcp(lb, 30051, "FA")                                 # client first: no TIME_WAIT at the backend
    reply(lb, "FA")
    assert not lb.ct(H.CLIENT, H.VIP, 30051, 80, H.TCP).ct_flags & H.S.CT_F_BACKEND_TW
    time.sleep(1.3)
    assert tcp(lb, 40002, "S", src=OTHER_CLIENT) == (XDP_TX, PORT)


def test_half_closed_flow_lives_for_the_fin_timeout(lb):
    established(lb, 30061)
    tcp(lb, 30061, "FA")
    time.sleep(1.3)                                      # past "closed" but one FIN only
    assert tcp(lb, 40003, "S", src=OTHER_CLIENT)[0] == XDP_DROP
    time.sleep(1.0)
    assert tcp(lb, 40003, "S", src=OTHER_CLIENT) == (XDP_TX, PORT)


def test_rst_closes(lb):
    established(lb, 30071)
    tcp(lb, 30071, "R")
    time.sleep(1.3)
    assert tcp(lb, 40004, "S", src=OTHER_CLIENT) == (XDP_TX, PORT)


def test_fixed_tuple_reconnecting_after_close_gets_its_port_at_once(lb):
    for _ in range(5):
        closed_by_backend_first(lb, 30081)


def test_udp_flow_is_over_after_udp_timeout(lb):
    assert udp(lb, 5001) == (XDP_TX, PORT)
    assert udp(lb, 5002)[0] == XDP_DROP
    time.sleep(1.3)
    assert udp(lb, 5002) == (XDP_TX, PORT)


def test_gc_deletes_what_is_over_and_its_snat_entry(lb):
    tcp(lb, 30091, "S")
    time.sleep(1.3)
    maps = LBMaps.open(lb.pin_root)
    try:
        would = ctmod.gc(maps, SHORT, dry_run=True)
        assert (would["ct_deleted"], would["snat_deleted"], would["snat_entries"]) == (1, 1, 0)
        assert len(ctmod.snat_slots(maps)) == 1 and len(maps["ct4_global"].items_list()) == 1
        r = ctmod.gc(maps, SHORT)
        assert (r["ct_deleted"], r["snat_deleted"], r["snat_entries"]) == (1, 1, 0)
        assert ctmod.snat_slots(maps) == [] and maps["ct4_global"].items_list() == []
        assert ctmod.gc(maps, SHORT)["changed"] is False
    finally:
        maps.close()


def test_gc_deletes_a_snat_entry_without_flow_only_on_the_second_look(lb):
    tcp(lb, 30101, "S")
    lb.maps["ct4_global"].delete(H.S.IPV4_CT_TUPLE.pack(H.be32(H.VIP), H.be32(H.CLIENT), H.be16(80),
                                                        H.be16(30101), H.TCP, 0))
    maps = LBMaps.open(lb.pin_root)
    try:
        first = ctmod.gc(maps, SHORT)
        assert first["snat_deleted"] == 0 and len(first["suspects"]) == 1
        second = ctmod.gc(maps, SHORT, suspects=first["suspects"])
        assert second["snat_deleted"] == 1 and second["snat_entries"] == 0
    finally:
        maps.close()


def test_bad_timeouts_are_refused_by_name():
    from l4lb.errors import InvalidConfig
    with pytest.raises(InvalidConfig, match="ct_timeouts.syn"):
        CtTimeouts.parse({"syn": 0})
    with pytest.raises(InvalidConfig, match="unknown key.*sin"):
        CtTimeouts.parse({"sin": 5})
