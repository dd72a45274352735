"""The libvirt provider (module_utils/lab_topology/libvirt.py) on libvirt's own test driver
(``test:///<file>``: an in-memory hypervisor inside libvirt.so), so plan, apply, idempotence,
diff, teardown and every refusal run against real libvirt APIs without a daemon or a guest.
Every XML the provider generates is checked with ``virt-xml-validate`` (libvirt's schemas).

The real guests (confined libvirtd, qemu) are proven by molecule's ``libvirt`` scenario."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

import labtest  # noqa: F401  (puts module_utils on ansible.module_utils' path)
from ansible.module_utils.lab_topology import TopologyError, build_topology, get_provider
from ansible.module_utils.lab_topology import guest_seed
from ansible.module_utils.lab_topology import libvirt as lv

libvirt = pytest.importorskip("libvirt")
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq6ZkKjQy0dX3b6t3mGm4dV8bSxVq0eB9Q1p2Qm0u8j l4lb-lab test"
SPEC = {"prefix": "l4tv", "subnet": "20.1.1.0/24", "vip": "40.1.1.1", "state_dir": "/run/l4tv",
        "bpffs_dir": "/sys/fs/bpf/l4tv",
        "nodes": [{"name": "lb", "ip": "20.1.1.1", "role": "lb", "mtu": 1520},
                  {"name": "win1", "ip": "20.1.1.10", "role": "backend", "decap": "xdp", "mtu": 1520},
                  {"name": "linux1", "ip": "20.1.1.30", "role": "backend", "decap": "tc", "mtu": 1520},
                  {"name": "client", "ip": "20.1.1.100", "role": "client"}]}


EMPTY_NODE = ("<node><cpu><mhz>2000</mhz><model>x86</model><nodes>1</nodes><sockets>1</sockets>"
              "<cores>2</cores><threads>1</threads><active>2</active></cpu><memory>16777216</memory></node>")


class Hypervisor:
    """A fresh test-driver hypervisor (``test:///<file>`` starts from that file's objects; the
    shared ``test:///default`` would carry objects from test to test), with a free-memory figure
    of our choosing (the test driver reports none, which the memory check would rightly refuse)."""

    def __init__(self, tmp_path, free_mb=16384):
        node = tmp_path / "test-node.xml"
        node.write_text(EMPTY_NODE)
        self.uri = f"test://{node}"
        self.conn = libvirt.open(self.uri)
        self.free_mb = free_mb

    def getFreeMemory(self):  # noqa: N802 (libvirt's name)
        return self.free_mb * 1024 * 1024

    def __getattr__(self, name):
        return getattr(self.conn, name)


@pytest.fixture
def image(tmp_path):
    """A real (tiny) qcow2 base with a kernel and initrd beside it: the provider sizes the
    overlay with qemu-img."""
    d = tmp_path / "image"
    d.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(d / "base.qcow2"), "64M"], check=True)
    (d / "vmlinuz").write_bytes(b"kernel")
    (d / "initrd.img").write_bytes(b"initrd")
    return d


def machines(image, **over):
    out = []
    for n in SPEC["nodes"]:
        if n["role"] == "client":
            continue
        m = {"name": n["name"], "memory_mb": 512, "vcpus": 1, "image": str(image / "base.qcow2"),
             "kernel": str(image / "vmlinuz"), "initrd": str(image / "initrd.img"), "os": "linux"}
        m.update(over.get(n["name"], {}))
        out.append(m)
    return out


def make(image, tmp_path, hv=None, spec=None, **kw):
    hv = hv or Hypervisor(tmp_path)
    settings = {"uri": hv.uri, "confined": False, "lab_dir": str(tmp_path / "lab"),
                "ssh_pubkey": PUBKEY, "machines": machines(image)}
    settings.update(kw)
    p = get_provider("libvirt", build_topology(spec or SPEC), connect=lambda _uri: hv, **settings)
    return p, hv


def converge(p, state="present"):
    p.preflight(state)
    acts = p.plan(state, p.current())
    p.apply(acts)
    return [a.text for a in acts]


def test_builds_the_lab_then_a_rerun_changes_nothing(image, tmp_path):
    p, hv = make(image, tmp_path)
    done = converge(p)
    assert any(t.startswith("define network l4tv-switch") for t in done)
    assert sum(t.startswith("start domain") for t in done) == 3
    snap = p.current()
    assert p.plan("present", snap) == []
    assert p.describe(snap) == p.describe_desired()
    net = snap["network"]
    assert (net["bridge"], net["ip"], net["forward"], net["dhcp"]) == ("l4tv-br", "20.1.1.100/24", None, False)
    assert net["routes"] == ["40.1.1.1/32 via 20.1.1.1"] and net["mtu"] == 1500
    dom = snap["domains"]["win1"]
    assert dom["mac"] == "02:4c:14:01:01:0a" and dom["mtu"] == 1520 and dom["owner"] == "l4tv"
    assert dom["type"] == "qemu" and dom["active"]
    assert "systemd.hostname=win1" in dom["cmdline"] and "20.1.1.10" in dom["cmdline"]
    assert snap["volumes"]["win1.qcow2"]["backing"] == str(image / "base.qcow2")
    assert any("TCG" in w for w in p.warnings)
    placement = p.placement()
    assert placement["nodes"]["lb"] == {"connection": "ssh", "host": "20.1.1.1", "domain": "l4tv-lb"}
    assert placement["nodes"]["client"] == {"connection": "local"}
    assert placement["capture"]["lb_ports"] == ["l4tv-lb"]


def test_the_network_routes_the_vip_range_and_an_ecmp_route_is_refused(image, tmp_path):
    """lab_vip_range is the network's <route>; a libvirt <route> has one gateway, so a route
    over several LB nodes (the model's ECMP shape) is refused by preflight, naming the range."""
    p, _hv = make(image, tmp_path, spec=dict(SPEC, vip_range="40.1.1.0/24"))
    converge(p)
    assert p.current()["network"]["routes"] == ["40.1.1.0/24 via 20.1.1.1"]
    from ansible.module_utils.lab_topology import model
    (route,) = p.t.node("client").routes
    route.nexthops = (route.via, model.ipaddress.IPv4Address("20.1.1.2"))
    with pytest.raises(TopologyError, match=r"lab_vip_range 40.1.1.0/24: a libvirt network's <route> has one gateway"):
        p.preflight("present")


def test_a_changed_machine_is_stopped_redefined_and_started(image, tmp_path):
    p, hv = make(image, tmp_path)
    converge(p)
    p2, _ = make(image, tmp_path, hv=hv, machines=machines(image, lb={"memory_mb": 768}))
    acts = [a.text for a in p2.plan("present", p2.current())]
    assert acts == ["stop domain l4tv-lb (to apply a changed definition)",
                    "define domain l4tv-lb (qemu, 768 MiB, 1 vCPU, 02:4c:14:01:01:01)",
                    "start domain l4tv-lb"]
    converge(p2)
    assert p2.plan("present", p2.current()) == []


def test_a_stopped_guest_is_started_again(image, tmp_path):
    p, hv = make(image, tmp_path)
    converge(p)
    hv.lookupByName("l4tv-linux1").destroy()
    assert [a.text for a in p.plan("present", p.current())] == ["start domain l4tv-linux1"]


def test_absent_removes_everything_it_made_and_nothing_else(image, tmp_path):
    p, hv = make(image, tmp_path)
    before_doms = sorted(d.name() for d in hv.listAllDomains())
    before_nets = sorted(n.name() for n in hv.listAllNetworks())
    converge(p)
    converge(p, "absent")
    assert p.plan("absent", p.current()) == []
    assert sorted(d.name() for d in hv.listAllDomains()) == before_doms
    assert sorted(n.name() for n in hv.listAllNetworks()) == before_nets
    assert not any(x.name() == "l4tv-pool" for x in hv.listAllStoragePools())
    assert not os.path.exists(tmp_path / "lab")


def test_check_mode_plans_without_changing(image, tmp_path):
    p, hv = make(image, tmp_path)
    p.preflight("present")
    acts = p.plan("present", p.current())
    assert acts and not any(d.name().startswith("l4tv-") for d in hv.listAllDomains())


def test_generated_xml_is_valid_for_libvirt(image, tmp_path):
    if not shutil.which("virt-xml-validate"):
        pytest.fail("virt-xml-validate not found: scripts/setup.sh installs libvirt-clients")
    # win1 boots an image of its own (no kernel): its domain carries the NoCloud seed volume
    p, _ = make(image, tmp_path, machines=machines(image, win1={"kernel": None, "initrd": None}))
    p.preflight("present")
    docs = {"network": p.network_xml(), "storagepool": p.pool_xml(),
            "storagevol": p.volume_xml(p.t.node("lb"), 64 << 20)}
    docs.update({f"domain-{n.name}": p.domain_xml(n) for n in p.guests})
    for kind, xml in docs.items():
        path = tmp_path / f"{kind}.xml"
        path.write_text(xml)
        schema = kind.split("-")[0]
        r = subprocess.run(["virt-xml-validate", str(path), schema], capture_output=True, text=True)
        assert r.returncode == 0, f"{kind}: {r.stderr or r.stdout}\n{xml}"


# -- refusals: each names the variable, before any change ------------------------------------

def refused(p, state="present"):
    with pytest.raises(TopologyError) as e:
        p.preflight(state)
    return str(e.value)


def hypervisor_with_foreign_objects(tmp_path):
    """A network and a domain with the lab's names that the lab did not make."""
    hv = Hypervisor(tmp_path)
    hv.networkDefineXML("<network><name>l4tv-switch</name><bridge name='virbr9'/><forward mode='nat'/>"
                        "<ip address='192.168.122.1' prefix='24'/></network>")
    hv.defineXML("<domain type='test'><name>l4tv-win1</name><memory>65536</memory>"
                 "<os><type>hvm</type></os></domain>")
    return hv


def test_foreign_objects_with_the_labs_names_are_refused(image, tmp_path):
    hv = hypervisor_with_foreign_objects(tmp_path)
    p, _ = make(image, tmp_path, hv=hv)
    msg = refused(p)
    assert "libvirt network l4tv-switch exists and is not the lab's" in msg
    assert "libvirt domain l4tv-win1 exists and was not made by this lab" in msg
    assert not os.path.exists(tmp_path / "lab")


def test_absent_leaves_foreign_objects_with_the_labs_names(image, tmp_path):
    hv = hypervisor_with_foreign_objects(tmp_path)
    p, _ = make(image, tmp_path, hv=hv)
    p.preflight("absent")
    assert p.plan("absent", p.current()) == []
    assert hv.networkLookupByName("l4tv-switch") and hv.lookupByName("l4tv-win1")


@pytest.mark.parametrize("over, needle", [
    ({"win1": {"image": "/nonexistent/base.qcow2"}}, "hostvars[win1].lab_image /nonexistent/base.qcow2 does not exist"),
    ({"lb": {"kernel": None}}, "hostvars[lb].lab_image_kernel is not set"),
    ({"linux1": {"os": "windows"}}, "hostvars[linux1]: a Windows guest needs its WinRM certificate"),
    ({"linux1": {"os": "plan9"}}, "hostvars[linux1].lab_os 'plan9' must be one of linux, windows"),
    ({"lb": {"memory_mb": 64}}, "hostvars[lb].lab_memory_mb 64 must be an integer in 256..65536"),
    ({"win1": {"vcpus": 0}}, "hostvars[win1].lab_vcpus 0 must be an integer in 1..64"),
    ({"win1": {"mac": "02:4c:14:01:01:01"}}, "hostvars[win1].lab_mac 02:4c:14:01:01:01 duplicates hostvars[lb].lab_mac"),
])
def test_bad_machine_input_names_the_variable(image, tmp_path, over, needle):
    p, _ = make(image, tmp_path, machines=machines(image, **over))
    assert needle in refused(p)


def test_not_enough_memory_names_the_variable(image, tmp_path):
    p, _ = make(image, tmp_path, hv=Hypervisor(tmp_path, free_mb=1000))
    assert "lab_memory_mb: the guests need 1536 MiB" in refused(p)


def test_unreachable_uri_names_the_variable(image, tmp_path):
    topo = build_topology(SPEC)
    p = get_provider("libvirt", topo, uri="test+unix:///nonexistent?socket=/nonexistent/sock",
                     confined=False, lab_dir=str(tmp_path / "lab"), ssh_pubkey=PUBKEY,
                     machines=machines(image))
    assert "lab_libvirt_uri 'test+unix:///nonexistent" in refused(p)


def test_kvm_required_but_not_offered_is_refused(image, tmp_path):
    p, _ = make(image, tmp_path, domain_type="kvm")
    assert "lab_libvirt_domain_type 'kvm': the hypervisor offers no kvm domains" in refused(p)


def test_more_than_one_client_is_refused(image, tmp_path):
    spec = dict(SPEC, nodes=SPEC["nodes"] + [{"name": "client2", "ip": "20.1.1.101", "role": "client"}])
    p, _ = make(image, tmp_path, spec=spec)
    assert "clients: the libvirt provider's client is the hypervisor's host" in refused(p)


def test_missing_ssh_key_is_refused(image, tmp_path):
    p, _ = make(image, tmp_path, ssh_pubkey="")
    assert "lab_libvirt_ssh_pubkey is empty" in refused(p)


def test_names_too_long_for_a_switch_port_are_refused(image, tmp_path):
    spec = dict(SPEC, prefix="averylongprefix")
    p, _ = make(image, tmp_path, spec=spec)
    msg = refused(p)
    assert "lab_prefix 'averylongprefix'" in msg and "at most 15 characters" in msg


def test_not_enough_disk_names_the_variable(image, tmp_path, monkeypatch):
    class Full:  # what os.statvfs says of a nearly full file system
        f_bavail, f_frsize = 100, 4096
    monkeypatch.setattr(lv.os, "statvfs", lambda _path: Full)
    p, _ = make(image, tmp_path)
    assert f"lab_libvirt_dir {tmp_path / 'lab'}: 0 MiB free, the guests' overlays need up to 3072 MiB" \
        in refused(p)


def test_a_new_overlay_forgets_the_guests_old_host_key(image, tmp_path):
    p, hv = make(image, tmp_path)
    converge(p)
    known = tmp_path / "lab" / "known_hosts"
    known.write_text("20.1.1.1 ssh-ed25519 AAAAold\n20.1.1.10 ssh-ed25519 AAAAkeep\n")
    hv.storagePoolLookupByName("l4tv-pool").storageVolLookupByName("lb.qcow2").delete(0)
    acts = [a.text for a in p.plan("present", p.current())]
    assert "create volume lb.qcow2 backed by " + str(image / "base.qcow2") in acts
    converge(p)
    assert known.read_text() == "20.1.1.10 ssh-ed25519 AAAAkeep\n"


def test_ssh_answers_reads_the_banner():
    """The readiness probe: an SSH banner counts, a silent or refusing port does not (loopback)."""
    import socket
    import threading

    def serve(sock, reply):
        conn, _ = sock.accept()
        conn.sendall(reply)
        conn.close()

    for reply, want in ((b"SSH-2.0-OpenSSH_9.2p1\r\n", True), (b"HTTP/1.1 400\r\n", False)):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        t = threading.Thread(target=serve, args=(srv, reply), daemon=True)
        t.start()
        assert lv._ssh_answers("127.0.0.1", srv.getsockname()[1]) is want
        t.join(5)
        srv.close()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    assert lv._ssh_answers("127.0.0.1", port) is False


def test_wait_ready_names_the_silent_guests(image, tmp_path, monkeypatch):
    """wait_ready returns every guest once each answers; past the timeout it names the silent
    ones and their console logs. A hypervisor elsewhere (here: an injected connection) cannot
    be probed: None, and the playbook's wait_for_connection takes over."""
    p, _hv = make(image, tmp_path)
    assert p.wait_ready(1) is None
    monkeypatch.setattr(lv.LibvirtProvider, "bridge_is_local", property(lambda self: True))
    asked = []

    def answers(ip, port):
        asked.append(ip)
        return ip != "20.1.1.30"

    monkeypatch.setattr(lv, "_ssh_answers", answers)
    with pytest.raises(lv.ProviderError, match=r"guests linux1 did not answer SSH within 0 s.*linux1\.log"):
        p.wait_ready(0)
    assert sorted(set(asked)) == ["20.1.1.1", "20.1.1.10", "20.1.1.30"], "only guests are probed, not the client"
    monkeypatch.setattr(lv, "_ssh_answers", lambda ip, port: True)
    assert p.wait_ready(0) == ["lb", "win1", "linux1"]


def test_an_image_of_its_own_boots_with_a_nocloud_seed(image, tmp_path):
    """A guest without lab_image_kernel (a stock cloud image) boots its own bootloader and
    cloud-init reads a NoCloud seed: written once, rewritten (and the guest restarted) only when
    its content changes."""
    from ansible.module_utils.lab_image import nocloud_seed
    own = {"kernel": None, "initrd": None}
    p, hv = make(image, tmp_path, machines=machines(image, win1=own))
    done = converge(p)
    seed = str(tmp_path / "lab" / "seed" / "win1.iso")
    assert f"write seed {seed} (NoCloud: win1, 20.1.1.10, the lab's key)" in done
    want = nocloud_seed("win1", "20.1.1.10/24", 1520, PUBKEY, "02:4c:14:01:01:0a")
    assert guest_seed.read_seed(seed) == want
    assert subprocess.run(["xorriso", "-indev", seed, "-pvd_info"], capture_output=True,
                          text=True).stdout.count("Volume Id    : cidata") == 1
    xml = hv.lookupByName("l4tv-win1").XMLDesc(0)
    assert "<kernel>" not in xml and "<boot dev='hd'/>" in xml and seed in xml
    assert "<kernel>" in hv.lookupByName("l4tv-lb").XMLDesc(0), "the built image still boots directly"
    assert not [n for n in os.listdir(tmp_path / "lab" / "seed") if n.startswith(".")], "no temporary left"
    assert p.plan("present", p.current()) == []

    # A new MAC changes the seed (cloud-init matches the interface by it) and the definition.
    p2, _ = make(image, tmp_path, hv=hv, machines=machines(image, win1={**own, "mac": "02:4c:14:01:01:aa"}))
    acts = [a.text for a in p2.plan("present", p2.current())]
    assert acts[0].startswith(f"write seed {seed}") and "stop domain l4tv-win1 (to apply a changed definition)" in acts
    converge(p2)
    assert "02:4c:14:01:01:aa" in guest_seed.read_seed(seed)["network-config"]
    assert p2.plan("present", p2.current()) == []
