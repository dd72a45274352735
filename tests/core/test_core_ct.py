"""CT decoding and dumpstate on synthetic entries written to the real ct4_global map."""

import pytest

from l4lb import ct
from l4lb.errors import InvalidConfig
from l4lb.model import Service
from l4lb.reconcile import apply, plan_services
from l4lb.structs import (
    CT_ENTRY, IPV4_CT_TUPLE, LB_STATS, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, U32, CtEntry, Ipv4CtTuple,
    ip_to_be32, port_to_be16,
)

NOW = 10_000 * 10**9


def ct_key(client, cport, vip="40.1.1.1", vport=80, proto=6):
    return IPV4_CT_TUPLE.pack(ip_to_be32(vip), ip_to_be32(client), port_to_be16(vport),
                              port_to_be16(cport), proto, 0)


def ct_val(bid, sid, rx_b, tx_b, age_s, flags, nat_port=0, ct_flags=0):
    return CT_ENTRY.pack(3, rx_b, 2, tx_b, NOW - int(age_s * 1e9), bid, sid, port_to_be16(nat_port), flags,
                         ct_flags)


@pytest.fixture
def lab(lbmaps):
    s1 = Service.parse(id=1, frontend="40.1.1.1:80", backends="20.1.1.10:80,20.1.1.20:80")
    s2 = Service.parse(id=2, frontend="40.1.1.2:80", backends="20.1.1.30:80")
    apply(lbmaps, plan_services(lbmaps, [s1, s2]))
    entries = [
        (ct_key("20.1.1.100", 40000), ct_val(1, 1, 1200, 5000, 1, TCP_SYN | TCP_ACK, 61000)),
        (ct_key("20.1.1.100", 40001), ct_val(2, 1, 800, 0, 1, TCP_SYN | TCP_ACK | TCP_FIN)),
        (ct_key("20.1.1.101", 5555), ct_val(2, 1, 64, 64, 300, TCP_ACK)),
        (ct_key("20.1.1.9", 7), ct_val(1, 1, 10, 10, 0.5, TCP_RST)),
        (ct_key("20.1.1.100", 40002, vip="40.1.1.2"), ct_val(3, 2, 1, 1, 1, TCP_ACK)),
    ]
    lbmaps["ct4_global"].update_batch(entries)
    return lbmaps


def test_rows(lab):
    rows = ct.dump_service(lab, 1, now_ns=NOW, idle_after_s=60)
    got = [(r["source_ip"], r["dest_ip"], r["source_port"], r["dest_port"], r["backend_ip"], r["state"],
            r["rx_bytes"], r["tx_bytes"]) for r in rows]
    assert got == [
        ("20.1.1.9", "40.1.1.1", 7, 80, "20.1.1.10", "CLOSING", 10, 10),
        ("20.1.1.100", "40.1.1.1", 40000, 80, "20.1.1.10", "ACTIVE", 1200, 5000),
        ("20.1.1.100", "40.1.1.1", 40001, 80, "20.1.1.20", "CLOSING", 800, 0),
        ("20.1.1.101", "40.1.1.1", 5555, 80, "20.1.1.20", "IDLE", 64, 64),
    ]
    assert rows[1]["nat_port"] == 61000 and rows[1]["protocol"] == "tcp" and rows[1]["backend_id"] == 1
    assert [r["source_port"] for r in ct.dump_service(lab, 2, now_ns=NOW)] == [40002]
    assert ct.dump_service(lab, 3, now_ns=NOW) == []
    with pytest.raises(InvalidConfig, match="id"):
        ct.dump_service(lab, 0)


def test_table_header(lab):
    text = ct.render_table(ct.dump_service(lab, 1, now_ns=NOW))
    lines = text.splitlines()
    assert [c.strip() for c in lines[0].split("|")] == [
        "Source IP", "Dest. IP", "Source Port", "Dest Port", "Backend IP", "State", "Rx Bytes", "Tx Bytes"]
    assert len(lines) == 2 + 4 and "CLOSING" in lines[2]
    assert ct.render_table([]).count("\n") == 2


def test_monotonic_clock_default(lab):
    # real clock: entries stamped "now" on CLOCK_MONOTONIC are ACTIVE
    now = ct.monotonic_ns()
    lab["ct4_global"].update(ct_key("20.1.1.200", 1), ct_val(1, 1, 1, 1, 0, TCP_ACK).replace(
        (NOW).to_bytes(8, "little"), now.to_bytes(8, "little")))
    rows = {r["source_ip"]: r for r in ct.dump_service(lab, 1)}
    assert rows["20.1.1.200"]["state"] == "ACTIVE"


