"""The embedded lab topology (lab_topology role and module, netns provider) on the real kernel.

Uses prefix $L4LB_TEST_PREFIX (default l4lbt2) for the lab and <prefix>b for bad-input runs;
starts from whatever a killed run left behind and cleans up after itself.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time

import pytest

from labtest import REPO, lab_namespaces, root_ns_snapshot, run_playbook

PREFIX = os.environ.get("L4LB_TEST_PREFIX", "l4lbt2")
BAD_PREFIX = PREFIX + "b"
NODES = {"lb": "20.1.1.1", "win1": "20.1.1.10", "win2": "20.1.1.20", "linux1": "20.1.1.30",
         "linux2": "20.1.1.40", "client": "20.1.1.100"}
STATE_DIR = f"/run/{PREFIX}"
BPFFS_DIR = f"/sys/fs/bpf/{PREFIX}"
REPORT_DIR = os.path.join(REPO, "build", "report", PREFIX)
EV = {"lab_prefix": PREFIX}


def ns(node):
    return f"{PREFIX}-{node}"


def ipj(netns, *args):
    p = subprocess.run(["ip", "-n", netns, "-j", *args], capture_output=True, text=True, check=True)
    return json.loads(p.stdout or "[]")


def teardown(prefix=PREFIX):
    r = run_playbook("teardown.yml", {"lab_prefix": prefix})
    assert r.rc == 0, r.output
    return r


@pytest.fixture(scope="module")
def lab():
    teardown()  # whatever a killed run left behind
    before = root_ns_snapshot()
    t0 = time.monotonic()
    first = run_playbook("site.yml", EV)
    up = time.monotonic() - t0
    try:
        yield {"before": before, "first": first, "up_seconds": up}
    finally:
        teardown()


def test_bring_up_builds_every_namespace(lab):
    assert lab["first"].rc == 0, lab["first"].output
    assert lab["first"].recap["localhost"]["changed"] >= 1
    assert set(lab_namespaces(PREFIX)) >= {ns(n) for n in NODES} | {ns("switch")}


def test_node_addresses_and_switch_ports(lab):
    for node, ip in NODES.items():
        links = {l["ifname"]: l for l in ipj(ns(node), "addr", "show")}
        assert "UP" in links["lo"]["flags"]
        eth = links["eth0"]
        assert "UP" in eth["flags"]
        assert [(a["local"], a["prefixlen"]) for a in eth["addr_info"] if a["family"] == "inet"] \
            == [(ip, 24)]
    ports = {l["ifname"]: l for l in ipj(ns("switch"), "-d", "link", "show")}
    assert ports["br0"]["linkinfo"]["info_kind"] == "bridge"
    for node in NODES:
        assert ports[node]["master"] == "br0"
        assert "UP" in ports[node]["flags"]


def test_xdp_pass_on_switch_ports_and_offload_off(lab):
    ports = {l["ifname"]: l for l in ipj(ns("switch"), "-d", "link", "show")}
    for node in NODES:
        xdp = ports[node]["xdp"]
        assert xdp["mode"] == 1 and xdp["prog"]["name"] == "xdp_pass"  # native (driver) mode
        out = subprocess.run(["nsenter", f"--net=/run/netns/{ns(node)}", "ethtool", "-k", "eth0"],
                             capture_output=True, text=True, check=True).stdout
        assert "rx-checksumming: off" in out and "tx-checksumming: off" in out


def test_client_route_to_vip(lab):
    # the VIP range (lab_vip_range) through the LB node; it covers the seed's 40.1.1.1
    routes = ipj(ns("client"), "route", "show", "40.1.1.0/24")
    assert [(r["gateway"], r["dev"]) for r in routes] == [("20.1.1.1", "eth0")]
    (got,) = ipj(ns("client"), "route", "get", "40.1.1.1")
    assert (got["gateway"], got["dev"]) == ("20.1.1.1", "eth0")
    # only the client has it
    assert ipj(ns("win1"), "route", "show", "40.1.1.0/24") == []


def test_every_node_pings_every_other(lab):
    procs = {}
    for a, b in itertools.permutations(NODES, 2):
        procs[(a, b)] = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{ns(a)}", "ping", "-n", "-q", "-c", "1", "-W", "2",
             NODES[b]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    failed = [pair for pair, p in procs.items() if p.wait() != 0]
    assert not failed, f"unreachable pairs: {failed}"


def test_root_namespace_untouched_while_running(lab):
    assert root_ns_snapshot() == lab["before"]


def test_second_run_changes_nothing(lab):
    r = run_playbook("site.yml", EV)
    assert r.rc == 0, r.output
    assert r.changed == 0, r.output
    assert r.failed == 0


def test_check_mode_on_running_lab_changes_nothing(lab):
    r = run_playbook("site.yml", EV, args=["--check", "--diff", "--tags", "lab_topology"])
    assert r.rc == 0, r.output
    assert r.recap["localhost"]["changed"] == 0, r.output


def test_drift_is_repaired(lab):
    subprocess.run(["ip", "-n", ns("win2"), "addr", "flush", "dev", "eth0"], check=True)
    subprocess.run(["ip", "-n", ns("switch"), "link", "del", "linux1"], check=True)
    subprocess.run(["ip", "-n", ns("client"), "route", "del", "40.1.1.0/24"], check=True)
    subprocess.run(["ip", "-n", ns("switch"), "link", "set", "dev", "win1", "xdp", "off"], check=True)
    check = run_playbook("site.yml", EV, args=["--check", "--tags", "lab_topology"])
    assert check.recap["localhost"]["changed"] == 1, check.output
    assert [a for l in ipj(ns("win2"), "-4", "addr", "show", "dev", "eth0")
            for a in l.get("addr_info", [])] == []  # check mode changed nothing
    r = run_playbook("site.yml", EV)
    assert r.rc == 0 and r.recap["localhost"]["changed"] == 1, r.output
    assert run_playbook("site.yml", EV).changed == 0
    test_client_route_to_vip(lab)
    test_node_addresses_and_switch_ports(lab)
    test_xdp_pass_on_switch_ports_and_offload_off(lab)


def test_teardown_removes_everything_the_lab_made_and_nothing_else(lab):
    # things a later stage would leave: a process in a lab namespace, pins, state files
    sleeper = subprocess.Popen(["nsenter", f"--net=/run/netns/{ns('linux1')}", "sleep", "300"])
    os.makedirs(f"{BPFFS_DIR}/lb/maps", exist_ok=True)
    with open(f"{STATE_DIR}/nginx.pid", "w", encoding="ascii") as f:
        f.write(str(sleeper.pid))
    # things the lab did not make, though their names look alike
    decoys = [f"{PREFIX}-decoy", f"{PREFIX}x-switch"]
    for d in decoys:
        subprocess.run(["ip", "netns", "add", d], check=True)
    # site.yml's verify wrote the demo report; the teardown removes it too
    assert os.path.isfile(os.path.join(REPORT_DIR, "report.html"))
    try:
        r = run_playbook("teardown.yml", EV)
        assert r.rc == 0, r.output
        assert r.recap["localhost"]["changed"] == 2, r.output  # the lab, the report
        assert not os.path.exists(REPORT_DIR)
        # killed by the teardown (SIGTERM, then SIGKILL), not ended on its own (it sleeps 300 s)
        assert sleeper.wait(timeout=10) in (-signal.SIGTERM, -signal.SIGKILL)
        assert not os.path.exists(STATE_DIR)
        assert not os.path.exists(BPFFS_DIR)
        assert lab_namespaces(PREFIX) == [f"{PREFIX}-decoy"]
        assert os.path.exists(f"/run/netns/{PREFIX}x-switch")
        assert root_ns_snapshot() == lab["before"]
        again = run_playbook("teardown.yml", EV)
        assert again.rc == 0 and again.changed == 0, again.output
    finally:
        for d in decoys:
            subprocess.run(["ip", "netns", "del", d], capture_output=True)
        if sleeper.poll() is None:
            sleeper.kill()


# ---------------------------------------------------------------------------------------------
# bad input: fails before any change, naming the variable or requirement
# ---------------------------------------------------------------------------------------------

def _override(tmp_path, text):
    p = tmp_path / "override.yml"
    p.write_text(text)
    return [str(p)]


def _host(group, name, **hv):
    body = "".join(f"          {k}: {v}\n" for k, v in hv.items())
    return f"all:\n  children:\n    {group}:\n      hosts:\n        {name}:\n{body}"


BAD_INPUTS = {
    "invalid address": (_host("backends", "win1", lab_ip="20.1.1.300"), {},
                        "hostvars[win1].lab_ip '20.1.1.300' is not a valid IPv4 address"),
    "outside subnet": (_host("backends", "win1", lab_ip="20.1.2.10"), {},
                       "hostvars[win1].lab_ip 20.1.2.10 is outside lab_subnet 20.1.1.0/24"),
    "duplicate": (_host("backends", "win2", lab_ip="20.1.1.10"), {},
                  "hostvars[win2].lab_ip 20.1.1.10 duplicates hostvars[win1].lab_ip"),
    "vip overlaps subnet": (None, {"lab_vip": "20.1.1.200"},
                            "lab_vip 20.1.1.200 overlaps lab_subnet 20.1.1.0/24"),
    "invalid subnet": (None, {"lab_subnet": "20.1.1.1/24"}, "lab_subnet '20.1.1.1/24'"),
    "network address": (_host("clients", "client", lab_ip="20.1.1.0"), {},
                        "hostvars[client].lab_ip 20.1.1.0 is the network or broadcast address"),
    "name too long": (_host("backends", "averyverylongbackend", lab_ip="20.1.1.50",
                            backend_decap="tc"), {},
                      "inventory_hostname 'averyverylongbackend' is 20 characters"),
    "bad decap": (_host("backends", "linux2", backend_decap="ipvs"), {},
                  "hostvars[linux2].backend_decap 'ipvs' must be one of xdp, tc"),
    "mtu out of range": (None, {"lab_dsr_mtu": 100},
                         "hostvars[lb] mtu 100 must be an integer in 1280..9000 (lab_dsr_fit / lab_dsr_mtu)"),
    "unknown dsr fit": (None, {"lab_dsr_fit": "jumbo"}, "lab_topology_dsr_fit"),
    "bpffs missing": (None, {"lab_bpffs_dir": f"/tmp/{BAD_PREFIX}-notbpffs/pins"},
                      "requirement: lab_bpffs_dir /tmp/"),
}


def _assert_nothing_made():
    assert lab_namespaces(BAD_PREFIX) == []
    assert not os.path.exists(f"/run/{BAD_PREFIX}")
    assert not os.path.exists(f"/sys/fs/bpf/{BAD_PREFIX}")


@pytest.fixture
def clean_bad_prefix():
    run_playbook("teardown.yml", {"lab_prefix": BAD_PREFIX})
    before = root_ns_snapshot()
    yield
    teardown(BAD_PREFIX)
    assert root_ns_snapshot() == before


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_before_any_change(case, tmp_path, clean_bad_prefix):
    inv_text, extra, expect = BAD_INPUTS[case]
    inventories = _override(tmp_path, inv_text) if inv_text else ()
    r = run_playbook("site.yml", {"lab_prefix": BAD_PREFIX, **extra}, inventories=inventories,
                     args=["--tags", "lab_topology"])
    assert r.rc != 0
    assert r.recap["localhost"]["failed"] == 1, r.output
    assert expect in r.output, r.output
    _assert_nothing_made()


def test_not_root_fails_before_any_change(tmp_path, clean_bad_prefix):
    """Run the playbook as a non-root user: a fresh, unmapped user namespace gives the process
    uid/euid 65534 and no capabilities over this machine (a plain setuid to nobody cannot reach
    the venv's interpreter under /root)."""
    import ctypes

    def drop():
        if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) != 0:  # CLONE_NEWUSER
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER)")

    r = run_playbook("site.yml", {"lab_prefix": BAD_PREFIX}, args=["--tags", "lab_topology"],
                     env={"HOME": str(tmp_path)}, preexec=drop)
    assert r.rc != 0
    assert "must run as root (euid is 65534)" in r.output, r.output
    _assert_nothing_made()


