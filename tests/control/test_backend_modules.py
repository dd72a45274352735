"""The backend's modules for real, in the slice's backend namespace (<L4LB_TEST_PREFIX4>-be, a
veth eth0 with 20.1.1.10/24): lab_backend_net (VIPs on lo, live sysctls, advmss routes),
lab_nginx with its files (config, bulk.bin) and bpf_decap's one-decap-per-device rule.

Each: check mode changes nothing -> apply -> rerun unchanged -> diff -> bad input fails before
any change -> absent. Nothing is added to the root namespace (compared before and after); the
slice's sweep removes the namespace, /run/<prefix> and the pins; nginx is stopped here.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from control_lab import BE_NS, PIN_DIR, SRC_DIR, STATE_DIR, in_be
from labtest import root_ns_snapshot

pytestmark = pytest.mark.usefixtures("slice_lab")

ARP = {"net.ipv4.conf.all.arp_ignore": 1, "net.ipv4.conf.all.arp_announce": 2,
       "net.ipv4.conf.eth0.arp_ignore": 1, "net.ipv4.conf.eth0.arp_announce": 2}
CLIENTS = ["20.1.1.100", "20.1.1.101"]
NET = {"vips": ["40.1.1.1", "40.1.1.2"], "vip_range": "40.1.1.0/24", "sysctls": ARP,
       "mss_clients": CLIENTS, "device": "eth0", "advmss": 1440}


def _root_sysctls():
    return {k: open("/proc/sys/" + k.replace(".", "/")).read().strip() for k in ARP}


@pytest.fixture(scope="module")
def root_before():
    before = {"ns": root_ns_snapshot(), "sysctls": _root_sysctls()}
    yield before
    assert root_ns_snapshot() == before["ns"], "the root namespace changed"
    assert _root_sysctls() == before["sysctls"], "the root namespace's sysctls changed"


def be_lo():
    out = json.loads(in_be("ip", "-j", "-4", "addr", "show", "dev", "lo").stdout)
    return sorted(a["local"] for a in out[0]["addr_info"] if a["prefixlen"] == 32)


def be_routes():
    out = json.loads(in_be("ip", "-j", "-4", "route", "show", "table", "main").stdout)
    return sorted((r["dst"], r.get("dev"), r.get("metric", 0),
                   tuple(sorted(k for m in r.get("metrics", []) for k in m.items()))) for r in out)


def be_sysctls():
    return {k: in_be("cat", "/proc/sys/" + k.replace(".", "/")).stdout.strip() for k in ARP}


def be_state():
    return {"lo": be_lo(), "routes": be_routes(), "sysctls": be_sysctls()}


def advmss_of(dst):
    for d, dev, metric, metrics in be_routes():
        if d == dst and metric == 0:
            return dev, dict(metrics).get("advmss", 0)
    return None


# --- lab_backend_net -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def net_clean(run_module, root_before):
    """The backend namespace without our VIPs and routes, sysctls back to the kernel's defaults."""
    def clean():
        r = run_module("lab_backend_net", {"vips": NET["vips"], "vip_range": NET["vip_range"],
                                           "mss_clients": CLIENTS, "state": "absent"}, host="be")
        assert not r.get("failed"), r
        for k in ARP:
            in_be("sh", "-c", f"echo 0 > /proc/sys/{k.replace('.', '/')}")
    clean()
    yield clean
    clean()


