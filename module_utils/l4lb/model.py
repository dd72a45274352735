# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Services and backends: parsing the seed's syntax and validating, before any map is touched.

Accepted input (what ``lb_service``, ``l4lbctl`` and the tests pass in):

- frontend: ``"40.1.1.1:80"`` (the seed's ``--frontend``), or ``vip=`` and ``port=`` separately;
- backends: ``"20.1.1.10:80,20.1.1.20:80"`` (the seed's ``--backends``), a list of such strings,
  ``"ip:port@weight"`` strings, dicts ``{"ip": ..., "port": ..., "weight": ...}``
  (``address`` is accepted for ``ip``), or :class:`Backend` objects;
- protocol: ``tcp`` (default) or ``udp``.

Limits (each violation raises :class:`InvalidConfig` naming the field and the value):

- service id 1..65535 (it is the reverse-NAT index, a __u16; 0 means "none" in the datapath);
- ports 1..65535; IPv4 addresses in dotted-quad form only (no hostnames, no leading zeros);
- VIP and backend addresses must be unicast (not 0.0.0.0, 255.255.255.255, multicast);
- 1..MAX_BACKENDS (1024) backends per service; no duplicate ``ip:port`` within a service;
- weight 0..65535, default 1; weight 0 = drain: the backend keeps serving flows already in the
  CT table but gets no new ones. All backends at weight 0 is allowed and drains the whole
  service (its Maglev table is all "no backend", new connections are dropped), as Cilium's own
  L4LB test expects of weight 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import InvalidConfig
from .structs import bytes_to_mac, mac_to_bytes

MAX_BACKENDS = 1024
MAX_WEIGHT = 65535
MIN_SERVICE_ID = 1
MAX_SERVICE_ID = 65535
PROTOCOLS = ("tcp", "udp")


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_RE = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}")


def parse_ip(value, field_name: str = "ip") -> str:
    """Strict dotted-quad IPv4 (no hostnames, no shorthand like '10.1', no leading zeros)."""
    if not isinstance(value, str):
        raise InvalidConfig(f"{field_name}: {value!r} is not an IPv4 address string")
    text = value.strip()
    if _IPV4_RE.fullmatch(text) is None:
        raise InvalidConfig(f"{field_name}: {value!r} is not a valid IPv4 address")
    first = int(text[:text.index(".")])
    if text == "0.0.0.0" or text == "255.255.255.255" or 224 <= first <= 239:
        raise InvalidConfig(f"{field_name}: {value!r} is not a unicast address")
    return text


def _parse_int(value, field_name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise InvalidConfig(f"{field_name}: {value!r} is not an integer")
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()):
            raise InvalidConfig(f"{field_name}: {value!r} is not an integer")
        value = int(text)
    if not isinstance(value, int):
        raise InvalidConfig(f"{field_name}: {value!r} is not an integer")
    if not lo <= value <= hi:
        raise InvalidConfig(f"{field_name}: {value} is out of range {lo}..{hi}")
    return value


def parse_port(value, field_name: str = "port") -> int:
    return _parse_int(value, field_name, 1, 65535)


def parse_weight(value, field_name: str = "weight") -> int:
    return _parse_int(value, field_name, 0, MAX_WEIGHT)


def parse_service_id(value, field_name: str = "id") -> int:
    return _parse_int(value, field_name, MIN_SERVICE_ID, MAX_SERVICE_ID)


def parse_protocol(value, field_name: str = "protocol") -> str:
    if not isinstance(value, str) or value.strip().lower() not in PROTOCOLS:
        raise InvalidConfig(f"{field_name}: {value!r} is not a supported protocol ({', '.join(PROTOCOLS)})")
    return value.strip().lower()


def parse_endpoint(text, field_name: str) -> tuple[str, int]:
    """'ip:port' -> (ip, port)."""
    if not isinstance(text, str) or text.count(":") != 1:
        raise InvalidConfig(f"{field_name}: {text!r} is not of the form IP:PORT")
    ip, port = text.split(":")
    return parse_ip(ip, f"{field_name} address"), parse_port(port, f"{field_name} port")


@dataclass(frozen=True, order=True)
class Backend:
    ip: str
    port: int
    weight: int = 1

    def __post_init__(self):
        # Every Backend is valid by construction, however it was built.
        object.__setattr__(self, "ip", parse_ip(self.ip, "backends address"))
        object.__setattr__(self, "port", parse_port(self.port, f"backends port of {self.ip}"))
        object.__setattr__(self, "weight", parse_weight(self.weight, f"backends weight of {self.ip}:{self.port}"))

    @classmethod
    def _trusted(cls, ip: str, port: int, weight: int) -> "Backend":
        """Construct from values parse_* already validated (skips re-validation)."""
        obj = object.__new__(cls)
        object.__setattr__(obj, "ip", ip)
        object.__setattr__(obj, "port", port)
        object.__setattr__(obj, "weight", weight)
        return obj

    @property
    def name(self) -> str:
        """Identity used by Maglev's permutation and in reports: 'ip:port'."""
        return f"{self.ip}:{self.port}"

    @classmethod
    def parse(cls, value, field_name: str = "backends") -> "Backend":
        if isinstance(value, Backend):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {"ip", "address", "port", "weight"}
            if unknown:
                raise InvalidConfig(f"{field_name}: unknown key(s) {sorted(unknown)} in {value!r}")
            ip = value.get("ip", value.get("address"))
            if ip is None or "port" not in value:
                raise InvalidConfig(f"{field_name}: {value!r} needs 'ip' and 'port'")
            return cls._trusted(parse_ip(ip, f"{field_name} address"),
                                parse_port(value["port"], f"{field_name} port"),
                                parse_weight(value.get("weight", 1), f"{field_name} weight"))
        if isinstance(value, str):
            text = value.strip()
            weight = 1
            if "@" in text:
                text, w = text.split("@", 1)
                weight = parse_weight(w, f"{field_name} weight of {value!r}")
            ip, port = parse_endpoint(text, field_name)
            return cls._trusted(ip, port, weight)
        raise InvalidConfig(f"{field_name}: {value!r} is not a backend (IP:PORT[@WEIGHT] or dict)")


def parse_backends(value, field_name: str = "backends") -> tuple[Backend, ...]:
    """Seed syntax 'ip:port,ip:port' or a list; validates count, duplicates and weights."""
    if isinstance(value, str):
        items = [p for p in (s.strip() for s in value.split(",")) if p]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    elif value is None:
        items = []
    else:
        raise InvalidConfig(f"{field_name}: {value!r} is not a list or a comma-separated string")
    if not items:
        raise InvalidConfig(f"{field_name}: a service needs at least one backend (got none)")
    if len(items) > MAX_BACKENDS:
        raise InvalidConfig(f"{field_name}: {len(items)} backends is more than the maximum {MAX_BACKENDS}")
    backends = tuple(Backend.parse(v, field_name) for v in items)
    _check_backend_set(backends, field_name)
    return backends


def _check_backend_set(backends, field_name: str = "backends") -> None:
    if not backends:
        raise InvalidConfig(f"{field_name}: a service needs at least one backend (got none)")
    if len(backends) > MAX_BACKENDS:
        raise InvalidConfig(f"{field_name}: {len(backends)} backends is more than the maximum {MAX_BACKENDS}")
    seen = set()
    for b in backends:
        if b.name in seen:
            raise InvalidConfig(f"{field_name}: duplicate backend {b.name}")
        seen.add(b.name)


@dataclass(frozen=True)
class Service:
    id: int
    vip: str
    port: int
    protocol: str = "tcp"
    backends: tuple = field(default_factory=tuple)

    def __post_init__(self):
        # Every Service is valid by construction (Service(...) in code or Service.parse(...)).
        object.__setattr__(self, "id", parse_service_id(self.id))
        object.__setattr__(self, "vip", parse_ip(self.vip, "vip"))
        object.__setattr__(self, "port", parse_port(self.port, "port"))
        object.__setattr__(self, "protocol", parse_protocol(self.protocol))
        if not isinstance(self.backends, tuple) or not all(isinstance(b, Backend) for b in self.backends):
            object.__setattr__(self, "backends", parse_backends(self.backends))
        else:
            _check_backend_set(self.backends)

    @property
    def frontend(self) -> str:
        return f"{self.vip}:{self.port}"

    @classmethod
    def parse(cls, value=None, **kw) -> "Service":
        """Build from a dict or keywords: id, frontend | (vip, port), protocol, backends."""
        data = dict(value or {})
        data.update(kw)
        unknown = set(data) - {"id", "frontend", "vip", "port", "protocol", "proto", "backends"}
        if unknown:
            raise InvalidConfig(f"service: unknown key(s) {sorted(unknown)}")
        if "id" not in data:
            raise InvalidConfig("id: missing service id")
        sid = parse_service_id(data["id"])
        if data.get("frontend") is not None:
            if data.get("vip") is not None or data.get("port") is not None:
                raise InvalidConfig(f"frontend: {data['frontend']!r} given together with vip/port")
            vip, port = parse_endpoint(data["frontend"], "frontend")
        else:
            if data.get("vip") is None or data.get("port") is None:
                raise InvalidConfig(f"frontend: service {sid} needs frontend IP:PORT (or vip and port)")
            vip = parse_ip(data["vip"], "vip")
            port = parse_port(data["port"], "port")
        proto = parse_protocol(data.get("protocol", data.get("proto", "tcp")))
        backends = parse_backends(data.get("backends"))
        return cls(sid, vip, port, proto, backends)

    def to_dict(self) -> dict:
        return {
            "id": self.id, "vip": self.vip, "port": self.port, "protocol": self.protocol,
            "backends": [{"ip": b.ip, "port": b.port, "weight": b.weight} for b in self.backends],
        }


def port_translating(services) -> list:
    """Services (Service objects or dicts shaped like ``Service.to_dict()`` / ``reconcile.dump``)
    with a backend whose port differs from the frontend port, each as one readable line:
    ``service 80 (40.1.1.1:8080/tcp -> 20.1.1.10:80, 20.1.1.20:80)``.

    DSR cannot serve them: the backend answers the client directly, from the port it received
    on, so the client sees a reply from a port it never connected to."""
    out = []
    for s in services:
        d = s.to_dict() if isinstance(s, Service) else s
        moved = [f"{b['ip']}:{b['port']}" for b in d.get("backends", []) if b.get("port") != d["port"]]
        if moved:
            out.append(f"service {d['id']} ({d['vip']}:{d['port']}/{d.get('protocol', 'tcp')} -> {', '.join(moved)})")
    return out


def parse_neighbors(value, field_name: str = "neighbors") -> dict:
    """{ip: mac} (or list of {"ip":..., "mac":...}) -> {ip: 'aa:bb:cc:dd:ee:ff'}."""
    if value is None:
        return {}
    if isinstance(value, (list, tuple)):
        pairs = []
        for v in value:
            if not isinstance(v, dict) or "ip" not in v or "mac" not in v:
                raise InvalidConfig(f"{field_name}: {v!r} needs 'ip' and 'mac'")
            pairs.append((v["ip"], v["mac"]))
    elif isinstance(value, dict):
        pairs = list(value.items())
    else:
        raise InvalidConfig(f"{field_name}: {value!r} is not a mapping of ip -> mac")
    out = {}
    for ip, mac in pairs:
        ip = parse_ip(ip, f"{field_name} address")
        out[ip] = parse_mac(mac, f"{field_name} mac of {ip}")
    return out


def parse_mac(value, field_name: str = "mac") -> str:
    """A MAC in its canonical text form (lower case, ':'), parsed by structs.mac_to_bytes."""
    if not isinstance(value, str):
        raise InvalidConfig(f"{field_name}: {value!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
    return bytes_to_mac(mac_to_bytes(value, field_name))


def check_unique(services) -> None:
    """No two services with the same id or the same frontend (vip, port, protocol)."""
    ids, fronts = {}, {}
    for s in services:
        if s.id in ids:
            raise InvalidConfig(f"id: service id {s.id} appears twice")
        ids[s.id] = s
        key = (s.vip, s.port, s.protocol)
        if key in fronts:
            raise InvalidConfig(
                f"frontend: {s.frontend}/{s.protocol} is used by services {fronts[key].id} and {s.id}")
        fronts[key] = s


STATES = ("present", "absent")


def parse_service_set(items, field_name: str = "services") -> tuple[list, list]:
    """A whole desired set in one list -> (present :class:`Service` objects, absent ids).

    Each item is a dict as for :meth:`Service.parse` plus an optional ``state`` (``present``,
    the default, or ``absent``: only its ``id`` is read). Everything is checked before the
    caller touches a map; each refusal names the item (``services[7] (id 8)``) and the field,
    including an id or a frontend used twice in the list (both items named)."""
    if not isinstance(items, (list, tuple)):
        raise InvalidConfig(f"{field_name}: {items!r} is not a list of services")
    present, absent = [], []
    ids, fronts = {}, {}
    for i, item in enumerate(items):
        where = f"{field_name}[{i}]"
        if not isinstance(item, dict):
            raise InvalidConfig(f"{where}: {item!r} is not a service (a mapping with id, frontend, backends)")
        data = {k: v for k, v in item.items() if v is not None}
        state = data.pop("state", "present")
        if state not in STATES:
            raise InvalidConfig(f"{where}: state: {state!r} is not 'present' or 'absent'")
        try:
            sid = parse_service_id(data.get("id"), "id") if "id" in data else None
        except InvalidConfig as exc:
            raise InvalidConfig(f"{where}: {exc}") from None
        if sid is None:
            raise InvalidConfig(f"{where}: id: missing service id")
        where = f"{where} (id {sid})"
        if sid in ids:
            raise InvalidConfig(f"{where}: id: service id {sid} appears twice in {field_name} "
                                f"(also {field_name}[{ids[sid]}])")
        ids[sid] = i
        if state == "absent":
            absent.append(sid)
            continue
        try:
            svc = Service.parse(data)
        except InvalidConfig as exc:
            raise InvalidConfig(f"{where}: {exc}") from None
        key = (svc.vip, svc.port, svc.protocol)
        if key in fronts:
            j, other = fronts[key]
            raise InvalidConfig(f"{where}: frontend: {svc.frontend}/{svc.protocol} is also service {other}'s "
                                f"({field_name}[{j}])")
        fronts[key] = (i, sid)
        present.append(svc)
    return present, absent
