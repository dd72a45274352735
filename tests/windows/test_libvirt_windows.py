"""Windows guests on the libvirt provider, on libvirt's test driver (no hypervisor, no Windows):
the domain boots the user's image from its disk with a cloudbase-init config drive (its static
address, the administrator password, WinRM over HTTPS with the lab's certificate); the drive's
files exactly; plan, apply, idempotence, a changed seed; every refusal before any change."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

import labtest  # noqa: F401  (puts module_utils on ansible.module_utils' path)
from ansible.module_utils.lab_topology import TopologyError, build_topology, get_provider
from ansible.module_utils.lab_topology import guest_seed
from ansible.module_utils.lab_topology import libvirt as lv

libvirt = pytest.importorskip("libvirt")
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq6ZkKjQy0dX3b6t3mGm4dV8bSxVq0eB9Q1p2Qm0u8j l4lb-lab test"
PASSWORD = "Fake-Admin-Pass-1"
SPEC = {"prefix": "l4tw", "subnet": "20.1.1.0/24", "vip": "40.1.1.1", "state_dir": "/run/l4tw",
        "bpffs_dir": "/sys/fs/bpf/l4tw",
        "nodes": [{"name": "lb", "ip": "20.1.1.1", "role": "lb", "mtu": 1520},
                  {"name": "win1", "ip": "20.1.1.10", "role": "backend", "decap": "xdp", "mtu": 1520,
                   "os": "windows"},
                  {"name": "client", "ip": "20.1.1.100", "role": "client"}]}
EMPTY_NODE = ("<node><cpu><mhz>2000</mhz><model>x86</model><nodes>1</nodes><sockets>1</sockets>"
              "<cores>2</cores><threads>1</threads><active>2</active></cpu><memory>16777216</memory></node>")


class Hypervisor:
    def __init__(self, tmp_path):
        node = tmp_path / "test-node.xml"
        node.write_text(EMPTY_NODE)
        self.uri = f"test://{node}"
        self.conn = libvirt.open(self.uri)

    def getFreeMemory(self):  # noqa: N802 (libvirt's name)
        return 16384 * 1024 * 1024

    def __getattr__(self, name):
        return getattr(self.conn, name)


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(d / "linux.qcow2"), "64M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(d / "windows.qcow2"), "64M"], check=True)
    (d / "vmlinuz").write_bytes(b"kernel")
    (d / "initrd.img").write_bytes(b"initrd")
    (d / "win1.pfx").write_bytes(b"\x30\x82pkcs12 stand-in")
    return d


def make(files, tmp_path, hv=None, win1=None, **kw):
    hv = hv or Hypervisor(tmp_path)
    machines = [{"name": "lb", "memory_mb": 512, "vcpus": 1, "image": str(files / "linux.qcow2"),
                 "kernel": str(files / "vmlinuz"), "initrd": str(files / "initrd.img"), "os": "linux"},
                dict({"name": "win1", "memory_mb": 4096, "vcpus": 2, "image": str(files / "windows.qcow2"),
                      "os": "windows", "winrm_pfx": str(files / "win1.pfx")}, **(win1 or {}))]
    settings = {"uri": hv.uri, "confined": False, "lab_dir": str(tmp_path / "lab"), "ssh_pubkey": PUBKEY,
                "machines": machines, "windows_admin_password": PASSWORD}
    settings.update(kw)
    return get_provider("libvirt", build_topology(SPEC), connect=lambda _uri: hv, **settings), hv


def converge(p, state="present"):
    p.preflight(state)
    acts = p.plan(state, p.current())
    p.apply(acts)
    return [a.text for a in acts]


def test_the_config_drive_files_exactly():
    files = guest_seed.cloudbase_seed("win1", "20.1.1.10/24", 1520, "02:4c:14:01:01:0a", PASSWORD, b"PFX", "it's")
    seed_id = json.loads(files["openstack/latest/meta_data.json"])["uuid"]
    assert sorted(files) == ["openstack/latest/meta_data.json", "openstack/latest/network_data.json",
                             "openstack/latest/user_data"]
    assert json.loads(files["openstack/latest/meta_data.json"]) == {
        "uuid": seed_id, "name": "win1", "hostname": "win1", "launch_index": 0, "availability_zone": "l4lb",
        "admin_pass": PASSWORD}
    assert json.loads(files["openstack/latest/network_data.json"]) == {
        "links": [{"id": "lab0", "type": "phy", "ethernet_mac_address": "02:4c:14:01:01:0a", "mtu": 1520}],
        "networks": [{"id": "lab", "type": "ipv4", "link": "lab0", "ip_address": "20.1.1.10",
                      "netmask": "255.255.255.0", "routes": [], "network_id": "lab"}],
        "services": []}
    assert files["openstack/latest/user_data"] == (
        "#ps1_sysnative\n"
        "# L4LB lab: WinRM over HTTPS with the certificate the lab made for this node (its CA is the lab's).\n"
        "$ErrorActionPreference = 'Stop'\n"
        "$path = Join-Path -Path $env:TEMP -ChildPath 'l4lb-winrm.pfx'\n"
        "[IO.File]::WriteAllBytes($path, [Convert]::FromBase64String('UEZY'))\n"
        "$secret = ConvertTo-SecureString -String 'it''s' -AsPlainText -Force\n"
        "$cert = Import-PfxCertificate -FilePath $path -CertStoreLocation Cert:\\LocalMachine\\My -Password $secret\n"
        "Remove-Item -LiteralPath $path\n"
        "Get-ChildItem -Path WSMan:\\localhost\\Listener | Where-Object { $_.Keys -contains 'Transport=HTTPS' } | "
        "Remove-Item -Recurse -Force\n"
        "New-Item -Path WSMan:\\localhost\\Listener -Transport HTTPS -Address * "
        "-CertificateThumbPrint $cert.Thumbprint -Force | Out-Null\n"
        "if (-not (Get-NetFirewallRule -Name 'l4lb-winrm-https' -ErrorAction SilentlyContinue)) {\n"
        "    New-NetFirewallRule -Name 'l4lb-winrm-https' -DisplayName 'L4LB lab: WinRM over HTTPS' -Direction "
        "Inbound -Protocol TCP -LocalPort 5986 -RemoteAddress '20.1.1.0/24' -Action Allow | Out-Null\n"
        "}\n")
    # the seed id follows every input: a changed seed is a new instance to cloudbase-init
    def uuid_of(f):
        return json.loads(f["openstack/latest/meta_data.json"])["uuid"]
    again = uuid_of(guest_seed.cloudbase_seed("win1", "20.1.1.10/24", 1520, "02:4c:14:01:01:0a", PASSWORD, b"PFX", "it's"))
    other = uuid_of(guest_seed.cloudbase_seed("win1", "20.1.1.10/24", 1520, "02:4c:14:01:01:0a", PASSWORD + "x", b"PFX",
                                      "it's"))
    assert again == seed_id != other


@pytest.mark.skipif(not shutil.which("xorriso"), reason="xorriso is installed by scripts/setup.sh")
def test_the_config_drive_is_an_iso_labelled_config_2(tmp_path):
    files = guest_seed.cloudbase_seed("win1", "20.1.1.10/24", 1500, "02:4c:14:01:01:0a", PASSWORD, b"PFX")
    iso = tmp_path / "seed" / "win1.iso"
    guest_seed.write_seed(str(iso), files, label="config-2", mode=0o600)
    assert oct(iso.stat().st_mode & 0o777) == "0o600"
    out = subprocess.run(["xorriso", "-indev", str(iso), "-pvd_info", "-find", "/", "-type", "f"],
                         capture_output=True, text=True, check=True)
    text = out.stdout + out.stderr
    assert "Volume Id    : config-2" in text
    for rel in files:
        assert f"'/{rel}'" in text
    extract = tmp_path / "x"
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", "/", str(extract)],
                   capture_output=True, check=True)
    for rel, data in files.items():
        assert (extract / rel).read_text() == data
    assert guest_seed.read_seed(str(iso)) == files


def test_windows_domain_boots_its_disk_with_the_config_drive(files, tmp_path):
    p, _ = make(files, tmp_path)
    p.preflight("present")
    win1 = p.t.node("win1")
    root = ET.fromstring(p.domain_xml(win1))
    assert root.find("os/kernel") is None and root.find("os/cmdline") is None
    assert root.find("os/boot").get("dev") == "hd"
    assert root.find("clock").get("offset") == "localtime"
    assert [e.tag for e in root.find("features/hyperv")] == ["relaxed", "vapic", "spinlocks"]
    cdrom = root.find("devices/disk[@device='cdrom']")
    assert cdrom.find("source").get("file") == str(tmp_path / "lab" / "seed" / "win1.iso")
    assert (cdrom.find("target").get("bus"), cdrom.find("readonly") is not None) == ("sata", True)
    owner = root.find(f"metadata/{{{lv.METADATA_NS}}}lab")
    assert owner.get("seed") == json.loads(p.seed_files(win1)["openstack/latest/meta_data.json"])["uuid"]
    # the Linux guest is as before
    lb = ET.fromstring(p.domain_xml(p.t.node("lb")))
    assert lb.find("os/kernel").text.endswith("vmlinuz") and lb.find("devices/disk[@device='cdrom']") is None


def test_windows_domain_xml_is_valid_for_libvirt(files, tmp_path):
    if not shutil.which("virt-xml-validate"):
        pytest.fail("virt-xml-validate not found: scripts/setup.sh installs libvirt-clients")
    p, _ = make(files, tmp_path)
    p.preflight("present")
    path = tmp_path / "win1.xml"
    path.write_text(p.domain_xml(p.t.node("win1")))
    r = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr or r.stdout


@pytest.mark.skipif(not shutil.which("xorriso"), reason="xorriso is installed by scripts/setup.sh")
def test_plan_apply_rerun_and_a_changed_seed(files, tmp_path):
    p, hv = make(files, tmp_path)
    done = converge(p)
    assert any(t.startswith(f"write seed {tmp_path}/lab/seed/win1.iso (config drive: win1, 20.1.1.10") for t in done)
    assert (tmp_path / "lab" / "seed" / "win1.iso").is_file()
    assert p.plan("present", p.current()) == []
    snap = p.current()
    assert p.describe(snap) == p.describe_desired()
    assert PASSWORD not in p.describe(snap)
    # another password: a new seed, the drive rebuilt, the domain redefined and restarted
    p2, _ = make(files, tmp_path, hv=hv, windows_admin_password=PASSWORD + "2")
    texts = converge(p2)
    assert texts[0].startswith("write seed") and any(t.startswith("define domain l4tw-win1") for t in texts)
    assert p2.plan("present", p2.current()) == []
    # a lost drive is rebuilt, nothing else
    (tmp_path / "lab" / "seed" / "win1.iso").unlink()
    texts = [a.text for a in p2.plan("present", p2.current())]
    assert [t.split(" (")[0] for t in texts] == [f"write seed {tmp_path}/lab/seed/win1.iso", "start domain l4tw-win1"]
    assert converge(p2, "absent") and not (tmp_path / "lab").exists()


@pytest.mark.parametrize("win1, kw, needle", [
    ({"winrm_pfx": None}, {}, "hostvars[win1]: a Windows guest needs its WinRM certificate"),
    ({"winrm_pfx": "/nonexistent/win1.pfx"}, {}, "hostvars[win1]: winrm_pfx /nonexistent/win1.pfx does not exist"),
    ({}, {"windows_admin_password": ""}, "hostvars[win1]: a Windows guest needs the administrator password"),
    ({"memory_mb": 1024}, {}, "hostvars[win1].lab_memory_mb 1024 is too little for Windows Server 2022"),
    ({"image": None}, {}, "hostvars[win1].lab_image is not set"),
    ({}, {"uri": "qemu+ssh://kvmhost/system"}, "lab_libvirt_uri 'qemu+ssh://kvmhost/system' must be a local hypervisor"),
])
def test_refusals_name_the_variable_before_any_change(files, tmp_path, win1, kw, needle):
    p, hv = make(files, tmp_path, win1=win1, **kw)
    with pytest.raises(TopologyError) as e:
        p.preflight("present")
    assert any(needle in m for m in e.value.problems), e.value.problems
    assert not any(d.name().startswith("l4tw-") for d in hv.listAllDomains())
    assert not (tmp_path / "lab").exists()


def test_the_module_never_returns_the_administrator_password(files, tmp_path):
    """lab_topology with a Windows guest whose preflight fails (no WinRM certificate): the
    result says why, and the password (a no_log option) appears nowhere in it."""
    import importlib.util
    import io
    import os
    from contextlib import redirect_stdout

    from ansible.module_utils.testing import patch_module_args

    from labtest import REPO
    spec = importlib.util.spec_from_file_location("lab_topology_mod", os.path.join(REPO, "library", "lab_topology.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    secret = "Module-Fake-Secret-42"
    nodes = [dict(n) for n in SPEC["nodes"]]
    args = {"state": "present", "provider": "libvirt", "prefix": "l4tw", "subnet": "20.1.1.0/24", "vip": "40.1.1.1",
            "state_dir": str(tmp_path / "state"), "bpffs_dir": "/sys/fs/bpf/l4tw", "nodes": nodes,
            "libvirt": {"uri": "test:///default", "confined": False, "lab_dir": str(tmp_path / "lab"),
                        "ssh_pubkey": PUBKEY, "windows_admin_password": secret,
                        "machines": [{"name": "win1", "os": "windows", "memory_mb": 4096,
                                      "image": str(files / "windows.qcow2")}]}}
    out = io.StringIO()
    with patch_module_args(args), redirect_stdout(out), pytest.raises(SystemExit):
        mod.main()
    text = out.getvalue()
    result = json.loads(text)
    assert result["failed"] is True and "a Windows guest needs its WinRM certificate" in result["msg"]
    assert secret not in text


def test_the_role_hands_each_windows_guest_its_certificate():
    """roles/lab_topology/tasks/libvirt.yml's machine list, rendered: a Windows guest gets its
    PKCS#12 and passphrase, a Linux guest neither; the module gets the administrator password."""
    import os

    from labtest import REPO
    from winrender import Renderer, find_task
    hv = {"lb": {"lab_ip": "20.1.1.1", "inventory_hostname": "lb"},
          "win1": {"lab_ip": "20.1.1.10", "lab_os": "windows", "lab_image": "/srv/win2022.qcow2",
                   "lab_memory_mb": 4096, "inventory_hostname": "win1"}}
    r = Renderer("lab_topology", "lb", groups={"lb_nodes": ["lb"], "backends": ["win1"], "clients": []},
                 lab_winrm_password="pw", lab_topology_winrm_pfx_passphrase="pp", lab_libvirt_dir="/var/lib/l4lb-lab/x")
    r.vars["hostvars"] = hv
    assert r.var("lab_topology_windows_guests") == ["win1"]
    task = find_task(os.path.join(REPO, "roles", "lab_topology", "tasks", "libvirt.yml"), "Describe the guests' machines")
    machines = r.value(task["ansible.builtin.set_fact"]["lab_topology_libvirt"]["machines"],
                       lab_topology_image={"base": "/c/base.qcow2", "kernel": "/c/vmlinuz", "initrd": "/c/initrd.img"})
    by = {m["name"]: m for m in machines}
    assert by["win1"]["os"] == "windows" and by["win1"]["image"] == "/srv/win2022.qcow2"
    assert by["win1"]["winrm_pfx"] == "/var/lib/l4lb-lab/x/winrm/win1.pfx" and by["win1"]["winrm_pfx_passphrase"] == "pp"
    assert "winrm_pfx" not in by["lb"] and by["lb"]["os"] == "linux"
    main = find_task(os.path.join(REPO, "roles", "lab_topology", "tasks", "main.yml"), "Lab topology is")
    libvirt_arg = r.value(main["lab_topology"]["libvirt"], lab_topology_provider="libvirt",
                          lab_topology_libvirt={"uri": "qemu:///system", "machines": machines})
    assert libvirt_arg["windows_admin_password"] == "pw"


def test_wait_ready_probes_winrm_on_windows_guests(files, tmp_path, monkeypatch):
    """A Windows guest is ready when its WinRM HTTPS listener takes a connection (no sshd)."""
    p, _ = make(files, tmp_path)
    monkeypatch.setattr(lv.LibvirtProvider, "bridge_is_local", property(lambda self: True))
    asked = []

    def ssh(ip, port):
        asked.append(("ssh", ip, port))
        return True

    def tcp(ip, port):
        asked.append(("tcp", ip, port))
        return False

    monkeypatch.setattr(lv, "_ssh_answers", ssh)
    monkeypatch.setattr(lv, "_port_answers", tcp)
    with pytest.raises(lv.ProviderError, match=r"guests win1 did not answer SSH \(WinRM on 5986 for the Windows "
                                               r"ones\) within 0 s"):
        p.wait_ready(0)
    assert ("ssh", "20.1.1.1", 22) in asked and ("tcp", "20.1.1.10", 5986) in asked
