"""Fuzz lb_xdp.o with >= 10,000 random and mutated packets per mode (BPF_PROG_TEST_RUN).

Invariants checked on every packet:
- the verdict is PASS, DROP or TX: never XDP_ABORTED (nor anything else);
- PASS leaves the packet untouched;
- only a packet for a service (or, in SNAT mode, a reply from a backend to LB_IP) is dropped or
  forwarded; anything else passes untouched;
- a forwarded packet was well formed on the way in (no options, not a fragment, full L4 header,
  TTL > 1) and comes out rewritten the way its path says (addresses, MACs, TTL, payload, or the
  IPIP header in front of the unchanged inner packet in DSR);
- a forwarded packet whose checksums were right on the way in has right checksums on the way out.

Seed: L4LB_FUZZ_SEED (default 20240611); count: L4LB_FUZZ_COUNT (default 10000 per mode).
"""

from __future__ import annotations

import os
import random
import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

import dp_helpers as H
from dp_helpers import XDP_DROP, XDP_PASS, XDP_TX

SEED = int(os.environ.get("L4LB_FUZZ_SEED", "20240611"))
COUNT = int(os.environ.get("L4LB_FUZZ_COUNT", "10000"))

SERVICES = {  # (vip, port, proto) -> backends
    (H.VIP, 80, H.TCP): dict(H.BACKENDS),
    (H.VIP, 53, H.UDP): {11: ("20.1.1.10", 5353), 12: ("20.1.1.20", 5353)},
}
BACKEND_EPS = {(ip, port) for b in SERVICES.values() for ip, port in b.values()}
VIP_BE = bytes(map(int, H.VIP.split(".")))
LB_BE = bytes(map(int, H.LB_IP.split(".")))


def ip_b(ip: str) -> bytes:
    return bytes(map(int, ip.split(".")))


SERVICE_KEYS = {(ip_b(v), p, pr) for v, p, pr in SERVICES}
BACKEND_KEYS = {(ip_b(ip), p) for ip, p in BACKEND_EPS}
BACKEND_ADDRS = {ip_b(ip) for ip, _ in BACKEND_EPS}
BACKEND_MACS_B = {ip_b(ip): bytes(int(x, 16) for x in m.split(":")) for ip, m in H.BACKEND_MACS.items()}
LB_MAC_B = bytes(int(x, 16) for x in H.LB_MAC.split(":"))


def classify(raw: bytes):
    """Python mirror of the parsing rules: ('notip'|'bad'|'other', None) or ('ports', info)."""
    if len(raw) < 14 or raw[12:14] != b"\x08\x00":
        return "notip", None
    ip = raw[14:]
    if len(ip) < 20 or ip[0] >> 4 != 4 or (ip[0] & 15) < 5:
        return "bad", None
    ihl = (ip[0] & 15) * 4
    tot = struct.unpack("!H", ip[2:4])[0]
    if tot < ihl or tot > len(ip):
        return "bad", None
    proto = ip[9]
    frag = struct.unpack("!H", ip[6:8])[0]
    if proto not in (H.TCP, H.UDP) or frag & 0x1FFF or tot - ihl < 4:
        return "other", None
    sport, dport = struct.unpack("!HH", ip[ihl:ihl + 4])
    l4 = ip[ihl:tot]
    if proto == H.TCP:
        l4ok = len(l4) >= 20 and 20 <= (l4[12] >> 4) * 4 <= len(l4)
    else:
        l4ok = len(l4) >= 8 and 8 <= struct.unpack("!H", l4[4:6])[0] <= len(l4)
    clean = ihl == 20 and not frag & 0x2000 and l4ok and ip[8] > 1
    return "ports", dict(saddr=ip[12:16], daddr=ip[16:20], sport=sport, dport=dport, proto=proto,
                         tot=tot, ihl=ihl, clean=clean)


def checksums_ok_in(raw: bytes) -> bool:
    return H.packet_checksums_ok(raw)


# --- packet generation ----------------------------------------------------------------------

