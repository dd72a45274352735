"""Packet-in / packet-out cases for bpf/lb_xdp.c through BPF_PROG_TEST_RUN.

Every output packet is re-parsed by scapy, its checksums recomputed from scratch, and compared
byte for byte with what came out; forwarded packets are also compared with the packet the rules
say must come out (built with scapy)."""

from __future__ import annotations

import struct
import time

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

import dp_helpers as H
from dp_helpers import XDP_DROP, XDP_PASS, XDP_TX
from l4lb import ct, flowhash

VPORT = 80


def client_pkt(sport=40000, dport=VPORT, proto="tcp", flags="S", ttl=64, payload=b"", vip=H.VIP, src=H.CLIENT,
               **ipkw):
    l4 = TCP(sport=sport, dport=dport, flags=flags, seq=1000, ack=0 if flags == "S" else 5) if proto == "tcp" \
        else UDP(sport=sport, dport=dport)
    p = Ether(src=H.CLIENT_MAC, dst=H.LB_MAC) / IP(src=src, dst=vip, ttl=ttl, id=4242, **ipkw) / l4
    if payload:
        p = p / Raw(payload)
    return p


def assert_checksums_recomputed(out: bytes):
    assert H.scapy_recomputed(out) == out, "checksums differ from scapy's recomputation"


def tcp_service(lb, proto=H.TCP, port=VPORT, backends=None, svc_id=1):
    return lb.add_service(svc_id, H.VIP, port, proto, backends or dict(H.BACKENDS))


def expected_backend(table, lb, sport, dport=VPORT, proto=H.TCP, src=H.CLIENT):
    idx = flowhash.maglev_index(src, H.VIP, sport, dport, proto, lb.M)
    return table[idx]


def snat_expected(inp, out_nat_port, backend_ip, backend_port):
    e = inp.copy()
    e[Ether].src = H.LB_MAC
    e[Ether].dst = H.BACKEND_MACS[backend_ip]
    e[IP].src = H.LB_IP
    e[IP].dst = backend_ip
    e[IP].ttl -= 1
    l4 = e[TCP] if e.haslayer(TCP) else e[UDP]
    l4.sport = out_nat_port
    l4.dport = backend_port
    return bytes(H.scapy_recomputed(bytes(e)))


# --------------------------------------------------------------------------------------------
# SNAT: forward, established, reply
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sport", [40000, 1024, 65535, 12345])
def test_snat_forward_new_flow(lb_snat, sport):
    table = tcp_service(lb_snat)
    inp = client_pkt(sport=sport)
    ret, out = lb_snat.run(inp)
    assert ret == XDP_TX
    assert_checksums_recomputed(out)
    bid = expected_backend(table, lb_snat, sport)
    bip, bport = H.BACKENDS[bid]
    o = Ether(out)
    nat_port = o[TCP].sport
    # a fresh program: the CPU's cursor starts at the flow's hash
    assert nat_port == flowhash.snat_cursor_start(H.CLIENT, H.VIP, sport, VPORT, H.TCP)
    assert out == snat_expected(inp, nat_port, bip, bport)
    ct = lb_snat.ct(H.CLIENT, H.VIP, sport, VPORT, H.TCP)
    assert ct.backend_id == bid and ct.rev_nat_index == 1
    assert H.S.be16_to_port(ct.nat_port) == nat_port
    assert ct.rx_packets == 1 and ct.rx_bytes == len(bytes(inp)) and ct.tcp_flags_seen == 0x02
    se = lb_snat.snat(bip, bport, nat_port, H.TCP)
    assert H.S.be32_to_ip(se.client_addr) == H.CLIENT and H.S.be16_to_port(se.client_port) == sport
    assert H.S.be32_to_ip(se.vip) == H.VIP and H.S.be16_to_port(se.vport) == VPORT


def test_snat_established_same_backend_and_port(lb_snat):
    tcp_service(lb_snat)
    r1, o1 = lb_snat.run(client_pkt(flags="S"))
    inp = client_pkt(flags="PA", payload=b"GET / HTTP/1.0\r\n\r\n")
    r2, o2 = lb_snat.run(inp)
    assert r1 == r2 == XDP_TX
    assert_checksums_recomputed(o2)
    a, b = Ether(o1), Ether(o2)
    assert (a[IP].dst, a[TCP].sport) == (b[IP].dst, b[TCP].sport)
    assert o2 == snat_expected(inp, b[TCP].sport, b[IP].dst, 80)
    assert bytes(b[Raw]) == b"GET / HTTP/1.0\r\n\r\n"
    ct = lb_snat.ct(H.CLIENT, H.VIP, 40000, VPORT, H.TCP)
    assert ct.rx_packets == 2 and ct.tcp_flags_seen == 0x02 | 0x18


