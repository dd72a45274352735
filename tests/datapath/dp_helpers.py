"""Helpers for the datapath tests and the benchmark: an LB program loaded with its own pin root,
programmed directly through its maps, and run with BPF_PROG_TEST_RUN; packet checks."""

from __future__ import annotations

import ctypes
import ipaddress
import os
import shutil
import struct

from l4lb import libbpf, maglev, reconcile, structs as S
from l4lb.libbpf import XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX  # noqa: F401 (re-exported)

PIN_PREFIX = "/sys/fs/bpf/l4lbt3-"

LB_IP = "20.1.1.1"
LB_MAC = "02:00:14:01:01:01"
VIP = "40.1.1.1"
CLIENT = "20.1.1.100"
CLIENT_MAC = "02:00:14:01:01:64"
BACKENDS = {  # backend_id: (ip, port)
    1: ("20.1.1.10", 80),
    2: ("20.1.1.20", 80),
    3: ("20.1.1.30", 80),
    4: ("20.1.1.40", 80),
}
BACKEND_MACS = {ip: f"02:00:14:01:01:{int(ip.split('.')[-1]):02x}" for ip, _ in BACKENDS.values()}
TCP, UDP = 6, 17


# enum lb_reason (bpf/include/consts.h)
REASONS = ["PASS_NOT_IPV4", "PASS_BAD_IPV4", "PASS_NOT_SERVICE", "TX_SNAT_FWD", "TX_SNAT_REPLY",
           "TX_DSR", "DROP_MALFORMED", "DROP_IP_OPTIONS", "DROP_FRAGMENT", "DROP_TTL",
           "DROP_NO_BACKEND", "DROP_NO_NEIGH", "DROP_SNAT_PORTS", "DROP_MAP_UPDATE", "PASS_MTU",
           "DROP_ENCAP"]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_pins() -> list[str]:
    """Remove /sys/fs/bpf/l4lbt3-<pid>* left by killed runs (their pid is gone)."""
    removed = []
    base = os.path.dirname(PIN_PREFIX)
    for name in os.listdir(base):
        if not name.startswith(os.path.basename(PIN_PREFIX)):
            continue
        rest = name[len(os.path.basename(PIN_PREFIX)):]
        digits = rest.split("-")[-1] if rest.startswith("bench-") else rest.split("-")[0]
        if digits.isdigit() and not pid_alive(int(digits)):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
            removed.append(name)
    return removed


def be32(ip: str) -> int:
    return S.ip_to_be32(ip)


def be16(port: int) -> int:
    return S.port_to_be16(port)


