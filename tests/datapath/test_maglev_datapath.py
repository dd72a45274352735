"""Maglev: the datapath picks, for a new flow, table[flow_hash(tuple) % M] of the table the core
(l4lb.reconcile + l4lb.maglev) programmed; l4lb.flowhash predicts flow_hash."""

from __future__ import annotations

import random
import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

import dp_helpers as H
from dp_helpers import XDP_TX
from l4lb import flowhash, maglev, reconcile, structs as S
from l4lb.model import Service

N_TUPLES = 2000


def _program(lb, services, neighbors):
    maps = reconcile.LBMaps.open(lb.pin_root, maglev_size=lb.M)
    try:
        reconcile.reconcile(maps, services, neighbors=neighbors)
        st = reconcile.read_state(maps)
        tables = {sid: list(struct.unpack(f"={lb.M}I", raw)) for sid, raw in st.maglev.items()}
        backends = {bid: (S.be32_to_ip(a), S.be16_to_port(p)) for bid, v in st.backends.items()
                    for a, p, *_ in [S.LB4_BACKEND.unpack(v)]}
    finally:
        maps.close()
    return tables, backends


def _neighbors(eps):
    return {ip: H.BACKEND_MACS.get(ip, "02:00:00:00:00:99") for ip, _ in eps}


