"""Struct mirrors: sizes/offsets per ARCHITECTURE.md, byte order, ctypes vs struct codecs.
(The comparison against the compiled object's BTF is tests/datapath/test_btf_layout.py.)"""

import ctypes

import pytest

from l4lb import structs as S

EXPECTED = {   # C struct -> (size, {field: offset}) as laid out by the C compiler
    "lb4_key": (12, {"address": 0, "dport": 4, "backend_slot": 6, "proto": 8, "scope": 9, "pad": 10}),
    "lb4_service": (12, {"backend_id": 0, "count": 4, "rev_nat_index": 6, "flags": 8, "flags2": 9, "pad": 10}),
    "lb4_backend": (16, {"address": 0, "port": 4, "proto": 6, "flags": 7, "mac": 8, "pad": 14}),
    "lb4_reverse_nat": (8, {"address": 0, "port": 4, "pad": 6}),
    "lb4_service_front": (8, {"address": 0, "dport": 4, "proto": 6, "pad": 7}),
    "neigh_mac": (8, {"addr": 0, "pad": 6}),
    "ipv4_ct_tuple": (16, {"daddr": 0, "saddr": 4, "dport": 8, "sport": 10, "nexthdr": 12, "flags": 13, "pad": 14}),
    "ct_entry": (56, {"rx_packets": 0, "rx_bytes": 8, "tx_packets": 16, "tx_bytes": 24, "last_seen_ns": 32,
                      "backend_id": 40, "rev_nat_index": 44, "nat_port": 46, "tcp_flags_seen": 48, "ct_flags": 49, "pad": 50,
                      "last_tick": 52}),
    "snat_entry": (16, {"client_addr": 0, "vip": 4, "client_port": 8, "vport": 10, "backend_id": 12, "proto": 14, "pad": 15}),
    "lb_stats": (16, {"packets": 0, "bytes": 8}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_layout(name):
    cls = S.C_STRUCTS[name]
    size, offsets = EXPECTED[name]
    assert ctypes.sizeof(cls) == size
    assert {f: getattr(cls, f).offset for f, *_ in cls._fields_} == offsets
    assert S.CODECS[cls].size == size


def test_byte_order_boundary():
    assert S.ip_to_be32("20.1.1.10").to_bytes(4, "little") == bytes([20, 1, 1, 10])
    assert S.be32_to_ip(S.ip_to_be32("40.1.1.1")) == "40.1.1.1"
    assert S.port_to_be16(80).to_bytes(2, "little") == b"\x00\x50"
    assert S.be16_to_port(S.port_to_be16(65535)) == 65535
    assert S.mac_to_bytes("02:00:14:01:01:0a") == b"\x02\x00\x14\x01\x01\x0a"
    assert S.bytes_to_mac(b"\x02\x00\x14\x01\x01\x0a\x00\x00") == "02:00:14:01:01:0a"


@pytest.mark.parametrize("good", ["02:00:14:01:01:0A", " 02-00-14-01-01-0a ", b"\x02\x00\x14\x01\x01\x0a"])
def test_one_mac_parser(good):
    from l4lb import build, model
    assert S.mac_to_bytes(good) == b"\x02\x00\x14\x01\x01\x0a"
    if isinstance(good, str):
        assert model.parse_mac(good) == "02:00:14:01:01:0a"
        cfg = build.BuildConfig(lb_ip="20.1.1.1", lb_mac=good, ifindex=3)
        assert cfg.lb_mac == "02:00:14:01:01:0a"


@pytest.mark.parametrize("bad", ["02:00:14:01:01", "02:00:14:01:01:0g", "2:0:14:1:1:a", b"\x02", 7, None])
def test_one_mac_parser_refuses(bad):
    from l4lb import model
    from l4lb.errors import InvalidConfig
    with pytest.raises(InvalidConfig, match="lb_mac: .* is not a MAC address"):
        S.mac_to_bytes(bad, "lb_mac")
    with pytest.raises(InvalidConfig, match="mac: "):
        model.parse_mac(bad)


def test_ctypes_and_codecs_agree():
    k = S.Lb4Key.make("40.1.1.1", 80, 3, S.IPPROTO_TCP)
    assert bytes(k) == S.LB4_KEY.pack(S.ip_to_be32("40.1.1.1"), S.port_to_be16(80), 3, 6, 0)
    assert bytes(k)[:6] == bytes([40, 1, 1, 1, 0, 80])           # wire order on the be fields
    b = S.Lb4Backend.make("20.1.1.10", 8080, S.IPPROTO_UDP)
    assert bytes(b) == bytes([20, 1, 1, 10, 0x1F, 0x90, 17, 0]) + bytes(8)
    b = S.Lb4Backend.make("20.1.1.10", 8080, S.IPPROTO_UDP, mac="02:00:14:01:01:0a")
    assert bytes(b) == S.LB4_BACKEND.pack(S.ip_to_be32("20.1.1.10"), S.port_to_be16(8080), 17, 0,
                                          bytes.fromhex("02001401010a"))
    sv = S.Lb4Service(backend_id=7, count=4, rev_nat_index=1)
    assert bytes(sv) == S.LB4_SERVICE.pack(7, 4, 1, 0, 0)
    assert S.Lb4Service.from_bytes(bytes(sv)).count == 4
    rn = S.Lb4ReverseNat(address=S.ip_to_be32("40.1.1.1"), port=S.port_to_be16(80))
    assert bytes(rn) == S.LB4_REVERSE_NAT.pack(S.ip_to_be32("40.1.1.1"), S.port_to_be16(80))
    se = S.SnatEntry(client_addr=1, vip=2, client_port=3, vport=4, backend_id=5, proto=17)
    assert bytes(se) == S.SNAT_ENTRY.pack(1, 2, 3, 4, 5, 17) and len(bytes(se)) == 16
    nm = S.NeighMac()
    nm.addr[:] = list(b"\x02\x00\x14\x01\x01\x0a")
    assert bytes(nm) == S.NEIGH_MAC.pack(b"\x02\x00\x14\x01\x01\x0a")


def test_map_specs_match_the_object(lbmaps):
    """The sizes of the maps the program created (conftest: always from bpf/lb_xdp.c) equal the mirrors'."""
    for name, (mtype, ksize, vsize, maxe) in S.map_specs().items():
        m = lbmaps[name]
        assert (m.type, m.key_size, m.value_size) == (mtype, ksize, vsize), name


def test_vip_bucket_is_the_datapaths():
    """lb_vip_bucket (bpf/include/service.h): (u32 as the CPU reads the __be32 * 0x9e3779b1) >> 20."""
    for ip in ("40.1.1.1", "40.1.1.2", "20.1.1.1", "255.255.255.255", "0.0.0.0"):
        raw = S.ip_to_be32(ip)
        assert S.vip_bucket(raw) == ((raw * 0x9E3779B1) % 2**32) >> (32 - S.VIP_FILTER_BITS)
        assert 0 <= S.vip_bucket(raw) < S.VIP_FILTER_SIZE
    # the lab's VIP range spreads over buckets instead of sharing one
    assert len({S.vip_bucket(S.ip_to_be32(f"40.1.1.{i}")) for i in range(256)}) > 200


def test_front_bucket_is_the_datapaths():
    """lb_front_bucket (bpf/include/service.h): ((u32 daddr ^ (u32 dport << 16) ^ proto) *
    0x9e3779b1) >> 20, the __be fields as the CPU reads them; ports and protocols of one VIP
    spread over the buckets (the datapath test takes a hint at the bucket this computes)."""
    vip = S.ip_to_be32("40.1.1.1")
    for port in (80, 443, 8080):
        for proto in (S.IPPROTO_TCP, S.IPPROTO_UDP):
            raw = vip ^ (S.port_to_be16(port) << 16) ^ proto
            assert S.front_bucket(vip, S.port_to_be16(port), proto) == ((raw * 0x9E3779B1) % 2**32) >> 20
    assert len({S.front_bucket(vip, S.port_to_be16(p), S.IPPROTO_TCP) for p in range(1, 1025)}) > 700
