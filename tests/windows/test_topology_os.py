"""lab_os in the provider-neutral model: Windows accepted where the Windows roles exist
(the LB node; backends with XDP decap), refused elsewhere (the client) naming the host; the netns provider refuses Windows
nodes; the external provider (the user's own machines) makes and removes nothing. Pure Python."""

from __future__ import annotations

import pytest

import labtest  # noqa: F401  (puts module_utils on ansible.module_utils' path)
from ansible.module_utils import lab_topology as lt


def spec(**over):
    nodes = [{"name": "lb", "ip": "20.1.1.1", "role": "lb"},
             {"name": "win1", "ip": "20.1.1.10", "role": "backend", "decap": "xdp", "os": "windows"},
             {"name": "win2", "ip": "20.1.1.20", "role": "backend", "decap": "xdp", "os": "windows"},
             {"name": "linux1", "ip": "20.1.1.30", "role": "backend", "decap": "tc"},
             {"name": "client", "ip": "20.1.1.100", "role": "client"}]
    for n in nodes:
        n.update(over.get(n["name"], {}))
    return {"prefix": "w", "subnet": "20.1.1.0/24", "vip": "40.1.1.1", "state_dir": "/run/w",
            "bpffs_dir": "/sys/fs/bpf/w", "nodes": nodes}


def problems(s):
    with pytest.raises(lt.TopologyError) as e:
        lt.build_topology(s)
    return e.value.problems


def test_windows_backends_are_accepted_and_carried_in_the_model():
    t = lt.build_topology(spec())
    assert [(n.name, n.os) for n in t.nodes] == [("lb", "linux"), ("win1", "windows"), ("win2", "windows"),
                                                 ("linux1", "linux"), ("client", "linux")]
    assert t.as_dict()["nodes"][1]["os"] == "windows"


def test_os_defaults_to_linux_when_unset_or_empty():
    t = lt.build_topology(spec(win1={"os": None}, win2={"os": ""}))
    assert t.node("win1").os == t.node("win2").os == "linux"


def test_unknown_os_is_refused_naming_the_host():
    assert problems(spec(linux1={"os": "plan9"})) == [
        "hostvars[linux1].lab_os 'plan9' must be one of linux, windows"]


def test_a_windows_lb_node_is_accepted_as_in_the_seed():
    t = lt.build_topology(spec(lb={"os": "windows"}))
    assert t.node("lb").os == "windows" and t.node("lb").role == "lb"
    assert lt.WINDOWS_ROLES == ("lb", "backend")


def test_windows_client_is_refused():
    (msg,) = problems(spec(client={"os": "windows"}))
    assert msg == ("hostvars[client].lab_os 'windows': a Windows client node is not supported: "
                   "the client runs the lab's Python probes (lab_verify); Windows roles exist for: lb, backend")


def test_windows_backend_with_tc_decap_is_refused():
    assert problems(spec(win1={"decap": "tc"})) == [
        "hostvars[win1].backend_decap 'tc': a Windows backend decapsulates with xdp "
        "(eBPF-for-Windows has no tc hook)"]


def test_netns_provider_refuses_windows_nodes():
    p = lt.get_provider("netns", lt.build_topology(spec()))
    with pytest.raises(lt.TopologyError) as e:
        p.preflight("absent")
    assert "hostvars[win1].lab_os 'windows': a network namespace runs no Windows; for Windows hosts " \
           "you have, use lab_topology_provider: external (inventory/windows)" in e.value.problems


def test_external_provider_makes_and_removes_nothing():
    t = lt.build_topology(spec())
    p = lt.get_provider("external", t)
    p.preflight("present")
    p.preflight("absent")
    snap = p.current()
    assert p.plan("present", snap) == [] and p.plan("absent", snap) == []
    assert p.placement() == {"nodes": {n: {"connection": "inventory"}
                                       for n in ("lb", "win1", "win2", "linux1", "client")},
                             "capture": None, "namespaces": []}
    assert p.describe(snap) == p.describe_desired() == (
        "external lab w: subnet 20.1.1.0/24, vip 40.1.1.1 (the machines are the user's; nothing is made "
        "or removed)\n"
        "  lb: lb linux 20.1.1.1\n"
        "  win1: backend windows 20.1.1.10\n"
        "  win2: backend windows 20.1.1.20\n"
        "  linux1: backend linux 20.1.1.30\n"
        "  client: client linux 20.1.1.100, route 40.1.1.1/32 via 20.1.1.1\n")


def test_external_is_a_registered_provider():
    assert "external" in lt.PROVIDERS and lt.PROVIDERS["external"] is lt.ExternalProvider
