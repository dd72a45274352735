# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ctypes mirrors of the datapath's map keys and values (docs/ARCHITECTURE.md, bpf/include/maps.h).

Declared once here; ``tests/datapath/test_btf_layout.py`` checks every size and field offset against
the BTF of the compiled object.

Byte order: fields the C side marks ``__be32``/``__be16`` hold the *network-order* value, i.e.
the integer whose in-memory bytes are the address/port as on the wire. They are plain
``c_uint32``/``c_uint16`` here (same size and alignment as in C) and are converted only at the
boundary with :func:`ip_to_be32`, :func:`be32_to_ip`, :func:`port_to_be16`, :func:`be16_to_port`.
The rest of the core speaks dotted-quad strings and host-order ports.

Hot paths (reconcile of thousands of entries) use the precompiled :mod:`struct` codecs at the
bottom (``LB4_KEY`` ...) instead of ctypes objects; a unit test checks both encodings agree.
"""

from __future__ import annotations

import ctypes
import re
import socket
import struct
import sys

from .errors import InvalidConfig
from .maglev import DEFAULT_SIZE

IPPROTO_TCP = 6
IPPROTO_UDP = 17
PROTOCOLS = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP}
PROTO_NAMES = {v: k for k, v in PROTOCOLS.items()}

LB_MAGLEV_LUT_SIZE = DEFAULT_SIZE  # default compile-time macro of the datapath
MAX_SERVICES_ENTRIES = 65536       # lb4_services_v2 max_entries
MAX_BACKENDS_ENTRIES = 65536       # lb4_backends max_entries
MAX_REVNAT_ENTRIES = 65536
MAX_MAGLEV_ENTRIES = 65536
MAX_NEIGH_ENTRIES = 1024
VIP_FILTER_BITS = 12                # LB_VIP_FILTER_BITS: lb4_vip_filter has 2^12 buckets
VIP_FILTER_SIZE = 1 << VIP_FILTER_BITS
VIP_FILTER_MULT = 0x9E3779B1        # LB_VIP_FILTER_MULT
FRONT_HINT_BITS = 12                # LB_FRONT_HINT_BITS: lb4_front_hint has 2^12 buckets
FRONT_HINT_SIZE = 1 << FRONT_HINT_BITS
MAX_CT_ENTRIES = 131072             # LB_CT_MAP_MAX: at least the SNAT capacity
SNAT_SLOTS = 4                      # LB_SNAT_SLOTS: backend planes (backend_id % 4) of a SNAT port
# SNAT_PORT_MIN/MAX defaults: below Linux's (32768..60999) and Windows' (49152..65535) ephemeral ports
SNAT_PORT_MIN_DEFAULT, SNAT_PORT_MAX_DEFAULT = 1024, 32767
SNAT_PLANE_SIZE = 65536             # LB_SNAT_PLANE_SIZE: a plane has a slot for every port number
MAX_SNAT_ENTRIES = SNAT_PLANE_SIZE * SNAT_SLOTS
MAX_STATS_SERVICE_ENTRIES = 65536
MAX_STATS_BACKEND_ENTRIES = 65536

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10

# ct_entry.ct_flags (LB_CT_F_* in bpf/include/consts.h)
CT_F_ESTABLISHED = 0x01   # the client sent ACK without SYN
CT_F_CLIENT_FIN = 0x02
CT_F_BACKEND_FIN = 0x04   # seen on SNAT replies only
CT_F_BACKEND_TW = 0x08    # the backend's FIN came first: it holds TIME_WAIT on (LB_IP, nat_port)

_NATIVE = sys.byteorder


# --- byte-order boundary ---------------------------------------------------------------------

def vip_bucket(address_be32: int) -> int:
    """lb4_vip_filter's bucket of a VIP (bpf/include/service.h lb_vip_bucket): the top
    VIP_FILTER_BITS of a multiplicative hash of the __be32 as the host reads it."""
    return ((address_be32 * VIP_FILTER_MULT) & 0xFFFFFFFF) >> (32 - VIP_FILTER_BITS)


def front_bucket(address_be32: int, port_be16: int, proto: int) -> int:
    """lb4_front_hint's bucket of a frontend (bpf/include/service.h lb_front_bucket): the same
    multiplicative hash over the VIP, the port and the protocol as the host reads them."""
    x = address_be32 ^ (port_be16 << 16) ^ proto
    return ((x * VIP_FILTER_MULT) & 0xFFFFFFFF) >> (32 - FRONT_HINT_BITS)


def ip_to_be32(ip: str) -> int:
    """'20.1.1.10' -> the __be32 value as the host sees it (bytes in memory = wire order)."""
    return int.from_bytes(socket.inet_aton(ip), _NATIVE)


def be32_to_ip(value: int) -> str:
    return socket.inet_ntoa(value.to_bytes(4, _NATIVE))


def port_to_be16(port: int) -> int:
    return int.from_bytes(port.to_bytes(2, "big"), _NATIVE)


def be16_to_port(value: int) -> int:
    return int.from_bytes(value.to_bytes(2, _NATIVE), "big")


def snat_slot_key(port: int, backend_id: int) -> int:
    """The lb4_snat key of ``port``'s (host order) slot in ``backend_id``'s plane (nat.h, lb_snat_key)."""
    return backend_id % SNAT_SLOTS * SNAT_PLANE_SIZE + port


def snat_slot_port(key: int) -> int:
    """The port (host order) a lb4_snat key belongs to."""
    return key % SNAT_PLANE_SIZE


_MAC = re.compile(r"[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}")


def mac_to_bytes(mac, field_name: str = "mac") -> bytes:
    """The one MAC parser: 'aa:bb:cc:dd:ee:ff' (or with '-', any case) or 6 bytes -> 6 bytes.

    Anything else raises InvalidConfig (a ValueError) naming ``field_name``."""
    if isinstance(mac, (bytes, bytearray)) and len(mac) == 6:
        return bytes(mac)
    if isinstance(mac, str) and _MAC.fullmatch(mac.strip()):
        return bytes(int(x, 16) for x in re.split("[:-]", mac.strip()))
    raise InvalidConfig(f"{field_name}: {mac!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")


def bytes_to_mac(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data[:6])


# --- ctypes mirrors ----------------------------------------------------------------------------

class _Base(ctypes.Structure):
    def to_bytes(self) -> bytes:
        return bytes(self)

    @classmethod
    def from_bytes(cls, data: bytes):
        return cls.from_buffer_copy(data[: ctypes.sizeof(cls)])

    def as_dict(self) -> dict:
        return {name: (list(getattr(self, name)) if isinstance(getattr(self, name), ctypes.Array)
                       else getattr(self, name)) for name, *_rest in self._fields_}


class Lb4Key(_Base):
    """lb4_services_v2 key."""
    _fields_ = [
        ("address", ctypes.c_uint32),       # __be32
        ("dport", ctypes.c_uint16),         # __be16
        ("backend_slot", ctypes.c_uint16),
        ("proto", ctypes.c_uint8),
        ("scope", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 2),
    ]

    @classmethod
    def make(cls, vip: str, port: int, slot: int, proto: int) -> "Lb4Key":
        return cls(address=ip_to_be32(vip), dport=port_to_be16(port), backend_slot=slot, proto=proto)


class Lb4Service(_Base):
    """lb4_services_v2 value. Slot 0 (master): backend_id 0, count N, rev_nat_index = id."""
    _fields_ = [
        ("backend_id", ctypes.c_uint32),
        ("count", ctypes.c_uint16),
        ("rev_nat_index", ctypes.c_uint16),
        ("flags", ctypes.c_uint8),
        ("flags2", ctypes.c_uint8),
        ("pad", ctypes.c_uint8 * 2),
    ]


class Lb4Backend(_Base):
    """lb4_backends value (an ARRAY; key: __u32 backend_id; address 0 = no backend). ``mac`` is
    the next hop's, copied from nodeport_neigh4 by the control plane (all zero: not known)."""
    _fields_ = [
        ("address", ctypes.c_uint32),       # __be32
        ("port", ctypes.c_uint16),          # __be16
        ("proto", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("mac", ctypes.c_uint8 * 6),
        ("pad", ctypes.c_uint16),
    ]

    @classmethod
    def make(cls, ip: str, port: int, proto: int, flags: int = 0, mac: str | None = None) -> "Lb4Backend":
        b = cls(address=ip_to_be32(ip), port=port_to_be16(port), proto=proto, flags=flags)
        if mac is not None:
            b.mac[:] = list(mac_to_bytes(mac))
        return b


class Lb4ReverseNat(_Base):
    """lb4_reverse_nat value (key: __u16 rev_nat_index)."""
    _fields_ = [
        ("address", ctypes.c_uint32),       # __be32
        ("port", ctypes.c_uint16),          # __be16
        ("pad", ctypes.c_uint16),
    ]


class Lb4ServiceFront(_Base):
    """lb4_service_by_id value (an ARRAY; key: __u32 service id): the frontend on which the
    service is live (master present, count > 0); all zero (proto 0) = not live."""
    _fields_ = [
        ("address", ctypes.c_uint32),       # __be32
        ("dport", ctypes.c_uint16),         # __be16
        ("proto", ctypes.c_uint8),
        ("pad", ctypes.c_uint8),
    ]


class NeighMac(_Base):
    """nodeport_neigh4 value (key: __be32 ip)."""
    _fields_ = [("addr", ctypes.c_uint8 * 6), ("pad", ctypes.c_uint16)]


class Ipv4CtTuple(_Base):
    """ct4_global key: the client's flow as it arrives (saddr = client, daddr = VIP)."""
    _fields_ = [
        ("daddr", ctypes.c_uint32),         # __be32
        ("saddr", ctypes.c_uint32),         # __be32
        ("dport", ctypes.c_uint16),         # __be16
        ("sport", ctypes.c_uint16),         # __be16
        ("nexthdr", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("pad", ctypes.c_uint16),
    ]


class CtEntry(_Base):
    """ct4_global value."""
    _fields_ = [
        ("rx_packets", ctypes.c_uint64),
        ("rx_bytes", ctypes.c_uint64),
        ("tx_packets", ctypes.c_uint64),
        ("tx_bytes", ctypes.c_uint64),
        ("last_seen_ns", ctypes.c_uint64),
        ("backend_id", ctypes.c_uint32),
        ("rev_nat_index", ctypes.c_uint16),
        ("nat_port", ctypes.c_uint16),      # __be16
        ("tcp_flags_seen", ctypes.c_uint8),
        ("ct_flags", ctypes.c_uint8),       # CT_F_* below
        ("pad", ctypes.c_uint8 * 2),
        ("last_tick", ctypes.c_uint32),     # datapath-private: when last_seen_ns was last read
    ]


class SnatEntry(_Base):
    """lb4_snat value: a SNAT source port's slot for one backend plane (an ARRAY; key u32 =
    backend_id % SNAT_SLOTS * SNAT_PLANE_SIZE + port, port in host order; client_addr 0 = free): the
    client flow holding LB_IP:port towards backend ``backend_id``."""
    _fields_ = [
        ("client_addr", ctypes.c_uint32),   # __be32
        ("vip", ctypes.c_uint32),           # __be32
        ("client_port", ctypes.c_uint16),   # __be16
        ("vport", ctypes.c_uint16),         # __be16
        ("backend_id", ctypes.c_uint16),
        ("proto", ctypes.c_uint8),
        ("pad", ctypes.c_uint8),
    ]


class LbStats(_Base):
    """lb4_stats_service / lb4_stats_backend value (per CPU)."""
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


# C struct name -> mirror (what the BTF layout test compares).
C_STRUCTS = {
    "lb4_key": Lb4Key,
    "lb4_service": Lb4Service,
    "lb4_backend": Lb4Backend,
    "lb4_reverse_nat": Lb4ReverseNat,
    "lb4_service_front": Lb4ServiceFront,
    "neigh_mac": NeighMac,
    "ipv4_ct_tuple": Ipv4CtTuple,
    "ct_entry": CtEntry,
    "snat_entry": SnatEntry,
    "lb_stats": LbStats,
}


# enum lb_reason (bpf/include/consts.h): index of lb4_stats_reason -> name. Additive to the
# ARCHITECTURE schema (the datapath's verdict/drop counters).
LB_REASONS = (
    "PASS_NOT_IPV4", "PASS_BAD_IPV4", "PASS_NOT_SERVICE", "TX_SNAT_FWD", "TX_SNAT_REPLY", "TX_DSR",
    "DROP_MALFORMED", "DROP_IP_OPTIONS", "DROP_FRAGMENT", "DROP_TTL", "DROP_NO_BACKEND",
    "DROP_NO_NEIGH", "DROP_SNAT_PORTS", "DROP_MAP_UPDATE", "PASS_MTU", "DROP_ENCAP",
)


def maglev_value_size(maglev_size: int) -> int:
    return 4 * maglev_size


# The Maglev inner map's template (maps.h): a map of the object's own that no program uses and
# nothing pins, there for eBPF-for-Windows, whose loader and verifier find an inner map only among
# the object's maps. Not in map_specs: the control plane never opens it.
MAGLEV_TEMPLATE = "lb4_maglev_tmpl"


def maglev_inner_spec(maglev_size: int = LB_MAGLEV_LUT_SIZE) -> tuple:
    """(type, key size, value size, max_entries) of every inner Maglev map and of the template."""
    from . import libbpf as _b
    return (_b.BPF_MAP_TYPE_ARRAY, 4, maglev_value_size(maglev_size), 1)


# Map name -> (type, key size, value size, max_entries). value size of lb4_maglev is the inner
# map id (u32); its inner ARRAY has key u32, value u32[LB_MAGLEV_LUT_SIZE], max_entries 1.
# Sizes come from the mirrors above so the two cannot drift.
def map_specs(maglev_size: int = LB_MAGLEV_LUT_SIZE) -> dict:
    from . import libbpf as _b
    s = ctypes.sizeof
    return {
        "lb4_services_v2": (_b.BPF_MAP_TYPE_HASH, s(Lb4Key), s(Lb4Service), MAX_SERVICES_ENTRIES),
        "lb4_backends": (_b.BPF_MAP_TYPE_ARRAY, 4, s(Lb4Backend), MAX_BACKENDS_ENTRIES),
        "lb4_reverse_nat": (_b.BPF_MAP_TYPE_HASH, 2, s(Lb4ReverseNat), MAX_REVNAT_ENTRIES),
        "lb4_maglev": (_b.BPF_MAP_TYPE_HASH_OF_MAPS, 2, 4, MAX_MAGLEV_ENTRIES),
        "lb4_service_by_id": (_b.BPF_MAP_TYPE_ARRAY, 4, s(Lb4ServiceFront), MAX_REVNAT_ENTRIES),
        "lb4_vip_filter": (_b.BPF_MAP_TYPE_ARRAY, 4, 4, VIP_FILTER_SIZE),
        "lb4_front_hint": (_b.BPF_MAP_TYPE_ARRAY, 4, 4, FRONT_HINT_SIZE),
        "nodeport_neigh4": (_b.BPF_MAP_TYPE_LRU_HASH, 4, s(NeighMac), MAX_NEIGH_ENTRIES),
        "ct4_global": (_b.BPF_MAP_TYPE_LRU_HASH, s(Ipv4CtTuple), s(CtEntry), MAX_CT_ENTRIES),
        "lb4_snat": (_b.BPF_MAP_TYPE_ARRAY, 4, s(SnatEntry), MAX_SNAT_ENTRIES),
        "lb4_snat_cursor": (_b.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 4, SNAT_SLOTS),
        "lb4_stats_service": (_b.BPF_MAP_TYPE_PERCPU_ARRAY, 4, s(LbStats), MAX_STATS_SERVICE_ENTRIES),
        "lb4_stats_backend": (_b.BPF_MAP_TYPE_PERCPU_ARRAY, 4, s(LbStats), MAX_STATS_BACKEND_ENTRIES),
        "lb4_stats_reason": (_b.BPF_MAP_TYPE_PERCPU_ARRAY, 4, s(LbStats), len(LB_REASONS)),
    }


# --- fast codecs (struct), byte-identical to the ctypes mirrors ------------------------------
# '=' : native byte order, standard sizes, no implicit padding (explicit 'x' pads instead).
# be fields are packed as the host integer of the network-order value (see helpers above).

LB4_KEY = struct.Struct("=IHHBB2x")          # address, dport, backend_slot, proto, scope
LB4_SERVICE = struct.Struct("=IHHBB2x")      # backend_id, count, rev_nat_index, flags, flags2
LB4_BACKEND = struct.Struct("=IHBB6s2x")     # address, port, proto, flags, mac
LB4_REVERSE_NAT = struct.Struct("=IH2x")     # address, port
LB4_SERVICE_FRONT = struct.Struct("=IHBx")   # address, dport, proto
NEIGH_MAC = struct.Struct("=6s2x")           # addr
IPV4_CT_TUPLE = struct.Struct("=IIHHBB2x")   # daddr, saddr, dport, sport, nexthdr, flags
# rx_pk, rx_b, tx_pk, tx_b, last_seen, backend_id, rev_nat, nat_port, tcp_flags, ct_flags
# (then pad[2] and the datapath-private last_tick)
CT_ENTRY = struct.Struct("=QQQQQIHHBB6x")
SNAT_ENTRY = struct.Struct("=IIHHHBx")      # client_addr, vip, client_port, vport, backend_id, proto
LB_STATS = struct.Struct("=QQ")
U32 = struct.Struct("=I")
U16 = struct.Struct("=H")

CODECS = {
    Lb4Key: LB4_KEY, Lb4Service: LB4_SERVICE, Lb4Backend: LB4_BACKEND,
    Lb4ReverseNat: LB4_REVERSE_NAT, Lb4ServiceFront: LB4_SERVICE_FRONT, NeighMac: NEIGH_MAC, Ipv4CtTuple: IPV4_CT_TUPLE,
    CtEntry: CT_ENTRY, SnatEntry: SNAT_ENTRY, LbStats: LB_STATS,
}
