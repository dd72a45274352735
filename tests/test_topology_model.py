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
    t = lt.build_topology(SPEC)
    (route,) = t.node("client").routes
    assert (str(route.dst), str(route.via)) == ("40.1.1.1/32", "20.1.1.1")


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
