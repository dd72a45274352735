"""backend_linux, lab_client, bpf_decap and lab_nginx on real namespaces (no LB program needed).

Uses prefix $L4LB_LAB_TEST_PREFIX (default l4lbt5); starts from whatever a killed run left
(teardown first) and tears down at the end. The tests run in file order and build on each other
(the last ones take the absent path).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from labtest import root_ns_snapshot
from labutil import (BACKENDS, CLIENT_IP, VIP, backends, curl, ipip_syn, ipj, nginx_master,
                     ns_path, nsrun, sysctl, teardown, topology)

PREFIX = os.environ.get("L4LB_LAB_TEST_PREFIX", "l4lbt5")
SYSCTLS = {"net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.all.arp_announce": "2",
           "net.ipv4.conf.eth0.arp_ignore": "1", "net.ipv4.conf.eth0.arp_announce": "2"}


def _root_sysctls():
    return {k: open("/proc/sys/" + k.replace(".", "/")).read().strip()
            for k in ("net/ipv4/conf/all/arp_ignore", "net/ipv4/conf/all/arp_announce")}


def _system_nginx():
    try:
        return open("/run/nginx.pid").read().strip()
    except OSError:
        return None


@pytest.fixture(scope="module")
def lab():
    teardown(PREFIX)
    before = {"root": root_ns_snapshot(), "sysctl": _root_sysctls(), "nginx": _system_nginx()}
    topology(PREFIX)
    t0 = time.monotonic()
    first = backends(PREFIX)
    t1 = time.monotonic()
    second = backends(PREFIX)
    t2 = time.monotonic()
    info = {"before": before, "first": first, "second": second,
            "first_s": round(t1 - t0, 1), "second_s": round(t2 - t1, 1)}
    print(f"\nbackends: first run {info['first_s']}s, second run {info['second_s']}s")
    try:
        yield info
    finally:
        teardown(PREFIX)
        assert not os.path.exists(f"/run/{PREFIX}")


def test_first_run_converges(lab):
    r = lab["first"]
    assert r.rc == 0, r.output
    for b in BACKENDS:
        # lab_backend_net (VIP, sysctls), lab_nginx (files, start), bpf_decap: one task each
        assert r.recap[b]["changed"] >= 3, r.recap
    assert r.recap["client"]["failed"] == 0


def test_second_run_changes_nothing(lab):
    r = lab["second"]
    assert r.rc == 0, r.output
    assert r.changed == 0, r.recap


def test_nginx_page_and_header_per_backend(lab):
    for i, (b, (ip, decap)) in enumerate(BACKENDS.items()):
        sport = 45000 + i
        status, headers, body = curl(PREFIX, f"http://{ip}/", "--local-port", str(sport))
        assert status.startswith("HTTP/1.1 200"), status
        assert headers["x-backend"] == b
        assert headers["x-backend-ip"] == ip
        assert headers["x-client"] == f"{CLIENT_IP}:{sport}"
        assert f'id="backend-name">{b}<' in body
        assert f'id="backend-ip">{ip}<' in body
        kind = "stand-in for a Windows backend (XDP decap)" if decap == "xdp" else "Linux backend (tc decap)"
        assert f'id="backend-kind">{kind}<' in body
        assert f'id="client">{CLIENT_IP}:{sport}<' in body


def test_keepalive_reuses_the_connection(lab):
    ip = BACKENDS["linux1"][0]
    p = nsrun(PREFIX, "client", "curl", "-s", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects}\n",
              f"http://{ip}/", f"http://{ip}/")
    assert p.stdout.split() == ["1", "0"], p.stdout  # the second request rode the first connection


def test_nginx_runs_in_the_backend_namespace_with_its_own_files(lab):
    for b in BACKENDS:
        pid = nginx_master(PREFIX, b)
        assert pid, f"{b}: no nginx master"
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(ns_path(PREFIX, b)).st_ino
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode()
        assert f"/run/{PREFIX}/{b}/nginx/nginx.conf" in cmd
        assert os.path.exists(f"/run/{PREFIX}/{b}/nginx/logs/access.log")
    assert _system_nginx() == lab["before"]["nginx"]  # the system's nginx is never touched


def test_vip_on_lo_and_sysctls_in_each_namespace_only(lab):
    for b in BACKENDS:
        lo = ipj(PREFIX, b, "-4", "addr", "show", "dev", "lo")[0]["addr_info"]
        assert {(a["local"], a["prefixlen"]) for a in lo} >= {(VIP, 32)}
        for k, v in SYSCTLS.items():
            assert sysctl(PREFIX, b, k) == v, (b, k)
    assert _root_sysctls() == lab["before"]["sysctl"]


def _xdp_prog(b):
    link = ipj(PREFIX, b, "-d", "link", "show", "eth0")[0]
    return (link.get("xdp") or {}).get("prog") or {}


def _tc_progs(b):
    p = nsrun(PREFIX, b, "tc", "-j", "filter", "show", "dev", "eth0", "ingress", check=False)
    if p.returncode:
        return []
    return [f["options"] for f in json.loads(p.stdout or "[]") if "prog" in f.get("options", {})]


def _pinned_id(path):
    p = subprocess.run(["bpftool", "-j", "prog", "show", "pinned", path], capture_output=True, text=True)
    return json.loads(p.stdout)["id"] if p.returncode == 0 else None


def test_decap_attached_by_method(lab):
    for b, (_, decap) in BACKENDS.items():
        pin = f"/sys/fs/bpf/{PREFIX}/{b}/decap_{decap}"
        if decap == "xdp":
            prog = _xdp_prog(b)
            assert prog.get("name") == "decap_xdp", prog
            assert _pinned_id(pin) == prog["id"]
            assert _tc_progs(b) == []
        else:
            progs = _tc_progs(b)
            assert [p["prog"]["name"] for p in progs] == ["decap_tc"], progs
            assert progs[0]["direct-action"] is True
            assert _pinned_id(pin) == progs[0]["prog"]["id"]
            assert _xdp_prog(b) == {}


def test_ipip_syn_is_decapsulated_and_answered_from_the_vip(lab):
    """The decap end to end without the LB: IPIP(client -> backend, client:port -> VIP:80 SYN)."""
    for i, b in enumerate(BACKENDS):
        res = ipip_syn(PREFIX, b, 43000 + i)
        assert res["synack"], (b, res)
        assert res["from"] == f"{VIP}:80"


def test_without_decap_ipip_gets_no_answer_then_restored(lab):
    limit = ["--limit", "win1,linux1,client"]
    r = backends(PREFIX, {"backend_linux_decap": "none"}, args=limit)
    assert r.rc == 0, r.output
    assert r.recap["win1"]["changed"] >= 1 and r.recap["linux1"]["changed"] >= 1
    for i, b in enumerate(("win1", "linux1")):
        assert not ipip_syn(PREFIX, b, 43100 + i, timeout=1.0)["synack"], b  # no ipip module
        assert ipip_syn(PREFIX, b, 43110 + i, plain=True)["synack"], b  # TCP stack itself fine
    r = backends(PREFIX, args=limit)
    assert r.rc == 0, r.output
    assert r.recap["win1"]["changed"] >= 1 and r.recap["linux1"]["changed"] >= 1
    for i, b in enumerate(("win1", "linux1")):
        assert ipip_syn(PREFIX, b, 43120 + i)["synack"], b


def _workers(pid):
    return {int(t) for t in open(f"/proc/{pid}/task/{pid}/children").read().split()}


def test_config_change_reloads_not_restarts(lab):
    pid = nginx_master(PREFIX, "win2")
    workers = _workers(pid)
    r = backends(PREFIX, {"backend_linux_keepalive_requests": 5000}, args=["--limit", "win2", "--diff"])
    assert r.rc == 0, r.output
    # lab_nginx wrote the configuration and reloaded in the same task (no handler)
    assert r.recap["win2"]["changed"] == 1, r.recap
    assert "+    keepalive_requests 5000;" in r.stdout and "RUNNING HANDLER" not in r.stdout
    assert nginx_master(PREFIX, "win2") == pid
    assert _workers(pid) - workers, "no new worker: not reloaded"
    assert "keepalive_requests 5000;" in open(f"/run/{PREFIX}/win2/nginx/nginx.conf").read()
    r = backends(PREFIX, args=["--limit", "win2"])
    assert r.rc == 0 and r.recap["win2"]["changed"] >= 1, r.output
    r = backends(PREFIX, args=["--limit", "win2"])
    assert r.rc == 0 and r.changed == 0, r.recap


def test_missed_reload_is_detected_from_the_running_workers(lab):
    """A config written after the workers started (a play that died before its handler ran)."""
    conf = f"/run/{PREFIX}/win1/nginx/nginx.conf"
    pid = nginx_master(PREFIX, "win1")
    time.sleep(2)
    os.utime(conf)  # same content, so lab_nginx writes nothing: only the workers' age tells
    r = backends(PREFIX, args=["--limit", "win1"])
    assert r.rc == 0 and r.recap["win1"]["changed"] == 1, r.output
    assert nginx_master(PREFIX, "win1") == pid
    r = backends(PREFIX, args=["--limit", "win1"])
    assert r.rc == 0 and r.changed == 0, r.recap


def test_killed_nginx_is_detected_and_started(lab):
    pid = nginx_master(PREFIX, "linux2")
    assert os.getpgid(pid) == pid  # nginx daemonised with setsid: master and workers share a group
    os.killpg(pid, signal.SIGKILL)
    for _ in range(50):
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.05)
    # the pid file is stale now: the role must not trust it
    r = backends(PREFIX, args=["--check", "--limit", "linux2"])
    assert r.rc == 0 and r.recap["linux2"]["changed"] == 1, r.output
    assert nginx_master(PREFIX, "linux2") is None
    r = backends(PREFIX, args=["--limit", "linux2"])
    assert r.rc == 0 and r.recap["linux2"]["changed"] == 1, r.output
    assert curl(PREFIX, "http://20.1.1.40/")[1]["x-backend"] == "linux2"


def test_bpf_decap_replaces_a_different_program_atomically(lab):
    """bpf_decap judges by tag: another program in its place is replaced (no detach window),
    the same one again is left alone; check mode reports without touching."""
    from labutil import module
    from labtest import REPO
    args = {"method": "xdp", "device": "eth0", "build_dir": f"/run/{PREFIX}/win2/decap-test",
            "pin_dir": f"/sys/fs/bpf/{PREFIX}/win2"}
    before = _xdp_prog("win2")
    other = module(PREFIX, "win2", "bpf_decap", dict(args, src=f"{REPO}/bpf/xdp_pass.c"), check=True)
    assert other["changed"] and _xdp_prog("win2") == before
    other = module(PREFIX, "win2", "bpf_decap", dict(args, src=f"{REPO}/bpf/xdp_pass.c"))
    assert other["changed"] and any(a.startswith("replace XDP") for a in other["actions"]), other
    assert _xdp_prog("win2")["name"] == "xdp_pass"
    back = module(PREFIX, "win2", "bpf_decap", dict(args, src=f"{REPO}/bpf/decap_xdp.c"))
    assert back["changed"] and back["tag"] == before["tag"] and _xdp_prog("win2")["name"] == "decap_xdp"
    again = module(PREFIX, "win2", "bpf_decap", dict(args, src=f"{REPO}/bpf/decap_xdp.c"))
    assert not again["changed"] and again["actions"] == []
    # the role, judging by the kernel, finds its program in place
    r = backends(PREFIX, args=["--limit", "win2"])
    assert r.rc == 0 and r.changed == 0, r.recap


def test_root_namespace_untouched(lab):
    assert root_ns_snapshot() == lab["before"]["root"]


def test_absent_stops_nginx_and_detaches_decap(lab):
    pids = {b: nginx_master(PREFIX, b) for b in BACKENDS}
    r = backends(PREFIX, {"backend_linux_state": "absent"}, args=["--tags", "backend_linux"])
    assert r.rc == 0, r.output
    for b, (_, decap) in BACKENDS.items():
        assert r.recap[b]["changed"] >= 3
        assert not os.path.exists(f"/proc/{pids[b]}"), b
        assert _xdp_prog(b) == {} and _tc_progs(b) == []
        qdiscs = json.loads(nsrun(PREFIX, b, "tc", "-j", "qdisc", "show", "dev", "eth0").stdout)
        assert "clsact" not in {q["kind"] for q in qdiscs}
        assert not os.path.exists(f"/sys/fs/bpf/{PREFIX}/{b}/decap_{decap}")
        lo = ipj(PREFIX, b, "-4", "addr", "show", "dev", "lo")[0]["addr_info"]
        assert VIP not in {a["local"] for a in lo}
    r = backends(PREFIX, {"backend_linux_state": "absent"}, args=["--tags", "backend_linux"])
    assert r.rc == 0 and r.changed == 0, r.recap