def test_backend_net_check_mode_then_apply_then_unchanged(run_module, net_clean):
    before = be_state()
    assert before["sysctls"] == {k: "0" for k in ARP}
    r = run_module("lab_backend_net", NET, check=True, diff=True, host="be")
    assert not r.get("failed"), r
    assert r["changed"] is True
    assert be_state() == before, "check mode must not change anything"
    assert r["diff"]["before"]["lo"] == [] and r["diff"]["after"]["lo"] == ["40.1.1.1", "40.1.1.2"]
    assert r["diff"]["after"]["advmss_routes"] == [f"{c}/32 dev eth0 advmss 1440" for c in CLIENTS]
    assert r["diff"]["after"]["sysctls"] == {k: str(v) for k, v in ARP.items()}
    # ARP behaviour is set before any VIP exists
    assert r["actions"][0].startswith("sysctl ") and r["actions"][4].startswith("ip addr add ")

    r = run_module("lab_backend_net", NET, diff=True, host="be")
    assert r["changed"] is True, r
    assert be_lo() == ["40.1.1.1", "40.1.1.2"]
    assert all(advmss_of(c) == ("eth0", 1440) for c in CLIENTS), be_routes()
    assert be_sysctls() == {k: str(v) for k, v in ARP.items()}
    assert r["vips"] == ["40.1.1.1", "40.1.1.2"] and r["diff"]["after"] == {
        "lo": r["vips"], "advmss_routes": r["advmss_routes"], "sysctls": r["sysctls"]}

    again = run_module("lab_backend_net", NET, diff=True, host="be")
    assert again["changed"] is False and again["actions"] == [], again
    assert again["diff"]["before"] == again["diff"]["after"]


def test_backend_net_vip_range_removes_stale_vips_only(run_module, net_clean):
    run_module("lab_backend_net", NET, host="be")
    in_be("ip", "addr", "add", "40.1.1.77/32", "dev", "lo")
    in_be("ip", "addr", "add", "10.9.9.9/32", "dev", "lo")   # outside the range: not ours
    try:
        r = run_module("lab_backend_net", dict(NET, vips=["40.1.1.1"]), host="be")
        assert r["changed"] is True
        assert sorted(r["actions"]) == ["ip addr del 40.1.1.2/32 dev lo", "ip addr del 40.1.1.77/32 dev lo"]
        assert be_lo() == ["10.9.9.9", "40.1.1.1"]
        # without a range, an address not in vips is left alone
        in_be("ip", "addr", "add", "40.1.1.78/32", "dev", "lo")
        r = run_module("lab_backend_net", dict(NET, vips=["40.1.1.1"], vip_range=None), host="be")
        assert r["changed"] is False and "40.1.1.78" in be_lo()
    finally:
        for a in ("10.9.9.9", "40.1.1.78"):
            in_be("ip", "addr", "del", f"{a}/32", "dev", "lo", check=False)


def test_backend_net_advmss_replaced_then_removed(run_module, net_clean):
    run_module("lab_backend_net", NET, host="be")
    r = run_module("lab_backend_net", dict(NET, advmss=1400), host="be")
    assert r["changed"] is True and all(advmss_of(c) == ("eth0", 1400) for c in CLIENTS)
    assert run_module("lab_backend_net", dict(NET, advmss=1400), host="be")["changed"] is False
    r = run_module("lab_backend_net", dict(NET, advmss=0), check=True, host="be")
    assert r["changed"] is True and advmss_of(CLIENTS[0]) == ("eth0", 1400)
    r = run_module("lab_backend_net", dict(NET, advmss=0), diff=True, host="be")
    assert r["changed"] is True and r["advmss_routes"] == [] and r["diff"]["after"]["advmss_routes"] == []
    assert all(advmss_of(c) is None for c in CLIENTS), be_routes()
    assert run_module("lab_backend_net", dict(NET, advmss=0), host="be")["changed"] is False
    # a route toward a client without advmss is not ours: advmss=0 leaves it
    in_be("ip", "route", "add", "20.1.1.100/32", "dev", "eth0")
    try:
        assert run_module("lab_backend_net", dict(NET, advmss=0), host="be")["changed"] is False
        assert advmss_of("20.1.1.100") == ("eth0", 0)
    finally:
        in_be("ip", "route", "del", "20.1.1.100/32", "dev", "eth0", check=False)


