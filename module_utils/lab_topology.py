# -*- coding: utf-8 -*-
"""Embedded-lab topology: model -> validate -> provider.

Plain Python (standard library only). Imported by the ``lab_netns`` module as
``ansible.module_utils.lab_topology`` and by tests and benches as ``lab_topology`` (with
``module_utils/`` on ``sys.path``).

* ``build_topology(spec)`` turns a plain dict (what the ``lab_topology`` role gathers from the
  inventory) into a validated :class:`Topology`, or raises :class:`TopologyError` listing every
  problem, each naming the inventory variable at fault. Nothing on the machine is touched.
* A provider realises a topology. :class:`NetnsProvider` builds it from network namespaces, a
  Linux bridge and veth pairs on this machine; a libvirt provider could implement the same
  three calls (``preflight``, ``plan``, ``apply``) without changes to the model.

Every link is created with ``ip -n <namespace>``: nothing is ever added to the root namespace.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

IFNAMSIZ = 15  # longest Linux interface name (IFNAMSIZ - 1)
NODE_ROLES = ("lb", "backend", "client")
DECAP_METHODS = ("xdp", "tc")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Directories the teardown must never remove, whatever the inventory says.
_PROTECTED_DIRS = {"/", "/run", "/var", "/var/run", "/tmp", "/etc", "/usr", "/home", "/root", "/srv",
                   "/opt", "/sys", "/sys/fs", "/sys/fs/bpf", "/proc", "/dev", "/boot", "/work"}
XDP_MODE_DRV = 1


class TopologyError(Exception):
    """Bad input or an unmet requirement, found before anything was changed."""

    def __init__(self, problems):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class ProviderError(Exception):
    """A command failed while the provider was changing the machine."""


# --------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------

class Route:
    def __init__(self, dst, via):
        self.dst = dst  # ipaddress.IPv4Network
        self.via = via  # ipaddress.IPv4Address

    def __repr__(self):
        return f"{self.dst} via {self.via}"


MTU_MIN, MTU_MAX = 1280, 9000
DEFAULT_MTU = 1500


class Node:
    def __init__(self, name, ip, role, decap=None, mtu=DEFAULT_MTU):
        self.name = name
        self.ip = ip  # ipaddress.IPv4Address
        self.role = role
        self.decap = decap
        self.mtu = mtu  # of the node's interface and its switch-side peer
        self.routes = []
        self.namespace = None  # set by Topology
        self.link = name  # switch-side veth end

    @property
    def mac(self):
        """Locally administered MAC derived from the address (02:4c:a:b:c:d), so a recreated
        interface keeps its MAC and no neighbour cache goes stale."""
        return "02:4c:" + ":".join(f"{b:02x}" for b in self.ip.packed)

    def as_dict(self, prefixlen):
        return {"name": self.name, "namespace": self.namespace, "ip": f"{self.ip}/{prefixlen}",
                "mac": self.mac, "mtu": self.mtu,
                "role": self.role, "decap": self.decap, "switch_port": self.link,
                "routes": [{"dst": str(r.dst), "via": str(r.via)} for r in self.routes]}


class Topology:
    def __init__(self, prefix, subnet, vip, nodes, bridge="br0", node_iface="eth0",
                 state_dir=None, bpffs_dir=None, xdp_pass_src=None, netns_dir="/run/netns"):
        self.prefix = prefix
        self.subnet = subnet
        self.vip = vip
        self.nodes = nodes
        self.bridge = bridge
        self.node_iface = node_iface
        self.state_dir = state_dir
        self.bpffs_dir = bpffs_dir
        self.xdp_pass_src = xdp_pass_src
        self.netns_dir = netns_dir
        self.switch_ns = f"{prefix}-switch"
        for n in nodes:
            n.namespace = f"{prefix}-{n.name}"

    @property
    def namespaces(self):
        """Every namespace the lab owns: the switch first, then the nodes."""
        return [self.switch_ns] + [n.namespace for n in self.nodes]

    @property
    def xdp_pass_obj(self):
        return os.path.join(self.state_dir, "xdp_pass.o")

    @property
    def xdp_pass_pin(self):
        """The XDP_PASS program shared by every switch port, pinned below lab_bpffs_dir."""
        return os.path.join(self.bpffs_dir, "switch", "xdp_pass")

    def node(self, name):
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def as_dict(self):
        return {"prefix": self.prefix, "subnet": str(self.subnet), "vip": str(self.vip),
                "switch": {"namespace": self.switch_ns, "bridge": self.bridge},
                "node_iface": self.node_iface, "state_dir": self.state_dir,
                "bpffs_dir": self.bpffs_dir,
                "nodes": [n.as_dict(self.subnet.prefixlen) for n in self.nodes]}


def _ipv4_addr(value, var, problems):
    try:
        return ipaddress.IPv4Address(str(value).strip())
    except ValueError:
        problems.append(f"{var} {value!r} is not a valid IPv4 address")
        return None


def _check_dir(value, var, problems, under=None):
    if not value or not isinstance(value, str) or not os.path.isabs(value):
        problems.append(f"{var} {value!r} must be an absolute path")
        return None
    path = os.path.normpath(value)
    if path in _PROTECTED_DIRS or path.count("/") < 2:
        problems.append(f"{var} {value!r} is too broad a directory for the lab to own (it is "
                        "removed on teardown); use a dedicated directory such as /run/<lab_prefix>")
        return None
    if under and not path.startswith(under.rstrip("/") + "/"):
        problems.append(f"{var} {value!r} must be below {under}")
        return None
    return path


def build_topology(spec):
    """Validate ``spec`` (a plain dict) and return a :class:`Topology`.

    spec keys: prefix, subnet, vip, nodes (list of {name, ip, role, decap, mtu}), bridge, node_iface,
    state_dir, bpffs_dir, xdp_pass_src, netns_dir. Raises TopologyError naming every bad
    variable; changes nothing.
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
        if name == "switch":
            problems.append("inventory_hostname 'switch' collides with the switch namespace "
                            f"{prefix}-switch")
        role = raw.get("role")
        if role not in NODE_ROLES:
            problems.append(f"hostvars[{name}] role {role!r} must be one of {', '.join(NODE_ROLES)}")
        decap = raw.get("decap")
        if role == "backend" and decap not in DECAP_METHODS:
            problems.append(f"hostvars[{name}].backend_decap {decap!r} must be one of "
                            f"{', '.join(DECAP_METHODS)}")
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
        nodes.append(Node(name, ip, role, decap if role == "backend" else None, mtu))

    lbs = [n for n in nodes if n.role == "lb"]
    clients = [n for n in nodes if n.role == "client"]
    if clients and len(lbs) != 1:
        problems.append(f"lb_nodes must hold exactly one host (found {len(lbs)}): the client's "
                        "route to lab_vip goes through it")
    elif vip is not None:
        for c in clients:
            c.routes.append(Route(ipaddress.IPv4Network(f"{vip}/32"), lbs[0].ip))

    if prefix:
        for n in nodes:
            if len(f"{prefix}-{n.name}") > 255:
                problems.append(f"lab_prefix {prefix!r}: namespace name for {n.name} too long")

    state_dir = _check_dir(spec.get("state_dir"), "lab_state_dir", problems)
    bpffs_dir = _check_dir(spec.get("bpffs_dir"), "lab_bpffs_dir", problems)
    netns_dir = spec.get("netns_dir") or "/run/netns"

    if problems:
        raise TopologyError(problems)
    return Topology(prefix, subnet, vip, nodes, bridge=bridge, node_iface=node_iface,
                    state_dir=state_dir, bpffs_dir=bpffs_dir,
                    xdp_pass_src=spec.get("xdp_pass_src"), netns_dir=netns_dir)


