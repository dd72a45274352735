"""The topology model is provider-neutral and every provider sits behind one declared interface
(module_utils/lab_topology/provider.py). Pure Python: nothing on the machine is touched."""

from __future__ import annotations

import inspect

import pytest

import labtest  # noqa: F401  (puts module_utils on ansible.module_utils' path)
from ansible.module_utils import lab_topology as lt
from ansible.module_utils.lab_topology import model

SPEC = {"prefix": "m", "subnet": "20.1.1.0/24", "vip": "40.1.1.1", "state_dir": "/run/m",
        "bpffs_dir": "/sys/fs/bpf/m",
        "nodes": [{"name": "lb", "ip": "20.1.1.1", "role": "lb"},
                  {"name": "win1", "ip": "20.1.1.10", "role": "backend", "decap": "xdp"},
                  {"name": "client", "ip": "20.1.1.100", "role": "client"}]}


def test_model_knows_nothing_of_namespaces():
    t = lt.build_topology(SPEC)
    text = repr(t.as_dict())
    assert "namespace" not in text and "netns" not in text
    assert not hasattr(t.nodes[0], "namespace") and not hasattr(t, "switch_ns")
    assert "netns" not in inspect.getsource(model).lower().replace("network namespaces", "")


def test_client_routes_the_vip_via_the_lb_node():
    t = lt.build_topology(SPEC)     # no vip_range: the VIP's /32, as the seed routes it
    (route,) = t.node("client").routes
    assert (str(route.dst), str(route.via)) == ("40.1.1.1/32", "20.1.1.1")
    assert str(t.vip_range) == "40.1.1.1/32"


def test_client_routes_the_vip_range_via_the_lb_node():
    t = lt.build_topology(dict(SPEC, vip_range="40.1.1.0/24"))
    (route,) = t.node("client").routes
    assert (str(route.dst), [str(h) for h in route.nexthops], route.ecmp) == ("40.1.1.0/24", ["20.1.1.1"], False)
    assert t.as_dict()["vip_range"] == "40.1.1.0/24"
    client = next(n for n in t.as_dict()["nodes"] if n["name"] == "client")
    assert client["routes"] == [{"dst": "40.1.1.0/24", "via": "20.1.1.1", "nexthops": ["20.1.1.1"]}]
    assert all(n.routes == [] for n in t.nodes if n.role != "client")


@pytest.mark.parametrize("vip_range, problem", [
    ("40.1.2.0/24", "lab_vip_range 40.1.2.0/24 does not contain lab_vip 40.1.1.1"),
    ("40.1.1.1/24", "lab_vip_range '40.1.1.1/24' is not an IPv4 network in CIDR form"),
    ("forty", "lab_vip_range 'forty' is not an IPv4 network in CIDR form"),
    ("0.0.0.0/0", "lab_vip_range 0.0.0.0/0 overlaps lab_subnet 20.1.1.0/24"),
])
def test_a_bad_vip_range_is_refused_naming_the_variable(vip_range, problem):
    with pytest.raises(lt.TopologyError) as e:
        lt.build_topology(dict(SPEC, vip_range=vip_range))
    assert any(p.startswith(problem) for p in e.value.problems), e.value.problems


def test_a_vip_range_over_the_subnet_and_off_the_vip_names_both():
    with pytest.raises(lt.TopologyError) as e:
        lt.build_topology(dict(SPEC, vip_range="20.1.0.0/16"))
    assert [p.split(":")[0] for p in e.value.problems] == [
        "lab_vip_range 20.1.0.0/16 does not contain lab_vip 40.1.1.1",
        "lab_vip_range 20.1.0.0/16 overlaps lab_subnet 20.1.1.0/24"]


def test_an_ecmp_route_has_one_next_hop_per_lb():
    """The model's route takes several next hops (an LB tier); the netns provider writes them as
    one multipath route and reads iproute2's nexthops back."""
    from ansible.module_utils.lab_topology import netns
    r = model.Route(model.ipaddress.IPv4Network("40.1.1.0/24"),
                    [model.ipaddress.IPv4Address("20.1.1.1"), model.ipaddress.IPv4Address("20.1.1.2")])
    assert r.ecmp and str(r) == "40.1.1.0/24 via 20.1.1.1, 20.1.1.2"
    assert netns.route_argv(r, "eth0") == ["nexthop", "via", "20.1.1.1", "dev", "eth0",
                                           "nexthop", "via", "20.1.1.2", "dev", "eth0"]
    shown = {"dst": "40.1.1.0/24", "nexthops": [{"gateway": "20.1.1.2", "dev": "eth0", "weight": 1},
                                                {"gateway": "20.1.1.1", "dev": "eth0", "weight": 1}]}
    assert netns.route_hops(shown) == netns.route_want(r, "eth0")
    single = model.Route(r.dst, r.nexthops[0])
    assert netns.route_argv(single, "eth0") == ["via", "20.1.1.1", "dev", "eth0"]
    assert netns.route_hops({"dst": "40.1.1.0/24", "gateway": "20.1.1.1", "dev": "eth0"}) == \
        netns.route_want(single, "eth0")
    assert netns.route_hops({"dst": "40.1.1.0/24", "gateway": "20.1.1.9", "dev": "eth0"}) != \
        netns.route_want(single, "eth0")


