"""What the roles derive from the service list (filter_plugins/l4lb_services.py): each backend's
VIPs and ports, the VIP range refusal, lab_verify's services, the client route's next hops.
Pure Python: nothing on the machine is touched."""

from __future__ import annotations

import importlib.util
import os

import pytest
from ansible.errors import AnsibleFilterError

from labtest import REPO

_spec = importlib.util.spec_from_file_location("l4lb_services_filters",
                                               os.path.join(REPO, "filter_plugins", "l4lb_services.py"))
f = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(f)

# Three services on two VIPs and two ports (tests/lab/test_vips.py's list), each syntax once.
SERVICES = [
    {"id": 1, "frontend": "40.1.1.1:80", "backends": ["20.1.1.10:80", "20.1.1.30:80"]},
    {"id": 2, "vip": "40.1.1.2", "port": 80, "backends": "20.1.1.20:80, 20.1.1.40:80@0"},
    {"id": 3, "frontend": "40.1.1.2:8080", "protocol": "tcp",
     "backends": [{"ip": "20.1.1.10", "port": 8080}, {"address": "20.1.1.40", "port": 8080, "weight": 3}]},
    {"id": 4, "frontend": "40.1.1.9:80", "backends": ["20.1.1.20:80"], "state": "absent"},
]
HOSTS = {"20.1.1.10": "win1", "20.1.1.20": "win2", "20.1.1.30": "linux1", "20.1.1.40": "linux2"}


@pytest.mark.parametrize("ip, vips, ports", [
    ("20.1.1.10", ["40.1.1.1", "40.1.1.2"], [80, 8080]),
    ("20.1.1.20", ["40.1.1.2"], [80]),          # service 4 is absent: 40.1.1.9 is not held
    ("20.1.1.30", ["40.1.1.1"], [80]),
    ("20.1.1.40", ["40.1.1.2"], [80, 8080]),    # drained (weight 0) in service 2: still held
    ("20.1.1.50", [], []),                      # a backend no service uses holds no VIP
])
def test_each_backend_holds_the_vips_of_its_services(ip, vips, ports):
    assert f.backend_vips(SERVICES, ip) == vips
    assert f.backend_ports(SERVICES, ip) == ports


def test_no_service_list_is_the_seeds_service_on_every_backend():
    assert f.backend_vips(None, "20.1.1.30", "40.1.1.1") == ["40.1.1.1"]
    assert f.backend_ports(None, "20.1.1.30", "40.1.1.1") == [80]
    assert f.backend_vips([], "20.1.1.30", "40.1.1.1") == []   # an empty list serves nothing


def test_removing_a_vips_last_service_drops_the_vip():
    without_2 = [s for s in SERVICES if s["id"] != 2]
    assert f.backend_vips(without_2, "20.1.1.40") == ["40.1.1.2"]      # service 3 still has it
    assert f.backend_vips([s for s in without_2 if s["id"] != 3], "20.1.1.40") == []
    absent_3 = [dict(s, state="absent") if s["id"] == 3 else s for s in without_2]
    assert f.backend_vips(absent_3, "20.1.1.40") == []


def test_udp_services_add_no_listening_port():
    udp = [{"id": 7, "frontend": "40.1.1.3:53", "protocol": "udp", "backends": ["20.1.1.30:53"]}]
    assert f.backend_vips(udp, "20.1.1.30") == ["40.1.1.3"] and f.backend_ports(udp, "20.1.1.30") == []


