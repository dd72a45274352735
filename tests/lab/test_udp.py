"""UDP services end to end on real namespaces, in SNAT and DSR: the traffic users send besides HTTP.

Services (the seed's TCP service kept beside them):

    1  40.1.1.1:80/tcp    -> all four backends (nginx)
    2  40.1.1.1:5353/udp  -> all four backends
    3  40.1.1.1:80/udp    -> linux1, linux2       (the TCP service's port: the protocol is part of
                                                   the frontend)

Each backend runs the users' application, tests/lab/udp_echo.py, with a socket on its own address
(SNAT: the LB sends from LB_IP) and one on the VIP (DSR: decapsulated, to the VIP on lo), as UDP
servers behind a DSR load balancer must: a reply leaves from the address the request went to.
The client, tests/lab/udp_flows.py, sends from fixed source ports, a flow per port, and checks
each answer's content (the request's SHA-256, the pattern) both ways. Checked: every flow
answered from the VIP by one backend, all four in use, full-size datagrams both ways; the LB's
counters show SNAT replies passing it and DSR replies not; flows keep their backend and their path
across mode switches both ways; a fragmented datagram is dropped and counted, as bpf/README.md says.

Prefix $L4LB_UDP_TEST_PREFIX (default l4lbt5u); teardown first and last; every client run is
bounded in count and time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from labtest import MODULE_UTILS, REPO, lab_namespaces, run_playbook
from labutil import BACKENDS, CLIENT_IP, PYTHON, VIP, backends, curl, ns_argv, nsrun, teardown, topology

sys.path.insert(0, MODULE_UTILS)
from l4lb import agent, ct  # noqa: E402

PREFIX = os.environ.get("L4LB_UDP_TEST_PREFIX", "l4lbt5u")
PIN_DIR = f"/sys/fs/bpf/{PREFIX}/lb"
HERE = os.path.join(REPO, "tests", "lab")
ECHO, FLOWS = os.path.join(HERE, "udp_echo.py"), os.path.join(HERE, "udp_flows.py")
UDP, UDP80 = 5353, 80
SERVICES = [
    {"id": 1, "frontend": f"{VIP}:80", "backends": [f"{ip}:80" for ip, _ in BACKENDS.values()]},
    {"id": 2, "frontend": f"{VIP}:{UDP}", "protocol": "udp",
     "backends": [f"{ip}:{UDP}" for ip, _ in BACKENDS.values()]},
    {"id": 3, "frontend": f"{VIP}:{UDP80}", "protocol": "udp",
     "backends": [f"{BACKENDS[n][0]}:{UDP80}" for n in ("linux1", "linux2")]},
]
EV = {"lab_prefix": PREFIX, "lb_services_prune": True, "lb_services": SERVICES}
# Full size on the client's MTU of 1500: 1500 - 20 (IPv4) - 8 (UDP), the request's payload
# after its header line. In DSR the encapsulated packet is 1520, which the lab's default fit
# (lab_dsr_fit=mtu) lets through.
FULL = 1472
FULL_UP = FULL - len(f"{FULL}\n")


def play(playbook, **extra):
    r = run_playbook(playbook, dict(EV, **extra))
    assert r.rc == 0, r.output[-4000:]
    return r


def flows_argv(port, sport, n, **opts):
    """udp_flows.py's command line: n flows from source ports sport.., to VIP:port."""
    argv = [PYTHON, FLOWS, "--vip", VIP, "--port", str(port), "--src", CLIENT_IP, "--sport", str(sport),
            "--flows", str(n)]
    for k, v in opts.items():
        argv += [f"--{k}", str(v)]
    return argv


def flows(port, sport, n, timeout=120, **opts):
    """udp_flows.py run to its end in the client's namespace; its JSON report."""
    return json.loads(nsrun(PREFIX, "client", *flows_argv(port, sport, n, **opts), timeout=timeout).stdout)


def all_answered(out):
    """Every request answered with the right content; each flow by one backend only."""
    assert out["unanswered"] == 0 and out["answered"] == out["sent"], out
    assert out["bad"] <= out["retried"], out       # at most a late duplicate per resend
    moved = {sport: names for sport, names in out["flows"].items() if len(names) != 1}
    assert not moved, f"flows answered by more than one backend: {moved}"


def reasons():
    with agent.open_maps(PIN_DIR) as maps:
        return {k: v["packets"] for k, v in ct.reason_stats(maps).items()}


def delta(before, after, name):
    return after.get(name, 0) - before.get(name, 0)


def kill_servers():
    subprocess.run(["pkill", "-f", f"udp_echo.py --tag {PREFIX} "], check=False)