@pytest.mark.parametrize("flags,payload", [("SA", b""), ("PA", b"HTTP/1.0 200 OK\r\n\r\nhello"), ("FA", b"")])
def test_snat_reply_reverse_nat(lb_snat, flags, payload):
    tcp_service(lb_snat)
    _, o1 = lb_snat.run(client_pkt())
    f = Ether(o1)
    bip, nat_port = f[IP].dst, f[TCP].sport
    rep = Ether(src=H.BACKEND_MACS[bip], dst=H.LB_MAC) / IP(src=bip, dst=H.LB_IP, ttl=64, id=7) / \
        TCP(sport=80, dport=nat_port, flags=flags, seq=9, ack=1001)
    if payload:
        rep = rep / Raw(payload)
    ret, out = lb_snat.run(rep)
    assert ret == XDP_TX
    assert_checksums_recomputed(out)
    e = rep.copy()
    e[Ether].src, e[Ether].dst = H.LB_MAC, H.CLIENT_MAC
    e[IP].src, e[IP].dst, e[IP].ttl = H.VIP, H.CLIENT, 63
    e[TCP].sport, e[TCP].dport = VPORT, 40000
    assert out == H.scapy_recomputed(bytes(e))
    ct = lb_snat.ct(H.CLIENT, H.VIP, 40000, VPORT, H.TCP)
    assert ct.tx_packets == 1 and ct.tx_bytes == len(bytes(rep))


def test_snat_reply_unknown_port_passes(lb_snat):
    tcp_service(lb_snat)
    lb_snat.run(client_pkt())
    rep = Ether(dst=H.LB_MAC) / IP(src="20.1.1.10", dst=H.LB_IP) / TCP(sport=80, dport=60000, flags="SA")
    ret, out = lb_snat.run(rep)
    assert ret == XDP_PASS and out == bytes(rep)


def test_lb_own_traffic_passes(lb_snat):
    tcp_service(lb_snat)
    p = Ether(dst=H.LB_MAC) / IP(src=H.CLIENT, dst=H.LB_IP) / TCP(sport=50000, dport=22, flags="S")
    ret, out = lb_snat.run(p)
    assert ret == XDP_PASS and out == bytes(p)


def test_snat_reply_ttl1_dropped(lb_snat):
    tcp_service(lb_snat)
    _, o1 = lb_snat.run(client_pkt())
    f = Ether(o1)
    rep = Ether(dst=H.LB_MAC) / IP(src=f[IP].dst, dst=H.LB_IP, ttl=1) / TCP(sport=80, dport=f[TCP].sport, flags="SA")
    ret, _ = lb_snat.run(rep)
    assert ret == XDP_DROP and lb_snat.reason("DROP_TTL") == 1


def test_snat_reply_without_client_neighbour_dropped(lb_snat):
    tcp_service(lb_snat)
    _, o1 = lb_snat.run(client_pkt())
    lb_snat.del_neigh(H.CLIENT)
    f = Ether(o1)
    rep = Ether(dst=H.LB_MAC) / IP(src=f[IP].dst, dst=H.LB_IP) / TCP(sport=80, dport=f[TCP].sport, flags="SA")
    assert lb_snat.run(rep)[0] == XDP_DROP and lb_snat.reason("DROP_NO_NEIGH") == 1


# --------------------------------------------------------------------------------------------
# UDP
# --------------------------------------------------------------------------------------------

def test_udp_forward_and_reply(lb_snat):
    lb_snat.add_service(2, H.VIP, 53, H.UDP, {11: ("20.1.1.10", 5353), 12: ("20.1.1.20", 5353)})
    inp = client_pkt(sport=33333, dport=53, proto="udp", payload=b"\x12\x34query")
    ret, out = lb_snat.run(inp)
    assert ret == XDP_TX
    assert_checksums_recomputed(out)
    o = Ether(out)
    assert o[UDP].dport == 5353 and o[IP].src == H.LB_IP
    assert out == snat_expected(inp, o[UDP].sport, o[IP].dst, 5353)
    rep = Ether(dst=H.LB_MAC) / IP(src=o[IP].dst, dst=H.LB_IP) / UDP(sport=5353, dport=o[UDP].sport) / Raw(b"answer")
    ret, out2 = lb_snat.run(rep)
    assert ret == XDP_TX
    assert_checksums_recomputed(out2)
    r = Ether(out2)
    assert (r[IP].src, r[UDP].sport, r[IP].dst, r[UDP].dport) == (H.VIP, 53, H.CLIENT, 33333)


def test_udp_zero_checksum_stays_zero(lb_snat):
    lb_snat.add_service(2, H.VIP, 53, H.UDP, {11: ("20.1.1.10", 53)})
    inp = client_pkt(sport=33333, dport=53, proto="udp", payload=b"x" * 10)
    inp[UDP].chksum = 0
    ret, out = lb_snat.run(inp)
    assert ret == XDP_TX
    assert out[14 + 20 + 6: 14 + 20 + 8] == b"\x00\x00"
    assert_checksums_recomputed(out)


def test_udp_to_tcp_only_port_passes(lb_snat):
    tcp_service(lb_snat)
    p = client_pkt(proto="udp")
    ret, out = lb_snat.run(p)
    assert ret == XDP_PASS and out == bytes(p)


