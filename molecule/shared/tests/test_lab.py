"""Testinfra checks of the molecule lab (prefix l4lbm), run through the netns connection plugin
(--force-ansible, hosts: lab_nodes)."""

import json

SUBNET_PREFIXLEN = 24


def _lab_ip(host):
    return str(host.ansible.get_variables()["lab_ip"])


def test_node_is_reachable_and_in_its_own_namespace(host):
    # the command runs inside the node's namespace: only lo and eth0 are there
    links = json.loads(host.check_output("ip -j link show"))
    assert sorted(link["ifname"] for link in links) == ["eth0", "lo"]


def test_node_address(host):
    addrs = json.loads(host.check_output("ip -j -4 addr show dev eth0"))
    got = [(a["local"], a["prefixlen"]) for link in addrs for a in link["addr_info"]]
    assert got == [(_lab_ip(host), SUBNET_PREFIXLEN)]
    assert "UP" in addrs[0]["flags"]


def test_node_pings_every_other_node(host):
    hostvars = host.ansible.get_variables()
    peers = [str(host.backend.ansible_runner.get_variables(h)["lab_ip"])
             for h in hostvars["groups"]["lab_nodes"] if h != hostvars["inventory_hostname"]]
    script = "rc=0; for ip in %s; do ping -n -q -c1 -W2 $ip >/dev/null || { echo $ip; rc=1; }; done; exit $rc"
    cmd = host.run(script % " ".join(peers))
    assert cmd.rc == 0, f"unreachable from {hostvars['inventory_hostname']}: {cmd.stdout}"


def test_client_route_to_vip(host):
    hostvars = host.ansible.get_variables()
    routes = json.loads(host.check_output("ip -j route show 40.1.1.1/32"))
    if hostvars["inventory_hostname"] in hostvars["groups"]["clients"]:
        assert [(r["gateway"], r["dev"]) for r in routes] == [("20.1.1.1", "eth0")]
    else:
        assert routes == []
