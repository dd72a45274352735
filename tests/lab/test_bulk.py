"""Issue 16 on the embedded lab: full-size client packets through the VIP in SNAT and DSR.

1 MiB up (echoed) and down (known content), compared by SHA-256, through lab_verify: in SNAT,
then in DSR after a mode switch, with the default DSR fit (lab_dsr_fit=mtu: LB and backends at
1520, client at 1500); with the fit off (none) the upload stalls and PASS_MTU rises; with the MSS
clamp (mss) DSR works at MTU 1500. A port-translating service works in SNAT and mode.yml refuses
DSR while it exists. Prefix $L4LB_BULK_TEST_PREFIX (default h16b); teardown first and last.
"""

from __future__ import annotations

import json
import os

import pytest

from labtest import REPO, run_playbook
from labutil import backends, curl, ipj, nsrun, report, teardown

PREFIX = os.environ.get("L4LB_BULK_TEST_PREFIX", "h16b")
EV = {"lab_prefix": PREFIX}
L4LBCTL = os.path.join(REPO, "bin", "l4lbctl")
PYTHON = os.path.join(REPO, ".venv", "bin", "python")
LB_PIN = f"/sys/fs/bpf/{PREFIX}/lb"


def topology(fit):
    r = run_playbook("site.yml", dict(EV, lab_dsr_fit=fit), args=["--tags", "lab_topology"])
    assert r.rc == 0, r.output
    return r


def lb(mode, fit="mtu"):
    r = run_playbook("mode.yml", dict(EV, lb_mode=mode, lab_dsr_fit=fit))
    assert r.rc == 0, r.output
    return r


def verify(mode, **extra):
    r = run_playbook("verify.yml", dict(EV, lb_mode=mode, **extra))
    checks, _ = report(r.stdout)
    return r, checks


def l4lbctl(*args):
    return subprocess_run([PYTHON, L4LBCTL, "--netns", f"{PREFIX}-lb", "--pin-dir", LB_PIN, *args])


def subprocess_run(argv):
    import subprocess
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def mtu(node, dev="eth0"):
    return ipj(PREFIX, node, "link", "show", dev)[0]["mtu"]


def bulk_ok(checks):
    for name in ("bulk upload via the VIP", "bulk download via the VIP"):
        res, detail = checks[name]
        assert res == "PASS", (name, detail)
        assert detail.startswith("1048576 bytes in ") and "SHA-256 match" in detail, detail


def pass_mtu_delta(checks):
    """+N of the PASS_MTU warning line (0 when there is none)."""
    if "LB counter PASS_MTU" not in checks:
        return 0
    res, detail = checks["LB counter PASS_MTU"]
    assert res == "WARN"
    return int(detail.split("(+", 1)[1].split()[0])


@pytest.fixture(scope="module")
def lab():
    teardown(PREFIX)
    topology("mtu")
    r = backends(PREFIX)
    assert r.rc == 0, r.output
    lb("snat")
    r = run_playbook("service.yml", EV)
    assert r.rc == 0, r.output
    try:
        yield {}
    finally:
        teardown(PREFIX)


def test_default_fit_is_mtu_and_lb_mtu_follows_the_device(lab):
    assert {n: mtu(n) for n in ("lb", "win1", "linux2", "client")} == \
        {"lb": 1520, "win1": 1520, "linux2": 1520, "client": 1500}
    ports = {l["ifname"]: l["mtu"] for l in ipj(PREFIX, "switch", "link", "show") if l["ifname"] != "lo"}
    assert ports["lb"] == 1520 and ports["win2"] == 1520 and ports["client"] == 1500
    p = l4lbctl("--json", "--check", "mode", "update", "dsr", "--src", os.path.join(REPO, "bpf"),
                "--build-dir", f"/run/{PREFIX}/lb/build")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["build"]["defines"]["LB_MTU"] == "1520"
    # The backends' download file is the known content: 16384 numbered 64-byte lines.
    with open(f"/run/{PREFIX}/win1/nginx/html/bulk.bin", "rb") as f:
        data = f.read()
    assert len(data) == 1 << 20 and data[:64] == b"0" * 63 + b"\n" and data[-64:] == b"%063d\n" % 16383