# --------------------------------------------------------------------------------------------
# connection tracking across backend changes
# --------------------------------------------------------------------------------------------

def test_ct_hit_after_maglev_change(lb_snat):
    """A flow stays on its backend when the table changes (other backends removed, weights)."""
    table = tcp_service(lb_snat)
    sports = list(range(41000, 41040))
    first = {}
    for sp in sports:
        _, o = lb_snat.run(client_pkt(sport=sp))
        first[sp] = Ether(o)[IP].dst
    # New table: only backend 1 left in Maglev, backends 2..4 still exist (draining).
    lb_snat.set_maglev(1, struct.pack(f"={lb_snat.M}I", *([1] * lb_snat.M)))
    for sp in sports:
        ret, o = lb_snat.run(client_pkt(sport=sp, flags="A"))
        assert ret == XDP_TX and Ether(o)[IP].dst == first[sp]
    # and a new flow now lands on backend 1
    _, o = lb_snat.run(client_pkt(sport=42000))
    assert Ether(o)[IP].dst == H.BACKENDS[1][0]
    assert len(set(first.values())) > 1, table


def test_ct_reselects_when_backend_removed(lb_snat):
    tcp_service(lb_snat)
    _, o = lb_snat.run(client_pkt(sport=43000))
    old_ip = Ether(o)[IP].dst
    old_bid = next(b for b, (ip, _) in H.BACKENDS.items() if ip == old_ip)
    remaining = {b: v for b, v in H.BACKENDS.items() if b != old_bid}
    lb_snat.del_backend(old_bid)
    lb_snat.set_maglev(1, struct.pack(f"={lb_snat.M}I", *lb_snat.maglev_table(remaining)))
    ret, o2 = lb_snat.run(client_pkt(sport=43000, flags="A"))
    assert ret == XDP_TX
    assert_checksums_recomputed(o2)
    new_ip = Ether(o2)[IP].dst
    assert new_ip != old_ip
    ct = lb_snat.ct(H.CLIENT, H.VIP, 43000, VPORT, H.TCP)
    assert H.BACKENDS[ct.backend_id][0] == new_ip and ct.rx_packets == 2


def test_tuple_reuse_after_fin_reselects(lb_snat):
    tcp_service(lb_snat)
    lb_snat.run(client_pkt(sport=44000))
    lb_snat.run(client_pkt(sport=44000, flags="FA"))
    ct = lb_snat.ct(H.CLIENT, H.VIP, 44000, VPORT, H.TCP)
    assert ct.rx_packets == 2 and ct.tcp_flags_seen & 0x01
    lb_snat.run(client_pkt(sport=44000, flags="S"))
    ct = lb_snat.ct(H.CLIENT, H.VIP, 44000, VPORT, H.TCP)
    assert ct.rx_packets == 1 and ct.tcp_flags_seen == 0x02


# --------------------------------------------------------------------------------------------
# SNAT port allocation
# --------------------------------------------------------------------------------------------

def _occupy(lb, backend_id, port, live=True, client="9.9.9.9", cport=1):
    """port's slot in backend_id's plane holding another client flow to that backend; live: with
    its CT entry, just seen and established (so its port is not stale)."""
    lb.set_snat_slot(port, backend_id, client, cport)
    if live:
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        lb.maps["ct4_global"].update(
            H.S.IPV4_CT_TUPLE.pack(H.be32(H.VIP), H.be32(client), H.be16(80), H.be16(cport), H.TCP, 0),
            H.S.CT_ENTRY.pack(1, 60, 0, 0, now, backend_id, 1, H.be16(port), 0x12, H.S.CT_F_ESTABLISHED))


def test_snat_port_collision_probes_next(lb_snat):
    lb_snat.add_service(1, H.VIP, VPORT, H.TCP, {1: H.BACKENDS[1]})
    start = flowhash.snat_cursor_start(H.CLIENT, H.VIP, 45000, VPORT, H.TCP)   # a fresh program
    _occupy(lb_snat, 1, start)
    ret, out = lb_snat.run(client_pkt(sport=45000))
    assert ret == XDP_TX
    assert Ether(out)[TCP].sport == flowhash.snat_port_probe(H.CLIENT, H.VIP, 45000, VPORT, H.TCP, probe=1)


def test_snat_port_of_a_flow_without_ct_entry_is_taken_over(lb_snat):
    lb_snat.add_service(1, H.VIP, VPORT, H.TCP, {1: H.BACKENDS[1]})
    start = flowhash.snat_cursor_start(H.CLIENT, H.VIP, 45000, VPORT, H.TCP)
    _occupy(lb_snat, 1, start, live=False)
    ret, out = lb_snat.run(client_pkt(sport=45000))
    assert ret == XDP_TX and Ether(out)[TCP].sport == start
    se = lb_snat.snat(H.BACKENDS[1][0], 80, start, H.TCP)
    assert (H.S.be32_to_ip(se.client_addr), H.S.be16_to_port(se.client_port)) == (H.CLIENT, 45000)