def templates(rng: random.Random, replies: list[bytes]) -> list[bytes]:
    c = H.CLIENT
    out = [
        Ether(src=H.CLIENT_MAC, dst=H.LB_MAC) / IP(src=c, dst=H.VIP) / TCP(sport=40000, dport=80, flags="S"),
        Ether(src=H.CLIENT_MAC, dst=H.LB_MAC) / IP(src=c, dst=H.VIP, flags="DF") / TCP(sport=40001, dport=80, flags="PA") / Raw(b"GET / HTTP/1.1\r\n\r\n"),
        Ether(src=H.CLIENT_MAC, dst=H.LB_MAC) / IP(src=c, dst=H.VIP) / UDP(sport=3333, dport=53) / Raw(b"\x01\x02query"),
        Ether(src=H.CLIENT_MAC, dst=H.LB_MAC) / IP(src=c, dst=H.VIP) / UDP(sport=3334, dport=53, chksum=0) / Raw(b"nocsum"),
        Ether(src=H.CLIENT_MAC, dst=H.LB_MAC) / IP(src=c, dst="40.1.1.2") / TCP(sport=40000, dport=80, flags="S"),
        Ether(src=H.CLIENT_MAC, dst=H.LB_MAC) / IP(src=c, dst=H.VIP) / ICMP() / Raw(b"ping"),
        Ether(src=H.CLIENT_MAC, dst=H.LB_MAC) / IP(src=c, dst=H.VIP, options=[IPOption_RR()]) / TCP(sport=40002, dport=80),
        Ether(src=H.CLIENT_MAC, dst=H.LB_MAC) / IP(src=c, dst=H.VIP, flags="MF") / TCP(sport=40003, dport=80) / Raw(b"x" * 24),
        Ether(src=H.CLIENT_MAC, dst=H.LB_MAC) / IP(src=c, dst=H.LB_IP) / TCP(sport=50000, dport=22, flags="S"),
        Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=H.VIP),
        Ether() / IPv6(dst="2001:db8::1") / TCP(dport=80),
    ]
    return [bytes(p) for p in out] + replies


def fix_ip_csum(b: bytearray):
    ihl = (b[14] & 15) * 4
    if ihl < 20 or len(b) < 14 + ihl:
        return
    b[24:26] = b"\x00\x00"
    b[24:26] = struct.pack("!H", 0xFFFF - H.csum16(bytes(b[14:14 + ihl])))


def fix_all_csums(b: bytearray):
    """Make IPv4 and TCP/UDP checksums right, when the headers allow it."""
    kind, info = classify(bytes(b))
    if kind not in ("ports", "other", "bad"):
        return
    if len(b) < 34:
        return
    if kind == "ports" and info["ihl"] == 20 and info["tot"] >= 20:
        ip = b[14:14 + info["tot"]]
        off = 16 if info["proto"] == H.TCP else 6
        seg = ip[20:]
        if len(seg) >= off + 2 and not (info["proto"] == H.UDP and seg[6:8] == b"\x00\x00"):
            seg[off:off + 2] = b"\x00\x00"
            pseudo = bytes(ip[12:20]) + struct.pack("!BBH", 0, info["proto"], len(seg))
            c = 0xFFFF - H.csum16(pseudo + bytes(seg))
            if info["proto"] == H.UDP and c == 0:
                c = 0xFFFF
            b[14 + 20 + off:14 + 20 + off + 2] = struct.pack("!H", c)
    fix_ip_csum(b)


