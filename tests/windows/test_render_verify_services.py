"""lab_verify on a service list of several VIPs, rendered (no lab): which service gets the seed's
full report, which are probed one line each, and how a line is judged from lab_http_probe's
answers. The end-to-end proof is tests/lab/test_vips.py."""

from __future__ import annotations

import json

import pytest
from winrender import LAB_IP, Renderer

SERVICES = [
    {"id": 2, "frontend": "40.1.1.2:80", "backends": ["20.1.1.20:80", "20.1.1.40:80"]},
    {"id": 1, "frontend": "40.1.1.1:80", "backends": ["20.1.1.10:80", "20.1.1.30:80"]},
    {"id": 3, "frontend": "40.1.1.2:8080", "backends": ["20.1.1.10:8080", "20.1.1.40:8080@0"]},
    {"id": 4, "frontend": "40.1.1.3:53", "protocol": "udp", "backends": ["20.1.1.30:53"]},
]


HOSTVARS = {h: {"lab_ip": ip} for h, ip in LAB_IP.items()}


def verify(**extra):
    return Renderer("lab_verify", "client", lab_os="linux", lb_services=SERVICES, hostvars=HOSTVARS, **extra)


def probe(counts, vip, client="20.1.1.1", server=None, unanswered=0):
    n = sum(counts.values())
    return {"counts": counts, "answered": n, "unanswered": unanswered, "failures": [],
            "client_seen": {client: n}, "server_seen": {server or vip: n}}


def test_service_1_gets_the_seeds_report_and_the_others_a_line_each():
    r = verify()
    assert (r.var("lab_verify_vip"), r.var("lab_verify_port"), r.var("lab_verify_backends")) == \
        ("40.1.1.1", 80, ["win1", "linux1"])
    others = r.var("lab_verify_other_services")
    assert [(s["id"], s["vip"], s["port"], s["backends"], s["drained"]) for s in others] == [
        (2, "40.1.1.2", 80, ["win2", "linux2"], []), (3, "40.1.1.2", 8080, ["win1"], ["linux2"]),
        (4, "40.1.1.3", 53, ["linux1"], [])]
    task = r.task("checks.yml", "Send the requests to every other service")
    assert [s["id"] for s in r.value(task["loop"])] == [2, 3]          # UDP is not probed
    assert r.value(task["lab_http_probe"], item=others[1]) == {
        "vip": "40.1.1.2", "port": 8080, "count": 40, "base_port": 20000, "timeout": 3.0, "deadline": 60.0}


def test_without_a_service_list_the_seeds_service_is_checked_as_before():
    r = Renderer("lab_verify", "client", lab_os="linux", hostvars=HOSTVARS)
    assert (r.var("lab_verify_vip"), r.var("lab_verify_port"), r.var("lab_verify_other_services")) == \
        ("40.1.1.1", 80, [])
    assert r.var("lab_verify_backends") == ["win1", "win2", "linux1", "linux2"]


def lines(mode, results):
    r = verify(lb_mode=mode)
    others = r.var("lab_verify_other_services")
    state = {"lab_verify_probe": {}, "lab_verify_lb_program": {}, "lab_verify_lb_after": {},
             "lab_verify_capture_run": False, "lab_verify_bulk": False, "lab_verify_client_ip": "20.1.1.100",
             "lab_verify_service_probes": {"results": [dict(res, item=others[i]) for i, res in results.items()]}}
    checks = json.loads(r.template("checks.j2", **state))
    return {c["check"]: (c["result"], c["detail"]) for c in checks if c["check"].startswith("service ")}


def test_each_service_answered_by_its_own_backends_only_passes():
    got = lines("snat", {0: probe({"win2": 22, "linux2": 18}, "40.1.1.2", server="20.1.1.20"),
                         1: probe({"win1": 40}, "40.1.1.2", server="20.1.1.10")})
    assert got == {"service 2 40.1.1.2:80": ("PASS", "40/40 answered; win2=22 linux2=18"),
                   "service 3 40.1.1.2:8080": ("PASS", "40/40 answered; win1=40"),
                   "service 4 40.1.1.3:53": ("SKIP", "udp: the HTTP probe speaks TCP only")}


@pytest.mark.parametrize("mode, result, needle", [
    ("snat", probe({"win2": 20, "linux1": 20}, "40.1.1.2", server="20.1.1.20"),
     "missing: linux2 ; not its backends: linux1"),
    ("snat", probe({"win2": 20, "linux2": 20}, "40.1.1.2"), "backends saw client 20.1.1.1, server 40.1.1.2"),
    ("dsr", probe({"win2": 20, "linux2": 20}, "40.1.1.2", client="20.1.1.1"),
     "backends saw client 20.1.1.1, server 40.1.1.2"),
    ("snat", dict(probe({"win2": 20}, "40.1.1.2", server="20.1.1.20"), unanswered=20,
                  failures=[{"sport": 20001, "error": "timed out"}]), "20/40 answered; win2=20 linux2=0 ; missing: linux2 ; timed out"),
])
def test_a_service_answered_wrongly_fails_saying_why(mode, result, needle):
    res, detail = lines(mode, {0: result, 1: probe({"win1": 40}, "40.1.1.2", client="20.1.1.100")})["service 2 40.1.1.2:80"]
    assert res == "FAIL" and needle in detail, detail


def test_dsr_addressing_and_a_drained_backend_holding_a_flow_pass():
    got = lines("dsr", {0: probe({"win2": 20, "linux2": 20}, "40.1.1.2", client="20.1.1.100"),
                        1: probe({"win1": 39, "linux2": 1}, "40.1.1.2", client="20.1.1.100")})
    assert got["service 2 40.1.1.2:80"][0] == "PASS"
    assert got["service 3 40.1.1.2:8080"] == ("PASS", "40/40 answered; win1=39")