def test_snat_port_exhaustion_drops(make_lb):
    lb = make_lb("snat", snat_port_min=61000, snat_port_max=61007)
    lb.add_service(1, H.VIP, VPORT, H.TCP, {1: H.BACKENDS[1]})
    for i, port in enumerate(range(61000, 61008)):
        _occupy(lb, 1, port, cport=1 + i)
    ret, _ = lb.run(client_pkt(sport=45001))
    assert ret == XDP_DROP and lb.reason("DROP_SNAT_PORTS") == 1
    assert lb.ct(H.CLIENT, H.VIP, 45001, VPORT, H.TCP) is None


def _backend_reply(bip, nat_port, payload=b"r"):
    return Ether(dst=H.LB_MAC) / IP(src=bip, dst=H.LB_IP) / TCP(sport=80, dport=nat_port, flags="A") / Raw(payload)


def test_one_port_serves_a_backend_per_plane(make_lb):
    """A single SNAT port: flows to SNAT_SLOTS backends of different planes (backend_id %
    SNAT_SLOTS) all get it (their replies differ by source), and each reply goes back to its own
    client; a second flow to a backend already on the port, or a flow to a backend whose plane
    is held, is refused and counted."""
    port = 20000
    lb = make_lb("snat", snat_port_min=port, snat_port_max=port)
    clients = {}
    for bid, (bip, bport) in H.BACKENDS.items():
        lb.add_service(bid, H.VIP, 8000 + bid, H.TCP, {bid: (bip, bport)})
        src = f"10.0.0.{bid}"
        lb.set_neigh(src, f"02:00:00:00:0a:{bid:02x}")
        ret, out = lb.run(client_pkt(sport=40000 + bid, dport=8000 + bid, src=src))
        assert ret == XDP_TX and Ether(out)[TCP].sport == port, bid
        clients[bip] = (src, 40000 + bid, 8000 + bid)
    assert len(clients) == H.S.SNAT_SLOTS == len(ct.snat_slots(lb.maps))
    for bip, (src, cport, vport) in clients.items():
        ret, out = lb.run(_backend_reply(bip, port))
        o = Ether(out)
        assert ret == XDP_TX and (o[IP].dst, o[TCP].dport, o[IP].src, o[TCP].sport) == (src, cport, H.VIP, vport)
    ret, _ = lb.run(client_pkt(sport=41001, dport=8001, src="10.0.0.1"))
    assert ret == XDP_DROP and lb.reason("DROP_SNAT_PORTS") == 1, "a second flow to backend 1 on the one port"
    lb.add_service(9, H.VIP, 8009, H.TCP, {5: ("20.1.1.90", 80)})
    ret, _ = lb.run(client_pkt(sport=41009, dport=8009, src="10.0.0.1"))
    assert ret == XDP_DROP and lb.reason("DROP_SNAT_PORTS") == 2, "backend 5 shares backend 1's plane"
    ret, _ = lb.run(_backend_reply("20.1.1.90", port))
    assert ret == XDP_PASS, "no flow of backend 5 holds the port"


def test_a_flow_over_gives_its_slot_to_another_backend_of_its_plane(make_lb):
    """The one port's slot in backend 1's plane held by backend 5's flow that is over (no CT
    entry): a new flow to backend 1 takes it."""
    port = 20000
    lb = make_lb("snat", snat_port_min=port, snat_port_max=port)
    lb.add_service(1, H.VIP, VPORT, H.TCP, {1: H.BACKENDS[1]})
    lb.add_service(2, H.VIP, 8080, H.TCP, {5: ("20.1.1.90", 80)})
    _occupy(lb, 5, port, live=False, cport=100)
    assert lb.snat("20.1.1.90", 80, port, H.TCP) is not None
    ret, out = lb.run(client_pkt(sport=45000))
    assert ret == XDP_TX and Ether(out)[TCP].sport == port
    se = lb.snat(H.BACKENDS[1][0], 80, port, H.TCP)
    assert (H.S.be32_to_ip(se.client_addr), H.S.be16_to_port(se.client_port)) == (H.CLIENT, 45000)
    assert lb.snat("20.1.1.90", 80, port, H.TCP) is None and len(ct.snat_slots(lb.maps)) == 1


def test_snat_cursor_walks_the_range_and_wraps(make_lb):
    """Probe 0 is the CPU's cursor: it starts at the first new flow's hash, then consecutive new
    flows get consecutive ports, wrapping at the end of the range (3 ports here: a 4th live flow
    finds none free; once one flow is gone the cursor comes round to its port)."""
    lb = make_lb("snat", snat_port_min=20000, snat_port_max=20002)
    lb.add_service(1, H.VIP, VPORT, H.TCP, {1: H.BACKENDS[1]})
    first = flowhash.snat_cursor_start(H.CLIENT, H.VIP, 46000, VPORT, H.TCP, 20000, 20002)
    ports = [Ether(lb.run(client_pkt(sport=46000 + i))[1])[TCP].sport for i in range(3)]
    assert ports == [20000 + (first - 20000 + i) % 3 for i in range(3)]
    ret, _ = lb.run(client_pkt(sport=46003))
    assert ret == XDP_DROP and lb.reason("DROP_SNAT_PORTS") == 1, "three ports, three live flows"
    gone = ports[1]
    lb.maps["ct4_global"].delete(H.S.IPV4_CT_TUPLE.pack(H.be32(H.VIP), H.be32(H.CLIENT), H.be16(VPORT),
                                                        H.be16(46001), H.TCP, 0))
    ret, out = lb.run(client_pkt(sport=46004))
    assert ret == XDP_TX and Ether(out)[TCP].sport == gone, "the cursor came round to the freed port"