@pytest.mark.parametrize("bad,needle", [
    ({"vips": ["40.1.1.300"]}, "vips: '40.1.1.300' is not an IPv4 address"),
    ({"vips": ["224.0.0.1"], "vip_range": None}, "vips: 224.0.0.1 is not a unicast address"),
    ({"vip_range": "40.1.1.1/24"}, "vip_range: '40.1.1.1/24' is not an IPv4 network"),
    ({"vips": ["40.2.0.1"]}, "vips: 40.2.0.1 not inside vip_range 40.1.1.0/24"),
    ({"mss_clients": ["20.1.1.100", "client"]}, "mss_clients: 'client' is not an IPv4 address"),
    ({"sysctls": dict(ARP, **{"net.ipv4.conf.all.arp_ignorance": 1})}, "sysctls: unknown sysctl 'net.ipv4.conf.all.arp_ignorance'"),
    ({"sysctls": {"net/../../etc/passwd": 1}}, "sysctls: 'net/../../etc/passwd' is not a sysctl name"),
    ({"device": "eth9"}, "device: no interface 'eth9' in this network namespace"),
    ({"advmss": -1}, "advmss: -1 is not in 0..65535"),
], ids=["vip", "multicast", "range-host-bits", "vip-outside-range", "client", "sysctl", "sysctl-path",
        "device", "advmss"])
def test_backend_net_bad_input_fails_before_any_change(run_module, net_clean, bad, needle):
    # A state that every valid part of the input would change (sysctls at 0, no VIP, no route),
    # so a module that acted before checking would leave a trace.
    net_clean()
    before = be_state()
    r = run_module("lab_backend_net", dict(NET, **bad), host="be")
    assert r.get("failed") is True and needle in r["msg"], r
    assert be_state() == before


def test_backend_net_absent(run_module, net_clean):
    run_module("lab_backend_net", NET, host="be")
    gone = {"vips": ["40.1.1.1"], "vip_range": "40.1.1.0/24", "mss_clients": CLIENTS, "state": "absent"}
    before = be_state()
    r = run_module("lab_backend_net", gone, check=True, diff=True, host="be")
    assert r["changed"] is True and be_state() == before
    assert r["diff"]["after"] == {"lo": [], "advmss_routes": [], "sysctls": {}}
    r = run_module("lab_backend_net", gone, host="be")
    assert r["changed"] is True and r["vips"] == [] and r["advmss_routes"] == []
    assert be_lo() == [] and all(advmss_of(c) is None for c in CLIENTS)
    assert be_sysctls() == {k: str(v) for k, v in ARP.items()}, "absent leaves the sysctls"
    assert run_module("lab_backend_net", gone, host="be")["changed"] is False


# --- lab_nginx with its files ---------------------------------------------------------------

NGINX_DIR = f"{STATE_DIR}/be/nginx"
CONF = f"{NGINX_DIR}/nginx.conf"
BULK = f"{NGINX_DIR}/html/bulk.bin"


def nginx_config(connections=64):
    d = NGINX_DIR
    return (f"worker_processes 1;\ndaemon on;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n"
            f"events {{ worker_connections {connections}; }}\n"
            f"http {{\n    access_log {d}/logs/access.log;\n"
            + "".join(f"    {k}_temp_path {d}/tmp/{k};\n" for k in ("proxy", "fastcgi", "uwsgi", "scgi"))
            + f"    client_body_temp_path {d}/tmp/body;\n"
            f"    server {{ listen 8080; location = /bulk.bin {{ alias {d}/html/bulk.bin; }} }}\n}}\n")


NGINX = {"conf": CONF, "prefix": NGINX_DIR, "pid_file": f"{NGINX_DIR}/nginx.pid", "config": nginx_config(),
         "bulk_kib": 64}


def did(r):
    """lab_nginx's action (start, reload, stop, none) from its diff: the json callback overwrites
    a result's own ``action`` key with the task's module name. Needs diff=True."""
    for d in r["diff"]:
        if d["after_header"] == "nginx instance":
            return d["after"].strip()
    return "none"


def _gone(pid, wait=5.0):
    """True once ``pid`` is gone or a zombie (its reaper may be slower than this test)."""
    end = time.monotonic() + wait
    while time.monotonic() < end:
        try:
            if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def _master():
    """Our instance's master (by its pid file and command line), else None."""
    try:
        pid = int(open(f"{NGINX_DIR}/nginx.pid").read())
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode()
    except (OSError, ValueError):
        return None
    return pid if CONF in cmd else None