def test_bulk_in_snat_then_dsr_after_a_mode_switch(lab):
    r, checks = verify("snat")
    assert r.rc == 0, r.output
    bulk_ok(checks)
    lb("dsr")
    r, checks = verify("dsr")
    assert r.rc == 0, r.output
    bulk_ok(checks)
    assert pass_mtu_delta(checks) == 0


def test_without_a_fit_dsr_uploads_stall_and_pass_mtu_rises(lab):
    topology("none")             # the plan sees the MTU difference and sets 1500 back
    assert mtu("lb") == 1500 and mtu("win1") == 1500
    lb("dsr", fit="none")        # recompiled: LB_MTU follows the device (1500)
    r, checks = verify("dsr", lab_verify_bulk_stall=2.0, lab_dsr_fit="none")
    assert r.rc != 0, r.output
    res, detail = checks["bulk upload via the VIP"]
    assert res == "FAIL" and detail.startswith("stalled: no progress"), detail
    assert pass_mtu_delta(checks) > 0, checks
    # The small requests still pass: only full-size packets are lost.
    assert checks["requests answered"][0] == "PASS"
    p = l4lbctl("service", "dumpstate", "--id", "1")
    assert p.returncode == 0 and "WARN PASS_MTU: " in p.stdout, p.stdout + p.stderr


def test_mss_clamp_makes_dsr_work_at_mtu_1500(lab):
    topology("mss")
    r = backends(PREFIX, {"lab_dsr_fit": "mss"})
    assert r.rc == 0, r.output
    routes = ipj(PREFIX, "win1", "route", "show", "20.1.1.100/32")
    assert routes and routes[0]["metrics"] == [{"advmss": 1440}], routes
    assert mtu("lb") == 1500
    lb("dsr", fit="mss")
    r, checks = verify("dsr", lab_dsr_fit="mss")
    assert r.rc == 0, r.output
    bulk_ok(checks)
    assert pass_mtu_delta(checks) == 0
    r = backends(PREFIX, {"lab_dsr_fit": "mss"})
    assert r.rc == 0 and r.changed == 0, r.output


def test_back_to_mtu_is_fixed_and_idempotent(lab):
    topology("mtu")
    assert mtu("lb") == 1520 and mtu("linux1") == 1520 and mtu("client") == 1500
    assert topology("mtu").changed == 0
    r = backends(PREFIX)
    assert r.rc == 0, r.output
    assert ipj(PREFIX, "win1", "route", "show", "20.1.1.100/32") == []   # the clamp is removed
    assert backends(PREFIX).changed == 0
    lb("dsr")
    r, checks = verify("dsr")
    assert r.rc == 0, r.output
    bulk_ok(checks)


def test_port_translating_service_works_in_snat_and_blocks_dsr(lab):
    lb("snat")
    svc = {"id": 80, "frontend": "40.1.1.1:8080", "backends": ["20.1.1.10:80", "20.1.1.20:80"]}
    r = run_playbook("service.yml", dict(EV, lb_services=[svc]))
    assert r.rc == 0, r.output
    status, headers, _ = curl(PREFIX, "http://40.1.1.1:8080/")
    assert " 200" in status and headers.get("x-backend") in ("win1", "win2"), status
    r = run_playbook("mode.yml", dict(EV, lb_mode="dsr"))
    assert r.rc != 0 and "mode dsr refused" in r.output and "service 80 (40.1.1.1:8080/tcp" in r.output, r.output
    r = run_playbook("mode.yml", dict(EV, lb_mode="dsr"), args=["--check"])
    assert r.rc != 0 and "mode dsr refused" in r.output
    out = json.loads(l4lbctl("--json", "mode", "show").stdout)
    assert out["mode"] == "snat"
    r = run_playbook("service.yml", dict(EV, lb_services=[dict(svc, state="absent")]))
    assert r.rc == 0, r.output
    lb("dsr")
    nsrun(PREFIX, "client", "true")