# --------------------------------------------------------------------------------------------
# provider: network namespaces on this machine
# --------------------------------------------------------------------------------------------

def _run(argv, check=True, input_=None):
    p = subprocess.run(argv, input=input_, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise ProviderError(f"{' '.join(argv)} failed (rc={p.returncode}): "
                            f"{(p.stderr or p.stdout).strip()}")
    return p


def _mounts():
    with open("/proc/self/mounts", encoding="utf-8") as f:
        return [line.split()[:3] for line in f]


def is_bpffs(path):
    """True when ``path`` (or its nearest existing parent) lies on a mounted bpffs."""
    path = os.path.realpath(path)
    best = ("", "")
    for _, mnt, fstype in _mounts():
        mnt = mnt.replace("\\040", " ")
        if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
            best = (mnt, fstype)
    return best[1] == "bpf"


class Action:
    def __init__(self, text, argv=None, func=None):
        self.text = text
        self.argv = argv
        self.func = func

    def run(self):
        if self.func is not None:
            self.func()
        else:
            _run(self.argv)

    def __repr__(self):
        return self.text


class NetnsProvider:
    """Realise a Topology with network namespaces, a bridge and veth pairs on this machine."""

    name = "netns"
    TOOLS = ("ip", "nsenter", "ethtool", "clang", "bpftool", "unshare")

    def __init__(self, topology, search_path=None):
        self.t = topology
        self.path = search_path or (os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin")
        self.bin = {}
        self._compiled_now = False

    # -- requirements ------------------------------------------------------------------------

    def _which(self, tool):
        found = shutil.which(tool, path=self.path)
        if not found:
            raise TopologyError(f"requirement: program {tool!r} not found on PATH "
                                "(run scripts/setup.sh)")
        self.bin[tool] = found
        return found

    def preflight(self, state="present"):
        """Check root, tools and kernel features. Changes nothing (probes run in a throwaway
        namespace that vanishes with its process)."""
        problems = []
        if os.geteuid() != 0:
            raise TopologyError(f"requirement: lab_netns must run as root (euid is {os.geteuid()}): "
                                "it creates network namespaces, links and XDP programs")
        tools = self.TOOLS if state == "present" else ("ip",)
        for tool in tools:
            try:
                self._which(tool)
            except TopologyError as e:
                problems.extend(e.problems)
        if problems:
            raise TopologyError(problems)
        if state != "present":
            return
        for name, probe in self.feature_probes():
            msg = probe()
            if msg:
                problems.append(f"requirement: kernel feature {name}: {msg}")
        if self.t.xdp_pass_src and not os.path.isfile(self.t.xdp_pass_src):
            problems.append(f"lab_topology_xdp_pass_src {self.t.xdp_pass_src} does not exist")
        if not is_bpffs(os.path.dirname(self.t.bpffs_dir)):
            problems.append(f"requirement: lab_bpffs_dir {self.t.bpffs_dir} is not on a mounted bpf "
                            "filesystem (mount -t bpf bpf /sys/fs/bpf)")
        if problems:
            raise TopologyError(problems)

    def feature_probes(self):
        return [("netns", self._probe_netns), ("bpf", self._probe_bpf),
                ("veth+bridge+xdp", self._probe_links)]

    @staticmethod
    def _probe_netns():
        if not os.path.exists("/proc/self/ns/net"):
            return "network namespaces are not available (CONFIG_NET_NS)"
        return None

    @staticmethod
    def _probe_bpf():
        if not os.path.exists("/proc/sys/kernel/unprivileged_bpf_disabled"):
            return "the bpf() syscall is not available (CONFIG_BPF_SYSCALL)"
        return None

    def _probe_links(self):
        """Create a veth pair and a bridge, and attach XDP natively, in throwaway network and
        mount namespaces (with a private bpffs, so iproute2's loader leaves no pins behind)."""
        with tempfile.TemporaryDirectory(prefix="lab-probe-") as tmp:
            obj = os.path.join(tmp, "xdp_pass.o")
            script = ("set -e; mount -t bpf bpf /sys/fs/bpf; "
                      "ip link add name p0 type veth peer name p1; "
                      "ip link add name b0 type bridge; ")
            if self.t.xdp_pass_src and os.path.isfile(self.t.xdp_pass_src):
                try:
                    self._compile(obj)
                except ProviderError as e:
                    return f"cannot compile the XDP_PASS program: {e}"
                script += f"ip link set dev p0 xdpdrv obj {obj} sec xdp"
            p = _run([self.bin["unshare"], "--net", "--mount", "--propagation", "private",
                      "/bin/sh", "-c", script], check=False)
            if p.returncode != 0:
                return ("cannot create a veth pair, a bridge, or attach native XDP to a veth in a "
                        f"network namespace: {p.stderr.strip()}")
        return None

    # -- inspection --------------------------------------------------------------------------

    def _ns_exists(self, ns):
        return os.path.exists(os.path.join(self.t.netns_dir, ns))

    def _links(self, ns):
        p = _run([self.bin.get("ip", "ip"), "-n", ns, "-j", "-d", "addr", "show"], check=False)
        if p.returncode != 0:
            return {}
        return {link["ifname"]: link for link in json.loads(p.stdout or "[]")}

    def _routes(self, ns, dst):
        p = _run([self.bin.get("ip", "ip"), "-n", ns, "-j", "route", "show", str(dst)], check=False)
        if p.returncode != 0:
            return []
        return json.loads(p.stdout or "[]")

    def _offload(self, ns, dev):
        p = _run([self.bin.get("nsenter", "nsenter"), f"--net={os.path.join(self.t.netns_dir, ns)}",
                  "--", self.bin.get("ethtool", "ethtool"), "-k", dev], check=False)
        out = {}
        for line in p.stdout.splitlines():
            if ":" in line and not line.startswith(("\t", " ")):
                k, v = line.split(":", 1)
                out[k.strip()] = v.strip().split()[0] if v.strip() else ""
        return out

    def current(self):
        """Snapshot of the real state of every namespace the topology names."""
        snap = {"namespaces": {}, "object_fresh": self._object_fresh(),
                "xdp_pin_id": self._pinned_prog_id()}
        for ns in self.t.namespaces:
            if not self._ns_exists(ns):
                continue
            entry = {"links": self._links(ns)}
            if ns != self.t.switch_ns and self.t.node_iface in entry["links"]:
                entry["offload"] = self._offload(ns, self.t.node_iface)
            snap["namespaces"][ns] = entry
        for n in self.t.nodes:
            if n.namespace in snap["namespaces"] and n.routes:
                snap["namespaces"][n.namespace]["routes"] = {
                    str(r.dst): self._routes(n.namespace, r.dst) for r in n.routes}
        return snap

    # -- xdp_pass object ---------------------------------------------------------------------

    def _pinned_prog_id(self):
        if not os.path.exists(self.t.xdp_pass_pin):
            return None
        p = _run([self.bin.get("bpftool", "bpftool"), "-j", "prog", "show", "pinned",
                  self.t.xdp_pass_pin], check=False)
        try:
            return json.loads(p.stdout).get("id") if p.returncode == 0 else None
        except ValueError:
            return None

    def _load_pin(self):
        pin = self.t.xdp_pass_pin
        if os.path.lexists(pin):
            os.unlink(pin)
        os.makedirs(os.path.dirname(pin), exist_ok=True)
        _run([self.bin.get("bpftool", "bpftool"), "prog", "load", self.t.xdp_pass_obj, pin,
              "type", "xdp"])

    def _src_digest(self):
        with open(self.t.xdp_pass_src, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    def _object_fresh(self):
        obj = self.t.xdp_pass_obj
        if not self.t.xdp_pass_src:
            return os.path.exists(obj)
        try:
            with open(obj + ".sha256", encoding="ascii") as f:
                return os.path.exists(obj) and f.read().strip() == self._src_digest()
        except OSError:
            return False

    def _compile(self, out):
        arch = os.uname().machine
        argv = [self.bin.get("clang", "clang"), "-O2", "-g", "-target", "bpf",
                f"-I/usr/include/{arch}-linux-gnu", "-c", self.t.xdp_pass_src, "-o", out]
        _run(argv)

    def _build_object(self):
        os.makedirs(self.t.state_dir, mode=0o755, exist_ok=True)
        obj = self.t.xdp_pass_obj
        tmp = obj + ".tmp"
        self._compile(tmp)
        os.replace(tmp, obj)
        with open(obj + ".sha256", "w", encoding="ascii") as f:
            f.write(self._src_digest() + "\n")
        self._compiled_now = True

    # -- planning ----------------------------------------------------------------------------

    def plan(self, state, snap=None):
        snap = snap if snap is not None else self.current()
        return self._plan_present(snap) if state == "present" else self._plan_absent(snap)

    def _ip(self, ns, *args):
        return [self.bin.get("ip", "ip"), "-n", ns] + [str(a) for a in args]

    def _plan_present(self, snap):
        t = self.t
        acts = []
        have = snap["namespaces"]
        if not snap["object_fresh"]:
            acts.append(Action(f"compile {t.xdp_pass_src} -> {t.xdp_pass_obj}",
                               func=self._build_object))
        reload_pin = not snap["object_fresh"] or snap["xdp_pin_id"] is None
        if reload_pin:
            acts.append(Action(f"load xdp_pass, pin at {t.xdp_pass_pin}", func=self._load_pin))
        for ns in t.namespaces:
            if ns not in have:
                acts.append(Action(f"add netns {ns}", [self.bin.get("ip", "ip"), "netns", "add", ns]))
        sw = t.switch_ns
        sw_links = have.get(sw, {}).get("links", {})
        br = sw_links.get(t.bridge)
        if br is not None and br.get("linkinfo", {}).get("info_kind") != "bridge":
            acts.append(Action(f"{sw}: delete non-bridge {t.bridge}", self._ip(sw, "link", "del", t.bridge)))
            br = None
        if br is None:
            acts.append(Action(f"{sw}: add bridge {t.bridge}",
                               self._ip(sw, "link", "add", "name", t.bridge, "type", "bridge")))
        if br is None or "UP" not in br.get("flags", []):
            acts.append(Action(f"{sw}: set {t.bridge} up", self._ip(sw, "link", "set", t.bridge, "up")))
        for n in t.nodes:
            acts.extend(self._plan_node(n, snap, sw_links, reload_pin))
        return acts

    def _plan_node(self, n, snap, sw_links, reload_pin):
        t = self.t
        sw, ns, dev = t.switch_ns, n.namespace, t.node_iface
        have_ns = snap["namespaces"].get(ns, {})
        links = have_ns.get("links", {})
        port = sw_links.get(n.link)
        eth = links.get(dev)
        acts = []
        paired = (port is not None and eth is not None
                  and port.get("linkinfo", {}).get("info_kind") == "veth"
                  and eth.get("linkinfo", {}).get("info_kind") == "veth"
                  and port.get("link_index") == eth.get("ifindex")
                  and eth.get("link_index") == port.get("ifindex")
                  and "link_netnsid" in port and "link_netnsid" in eth)
        if not paired:
            if port is not None:
                acts.append(Action(f"{sw}: delete stray {n.link}", self._ip(sw, "link", "del", n.link)))
            if eth is not None:
                acts.append(Action(f"{ns}: delete stray {dev}", self._ip(ns, "link", "del", dev)))
            acts.append(Action(f"{sw}: add veth {n.link} <-> {ns}:{dev} (mtu {n.mtu})",
                               self._ip(sw, "link", "add", "name", n.link, "mtu", n.mtu, "type", "veth",
                                        "peer", "name", dev, "mtu", n.mtu, "address", n.mac,
                                        "netns", ns)))
            port, eth, offload = {"mtu": n.mtu}, {"mtu": n.mtu}, {}
        else:
            offload = have_ns.get("offload", {})
        # switch side (both ends of the pair carry the node's MTU; the bridge follows its ports)
        if port.get("mtu") != n.mtu:
            acts.append(Action(f"{sw}: {n.link} mtu {n.mtu}", self._ip(sw, "link", "set", n.link, "mtu", n.mtu)))
        if port.get("master") != t.bridge:
            acts.append(Action(f"{sw}: {n.link} master {t.bridge}",
                               self._ip(sw, "link", "set", n.link, "master", t.bridge)))
        xdp = port.get("xdp", {})
        if (reload_pin or xdp.get("mode") != XDP_MODE_DRV
                or xdp.get("prog", {}).get("id") != snap["xdp_pin_id"]):
            acts.append(Action(f"{sw}: attach xdp_pass (native) to {n.link}",
                               [self.bin.get("nsenter", "nsenter"),
                                f"--net={os.path.join(t.netns_dir, sw)}", "--",
                                self.bin.get("bpftool", "bpftool"), "net", "attach", "xdpdrv",
                                "pinned", t.xdp_pass_pin, "dev", n.link, "overwrite"]))
        if "UP" not in port.get("flags", []):
            acts.append(Action(f"{sw}: set {n.link} up", self._ip(sw, "link", "set", n.link, "up")))
        # node side
        lo = links.get("lo", {})
        if "UP" not in lo.get("flags", []):
            acts.append(Action(f"{ns}: set lo up", self._ip(ns, "link", "set", "lo", "up")))
        if offload.get("rx-checksumming") != "off" or offload.get("tx-checksumming") != "off":
            acts.append(Action(f"{ns}: {dev} checksum offload rx off tx off",
                               [self.bin.get("nsenter", "nsenter"),
                                f"--net={os.path.join(t.netns_dir, ns)}", "--",
                                self.bin.get("ethtool", "ethtool"), "-K", dev, "rx", "off", "tx", "off"]))
        want = f"{n.ip}/{t.subnet.prefixlen}"
        addrs = [(a.get("local"), a.get("prefixlen")) for a in eth.get("addr_info", [])
                 if a.get("family") == "inet"]
        for local, plen in addrs:
            if (local, plen) != (str(n.ip), t.subnet.prefixlen) and \
                    ipaddress.IPv4Address(local) in t.subnet:
                acts.append(Action(f"{ns}: remove stale {local}/{plen} from {dev}",
                                   self._ip(ns, "addr", "del", f"{local}/{plen}", "dev", dev)))
        if (str(n.ip), t.subnet.prefixlen) not in addrs:
            acts.append(Action(f"{ns}: add {want} to {dev}", self._ip(ns, "addr", "add", want, "dev", dev)))
        if eth.get("mtu") != n.mtu:
            acts.append(Action(f"{ns}: {dev} mtu {n.mtu}", self._ip(ns, "link", "set", dev, "mtu", n.mtu)))
        if eth.get("address") and eth.get("address") != n.mac:
            acts.append(Action(f"{ns}: {dev} address {n.mac}",
                               self._ip(ns, "link", "set", dev, "address", n.mac)))
        if "UP" not in eth.get("flags", []):
            acts.append(Action(f"{ns}: set {dev} up", self._ip(ns, "link", "set", dev, "up")))
        routes = have_ns.get("routes", {})
        for r in n.routes:
            cur = routes.get(str(r.dst), []) if paired else []
            ok = any(x.get("gateway") == str(r.via) and x.get("dev") == dev for x in cur)
            if not ok:
                acts.append(Action(f"{ns}: route {r.dst} via {r.via}",
                                   self._ip(ns, "route", "replace", r.dst, "via", r.via, "dev", dev)))
        return acts

    def _plan_absent(self, snap):
        t = self.t
        acts = []
        present = [ns for ns in t.namespaces if ns in snap["namespaces"]]
        if present:
            inodes = {}
            for ns in present:
                try:
                    inodes[os.stat(os.path.join(t.netns_dir, ns)).st_ino] = ns
                except OSError:
                    pass
            pids = lab_pids(inodes)
            if pids:
                acts.append(Action(f"kill processes in lab namespaces: {sorted(pids)}",
                                   func=lambda: kill_pids(pids)))
            for ns in present:
                acts.append(Action(f"delete netns {ns}", [self.bin.get("ip", "ip"), "netns", "del", ns]))
        for d in (t.bpffs_dir, t.state_dir):
            if d and os.path.lexists(d):
                acts.append(Action(f"remove {d}", func=lambda d=d: _rmtree(d)))
        return acts

    # -- apply -------------------------------------------------------------------------------

    def apply(self, actions):
        done = []
        for a in actions:
            try:
                a.run()
            except ProviderError as e:
                raise ProviderError(f"{a.text}: {e}") from e
            done.append(a.text)
        return done

    # -- reporting ---------------------------------------------------------------------------

    def describe(self, snap):
        """Compact text of the state, for --diff."""
        lines = []
        for ns in self.t.namespaces:
            entry = snap["namespaces"].get(ns)
            if entry is None:
                continue
            lines.append(f"netns {ns}")
            for name, link in sorted(entry["links"].items()):
                addrs = ",".join(f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])
                                 if a.get("family") == "inet")
                bits = [link.get("linkinfo", {}).get("info_kind", "") or "",
                        "up" if "UP" in link.get("flags", []) else "down"]
                if name != "lo" and link.get("linkinfo", {}).get("info_kind") == "veth":
                    bits.append(f"mtu {link.get('mtu')}")
                if ns != self.t.switch_ns and name == self.t.node_iface:
                    bits.append(link.get("address", ""))
                if link.get("master"):
                    bits.append(f"master={link['master']}")
                if link.get("xdp", {}).get("prog"):
                    bits.append(f"xdp={link['xdp']['prog'].get('name')}")
                if addrs:
                    bits.append(addrs)
                lines.append(f"  {name}: {' '.join(b for b in bits if b)}")
            off = entry.get("offload")
            if off:
                lines.append(f"  offload rx={off.get('rx-checksumming')} tx={off.get('tx-checksumming')}")
            for dst, rs in sorted(entry.get("routes", {}).items()):
                for r in rs:
                    lines.append(f"  route {dst} via {r.get('gateway')} dev {r.get('dev')}")
        return "\n".join(lines) + ("\n" if lines else "")

    def describe_desired(self):
        t = self.t
        ports = {t.bridge: "bridge up", "lo": "down"}
        ports.update({n.link: f"veth up mtu {n.mtu} master={t.bridge} xdp=xdp_pass" for n in t.nodes})
        lines = [f"netns {t.switch_ns}"] + [f"  {k}: {v}" for k, v in sorted(ports.items())]
        for n in t.nodes:
            links = {t.node_iface: f"veth up mtu {n.mtu} {n.mac} {n.ip}/{t.subnet.prefixlen}",
                     "lo": "up 127.0.0.1/8"}
            lines.append(f"netns {n.namespace}")
            lines += [f"  {k}: {v}" for k, v in sorted(links.items())]
            lines.append("  offload rx=off tx=off")
            for r in n.routes:
                lines.append(f"  route {r.dst} via {r.via} dev {t.node_iface}")
        return "\n".join(lines) + "\n"


def _rmtree(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def lab_pids(inodes):
    """PIDs whose network namespace inode is one of ``inodes`` (robust without pid files)."""
    me = os.getpid()
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if st.st_ino in inodes:
            pids.add(int(entry))
    return pids


def kill_pids(pids, grace=2.0):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if _alive(p)}
        if alive:
            time.sleep(0.05)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


PROVIDERS = {"netns": NetnsProvider}


def get_provider(name, topology):
    try:
        return PROVIDERS[name](topology)
    except KeyError:
        raise TopologyError(f"lab_topology_provider {name!r} is not one of {', '.join(PROVIDERS)}")