def _tuples(rng, n):
    seen = set()
    while len(seen) < n:
        seen.add((f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}", rng.randrange(1024, 65536)))
    return sorted(seen)


def _chosen(lb, out: bytes, proto: int):
    """(backend ip, port) the packet was sent to."""
    o = Ether(out)
    if lb.mode == "dsr":
        inner = o[IP].payload
        return o[IP].dst, (inner[TCP].dport if proto == H.TCP else inner[UDP].dport)
    return o[IP].dst, (o[TCP].dport if proto == H.TCP else o[UDP].dport)


def _check_choices(lb, sid, vip, port, proto, tables, backends, rng, n=N_TUPLES):
    table = tables[sid]
    for saddr, sport in _tuples(rng, n):
        l4 = TCP(sport=sport, dport=port, flags="S") if proto == H.TCP else UDP(sport=sport, dport=port)
        ret, out = lb.run(Ether(dst=H.LB_MAC) / IP(src=saddr, dst=vip) / l4)
        assert ret == XDP_TX
        want = backends[table[flowhash.maglev_index(saddr, vip, sport, port, proto, lb.M)]]
        assert _chosen(lb, out, proto) == want, (saddr, sport)


BACKS = ["20.1.1.10:80", "20.1.1.20:80", "20.1.1.30:80", "20.1.1.40:80"]


@pytest.mark.parametrize("mode", ["snat", "dsr"])
def test_datapath_matches_core_table(make_lb, mode):
    lb = make_lb(mode)
    svc = Service.parse(id=1, frontend=f"{H.VIP}:80", backends=",".join(BACKS))
    tables, backends = _program(lb, [svc], _neighbors([b.split(":") for b in BACKS]))
    # the table in the map is the core's Maglev table over the stored backend ids
    ids = {v: k for k, v in backends.items()}
    items = [(f"{b.ip}:{b.port}", b.weight, ids[(b.ip, b.port)]) for b in svc.backends]
    assert struct.pack(f"={lb.M}I", *tables[1]) == maglev.build_bytes(items, lb.M)
    _check_choices(lb, 1, H.VIP, 80, H.TCP, tables, backends, random.Random(f"maglev-{mode}"))


def test_weighted_udp_and_small_table(make_lb):
    lb = make_lb("snat", maglev_size=251)
    svc = Service.parse(id=7, frontend=f"{H.VIP}:53", protocol="udp",
                        backends=["20.1.1.10:53@3", "20.1.1.20:53@1", "20.1.1.30:53@0"])
    tables, backends = _program(lb, [svc], _neighbors([("20.1.1.10", 53), ("20.1.1.20", 53), ("20.1.1.30", 53)]))
    shares = maglev.shares(tables[7])
    drained = next(bid for bid, ep in backends.items() if ep == ("20.1.1.30", 53))
    assert drained not in shares
    _check_choices(lb, 7, H.VIP, 53, H.UDP, tables, backends, random.Random("weighted"))


def test_flows_stick_when_core_changes_the_table(make_lb):
    """After reconcile removes one backend and adds another, established flows of the backends
    that still exist keep them; new flows follow the new table."""
    lb = make_lb("snat")
    svc = Service.parse(id=1, frontend=f"{H.VIP}:80", backends=",".join(BACKS))
    nb = _neighbors([b.split(":") for b in BACKS + ["20.1.1.50:80"]])
    tables, backends = _program(lb, [svc], nb)
    rng = random.Random("stick")
    flows = _tuples(rng, 500)
    before = {}
    for saddr, sport in flows:
        _, out = lb.run(Ether(dst=H.LB_MAC) / IP(src=saddr, dst=H.VIP) / TCP(sport=sport, dport=80, flags="S"))
        before[(saddr, sport)] = _chosen(lb, out, H.TCP)
    svc2 = Service.parse(id=1, frontend=f"{H.VIP}:80", backends=",".join(BACKS[1:] + ["20.1.1.50:80"]))
    tables2, backends2 = _program(lb, [svc2], nb)
    moved = 0
    for saddr, sport in flows:
        _, out = lb.run(Ether(dst=H.LB_MAC) / IP(src=saddr, dst=H.VIP) / TCP(sport=sport, dport=80, flags="A"))
        now = _chosen(lb, out, H.TCP)
        if before[(saddr, sport)] != ("20.1.1.10", 80):
            assert now == before[(saddr, sport)]
        else:
            moved += 1
            want = backends2[tables2[1][flowhash.maglev_index(saddr, H.VIP, sport, 80, H.TCP, lb.M)]]
            assert now == want and now != ("20.1.1.10", 80)
    assert 0 < moved < len(flows)
    _check_choices(lb, 1, H.VIP, 80, H.TCP, tables2, backends2, random.Random("after"), n=500)


@pytest.mark.parametrize("mode", ["snat", "dsr"])
def test_next_hop_mac_change_reaches_a_running_flow(make_lb, mode):
    """Backends carry a copy of their next hop's MAC (no neighbour lookup per packet): a new MAC
    given to the core reaches an established flow's very next packet, same backend."""
    lb = make_lb(mode)
    svc = Service.parse(id=1, frontend=f"{H.VIP}:80", backends=",".join(BACKS))
    neigh = _neighbors([b.split(":") for b in BACKS])
    _program(lb, [svc], {**neigh, H.CLIENT: H.CLIENT_MAC})
    flow = Ether(dst=H.LB_MAC) / IP(src=H.CLIENT, dst=H.VIP) / TCP(sport=40123, dport=80, flags="S")
    ret, out = lb.run(flow)
    assert ret == XDP_TX
    backend = _chosen(lb, out, H.TCP)
    assert Ether(out).dst == neigh[backend[0]]
    _program(lb, [svc], {backend[0]: "02:00:14:01:01:77"})
    ret, out = lb.run(Ether(dst=H.LB_MAC) / IP(src=H.CLIENT, dst=H.VIP) / TCP(sport=40123, dport=80, flags="A"))
    assert ret == XDP_TX
    assert _chosen(lb, out, H.TCP) == backend and Ether(out).dst == "02:00:14:01:01:77"


def _ack(sport, vip=H.VIP, port=80, flags="A"):
    return Ether(dst=H.LB_MAC) / IP(src=H.CLIENT, dst=vip) / TCP(sport=sport, dport=port, flags=flags)


@pytest.mark.parametrize("mode", ["snat", "dsr"])
def test_tracked_flows_skip_the_service_hash_but_follow_the_service(make_lb, mode):
    """A tracked flow of a live service is forwarded from its CT entry and lb4_service_by_id
    (maps.h), and a new flow from its frontend's hint (lb4_front_hint) confirmed by
    lb4_service_by_id, both without the service hash; a service deleted or moved by the core
    stops its established flows all the same."""
    lb = make_lb(mode)
    svc = Service.parse(id=1, frontend=f"{H.VIP}:80", backends=",".join(BACKS))
    # another service on the VIP keeps it in the VIP filter throughout
    other = Service.parse(id=2, frontend=f"{H.VIP}:81", backends="20.1.1.10:81")
    neigh = {**_neighbors([b.split(":") for b in BACKS]), H.CLIENT: H.CLIENT_MAC}
    _program(lb, [svc, other], neigh)
    assert lb.run(_ack(40001, flags="S"))[0] == XDP_TX
    passed = lb.reason("PASS_NOT_SERVICE")

    # The fast paths exist: with the master gone from the service hash alone (no core would do
    # that: it switches the fast path off first), the tracked flow still goes, and so does a new
    # one, by its frontend's hint; without the hint a new flow is no service packet.
    master = H.S.LB4_KEY.pack(H.be32(H.VIP), H.be16(80), 0, H.TCP, 0)
    saved = lb.maps["lb4_services_v2"].lookup(master)
    lb.maps["lb4_services_v2"].delete(master)
    assert lb.run(_ack(40001))[0] == XDP_TX
    assert lb.run(_ack(40002, flags="S"))[0] == XDP_TX
    bucket = H.S.U32.pack(H.S.front_bucket(H.be32(H.VIP), H.be16(80), H.TCP))
    assert lb.maps["lb4_front_hint"].lookup(bucket) == H.S.U32.pack(1)
    lb.maps["lb4_front_hint"].update(bucket, H.S.U32.pack(0))
    assert lb.run(_ack(40003, flags="S"))[0] == H.XDP_PASS
    # a hint the fast path does not confirm (service 2 is live on port 81, not 80) is not taken
    lb.maps["lb4_front_hint"].update(bucket, H.S.U32.pack(2))
    assert lb.run(_ack(40004, flags="S"))[0] == H.XDP_PASS
    lb.maps["lb4_services_v2"].update(master, saved)
    lb.maps["lb4_front_hint"].update(bucket, H.S.U32.pack(1))

    # Deleted by the core: the established flow is passed, as any packet to no service.
    maps = reconcile.LBMaps.open(lb.pin_root, maglev_size=lb.M)
    try:
        reconcile.apply(maps, reconcile.plan_service(maps, 1, state="absent"))
    finally:
        maps.close()
    assert lb.run(_ack(40001))[0] == H.XDP_PASS
    # Back, then moved to another port: the old frontend's established flow stops too.
    _program(lb, [svc], neigh)
    assert lb.run(_ack(40001))[0] == XDP_TX
    _program(lb, [Service.parse(id=1, frontend=f"{H.VIP}:8080", backends=",".join(BACKS))], neigh)
    assert lb.run(_ack(40001))[0] == H.XDP_PASS
    assert lb.reason("PASS_NOT_SERVICE") == passed + 4


def test_vip_filter_passes_other_addresses_and_the_lb_itself(make_lb):
    """Packets to addresses no service has are passed without a lookup; the LB's own address
    (SNAT replies, its own traffic) is judged as before."""
    lb = make_lb("snat")
    svc = Service.parse(id=1, frontend=f"{H.VIP}:80", backends=",".join(BACKS))
    _program(lb, [svc], {**_neighbors([b.split(":") for b in BACKS]), H.CLIENT: H.CLIENT_MAC})
    for dst in ("40.1.1.2", "20.1.1.1", "10.9.9.9"):
        assert lb.run(_ack(40003, vip=dst, flags="S"))[0] == H.XDP_PASS, dst
    # the reply of a SNAT flow to the LB's address still finds its flow
    ret, out = lb.run(_ack(40004, flags="S"))
    assert ret == XDP_TX
    o = Ether(out)
    reply = (Ether(dst=H.LB_MAC) / IP(src=o[IP].dst, dst=o[IP].src)
             / TCP(sport=o[TCP].dport, dport=o[TCP].sport, flags="SA"))
    ret, back = lb.run(reply)
    assert ret == XDP_TX and Ether(back)[IP].dst == H.CLIENT and Ether(back)[TCP].dport == 40004