def test_snat_cursor_per_backend_plane(lb_snat):
    """Each backend plane has its own cursor: a plane's new flows get consecutive ports from
    where its first flow's hash put that plane's cursor, whatever flows to other planes came in
    between (a shared cursor would have moved on by one for every flow)."""
    table = tcp_service(lb_snat)
    by_plane = {}
    for sp in range(47000, 47040):
        ret, out = lb_snat.run(client_pkt(sport=sp))
        assert ret == XDP_TX
        plane = expected_backend(table, lb_snat, sp) % H.S.SNAT_SLOTS
        by_plane.setdefault(plane, []).append((sp, Ether(out)[TCP].sport))
    assert len(by_plane) == 4, "the flows reached every plane"
    lo, n = H.S.SNAT_PORT_MIN_DEFAULT, H.S.SNAT_PORT_MAX_DEFAULT - H.S.SNAT_PORT_MIN_DEFAULT + 1
    for plane, got in by_plane.items():
        first = flowhash.snat_cursor_start(H.CLIENT, H.VIP, got[0][0], VPORT, H.TCP)
        assert [p for _, p in got] == [lo + (first - lo + i) % n for i in range(len(got))], f"plane {plane}"


def test_snat_ports_distinct_for_many_flows(lb_snat):
    lb_snat.add_service(1, H.VIP, VPORT, H.TCP, {1: H.BACKENDS[1]})
    ports = set()
    for sp in range(20000, 20300):
        ret, out = lb_snat.run(client_pkt(sport=sp))
        assert ret == XDP_TX
        ports.add(Ether(out)[TCP].sport)
    assert len(ports) == 300 and all(H.S.SNAT_PORT_MIN_DEFAULT <= p <= H.S.SNAT_PORT_MAX_DEFAULT for p in ports)


def test_snat_reopened_tuple_keeps_its_port(lb_snat):
    """A client that resets its connection (as a Linux client does to a backend's TIME_WAIT that
    refused its SYN) and sends the SYN again reopens the tuple as a new flow, on the same SNAT
    port: its RST killed the backend's TIME_WAIT on that tuple, so the retry gets in."""
    tcp_service(lb_snat)
    first = Ether(lb_snat.run(client_pkt(sport=46100))[1])[TCP].sport
    lb_snat.run(client_pkt(sport=46200))            # another flow moves the cursor on
    assert lb_snat.run(client_pkt(sport=46100, flags="R"))[0] == XDP_TX
    ret, out = lb_snat.run(client_pkt(sport=46100))
    assert ret == XDP_TX and Ether(out)[TCP].sport == first
    assert lb_snat.ct(H.CLIENT, H.VIP, 46100, VPORT, H.TCP).tcp_flags_seen == 0x02, "a new flow"


def test_snat_flow_whose_ct_entry_is_gone_comes_back_as_a_new_flow(lb_snat):
    """A new flow's first port is the CPU's cursor, not a hash of the flow: a flow whose CT entry
    was evicted (a full table) comes back as a new flow on the next port (bpf/README.md), and
    the slot it left, its owner gone, is free for whichever flow reaches that port next."""
    table = tcp_service(lb_snat)
    bip, bport = H.BACKENDS[expected_backend(table, lb_snat, 46000)]
    _, o1 = lb_snat.run(client_pkt(sport=46000))
    key = H.S.IPV4_CT_TUPLE.pack(H.be32(H.VIP), H.be32(H.CLIENT), H.be16(VPORT), H.be16(46000), H.TCP, 0)
    assert lb_snat.maps["ct4_global"].delete(key)
    _, o2 = lb_snat.run(client_pkt(sport=46000, flags="A"))
    first, second = Ether(o1)[TCP].sport, Ether(o2)[TCP].sport
    assert second == first + 1 and H.S.be16_to_port(lb_snat.ct(H.CLIENT, H.VIP, 46000, VPORT, H.TCP).nat_port) == second
    assert lb_snat.snat(bip, bport, first, H.TCP) is not None, "left behind until the GC or a new flow takes it"


# --------------------------------------------------------------------------------------------
# drops on service-bound packets
# --------------------------------------------------------------------------------------------

def test_empty_service_drops(lb_snat):
    lb_snat.add_service(1, H.VIP, VPORT, H.TCP, {})
    assert lb_snat.run(client_pkt())[0] == XDP_DROP
    assert lb_snat.reason("DROP_NO_BACKEND") == 1