@pytest.fixture(scope="module")
def lab():
    kill_servers()              # what a killed run left behind
    teardown(PREFIX)
    topology(PREFIX)
    r = backends(PREFIX, {"lb_services": SERVICES})
    assert r.rc == 0, r.output
    play("mode.yml", lb_mode="snat")
    play("service.yml")
    servers = []
    try:
        for node, (ip, _kind) in BACKENDS.items():
            ports = [UDP] + ([UDP80] if node in ("linux1", "linux2") else [])
            binds = [a for port in ports for a in ("--bind", f"{ip}:{port}", "--bind", f"{VIP}:{port}")]
            p = subprocess.Popen(ns_argv(PREFIX, node, PYTHON, ECHO, "--tag", PREFIX, "--name", node, *binds),
                                 stdout=subprocess.PIPE, text=True)
            servers.append(p)
            assert p.stdout.readline().strip() == "ready", f"udp_echo.py on {node} did not start"
        yield PREFIX
    finally:
        for p in servers:
            p.kill()
            p.wait(timeout=10)
        kill_servers()
        teardown(PREFIX)
        assert lab_namespaces(PREFIX) == []


@pytest.mark.parametrize("mode, sport", [("snat", 41000), ("dsr", 42000)])
def test_udp_flows_are_answered_from_the_vip_by_one_backend_each(lab, mode, sport):
    play("mode.yml", lb_mode=mode)
    before = reasons()
    out = flows(UDP, sport, 64, rounds=3, up=200, down=1200)
    all_answered(out)
    assert set(out["answers"]) == set(BACKENDS), out["answers"]    # Maglev spreads 64 flows over all four
    after = reasons()
    sent = out["sent"]
    if mode == "snat":
        # requests rewritten towards the backends, and their answers back through the LB
        assert delta(before, after, "TX_SNAT_FWD") >= sent and delta(before, after, "TX_SNAT_REPLY") >= sent
    else:
        # requests encapsulated; the answers go from the backends to the client, not via the LB
        assert delta(before, after, "TX_DSR") >= sent
        assert delta(before, after, "TX_SNAT_REPLY") == 0, (before, after)

    # full-size datagrams both ways
    out = flows(UDP, sport + 100, 16, up=FULL_UP, down=FULL)
    all_answered(out)
    assert delta(after, reasons(), "PASS_MTU") == 0


@pytest.mark.parametrize("mode, sport", [("snat", 43000), ("dsr", 43100)])
def test_udp_and_tcp_on_one_port_are_two_services(lab, mode, sport):
    play("mode.yml", lb_mode=mode)
    out = flows(UDP80, sport, 32)
    all_answered(out)
    assert set(out["answers"]) == {"linux1", "linux2"}, out["answers"]
    # the TCP service on that port is still service 1, all four backends: 20 connections (kernel-
    # chosen source ports) all landing on the UDP service's pair would be a 1-in-a-million draw
    seen = set()
    for _ in range(20):
        status, headers, _body = curl(PREFIX, f"http://{VIP}/")
        assert " 200" in status, status
        seen.add(headers.get("x-backend"))
    assert seen <= set(BACKENDS) and seen - {"linux1", "linux2"}, seen


def test_udp_flows_keep_their_backend_across_mode_switches(lab):
    """16 flows, a request each every 50 ms, while the LB goes SNAT -> DSR -> SNAT."""
    play("mode.yml", lb_mode="snat")
    client = subprocess.Popen(ns_argv(PREFIX, "client", *flows_argv(UDP, 44000, 16, seconds=300, interval=0.05,
                                                                   up=300, down=600)),
                              stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        play("mode.yml", lb_mode="dsr")
        # in DSR mode the flows begun in SNAT keep their path: their CT entries outlived the
        # reload, so requests are still rewritten (not encapsulated) and answers come back via the LB
        before = reasons()
        time.sleep(2)
        during = reasons()
        assert delta(before, during, "TX_SNAT_FWD") > 0 and delta(before, during, "TX_SNAT_REPLY") > 0, during
        assert delta(before, during, "TX_DSR") == 0, (before, during)
        play("mode.yml", lb_mode="snat")
        time.sleep(3)
        assert client.poll() is None, "the client stopped before the switches were done"
        client.terminate()
        stdout, _ = client.communicate(timeout=60)
    finally:
        client.kill()
    assert client.returncode == 0
    out = json.loads(stdout)
    all_answered(out)
    assert out["rounds"] > 50, out


def test_a_fragmented_datagram_is_dropped_and_counted(lab):
    play("mode.yml", lb_mode="snat")
    before = reasons()
    out = flows(UDP, 45000, 1, up=2000, timeout=30, tries=1)      # over the client's MTU: two fragments
    assert out["unanswered"] == 1, out
    assert delta(before, reasons(), "DROP_FRAGMENT") >= 1
    out = flows(UDP, 45001, 1)                                     # the service itself still answers
    all_answered(out)
