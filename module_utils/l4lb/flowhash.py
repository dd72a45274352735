# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Python mirror of the datapath's 5-tuple hash (bpf/include/select.h: lb_flow_hash).

The XDP program picks a new flow's backend as ``table[flow_hash(...) % M]`` of the service's
Maglev table, so with the same table this module predicts the datapath's choice.

    a = saddr, b = daddr            (host-order values of the IPv4 addresses)
    c = sport << 16 | dport          (host-order ports)
    h = jhash_3words(a, b, c, LB_HASH_SEED ^ proto)

``jhash_3words`` is Linux's (<linux/jhash.h>, lookup3's final mix), as used by Cilium's
``hash_from_tuple_v4``.
"""

from __future__ import annotations

import ipaddress

from .structs import SNAT_PORT_MAX_DEFAULT, SNAT_PORT_MIN_DEFAULT

LB_HASH_SEED = 0x4C344C42
LB_SNAT_SEED = 0x534E4154
JHASH_INITVAL = 0xDEADBEEF
_M = 0xFFFFFFFF


def _rol32(w: int, s: int) -> int:
    return ((w << s) | (w >> (32 - s))) & _M


def jhash_3words(a: int, b: int, c: int, initval: int) -> int:
    initval = (initval + JHASH_INITVAL + (3 << 2)) & _M
    a = (a + initval) & _M
    b = (b + initval) & _M
    c = (c + initval) & _M
    c ^= b
    c = (c - _rol32(b, 14)) & _M
    a ^= c
    a = (a - _rol32(c, 11)) & _M
    b ^= a
    b = (b - _rol32(a, 25)) & _M
    c ^= b
    c = (c - _rol32(b, 16)) & _M
    a ^= c
    a = (a - _rol32(c, 4)) & _M
    b ^= a
    b = (b - _rol32(a, 14)) & _M
    c ^= b
    c = (c - _rol32(b, 24)) & _M
    return c


def _ip(v) -> int:
    if isinstance(v, int):
        return v & _M
    if isinstance(v, (bytes, bytearray)):
        return int.from_bytes(v, "big")
    return int(ipaddress.IPv4Address(v))


def flow_hash(saddr, daddr, sport: int, dport: int, proto: int, seed: int = LB_HASH_SEED) -> int:
    """Hash of a client flow as it arrives (saddr = client, daddr = VIP). Addresses as strings,
    ints (host order) or 4 packed bytes; ports and proto as ints."""
    c = ((sport & 0xFFFF) << 16) | (dport & 0xFFFF)
    return jhash_3words(_ip(saddr), _ip(daddr), c, (seed ^ (proto & 0xFF)) & _M)


def maglev_index(saddr, daddr, sport: int, dport: int, proto: int, size: int) -> int:
    """Slot of the service's Maglev table the datapath reads for a new flow."""
    return flow_hash(saddr, daddr, sport, dport, proto) % size


def snat_cursor_start(saddr, daddr, sport: int, dport: int, proto: int,
                      port_min: int = SNAT_PORT_MIN_DEFAULT, port_max: int = SNAT_PORT_MAX_DEFAULT) -> int:
    """The port a CPU's first new SNAT flow to a backend plane tries (probe 0 with the CPU's
    cursor for that plane not started: flow hash % range); its later new flows to the same plane
    try the ports after it in turn."""
    return port_min + flow_hash(saddr, daddr, sport, dport, proto) % (port_max - port_min + 1)


def snat_port_probe(saddr, daddr, sport: int, dport: int, proto: int, probe: int = 1,
                    port_min: int = SNAT_PORT_MIN_DEFAULT, port_max: int = SNAT_PORT_MAX_DEFAULT) -> int:
    """The SNAT port the datapath tries at probe ``probe`` (1..SNAT_PROBES-1) for a new flow whose
    first try (probe 0, the CPU's cursor for the backend's plane: lb4_snat_cursor) was busy
    (bpf/include/nat.h lb_snat_alloc: jhash(flow hash, probe) in the range)."""
    if probe < 1:
        raise ValueError("probe 0 is the CPU's cursor, not a hash of the flow")
    h = jhash_3words(flow_hash(saddr, daddr, sport, dport, proto), probe, 0, LB_SNAT_SEED)
    return port_min + h % (port_max - port_min + 1)