class LbEnv:
    """One loaded lb_xdp.o with its maps pinned under ``pin_root``."""

    def __init__(self, obj_path: str, pin_root: str, mode: str, maglev_size: int = 2039,
                 snat_port_min: int = S.SNAT_PORT_MIN_DEFAULT, snat_port_max: int = S.SNAT_PORT_MAX_DEFAULT):
        os.makedirs(pin_root, exist_ok=True)
        self.pin_root = pin_root
        self.mode = mode
        self.M = maglev_size
        self.snat_port_min = snat_port_min
        self.snat_port_max = snat_port_max
        self.obj = libbpf.BpfObject(obj_path, pin_root)
        self.obj.load()
        self.prog_fd = os.dup(self.obj.program().fd)
        self.maps = {n: self.obj.map(n) for n in reconcile.MAP_NAMES}
        self.runner = libbpf.TestRunner(self.prog_fd, 4096)
        self.backends: dict = {}   # backend id -> (ip, port, proto) as programmed

    def close(self):
        for m in self.maps.values():
            m.close()
        if self.prog_fd >= 0:
            os.close(self.prog_fd)
            self.prog_fd = -1
        self.obj.close()

    # --- programming -----------------------------------------------------------------------
    # Neighbours and backends as the core keeps them: a backend's entry carries its next hop's
    # MAC (from nodeport_neigh4), so a neighbour change rewrites the backends at that address.
    def set_neigh(self, ip: str, mac: str):
        self.maps["nodeport_neigh4"].update(S.U32.pack(be32(ip)), S.NEIGH_MAC.pack(S.mac_to_bytes(mac)))
        self._refresh_backends(ip)

    def del_neigh(self, ip: str):
        self.maps["nodeport_neigh4"].delete(S.U32.pack(be32(ip)))
        self._refresh_backends(ip)

    def _neigh_mac(self, ip: str) -> bytes:
        raw = self.maps["nodeport_neigh4"].lookup(S.U32.pack(be32(ip)))
        return raw[:6] if raw else bytes(6)

    def _refresh_backends(self, ip: str):
        for bid, (bip, port, proto) in list(self.backends.items()):
            if bip == ip:
                self.set_backend(bid, bip, port, proto)

    def set_backend(self, bid: int, ip: str, port: int, proto: int = TCP):
        self.backends[bid] = (ip, port, proto)
        self.maps["lb4_backends"].update(S.U32.pack(bid), S.LB4_BACKEND.pack(be32(ip), be16(port), proto, 0,
                                                                               self._neigh_mac(ip)))

    def del_backend(self, bid: int):
        """lb4_backends is an ARRAY: address 0 is no backend."""
        self.backends.pop(bid, None)
        self.maps["lb4_backends"].update(S.U32.pack(bid), bytes(S.LB4_BACKEND.size))

    def set_maglev(self, svc_id: int, lut: bytes):
        assert len(lut) == 4 * self.M
        fd = libbpf.map_create(libbpf.BPF_MAP_TYPE_ARRAY, "lb4_maglev_in", 4, 4 * self.M, 1)
        try:
            inner = libbpf.Map(fd, "lb4_maglev_in")
            inner.update(S.U32.pack(0), lut)
            self.maps["lb4_maglev"].update_fd(S.U16.pack(svc_id), fd)
        finally:
            os.close(fd)

    def maglev_table(self, backends: dict, weights: dict | None = None) -> list[int]:
        """backend ids per slot, from the core's Maglev builder."""
        items = [(f"{ip}:{port}", (weights or {}).get(bid, 1), bid) for bid, (ip, port) in backends.items()]
        raw = maglev.build_bytes(items, self.M)
        return list(struct.unpack(f"={self.M}I", raw))

    def add_service(self, svc_id: int, vip: str, port: int, proto: int, backends: dict,
                    weights: dict | None = None, neigh: bool = True) -> list[int]:
        """Program a service as the seed's agent does (neighbours, backends, Maglev, slots,
        reverse NAT, master last). Returns the Maglev table (backend id per slot)."""
        if neigh:
            for ip, _ in backends.values():
                self.set_neigh(ip, BACKEND_MACS.get(ip, "02:00:00:00:00:99"))
            self.set_neigh(CLIENT, CLIENT_MAC)
        for bid, (ip, bport) in backends.items():
            self.set_backend(bid, ip, bport, proto)
        table = self.maglev_table(backends, weights) if backends else [0] * self.M
        self.set_maglev(svc_id, struct.pack(f"={self.M}I", *table))
        svc = self.maps["lb4_services_v2"]
        for slot, bid in enumerate(backends, start=1):
            svc.update(S.LB4_KEY.pack(be32(vip), be16(port), slot, proto, 0),
                       S.LB4_SERVICE.pack(bid, 0, svc_id, 0, 0))
        self.maps["lb4_reverse_nat"].update(S.U16.pack(svc_id), S.LB4_REVERSE_NAT.pack(be32(vip), be16(port)))
        svc.update(S.LB4_KEY.pack(be32(vip), be16(port), 0, proto, 0),
                   S.LB4_SERVICE.pack(0, len(backends), svc_id, 0, 0))
        self.sync_fast_path()
        return table

    def sync_fast_path(self):
        """lb4_service_by_id, lb4_vip_filter and lb4_front_hint from the masters, by the core (as
        every reconcile keeps them): without them the datapath takes every packet for a non-service
        one."""
        maps = reconcile.LBMaps(self.maps, maglev_size=self.M)
        reconcile.apply(maps, reconcile.plan_fast_path(maps))

    # --- running -----------------------------------------------------------------------------
    def run(self, pkt) -> tuple[int, bytes]:
        data = bytes(pkt)
        ret, _ = self.runner.run(data)
        return ret, self.runner.output()

    # --- state -------------------------------------------------------------------------------
    def ct(self, saddr, daddr, sport, dport, proto):
        key = S.IPV4_CT_TUPLE.pack(be32(daddr), be32(saddr), be16(dport), be16(sport), proto, 0)
        raw = self.maps["ct4_global"].lookup(key)
        return None if raw is None else S.CtEntry.from_bytes(raw)

    def snat(self, backend_ip, backend_port, nat_port, proto):
        """The lb4_snat slot of nat_port holding a flow to this backend (as programmed), or None."""
        for bid, (ip, port, _proto) in self.backends.items():
            if (ip, port) == (backend_ip, backend_port):
                se = S.SnatEntry.from_bytes(self.maps["lb4_snat"].lookup(
                    S.U32.pack(S.snat_slot_key(nat_port, bid))))
                if se.client_addr and se.backend_id == bid and se.proto == proto:
                    return se
        return None

    def set_snat_slot(self, nat_port: int, backend_id: int, client: str, cport: int, proto: int = TCP,
                      vip: str = VIP, vport: int = 80):
        """A flow of client:cport holding nat_port towards backend_id (in that backend's plane)."""
        self.maps["lb4_snat"].update(S.U32.pack(S.snat_slot_key(nat_port, backend_id)), S.SNAT_ENTRY.pack(
            be32(client), be32(vip), be16(cport), be16(vport), backend_id, proto))


    def percpu_sum(self, map_name: str, key: bytes) -> tuple[int, int]:
        m = self.maps[map_name]
        raw = m.lookup(key)
        if raw is None:
            return 0, 0
        pk = by = 0
        for v in m.percpu_values(raw):
            p, b = S.LB_STATS.unpack(v)
            pk += p
            by += b
        return pk, by

    def reason(self, name: str) -> int:
        return self.percpu_sum("lb4_stats_reason", S.U32.pack(REASONS.index(name)))[0]