def test_counters(lab):
    svc_map = lab["lb4_stats_service"]
    be_map = lab["lb4_stats_backend"]
    n = svc_map.ncpus

    def percpu(vals):
        return b"".join(LB_STATS.pack(p, b).ljust(svc_map.stride, b"\0") for p, b in vals)

    svc_map.update(U32.pack(1), percpu([(10 + i, 1000 * (i + 1)) for i in range(n)]))
    be_map.update(U32.pack(2), percpu([(1, 100)] * n))
    st = ct.service_stats(lab, 1)
    assert st == {"packets": sum(10 + i for i in range(n)), "bytes": sum(1000 * (i + 1) for i in range(n))}
    assert ct.service_stats(lab, 2) == {"packets": 0, "bytes": 0}
    full = ct.dump_state(lab, 1, now_ns=NOW)
    assert full["service"] == {"id": 1, "vip": "40.1.1.1", "port": 80, "protocol": "tcp"}
    assert full["stats"] == st and len(full["connections"]) == 4
    assert full["backends"] == [
        {"backend_id": 1, "ip": "20.1.1.10", "port": 80, "packets": 0, "bytes": 0},
        {"backend_id": 2, "ip": "20.1.1.20", "port": 80, "packets": n, "bytes": 100 * n},
    ]
    assert ct.backend_stats(lab) == {2: {"packets": n, "bytes": 100 * n}}


def test_struct_and_codec_agree():
    k = Ipv4CtTuple(daddr=ip_to_be32("40.1.1.1"), saddr=ip_to_be32("20.1.1.100"),
                    dport=port_to_be16(80), sport=port_to_be16(40000), nexthdr=6)
    assert bytes(k) == ct_key("20.1.1.100", 40000)
    v = CtEntry.from_bytes(ct_val(7, 1, 5, 6, 0, TCP_FIN))
    assert (v.backend_id, v.rev_nat_index, v.rx_bytes, v.tx_bytes, v.tcp_flags_seen) == (7, 1, 5, 6, TCP_FIN)


def test_reason_names_match_the_datapath(lab):
    import os
    import re
    from l4lb.structs import LB_REASONS
    here = os.path.dirname(os.path.abspath(__file__))
    text = open(os.path.join(here, "..", "..", "bpf", "include", "consts.h")).read()
    enum = dict((int(v), n) for n, v in re.findall(r"LB_R_(\w+)\s*=\s*(\d+)", text))
    assert [enum[i] for i in range(len(LB_REASONS))] == list(LB_REASONS)
    assert enum.get(len(LB_REASONS)) == "MAX"
    mp = lab["lb4_stats_reason"]
    vals = b"".join(LB_STATS.pack(2, 120).ljust(mp.stride, b"\0") for _ in range(mp.ncpus))
    mp.update(U32.pack(10), vals)
    assert ct.reason_stats(lab) == {"DROP_NO_BACKEND": {"packets": 2 * mp.ncpus, "bytes": 120 * mp.ncpus}}


def test_trouble_counters_are_every_drop_and_pass_mtu(lab):
    """Generic over reasons: every DROP_* and PASS_MTU is trouble, forwarding and plain passes are not."""
    from l4lb.structs import LB_REASONS
    assert set(ct.TROUBLE_REASONS) == {r for r in LB_REASONS if r.startswith("DROP_")} | {"PASS_MTU"}
    mp = lab["lb4_stats_reason"]

    def count(name, packets):
        vals = b"".join(LB_STATS.pack(packets, 1500 * packets).ljust(mp.stride, b"\0") for _ in range(mp.ncpus))
        mp.update(U32.pack(LB_REASONS.index(name)), vals)

    assert ct.trouble_counters(lab) == {}
    for name in ("TX_DSR", "PASS_NOT_SERVICE", "PASS_MTU", "DROP_SNAT_PORTS", "DROP_NO_NEIGH"):
        count(name, 3)
    n = 3 * mp.ncpus
    got = ct.trouble_counters(lab)
    assert list(got) == ["DROP_NO_NEIGH", "DROP_SNAT_PORTS", "PASS_MTU"]   # LB_REASONS order
    assert got["PASS_MTU"] == {"packets": n, "bytes": 1500 * n}
    assert ct.trouble_lines(got)[-1] == f"WARN PASS_MTU: {n} packets, {1500 * n} bytes"