@pytest.fixture(scope="module")
def nginx(run_module, root_before):
    yield
    run_module("lab_nginx", dict(NGINX, state="stopped", config=None, bulk_kib=0), host="be")
    pid = _master()
    if pid:  # the module failed to stop it: do not leave it running after the namespace goes
        os.killpg(pid, signal.SIGKILL)


def test_lab_nginx_files_check_mode_apply_unchanged(run_module, nginx):
    r = run_module("lab_nginx", NGINX, check=True, diff=True, host="be")
    assert not r.get("failed"), r
    assert r["changed"] is True and did(r) == "start"
    assert not os.path.exists(NGINX_DIR), "check mode must not create anything"
    diffs = {d["after_header"]: d for d in r["diff"]}
    assert diffs[CONF]["after"] == NGINX["config"] and diffs[CONF]["before"] == ""
    assert diffs[BULK]["before"] == "absent\n" and "65536 bytes" in diffs[BULK]["after"]

    r = run_module("lab_nginx", NGINX, diff=True, host="be")
    assert r["changed"] is True and did(r) == "start", r
    assert r["pid"] == _master() and os.stat(f"/proc/{r['pid']}/ns/net").st_ino == os.stat(f"/run/netns/{BE_NS}").st_ino
    for d in ("", "/logs", "/tmp", "/html"):
        st = os.stat(NGINX_DIR + d)
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o755, 0, 0), d
    assert open(CONF).read() == NGINX["config"] and os.stat(CONF).st_mode & 0o7777 == 0o644
    from lab_bulk import content
    assert open(BULK, "rb").read() == content(65536)
    served = in_be("curl", "-s", "http://127.0.0.1:8080/bulk.bin").stdout.encode()
    assert served == content(65536)
    assert not [n for n in os.listdir(NGINX_DIR) if n.startswith(".")], "a temporary file was left"

    again = run_module("lab_nginx", NGINX, diff=True, host="be")
    assert again["changed"] is False and did(again) == "none" and again["files"] == [], again
    assert again["diff"] == []


def test_lab_nginx_config_change_reloads_in_the_same_call(run_module, nginx):
    pid, workers = _master(), set(run_module("lab_nginx", NGINX, host="be")["workers"])
    args = dict(NGINX, config=nginx_config(32))
    r = run_module("lab_nginx", args, check=True, diff=True, host="be")
    assert r["changed"] is True and did(r) == "reload" and "worker_connections 64" in open(CONF).read()
    assert [d for d in r["diff"] if d["after_header"] == CONF][0]["before"] == NGINX["config"]
    r = run_module("lab_nginx", args, diff=True, host="be")
    assert r["changed"] is True and did(r) == "reload" and r["pid"] == pid, r
    assert r["files"] == [f"write {CONF} (nginx -t passed)"]
    assert set(r["workers"]) - workers, "no new worker after the reload"
    assert "worker_connections 32" in open(CONF).read()
    assert run_module("lab_nginx", args, host="be")["changed"] is False
    run_module("lab_nginx", NGINX, host="be")


def test_lab_nginx_bad_config_is_not_written(run_module, nginx):
    pid, before = _master(), open(CONF).read()
    r = run_module("lab_nginx", dict(NGINX, config=nginx_config() + "bogus_directive on;\n"), host="be")
    assert r.get("failed") is True and "nginx -t rejects" in r["msg"] and "bogus_directive" in r["msg"], r
    assert open(CONF).read() == before and _master() == pid
    assert not [n for n in os.listdir(NGINX_DIR) if n.startswith(".")], "the rejected candidate was left"
    r = run_module("lab_nginx", dict(NGINX, bulk_kib=-1), host="be")
    assert r.get("failed") is True and "bulk_kib -1" in r["msg"]