def test_missing_maglev_table_drops(lb_snat):
    tcp_service(lb_snat)
    lb_snat.maps["lb4_maglev"].delete(H.S.U16.pack(1))
    assert lb_snat.run(client_pkt())[0] == XDP_DROP


def test_missing_neighbour_drops(lb_snat):
    table = tcp_service(lb_snat)
    bid = expected_backend(table, lb_snat, 40000)
    lb_snat.del_neigh(H.BACKENDS[bid][0])
    assert lb_snat.run(client_pkt())[0] == XDP_DROP
    assert lb_snat.reason("DROP_NO_NEIGH") == 1


@pytest.mark.parametrize("ttl,verdict", [(0, XDP_DROP), (1, XDP_DROP), (2, XDP_TX), (255, XDP_TX)])
def test_ttl(lb_snat, ttl, verdict):
    tcp_service(lb_snat)
    ret, out = lb_snat.run(client_pkt(ttl=ttl))
    assert ret == verdict
    if ret == XDP_TX:
        assert Ether(out)[IP].ttl == ttl - 1
        assert_checksums_recomputed(out)


def test_ip_options_to_vip_dropped(lb_snat):
    tcp_service(lb_snat)
    p = client_pkt(options=[IPOption_RR()])
    assert lb_snat.run(p)[0] == XDP_DROP and lb_snat.reason("DROP_IP_OPTIONS") == 1


def test_ip_options_elsewhere_pass(lb_snat):
    tcp_service(lb_snat)
    p = client_pkt(vip="40.1.1.2", options=[IPOption_RR()])
    ret, out = lb_snat.run(p)
    assert ret == XDP_PASS and out == bytes(p)


def test_first_fragment_to_vip_dropped(lb_snat):
    tcp_service(lb_snat)
    p = client_pkt(flags="PA", payload=b"x" * 40, frag=0)
    p[IP].flags = "MF"
    assert lb_snat.run(p)[0] == XDP_DROP and lb_snat.reason("DROP_FRAGMENT") == 1


@pytest.mark.parametrize("vip", [H.VIP, "40.1.1.2"])
def test_later_fragment_passes(lb_snat, vip):
    tcp_service(lb_snat)
    p = Ether(dst=H.LB_MAC) / IP(src=H.CLIENT, dst=vip, proto=6, frag=185) / Raw(b"y" * 32)
    ret, out = lb_snat.run(p)
    assert ret == XDP_PASS and out == bytes(p)


def test_tcp_doff_too_small_dropped(lb_snat):
    tcp_service(lb_snat)
    p = client_pkt()
    p[TCP].dataofs = 4
    assert lb_snat.run(p)[0] == XDP_DROP and lb_snat.reason("DROP_MALFORMED") == 1


def test_tcp_doff_beyond_packet_dropped(lb_snat):
    tcp_service(lb_snat)
    p = client_pkt()
    p[TCP].dataofs = 15
    assert lb_snat.run(p)[0] == XDP_DROP


@pytest.mark.parametrize("ulen", [0, 7, 9, 200])
def test_udp_bad_length_dropped(lb_snat, ulen):
    lb_snat.add_service(2, H.VIP, 53, H.UDP, {11: ("20.1.1.10", 53)})
    p = client_pkt(sport=1, dport=53, proto="udp")
    p[UDP].len = ulen
    assert lb_snat.run(p)[0] == XDP_DROP


# --------------------------------------------------------------------------------------------
# passes: everything that is not for a service, and unusable headers
# --------------------------------------------------------------------------------------------

def _assert_pass_untouched(lb, p):
    raw = bytes(p)
    ret, out = lb.run(raw)
    assert ret == XDP_PASS and out == raw


@pytest.mark.parametrize("pkt", [
    Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=H.VIP),
    Ether() / ARP(op=2, psrc=H.LB_IP),
    Ether() / IPv6(dst="2001:db8::1") / TCP(dport=80),
    Ether() / Dot1Q(vlan=5) / IP(dst=H.VIP) / TCP(dport=80),
    Ether(dst=H.LB_MAC) / IP(src=H.CLIENT, dst="40.1.1.2") / TCP(dport=80),
    Ether(dst=H.LB_MAC) / IP(src=H.CLIENT, dst=H.VIP) / TCP(dport=81),
    Ether(dst=H.LB_MAC) / IP(src=H.CLIENT, dst=H.VIP) / ICMP(),
    Ether(dst=H.LB_MAC) / IP(src=H.CLIENT, dst=H.VIP, proto=47) / Raw(b"\x00" * 20),
], ids=["arp-req", "arp-reply", "ipv6", "vlan", "non-vip", "vip-other-port", "icmp-to-vip", "gre-to-vip"])
def test_not_for_a_service_passes(lb_snat, pkt):
    tcp_service(lb_snat)
    _assert_pass_untouched(lb_snat, pkt)


def _raw_syn() -> bytes:
    return bytes(client_pkt(flags="S"))