def test_missing_kernel_feature_fails_before_any_change(monkeypatch):
    """A failing feature probe stops the module before it touches anything."""
    from ansible.module_utils import lab_topology as lt

    spec = {"prefix": BAD_PREFIX, "subnet": "20.1.1.0/24", "vip": "40.1.1.1",
            "state_dir": f"/run/{BAD_PREFIX}", "bpffs_dir": f"/sys/fs/bpf/{BAD_PREFIX}",
            "xdp_pass_src": os.path.join(os.path.dirname(__file__), "..", "bpf", "xdp_pass.c"),
            "nodes": [{"name": n, "ip": ip, "role": "lb" if n == "lb" else
                       "client" if n == "client" else "backend", "decap": "tc"}
                      for n, ip in NODES.items()]}
    topo = lt.build_topology(spec)
    provider = lt.get_provider("netns", topo)
    monkeypatch.setattr(lt.NetnsProvider, "_probe_bpf",
                        staticmethod(lambda: "the bpf() syscall is not available (CONFIG_BPF_SYSCALL)"))
    with pytest.raises(lt.TopologyError) as e:
        provider.preflight("present")
    assert "requirement: kernel feature bpf" in str(e.value)
    _assert_nothing_made()
    # and the real probes pass on this machine
    monkeypatch.undo()
    lt.get_provider("netns", topo).preflight("present")
    _assert_nothing_made()


