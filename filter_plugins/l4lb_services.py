# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the lab's roles derive from the service list (``lb_services``), so nothing is a second
list to keep in step with it: the VIPs and ports each backend serves (backend_linux,
backend_windows), the services outside the lab's VIP range (refused before any change), the
services lab_verify probes, and the next hops of the client's route to the range.

The service list is read as ``lb_service`` takes it (module_utils/l4lb/model.py): ``frontend``
``"VIP:PORT"`` (or ``vip`` and ``port``), ``backends`` as ``"IP:PORT[@WEIGHT]"`` strings (a list,
or one comma-separated string) or dicts ``{ip|address, port, weight}``, and ``state``
(``absent`` items serve nothing). Only the fields these filters need are read: validating the
list is the core's job (lb_service refuses a bad one before any map is touched); an item these
filters cannot read fails naming it. ``None`` (``lb_services`` not set) is the seed's service:
``<seed_vip>:80`` on every backend, as lb_service's default has it.
Pure functions, unit-tested in tests/test_services_filters.py.
"""

from __future__ import annotations

import ipaddress
import json

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: l4lb_services
short_description: What the lab derives from its service list (backend VIPs and ports, the VIP range check, lab_verify's services)
description:
  - C(l4lb_backend_vips) - the VIPs of the present services that list a backend address.
  - C(l4lb_backend_ports) - the ports those services send to that backend.
  - C(l4lb_vips_outside) - one problem per present service whose VIP is outside the lab's VIP range.
  - C(l4lb_verify_services) - the present services as lab_verify probes them (VIP, port, backends by host name, their weights).
  - C(l4lb_route_gateways) - the next hops of C(ip -j route show) routes on a device.
author: L4LB lab toolkit contributors (@l4lb-lab)
"""

SEED_PORT = 80


def _where(i, item):
    sid = item.get("id") if isinstance(item, dict) else None
    return f"lb_services[{i}]" + (f" (id {sid})" if sid is not None else "")


def _frontend(i, item):
    """(vip, port) of a service item."""
    front = item.get("frontend")
    try:
        if front is not None:
            vip, port = str(front).strip().rsplit(":", 1)
        else:
            vip, port = item["vip"], item["port"]
        return str(ipaddress.IPv4Address(str(vip).strip())), int(port)
    except (KeyError, ValueError) as e:
        raise AnsibleFilterError(f"{_where(i, item)}: frontend {front!r} is not VIP:PORT ({e})") from None


def _backends(i, item):
    """[(ip, port, weight)] of a service item."""
    raw = item.get("backends")
    if isinstance(raw, str):
        raw = [b for b in (x.strip() for x in raw.split(",")) if b]
    out = []
    for b in raw or []:
        try:
            if isinstance(b, dict):
                ip, port, weight = b.get("ip", b.get("address")), b["port"], b.get("weight", 1)
            else:
                text, weight = (str(b).strip().split("@", 1) + [""])[:2]
                ip, port = text.rsplit(":", 1)
                weight = weight or 1
            out.append((str(ipaddress.IPv4Address(str(ip).strip())), int(port), int(weight)))
        except (KeyError, TypeError, ValueError) as e:
            raise AnsibleFilterError(f"{_where(i, item)}: backend {b!r} is not IP:PORT[@WEIGHT] ({e})") from None
    return out


def present_services(services, seed_vip=None, seed_backends=(), backends=True):
    """The present services of ``services`` as [{id, vip, port, protocol, backends: [(ip, port,
    weight)]}]; ``None`` is the seed's service (``seed_vip``:80 on ``seed_backends``).
    ``backends=False`` leaves the backends unread (``[]``): a caller that judges only the VIPs
    does not fail on a backend the core would refuse with its own message."""
    if services is None:
        return [{"id": 1, "vip": str(ipaddress.IPv4Address(str(seed_vip).strip())), "port": SEED_PORT,
                 "protocol": "tcp", "backends": [(str(ip), SEED_PORT, 1) for ip in seed_backends]}]
    if not isinstance(services, (list, tuple)):
        raise AnsibleFilterError(f"lb_services: {services!r} is not a list of services")
    out = []
    for i, item in enumerate(services):
        if not isinstance(item, dict):
            raise AnsibleFilterError(f"lb_services[{i}]: {item!r} is not a service (a mapping)")
        if item.get("state", "present") == "absent":
            continue
        vip, port = _frontend(i, item)
        out.append({"id": item.get("id"), "vip": vip, "port": port,
                    "protocol": str(item.get("protocol", item.get("proto", "tcp"))).lower(),
                    "backends": _backends(i, item) if backends else []})
    return out