@pytest.mark.parametrize("cut", list(range(14, 54)))
def test_truncated_frame_passes(lb_snat, cut):
    """Cut the frame at every byte from the end of the Ethernet header (BPF_PROG_TEST_RUN refuses
    XDP input shorter than 14 bytes) through the IPv4 and TCP headers. With an IPv4 total length
    longer than the frame the header is unusable: PASS, untouched (the kernel drops it)."""
    tcp_service(lb_snat)
    _assert_pass_untouched(lb_snat, _raw_syn()[:cut])


@pytest.mark.parametrize("l4len", list(range(0, 20)))
def test_consistent_but_short_tcp_header(lb_snat, l4len):
    """IPv4 total length agrees with the frame but the TCP header is cut: without ports it is
    not classifiable (PASS); with ports it is service-bound and malformed (DROP)."""
    tcp_service(lb_snat)
    raw = bytearray(_raw_syn()[:34 + l4len])
    raw[16:18] = struct.pack("!H", 20 + l4len)
    raw[24:26] = b"\x00\x00"
    raw[24:26] = struct.pack("!H", 0xFFFF - H.csum16(bytes(raw[14:34])))
    ret, out = lb_snat.run(bytes(raw))
    if l4len < 4:
        assert ret == XDP_PASS and out == bytes(raw)
    else:
        assert ret == XDP_DROP


@pytest.mark.parametrize("mutate", [
    lambda r: r.__setitem__(14, 0x44),          # IHL 4
    lambda r: r.__setitem__(14, 0x40),          # IHL 0
    lambda r: r.__setitem__(14, 0x4F),          # IHL 15: header longer than the frame
    lambda r: r.__setitem__(14, 0x65),          # version 6 under ethertype IPv4
    lambda r: r.__setitem__(slice(16, 18), b"\x00\x13"),  # total length 19 < IHL*4
    lambda r: r.__setitem__(slice(16, 18), b"\x05\xdc"),  # total length 1500 > frame
], ids=["ihl4", "ihl0", "ihl15", "version6", "totlen-short", "totlen-long"])
def test_bad_ipv4_header_passes(lb_snat, mutate):
    tcp_service(lb_snat)
    raw = bytearray(_raw_syn())
    mutate(raw)
    ret, out = lb_snat.run(bytes(raw))
    assert ret == XDP_PASS and out == bytes(raw)
    assert lb_snat.reason("PASS_BAD_IPV4") == 1


def test_ethernet_padding_kept(lb_snat):
    """A 54-byte SYN padded to 60 bytes: forwarded, padding carried along."""
    tcp_service(lb_snat)
    inp = bytes(client_pkt()) + b"\x00" * 6
    ret, out = lb_snat.run(inp)
    assert ret == XDP_TX and len(out) == 60
    assert_checksums_recomputed(out)


# --------------------------------------------------------------------------------------------
# counters
# --------------------------------------------------------------------------------------------

def test_service_and_backend_counters(lb_snat):
    table = tcp_service(lb_snat)
    sizes = []
    for i in range(5):
        p = client_pkt(sport=47000, flags="S" if i == 0 else "PA", payload=b"z" * i)
        sizes.append(len(bytes(p)))
        assert lb_snat.run(p)[0] == XDP_TX
    bid = expected_backend(table, lb_snat, 47000)
    assert lb_snat.percpu_sum("lb4_stats_service", H.S.U32.pack(1)) == (5, sum(sizes))
    assert lb_snat.percpu_sum("lb4_stats_backend", H.S.U32.pack(bid)) == (5, sum(sizes))
    assert lb_snat.reason("TX_SNAT_FWD") == 5


# --------------------------------------------------------------------------------------------
# DSR
# --------------------------------------------------------------------------------------------

def dsr_expected(inp: bytes, backend_ip: str) -> bytes:
    inner = Ether(inp)[IP]
    outer = Ether(src=H.LB_MAC, dst=H.BACKEND_MACS[backend_ip]) / \
        IP(src=H.LB_IP, dst=backend_ip, proto=4, ttl=64, id=inner.id, tos=inner.tos,
           flags="DF" if inner.flags.DF else 0, len=20 + inner.len)
    return bytes(outer) + inp[14:]


@pytest.mark.parametrize("ipflags,tos", [(0, 0), ("DF", 0), ("DF", 0x10)])
def test_dsr_encap(lb_dsr, ipflags, tos):
    table = tcp_service(lb_dsr)
    p = client_pkt(sport=48000, tos=tos, flags="S")
    p[IP].flags = ipflags
    inp = H.scapy_recomputed(bytes(p))
    ret, out = lb_dsr.run(inp)
    assert ret == XDP_TX
    assert_checksums_recomputed(out)
    bid = expected_backend(table, lb_dsr, 48000)
    assert out == dsr_expected(inp, H.BACKENDS[bid][0])
    assert out[34:] == inp[14:]          # inner packet unchanged (dst stays VIP:80)
    ct = lb_dsr.ct(H.CLIENT, H.VIP, 48000, VPORT, H.TCP)
    assert ct.backend_id == bid and ct.nat_port == 0


