# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``netns`` provider: the lab as network namespaces, a Linux bridge and veth pairs on this
machine (the embedded default). Every link is created with ``ip -n <namespace>``: nothing is
ever added to the root namespace.

The switch ports' XDP_PASS program goes through the control-plane core like every program of
ours: compiled by ``build.compile_object``, loaded by ``program.load_object``, pinned, queried and
attached through ``xdp`` (libbpf), in the switch's namespace by ``procs.in_netns``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import signal
import tempfile

from ..l4lb import build, libbpf, platform, procs, xdp
from ..l4lb.errors import L4LBError
from ..l4lb.platform.linux import XDP_ATTACHED_DRV
from ..l4lb.program import load_object
from .model import TopologyError
from .provider import (Action, ProviderError, TopologyProvider, _in_netns, checksum_offload_is_off,
                       checksum_offload_off_argv, offload_features, register, run)


def _mounts():
    with open("/proc/self/mounts", encoding="utf-8") as f:
        return [line.split()[:3] for line in f]


def is_bpffs(path):
    """True when ``path`` (or its nearest existing parent) lies on a mounted bpffs."""
    path = os.path.realpath(path)
    best = ("", "")
    for _dev, mnt, fstype in _mounts():
        mnt = mnt.replace("\\040", " ")
        if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
            best = (mnt, fstype)
    return best[1] == "bpf"


