# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's topology model, provider-neutral: nodes (name, address, role, decap method, MTU),
the switch (a subnet, the bridge name, each node's switch port), the VIP, the VIP range (every
address a service may use) and the client's route to that range through the LB node(s). :func:`build_topology` validates a plain dict (what the
``lab_topology`` role gathers from the inventory) and raises :class:`TopologyError` naming
every inventory variable at fault; nothing on any machine is touched. How the model becomes
real is a provider's business (``provider.py``).
"""

from __future__ import annotations

import ipaddress
import os
import re

IFNAMSIZ = 15  # longest Linux interface name (IFNAMSIZ - 1)
NODE_ROLES = ("lb", "backend", "client")
DECAP_METHODS = ("xdp", "tc")
NODE_OSES = ("linux", "windows")
# The node roles whose Windows roles exist (backend: windows_ebpf + backend_windows; lb:
# windows_ebpf + lb_node's and lb_service's Windows tasks, l4lbctl through win_command); the client
# runs the lab's Python probes and stays Linux.
WINDOWS_ROLES = ("lb", "backend")
# A Windows backend decapsulates IPIP with XDP only (eBPF-for-Windows has no tc hook).
WINDOWS_DECAP = ("xdp",)
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Directories the teardown must never remove, whatever the inventory says.
PROTECTED_DIRS = frozenset({"/", "/run", "/var", "/var/run", "/var/lib", "/var/tmp", "/tmp", "/etc", "/usr",
                            "/home", "/root", "/srv", "/opt", "/sys", "/sys/fs", "/sys/fs/bpf", "/proc",
                            "/dev", "/boot", "/work"})


class TopologyError(Exception):
    """Bad input or an unmet requirement, found before anything was changed."""

    def __init__(self, problems):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class Route:
    """A route toward ``dst`` through one next hop, or several (an ECMP route: the LB tier, one
    next hop per LB node)."""

    def __init__(self, dst, nexthops):
        self.dst = dst  # ipaddress.IPv4Network
        if not isinstance(nexthops, (list, tuple)):
            nexthops = [nexthops]
        self.nexthops = tuple(nexthops)  # ipaddress.IPv4Address each, at least one

    @property
    def via(self):
        """The first next hop (the only one of a single-path route)."""
        return self.nexthops[0]

    @property
    def ecmp(self):
        return len(self.nexthops) > 1

    def as_dict(self):
        return {"dst": str(self.dst), "via": str(self.via), "nexthops": [str(h) for h in self.nexthops]}

    def __repr__(self):
        return f"{self.dst} via {', '.join(str(h) for h in self.nexthops)}"


# The client's ECMP hash over the L4 tuple (policy 1): with the default (0, addresses only) every
# connection of one client would take the same LB node.
MULTIPATH_HASH_SYSCTL = "net.ipv4.fib_multipath_hash_policy"

MTU_MIN, MTU_MAX = 1280, 9000
DEFAULT_MTU = 1500


class Node:
    def __init__(self, name, ip, role, decap=None, mtu=DEFAULT_MTU, os_name="linux"):
        self.name = name
        self.ip = ip  # ipaddress.IPv4Address
        self.role = role
        self.decap = decap
        self.mtu = mtu  # of the node's interface and its switch-side peer
        self.os = os_name  # the node's OS (inventory lab_os): linux or windows
        self.routes = []
        self.sysctls = {}  # live sysctls of the node's namespace (name -> value), e.g. ECMP hashing
        self.link = name  # the node's port on the switch

    @property
    def mac(self):
        """Locally administered MAC derived from the address (02:4c:a:b:c:d), so a recreated
        interface keeps its MAC and no neighbour cache goes stale."""
        return "02:4c:" + ":".join(f"{b:02x}" for b in self.ip.packed)

    def as_dict(self, prefixlen):
        return {"name": self.name, "ip": f"{self.ip}/{prefixlen}",
                "mac": self.mac, "mtu": self.mtu, "os": self.os,
                "role": self.role, "decap": self.decap, "switch_port": self.link,
                "routes": [r.as_dict() for r in self.routes], "sysctls": dict(self.sysctls)}


class Topology:
    def __init__(self, prefix, subnet, vip, nodes, bridge="br0", node_iface="eth0",
                 state_dir=None, bpffs_dir=None, xdp_pass_src=None, vip_range=None):
        self.prefix = prefix
        self.subnet = subnet
        self.vip = vip
        # Every address a service may use as its VIP: the client routes it through the LB tier.
        self.vip_range = vip_range if vip_range is not None else ipaddress.IPv4Network(f"{vip}/32")
        self.nodes = nodes
        self.bridge = bridge
        self.node_iface = node_iface
        self.state_dir = state_dir
        self.bpffs_dir = bpffs_dir
        # The switch ports' XDP_PASS source (a provider whose switch ports need one).
        self.xdp_pass_src = xdp_pass_src

    def node(self, name):
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def as_dict(self):
        return {"prefix": self.prefix, "subnet": str(self.subnet), "vip": str(self.vip),
                "vip_range": str(self.vip_range),
                "switch": {"bridge": self.bridge},
                "node_iface": self.node_iface, "state_dir": self.state_dir,
                "bpffs_dir": self.bpffs_dir,
                "nodes": [n.as_dict(self.subnet.prefixlen) for n in self.nodes]}


def _ipv4_addr(value, var, problems):
    try:
        return ipaddress.IPv4Address(str(value).strip())
    except ValueError:
        problems.append(f"{var} {value!r} is not a valid IPv4 address")
        return None


def _vip_range(raw, vip, subnet, problems):
    """lab_vip_range: a network (CIDR, no host bits) holding lab_vip, apart from lab_subnet.
    Not given: lab_vip's /32 (the seed's single route)."""
    if raw in (None, ""):
        return ipaddress.IPv4Network(f"{vip}/32") if vip is not None else None
    try:
        net = ipaddress.IPv4Network(str(raw).strip(), strict=True)
    except ValueError as e:
        problems.append(f"lab_vip_range {raw!r} is not an IPv4 network in CIDR form ({e})")
        return None
    bad = False
    if vip is not None and vip not in net:
        problems.append(f"lab_vip_range {net} does not contain lab_vip {vip}")
        bad = True
    if subnet is not None and net.overlaps(subnet):
        problems.append(f"lab_vip_range {net} overlaps lab_subnet {subnet}: the VIPs must be reached "
                        "through the LB node, not on the switch")
        bad = True
    return None if bad else net


def _check_dir(value, var, problems, under=None):
    if not value or not isinstance(value, str) or not os.path.isabs(value):
        problems.append(f"{var} {value!r} must be an absolute path")
        return None
    path = os.path.normpath(value)
    if path in PROTECTED_DIRS or path.count("/") < 2:
        problems.append(f"{var} {value!r} is too broad a directory for the lab to own (it is "
                        "removed on teardown); use a dedicated directory such as /run/<lab_prefix>")
        return None
    if under and not path.startswith(under.rstrip("/") + "/"):
        problems.append(f"{var} {value!r} must be below {under}")
        return None
    return path


def build_topology(spec):
    """Validate ``spec`` (a plain dict) and return a :class:`Topology`.

    spec keys: prefix, subnet, vip, vip_range (default: the VIP's /32), nodes (list of {name, ip,
    role, decap, mtu, os}), bridge, node_iface, state_dir, bpffs_dir, xdp_pass_src. Raises
    TopologyError naming every bad variable; changes nothing. A provider checks what only it cares about in its ``preflight``.
    """
    problems = []
    prefix = spec.get("prefix")
    if not prefix or not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        problems.append(f"lab_prefix {prefix!r} must be a non-empty name of letters, digits, "
                        "'_', '.', '-'")
        prefix = None

    subnet = None
    raw_subnet = spec.get("subnet")
    try:
        subnet = ipaddress.IPv4Network(str(raw_subnet).strip(), strict=True)
        if subnet.prefixlen > 30:
            problems.append(f"lab_subnet {raw_subnet} is too small for a lab (prefix length must "
                            "be 30 or shorter)")
            subnet = None
    except ValueError as e:
        problems.append(f"lab_subnet {raw_subnet!r} is not a valid IPv4 network ({e})")

    vip = _ipv4_addr(spec.get("vip"), "lab_vip", problems)
    if vip is not None and subnet is not None and vip in subnet:
        problems.append(f"lab_vip {vip} overlaps lab_subnet {subnet}: the VIP must be reached "
                        "through the LB node, not on the switch")

    vip_range = _vip_range(spec.get("vip_range"), vip, subnet, problems)

    bridge = spec.get("bridge") or "br0"
    if not _IFNAME_RE.match(bridge) or len(bridge) > IFNAMSIZ:
        problems.append(f"lab_topology_bridge {bridge!r} is not a valid interface name "
                        f"(at most {IFNAMSIZ} characters)")
    node_iface = spec.get("node_iface") or "eth0"
    if not _IFNAME_RE.match(node_iface) or len(node_iface) > IFNAMSIZ or node_iface == "lo":
        problems.append(f"lab_topology_node_iface {node_iface!r} is not a valid interface name "
                        f"(at most {IFNAMSIZ} characters, not lo)")

    nodes = []
    seen_ip = {}
    seen_name = set()
    raw_nodes = spec.get("nodes") or []
    if not raw_nodes:
        problems.append("no lab nodes: the groups lb_nodes, backends and clients are empty")
    for raw in raw_nodes:
        name = str(raw.get("name", ""))
        var = f"hostvars[{name}].lab_ip"
        if not name:
            problems.append("a lab node has no name")
            continue
        if name in seen_name:
            problems.append(f"inventory_hostname {name} appears twice among the lab nodes")
            continue
        seen_name.add(name)
        if not _IFNAME_RE.match(name):
            problems.append(f"inventory_hostname {name!r} cannot name an interface (letters, "
                            "digits, '_', '.', '-' only)")
        elif len(name) > IFNAMSIZ:
            problems.append(f"inventory_hostname {name!r} is {len(name)} characters: its switch "
                            f"port would exceed the {IFNAMSIZ}-character interface-name limit")
        if name == bridge:
            problems.append(f"inventory_hostname {name!r} collides with the switch bridge name")
        role = raw.get("role")
        if role not in NODE_ROLES:
            problems.append(f"hostvars[{name}] role {role!r} must be one of {', '.join(NODE_ROLES)}")
        decap = raw.get("decap")
        if role == "backend" and decap not in DECAP_METHODS:
            problems.append(f"hostvars[{name}].backend_decap {decap!r} must be one of "
                            f"{', '.join(DECAP_METHODS)}")
        os_name = raw.get("os") or "linux"
        if os_name not in NODE_OSES:
            problems.append(f"hostvars[{name}].lab_os {os_name!r} must be one of {', '.join(NODE_OSES)}")
        elif os_name == "windows" and role in NODE_ROLES and role not in WINDOWS_ROLES:
            why = "the client runs the lab's Python probes (lab_verify)"
            problems.append(f"hostvars[{name}].lab_os 'windows': a Windows {role} node is not supported: "
                            f"{why}; Windows roles exist for: {', '.join(WINDOWS_ROLES)}")
        elif os_name == "windows" and role == "backend" and decap in DECAP_METHODS and decap not in WINDOWS_DECAP:
            problems.append(f"hostvars[{name}].backend_decap {decap!r}: a Windows backend decapsulates "
                            f"with {', '.join(WINDOWS_DECAP)} (eBPF-for-Windows has no tc hook)")
        mtu = raw.get("mtu")
        mtu = DEFAULT_MTU if mtu in (None, "") else mtu
        try:
            ok = not isinstance(mtu, bool) and MTU_MIN <= int(str(mtu).strip()) <= MTU_MAX
        except ValueError:
            ok = False
        if not ok:
            problems.append(f"hostvars[{name}] mtu {mtu!r} must be an integer in {MTU_MIN}..{MTU_MAX} "
                            "(lab_dsr_fit / lab_dsr_mtu)")
            mtu = DEFAULT_MTU
        mtu = int(str(mtu).strip())
        raw_ip = raw.get("ip")
        if raw_ip in (None, ""):
            problems.append(f"{var} is not set")
            continue
        ip = _ipv4_addr(raw_ip, var, problems)
        if ip is None:
            continue
        if subnet is not None:
            if ip not in subnet:
                problems.append(f"{var} {ip} is outside lab_subnet {subnet}")
            elif ip in (subnet.network_address, subnet.broadcast_address):
                problems.append(f"{var} {ip} is the network or broadcast address of lab_subnet "
                                f"{subnet}")
        if vip is not None and ip == vip:
            problems.append(f"{var} {ip} overlaps lab_vip {vip}")
        if ip in seen_ip:
            problems.append(f"{var} {ip} duplicates hostvars[{seen_ip[ip]}].lab_ip")
        else:
            seen_ip[ip] = name
        nodes.append(Node(name, ip, role, decap if role == "backend" else None, mtu,
                          os_name if os_name in NODE_OSES else "linux"))

    lbs = [n for n in nodes if n.role == "lb"]
    clients = [n for n in nodes if n.role == "client"]
    if clients and not lbs:
        problems.append("lb_nodes holds no host: the client's route to lab_vip_range goes through "
                        "the LB node(s)")
    elif vip_range is not None:
        # One next hop per LB node, in lb_nodes' order: with more than one it is the tier's ECMP
        # route, hashed on the L4 tuple (fib_multipath_hash_policy 1), so each connection stays
        # on one LB node and a withdrawn node's flows are spread over the others.
        for c in clients:
            c.routes.append(Route(vip_range, [lb.ip for lb in lbs]))
            if len(lbs) > 1:
                c.sysctls[MULTIPATH_HASH_SYSCTL] = "1"

    state_dir = _check_dir(spec.get("state_dir"), "lab_state_dir", problems)
    bpffs_dir = _check_dir(spec.get("bpffs_dir"), "lab_bpffs_dir", problems)

    if problems:
        raise TopologyError(problems)
    return Topology(prefix, subnet, vip, nodes, bridge=bridge, node_iface=node_iface,
                    state_dir=state_dir, bpffs_dir=bpffs_dir, xdp_pass_src=spec.get("xdp_pass_src"),
                    vip_range=vip_range)
