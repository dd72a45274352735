"""Testinfra checks of the molecule labs (hosts: lab_nodes): in the namespace scenarios (default,
tier) every command goes through Ansible and its netns connection plugin (--force-ansible); in
the libvirt scenario a guest's go over the lab's SSH, the client's through Ansible."""

import json
import os

SUBNET_PREFIXLEN = 24


def _lab_ip(host):
    return str(host.ansible.get_variables()["lab_ip"])


def _prefix(host):
    """The lab prefix (the scenario sets L4LB_PREFIX; inventory values are unrendered templates
    here, only commands sent through Ansible are rendered)."""
    return os.environ.get("L4LB_PREFIX") or host.ansible.get_variables()["lab_prefix"]


def _provider(host):
    return host.ansible.get_variables().get("lab_topology_provider", "netns")


def _iface(host):
    """The interface holding the node's lab address: eth0, or for the libvirt provider's client
    (the hypervisor's host side) the network's bridge <prefix>-br."""
    v = host.ansible.get_variables()
    if v["inventory_hostname"] in v["groups"]["clients"] and _provider(host) == "libvirt":
        return f"{_prefix(host)}-br"
    return "eth0"


def test_node_is_reachable_and_in_its_own_namespace(host):
    # the command runs inside the node's namespace (or guest): only lo and eth0 are there; the
    # libvirt client (the host's side) holds the bridge and the guests' taps instead
    links = sorted(link["ifname"] for link in json.loads(host.check_output("ip -j link show")))
    if _iface(host) == "eth0":
        assert links == ["eth0", "lo"]
    else:
        assert _iface(host) in links and "eth0" not in links


def test_node_address(host):
    addrs = json.loads(host.check_output(f"ip -j -4 addr show dev {_iface(host)}"))
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
    # the VIP range (lab_vip_range, holding the seed's 40.1.1.1) through the LB node
    routes = json.loads(host.check_output("ip -j route show 40.1.1.0/24"))
    if hostvars["inventory_hostname"] in hostvars["groups"]["clients"]:
        # one next hop per LB node, in lb_nodes' order (an LB tier: an ECMP route)
        lbs = [str(host.backend.ansible_runner.get_variables(h)["lab_ip"]) for h in hostvars["groups"]["lb_nodes"]]
        hops = [(h["gateway"], h["dev"]) for r in routes for h in (r.get("nexthops") or [r])]
        assert hops == [(ip, _iface(host)) for ip in lbs]
    else:
        assert routes == []


def test_client_hashes_ecmp_on_the_l4_tuple(host):
    """An LB tier's client (the router) spreads connections by their ports too."""
    v = host.ansible.get_variables()
    if v["inventory_hostname"] not in v["groups"]["clients"] or len(v["groups"]["lb_nodes"]) < 2:
        pytest.skip("not the client of an LB tier")
    assert host.check_output("cat /proc/sys/net/ipv4/fib_multipath_hash_policy") == "1"


# --- the load balancer lab (both scenarios; the mode comes from L4LB_EXPECT_MODE) ---------

import pytest  # noqa: E402

MODE = os.environ.get("L4LB_EXPECT_MODE", "snat")
VIP = "40.1.1.1"


def _vars(host):
    return host.ansible.get_variables()


def _only(host, group):
    """Skip, visibly in the report, a check that is about another group's hosts."""
    v = _vars(host)
    if v["inventory_hostname"] not in v["groups"][group]:
        pytest.skip(f"{v['inventory_hostname']} is not in {group}")


def _xdp(host):
    link = json.loads(host.check_output("ip -j -d link show dev eth0"))[0]
    return link.get("xdp", {})


def test_backend_nginx_runs_in_its_namespace(host):
    _only(host, "backends")
    v = _vars(host)
    state_dir = f"/run/{_prefix(host)}/{v['inventory_hostname']}/nginx"
    # The pid file's process is alive and listening on :80 in this namespace.
    pid = host.check_output(f"cat {state_dir}/nginx.pid")
    assert host.run(f"test -d /proc/{pid}").rc == 0
    listeners = host.check_output("ss -Hltn 'sport = :80'")
    assert ":80" in listeners


def test_backend_vip_on_lo(host):
    _only(host, "backends")
    addrs = json.loads(host.check_output("ip -j -4 addr show dev lo"))
    assert VIP in [a["local"] for link in addrs for a in link["addr_info"]]


def test_backend_decap_attached_by_method(host):
    _only(host, "backends")
    method = _vars(host)["backend_decap"]
    if method == "xdp":
        xdp = _xdp(host)
        assert xdp, "XDP decap is not attached"
        prog = xdp.get("prog") or xdp["attached"][0]["prog"]
        assert prog["name"] == "decap_xdp", f"XDP program {prog['name']!r} attached, not the decap"
    else:
        assert _xdp(host) == {}, "an XDP program is attached to a tc-decap backend"
        filters = json.loads(host.check_output("tc -j filter show dev eth0 ingress"))
        ours = [f["options"] for f in filters if "options" in f]  # the chain-header rows have none
        assert [o["prog"]["name"] for o in ours] == ["decap_tc"], filters
        assert all(o.get("direct-action") for o in ours), filters


def test_lb_xdp_attached_in_the_mode(host):
    _only(host, "lb_nodes")
    xdp = _xdp(host)
    prog = xdp.get("prog") or xdp["attached"][0]["prog"]
    assert prog["name"] == f"lb_xdp_{MODE}"


def test_lb_service_maps_programmed(host):
    _only(host, "lb_nodes")
    v = _vars(host)
    if _provider(host) == "netns":  # the namespace shares this machine's files
        repo = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
        ctl = f"{repo}/.venv/bin/python {repo}/bin/l4lbctl"
    else:  # the copy lb_node made on the guest
        ctl = f"python3 /run/{_prefix(host)}/{v['inventory_hostname']}/tool/bin/l4lbctl"
    pin_dir = f"/sys/fs/bpf/{_prefix(host)}/{v['inventory_hostname']}"
    out = json.loads(host.check_output(f"{ctl} --json --pin-dir {pin_dir} service list"))
    services = {s["id"]: s for s in out["services"]}
    assert services[1]["vip"] == VIP and services[1]["port"] == 80
    assert sorted(b["ip"] for b in services[1]["backends"]) == ["20.1.1.10", "20.1.1.20", "20.1.1.30", "20.1.1.40"]


def test_lb_tier_maglev_tables_are_identical(host):
    """Every LB node of a tier reads the same Maglev table from its maps (by backend identity)."""
    _only(host, "lb_nodes")
    v = _vars(host)
    if len(v["groups"]["lb_nodes"]) < 2 or _provider(host) != "netns":
        pytest.skip("one LB node, or its peers' pins are not on this machine")
    repo = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
    ctl = f"{repo}/.venv/bin/python {repo}/bin/l4lbctl"
    digests = {}
    for node in v["groups"]["lb_nodes"]:
        out = json.loads(host.check_output(
            f"{ctl} --json --pin-dir /sys/fs/bpf/{_prefix(host)}/{node} service dumpstate --id 1"))
        digests[node] = out["maglev"]["digest"]
    assert len(set(digests.values())) == 1, digests


def test_http_through_the_vip_reaches_every_backend(host):
    _only(host, "clients")
    seen = set()
    for port in range(43000, 43024):
        out = host.check_output(f"curl -s -m 3 --local-port {port} -o /dev/null -D - http://{VIP}/")
        seen |= {line.split(":", 1)[1].strip() for line in out.splitlines()
                 if line.lower().startswith("x-backend:")}
    assert seen == set(_vars(host)["groups"]["backends"])