def test_in_netns_moves_only_its_own_thread():
    """procs.in_netns (how the provider attaches XDP in the switch's namespace): the call runs in
    the named namespace, or in a throwaway one whose links vanish with it; the caller stays put
    and the call's exception reaches the caller."""
    from ansible.module_utils.l4lb import procs

    before, mine = root_ns_snapshot(), procs.netns_ino()

    def make_link():
        subprocess.run(["ip", "link", "add", "name", "l4probe0", "type", "veth", "peer",
                        "name", "l4probe1"], check=True)
        return os.stat("/proc/thread-self/ns/net").st_ino

    assert procs.in_netns(make_link) != mine
    assert procs.netns_ino() == mine and root_ns_snapshot() == before
    name = f"{PREFIX}i-innetns"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert procs.in_netns(make_link, f"/run/netns/{name}") == os.stat(f"/run/netns/{name}").st_ino
        assert "l4probe0" in {l["ifname"] for l in ipj(name, "link", "show")}
        with pytest.raises(subprocess.CalledProcessError):  # it exists there now
            procs.in_netns(make_link, f"/run/netns/{name}")
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)
    assert procs.netns_ino() == mine and root_ns_snapshot() == before


def test_check_mode_from_nothing_reports_changes_and_makes_nothing(clean_bad_prefix):
    r = run_playbook("site.yml", {"lab_prefix": BAD_PREFIX},
                     args=["--check", "--diff", "--tags", "lab_topology", "--skip-tags", "verify"])
    assert r.rc == 0, r.output
    assert r.recap["localhost"]["changed"] == 1
    assert f"+netns {BAD_PREFIX}-switch" in r.output
    _assert_nothing_made()


