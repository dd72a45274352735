# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection-tracking decoding: the seed's ``service dumpstate --id N``.

Each ct4_global entry of the service becomes one row with the seed's columns:

    Source IP | Dest. IP | Source Port | Dest Port | Backend IP | State | Rx Bytes | Tx Bytes

State: CLOSING if a FIN or RST was seen on the flow; else IDLE if the last packet is older than
``idle_after_s`` (compared on CLOCK_MONOTONIC, the clock of ``bpf_ktime_get_ns``); else ACTIVE.
Rx = client -> service, Tx = service -> client (counted only in SNAT mode, where replies cross
the LB; 0 in DSR).

An entry belongs to the service whose id is its ``rev_nat_index``.
"""

from __future__ import annotations

import sys
import time

from .lifetimes import CtTimeouts, lifetime_ns, port_guard_ns
from .model import parse_service_id
from .maglev import describe_identities
from .reconcile import (BACKENDS, CT, SNAT, STATS_BACKEND, STATS_REASON, STATS_SERVICE, LBMaps, maglev_identities,
                        read_state)
from .structs import (
    CT_ENTRY, IPV4_CT_TUPLE, CtEntry, LB4_BACKEND, LB4_SERVICE, LB_REASONS, LB_STATS, PROTO_NAMES, SNAT_ENTRY,
    Lb4Backend, SnatEntry,
    TCP_FIN, TCP_RST, U32, be16_to_port, be32_to_ip, port_to_be16, snat_slot_key, snat_slot_port,
)

DEFAULT_IDLE_AFTER_S = 60.0
_ORDER = sys.byteorder

# (header shown by the seed, key in the row dicts)
COLUMNS = (
    ("Source IP", "source_ip"),
    ("Dest. IP", "dest_ip"),
    ("Source Port", "source_port"),
    ("Dest Port", "dest_port"),
    ("Backend IP", "backend_ip"),
    ("State", "state"),
    ("Rx Bytes", "rx_bytes"),
    ("Tx Bytes", "tx_bytes"),
)

ACTIVE, IDLE, CLOSING = "ACTIVE", "IDLE", "CLOSING"


def monotonic_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def flow_state(tcp_flags_seen: int, last_seen_ns: int, now_ns: int, idle_after_s: float) -> str:
    if tcp_flags_seen & (TCP_FIN | TCP_RST):
        return CLOSING
    if now_ns - last_seen_ns > idle_after_s * 1e9:
        return IDLE
    return ACTIVE


def _backends(maps: LBMaps) -> dict:
    out = {}
    # an ARRAY: address 0 (the value's first field) is no backend
    for k, v in maps[BACKENDS].items_list(nonzero_prefix=Lb4Backend.address.size):
        addr, port = LB4_BACKEND.unpack(v)[:2]
        out[U32.unpack(k)[0]] = (be32_to_ip(addr), be16_to_port(port))
    return out


def dump_service(maps: LBMaps, service_id: int, now_ns: int | None = None,
                 idle_after_s: float = DEFAULT_IDLE_AFTER_S) -> list:
    """Rows (dicts; keys as in COLUMNS plus protocol, backend_port, backend_id, packets,
    nat_port, idle_s) of the service's CT entries, sorted by source ip/port."""
    service_id = parse_service_id(service_id, "id")
    now = monotonic_ns() if now_ns is None else now_ns
    backends = _backends(maps)
    mine = []
    unpack_v = CT_ENTRY.unpack
    for k, v in maps[CT].items_list():
        # rev_nat_index at byte 44 of ct_entry: filter before decoding everything
        if int.from_bytes(v[44:46], _ORDER) == service_id:
            mine.append((k, v))
    # wire-order bytes sort numerically: client address, then client port
    mine.sort(key=lambda kv: kv[0][4:8] + kv[0][10:12])
    ips: dict = {}

    def ip(raw: int) -> str:
        s = ips.get(raw)
        if s is None:
            s = ips[raw] = be32_to_ip(raw)
        return s

    unpack_k = IPV4_CT_TUPLE.unpack
    rows = []
    for k, v in mine:
        (rx_p, rx_b, tx_p, tx_b, last, bid, rev, nat_port, flags, _ct_flags) = unpack_v(v)
        daddr, saddr, dport, sport, proto, _cflags = unpack_k(k)
        bip, bport = backends.get(bid, (None, None))
        rows.append({
            "source_ip": ip(saddr),
            "dest_ip": ip(daddr),
            "source_port": be16_to_port(sport),
            "dest_port": be16_to_port(dport),
            "backend_ip": bip if bip is not None else f"? (id {bid})",
            "state": flow_state(flags, last, now, idle_after_s),
            "rx_bytes": rx_b,
            "tx_bytes": tx_b,
            "protocol": PROTO_NAMES.get(proto, str(proto)),
            "backend_port": bport,
            "backend_id": bid,
            "rx_packets": rx_p,
            "tx_packets": tx_p,
            "nat_port": be16_to_port(nat_port),
            "idle_s": round(max(now - last, 0) / 1e9, 3),
        })
    return rows