@register
class NetnsProvider(TopologyProvider):
    """Realise a Topology with network namespaces, a bridge and veth pairs on this machine:
    namespace ``<prefix>-switch`` holds the bridge and the switch ports, ``<prefix>-<node>`` each
    node; the switch ports carry a native XDP_PASS (so the nodes' XDP_TX frames are not dropped
    by the peer veth)."""

    name = "netns"
    # clang is found the way build.compile_object finds it (build.find_clang); libbpf is the
    # core's ctypes adapter (the veth+bridge+xdp probe loads it).
    TOOLS = ("ip", "nsenter", "ethtool", "sysctl")

    def __init__(self, topology, search_path=None, netns_dir="/run/netns"):
        super().__init__(topology)
        self.path = search_path or (os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin")
        self.netns_dir = netns_dir
        self.bin = {}
        self.switch_ns = f"{topology.prefix}-switch"

    # -- naming ------------------------------------------------------------------------------

    def node_ns(self, n):
        return f"{self.t.prefix}-{n.name}"

    @property
    def namespaces(self):
        """Every namespace the lab owns: the switch first, then the nodes."""
        return [self.switch_ns] + [self.node_ns(n) for n in self.t.nodes]

    @property
    def xdp_pass_obj(self):
        return os.path.join(self.t.state_dir, "xdp_pass.o")

    @property
    def xdp_pass_pin(self):
        """The XDP_PASS program shared by every switch port, pinned below lab_bpffs_dir."""
        return os.path.join(self.t.bpffs_dir, "switch", "xdp_pass")

    def missing(self, snap):
        return [n.name for n in self.t.nodes if self.node_ns(n) not in snap["namespaces"]]

    def placement(self):
        return {"nodes": {n.name: {"connection": "netns", "namespace": self.node_ns(n)} for n in self.t.nodes},
                "capture": {"connection": "netns", "namespace": self.switch_ns,
                            "lb_ports": [n.link for n in self.t.nodes if n.role == "lb"]},
                "namespaces": self.namespaces}

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
            raise TopologyError(f"requirement: lab_topology (netns) must run as root (euid is {os.geteuid()}): "
                                "it creates network namespaces, links and XDP programs")
        for n in self.t.nodes:
            if n.os != "linux":
                problems.append(f"hostvars[{n.name}].lab_os {n.os!r}: a network namespace runs no "
                                f"{n.os.capitalize()}; for Windows hosts you have, use "
                                "lab_topology_provider: external (inventory/windows)")
            if n.name == "switch":
                problems.append("inventory_hostname 'switch' collides with the switch namespace "
                                f"{self.switch_ns}")
            if len(self.node_ns(n)) > 255:
                problems.append(f"lab_prefix {self.t.prefix!r}: namespace name for {n.name} too long")
        tools = self.TOOLS if state == "present" else ("ip",)
        for tool in tools:
            try:
                self._which(tool)
            except TopologyError as e:
                problems.extend(e.problems)
        if state == "present":
            try:
                build.find_clang()
            except L4LBError as e:
                problems.append(f"requirement: {e} (run scripts/setup.sh)")
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
        """Create a veth pair and a bridge, and attach XDP natively the way the switch ports get
        it, in a throwaway network namespace that vanishes with the probe (nothing is pinned: the
        program lives as long as its object)."""
        ip = self.bin.get("ip", "ip")
        with tempfile.TemporaryDirectory(prefix="lab-probe-") as tmp:
            obj = None
            if self.t.xdp_pass_src and os.path.isfile(self.t.xdp_pass_src):
                obj = os.path.join(tmp, "xdp_pass.o")
                try:
                    build.compile_object(self.t.xdp_pass_src, obj)
                except L4LBError as e:
                    return f"cannot compile the XDP_PASS program: {e}"

            def probe():
                run([ip, "link", "add", "name", "p0", "type", "veth", "peer", "name", "p1"])
                run([ip, "link", "add", "name", "b0", "type", "bridge"])
                if obj:
                    with load_object(obj) as loaded:
                        attach_native(platform.current().ifindex("p0"), loaded.program().fd, "p0")

            try:
                procs.in_netns(probe)
            except (ProviderError, L4LBError, OSError) as e:
                return ("cannot create a veth pair, a bridge, or attach native XDP to a veth in a "
                        f"network namespace: {e}")
        return None

    # -- inspection --------------------------------------------------------------------------

    def _ns_exists(self, ns):
        return os.path.exists(os.path.join(self.netns_dir, ns))

    def _links(self, ns):
        p = run([self.bin.get("ip", "ip"), "-n", ns, "-j", "-d", "addr", "show"], check=False)
        if p.returncode != 0:
            return {}
        return {link["ifname"]: link for link in json.loads(p.stdout or "[]")}

    def _routes(self, ns, dst):
        p = run([self.bin.get("ip", "ip"), "-n", ns, "-j", "route", "show", str(dst)], check=False)
        if p.returncode != 0:
            return []
        return json.loads(p.stdout or "[]")

    def _sysctl_path(self, name):
        return "/proc/sys/" + name.replace(".", "/")

    def _sysctls(self, ns, names):
        """Live values in ``ns`` (read by a process inside it: /proc/sys/net is per namespace)."""
        out = {}
        for name in names:
            p = run(_in_netns(["cat", self._sysctl_path(name)], ns, self.netns_dir), check=False)
            out[name] = p.stdout.strip() if p.returncode == 0 else None
        return out

    def _offload(self, ns, dev):
        return offload_features(dev, ns, self.netns_dir)

    def current(self):
        """Snapshot of the real state of every namespace the topology names."""
        snap = {"namespaces": {}, "object_fresh": self._object_fresh(),
                "xdp_pin_id": xdp.pinned_prog_id(self.xdp_pass_pin) or None}
        for ns in self.namespaces:
            if not self._ns_exists(ns):
                continue
            entry = {"links": self._links(ns)}
            if ns != self.switch_ns and self.t.node_iface in entry["links"]:
                entry["offload"] = self._offload(ns, self.t.node_iface)
            snap["namespaces"][ns] = entry
        for n in self.t.nodes:
            if self.node_ns(n) in snap["namespaces"] and n.routes:
                snap["namespaces"][self.node_ns(n)]["routes"] = {
                    str(r.dst): self._routes(self.node_ns(n), r.dst) for r in n.routes}
            if self.node_ns(n) in snap["namespaces"] and n.sysctls:
                snap["namespaces"][self.node_ns(n)]["sysctls"] = self._sysctls(self.node_ns(n), n.sysctls)
        return snap

    # -- xdp_pass object ---------------------------------------------------------------------

    def _in_ns(self, ns, func):
        """``func()`` in the lab namespace ``ns`` (procs.in_netns); core errors as ProviderError."""
        try:
            return procs.in_netns(func, os.path.join(self.netns_dir, ns))
        except (L4LBError, OSError) as e:
            raise ProviderError(str(e)) from e

    def _load_pin(self):
        """Load the object and pin its program at xdp_pass_pin (replacing the pin atomically)."""
        try:
            with load_object(self.xdp_pass_obj) as loaded:
                xdp.pin_fd(loaded.program().fd, self.xdp_pass_pin)
        except L4LBError as e:
            raise ProviderError(str(e)) from e

    def _attach_xdp_pass(self, port):
        """Attach the pinned XDP_PASS natively to the switch port (replacing whatever runs there)."""
        def attach():
            fd = libbpf.obj_get(self.xdp_pass_pin)
            try:
                attach_native(platform.current().ifindex(port), fd, port)
            finally:
                os.close(fd)

        self._in_ns(self.switch_ns, attach)

    # The object is rebuilt only when its source changed (the source's sha256 is kept beside
    # it). build.py has no freshness check: its callers compile every time and judge the result
    # by the kernel's tag; the lab keeps its one rarely changing object instead.
    def _src_digest(self):
        with open(self.t.xdp_pass_src, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    def _object_fresh(self):
        obj = self.xdp_pass_obj
        if not self.t.xdp_pass_src:
            return os.path.exists(obj)
        try:
            with open(obj + ".sha256", encoding="ascii") as f:
                return os.path.exists(obj) and f.read().strip() == self._src_digest()
        except OSError:
            return False

    def _build_object(self):
        os.makedirs(self.t.state_dir, mode=0o755, exist_ok=True)
        obj = self.xdp_pass_obj
        try:
            build.compile_object(self.t.xdp_pass_src, obj)  # atomic: temporary file, then rename
        except L4LBError as e:
            raise ProviderError(str(e)) from e
        with open(obj + ".sha256", "w", encoding="ascii") as f:
            f.write(self._src_digest() + "\n")

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
            acts.append(Action(f"compile {t.xdp_pass_src} -> {self.xdp_pass_obj}",
                               func=self._build_object))
        reload_pin = not snap["object_fresh"] or snap["xdp_pin_id"] is None
        if reload_pin:
            acts.append(Action(f"load xdp_pass, pin at {self.xdp_pass_pin}", func=self._load_pin))
        for ns in self.namespaces:
            if ns not in have:
                acts.append(Action(f"add netns {ns}", [self.bin.get("ip", "ip"), "netns", "add", ns]))
        sw = self.switch_ns
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
        sw, ns, dev = self.switch_ns, self.node_ns(n), t.node_iface
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
        on_port = port.get("xdp", {})  # iproute2's view: mode 1 is XDP_ATTACHED_DRV (native)
        if (reload_pin or on_port.get("mode") != XDP_ATTACHED_DRV
                or on_port.get("prog", {}).get("id") != snap["xdp_pin_id"]):
            acts.append(Action(f"{sw}: attach xdp_pass (native) to {n.link}",
                               func=lambda port=n.link: self._attach_xdp_pass(port)))
        if "UP" not in port.get("flags", []):
            acts.append(Action(f"{sw}: set {n.link} up", self._ip(sw, "link", "set", n.link, "up")))
        # node side
        lo = links.get("lo", {})
        if "UP" not in lo.get("flags", []):
            acts.append(Action(f"{ns}: set lo up", self._ip(ns, "link", "set", "lo", "up")))
        if not checksum_offload_is_off(offload):
            acts.append(Action(f"{ns}: {dev} checksum offload rx off tx off",
                               checksum_offload_off_argv(dev, ns, self.netns_dir)))
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
        # Sysctls before the routes: the ECMP route hashes on L4 from its first packet on.
        have_sysctls = have_ns.get("sysctls", {})
        for name, value in sorted(n.sysctls.items()):
            if have_sysctls.get(name) != value:
                acts.append(Action(f"{ns}: sysctl {name}={value}",
                                   _in_netns([self.bin.get("sysctl", "sysctl"), "-q", "-w", f"{name}={value}"],
                                             ns, self.netns_dir)))
        routes = have_ns.get("routes", {})
        for r in n.routes:
            cur = routes.get(str(r.dst), []) if paired else []
            if not any(route_hops(x) == route_want(r, dev) for x in cur):
                argv = self._ip(ns, "route", "replace", r.dst, *route_argv(r, dev))
                acts.append(Action(f"{ns}: route {r}", argv))
        return acts

    def _plan_absent(self, snap):
        t = self.t
        acts = []
        present = [ns for ns in self.namespaces if ns in snap["namespaces"]]
        if present:
            inodes = {}
            for ns in present:
                try:
                    inodes[os.stat(os.path.join(self.netns_dir, ns)).st_ino] = ns
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

    # -- reporting ---------------------------------------------------------------------------

    def describe(self, snap):
        """Compact text of the state, for --diff."""
        lines = []
        for ns in self.namespaces:
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
                if ns != self.switch_ns and name == self.t.node_iface:
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
            for name, value in sorted(entry.get("sysctls", {}).items()):
                lines.append(f"  sysctl {name}={value}")
            for dst, rs in sorted(entry.get("routes", {}).items()):
                for r in rs:
                    hops = " ".join(f"via {gw} dev {d}" for gw, d in sorted(route_hops(r)))
                    lines.append(f"  route {dst} {hops}")
        return "\n".join(lines) + ("\n" if lines else "")

    def describe_desired(self):
        t = self.t
        ports = {t.bridge: "bridge up", "lo": "down"}
        ports.update({n.link: f"veth up mtu {n.mtu} master={t.bridge} xdp=xdp_pass" for n in t.nodes})
        lines = [f"netns {self.switch_ns}"] + [f"  {k}: {v}" for k, v in sorted(ports.items())]
        for n in t.nodes:
            links = {t.node_iface: f"veth up mtu {n.mtu} {n.mac} {n.ip}/{t.subnet.prefixlen}",
                     "lo": "up 127.0.0.1/8"}
            lines.append(f"netns {self.node_ns(n)}")
            lines += [f"  {k}: {v}" for k, v in sorted(links.items())]
            lines.append("  offload rx=off tx=off")
            lines += [f"  sysctl {k}={v}" for k, v in sorted(n.sysctls.items())]
            for r in n.routes:
                hops = " ".join(f"via {gw} dev {d}" for gw, d in sorted(route_want(r, t.node_iface)))
                lines.append(f"  route {r.dst} {hops}")
        return "\n".join(lines) + "\n"


def route_hops(route):
    """The next hops of a route as ``ip -j route`` shows it: {(gateway, dev)}, one for a
    single-path route, each of ``nexthops`` for an ECMP route."""
    hops = route.get("nexthops") or [route]
    return {(h.get("gateway"), h.get("dev")) for h in hops}


def route_want(r, dev):
    """The next hops a model :class:`Route` asks for on ``dev``, as :func:`route_hops` reads them."""
    return {(str(h), dev) for h in r.nexthops}


def route_argv(r, dev):
    """``ip route replace <dst>``'s arguments for a model :class:`Route`: ``via X dev D``, or one
    ``nexthop via X dev D`` per next hop of an ECMP route."""
    if not r.ecmp:
        return ["via", str(r.via), "dev", dev]
    argv = []
    for h in r.nexthops:
        argv += ["nexthop", "via", str(h), "dev", dev]
    return argv


def attach_native(ifindex, prog_fd, dev):
    """Attach ``prog_fd`` to ``dev`` in native mode through the core's XDP life cycle (atomic
    replacement of a native program). Native only: a generic program would not make the peer veth
    NAPI-ready, so xdp.attach's generic fallback is undone and refused."""
    used, _atomic = xdp.attach(ifindex, prog_fd, "native", xdp.attached(ifindex))
    if used != "native":
        xdp.detach(ifindex, used)
        raise L4LBError(f"{dev} refused native XDP (only generic was accepted)")


def _rmtree(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def lab_pids(inodes):
    """PIDs whose network namespace inode is one of ``inodes`` (robust without pid files)."""
    return procs.pids_in_netns(inodes)


def kill_pids(pids, grace=2.0):
    """SIGTERM, up to ``grace`` seconds, then SIGKILL for the ones left."""
    procs.terminate(pids, ((signal.SIGTERM, grace), (signal.SIGKILL, 0)))