def test_bring_up_recovers_from_a_killed_run():
    """A half-made lab (as a killed run leaves it) is completed, then torn down cleanly."""
    prefix = PREFIX + "k"
    run_playbook("teardown.yml", {"lab_prefix": prefix})
    before = root_ns_snapshot()
    try:
        for n in ("switch", "lb", "win1"):
            subprocess.run(["ip", "netns", "add", f"{prefix}-{n}"], check=True)
        # lb: an eth0 whose peer is not on the switch; win1: a switch port whose peer is not in
        # win1's namespace; a truncated object in the state dir
        subprocess.run(["ip", "-n", f"{prefix}-lb", "link", "add", "name", "eth0", "type", "veth",
                        "peer", "name", "junk0"], check=True)
        subprocess.run(["ip", "-n", f"{prefix}-switch", "link", "add", "name", "win1", "type",
                        "veth", "peer", "name", "junk1"], check=True)
        os.makedirs(f"/run/{prefix}", exist_ok=True)
        with open(f"/run/{prefix}/xdp_pass.o", "w", encoding="ascii") as f:
            f.write("truncated")
        r = run_playbook("site.yml", {"lab_prefix": prefix})
        assert r.rc == 0 and r.failed == 0, r.output
        assert run_playbook("site.yml", {"lab_prefix": prefix}).changed == 0
        assert root_ns_snapshot() == before
    finally:
        r = run_playbook("teardown.yml", {"lab_prefix": prefix})
        assert r.rc == 0, r.output
    assert lab_namespaces(prefix) == []
    assert not os.path.exists(f"/run/{prefix}") and not os.path.exists(f"/sys/fs/bpf/{prefix}")