def _sum_percpu(mp, value: bytes) -> tuple:
    packets = nbytes = 0
    for part in mp.percpu_values(value):
        p, b = LB_STATS.unpack(part)
        packets += p
        nbytes += b
    return packets, nbytes


def service_stats(maps: LBMaps, service_id: int) -> dict:
    """Packets/bytes of the service, summed over CPUs (lb4_stats_service[id])."""
    if STATS_SERVICE not in maps:
        return {"packets": 0, "bytes": 0}
    mp = maps[STATS_SERVICE]
    value = mp.lookup(U32.pack(service_id))
    p, b = _sum_percpu(mp, value) if value else (0, 0)
    return {"packets": p, "bytes": b}


def backend_stats(maps: LBMaps, backend_ids=None) -> dict:
    """backend id -> {packets, bytes} summed over CPUs (lb4_stats_backend)."""
    if STATS_BACKEND not in maps:
        return {}
    mp = maps[STATS_BACKEND]
    out = {}
    if backend_ids is None:
        for k, v in mp.items_list():
            p, b = _sum_percpu(mp, v)
            if p:  # an array: every id has a slot; report the ones that counted
                out[U32.unpack(k)[0]] = {"packets": p, "bytes": b}
        return out
    for bid in backend_ids:
        v = mp.lookup(U32.pack(bid))
        p, b = _sum_percpu(mp, v) if v else (0, 0)
        out[bid] = {"packets": p, "bytes": b}
    return out


def reason_stats(maps: LBMaps, nonzero: bool = True) -> dict:
    """Verdict/drop reason -> {packets, bytes} over all CPUs (lb4_stats_reason; {} if absent)."""
    if STATS_REASON not in maps:
        return {}
    mp = maps[STATS_REASON]
    out = {}
    for k, v in mp.items_list():
        idx = U32.unpack(k)[0]
        p, b = _sum_percpu(mp, v)
        if p or not nonzero:
            name = LB_REASONS[idx] if idx < len(LB_REASONS) else f"REASON_{idx}"
            out[name] = {"packets": p, "bytes": b}
    return out


# Reasons whose counters signal trouble: every drop, and DSR packets passed for their size.
TROUBLE_REASONS = tuple(r for r in LB_REASONS if r.startswith("DROP_") or r == "PASS_MTU")


def trouble_counters(maps: LBMaps) -> dict:
    """The non-zero TROUBLE_REASONS counters, {name: {packets, bytes}}, in LB_REASONS order."""
    counts = reason_stats(maps)
    return {r: counts[r] for r in TROUBLE_REASONS if r in counts}


def trouble_lines(trouble: dict) -> list:
    """One ``WARN`` line per counter of trouble_counters()."""
    return [f"WARN {name}: {c['packets']} packets, {c['bytes']} bytes" for name, c in trouble.items()]


def dump_state(maps: LBMaps, service_id: int, now_ns: int | None = None,
               idle_after_s: float = DEFAULT_IDLE_AFTER_S) -> dict:
    """Everything ``dumpstate`` shows: the service, its connections and its counters."""
    service_id = parse_service_id(service_id, "id")
    st = read_state(maps, ids={service_id})
    fronts = st.ids.get(service_id, [])
    service = None
    bids = []
    if fronts:
        f = fronts[0]
        slots = st.fronts[f]
        bids = [LB4_SERVICE.unpack(slots[s][1])[0] for s in sorted(slots) if s]
        service = {"id": service_id, "vip": be32_to_ip(f[0]), "port": be16_to_port(f[1]),
                   "protocol": PROTO_NAMES.get(f[2], str(f[2]))}
    bstats = backend_stats(maps, bids)
    backends = []
    for bid in bids:
        raw = st.backends.get(bid)
        ip, port = (None, None)
        if raw:
            a, p = LB4_BACKEND.unpack(raw)[:2]
            ip, port = be32_to_ip(a), be16_to_port(p)
        backends.append({"backend_id": bid, "ip": ip, "port": port, **bstats.get(bid, {})})
    return {
        "service": service,
        "connections": dump_service(maps, service_id, now_ns, idle_after_s),
        "stats": service_stats(maps, service_id),
        "backends": backends,
        "maglev": describe_identities(maglev_identities(st, service_id)),
    }


def maglev_line(desc: dict) -> str:
    """One line for a :func:`dump_state` ``maglev`` entry: size, digest, slots per backend."""
    shares = " ".join(f"{k}={v}" for k, v in sorted(desc["slots"].items()))
    return f"maglev: {desc['size']} slots, digest {desc['digest']}: {shares or 'no table'}"


