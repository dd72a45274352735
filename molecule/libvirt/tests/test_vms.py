"""Testinfra checks only real guests have (molecule scenario libvirt, prefix l4lbv): each node
is a VM made by the lab, reached with the lab's key only, and the client is the confined host
namespace in which the lab's own libvirtd runs."""

import json
import os
import subprocess

import pytest


def _vars(host):
    return host.ansible.get_variables()


def _guest(host):
    v = _vars(host)
    if v["inventory_hostname"] not in v["groups"]["lab_guests"]:
        pytest.skip(f"{v['inventory_hostname']} is not a guest")
    return v


def test_guest_is_a_virtual_machine_named_after_its_host(host):
    v = _guest(host)
    assert host.run("systemd-detect-virt --vm").stdout.strip() in ("qemu", "kvm")
    assert host.check_output("hostname") == v["inventory_hostname"]


NOCLOUD = set(filter(None, os.environ.get("L4LB_NOCLOUD_NODES", "").split(",")))


def test_guest_identity_comes_from_its_kernel_command_line_or_its_seed(host):
    v = _guest(host)
    name = v["inventory_hostname"]
    cmdline = host.file("/proc/cmdline").content_string.split()
    if name in NOCLOUD:
        # a stock image's path: nothing on the command line; cloud-init read the NoCloud seed
        assert not [a for a in cmdline if a.startswith(("systemd.hostname=", "ip=", "l4lb."))], cmdline
        info = json.loads(host.check_output("cloud-init query -a"))
        assert info["v1"]["platform"] == "nocloud" and info["v1"]["instance_id"].startswith(f"{name}-")
        assert json.loads(host.check_output("cloud-init status --format json"))["status"] == "done"
        return
    assert f"systemd.hostname={name}" in cmdline
    assert any(a.startswith(f"ip={v['lab_ip']}:") for a in cmdline)
    assert any(a.startswith("l4lb.ssh_key=ssh-ed25519:") for a in cmdline)


def test_guest_takes_only_the_labs_key(host):
    _guest(host)
    sshd = host.check_output("sshd -T")
    assert "passwordauthentication no" in sshd and "kbdinteractiveauthentication no" in sshd
    keys = [k for k in host.file("/root/.ssh/authorized_keys").content_string.splitlines() if k.strip()]
    assert len(keys) == 1 and keys[0].startswith("ssh-ed25519 ")


def test_guest_interface_carries_the_lab_mtu_and_mac(host):
    v = _guest(host)
    link = json.loads(host.check_output("ip -j link show dev eth0"))[0]
    expected_mac = "02:4c:" + ":".join(f"{int(b):02x}" for b in str(v["lab_ip"]).split("."))
    assert link["address"] == expected_mac
    assert link["mtu"] == (1520 if v.get("lab_dsr_fit", "mtu") == "mtu" else 1500)


def test_lb_xdp_runs_on_virtio_net(host):
    v = _guest(host)
    if v["inventory_hostname"] not in v["groups"]["lb_nodes"]:
        pytest.skip("not the LB node")
    link = json.loads(host.check_output("ip -j -d link show dev eth0"))[0]
    assert host.file("/sys/class/net/eth0/device/driver").linked_to.endswith("virtio_net")
    # native when virtio-net accepts it (2 queues per vCPU), generic otherwise: either way attached
    assert link["xdp"]["mode"] in (1, 2), link["xdp"]


def test_client_is_the_confined_host_running_the_labs_libvirtd(host):
    v = _vars(host)
    if v["inventory_hostname"] not in v["groups"]["clients"]:
        pytest.skip("not the client")
    prefix = os.environ["L4LB_PREFIX"]  # inventory values are unrendered templates here
    pid = host.check_output(f"cat /run/{prefix}/libvirtd/libvirtd.pid")
    # the daemon's network namespace is this one (the connection entered <prefix>-host)
    assert host.check_output(f"readlink /proc/{pid}/ns/net") == host.check_output("readlink /proc/self/ns/net")
    assert f"{prefix}-br" in host.check_output("ip -br link show type bridge")


def test_root_namespace_holds_nothing_of_the_lab(host):
    """While the lab runs, this machine's root namespace has no link, address or route of it.
    Read by this test process itself: testinfra runs on the machine hosting the confined lab, in
    its root namespace (only the checks' commands go through Ansible to the nodes)."""
    v = _vars(host)
    if v["inventory_hostname"] not in v["groups"]["clients"]:
        pytest.skip("checked once, with the client")
    prefix = os.environ["L4LB_PREFIX"]

    def ip(*args):
        return subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout

    assert host.check_output("readlink /proc/self/ns/net") != os.readlink("/proc/self/ns/net"), \
        "the client's checks should run in the lab's host namespace, not the root one"
    links = [link["ifname"] for link in json.loads(ip("link", "show"))]
    assert not [name for name in links if name.startswith(f"{prefix}-")], links
    for text in (ip("-4", "addr", "show"), ip("route", "show")):
        assert "20.1.1." not in text and "40.1.1." not in text, text