# --- checksums (pure Python: fast enough for the fuzz) ------------------------------------------

def csum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def ip_header_ok(ip: bytes) -> bool:
    ihl = (ip[0] & 0x0F) * 4
    return len(ip) >= ihl >= 20 and csum16(ip[:ihl]) == 0xFFFF


def l4_ok(ip: bytes) -> bool | None:
    """Whether the TCP/UDP checksum over tot_len is right (None: not TCP/UDP, or UDP without a
    checksum)."""
    ihl = (ip[0] & 0x0F) * 4
    tot = struct.unpack("!H", ip[2:4])[0]
    proto = ip[9]
    seg = ip[ihl:tot]
    if proto not in (TCP, UDP):
        return None
    if proto == UDP and len(seg) >= 8 and seg[6:8] == b"\x00\x00":
        return None
    pseudo = ip[12:20] + struct.pack("!BBH", 0, proto, len(seg))
    return csum16(pseudo + seg) == 0xFFFF


def packet_checksums_ok(frame: bytes) -> bool:
    """IPv4 header checksum and L4 checksum of an Ethernet+IPv4 frame."""
    ip = frame[14:]
    if not ip_header_ok(ip):
        return False
    return l4_ok(ip) is not False


def ipv4_ptr(frame: bytes):
    return ipaddress.IPv4Address(frame[30:34])


def scapy_recomputed(pkt_bytes: bytes) -> bytes:
    """Re-parse with scapy, clear every IPv4/TCP/UDP/ICMP checksum (a zero UDP checksum means
    "none" and stays), rebuild: what the bytes would be with checksums computed from scratch."""
    from scapy.layers.l2 import Ether
    from scapy.layers.inet import IP, TCP as sTCP, UDP as sUDP, ICMP

    p = Ether(pkt_bytes)
    q = p
    while q is not None and q.name != "NoPayload":
        if isinstance(q, (IP, sTCP, ICMP)) or (isinstance(q, sUDP) and q.chksum != 0):
            q.chksum = None
        q = q.payload
    return bytes(p)