def render_table(rows) -> str:
    """The seed's dumpstate table as aligned text."""
    headers = [c[0] for c in COLUMNS]
    keys = [c[1] for c in COLUMNS]
    cells = [[str(r.get(key, "")) for key in keys] for r in rows]
    widths = [max(len(h), max((len(c[i]) for c in cells), default=0)) for i, h in enumerate(headers)]
    fmt = " | ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*headers).rstrip(), "-+-".join("-" * w for w in widths)]
    out += [fmt.format(*c).rstrip() for c in cells]
    return "\n".join(out) + "\n"


# --- garbage collection (the control plane's half of the lifetimes; Cilium's agent does the
# same): the datapath already treats a quiet flow as over and takes over stale SNAT ports when
# it meets them, so the GC is what keeps the maps' size to live flows + those in their guard time.

def _ct_gc_deadline(t: CtTimeouts, key: bytes, value: bytes) -> tuple[int, int]:
    """(last_seen_ns, how long the entry is kept while quiet). A SNAT flow is kept while its port
    is guarded against other clients (the datapath reads the owner's TIME_WAIT mark from it)."""
    proto = key[12]
    (_rx_p, _rx_b, _tx_p, _tx_b, last, _bid, _rev, nat_port, flags, ct_flags) = CT_ENTRY.unpack(value)
    if nat_port:
        return last, port_guard_ns(t, proto, flags, ct_flags, same_client=False)
    return last, lifetime_ns(t, proto, flags, ct_flags)


def _owner_key(slot: bytes) -> bytes:
    """The CT key of the flow holding a lb4_snat slot."""
    client, vip, cport, vport, _backend_id, proto = SNAT_ENTRY.unpack(slot)
    return IPV4_CT_TUPLE.pack(vip, client, vport, cport, proto, 0)


def snat_slots(maps: LBMaps) -> list:
    """The held slots of lb4_snat: (key, value) with a client (an ARRAY: free slots are zero)."""
    return maps[SNAT].items_list(nonzero_prefix=SnatEntry.client_addr.size)   # its first field


def gc(maps: LBMaps, timeouts: CtTimeouts | dict | None = None, now_ns: int | None = None,
       suspects: dict | None = None, dry_run: bool = False) -> dict:
    """Delete the CT entries of flows that are over and free the SNAT slots of those flows.

    An over flow's slot (the one its CT entry names) is freed right after its CT entry goes, so
    no reader sees the slot without its flow for longer than a few syscalls. A slot whose flow has
    no CT entry (LRU-evicted) or has moved to another port is freed only when it was already so
    in the previous pass (``suspects``, as returned): the datapath writes a new flow's slot just
    before its CT entry, and a single look could fall between the two. An entry judged over is
    re-read just before its delete, so a flow that spoke meanwhile is kept, and a slot is re-read
    too (the datapath may have handed it to a new flow). ``dry_run`` counts what would go and
    changes nothing. Returns counts and the ``suspects`` for the next pass."""
    t = CtTimeouts.parse(timeouts)
    now = monotonic_ns() if now_ns is None else now_ns
    ct_map, snat_map = maps[CT], maps[SNAT]
    free = bytes(SNAT_ENTRY.size)

    def release(k, v):
        # re-read: the datapath may have given the slot to a new flow meanwhile
        if not dry_run and snat_map.lookup(k) == v:
            snat_map.update(k, free)

    over = set()
    released = set()
    for k, v in ct_map.items_list():
        last, keep = _ct_gc_deadline(t, k, v)
        if now - last > keep and ct_map.lookup(k) == v:
            if not dry_run:
                ct_map.delete(k)
            over.add(k)
            entry = CtEntry.from_bytes(v)
            if entry.nat_port:
                slot_key = U32.pack(snat_slot_key(be16_to_port(entry.nat_port), entry.backend_id))
                slot = snat_map.lookup(slot_key)
                if slot is not None and _owner_key(slot) == k:
                    if not dry_run:    # just read and found its own, as release() checks
                        snat_map.update(slot_key, free)
                    released.add(slot_key)
    prev = suspects or {}
    suspects_out = {}
    snat_deleted = len(released)
    snat_left = 0

    for k, v in snat_slots(maps):
        if k in released:
            continue
        owner = _owner_key(v)
        if owner in over:
            release(k, v)
            snat_deleted += 1
            continue
        raw = ct_map.lookup(owner)
        nat_port = port_to_be16(snat_slot_port(U32.unpack(k)[0]))
        if raw is not None and CtEntry.from_bytes(raw).nat_port == nat_port:
            snat_left += 1
            continue
        if prev.get(k) == v:
            release(k, v)
            snat_deleted += 1
        else:
            suspects_out[k] = v
            snat_left += 1
    return {"ct_deleted": len(over), "snat_deleted": snat_deleted, "snat_entries": snat_left,
            "suspects": suspects_out, "changed": bool(over or snat_deleted)}
