# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``libvirt`` provider: the seed's lab as real guests.

The internal switch is an isolated libvirt network ``<prefix>-switch`` (bridge ``<prefix>-br``)
whose host address is the client node's address (the seed's host is the client) and which
carries the static route ``<lab_vip_range> via <lb>`` (every VIP a service may use). Every
other node is a domain ``<prefix>-<node>`` booted directly from a base image's kernel and
initrd, with a qcow2 overlay in the storage pool ``<prefix>-pool``; the node's hostname, address and the lab's SSH key are on its kernel command
line (``lab_image.kernel_cmdline``), so no first-boot service fetches anything.

Where the hypervisor's host side lives is the ``confined`` setting: True runs the lab's own
libvirtd inside the namespace ``<prefix>-host`` (``libvirt_daemon``), which then plays the
seed's host and client and leaves the root namespace untouched; False uses ``uri`` (a user's
``qemu:///system`` or ``qemu+ssh://host/system``), whose network then adds the client address
and the VIP range's route to that host, as the seed does with its VIP.

Windows guests (``lab_os: windows``) boot a user's Windows image (sysprepped, with cloudbase-init
and the virtio drivers, as OpenStack images are) from its disk, with a cloudbase-init config drive
(a seed volume labelled ``config-2``, :func:`cloudbase_seed`) carrying the node's static address,
the administrator password, and a first-boot script that imports a WinRM certificate the lab
made (signed by the lab's CA, so the controller validates it) and listens for WinRM on HTTPS.

Only objects this provider made are ever changed: a domain carries the lab's metadata element,
the network its bridge and host address, the pool its directory. Anything else with a colliding
name is refused before any change.

libvirt-python is imported when a connection is first needed, so the model, validation and
tests that inject a connection (``test:///default``) need nothing more.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import urllib.parse
import xml.etree.ElementTree as ET

from ..l4lb import procs
from ..lab_image import CMDLINE_BASE, ImageError, kernel_cmdline, nocloud_seed
from . import libvirt_daemon
from .guest_seed import SEED_VOLUMES, cloudbase_seed, read_seed, write_seed
from .model import TopologyError
from .provider import (Action, ProviderError, TopologyProvider, checksum_offload_is_off,
                       checksum_offload_off_argv, offload_features, register, run)

METADATA_NS = "https://github.com/l4lb-lab/l4lb/ns/lab/1"
NODE_OSES = ("linux", "windows")
SEEDS = ("auto", "cmdline", "nocloud", "configdrive")
# Windows Server 2022 asks for 2 GiB at least.
WINDOWS_MIN_MEMORY_MB = 2048
DOMAIN_TYPES = ("auto", "kvm", "qemu")
DEFAULT_MEMORY_MB = 1024
DEFAULT_VCPUS = 1
# What one guest's overlay may grow to in a lab run (packages are in the base; logs, builds).
OVERLAY_GROWTH_MB = 1024
_VIR_DOMAIN_XML_INACTIVE = 2


class Machine:
    """What the libvirt provider needs per node beyond the model: memory, vCPUs, the image to
    boot and the node's OS. Built from the module's ``machines`` option.

    How the node learns who it is (``seed``): with a ``kernel`` (the image lab_image builds) it
    is booted directly with the lab's kernel command line (``cmdline``); without one it boots
    the image's own bootloader and cloud-init reads a NoCloud seed volume (``nocloud``), which
    is what a stock cloud image (the seed's Ubuntu) understands. ``seed`` set explicitly
    overrides that choice (``nocloud`` with a kernel: booted directly, configured by cloud-init).
    A Windows node boots its image's own loader with a cloudbase-init config drive
    (``configdrive``), holding its WinRM certificate (``winrm_pfx``, PKCS#12, and its passphrase).
    """

    def __init__(self, name, memory_mb=DEFAULT_MEMORY_MB, vcpus=DEFAULT_VCPUS, image=None,
                 kernel=None, initrd=None, os_name="linux", mac=None, seed=None, winrm_pfx=None,
                 winrm_pfx_passphrase=None):
        self.name = name
        self.memory_mb = memory_mb
        self.vcpus = vcpus
        self.image = image
        self.kernel = kernel
        self.initrd = initrd
        self.os = os_name
        self.mac = mac
        self.seed_setting = seed or "auto"
        self.winrm_pfx = winrm_pfx
        self.winrm_pfx_passphrase = winrm_pfx_passphrase or ""

    @property
    def seed(self):
        if self.seed_setting != "auto":
            return self.seed_setting
        if self.os == "windows":
            return "configdrive"
        return "cmdline" if self.kernel else "nocloud"


def _cpu_has_virtualisation(cpuinfo="/proc/cpuinfo"):
    """True when this machine's CPU offers hardware virtualisation (vmx or svm)."""
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            return any(line.startswith("flags") and ({"vmx", "svm"} & set(line.split()))
                       for line in f)
    except OSError:
        return False


def _text(el, path, default=None):
    found = el.find(path)
    return found.text if found is not None and found.text is not None else default


def _memory_kib(el):
    """<memory unit=...>N</memory> as KiB (libvirt stores KiB; we write MiB)."""
    mem = el.find("memory")
    if mem is None:
        return None
    scale = {"KiB": 1, "k": 1, "K": 1, "MiB": 1024, "M": 1024, "GiB": 1024 ** 2, "G": 1024 ** 2}
    return int(mem.text) * scale.get(mem.get("unit", "KiB"), 1)


def domain_signature(xml):
    """The fields of a domain this provider sets, read from its XML (``XMLDesc`` adds many
    defaults; only these decide whether the domain is as wanted)."""
    root = ET.fromstring(xml)
    iface = root.find("devices/interface")
    disk = root.find("devices/disk")
    serial = root.find("devices/serial/source")
    owner = root.find(f"metadata/{{{METADATA_NS}}}lab")
    return {
        "type": root.get("type"),
        "memory_kib": _memory_kib(root),
        "vcpus": int(_text(root, "vcpu", "0")),
        "kernel": _text(root, "os/kernel"),
        "initrd": _text(root, "os/initrd"),
        "cmdline": _text(root, "os/cmdline"),
        "disk": disk.find("source").get("file") if disk is not None and disk.find("source") is not None
        else None,
        "mac": iface.find("mac").get("address") if iface is not None and iface.find("mac") is not None
        else None,
        "network": iface.find("source").get("network") if iface is not None and iface.find("source") is not None
        else None,
        "tap": iface.find("target").get("dev") if iface is not None and iface.find("target") is not None
        else None,
        "mtu": int(iface.find("mtu").get("size")) if iface is not None and iface.find("mtu") is not None
        else None,
        "queues": iface.find("driver").get("queues") if iface is not None and iface.find("driver") is not None
        else None,
        "console_log": serial.get("path") if serial is not None else None,
        "owner": owner.get("prefix") if owner is not None else None,
        "seed": owner.get("seed") if owner is not None else None,
    }


def network_signature(xml):
    root = ET.fromstring(xml)
    ip = root.find("ip")
    routes = sorted(f"{r.get('address')}/{r.get('prefix')} via {r.get('gateway')}"
                    for r in root.findall("route"))
    mtu = root.find("mtu")
    return {
        "bridge": root.find("bridge").get("name") if root.find("bridge") is not None else None,
        "forward": root.find("forward").get("mode", "nat") if root.find("forward") is not None else None,
        "ip": f"{ip.get('address')}/{ip.get('prefix') or ip.get('netmask')}" if ip is not None else None,
        "dhcp": ip is not None and ip.find("dhcp") is not None,
        "mtu": int(mtu.get("size")) if mtu is not None else None,
        "routes": routes,
    }


def _ssh_answers(ip, port, timeout=3.0):
    """True when an SSH server's banner comes back from ip:port."""
    try:
        with socket.create_connection((ip, port), timeout=timeout) as sock:
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _port_answers(ip, port, timeout=3.0):
    """True when ip:port accepts a TCP connection (a Windows guest's WinRM HTTPS listener: it
    listens only once its first-boot script ran)."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def _remove_dir(path):
    """Remove ``path``, and its parent when that is the default ``l4lb-lab`` directory and now
    empty (the next lab makes it again). Gone already is done: stopping the daemon removes an
    otherwise empty state dir."""
    if os.path.isdir(path):
        shutil.rmtree(path)
    parent = os.path.dirname(path.rstrip("/"))
    if os.path.basename(parent) == "l4lb-lab" and not os.listdir(parent):
        os.rmdir(parent)


class ConfinedDaemon:
    """The lab's own libvirtd in namespace ``<prefix>-host`` (``libvirt_daemon``), as the
    provider sees it: running or not, its URI, start and stop."""

    def __init__(self, prefix, state_dir):
        self.prefix = prefix
        self.state_dir = state_dir

    @property
    def uri(self):
        return libvirt_daemon.uri(self.prefix, self.state_dir)

    def status(self):
        return libvirt_daemon.status(self.prefix, self.state_dir)

    def running(self):
        return bool(self.status().get("running"))

    def validate(self):
        """Its own requirements (tools, a usable state dir); TopologyError names them."""
        try:
            libvirt_daemon.validate(self.prefix, self.state_dir)
        except libvirt_daemon.DaemonError as e:
            raise TopologyError(f"lab_libvirt_confined: {e}") from None

    def start(self):
        try:
            libvirt_daemon.start(self.prefix, self.state_dir)
        except libvirt_daemon.DaemonError as e:
            raise ProviderError(str(e)) from None

    def stop(self):
        try:
            libvirt_daemon.stop(self.prefix, self.state_dir, remove_netns=True)
        except libvirt_daemon.DaemonError as e:
            raise ProviderError(str(e)) from None

    @staticmethod
    def anything_left(status):
        """True when the daemon, a process it started, its directories or its namespace exist."""
        return bool(status.get("running") or status.get("daemon_pids") or status.get("children")
                    or status.get("stray") or status.get("dirs") or status.get("netns_exists"))


@register
class LibvirtProvider(TopologyProvider):
    """Realise a Topology as libvirt guests on an isolated network (see the module docstring)."""

    name = "libvirt"

    def __init__(self, topology, uri="qemu:///system", confined=True, lab_dir=None,
                 domain_type="auto", ssh_pubkey=None, machines=None, connect=None, daemon=None,
                 windows_admin_password=None):
        """``machines``: dicts (the module's ``libvirt.machines``) or :class:`Machine`;
        ``connect``: a function uri -> connection (tests inject ``test:///default``);
        ``daemon``: the confined daemon (default: :class:`ConfinedDaemon` when ``confined``)."""
        super().__init__(topology)
        p = topology.prefix
        self.uri = uri
        self.confined = confined
        self.lab_dir = lab_dir or f"/var/lib/l4lb-lab/{p}"
        self.domain_type_setting = domain_type
        self.ssh_pubkey = (ssh_pubkey or "").strip()
        self.machines = {}
        for m in machines or []:
            if isinstance(m, dict):
                m = Machine(m["name"], memory_mb=m.get("memory_mb", DEFAULT_MEMORY_MB),
                            vcpus=m.get("vcpus", DEFAULT_VCPUS), image=m.get("image"),
                            kernel=m.get("kernel"), initrd=m.get("initrd"),
                            os_name=m.get("os") or "linux", mac=m.get("mac"), seed=m.get("seed"),
                            winrm_pfx=m.get("winrm_pfx"), winrm_pfx_passphrase=m.get("winrm_pfx_passphrase"))
            self.machines[m.name] = m
        self._connect = connect
        self._conn = None
        if confined and daemon is None:
            daemon = ConfinedDaemon(p, topology.state_dir)
        self.daemon = daemon if confined else None
        self.network_name = f"{p}-switch"
        self.bridge = f"{p}-br"
        self.pool_name = f"{p}-pool"
        self.host_ns = f"{p}-host"
        self.warnings = []
        self._virt_type = None
        self.windows_admin_password = windows_admin_password or ""

    # -- naming ------------------------------------------------------------------------------

    @property
    def guests(self):
        """The nodes that are domains: all but the client, which is the hypervisor's host."""
        return [n for n in self.t.nodes if n.role != "client"]

    @property
    def client(self):
        clients = [n for n in self.t.nodes if n.role == "client"]
        return clients[0] if clients else None

    def domain_name(self, n):
        return f"{self.t.prefix}-{n.name}"

    @property
    def pool_dir(self):
        return os.path.join(self.lab_dir, "pool")

    def overlay(self, n):
        return os.path.join(self.pool_dir, f"{n.name}.qcow2")

    def tap(self, n):
        """The node's port on the switch (the host side of its virtio-net device)."""
        return f"{self.t.prefix}-{n.name}"

    @property
    def console_dir(self):
        return os.path.join(self.lab_dir, "console")

    def console_log(self, n):
        return os.path.join(self.console_dir, f"{n.name}.log")

    @property
    def seed_dir(self):
        return os.path.join(self.lab_dir, "seed")

    def seed_path(self, n):
        return os.path.join(self.seed_dir, f"{n.name}.iso")

    def seed_files(self, n):
        """The seed volume's files of a guest that boots its own image (Machine.seed: a NoCloud
        seed, or a Windows guest's config drive), else None."""
        m = self.machine(n)
        if m.seed == "nocloud":
            return nocloud_seed(n.name, f"{n.ip}/{self.t.subnet.prefixlen}", n.mtu, self.ssh_pubkey, self.mac(n))
        if m.seed == "configdrive":
            with open(m.winrm_pfx, "rb") as f:
                pfx = f.read()
            return cloudbase_seed(n.name, f"{n.ip}/{self.t.subnet.prefixlen}", n.mtu, self.mac(n),
                                  self.windows_admin_password, pfx, m.winrm_pfx_passphrase)
        return None

    def seed_id(self, n, files):
        """The instance id the seed's files name (recorded in the domain's definition)."""
        _label, name, key = SEED_VOLUMES[self.machine(n).seed]
        return json.loads(files[name])[key]

    def write_seed(self, n, files):
        label = SEED_VOLUMES[self.machine(n).seed][0]
        # a config drive holds the administrator password: root only
        write_seed(self.seed_path(n), files, label=label, mode=0o600 if label == "config-2" else 0o644)

    @property
    def known_hosts(self):
        return os.path.join(self.lab_dir, "known_hosts")

    def machine(self, n):
        return self.machines.get(n.name) or Machine(n.name)

    def mac(self, n):
        return self.machine(n).mac or n.mac

    def missing(self, snap):
        """Guests whose domain is not defined or not running; the client too when it is the
        confined daemon's namespace and the daemon does not run."""
        out = [n.name for n in self.guests if not snap["domains"].get(n.name, {}).get("active")]
        if self.client is not None and self.confined and not (snap.get("daemon") or {}).get("running"):
            out.append(self.client.name)
        return out

    def placement(self):
        nodes = {n.name: {"connection": "ssh", "host": str(n.ip), "domain": self.domain_name(n)}
                 for n in self.guests}
        if self.client is not None:
            nodes[self.client.name] = ({"connection": "netns", "namespace": self.host_ns}
                                       if self.confined else {"connection": "local"})
        capture = {"connection": "netns" if self.confined else "local", "bridge": self.bridge,
                   "lb_ports": [self.tap(n) for n in self.guests if n.role == "lb"]}
        if self.confined:
            capture["namespace"] = self.host_ns
        return {"nodes": nodes, "capture": capture, "uri": self.effective_uri,
                "known_hosts": self.known_hosts, "namespaces": [self.host_ns] if self.confined else []}

    def wait_ready(self, timeout, port=22):
        """Until each guest's sshd answers on its switch address (its banner read), probed from
        the client's side of the switch: the confined host namespace, or this one. A guest that
        is up answers at once, so a rerun does not wait. None when the switch is not on this
        machine (a remote hypervisor): the playbook's wait_for_connection covers that case."""
        if not self.bridge_is_local:
            return None
        pending = {n.name: str(n.ip) for n in self.guests}
        windows = {n.name for n in self.guests if self.machine(n).seed == "configdrive"}

        def probe():
            for name, ip in list(pending.items()):
                if _port_answers(ip, 5986) if name in windows else _ssh_answers(ip, port):
                    del pending[name]

        deadline = time.monotonic() + timeout
        while True:
            if self.confined:
                procs.in_netns(probe, os.path.join("/run/netns", self.host_ns))
            else:
                probe()
            if not pending:
                return [n.name for n in self.guests]
            if time.monotonic() >= deadline:
                logs = ", ".join(self.console_log(n) for n in self.guests if n.name in pending)
                how = " (WinRM on 5986 for the Windows ones)" if windows & set(pending) else ""
                raise ProviderError(f"guests {', '.join(sorted(pending))} did not answer SSH{how} within "
                                    f"{timeout:g} s (lab_guest_boot_timeout); their consoles: {logs}")
            time.sleep(2)

    @property
    def effective_uri(self):
        return self.daemon.uri if self.confined and self.daemon is not None else self.uri

    # -- connection --------------------------------------------------------------------------

    def conn(self):
        if self._conn is None:
            uri = self.effective_uri
            try:
                if self._connect is not None:
                    self._conn = self._connect(uri)
                else:
                    import libvirt  # pylint: disable=import-outside-toplevel
                    # lookups of absent objects are expected; libvirt would print each to stderr
                    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
                    self._conn = libvirt.open(uri)
            except ImportError:
                raise TopologyError("requirement: the libvirt Python binding (libvirt-python) is "
                                    "not installed (run scripts/setup.sh)") from None
            except Exception as e:  # libvirt.libvirtError, without importing libvirt here
                raise TopologyError(f"lab_libvirt_uri {uri!r} cannot be reached: {e}") from None
        return self._conn

    # -- requirements and input --------------------------------------------------------------

    def preflight(self, state="present"):
        """Input only this provider cares about, then the hypervisor (reachable, kvm or not,
        enough memory and disk). Changes nothing."""
        problems = []
        t = self.t
        if len(self.bridge) > 15:
            problems.append(f"lab_prefix {t.prefix!r} is too long for the libvirt bridge name "
                            f"{self.bridge!r} (at most 15 characters)")
        for n in self.guests:
            if len(self.tap(n)) > 15 or self.tap(n).startswith(("vnet", "macvtap", "macvlan")):
                problems.append(f"lab_prefix {t.prefix!r} with inventory_hostname {n.name!r}: the "
                                f"switch port {self.tap(n)!r} must be at most 15 characters and "
                                "not start with libvirt's vnet/macvtap/macvlan")
        if self.domain_type_setting not in DOMAIN_TYPES:
            problems.append(f"lab_libvirt_domain_type {self.domain_type_setting!r} must be one of "
                            f"{', '.join(DOMAIN_TYPES)}")
        clients = [n for n in t.nodes if n.role == "client"]
        if len(clients) > 1:
            problems.append("clients: the libvirt provider's client is the hypervisor's host, so "
                            f"the group holds at most one host (found {', '.join(c.name for c in clients)})")
        for c in clients:
            for r in c.routes:
                if r.ecmp:
                    problems.append(f"lab_vip_range {r.dst}: a libvirt network's <route> has one "
                                    f"gateway, so it cannot spread the range over the LB tier "
                                    f"({', '.join(str(h) for h in r.nexthops)})")
        unknown = sorted(set(self.machines) - {n.name for n in self.guests})
        for name in unknown:
            problems.append(f"lab_libvirt machines: {name!r} is not a lab node that is a guest")
        if state == "present":
            problems += self._check_machines()
            if not self.ssh_pubkey:
                problems.append("lab_libvirt_ssh_pubkey is empty: guests are reached only by the "
                                "lab's SSH key")
        if state == "present" and any(self.machine(n).seed in SEED_VOLUMES for n in self.guests) \
                and not shutil.which("xorriso"):
            problems.append("xorriso is not installed: guests booting an image of their own (no "
                            "lab_image_kernel) get a NoCloud seed volume, Windows guests a config "
                            "drive, that xorriso writes (scripts/setup.sh installs it)")
        if problems:
            raise TopologyError(problems)
        if state != "present":
            return
        if self.confined:
            self.daemon.validate()
            if not self.daemon_running():
                return  # a fresh confined daemon: nothing to reach yet (checked once it runs)
        self._check_hypervisor()

    def _check_machines(self):
        problems = []
        macs = {}
        for n in self.guests:
            m = self.machine(n)
            host = f"hostvars[{n.name}]"
            if m.seed_setting not in SEEDS:
                problems.append(f"{host}.lab_image_seed {m.seed_setting!r} must be one of {', '.join(SEEDS)}")
            if m.os not in NODE_OSES:
                problems.append(f"{host}.lab_os {m.os!r} must be one of {', '.join(NODE_OSES)}")
            elif m.os == "windows" or n.os == "windows":
                problems += self._check_windows(n, m, host)
            if isinstance(m.memory_mb, bool) or not isinstance(m.memory_mb, int) or not 256 <= m.memory_mb <= 65536:
                problems.append(f"{host}.lab_memory_mb {m.memory_mb!r} must be an integer in 256..65536")
            if isinstance(m.vcpus, bool) or not isinstance(m.vcpus, int) or not 1 <= m.vcpus <= 64:
                problems.append(f"{host}.lab_vcpus {m.vcpus!r} must be an integer in 1..64")
            paths = [("lab_image", m.image)]
            if m.seed == "cmdline" or (m.initrd and m.seed != "configdrive"):
                paths += [("lab_image_kernel", m.kernel), ("lab_image_initrd", m.initrd)]
            for var, path in paths:
                if not path:
                    problems.append(f"{host}.{var} is not set (the lab_image role builds one; an image "
                                    "of your own without lab_image_kernel boots its own bootloader "
                                    "with a NoCloud seed)")
                elif not os.path.isabs(path):
                    problems.append(f"{host}.{var} {path!r} must be an absolute path")
                elif not os.path.isfile(path):
                    problems.append(f"{host}.{var} {path} does not exist")
            if not problems and self.ssh_pubkey:
                try:
                    if m.seed in SEED_VOLUMES:
                        self.seed_files(n)
                    else:
                        self.cmdline(n)
                except ImageError as e:
                    problems.append(f"{host}: its first-boot settings ({m.seed}) cannot be made: {e}")
            mac = self.mac(n).lower()
            if mac in macs:
                problems.append(f"{host}.lab_mac {mac} duplicates hostvars[{macs[mac]}].lab_mac")
            macs[mac] = n.name
        return problems

    def _check_windows(self, n, m, host):
        """What a Windows guest needs beyond a Linux one: a config drive (its seed), with the
        WinRM certificate and the administrator password, and memory; its config drive is made
        on this machine."""
        problems = []
        if m.seed != "configdrive":
            problems.append(f"{host}.lab_image_seed {m.seed_setting!r}: a Windows guest boots with a "
                            "cloudbase-init config drive (auto or configdrive)")
        if not m.winrm_pfx:
            problems.append(f"{host}: a Windows guest needs its WinRM certificate (PKCS#12, the "
                            "lab_topology role makes it: machines[].winrm_pfx)")
        elif not os.path.isabs(m.winrm_pfx) or not os.path.isfile(m.winrm_pfx):
            problems.append(f"{host}: winrm_pfx {m.winrm_pfx} does not exist")
        if not self.windows_admin_password:
            problems.append(f"{host}: a Windows guest needs the administrator password "
                            "(lab_winrm_password: L4LB_WINRM_PASSWORD or vault_lab_winrm_password)")
        if not isinstance(m.memory_mb, bool) and isinstance(m.memory_mb, int) and m.memory_mb < WINDOWS_MIN_MEMORY_MB:
            problems.append(f"{host}.lab_memory_mb {m.memory_mb} is too little for Windows Server 2022 "
                            f"(at least {WINDOWS_MIN_MEMORY_MB})")
        if not self.confined and urllib.parse.urlparse(self.uri).netloc:
            problems.append(f"{host}: a Windows guest's config drive is made on this machine, so "
                            f"lab_libvirt_uri {self.uri!r} must be a local hypervisor")
        return problems

    def daemon_running(self):
        return self.daemon is not None and self.daemon.running()

    def _check_hypervisor(self):
        """Reachable, the domain type it offers, enough memory and disk for the guests."""
        conn = self.conn()
        problems = []
        self.virt_type()
        want_mb = sum(self.machine(n).memory_mb for n in self.guests)
        have_mb = self._existing_memory_mb()
        try:
            free_mb = conn.getFreeMemory() // (1024 * 1024)
        except Exception:  # pylint: disable=broad-except
            free_mb = None
        if free_mb is not None and want_mb - have_mb > free_mb:
            problems.append(f"lab_memory_mb: the guests need {want_mb} MiB ({want_mb - have_mb} MiB "
                            f"more than the lab's running guests hold) but the hypervisor has "
                            f"{free_mb} MiB free")
        need_disk = OVERLAY_GROWTH_MB * len(self.guests)
        probe = self.lab_dir
        while probe and not os.path.exists(probe):
            probe = os.path.dirname(probe)
        if probe:
            st = os.statvfs(probe)
            free_disk = st.f_bavail * st.f_frsize // (1024 * 1024)
            if free_disk < need_disk:
                problems.append(f"lab_libvirt_dir {self.lab_dir}: {free_disk} MiB free, the guests' "
                                f"overlays need up to {need_disk} MiB")
        problems += self._foreign_objects()
        if problems:
            raise TopologyError(problems)

    def _existing_memory_mb(self):
        total = 0
        for n in self.guests:
            dom = self._lookup("domain", self.domain_name(n))
            if dom is not None and dom.isActive():
                total += dom.info()[1] // 1024
        return total

    def virt_type(self):
        """kvm where the hypervisor offers it, else qemu (TCG) with a warning."""
        if self._virt_type is not None:
            return self._virt_type
        want = self.domain_type_setting
        has_kvm = False
        if want in ("auto", "kvm"):
            try:
                caps = ET.fromstring(self.conn().getCapabilities())
                has_kvm = any(d.get("type") == "kvm" for d in caps.iter("domain"))
            except Exception:  # pylint: disable=broad-except
                has_kvm = False
            # libvirt offers kvm whenever /dev/kvm opens, also where the CPU lacks VT-x/AMD-V
            # (a guest without nested virtualisation) and every kvm guest then dies at start;
            # a hypervisor on this machine is judged by the CPU's own flags too
            if has_kvm and self.bridge_is_local and not _cpu_has_virtualisation():
                has_kvm = False
        if want == "kvm" and not has_kvm:
            raise TopologyError("lab_libvirt_domain_type 'kvm': the hypervisor offers no kvm domains "
                                "(/dev/kvm missing or unusable); use auto or qemu")
        self._virt_type = "kvm" if (want == "kvm" or (want == "auto" and has_kvm)) else "qemu"
        if self._virt_type == "qemu" and want == "auto":
            self.warnings.append("no usable KVM on the hypervisor: guests run under qemu's TCG "
                                 "(software emulation), several times slower")
        return self._virt_type

    @property
    def domain_type(self):
        """The domain type once the hypervisor was asked (None before)."""
        return self._virt_type

    def _lookup(self, kind, name):
        conn = self.conn()
        fn = {"domain": conn.lookupByName, "network": conn.networkLookupByName,
              "pool": conn.storagePoolLookupByName}[kind]
        try:
            return fn(name)
        except Exception:  # libvirtError: no such object
            return None

    def _foreign_objects(self):
        """Objects with the lab's names that the lab did not make: refused, never changed."""
        problems = []
        net = self._lookup("network", self.network_name)
        if net is not None:
            sig = network_signature(net.XMLDesc(0))
            if sig["bridge"] != self.bridge or sig["forward"] is not None:
                problems.append(f"lab_prefix {self.t.prefix!r}: libvirt network {self.network_name} "
                                f"exists and is not the lab's (bridge {sig['bridge']}, forward "
                                f"{sig['forward']}); remove it or choose another lab_prefix")
        pool = self._lookup("pool", self.pool_name)
        if pool is not None:
            path = _text(ET.fromstring(pool.XMLDesc(0)), "target/path")
            if os.path.normpath(path or "") != os.path.normpath(self.pool_dir):
                problems.append(f"lab_prefix {self.t.prefix!r}: libvirt pool {self.pool_name} exists "
                                f"at {path}, not at the lab's {self.pool_dir}; remove it or choose "
                                "another lab_prefix")
        for n in self.guests:
            dom = self._lookup("domain", self.domain_name(n))
            if dom is not None and domain_signature(dom.XMLDesc(_VIR_DOMAIN_XML_INACTIVE))["owner"] != self.t.prefix:
                problems.append(f"lab_prefix {self.t.prefix!r}: libvirt domain {self.domain_name(n)} "
                                "exists and was not made by this lab; remove it or choose another "
                                "lab_prefix")
        return problems

    # -- desired XML -------------------------------------------------------------------------

    def network_xml(self):
        t = self.t
        net = ET.Element("network")
        ET.SubElement(net, "name").text = self.network_name
        ET.SubElement(net, "bridge", name=self.bridge, stp="off", delay="0")
        client = self.client
        ET.SubElement(net, "mtu", size=str(client.mtu if client else 1500))
        ET.SubElement(net, "dns", enable="no")
        if client is not None:
            ET.SubElement(net, "ip", address=str(client.ip), prefix=str(t.subnet.prefixlen))
            # The client's route to the VIP range (lab_vip_range) through the LB node; one
            # gateway per <route>, so an ECMP route is refused by preflight.
            for r in client.routes:
                ET.SubElement(net, "route", address=str(r.dst.network_address),
                              prefix=str(r.dst.prefixlen), gateway=str(r.via))
        return ET.tostring(net, encoding="unicode")

    def pool_xml(self):
        pool = ET.Element("pool", type="dir")
        ET.SubElement(pool, "name").text = self.pool_name
        target = ET.SubElement(pool, "target")
        ET.SubElement(target, "path").text = self.pool_dir
        return ET.tostring(pool, encoding="unicode")

    def volume_xml(self, n, capacity):
        m = self.machine(n)
        vol = ET.Element("volume")
        ET.SubElement(vol, "name").text = os.path.basename(self.overlay(n))
        ET.SubElement(vol, "capacity", unit="bytes").text = str(capacity)
        target = ET.SubElement(vol, "target")
        ET.SubElement(target, "format", type="qcow2")
        backing = ET.SubElement(vol, "backingStore")
        ET.SubElement(backing, "path").text = m.image
        ET.SubElement(backing, "format", type="qcow2")
        return ET.tostring(vol, encoding="unicode")

    def cmdline(self, n):
        return kernel_cmdline(n.name, f"{n.ip}/{self.t.subnet.prefixlen}", n.mtu, self.ssh_pubkey)

    def domain_xml(self, n):
        m = self.machine(n)
        dom = ET.Element("domain", type=self.virt_type())
        ET.SubElement(dom, "name").text = self.domain_name(n)
        ET.SubElement(dom, "description").text = f"L4LB lab {self.t.prefix}: node {n.name} ({n.role})"
        meta = ET.SubElement(dom, "metadata")
        seed = self.seed_files(n)
        windows = m.seed == "configdrive"
        lab = ET.SubElement(meta, f"{{{METADATA_NS}}}lab", prefix=self.t.prefix, node=n.name)
        if seed:
            # the seed's identity in the definition: a changed seed is a changed domain, which
            # is restarted so that cloud-init (cloudbase-init) applies it
            lab.set("seed", self.seed_id(n, seed))
        ET.SubElement(dom, "memory", unit="KiB").text = str(m.memory_mb * 1024)
        ET.SubElement(dom, "vcpu").text = str(m.vcpus)
        os_el = ET.SubElement(dom, "os")
        ET.SubElement(os_el, "type", arch="x86_64").text = "hvm"
        if m.kernel and not windows:
            ET.SubElement(os_el, "kernel").text = m.kernel
            ET.SubElement(os_el, "initrd").text = m.initrd
            # with a seed, cloud-init configures the node: the command line only boots it
            ET.SubElement(os_el, "cmdline").text = " ".join(CMDLINE_BASE) if seed else self.cmdline(n)
        else:
            # the image's own loader; BIOS, so no Secure Boot (eBPF-for-Windows 0.12.0 needs
            # test signing)
            ET.SubElement(os_el, "boot", dev="hd")
        features = ET.SubElement(dom, "features")
        ET.SubElement(features, "acpi")
        if windows:
            ET.SubElement(features, "apic")
            hyperv = ET.SubElement(features, "hyperv", mode="custom")
            ET.SubElement(hyperv, "relaxed", state="on")
            ET.SubElement(hyperv, "vapic", state="on")
            ET.SubElement(hyperv, "spinlocks", state="on", retries="8191")
        # TCG's default CPU model lacks what a current kernel and clang expect; "maximum" gives
        # every feature TCG emulates. KVM passes the host's CPU through.
        ET.SubElement(dom, "cpu", mode="host-passthrough" if self.virt_type() == "kvm" else "maximum")
        clock = ET.SubElement(dom, "clock", offset="localtime" if windows else "utc")
        if windows:
            ET.SubElement(clock, "timer", name="hypervclock", present="yes")
        ET.SubElement(dom, "on_poweroff").text = "destroy"
        ET.SubElement(dom, "on_reboot").text = "restart"
        ET.SubElement(dom, "on_crash").text = "destroy"
        dev = ET.SubElement(dom, "devices")
        disk = ET.SubElement(dev, "disk", type="file", device="disk")
        ET.SubElement(disk, "driver", name="qemu", type="qcow2")
        ET.SubElement(disk, "source", file=self.overlay(n))
        ET.SubElement(disk, "target", dev="vda", bus="virtio")
        if seed and windows:
            # cloudbase-init looks for its config drive on a CD-ROM first
            drive = ET.SubElement(dev, "disk", type="file", device="cdrom")
            ET.SubElement(drive, "driver", name="qemu", type="raw")
            ET.SubElement(drive, "source", file=self.seed_path(n))
            ET.SubElement(drive, "target", dev="sda", bus="sata")
            ET.SubElement(drive, "readonly")
        elif seed:
            cidata = ET.SubElement(dev, "disk", type="file", device="disk")
            ET.SubElement(cidata, "driver", name="qemu", type="raw")
            ET.SubElement(cidata, "source", file=self.seed_path(n))
            ET.SubElement(cidata, "target", dev="vdb", bus="virtio")
            ET.SubElement(cidata, "readonly")
        iface = ET.SubElement(dev, "interface", type="network")
        ET.SubElement(iface, "mac", address=self.mac(n))
        ET.SubElement(iface, "source", network=self.network_name)
        ET.SubElement(iface, "target", dev=self.tap(n))
        ET.SubElement(iface, "model", type="virtio")
        ET.SubElement(iface, "mtu", size=str(n.mtu))
        # XDP_TX needs a queue per CPU besides the stack's, or virtio-net falls back to a
        # locked, slower transmit mode
        ET.SubElement(iface, "driver", queues=str(2 * m.vcpus))
        serial = ET.SubElement(dev, "serial", type="file")
        ET.SubElement(serial, "source", path=self.console_log(n))
        ET.SubElement(serial, "target", port="0")
        rng = ET.SubElement(dev, "rng", model="virtio")
        ET.SubElement(rng, "backend", model="random").text = "/dev/urandom"
        ET.SubElement(dev, "memballoon", model="none")
        ET.register_namespace("l4lb", METADATA_NS)
        return ET.tostring(dom, encoding="unicode")

    # -- current state -----------------------------------------------------------------------

    def current(self):
        """What is really there: the confined daemon, the network, pool, volumes, domains."""
        snap = {"daemon": None, "network": None, "pool": None, "volumes": {}, "domains": {},
                "seeds": {n.name: read_seed(self.seed_path(n)) for n in self.guests
                          if self.machine(n).seed in SEED_VOLUMES}}
        if self.confined:
            snap["daemon"] = self.daemon.status() if self.daemon is not None else None
            if not self.daemon_running():
                return snap
        net = self._lookup("network", self.network_name)
        if net is not None:
            active = bool(net.isActive())
            snap["network"] = dict(network_signature(net.XMLDesc(0)), active=active,
                                   bridge_mtu=self._bridge_mtu() if active else None,
                                   bridge_offload=self._bridge_offload() if active else None)
        pool = self._lookup("pool", self.pool_name)
        if pool is not None:
            snap["pool"] = {"path": _text(ET.fromstring(pool.XMLDesc(0)), "target/path"),
                            "active": bool(pool.isActive())}
            if pool.isActive():
                pool.refresh(0)
                for name in pool.listVolumes():
                    vol = pool.storageVolLookupByName(name)
                    root = ET.fromstring(vol.XMLDesc(0))
                    snap["volumes"][name] = {"path": vol.path(),
                                             "backing": _text(root, "backingStore/path")}
        for n in self.guests:
            dom = self._lookup("domain", self.domain_name(n))
            if dom is not None:
                snap["domains"][n.name] = dict(domain_signature(dom.XMLDesc(_VIR_DOMAIN_XML_INACTIVE)),
                                               active=bool(dom.isActive()))
        return snap

    # -- plan --------------------------------------------------------------------------------

    def plan(self, state, snap):
        return self._plan_present(snap) if state == "present" else self._plan_absent(snap)

    def _plan_present(self, snap):
        acts = []
        daemon = snap.get("daemon") or {}
        if self.confined and (not daemon.get("running") or daemon.get("stray")):
            # A fresh daemon (its start clears what a killed run left) holds nothing yet; what to
            # create is planned once it answers, so the domain type comes from the hypervisor.
            return [Action(f"start the lab's libvirtd in namespace {self.host_ns}", func=self._start_daemon),
                    Action(f"create network {self.network_name}, pool {self.pool_name}, volumes "
                           f"and domains {', '.join(self.domain_name(n) for n in self.guests)}",
                           func=self._create_all)]
        want_net = network_signature(self.network_xml())
        net = snap["network"]
        if net is None or {k: v for k, v in net.items() if k not in ("active", "bridge_mtu", "bridge_offload")} != want_net:
            if net is not None:
                acts.append(Action(f"remove network {self.network_name} (definition differs)",
                                   func=self._remove_network))
            acts.append(Action(f"define network {self.network_name} (bridge {self.bridge}, "
                               f"{want_net['ip']})", func=self._define_network))
        if net is None or not net["active"] or acts:
            acts.append(Action(f"start network {self.network_name}", func=self._start_network))
        elif self.bridge_is_local and net.get("bridge_mtu") != want_net["mtu"]:
            acts.append(Action(f"set bridge {self.bridge} mtu {want_net['mtu']}", func=self._set_bridge_mtu))
        if self.bridge_is_local and (net is None or not net["active"]
                                     or not checksum_offload_is_off(net.get("bridge_offload") or {})):
            acts.append(Action(f"{self.bridge}: checksum offload rx off tx off (the client's side)",
                               func=self._bridge_offload_off))
        pool = snap["pool"]
        if pool is None:
            acts.append(Action(f"define pool {self.pool_name} at {self.pool_dir}", func=self._define_pool))
        if pool is None or not pool["active"]:
            acts.append(Action(f"start pool {self.pool_name}", func=self._start_pool))
        guest_acts = []
        for n in self.guests:
            guest_acts += self._plan_guest(n, snap)
        acts += guest_acts
        if self.bridge_is_local and any(a.text.startswith("start domain") for a in guest_acts):
            # A tap joining raises the bridge to its larger MTU unless the bridge's MTU was set by
            # a change (setting the value it already has is no change to the kernel), so the
            # client's MTU is set again once the guests' taps are in
            acts.append(Action(f"set bridge {self.bridge} mtu {want_net['mtu']} (after the guests' taps joined)",
                               func=self._set_bridge_mtu))
        return acts

    def _plan_guest(self, n, snap):
        acts = []
        m = self.machine(n)
        name = self.domain_name(n)
        vol_name = os.path.basename(self.overlay(n))
        vol = snap["volumes"].get(vol_name)
        dom = snap["domains"].get(n.name)
        want = domain_signature(self.domain_xml(n))
        have = {k: v for k, v in dom.items() if k != "active"} if dom else None
        new_overlay = vol is None or vol.get("backing") != m.image
        seed = self.seed_files(n)
        if seed is not None and (snap.get("seeds") or {}).get(n.name) != seed:
            what = ("config drive: " + f"{n.name}, {n.ip}, WinRM over HTTPS" if m.seed == "configdrive"
                    else f"NoCloud: {n.name}, {n.ip}, the lab's key")
            acts.append(Action(f"write seed {self.seed_path(n)} ({what})",
                               func=lambda n=n, seed=seed: self.write_seed(n, seed)))
        if dom is not None and (have != want or new_overlay) and dom["active"]:
            acts.append(Action(f"stop domain {name} (to apply a changed definition)",
                               func=lambda n=n: self._destroy(n)))
        if new_overlay:
            if vol is not None:
                acts.append(Action(f"delete volume {vol_name} (backed by {vol.get('backing')}, "
                                   f"want {m.image})", func=lambda n=n: self._delete_volume(n)))
            acts.append(Action(f"create volume {vol_name} backed by {m.image}",
                               func=lambda n=n: self._create_volume(n)))
        if have != want:
            acts.append(Action(f"define domain {name} ({want['type']}, {m.memory_mb} MiB, "
                               f"{m.vcpus} vCPU, {want['mac']})", func=lambda n=n: self._define_domain(n)))
        if dom is None or not dom["active"] or acts:
            acts.append(Action(f"start domain {name}", func=lambda n=n: self._start_domain(n)))
        return acts

    def _plan_absent(self, snap):
        """Remove what the lab made; an object with a lab name that the lab did not make stays
        (the provider never changes what it did not create)."""
        acts = []
        for n in self.guests:
            dom = snap["domains"].get(n.name)
            if dom is not None and dom["owner"] == self.t.prefix:
                if dom["active"]:
                    acts.append(Action(f"stop domain {self.domain_name(n)}", func=lambda n=n: self._destroy(n)))
                acts.append(Action(f"undefine domain {self.domain_name(n)}",
                                   func=lambda n=n: self._undefine(n)))
        pool_ours = snap["pool"] is not None and \
            os.path.normpath(snap["pool"]["path"] or "") == os.path.normpath(self.pool_dir)
        if pool_ours:
            ours = {os.path.basename(self.overlay(n)) for n in self.guests}
            for vol_name in sorted(set(snap["volumes"]) & ours):
                acts.append(Action(f"delete volume {vol_name}",
                                   func=lambda v=vol_name: self._delete_volume_named(v)))
            acts.append(Action(f"remove pool {self.pool_name}", func=self._remove_pool))
        net = snap["network"]
        if net is not None and net["bridge"] == self.bridge and net["forward"] is None:
            acts.append(Action(f"remove network {self.network_name}", func=self._remove_network))
        if self.confined and ConfinedDaemon.anything_left(snap.get("daemon") or {}):
            acts.append(Action(f"stop the lab's libvirtd and remove namespace {self.host_ns}",
                               func=self.daemon.stop))
        for d in (self.lab_dir, self.t.state_dir):
            if d and os.path.isdir(d):
                acts.append(Action(f"remove {d}", func=lambda d=d: _remove_dir(d)))
        return acts

    # -- actions -----------------------------------------------------------------------------

    def _start_daemon(self):
        # The daemon's private mount namespace sees only directories that exist when it starts
        # (libvirt_daemon: shadowed parents), so the lab's own are made first.
        for d in (self.pool_dir, self.console_dir, self.seed_dir):
            os.makedirs(d, mode=0o755, exist_ok=True)
        self.daemon.start()

    def _create_all(self):
        try:
            self._check_hypervisor()
        except TopologyError as e:
            raise ProviderError(str(e)) from None
        for a in self._plan_present(self.current()):
            a.run()

    def _call(self, what, fn, *args):
        try:
            return fn(*args)
        except Exception as e:  # libvirtError
            raise ProviderError(f"{what}: {e}") from None

    def _define_network(self):
        self._call("networkDefineXML", self.conn().networkDefineXML, self.network_xml())

    def _start_network(self):
        net = self._lookup("network", self.network_name)
        if not net.isActive():
            self._call("network create", net.create)
        self._call("network autostart", net.setAutostart, 1)
        self._set_bridge_mtu()

    @property
    def host_netns(self):
        """The namespace holding the bridge: the confined host's, else None (this one)."""
        return self.host_ns if self.confined else None

    @property
    def bridge_is_local(self):
        """The bridge is on this machine (confined, or a local qemu URI): its MTU can be read and
        set. Not for a remote hypervisor, nor an injected connection (tests)."""
        if self._connect is not None:
            return False
        return self.confined or self.uri.startswith(("qemu:///", "qemu+unix:///"))

    def _ip(self, *args):
        ns = ["-n", self.host_netns] if self.host_netns else []
        return run(["ip", *ns, *args], check=False)

    def _bridge_mtu(self):
        if not self.bridge_is_local:
            return None
        p = self._ip("-j", "link", "show", "dev", self.bridge)
        try:
            return json.loads(p.stdout)[0]["mtu"] if p.returncode == 0 else None
        except (ValueError, IndexError, KeyError):
            return None

    def _set_bridge_mtu(self):
        """The bridge plays the client's interface, so it keeps the client's MTU. libvirt sets the
        network's MTU when it creates the bridge, which the kernel does not count as set by the
        user: the first tap with a larger MTU (a guest's 1520 for DSR) would raise it. Set again
        explicitly, it sticks."""
        if not self.bridge_is_local:
            return
        mtu = network_signature(self.network_xml())["mtu"]
        p = self._ip("link", "set", "dev", self.bridge, "mtu", str(mtu))
        if p.returncode != 0:
            raise ProviderError(f"ip link set {self.bridge} mtu {mtu}: {p.stderr.strip()}")

    def _bridge_offload(self):
        if not self.bridge_is_local:
            return None
        return offload_features(self.bridge, self.host_netns)

    def _bridge_offload_off(self):
        run(checksum_offload_off_argv(self.bridge, self.host_netns))

    def _remove(self, kind, name):
        """Stop (if active) and undefine the network or pool ``name``; absent is done."""
        obj = self._lookup(kind, name)
        if obj is None:
            return
        if obj.isActive():
            self._call(f"{kind} destroy", obj.destroy)
        self._call(f"{kind} undefine", obj.undefine)

    def _remove_network(self):
        self._remove("network", self.network_name)

    def _define_pool(self):
        os.makedirs(self.pool_dir, mode=0o711, exist_ok=True)
        os.makedirs(self.console_dir, mode=0o755, exist_ok=True)
        self._call("storagePoolDefineXML", self.conn().storagePoolDefineXML, self.pool_xml(), 0)

    def _start_pool(self):
        pool = self._lookup("pool", self.pool_name)
        if not pool.isActive():
            self._call("pool create", pool.create, 0)
        self._call("pool autostart", pool.setAutostart, 1)

    def _remove_pool(self):
        self._remove("pool", self.pool_name)

    def _image_capacity(self, path):
        """The base image's virtual size: the overlay has the same."""
        try:
            p = run(["qemu-img", "info", "--output=json", "--force-share", path], check=False)
            if p.returncode == 0:
                return int(json.loads(p.stdout)["virtual-size"])
        except (OSError, ValueError, KeyError):
            pass
        raise ProviderError(f"qemu-img info {path} failed: cannot size the overlay")

    def _create_volume(self, n):
        pool = self._lookup("pool", self.pool_name)
        capacity = self._image_capacity(self.machine(n).image)
        self._call("storageVolCreateXML", pool.createXML, self.volume_xml(n, capacity), 0)
        self._forget_host_key(n)

    def _delete_volume(self, n):
        self._delete_volume_named(os.path.basename(self.overlay(n)))

    def _delete_volume_named(self, vol_name):
        pool = self._lookup("pool", self.pool_name)
        try:
            vol = pool.storageVolLookupByName(vol_name)
        except Exception:  # pylint: disable=broad-except
            return
        self._call("volume delete", vol.delete, 0)

    def _define_domain(self, n):
        xml = self.domain_xml(n)
        dom = self._lookup("domain", self.domain_name(n))
        if dom is not None:  # a redefinition keeps the domain's identity
            root = ET.fromstring(xml)
            uuid = ET.Element("uuid")
            uuid.text = dom.UUIDString()
            root.insert(1, uuid)
            xml = ET.tostring(root, encoding="unicode")
        self._call("defineXML", self.conn().defineXML, xml)

    def _start_domain(self, n):
        dom = self._lookup("domain", self.domain_name(n))
        if not dom.isActive():
            os.makedirs(self.console_dir, mode=0o755, exist_ok=True)
            self._call("domain create", dom.create)

    def _destroy(self, n):
        dom = self._lookup("domain", self.domain_name(n))
        if dom is not None and dom.isActive():
            self._call("domain destroy", dom.destroy)

    def _undefine(self, n):
        dom = self._lookup("domain", self.domain_name(n))
        if dom is not None:
            self._call("domain undefine", dom.undefine)

    def _forget_host_key(self, n):
        """A new overlay makes new host keys: drop the node's old entry from the lab's own
        known_hosts (never the user's); ssh-keygen -R also finds hashed entries."""
        if os.path.isfile(self.known_hosts):
            run(["ssh-keygen", "-R", str(n.ip), "-f", self.known_hosts], check=False)
            stale = self.known_hosts + ".old"
            if os.path.exists(stale):
                os.unlink(stale)

    # -- reporting ---------------------------------------------------------------------------

    def describe(self, snap):
        lines = []
        if self.confined:
            d = snap.get("daemon") or {}
            lines.append(f"libvirtd in {self.host_ns}: {'running' if d.get('running') else 'absent'}")
        net = snap.get("network")
        if net:
            lines.append(self._describe_network(net, net["active"]))
        pool = snap.get("pool")
        if pool:
            lines.append(f"pool {self.pool_name} {pool['path']} {'active' if pool['active'] else 'inactive'}")
        for name, vol in sorted(snap.get("volumes", {}).items()):
            lines.append(f"  volume {name} backing {vol.get('backing')}")
        for name, dom in sorted(snap.get("domains", {}).items()):
            lines += self._describe_domain(name, dom, dom["active"])
        return "\n".join(lines) + ("\n" if lines else "")

    def describe_desired(self):
        lines = []
        if self.confined:
            lines.append(f"libvirtd in {self.host_ns}: running")
        lines.append(self._describe_network(network_signature(self.network_xml()), True))
        lines.append(f"pool {self.pool_name} {self.pool_dir} active")
        guests = sorted(self.guests, key=lambda n: n.name)
        for n in guests:
            lines.append(f"  volume {os.path.basename(self.overlay(n))} backing {self.machine(n).image}")
        for n in guests:
            lines += self._describe_domain(n.name, domain_signature(self.domain_xml(n)), True)
        return "\n".join(lines) + "\n"

    def _describe_network(self, sig, active):
        routes = "".join(f" route {r}" for r in sig["routes"])
        return (f"network {self.network_name} bridge {sig['bridge']} {sig['ip']} mtu {sig['mtu']}"
                f"{routes} {'active' if active else 'inactive'}")

    @staticmethod
    def _describe_domain(name, sig, active):
        return [f"domain {name} {sig['type']} {sig['memory_kib'] // 1024 if sig['memory_kib'] else '?'} MiB "
                f"{sig['vcpus']} vCPU {sig['mac']} mtu {sig['mtu']} {'running' if active else 'shut off'}",
                f"  boot {sig['kernel']} {sig['cmdline']}",
                f"  disk {sig['disk']}"]