def test_dsr_established_and_udp(lb_dsr):
    tcp_service(lb_dsr)
    lb_dsr.add_service(2, H.VIP, 53, H.UDP, {11: ("20.1.1.30", 53)})
    r1, o1 = lb_dsr.run(client_pkt(sport=48001))
    r2, o2 = lb_dsr.run(client_pkt(sport=48001, flags="A", payload=b"data"))
    assert r1 == r2 == XDP_TX and o1[30:34] == o2[30:34]
    inp = bytes(client_pkt(sport=5000, dport=53, proto="udp", payload=b"q"))
    ret, out = lb_dsr.run(inp)
    assert ret == XDP_TX and out == dsr_expected(inp, "20.1.1.30")
    assert_checksums_recomputed(out)


def test_dsr_too_big_for_mtu_passes(lb_dsr):
    tcp_service(lb_dsr)
    inp = bytes(client_pkt(flags="PA", payload=b"x" * (1500 - 40 - 19)))   # tot_len 1481 + 20 > 1500
    ret, out = lb_dsr.run(inp)
    assert ret == XDP_PASS and out == inp and lb_dsr.reason("PASS_MTU") == 1
    inp = bytes(client_pkt(flags="PA", payload=b"x" * (1500 - 40 - 20)))   # exactly 1500 once encapsulated
    ret, out = lb_dsr.run(inp)
    assert ret == XDP_TX and len(out) == 14 + 1500


def test_dsr_has_no_reply_path(lb_dsr):
    tcp_service(lb_dsr)
    rep = Ether(dst=H.LB_MAC) / IP(src="20.1.1.10", dst=H.LB_IP) / TCP(sport=80, dport=20000, flags="SA")
    _assert_pass_untouched(lb_dsr, rep)


def test_dsr_ip_options_dropped(lb_dsr):
    tcp_service(lb_dsr)
    assert lb_dsr.run(client_pkt(options=[IPOption_RR()]))[0] == XDP_DROP


def test_mode_switch_keeps_ct(make_lb, compiled, pin_root):
    """SNAT then DSR with the same pin root: maps (services, CT) are reused, the flow keeps its
    backend."""
    lb = make_lb("snat")
    tcp_service(lb)
    _, o = lb.run(client_pkt(sport=49000))
    bip = Ether(o)[IP].dst
    dsr = H.LbEnv(compiled("dsr").path, lb.pin_root, "dsr")
    try:
        # change the table: the CT entry must win
        dsr.set_maglev(1, struct.pack(f"={dsr.M}I", *([4 if bip != "20.1.1.40" else 3] * dsr.M)))
        ret, out = dsr.run(client_pkt(sport=49000, flags="A"))
        assert ret == XDP_TX and H.S.be32_to_ip(int.from_bytes(out[30:34], H.S._NATIVE)) == bip
    finally:
        dsr.close()


def test_mode_switch_keeps_each_flows_path(make_lb, compiled, pin_root):
    """The mode decides new flows only: after SNAT -> DSR a SNAT flow is still SNATed (its
    backend knows it as LB_IP:nat_port) and its replies still reverse-NATed; a DSR flow stays
    DSR after DSR -> SNAT. New flows take the new mode."""
    snat = make_lb("snat")
    tcp_service(snat)
    _, o = snat.run(client_pkt(sport=49100))
    first = Ether(o)
    nat_port, bip = first[TCP].sport, first[IP].dst
    dsr = H.LbEnv(compiled("dsr").path, snat.pin_root, "dsr")
    try:
        ret, out = dsr.run(client_pkt(sport=49100, flags="A"))
        pkt = Ether(out)
        assert ret == XDP_TX and pkt[IP].proto == 6, "a SNAT flow must not be encapsulated"
        assert pkt[IP].src == H.LB_IP and pkt[TCP].sport == nat_port and pkt[IP].dst == bip
        assert_checksums_recomputed(out)
        reply = Ether(src=H.BACKEND_MACS[bip], dst=H.LB_MAC) / IP(src=bip, dst=H.LB_IP) / \
            TCP(sport=VPORT, dport=nat_port, flags="A")
        ret, out = dsr.run(reply)
        assert ret == XDP_TX and Ether(out)[IP].src == H.VIP and Ether(out)[TCP].dport == 49100
        # a new flow in the DSR program is encapsulated
        ret, out = dsr.run(client_pkt(sport=49101))
        assert ret == XDP_TX and Ether(out)[IP].proto == 4
        # back to SNAT: the DSR flow stays DSR
        snat2 = H.LbEnv(compiled("snat").path, snat.pin_root, "snat")
        try:
            ret, out = snat2.run(client_pkt(sport=49101, flags="A"))
            assert ret == XDP_TX and Ether(out)[IP].proto == 4, "a DSR flow must stay encapsulated"
            assert Ether(out)[IP].payload[IP].src == H.CLIENT
        finally:
            snat2.close()
    finally:
        dsr.close()