def test_lab_nginx_bulk_file_judged_by_content(run_module, nginx):
    from lab_bulk import content
    with open(BULK, "r+b") as f:       # same size, one byte different
        f.seek(1000)
        f.write(b"x")
    r = run_module("lab_nginx", NGINX, diff=True, host="be")
    assert r["changed"] is True and did(r) == "none", r
    assert r["files"] == [f"write {BULK} (64 KiB of the known content)"]
    assert [d for d in r["diff"] if d["after_header"] == BULK][0]["before"] == "65536 bytes, not the known content\n"
    assert open(BULK, "rb").read() == content(65536)
    r = run_module("lab_nginx", dict(NGINX, bulk_kib=3), host="be")
    assert r["changed"] is True and open(BULK, "rb").read() == content(3072)
    assert run_module("lab_nginx", dict(NGINX, bulk_kib=3), host="be")["changed"] is False
    # 0 leaves the file alone
    assert run_module("lab_nginx", dict(NGINX, bulk_kib=0), host="be")["changed"] is False
    assert os.path.getsize(BULK) == 3072


def test_lab_nginx_stopped(run_module, nginx):
    pid = _master()
    stop = dict(NGINX, config=None, bulk_kib=0, state="stopped")
    r = run_module("lab_nginx", stop, check=True, diff=True, host="be")
    assert r["changed"] is True and did(r) == "stop" and _master() == pid
    r = run_module("lab_nginx", stop, host="be")
    assert r["changed"] is True and _gone(pid)
    assert run_module("lab_nginx", stop, host="be")["changed"] is False


# --- bpf_decap: one decap per device ----------------------------------------------------------

DECAP = {"device": "eth0", "build_dir": f"{STATE_DIR}/be/decap", "pin_dir": f"{PIN_DIR}-be"}


def be_decap():
    """(XDP program name or None, [tc ingress program names]) on the backend's eth0."""
    link = json.loads(in_be("ip", "-j", "-d", "link", "show", "eth0").stdout)[0]
    xdp = ((link.get("xdp") or {}).get("prog") or {}).get("name")
    p = in_be("tc", "-j", "filter", "show", "dev", "eth0", "ingress", check=False)
    tc = [f["options"]["prog"]["name"] for f in json.loads(p.stdout or "[]") if "prog" in f.get("options", {})]
    return xdp, tc


@pytest.fixture(scope="module")
def decap_clean(run_module, root_before):
    def clean():
        for m in ("xdp", "tc"):
            assert not run_module("bpf_decap", dict(DECAP, method=m, state="absent"), host="be").get("failed")
    clean()
    yield
    clean()
    assert be_decap() == (None, [])


def test_bpf_decap_present_detaches_the_other_method(run_module, decap_clean):
    tc = dict(DECAP, method="tc", src=os.path.join(SRC_DIR, "decap_tc.c"))
    xdp = dict(DECAP, method="xdp", src=os.path.join(SRC_DIR, "decap_xdp.c"))
    r = run_module("bpf_decap", tc, host="be")
    assert r["changed"] is True and be_decap() == (None, ["decap_tc"]), r
    assert r["other"]["method"] == "xdp" and r["other"]["actions"] == []

    r = run_module("bpf_decap", xdp, check=True, diff=True, host="be")
    assert r["changed"] is True and be_decap() == (None, ["decap_tc"]), "check mode must not change anything"
    assert r["other"]["name"] == "decap_tc" and any(a.startswith("delete tc ingress filter") for a in r["other"]["actions"])
    assert r["diff"]["before"]["other"]["name"] == "decap_tc" and r["diff"]["after"]["other"]["prog_id"] is None

    r = run_module("bpf_decap", xdp, host="be")
    assert r["changed"] is True and be_decap() == ("decap_xdp", []), r
    assert r["actions"][-len(r["other"]["actions"]):] == r["other"]["actions"]
    assert not os.path.exists(os.path.join(DECAP["pin_dir"], "decap_tc"))
    assert os.path.exists(os.path.join(DECAP["pin_dir"], "decap_xdp"))
    again = run_module("bpf_decap", xdp, host="be")
    assert again["changed"] is False and again["actions"] == [] and again["other"]["actions"] == []

    r = run_module("bpf_decap", tc, host="be")
    assert r["changed"] is True and be_decap() == (None, ["decap_tc"])
    assert r["other"]["actions"][0].startswith("detach XDP program")
    r = run_module("bpf_decap", dict(DECAP, method="tc", state="absent"), host="be")
    assert r["changed"] is True and "other" not in r and be_decap() == (None, [])
