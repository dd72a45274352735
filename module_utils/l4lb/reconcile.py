# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Service reconcile: desired services vs the maps' current content -> minimal ordered writes.

The maps are the truth: current state is read back from the pinned maps (services, slots,
reverse NAT, Maglev inner tables, backends, neighbours); there are no side files.

Plan = ordered writes. :func:`apply` executes them in this order, batching consecutive writes
to the same map (one ``BPF_MAP_UPDATE_BATCH``/``DELETE_BATCH`` per run):

  1. neighbours (nodeport_neigh4)            update
  2. backends (lb4_backends)                 update
  3. Maglev tables (lb4_maglev)              new inner map filled completely, then swapped in
                                             with one update of the outer map (atomic)
  4. backend slots 1..N (lb4_services_v2)    update
  5. reverse NAT (lb4_reverse_nat)           update
  6. VIP filter buckets that gain frontends  update (lb4_vip_filter)
  7. fast path of changed services off       update (lb4_service_by_id <- 0)
  8. master slots 0 (lb4_services_v2)        update            <- a service goes live here
  9. master slots of removed frontends       delete            <- a service stops here
 10. fast path of live services on           update (lb4_service_by_id <- frontend)
 11. frontend hints                          update (lb4_front_hint <- service id or 0)
 12. VIP filter buckets that lose frontends  update (lb4_vip_filter)
 13. surplus / removed slots                 delete
 14. reverse NAT of removed services         delete
 15. Maglev tables of removed services       delete
 16. backends no service references any more delete

So a half-applied plan never makes the datapath select a backend id that is not in
lb4_backends or read a slot that is not written: growing writes the new slots before the
master's count, shrinking lowers the master's count before deleting the surplus slots. The
fast-path maps (maps.h) only ever answer "maybe a VIP" for more addresses than have a master,
and "live" for a service only while its master says so; they are derived from the masters
after the plan, so any drift in them is a change the next plan repairs. A frontend hint is
taken only where lb4_service_by_id confirms it, so hints need no order.

Use (what lb_service, l4lbctl and the tests do):

    with LBMaps.open("/sys/fs/bpf/l4lb/lb/maps") as maps, maps.locked():
        svc = Service.parse(id=1, frontend="40.1.1.1:80", backends="20.1.1.10:80,20.1.1.20:80")
        plan = plan_service(maps, svc, neighbors={"20.1.1.10": "02:00:14:01:01:0a"})
        if plan.changed and not check_mode:
            apply(maps, plan)
        result = {"changed": plan.changed, "diff": plan.diff, "warnings": plan.warnings}

    plan_services(maps, [svc, ...], neighbors, prune=True)   # the whole set; others removed
    plan_service(maps, 1, state="absent")                    # remove service 1
    dump(maps)                                               # every service, as plain dicts

Entries written (ARCHITECTURE.md):

- master (slot 0): backend_id 0, count N (all backends, weight-0 ones included), rev_nat_index =
  service id; slots 1..N: backend_id, count 0, rev_nat_index = service id. Slots are in
  canonical backend order (address, port), so input order never causes writes.
- backend ids: stable per (ip, port, protocol): an identical backend keeps its id, a new one
  gets the lowest free id >= 1; a backend shared by services has one id; it is deleted only when
  no slot references it any more.
- weight 0 (drain): the backend keeps its slot and its lb4_backends entry (flows already in the
  CT table keep working) but gets no Maglev slots (no new flows). All backends at weight 0:
  the table is all 0 ("no backend"), so the datapath drops new flows of the service.
- Maglev inner maps are named ``mg`` + 13 hex digits: a fingerprint of the table's inputs and
  content (maglev.fingerprint_name), so a no-op plan need not rebuild tables (see plan_services).