def mutate(rng: random.Random, base: bytes) -> bytes:
    b = bytearray(base)
    op = rng.randrange(10)
    if op == 0:        # a fresh flow of a service packet, checksums right
        if classify(bytes(b))[0] == "ports" and len(b) >= 38:
            b[26:30] = bytes([rng.choice([20, 10, 172, 192]), rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)])
            b[34:36] = struct.pack("!H", rng.randrange(1, 65536))
            fix_all_csums(b)
    elif op == 1:      # flip 1..4 random bits anywhere
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif op == 2:      # random bytes in the headers
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(min(len(b), 60))
            b[i] = rng.randrange(256)
    elif op == 3:      # truncate
        b = b[:rng.randint(14, len(b))]
    elif op == 4:      # trailing garbage (Ethernet padding or junk)
        b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
    elif op == 5 and len(b) >= 34:   # one IPv4 field to a random / edge value
        field = rng.choice(["verihl", "tot", "frag", "ttl", "proto"])
        if field == "verihl":
            b[14] = rng.choice([0x45, 0x46, 0x44, 0x40, 0x4F, 0x55, 0x65, rng.randrange(256)])
        elif field == "tot":
            b[16:18] = struct.pack("!H", rng.choice([0, 19, 20, 23, 24, len(b) - 14, len(b) - 13, 65535, rng.randrange(65536)]))
        elif field == "frag":
            b[20:22] = struct.pack("!H", rng.choice([0x2000, 0x0001, 0x4000, 0x2001, rng.randrange(65536)]))
        elif field == "ttl":
            b[22] = rng.choice([0, 1, 2, 255])
        else:
            b[23] = rng.choice([1, 4, 6, 17, 47, rng.randrange(256)])
        if rng.random() < 0.7:
            fix_ip_csum(b)
    elif op == 6 and len(b) >= 54:   # one L4 field
        field = rng.choice(["doff", "flags", "ulen", "dport"])
        if field == "doff":
            b[46] = rng.randrange(16) << 4
        elif field == "flags":
            b[47] = rng.randrange(256)
        elif field == "ulen":
            b[38:40] = struct.pack("!H", rng.choice([0, 7, 8, 9, len(b) - 34, 65535]))
        else:
            b[36:38] = struct.pack("!H", rng.choice([80, 53, 22, rng.randrange(65536)]))
        if rng.random() < 0.7:
            fix_all_csums(b)
    elif op == 7:      # random bytes, IPv4 ethertype half of the time
        n = rng.randint(14, 200)
        b = bytearray(rng.randrange(256) for _ in range(n))
        if rng.random() < 0.5:
            b[12:14] = b"\x08\x00"
            if n >= 34 and rng.random() < 0.5:
                b[14] = 0x45
                b[16:18] = struct.pack("!H", n - 14)
                b[30:34] = rng.choice([VIP_BE, LB_BE])
                fix_ip_csum(b)
    elif op == 8 and len(b) >= 34:   # random destination among the interesting ones
        b[30:34] = rng.choice([VIP_BE, LB_BE, bytes([40, 1, 1, 2])])
        fix_all_csums(b)
    # op 9: the template as is
    return bytes(b)


# --- the oracle -------------------------------------------------------------------------------

