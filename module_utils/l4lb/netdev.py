# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Linux adapter for device properties and next-hop MACs (iproute2's JSON output over netlink).

Why not /sys/class/net: the netns connection keeps the host's mount namespace, so sysfs shows
the root namespace's devices; netlink always answers for the namespace we run in. On Windows
these two functions would be backed by Get-NetAdapter / Get-NetNeighbor instead.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import time
from dataclasses import dataclass

from .errors import InvalidConfig, L4LBError

_REACHABLE_STATES = {"REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"}


@dataclass(frozen=True)
class Device:
    name: str
    ifindex: int
    mac: str
    ipv4: str
    mtu: int


def _ip_json(*args: str) -> list:
    try:
        out = subprocess.run(["ip", "-j", *args], check=True, capture_output=True, text=True).stdout
    except FileNotFoundError as exc:
        raise L4LBError("iproute2 ('ip') is not installed") from exc
    except subprocess.CalledProcessError as exc:
        raise L4LBError(f"ip {' '.join(args)}: {exc.stderr.strip()}") from exc
    return json.loads(out or "[]")


def ifindex(name: str) -> int:
    """The device's ifindex in the current network namespace (no subprocess)."""
    if not name or len(name) > 15 or "/" in name:
        raise InvalidConfig(f"device {name!r} is not a valid interface name")
    try:
        return socket.if_nametoindex(name)
    except OSError as exc:
        raise InvalidConfig(f"device {name!r} does not exist in this network namespace") from exc


def device(name: str) -> Device:
    """The device's ifindex, MAC, first IPv4 address and MTU in the current network namespace."""
    index = ifindex(name)
    links = _ip_json("addr", "show", "dev", name)
    if not links:
        raise InvalidConfig(f"device {name!r} does not exist in this network namespace")
    link = links[0]
    addrs = [a["local"] for a in link.get("addr_info", []) if a.get("family") == "inet"]
    if not addrs:
        raise InvalidConfig(f"device {name!r} has no IPv4 address (the LB needs one for SNAT and DSR)")
    return Device(name=name, ifindex=index, mac=link.get("address", ""), ipv4=addrs[0], mtu=int(link.get("mtu", 1500)))


def _neigh_mac(ip: str, dev: str) -> str | None:
    for entry in _ip_json("neigh", "show", "to", ip, "dev", dev):
        states = set(entry.get("state", []))
        if entry.get("lladdr") and states & _REACHABLE_STATES:
            return entry["lladdr"]
    return None


def resolve_mac(ip: str, dev: str, timeout: float = 3.0) -> str:
    """Next-hop MAC of ``ip`` on ``dev``, resolving it (ARP) when the kernel has none.

    A datagram to the discard port makes the kernel ARP for the address, as the seed's agent's
    `neighbor update` does; nothing listens there, and the target is on the lab's own link.
    """
    try:
        ipaddress.IPv4Address(ip)
    except ValueError as exc:
        raise InvalidConfig(f"next hop {ip!r} is not an IPv4 address") from exc
    mac = _neigh_mac(ip, dev)
    if mac:
        return mac
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
        while time.monotonic() < deadline:
            try:
                sock.sendto(b"", (ip, 9))
            except OSError:
                pass
            time.sleep(0.05)
            mac = _neigh_mac(ip, dev)
            if mac:
                return mac
            time.sleep(0.2)
    raise L4LBError(f"no next hop: {ip} did not answer ARP on {dev} within {timeout:g}s")