"""

from __future__ import annotations

import errno as _errno
import os
import posixpath
import socket
from array import array
from dataclasses import dataclass, field

from . import libbpf, maglev, platform
from .errors import BpfError, InvalidConfig, L4LBError
from .model import Service, check_unique, parse_neighbors, parse_service_id
from .structs import (
    LB4_BACKEND, LB4_KEY, LB4_REVERSE_NAT, LB4_SERVICE, LB4_SERVICE_FRONT, NEIGH_MAC, PROTO_NAMES, PROTOCOLS,
    U16, U32, be16_to_port, be32_to_ip, bytes_to_mac, front_bucket, ip_to_be32, mac_to_bytes, port_to_be16,
    vip_bucket, Lb4Backend,
)

SERVICES, BACKENDS, REVNAT, MAGLEV, NEIGH = (
    "lb4_services_v2", "lb4_backends", "lb4_reverse_nat", "lb4_maglev", "nodeport_neigh4")
SERVICE_BY_ID, VIP_FILTER, FRONT_HINT = "lb4_service_by_id", "lb4_vip_filter", "lb4_front_hint"
CT, SNAT, STATS_SERVICE, STATS_BACKEND = "ct4_global", "lb4_snat", "lb4_stats_service", "lb4_stats_backend"
STATS_REASON, SNAT_CURSOR = "lb4_stats_reason", "lb4_snat_cursor"
MAP_NAMES = (SERVICES, BACKENDS, REVNAT, MAGLEV, NEIGH, SERVICE_BY_ID, VIP_FILTER, FRONT_HINT, CT, SNAT, SNAT_CURSOR,
             STATS_SERVICE, STATS_BACKEND, STATS_REASON)
RECONCILE_MAPS = (SERVICES, BACKENDS, REVNAT, MAGLEV, NEIGH, SERVICE_BY_ID, VIP_FILTER)

MAGLEV_INNER_NAME = "lb4_maglev_in"
MAX_BACKEND_ID = 65535   # lb4_backends is an ARRAY of 65536; SNAT slots keep the id in 16 bits

# Phases, in apply order.
(NEIGH_UPD, BACKEND_UPD, MAGLEV_SET, SLOT_UPD, REVNAT_UPD, FILTER_RAISE, LIVE_OFF, MASTER_UPD,
 MASTER_DEL, LIVE_ON, HINT_SET, FILTER_LOWER, SLOT_DEL, REVNAT_DEL, MAGLEV_DEL, BACKEND_DEL) = range(16)
PHASE_MAP = {NEIGH_UPD: NEIGH, BACKEND_UPD: BACKENDS, MAGLEV_SET: MAGLEV, SLOT_UPD: SERVICES,
             REVNAT_UPD: REVNAT, FILTER_RAISE: VIP_FILTER, LIVE_OFF: SERVICE_BY_ID, MASTER_UPD: SERVICES,
             MASTER_DEL: SERVICES, LIVE_ON: SERVICE_BY_ID, HINT_SET: FRONT_HINT, FILTER_LOWER: VIP_FILTER, SLOT_DEL: SERVICES,
             REVNAT_DEL: REVNAT, MAGLEV_DEL: MAGLEV, BACKEND_DEL: BACKENDS}
# lb4_backends is an ARRAY: a backend is deleted by writing NO_BACKEND (address 0) over it.
PHASE_OP = {MAGLEV_SET: "create-inner", MASTER_DEL: "delete", SLOT_DEL: "delete", REVNAT_DEL: "delete",
            MAGLEV_DEL: "delete"}
NO_BACKEND = bytes(LB4_BACKEND.size)
NOT_LIVE = bytes(LB4_SERVICE_FRONT.size)   # lb4_service_by_id: no fast path for this id
IDENTITY_SIZE = 8    # address, port, proto, flags: the part of a backend value that is not its MAC


# --- the maps ------------------------------------------------------------------------------

class LBMaps:
    """The pinned maps of one LB program (``<lab_bpffs_dir>/lb/maps/<name>``)."""

    def __init__(self, maps: dict, pin_dir: str | None = None, maglev_size: int | None = None):
        self.maps = maps
        self.pin_dir = pin_dir
        self._maglev_size = maglev_size
        self._size_known = maglev_size is not None   # given, or learnt from an inner map
        self._inner_flags = 0

    @classmethod
    def open(cls, pin_dir: str, maglev_size: int | None = None, names=MAP_NAMES,
             required=RECONCILE_MAPS) -> "LBMaps":
        """Open every pinned map present; raise L4LBError if a required one is missing."""
        opened = {}
        try:
            for name in names:
                path = posixpath.join(pin_dir, name)
                if not platform.current().pin_exists(path):
                    if name in required:
                        raise L4LBError(f"map {name} is not pinned at {path} (is the LB program loaded?)")
                    continue
                opened[name] = libbpf.Map.from_pin(path)
        except BaseException:
            for m in opened.values():
                m.close()
            raise
        return cls(opened, pin_dir, maglev_size)

    def __getitem__(self, name: str) -> libbpf.Map:
        try:
            return self.maps[name]
        except KeyError:
            raise L4LBError(f"map {name} is not open (not pinned under {self.pin_dir})") from None

    def __contains__(self, name: str) -> bool:
        return name in self.maps

    def close(self) -> None:
        for m in self.maps.values():
            m.close()
        self.maps = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def locked(self, blocking: bool = True):
        """Exclusive advisory lock of the pin directory (the platform's) for one plan+apply, so
        two writers (an Ansible run and l4lbctl) cannot allocate the same backend id."""
        return platform.current().lock(self.pin_dir, blocking)

    def inner_map_ids(self) -> dict:
        """rev_nat_index -> inner map id (what the outer map returns to user space)."""
        return {U16.unpack(k)[0]: U32.unpack(v)[0] for k, v in self[MAGLEV].items_list()}

    def read_inner(self, map_id: int) -> tuple[bytes, int, int, str]:
        """(table bytes, value_size, map_flags, map name) of the inner Maglev map with this id."""
        fd = libbpf.map_fd_by_id(map_id)
        info = libbpf.map_info(fd)
        with libbpf.Map(fd, MAGLEV_INNER_NAME) as inner:
            value = inner.lookup(U32.pack(0)) or b""
            return value, info.value_size, info.map_flags, info.name

    @property
    def maglev_size(self) -> int:
        """The table size: given at open, else learnt from an existing inner map, else the
        default (an empty lb4_maglev cannot tell: pass the size the program was compiled with)."""
        if not self._size_known:
            for map_id in self.inner_map_ids().values():
                try:
                    vsize, flags = self.read_inner(map_id)[1:3]
                except BpfError:
                    continue
                self._maglev_size, self._inner_flags = vsize // 4, flags
                self._size_known = True
                break
        return self._maglev_size or maglev.DEFAULT_SIZE


# --- current state -------------------------------------------------------------------------

@dataclass
class State:
    """Decoded map content. Keys/values kept as bytes for cheap comparison with desired ones."""
    fronts: dict = field(default_factory=dict)     # (addr_be, port_be, proto) -> {slot: (key, value)}
    ids: dict = field(default_factory=dict)        # service id -> [front, ...] (from masters)
    backends: dict = field(default_factory=dict)   # backend id -> value bytes (address != 0)
    backend_ids: dict = field(default_factory=dict)  # identity (value[:8], flags 0) -> id
    revnat: dict = field(default_factory=dict)     # service id -> value bytes
    maglev: dict = field(default_factory=dict)     # service id -> table bytes
    maglev_names: dict = field(default_factory=dict)  # service id -> inner map name (fingerprint)
    neighbors: dict = field(default_factory=dict)  # key bytes -> value bytes
    live: dict = field(default_factory=dict)       # service id -> lb4_service_by_id value (not zero)
    vip_filter: dict = field(default_factory=dict)  # bucket -> frontends (not zero)
    hints: dict = field(default_factory=dict)      # lb4_front_hint bucket -> service id (not zero)


def _identity_of(ip: str, port: int, proto: int) -> bytes:
    """A backend's identity: the first IDENTITY_SIZE bytes of its lb4_backends value with flags
    0 (address, port, proto); the rest is the next hop's MAC."""
    return socket.inet_aton(ip) + port.to_bytes(2, "big") + bytes((proto, 0))


def read_state(maps: LBMaps, ids=None) -> State:
    """Read the maps. ``ids``: only read Maglev tables of these service ids (None = all)."""
    st = State()
    unpack_key = LB4_KEY.unpack
    fronts = st.fronts
    for k, v in maps[SERVICES].items_list():
        addr, port, slot, proto, _scope = unpack_key(k)
        f = (addr, port, proto)
        d = fronts.get(f)
        if d is None:
            d = fronts[f] = {}
        d[slot] = (k, v)
    for f, slots in fronts.items():
        if 0 in slots:
            sid = LB4_SERVICE.unpack(slots[0][1])[2]
            st.ids.setdefault(sid, []).append(f)
    u32 = U32.unpack
    zero = b"\0"
    backends, backend_ids = st.backends, st.backend_ids
    # ARRAYs: every index has an entry, and all zero (for lb4_backends, address 0, the first
    # field) is none; items_list skips those in its batch buffers
    for k, v in maps[BACKENDS].items_list(nonzero_prefix=Lb4Backend.address.size):
        bid = u32(k)[0]
        backends[bid] = v
        ident = v[:7] + zero
        if ident not in backend_ids:
            backend_ids[ident] = bid
    u16 = U16.unpack
    for k, v in maps[REVNAT].items_list():
        st.revnat[u16(k)[0]] = v
    for sid, map_id in maps.inner_map_ids().items():
        if ids is not None and sid not in ids:
            continue
        try:
            inner = maps.read_inner(map_id)
            table, name = inner[0], inner[3]
            st.maglev[sid] = table
            st.maglev_names[sid] = name
        except BpfError as exc:
            if exc.errno != _errno.ENOENT:
                raise
    for k, v in maps[NEIGH].items_list():
        st.neighbors[k] = v
    if SERVICE_BY_ID in maps:   # maps pinned by an older program lack the fast path's two
        for k, v in maps[SERVICE_BY_ID].items_list(nonzero_prefix=len(NOT_LIVE)):
            st.live[u32(k)[0]] = v
        for k, v in maps[VIP_FILTER].items_list(nonzero_prefix=U32.size):
            st.vip_filter[u32(k)[0]] = u32(v)[0]
    if FRONT_HINT in maps:      # and maps pinned before the hints existed lack lb4_front_hint
        for k, v in maps[FRONT_HINT].items_list(nonzero_prefix=U32.size):
            st.hints[u32(k)[0]] = u32(v)[0]
    return st


# --- plans ---------------------------------------------------------------------------------

@dataclass
class Write:
    map: str
    op: str            # "update" | "delete" | "create-inner"
    key: bytes
    value: bytes | None
    desc: str
    phase: int = 0
    inner_name: str = ""   # create-inner: the new inner map's name (its Maglev fingerprint)
    sid: int | None = None  # the service this write is for (None: backends, neighbours, orphans)

    def to_dict(self) -> dict:
        return {"map": self.map, "op": self.op, "key": self.key.hex(),
                "value": None if self.value is None else self.value.hex(), "desc": self.desc}


class Plan:
    """Ordered writes plus a diff (plain dicts) and warnings."""

    def __init__(self, writes: list, diff_fn=None, warnings=None, current_ids=(), removed_ids=()):
        self.writes = writes
        self.warnings = list(warnings or [])
        self._diff_fn = diff_fn
        self._diff = None
        self._current_ids = set(current_ids)   # services the maps held before the plan
        self._removed_ids = set(removed_ids)   # services the plan removes

    @property
    def changed(self) -> bool:
        return bool(self.writes)

    @property
    def diff(self) -> dict:
        """{'before': {...}, 'after': {...}} keyed by service id (as str, JSON friendly)."""
        if self._diff is None:
            self._diff = self._diff_fn() if self._diff_fn else {"before": {}, "after": {}}
        return self._diff

    def describe(self) -> list:
        return [w.desc for w in self.writes]

    def service_diff(self, ids=None) -> dict:
        """The diff of the services in ``ids`` only (default: those this plan changes)."""
        ids = self.by_service() if ids is None else ids
        if not self._diff_fn:
            return {"before": {}, "after": {}}
        return self._diff_fn({int(i) for i in ids})

    def by_service(self) -> dict:
        """{service id: [write descriptions]} for every service this plan writes, in order."""
        out: dict = {}
        for w in self.writes:
            if w.sid is not None:
                out.setdefault(w.sid, []).append(w.desc)
        return out

    def shared_writes(self) -> list:
        """Writes tied to no one service: backends, neighbours, orphan slots."""
        return [w.desc for w in self.writes if w.sid is None]

    def actions(self) -> dict:
        """{service id: "create" | "update" | "remove"} for every service this plan writes."""
        out = {}
        for sid in self.by_service():
            if sid in self._removed_ids:
                out[sid] = "remove"
            elif sid in self._current_ids:
                out[sid] = "update"
            else:
                out[sid] = "create"
        return out

    def counts(self) -> dict:
        out: dict = {}
        for w in self.writes:
            key = f"{w.map}:{w.op}"
            out[key] = out.get(key, 0) + 1
        return out

    def to_dict(self) -> dict:
        return {"changed": self.changed, "writes": [w.to_dict() for w in self.writes],
                "diff": self.diff, "warnings": self.warnings}

    def __len__(self) -> int:
        return len(self.writes)

    def __repr__(self) -> str:
        return f"Plan({len(self.writes)} writes: {self.counts()})"


def _front_of(s: Service) -> tuple:
    return (ip_to_be32(s.vip), port_to_be16(s.port), PROTOCOLS[s.protocol])


def _front_str(f) -> str:
    return f"{be32_to_ip(f[0])}:{be16_to_port(f[1])}/{PROTO_NAMES.get(f[2], f[2])}"


class _Planner:
    def __init__(self, maps: LBMaps, state: State, m: int):
        self.maps = maps
        self.st = state
        self.m = m
        self.writes: list = []
        self.new_backends: dict = {}          # identity -> id allocated by this plan
        self._next_id = 1
        self.unref_candidates: set = set()   # backend ids whose references may have dropped
        self.slot_changes: dict = {}         # services key -> new value or None (delete)
        self.warnings: list = []
        self.before_ids: set = set()
        self.after: dict = {}                # id -> (Service, [backend ids], table bytes)
        self.removed: set = set()
        self.small_table: list = []          # services with fewer than 100 slots per backend
        self.full_maglev_check = False
        self.flags_reset: set = set()
        self.backend_values: dict = {}      # backend id -> value this plan writes (None: deleted)
        self.neighbor_macs: dict = {}        # next-hop __be32 -> MAC bytes after this plan

    def add(self, phase, key, value, desc, sid=None):
        self.writes.append(Write(PHASE_MAP[phase], PHASE_OP.get(phase, "update"), key, value, desc, phase,
                                 sid=sid))

    # backend ids
    def backend_id(self, ip: str, port: int, proto: int) -> tuple:
        ident = _identity_of(ip, port, proto)
        bid = self.st.backend_ids.get(ident)
        if bid is not None:
            return bid, ident
        bid = self.new_backends.get(ident)
        if bid is not None:
            return bid, ident
        used = self.st.backends
        cap = self.maps[BACKENDS].max_entries - 1   # id 0 is never a backend
        if len(used) + len(self.new_backends) >= cap:
            raise InvalidConfig(f"backends: {ip}:{port} does not fit in lb4_backends "
                                f"({len(used)} of {cap} used, {len(self.new_backends)} new in this plan)")
        nid = self._next_id
        while nid in used:
            nid += 1
        if nid > min(MAX_BACKEND_ID, cap):
            raise L4LBError("no free backend id")
        self._next_id = nid + 1
        self.new_backends[ident] = nid
        self.write_backend(nid, ident, f"backend {nid} = {ip}:{port}/{PROTO_NAMES[proto]}")
        return nid, ident

    def backend_value(self, ident: bytes) -> bytes:
        """The lb4_backends value: identity (with its flags) and the next hop's MAC as
        nodeport_neigh4 holds it after this plan (zero: not known yet)."""
        mac = self.neighbor_macs.get(ident[:4], bytes(6))
        return ident[:IDENTITY_SIZE] + mac + bytes(2)

    def write_backend(self, bid: int, ident: bytes, desc: str):
        value = self.backend_value(ident)
        self.backend_values[bid] = value
        self.add(BACKEND_UPD, U32.pack(bid), value, desc)

    def neighbors(self, neighbors: dict):
        macs = self.neighbor_macs
        for k, v in self.st.neighbors.items():
            macs[k] = v[:6]
        for ip, mac in sorted(neighbors.items()):
            k = U32.pack(ip_to_be32(ip))
            v = NEIGH_MAC.pack(mac_to_bytes(mac))
            macs[k] = v[:6]
            if self.st.neighbors.get(k) != v:
                self.add(NEIGH_UPD, k, v, f"neighbour {ip} -> {mac}")

    def refresh_backend_macs(self):
        """Backends whose next hop's MAC changed (or became known) get it in this plan: a
        running flow reads its backend's entry per packet, so it follows within this apply."""
        for bid, cur in sorted(self.st.backends.items()):
            if bid in self.backend_values:
                continue
            want = self.backend_value(cur)
            if want != cur:
                addr, port = LB4_BACKEND.unpack(cur)[:2]
                mac = want[IDENTITY_SIZE:IDENTITY_SIZE + 6]
                self.write_backend(bid, cur, f"backend {bid} ({be32_to_ip(addr)}:{be16_to_port(port)}): "
                                   f"next hop {bytes_to_mac(mac) if any(mac) else 'unknown'}")

    def present(self, s: Service):
        st, m = self.st, self.m
        proto = PROTOCOLS[s.protocol]
        front = _front_of(s)
        sid = s.id
        self.before_ids.add(sid)
        backends = sorted(s.backends, key=_canonical)
        ids = []
        for b in backends:
            bid, ident = self.backend_id(b.ip, b.port, proto)
            if bid in st.backends and st.backends[bid][:IDENTITY_SIZE] != ident and bid not in self.flags_reset:
                # same identity, other flags: reset flags to 0
                self.flags_reset.add(bid)
                self.write_backend(bid, ident, f"backend {bid} = {b.name} (flags reset)")
            ids.append(bid)
        # Maglev: unchanged if the current inner map's name is the fingerprint of (desired
        # inputs, current content) - that content is then what build() gives for the desired
        # inputs. Otherwise (or with full_maglev_check) rebuild and compare contents.
        weighted = [(b.name, b.weight, bid) for b, bid in zip(backends, ids)]
        cur_table = st.maglev.get(sid)
        same = (not self.full_maglev_check and cur_table is not None
                and st.maglev_names.get(sid) == maglev.fingerprint_name(weighted, m, cur_table))
        if same:
            self.after[sid] = (s, ids, cur_table)
        else:
            table = maglev.build_bytes(weighted, m)
            self.after[sid] = (s, ids, table)
            if cur_table != table:
                w = Write(MAGLEV, "create-inner", U16.pack(sid), table,
                          f"service {sid}: new Maglev table ({m} slots over "
                          f"{sum(1 for b in backends if b.weight)} backends)", MAGLEV_SET,
                          maglev.fingerprint_name(weighted, m, table), sid)
                self.writes.append(w)
        nb = sum(1 for b in backends if b.weight)
        if m < 100 * nb:
            self.small_table.append(sid)
        # slots, in the service's frontend
        cur = st.fronts.get(front, {})
        addr, port = front[0], front[1]
        kpack, vpack = LB4_KEY.pack, LB4_SERVICE.pack
        n = len(ids)
        for slot, bid in enumerate(ids, 1):
            k = kpack(addr, port, slot, proto, 0)
            v = vpack(bid, 0, sid, 0, 0)
            old = cur.get(slot)
            if old is None or old[1] != v:
                self.add(SLOT_UPD, k, v, f"service {sid}: slot {slot} -> backend {bid} ({backends[slot - 1].name})", sid)
                self.slot_changes[k] = v
                if old is not None:
                    self.unref_candidates.add(LB4_SERVICE.unpack(old[1])[0])
        rv = LB4_REVERSE_NAT.pack(addr, port)
        if st.revnat.get(sid) != rv:
            self.add(REVNAT_UPD, U16.pack(sid), rv, f"service {sid}: reverse NAT -> {s.vip}:{s.port}", sid)
        mk = kpack(addr, port, 0, proto, 0)
        mv = vpack(0, n, sid, 0, 0)
        old = cur.get(0)
        if old is None or old[1] != mv:
            self.add(MASTER_UPD, mk, mv, f"service {sid}: master {s.frontend}/{s.protocol} count {n}", sid)
        for slot in sorted(cur):
            if slot > n:
                k, v = cur[slot]
                self.add(SLOT_DEL, k, None, f"service {sid}: delete surplus slot {slot}", sid)
                self.slot_changes[k] = None
                self.unref_candidates.add(LB4_SERVICE.unpack(v)[0])

    def clear_front(self, front, why: str, sid=None):
        """Delete a frontend's master, then its slots (``sid``: the service they belong to)."""
        slots = self.st.fronts.get(front, {})
        if 0 in slots:
            self.add(MASTER_DEL, slots[0][0], None, f"{why}: delete master {_front_str(front)}", sid)
            self.slot_changes[slots[0][0]] = None
        for slot in sorted(slots):
            if slot == 0:
                continue
            k, v = slots[slot]
            self.add(SLOT_DEL, k, None, f"{why}: delete slot {slot} of {_front_str(front)}", sid)
            self.slot_changes[k] = None
            self.unref_candidates.add(LB4_SERVICE.unpack(v)[0])

    def gc_backends(self, everything: bool = False):
        """Delete backends that no slot references after this plan."""
        cands = set(self.st.backends) if everything else (self.unref_candidates & set(self.st.backends))
        if not cands:
            return
        refs = set()
        unpack = LB4_SERVICE.unpack
        changes = self.slot_changes
        for slots in self.st.fronts.values():
            for slot, (k, v) in slots.items():
                if slot == 0 or k in changes:
                    continue
                refs.add(unpack(v)[0])
        for k, v in changes.items():
            if v is not None:
                refs.add(unpack(v)[0])
        for bid in sorted(cands - refs):
            addr, port, proto = LB4_BACKEND.unpack(self.st.backends[bid])[:3]
            self.backend_values[bid] = None
            self.add(BACKEND_DEL, U32.pack(bid), NO_BACKEND,
                     f"delete backend {bid} ({be32_to_ip(addr)}:{be16_to_port(port)}), no longer referenced")

    def fast_path(self):
        """lb4_service_by_id, lb4_vip_filter and lb4_front_hint as the masters will be after this
        plan's writes (maps.h): a service is live on its frontend while its one master counts
        backends; a bucket counts the masters whose VIP falls in it; a frontend bucket hints the
        lowest id of the live services whose frontend falls in it."""
        masters = {f: slots[0][1] for f, slots in self.st.fronts.items() if 0 in slots}
        for w in self.writes:
            if w.phase in (MASTER_UPD, MASTER_DEL):
                addr, port, _slot, proto, _scope = LB4_KEY.unpack(w.key)
                if w.value is None:
                    masters.pop((addr, port, proto), None)
                else:
                    masters[(addr, port, proto)] = w.value
        fronts_of = {}
        for f, v in masters.items():
            _bid, count, sid = LB4_SERVICE.unpack(v)[:3]
            fronts_of.setdefault(sid, []).append((f, count))
        # A service with two masters (a crashed writer's leftovers) gets no fast path.
        want_live = {sid: LB4_SERVICE_FRONT.pack(*fs[0][0]) for sid, fs in fronts_of.items()
                     if len(fs) == 1 and fs[0][1] > 0}
        for sid in sorted(set(self.st.live) | set(want_live)):
            cur, want = self.st.live.get(sid), want_live.get(sid)
            if cur == want:
                continue
            if cur is not None:
                self.add(LIVE_OFF, U32.pack(sid), NOT_LIVE, f"service {sid}: fast path off", sid)
            if want is not None:
                f = LB4_SERVICE_FRONT.unpack(want)
                self.add(LIVE_ON, U32.pack(sid), want, f"service {sid}: fast path on {_front_str(f)}", sid)
        want_filter = {}
        for f in masters:
            b = vip_bucket(f[0])
            want_filter[b] = want_filter.get(b, 0) + 1
        for b in sorted(set(self.st.vip_filter) | set(want_filter)):
            cur, want = self.st.vip_filter.get(b, 0), want_filter.get(b, 0)
            if cur != want:
                self.add(FILTER_RAISE if want > cur else FILTER_LOWER, U32.pack(b), U32.pack(want),
                         f"VIP filter bucket {b}: {cur} -> {want} frontend(s)")
        if FRONT_HINT not in self.maps:
            return
        want_hints = {}
        for sid in sorted(want_live):   # a shared bucket hints its lowest id
            want_hints.setdefault(front_bucket(*LB4_SERVICE_FRONT.unpack(want_live[sid])[:3]), sid)
        for b in sorted(set(self.st.hints) | set(want_hints)):
            cur, want = self.st.hints.get(b, 0), want_hints.get(b, 0)
            if cur != want:
                self.add(HINT_SET, U32.pack(b), U32.pack(want), f"frontend hint {b}: service {cur} -> {want}")

    def plan(self, diff_fn) -> Plan:
        self.fast_path()
        if self.small_table:
            ids = self.small_table
            more = f" (and {len(ids) - 10} more)" if len(ids) > 10 else ""
            self.warnings.append(
                f"maglev_size {self.m} < 100 x backends for service(s) {ids[:10]}{more}: "
                "Maglev's balance and disruption bounds are weaker")
        self.writes.sort(key=lambda w: w.phase)   # stable: keeps per-service order inside a phase
        return Plan(self.writes, diff_fn, self.warnings, current_ids=self.st.ids, removed_ids=self.removed)


def _canonical(b) -> tuple:
    """Slot order: by address (numerically), then port."""
    return (socket.inet_aton(b.ip), b.port)


def _check_maglev_size(maps: LBMaps, maglev_size) -> int:
    actual = maps.maglev_size
    if maglev_size is None:
        return maglev.check_size(actual)
    m = maglev.check_size(maglev_size)
    if m != actual:
        if maps._size_known:
            raise InvalidConfig(f"maglev_size: {m} does not match the datapath's table size {actual}")
        maps._maglev_size = m
    return m


def _describe_current(maps: LBMaps, st: State, sid: int) -> dict:
    fronts = st.ids.get(sid, [])
    if not fronts:
        return {}
    front = fronts[0]
    slots = st.fronts[front]
    table = st.maglev.get(sid, b"")
    counts: dict = {}
    for x in array("I", table):
        counts[x] = counts.get(x, 0) + 1
    backends = []
    for slot in sorted(slots):
        if slot == 0:
            continue
        bid = LB4_SERVICE.unpack(slots[slot][1])[0]
        raw = st.backends.get(bid)
        if raw is None:
            backends.append({"backend_id": bid, "ip": None, "port": None, "maglev_slots": counts.get(bid, 0)})
            continue
        addr, port = LB4_BACKEND.unpack(raw)[:2]
        backends.append({"backend_id": bid, "ip": be32_to_ip(addr), "port": be16_to_port(port),
                         "maglev_slots": counts.get(bid, 0)})
    return {"id": sid, "vip": be32_to_ip(front[0]), "port": be16_to_port(front[1]),
            "protocol": PROTO_NAMES.get(front[2], str(front[2])),
            "count": LB4_SERVICE.unpack(slots[0][1])[1] if 0 in slots else 0, "backends": backends}


def _describe_desired(s: Service, ids, table: bytes) -> dict:
    counts: dict = {}
    for x in array("I", table):
        counts[x] = counts.get(x, 0) + 1
    order = sorted(s.backends, key=_canonical)
    return {"id": s.id, "vip": s.vip, "port": s.port, "protocol": s.protocol, "count": len(ids),
            "backends": [{"backend_id": bid, "ip": b.ip, "port": b.port, "maglev_slots": counts.get(bid, 0)}
                         for b, bid in zip(order, ids)]}


def _diff_fn(maps, st, planner):
    def fn(ids=None):
        before, after = {}, {}
        for sid in sorted(planner.before_ids if ids is None else planner.before_ids & ids):
            cur = _describe_current(maps, st, sid)
            if cur:
                before[str(sid)] = cur
            if sid in planner.after:
                after[str(sid)] = _describe_desired(*planner.after[sid])
        return {"before": before, "after": after}
    return fn


def _validate_neighbors(neighbors):
    return parse_neighbors(neighbors)


def plan_services(maps: LBMaps, services, neighbors=None, prune: bool = False, absent=(),
                  maglev_size: int | None = None, full_maglev_check: bool = False) -> Plan:
    """Plan the whole set: every service in ``services`` present as given, ids in ``absent``
    removed; with ``prune`` every other service (and unreferenced backend, orphan reverse NAT
    or Maglev entry) is removed too. Validates everything before reading or writing a map.

    Maglev tables are compared by content. Shortcut: an inner map we wrote is named with a
    fingerprint of (inputs, content); when that matches the desired inputs and the content read
    back, the table is unchanged without rebuilding it. ``full_maglev_check`` always rebuilds."""
    services = [s if isinstance(s, Service) else Service.parse(s) for s in services]
    check_unique(services)
    absent_ids = {parse_service_id(a.id if isinstance(a, Service) else a, "absent id") for a in absent}
    clash = absent_ids & {s.id for s in services}
    if clash:
        raise InvalidConfig(f"id: service(s) {sorted(clash)} both present and absent")
    neighbors = _validate_neighbors(neighbors)
    m = maglev.check_size(maglev_size) if maglev_size is not None else None
    for s in services:
        nb = sum(1 for b in s.backends if b.weight)
        if m is not None and nb > m:
            raise InvalidConfig(f"backends: service {s.id} has {nb} weighted backends, more than maglev_size {m}")
    # --- reads only from here until apply()
    m = _check_maglev_size(maps, maglev_size)
    for s in services:
        nb = sum(1 for b in s.backends if b.weight)
        if nb > m:
            raise InvalidConfig(f"backends: service {s.id} has {nb} weighted backends, more than maglev_size {m}")
    desired_ids = {s.id for s in services}
    # Maglev tables: only those of the services in question (all of them when pruning)
    st = read_state(maps, ids=None if prune else desired_ids | absent_ids)
    if prune:
        current_ids = set(st.ids) | set(st.revnat) | set(st.maglev)
        absent_ids |= current_ids - desired_ids
    handled = desired_ids | absent_ids
    desired_fronts = {}
    for s in services:
        f = _front_of(s)
        desired_fronts[f] = s.id
        occ = st.fronts.get(f, {}).get(0)
        if occ is not None:
            occ_id = LB4_SERVICE.unpack(occ[1])[2]
            if occ_id != s.id and occ_id not in handled:
                raise InvalidConfig(
                    f"frontend: {s.frontend}/{s.protocol} is already used by service {occ_id}; "
                    f"delete service {occ_id} first")
    pl = _Planner(maps, st, m)
    pl.full_maglev_check = full_maglev_check
    pl.neighbors(neighbors)
    for s in sorted(services, key=lambda x: x.id):
        pl.present(s)
        # the service moved: clear its old frontends not re-used by a desired service
        for f in st.ids.get(s.id, []):
            if f != _front_of(s) and f not in desired_fronts:
                pl.clear_front(f, f"service {s.id} (moved)", s.id)
    for sid in sorted(absent_ids):
        pl.removed.add(sid)
        pl.before_ids.add(sid)
        for f in st.ids.get(sid, []):
            if f not in desired_fronts:
                pl.clear_front(f, f"service {sid}", sid)
        if sid in st.revnat:
            pl.add(REVNAT_DEL, U16.pack(sid), None, f"service {sid}: delete reverse NAT", sid)
        if sid in st.maglev:
            pl.add(MAGLEV_DEL, U16.pack(sid), None, f"service {sid}: delete Maglev table", sid)
    if prune:   # slots without a master (left by a crashed writer): nothing can use them
        for f, slots in sorted(st.fronts.items()):
            if 0 not in slots and f not in desired_fronts:
                pl.clear_front(f, "orphan slots")
    pl.gc_backends(everything=prune)
    pl.refresh_backend_macs()
    return pl.plan(_diff_fn(maps, st, pl))


def plan_service(maps: LBMaps, service, state: str = "present", neighbors=None,
                 maglev_size: int | None = None) -> Plan:
    """One service: ``service`` is a Service (or dict) for present; a Service, dict or id for absent."""
    if state not in ("present", "absent"):
        raise InvalidConfig(f"state: {state!r} is not 'present' or 'absent'")
    if state == "present":
        return plan_services(maps, [service], neighbors, maglev_size=maglev_size)
    if isinstance(service, Service):
        sid = service.id
    elif isinstance(service, dict):
        sid = service.get("id")
    else:
        sid = service
    return plan_services(maps, [], neighbors, absent=[parse_service_id(sid)], maglev_size=maglev_size)


def plan_fast_path(maps: LBMaps) -> Plan:
    """Only lb4_service_by_id and lb4_vip_filter, derived from the masters as they are: what a
    program loaded on maps pinned before these two existed needs (they start empty, and an empty
    VIP filter passes every packet). Every other plan keeps them too."""
    st = read_state(maps, ids=set())
    pl = _Planner(maps, st, maps.maglev_size)
    return pl.plan(_diff_fn(maps, st, pl))


# --- apply ---------------------------------------------------------------------------------

def _delete_many(mp: libbpf.Map, keys: list) -> None:
    try:
        mp.delete_batch(keys)
    except BpfError as exc:
        if exc.errno != _errno.ENOENT:
            raise
        for k in keys:           # someone removed one meanwhile: finish one by one
            mp.delete(k)


INNER_CHUNK = 256   # inner maps created per outer batch update (bounds the open fds)


def _set_inners(maps: LBMaps, writes: list) -> None:
    """For each write: a new inner ARRAY[1] filled completely, then swapped into lb4_maglev.

    Each element swap is atomic for the datapath (it sees the old or the new table, never a
    partial one). The swaps go in one BPF_MAP_UPDATE_BATCH per chunk: the kernel waits for an
    RCU grace period after every map-in-map update (~10-15 ms), once per batch instead of once
    per service.
    """
    outer = maps[MAGLEV]
    for start in range(0, len(writes), INNER_CHUNK):
        chunk = writes[start:start + INNER_CHUNK]
        fds = []
        try:
            for w in chunk:
                fd = libbpf.map_create(libbpf.BPF_MAP_TYPE_ARRAY, w.inner_name or MAGLEV_INNER_NAME, 4, len(w.value), 1,
                                       map_flags=maps._inner_flags)
                fds.append(fd)
                libbpf.Map(fd, MAGLEV_INNER_NAME).update(U32.pack(0), w.value)
            outer.update_batch([(w.key, U32.pack(fd)) for w, fd in zip(chunk, fds)])
        finally:
            for fd in fds:
                os.close(fd)


def apply(maps: LBMaps, plan: Plan) -> int:
    """Execute the plan in order; consecutive writes to one map with one op go as one batch."""
    writes = plan.writes
    i, n = 0, len(writes)
    while i < n:
        w = writes[i]
        j = i + 1
        while j < n and writes[j].map == w.map and writes[j].op == w.op and writes[j].phase == w.phase:
            j += 1
        run = writes[i:j]
        mp = maps[w.map]
        try:
            if w.op == "update":
                mp.update_batch([(x.key, x.value) for x in run])
            elif w.op == "delete":
                _delete_many(mp, [x.key for x in run])
            elif w.op == "create-inner":
                _set_inners(maps, run)
            else:
                raise L4LBError(f"unknown write op {w.op!r}")
        except BpfError as exc:
            raise L4LBError(
                f"apply stopped at write {i + 1} of {n} ({w.op} {w.map}: {w.desc}): {exc}. Writes "
                "before it are in place and, by their order, leave the datapath consistent; "
                "fix the cause and reconcile again to finish.") from exc
        i = j
    return n


def reconcile(maps: LBMaps, services, neighbors=None, prune: bool = False, check_mode: bool = False,
              maglev_size: int | None = None) -> Plan:
    """plan_services + apply (unless check_mode), under the pin directory's lock."""
    with maps.locked():
        plan = plan_services(maps, services, neighbors, prune=prune, maglev_size=maglev_size)
        if not check_mode:
            apply(maps, plan)
    return plan


# --- dump ----------------------------------------------------------------------------------

def dump(maps: LBMaps) -> list:
    """Every service as a plain dict (id, vip, port, protocol, count, backends with ids and
    Maglev slot counts), sorted by id."""
    st = read_state(maps)
    return [_describe_current(maps, st, sid) for sid in sorted(st.ids)]


def maglev_identities(st: State, sid: int) -> list:
    """Service ``sid``'s Maglev table as read from the maps, one backend identity (``ip:port``)
    per slot, ``-`` for none; [] when the service has no table. What the datapath picks for a
    hash, whatever ids this node gave its backends (the tier's nodes are compared by this)."""
    names = {0: "-"}
    for bid, raw in st.backends.items():
        addr, port = LB4_BACKEND.unpack(raw)[:2]
        names[bid] = f"{be32_to_ip(addr)}:{be16_to_port(port)}"
    return [names.get(b, f"?{b}") for b in array("I", st.maglev.get(sid, b""))]


def maglev_tables(maps: LBMaps, ids=None) -> dict:
    """{service id: :func:`maglev_identities`} for every service (or those of ``ids``)."""
    st = read_state(maps, ids=ids)
    return {sid: maglev_identities(st, sid) for sid in sorted(st.ids) if ids is None or sid in ids}


def neighbors(maps: LBMaps) -> dict:
    return {be32_to_ip(U32.unpack(k)[0]): bytes_to_mac(NEIGH_MAC.unpack(v)[0])
            for k, v in maps[NEIGH].items_list()}
