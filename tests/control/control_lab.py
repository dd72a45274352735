"""Helpers for the control plane's tests: a two-node lab slice (LB and one backend, each in its
own network namespace, joined by a veth pair) and a runner for our Ansible modules through real
Ansible and the netns connection plugin.

Prefix ``l4lbt4`` (env L4LB_TEST_PREFIX4; under xdist the worker's number is appended):
namespaces, pins and build dirs are swept at start (a killed run leaves them behind) and removed
at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from labtest import REPO, VENV_BIN, ansible_env  # noqa: F401 (REPO is used by the tests too)

# Under xdist each worker builds its own slice (the files of tests/control may run on both
# workers at once): gw0 -> l4lbt4w0, gw1 -> l4lbt4w1.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
PREFIX = os.environ.get("L4LB_TEST_PREFIX4", "l4lbt4") + (_WORKER.replace("gw", "w") if _WORKER else "")
LB_NS, BE_NS = f"{PREFIX}-lb", f"{PREFIX}-be"
LB_IP, BE_IP, VIP = "20.1.1.1", "20.1.1.10", "40.1.1.1"
PIN_DIR = f"/sys/fs/bpf/{PREFIX}/lb"
STATE_DIR = f"/run/{PREFIX}"
BUILD_DIR = f"{STATE_DIR}/lb/build"
SRC_DIR = os.path.join(REPO, "bpf")
# The LB program as the module tests attach it (SNAT, the slice LB's eth0).
PROGRAM = {"device": "eth0", "src": SRC_DIR, "build_dir": BUILD_DIR, "pin_dir": PIN_DIR}
L4LBCTL = os.path.join(REPO, "bin", "l4lbctl")
PYTHON = os.path.join(VENV_BIN, "python")


def sh(*argv, check=True):
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def sweep():
    for ns in (LB_NS, BE_NS):
        if os.path.exists(f"/run/netns/{ns}"):
            sh("ip", "netns", "del", ns, check=False)
    shutil.rmtree(f"/sys/fs/bpf/{PREFIX}", ignore_errors=True)
    shutil.rmtree(STATE_DIR, ignore_errors=True)


def build_slice():
    """LB (20.1.1.1) and a backend (20.1.1.10) in namespaces; offloads off as in the lab."""
    sh("ip", "netns", "add", LB_NS)
    sh("ip", "netns", "add", BE_NS)
    sh("ip", "-n", LB_NS, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", BE_NS)
    for ns, ip in ((LB_NS, LB_IP), (BE_NS, BE_IP)):
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "rx", "off", "tx", "off")


def in_lb(*argv, check=True):
    """Run a command inside the LB namespace (host mount namespace kept, pins visible)."""
    return sh("nsenter", f"--net=/run/netns/{LB_NS}", "--", *argv, check=check)


def in_be(*argv, check=True):
    """Run a command inside the backend namespace."""
    return sh("nsenter", f"--net=/run/netns/{BE_NS}", "--", *argv, check=check)


class ModuleRunner:
    """Runs one of our modules on a node of the slice (``lb`` by default, or ``be``) through
    ansible-playbook and the netns plugin."""

    def __init__(self, tmpdir):
        self.tmpdir = tmpdir
        self.inventory = os.path.join(tmpdir, "hosts.yml")
        with open(self.inventory, "w") as f:
            json.dump({"all": {"hosts": {name: {
                "ansible_host": ns, "ansible_connection": "netns",
                "ansible_python_interpreter": PYTHON} for name, ns in (("lb", LB_NS), ("be", BE_NS))}}}, f)

    def __call__(self, module, args, check=False, diff=False, host="lb"):
        play = [{"name": "t", "hosts": host, "gather_facts": False,
                 "tasks": [{"name": "m", module: args, "register": "r", "ignore_errors": True}]}]
        path = os.path.join(self.tmpdir, "play.yml")
        with open(path, "w") as f:
            json.dump(play, f)
        argv = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", self.inventory, path]
        if check:
            argv.append("--check")
        if diff:
            argv.append("--diff")
        env = ansible_env({"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.json"})
        p = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        try:
            data = json.loads(p.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"ansible-playbook output is not JSON:\n{p.stdout}\n{p.stderr}")
        return data["plays"][0]["tasks"][0]["hosts"][host]


def l4lbctl(*args, check=False):
    """The CLI as a user runs it, inside the LB namespace, against the test's pins."""
    argv = [PYTHON, L4LBCTL, "--netns", LB_NS, "--pin-dir", PIN_DIR, *args]
    # its defaults (a build dir for verbs not given --build-dir) under the test's state dir, which
    # the slice sweeps - not the default lab's /run/l4lb
    env = dict(os.environ, L4LB_STATE_DIR=STATE_DIR)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"l4lbctl {' '.join(args)} failed ({p.returncode}): {p.stderr}")
    return p


def lb_maps_snapshot():
    """Every pinned map's content (bytes), read inside Python through the core."""
    from l4lb import reconcile
    out = {}
    with reconcile.LBMaps.open(os.path.join(PIN_DIR, "maps")) as maps:
        for name in reconcile.RECONCILE_MAPS + (reconcile.FRONT_HINT, reconcile.CT):
            # lb4_backends is an ARRAY: its unused entries (address 0) are not content
            out[name] = sorted((k, v) for k, v in maps[name].items() if name != reconcile.BACKENDS or v[:4] != bytes(4))
        out["maglev_tables"] = sorted(
            (k, maps.read_inner(mid)[0]) for k, mid in maps.inner_map_ids().items())
    return out


def attached_prog_id() -> int:
    """The id of the XDP program on the LB's eth0 (0 when none), from the kernel."""
    out = json.loads(in_lb("ip", "-j", "-d", "link", "show", "eth0").stdout)[0]
    xdp = out.get("xdp") or {}
    if "prog" in xdp:
        return xdp["prog"]["id"]
    for att in xdp.get("attached", []):
        return att["prog"]["id"]
    return 0


def make_ct_entries(pin_dir: str, client_ports, client_ip: str = "20.1.1.100") -> None:
    """Run client->VIP SYNs through the attached program (BPF_PROG_TEST_RUN on its pin), which
    creates connection-tracking entries in the shared maps exactly as real traffic would."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    from l4lb import libbpf
    fd = libbpf.obj_get(os.path.join(pin_dir, "prog"))
    try:
        for port in client_ports:
            pkt = bytes(Ether(src="02:00:00:00:00:64", dst="02:00:00:00:00:01") /
                        IP(src=client_ip, dst=VIP) / TCP(sport=port, dport=80, flags="S"))
            retval, _, _ = libbpf.prog_test_run(fd, pkt)
            assert retval == libbpf.XDP_TX, f"SYN from port {port}: verdict {retval}, want XDP_TX"
    finally:
        os.close(fd)
