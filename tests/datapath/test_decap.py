"""Backend decap programs (bpf/decap_xdp.c, bpf/decap_tc.c) through BPF_PROG_TEST_RUN:
IPIP in -> inner packet out; malformed IPIP dropped; everything else untouched."""

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
from l4lb import libbpf

TC_ACT_OK, TC_ACT_SHOT = libbpf.TC_ACT_OK, libbpf.TC_ACT_SHOT

VERDICTS = {  # kind -> (decapsulated/passed, dropped)
    "xdp": (libbpf.XDP_PASS, libbpf.XDP_DROP),
    "tc": (TC_ACT_OK, TC_ACT_SHOT),
}


@pytest.fixture(scope="module", params=["xdp", "tc"])
def decap(request, decap_objs, pin_root):
    kind = request.param
    obj = libbpf.BpfObject(decap_objs[kind])
    obj.load()
    fd = os.dup(obj.program(f"decap_{kind}").fd)
    runner = libbpf.TestRunner(fd, 4096)

    def run(pkt):
        ret, _ = runner.run(bytes(pkt))
        return ret, runner.output()

    def testable(raw: bytes) -> bool:
        """BPF_PROG_TEST_RUN for skb programs refuses (EINVAL) frames whose ethertype says IPv4 /
        IPv6 but that are shorter than that header; XDP takes anything from 14 bytes."""
        if kind != "tc":
            return True
        et = raw[12:14]
        return not ((et == b"\x08\x00" and len(raw) < 34) or (et == b"\x86\xdd" and len(raw) < 54))

    run.testable = testable

    run.kind = kind
    run.ok, run.drop = VERDICTS[kind]
    yield run
    os.close(fd)
    obj.close()


def inner_pkt(payload=b"GET / HTTP/1.1\r\n\r\n", proto="tcp"):
    l4 = TCP(sport=40000, dport=80, flags="PA") if proto == "tcp" else UDP(sport=4000, dport=53)
    return IP(src=H.CLIENT, dst=H.VIP, id=77) / l4 / Raw(payload)


def ipip(inner=None, **outer_kw):
    inner = inner if inner is not None else inner_pkt()
    return Ether(src=H.LB_MAC, dst="02:00:14:01:01:0a") / IP(src=H.LB_IP, dst="20.1.1.10", proto=4, **outer_kw) / inner


def expect_decapped(pkt) -> bytes:
    raw = bytes(pkt)
    olen = (raw[14] & 15) * 4
    return raw[:14] + raw[14 + olen:]


@pytest.mark.parametrize("make", [
    lambda: ipip(),
    lambda: ipip(inner_pkt(proto="udp")),
    lambda: ipip(inner_pkt(payload=b"")),
    lambda: ipip(inner_pkt(payload=b"x" * 1400)),
    lambda: ipip(flags="DF", ttl=1),
    lambda: ipip(options=[IPOption_RR()]),
    lambda: ipip(IP(src=H.CLIENT, dst=H.VIP, options=[IPOption_RR()]) / TCP(dport=80)),
    lambda: Ether(bytes(ipip()) + b"\x00" * 8),   # Ethernet padding after the packet
], ids=["tcp", "udp", "no-payload", "large", "outer-df-ttl1", "outer-options", "inner-options", "padded"])
def test_ipip_decapsulated(decap, make):
    pkt = make()
    ret, out = decap(pkt)
    assert ret == decap.ok
    assert out == expect_decapped(pkt)
    inner = Ether(out)
    assert inner[IP].dst == H.VIP
    assert H.scapy_recomputed(out) == out     # inner checksums untouched and right


@pytest.mark.parametrize("pkt", [
    Ether() / IP(src=H.CLIENT, dst=H.VIP) / TCP(dport=80),
    Ether() / IP(src=H.CLIENT, dst="20.1.1.10") / UDP(dport=53) / Raw(b"q"),
    Ether() / IP(dst="20.1.1.10") / ICMP(),
    Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="20.1.1.10"),
    Ether() / IPv6(dst="2001:db8::1") / TCP(),
    Ether() / IPv6(dst="2001:db8::1", nh=4) / Raw(bytes(inner_pkt())),   # IPv4-in-IPv6: not ours
    Ether(type=0x0800) / Raw(b"\x45\x00\x00"),                          # shorter than an IPv4 header
], ids=["tcp", "udp", "icmp", "arp", "ipv6", "4in6", "short-ipv4"])
def test_other_traffic_untouched(decap, pkt):
    raw = bytes(pkt)
    if not decap.testable(raw):
        pytest.skip("the kernel's skb test run refuses IPv4 frames shorter than the IPv4 header")
    ret, out = decap(raw)
    assert ret == decap.ok and out == raw


def _ipip_raw() -> bytearray:
    return bytearray(bytes(ipip()))


@pytest.mark.parametrize("mutate", [
    lambda r: r.__setitem__(14, 0x65),                              # outer version 6
    lambda r: r.__setitem__(14, 0x44),                              # outer IHL 4
    lambda r: r.__setitem__(14, 0x4F),                              # outer IHL 15: beyond the inner
    lambda r: r.__setitem__(slice(16, 18), b"\x05\xdc"),            # outer total length > frame
    lambda r: r.__setitem__(slice(16, 18), b"\x00\x27"),            # outer total length < 20 + 20
    lambda r: r.__setitem__(slice(20, 22), b"\x20\x00"),            # outer MF
    lambda r: r.__setitem__(slice(20, 22), b"\x00\x10"),            # outer fragment offset
    lambda r: r.__setitem__(34, 0x65),                              # inner version 6
    lambda r: r.__setitem__(34, 0x43),                              # inner IHL 3
    lambda r: r.__setitem__(slice(36, 38), b"\x05\xdc"),            # inner total length > what is there
    lambda r: r.__delitem__(slice(40, None)),                       # truncated inside the inner header
], ids=["ver6", "ihl4", "ihl15", "tot-long", "tot-short", "mf", "fragoff", "inner-ver6", "inner-ihl3",
        "inner-tot-long", "truncated"])
def test_malformed_ipip_dropped(decap, mutate):
    raw = _ipip_raw()
    mutate(raw)
    ret, _ = decap(bytes(raw))
    assert ret == decap.drop


def test_decap_fuzz(decap):
    """2,000 mutated packets: IPIP is either decapsulated exactly or dropped; anything else passes
    untouched; never another verdict."""
    rng = random.Random(f"decap-{decap.kind}")
    bases = [bytes(ipip()), bytes(ipip(inner_pkt(proto="udp"))), bytes(Ether() / IP(dst=H.VIP) / TCP()),
             bytes(Ether() / ARP())]
    seen = set()
    for _ in range(2000):
        b = bytearray(rng.choice(bases))
        for _ in range(rng.randint(0, 3)):
            i = rng.randrange(min(len(b), 60))
            b[i] = rng.randrange(256)
        if rng.random() < 0.2:
            b = b[:rng.randint(14, len(b))]
        raw = bytes(b)
        if not decap.testable(raw):
            continue
        ret, out = decap(raw)
        seen.add(ret)
        is_ipip = len(raw) >= 34 and raw[12:14] == b"\x08\x00" and raw[23] == 4
        if not is_ipip:
            assert ret == decap.ok and out == raw
        elif ret == decap.ok:
            olen = (raw[14] & 15) * 4
            assert out == raw[:14] + raw[14 + olen:]
            assert raw[14] >> 4 == 4 and olen >= 20 and (out[14] >> 4) == 4
        else:
            assert ret == decap.drop
    assert seen == {decap.ok, decap.drop}