def _ip_sort(addrs):
    return sorted(set(addrs), key=ipaddress.IPv4Address)


def backend_vips(services, backend_ip, seed_vip=None):
    """The VIPs a backend must hold: of every present service that lists ``backend_ip`` (any
    port, any weight: a drained backend still serves its flows). ``None``: the seed's service,
    which lists every backend."""
    ip = str(backend_ip).strip()
    return _ip_sort(s["vip"] for s in present_services(services, seed_vip, [ip])
                    if any(b[0] == ip for b in s["backends"]))


def backend_ports(services, backend_ip, seed_vip=None):
    """The TCP ports the present services send to ``backend_ip`` (what its server listens on)."""
    ip = str(backend_ip).strip()
    return sorted({b[1] for s in present_services(services, seed_vip, [ip]) if s["protocol"] == "tcp"
                   for b in s["backends"] if b[0] == ip})


def vips_outside(services, vip_range, var="lab_vip_range", seed_vip=None):
    """One problem per present service whose VIP the lab cannot route (outside ``vip_range``),
    naming the service and the variable that widens the range; [] when ``vip_range`` is empty
    (no check)."""
    if vip_range in (None, ""):
        return []
    try:
        net = ipaddress.IPv4Network(str(vip_range).strip(), strict=True)
    except ValueError as e:
        raise AnsibleFilterError(f"{var} {vip_range!r} is not an IPv4 network in CIDR form ({e})") from None
    out = []
    for s in present_services(services, seed_vip, backends=False):
        if ipaddress.IPv4Address(s["vip"]) not in net:
            out.append(f"service {s['id']} ({s['vip']}:{s['port']}): VIP {s['vip']} is outside {var} {net}, "
                       f"which is all the lab routes to the LB node; widen {var} (inventory "
                       f"group_vars/all) or use a VIP inside it")
    return out


def verify_services(services, hosts_by_ip, seed_vip=None):
    """The present services as lab_verify probes them: [{id, vip, port, protocol, backends:
    [name], drained: [name], weights: {name: weight}}], a backend named by its inventory host
    (``hosts_by_ip``: address -> host) or by its address when no host has it; ``drained`` are
    those at weight 0 (they get no new flows, so they need not answer); ``weights`` gives the
    share of new flows each should get (the demo report's expected share)."""
    hosts_by_ip = {str(k): v for k, v in (hosts_by_ip or {}).items()}
    out = []
    for s in present_services(services, seed_vip, list(hosts_by_ip)):
        names = [(hosts_by_ip.get(ip, ip), w) for ip, _port, w in s["backends"]]
        out.append({"id": s["id"], "vip": s["vip"], "port": s["port"], "protocol": s["protocol"],
                    "backends": [n for n, w in names if w > 0], "drained": [n for n, w in names if w == 0],
                    "weights": dict(names)})
    return out


def route_gateways(routes, dev=None):
    """The next hops of routes as ``ip -j route show`` prints them (a list, or its JSON text):
    each route's ``gateway``, or each of its ``nexthops`` (an ECMP route); only those on ``dev``
    when given. Sorted, without repeats."""
    if isinstance(routes, str):
        routes = json.loads(routes or "[]")
    hops = []
    for r in routes or []:
        for h in r.get("nexthops") or [r]:
            if h.get("gateway") and (dev is None or h.get("dev") == dev):
                hops.append(h["gateway"])
    return _ip_sort(hops)


class FilterModule:
    def filters(self):
        return {
            "l4lb_backend_vips": backend_vips,
            "l4lb_backend_ports": backend_ports,
            "l4lb_vips_outside": vips_outside,
            "l4lb_verify_services": verify_services,
            "l4lb_route_gateways": route_gateways,
        }