def check(mode: str, raw: bytes, ret: int, out: bytes):
    assert ret in (XDP_PASS, XDP_DROP, XDP_TX), f"verdict {ret}"
    kind, info = classify(raw)
    if ret == XDP_PASS:
        assert out == raw, "PASS changed the packet"
    if kind != "ports":
        assert ret == XDP_PASS, f"{kind} packet got verdict {ret}"
        return
    key = (info["daddr"], info["dport"], info["proto"])
    is_service = key in SERVICE_KEYS
    is_reply = (mode == "snat" and not is_service and info["daddr"] == LB_BE
                and (info["saddr"], info["sport"]) in BACKEND_KEYS)
    if not (is_service or is_reply):
        assert ret == XDP_PASS, f"non-service packet got verdict {ret}"
        return
    if ret == XDP_PASS:
        # service packets pass only when DSR would exceed the MTU; replies only without an entry
        if is_service:
            assert mode == "dsr" and info["tot"] + 20 > 1500, "service packet passed"
        return
    if ret == XDP_DROP:
        return
    # XDP_TX
    assert info["clean"], "forwarded a malformed packet"
    csum_in = checksums_ok_in(raw)
    if mode == "dsr":
        assert out[14:] [:20][9] == 4 and out[34:] == raw[14:], "DSR inner packet changed"
        assert out[6:12] == LB_MAC_B and out[26:30] == LB_BE and out[30:34] in BACKEND_ADDRS
        assert out[0:6] == BACKEND_MACS_B[out[30:34]]
        assert out[14] == 0x45 and out[22] == 64
        assert struct.unpack("!H", out[16:18])[0] == info["tot"] + 20
        assert H.ip_header_ok(out[14:]), "outer IPv4 checksum wrong"
        if csum_in:
            assert H.packet_checksums_ok(out[20:]), "inner checksums broken"
        return
    assert len(out) == len(raw)
    assert out[22] == raw[22] - 1, "TTL not decremented"
    ihl = 20
    l4hdr = 20 if info["proto"] == H.TCP else 8
    # payload and the rest of the L4 header untouched (except ports and checksum)
    start = 14 + ihl
    assert out[start + l4hdr:] == raw[start + l4hdr:]
    if is_service:
        assert out[26:30] == LB_BE and out[30:34] in BACKEND_ADDRS
        assert out[0:6] == BACKEND_MACS_B[out[30:34]] and out[6:12] == LB_MAC_B
        assert H.S.SNAT_PORT_MIN_DEFAULT <= struct.unpack("!H", out[34:36])[0] <= H.S.SNAT_PORT_MAX_DEFAULT
    else:
        assert out[26:30] == VIP_BE and out[6:12] == LB_MAC_B
    if csum_in:
        assert H.packet_checksums_ok(out), "checksums right on the way in, wrong on the way out"


@pytest.mark.parametrize("mode", ["snat", "dsr"])
def test_fuzz(make_lb, mode):
    rng = random.Random(f"{SEED}-{mode}")
    lb = make_lb(mode)
    for (vip, port, proto), backends in SERVICES.items():
        lb.add_service(1 if port == 80 else 2, vip, port, proto, backends)
    # Real replies: open a few flows and answer them from their backends.
    replies = []
    if mode == "snat":
        for sp in (40100, 40101, 40102):
            ret, out = lb.run(Ether(dst=H.LB_MAC) / IP(src=H.CLIENT, dst=H.VIP) / TCP(sport=sp, dport=80, flags="S"))
            assert ret == XDP_TX
            o = Ether(out)
            replies.append(bytes(Ether(dst=H.LB_MAC) / IP(src=o[IP].dst, dst=H.LB_IP) /
                                 TCP(sport=80, dport=o[TCP].sport, flags="PA") / Raw(b"reply")))
        ret, out = lb.run(Ether(dst=H.LB_MAC) / IP(src=H.CLIENT, dst=H.VIP) / UDP(sport=3333, dport=53) / Raw(b"q"))
        o = Ether(out)
        replies.append(bytes(Ether(dst=H.LB_MAC) / IP(src=o[IP].dst, dst=H.LB_IP) / UDP(sport=5353, dport=o[UDP].sport) / Raw(b"a")))
    bases = templates(rng, replies)
    stats = {XDP_PASS: 0, XDP_DROP: 0, XDP_TX: 0}
    tx_with_good_csum = 0
    for i in range(COUNT):
        raw = mutate(rng, rng.choice(bases))
        ret, out = lb.run(raw)
        try:
            check(mode, raw, ret, out)
        except AssertionError as exc:
            raise AssertionError(f"packet {i} (seed {SEED}, mode {mode}): {exc}\nin  {raw.hex()}\nout {out.hex()}") from None
        stats[ret] = stats.get(ret, 0) + 1
        if ret == XDP_TX and checksums_ok_in(raw):
            tx_with_good_csum += 1
    print(f"fuzz {mode}: {COUNT} packets, verdicts {stats}, forwarded with good checksums {tx_with_good_csum}")
    # The mix must exercise every verdict, with many forwarded packets with good checksums.
    assert all(stats[v] > COUNT // 50 for v in (XDP_PASS, XDP_DROP, XDP_TX)), stats
    assert tx_with_good_csum > COUNT // 20, (tx_with_good_csum, stats)