def test_netns_plans_the_range_route_and_keeps_a_right_one():
    t = lt.build_topology(dict(SPEC, vip_range="40.1.1.0/24"))
    p = lt.get_provider("netns", t)
    text = p.describe_desired()
    assert "netns m-client" in text and "  route 40.1.1.0/24 via 20.1.1.1 dev eth0" in text


def test_every_registered_provider_implements_the_interface():
    assert {"netns", "libvirt", "external"} <= set(lt.PROVIDERS)
    for name, cls in lt.PROVIDERS.items():
        assert issubclass(cls, lt.TopologyProvider) and cls.name == name
        assert not inspect.isabstract(cls), f"{name} leaves abstract methods"


def test_the_interface_is_enforced():
    class Half(lt.TopologyProvider):
        name = "half"

        def preflight(self, state):
            pass

    with pytest.raises(TypeError):
        Half(lt.build_topology(SPEC))


def test_unknown_provider_is_refused_by_variable_name():
    with pytest.raises(lt.TopologyError, match="lab_topology_provider 'vmware' is not one of external, libvirt, netns"):
        lt.get_provider("vmware", lt.build_topology(SPEC))


def test_netns_placement_says_where_nodes_and_the_capture_point_are():
    p = lt.get_provider("netns", lt.build_topology(SPEC))
    pl = p.placement()
    assert pl["nodes"]["win1"] == {"connection": "netns", "namespace": "m-win1"}
    assert pl["capture"] == {"connection": "netns", "namespace": "m-switch", "lb_ports": ["lb"]}
    assert pl["namespaces"] == ["m-switch", "m-lb", "m-win1", "m-client"]


def test_netns_specific_names_are_checked_by_the_netns_provider():
    spec = dict(SPEC, nodes=SPEC["nodes"] + [{"name": "switch", "ip": "20.1.1.50", "role": "backend",
                                                "decap": "tc"}])
    t = lt.build_topology(spec)      # the model has no objection
    with pytest.raises(lt.TopologyError, match="'switch' collides with the switch namespace m-switch"):
        lt.get_provider("netns", t).preflight("absent")


TIER = dict(SPEC, vip_range="40.1.1.0/24", nodes=SPEC["nodes"][:1] + [{"name": "lb2", "ip": "20.1.1.2", "role": "lb"}]
            + SPEC["nodes"][1:])


def test_an_lb_tier_gets_an_ecmp_route_hashed_on_l4():
    """Two LB nodes: the client's route has both next hops in lb_nodes' order and the client's
    namespace hashes ECMP on the L4 tuple; one LB node keeps the seed's single route, no sysctl."""
    t = lt.build_topology(TIER)
    client = t.node("client")
    assert [str(h) for h in client.routes[0].nexthops] == ["20.1.1.1", "20.1.1.2"]
    assert client.sysctls == {"net.ipv4.fib_multipath_hash_policy": "1"}
    assert all(not n.sysctls for n in t.nodes if n.name != "client")
    text = lt.get_provider("netns", t).describe_desired()
    assert "  sysctl net.ipv4.fib_multipath_hash_policy=1" in text
    assert "  route 40.1.1.0/24 via 20.1.1.1 dev eth0 via 20.1.1.2 dev eth0" in text
    assert lt.build_topology(SPEC).node("client").sysctls == {}


def test_a_client_without_lb_node_is_refused():
    spec = dict(SPEC, nodes=SPEC["nodes"][1:])
    with pytest.raises(lt.TopologyError, match="lb_nodes holds no host"):
        lt.build_topology(spec)


def test_the_libvirt_provider_refuses_a_tier():
    t = lt.build_topology(TIER)
    p = lt.get_provider("libvirt", t)
    with pytest.raises(lt.TopologyError, match="one gateway, so it cannot spread the range over the LB tier"):
        p.preflight("present")