def test_a_vip_outside_the_range_is_named_with_the_variable_that_widens_it():
    services = SERVICES + [{"id": 9, "frontend": "50.0.0.1:443", "backends": ["20.1.1.10:443"]}]
    assert f.vips_outside(SERVICES, "40.1.1.0/24") == []
    assert f.vips_outside(services, "40.1.1.0/24") == [
        "service 9 (50.0.0.1:443): VIP 50.0.0.1 is outside lab_vip_range 40.1.1.0/24, which is all the "
        "lab routes to the LB node; widen lab_vip_range (inventory group_vars/all) or use a VIP inside it"]
    assert f.vips_outside(services, "") == []                          # no range given: no check
    assert f.vips_outside(None, "40.1.2.0/24", seed_vip="40.1.1.1")[0].startswith("service 1 (40.1.1.1:80)")
    with pytest.raises(AnsibleFilterError, match="lab_vip_range '40.1.1.1/24' is not an IPv4 network"):
        f.vips_outside(services, "40.1.1.1/24")
    # only the VIPs are judged: a backend the core refuses (with its own message) is not read here
    bad_backend = [{"id": 8, "frontend": "50.0.0.2:80", "backends": ["20.1.1.300:80"]}]
    assert f.vips_outside(bad_backend, "40.1.1.0/24")[0].startswith("service 8 (50.0.0.2:80): VIP 50.0.0.2 is outside")
    assert f.vips_outside(None, "40.1.1.0/24", seed_vip="40.1.1.1") == []
    with pytest.raises(AnsibleFilterError, match=r"lb_services\[0\] \(id 8\): frontend '50.0.0.2' is not VIP:PORT"):
        f.vips_outside([{"id": 8, "frontend": "50.0.0.2", "backends": []}], "40.1.1.0/24")


def test_an_unreadable_item_is_named():
    with pytest.raises(AnsibleFilterError, match=r"lb_services\[0\] \(id 5\): frontend '40.1.1.1' is not VIP:PORT"):
        f.backend_vips([{"id": 5, "frontend": "40.1.1.1", "backends": ["20.1.1.10:80"]}], "20.1.1.10")
    with pytest.raises(AnsibleFilterError, match=r"lb_services\[0\] \(id 5\): backend 'win1' is not IP:PORT"):
        f.backend_vips([{"id": 5, "frontend": "40.1.1.1:80", "backends": ["win1"]}], "20.1.1.10")
    with pytest.raises(AnsibleFilterError, match="is not a list of services"):
        f.backend_vips("40.1.1.1:80", "20.1.1.10")


def test_verify_services_name_backends_by_host_and_set_drained_apart():
    got = f.verify_services(SERVICES + [{"id": 5, "frontend": "40.1.1.3:80", "backends": ["10.9.9.9:80"]}], HOSTS)
    assert got == [
        {"id": 1, "vip": "40.1.1.1", "port": 80, "protocol": "tcp", "backends": ["win1", "linux1"], "drained": [],
         "weights": {"win1": 1, "linux1": 1}},
        {"id": 2, "vip": "40.1.1.2", "port": 80, "protocol": "tcp", "backends": ["win2"], "drained": ["linux2"],
         "weights": {"win2": 1, "linux2": 0}},
        {"id": 3, "vip": "40.1.1.2", "port": 8080, "protocol": "tcp", "backends": ["win1", "linux2"], "drained": [],
         "weights": {"win1": 1, "linux2": 3}},
        {"id": 5, "vip": "40.1.1.3", "port": 80, "protocol": "tcp", "backends": ["10.9.9.9"], "drained": [],
         "weights": {"10.9.9.9": 1}},
    ]
    seed = f.verify_services(None, HOSTS, "40.1.1.1")
    assert seed == [{"id": 1, "vip": "40.1.1.1", "port": 80, "protocol": "tcp",
                     "backends": ["win1", "win2", "linux1", "linux2"], "drained": [],
                     "weights": {"win1": 1, "win2": 1, "linux1": 1, "linux2": 1}}]


def test_route_gateways_reads_single_and_ecmp_routes():
    single = '[{"dst":"40.1.1.0/24","gateway":"20.1.1.1","dev":"eth0","flags":[]}]'
    ecmp = [{"dst": "40.1.1.0/24", "flags": [], "nexthops": [
        {"gateway": "20.1.1.2", "dev": "eth0", "weight": 1}, {"gateway": "20.1.1.1", "dev": "eth0", "weight": 1}]}]
    assert f.route_gateways(single, "eth0") == ["20.1.1.1"]
    assert f.route_gateways(single, "eth1") == []
    assert f.route_gateways(ecmp, "eth0") == ["20.1.1.1", "20.1.1.2"]
    assert f.route_gateways("") == [] and f.route_gateways([{"dst": "40.1.1.0/24", "dev": "eth0"}]) == []
