"""Port-translating services and DSR (issue 16), both ways, through the modules and l4lbctl on
the real kernel: such a service is refused while the LB runs DSR (read from the attached
program), and `mode update dsr` is refused while one is programmed. Each refusal names the
service, happens in check mode too, and leaves the program and the maps untouched."""

from __future__ import annotations

import json

import pytest

from control_lab import BE_IP, BUILD_DIR, PIN_DIR, PROGRAM, SRC_DIR, VIP, attached_prog_id, l4lbctl, lb_maps_snapshot

pytestmark = pytest.mark.usefixtures("slice_lab")

PLAIN = {"id": 1, "frontend": f"{VIP}:80", "backends": [f"{BE_IP}:80"], "pin_dir": PIN_DIR}
TRANSLATING = {"id": 80, "frontend": f"{VIP}:8080", "backends": [f"{BE_IP}:80"], "pin_dir": PIN_DIR}
SAME_PORT = {"id": 81, "frontend": f"{VIP}:8081", "backends": [f"{BE_IP}:8081"], "pin_dir": PIN_DIR}


def _mode() -> str:
    return json.loads(l4lbctl("--json", "mode", "show", check=True).stdout)["mode"]


@pytest.fixture()
def snat(run_module):
    """SNAT attached with the plain service 1 only; SNAT and service 1 alone again afterwards."""
    def reset():
        r = run_module("xdp_program", PROGRAM)
        assert not r.get("failed"), r
        for sid in (80, 81):
            r = run_module("lb_service", {"id": sid, "state": "absent", "pin_dir": PIN_DIR})
            assert not r.get("failed"), r
        assert not run_module("lb_service", PLAIN).get("failed")
    reset()
    yield
    reset()
    assert _mode() == "snat"


def _frozen():
    return attached_prog_id(), {k: v for k, v in lb_maps_snapshot().items() if k != "ct4_global"}


def test_port_translating_service_refused_while_dsr_runs(run_module, snat):
    r = run_module("xdp_program", {**PROGRAM, "mode": "dsr"})
    assert not r.get("failed") and r["status"]["mode"] == "dsr", r
    before = _frozen()
    for check in (True, False):
        r = run_module("lb_service", TRANSLATING, check=check)
        assert r.get("failed"), r
        assert "service 80 (40.1.1.1:8080/tcp -> 20.1.1.10:80)" in r["msg"], r["msg"]
        assert "runs dsr" in r["msg"] and "from the port it received on" in r["msg"], r["msg"]
    p = l4lbctl("service", "update", f"--frontend={VIP}:8080", f"--backends={BE_IP}:80", "--id=80")
    assert p.returncode == 1 and "service 80" in p.stderr and "dsr" in p.stderr, p.stderr
    p = l4lbctl("--check", "service", "update", f"--frontend={VIP}:8080", f"--backends={BE_IP}:80", "--id=80")
    assert p.returncode == 1 and "service 80" in p.stderr, p.stderr
    assert _frozen() == before
    # Same port on both sides is fine in DSR.
    r = run_module("lb_service", SAME_PORT)
    assert not r.get("failed") and r["changed"] is True, r


def test_port_translating_service_works_in_snat(run_module, snat):
    r = run_module("lb_service", TRANSLATING)
    assert not r.get("failed") and r["changed"] is True, r
    listing = l4lbctl("service", "list", check=True).stdout
    assert f"80: {VIP}:8080/tcp -> {BE_IP}:80" in listing


def test_mode_dsr_refused_while_a_port_translating_service_exists(run_module, snat):
    assert not run_module("lb_service", TRANSLATING).get("failed")
    before = _frozen()
    for check in (True, False):
        r = run_module("xdp_program", {**PROGRAM, "mode": "dsr"}, check=check)
        assert r.get("failed"), r
        assert r["msg"].startswith("mode dsr refused: 1 service(s) translate ports"), r["msg"]
        assert "service 80 (40.1.1.1:8080/tcp -> 20.1.1.10:80)" in r["msg"], r["msg"]
    for extra in ((), ("--check",)):
        p = l4lbctl(*extra, "mode", "update", "dsr", "--src", SRC_DIR, "--build-dir", BUILD_DIR)
        assert p.returncode == 1 and "mode dsr refused" in p.stderr and "service 80" in p.stderr, p.stderr
    assert _frozen() == before and _mode() == "snat"
    # SNAT stays allowed (a rerun is a no-op), and DSR is accepted once the service is gone.
    r = run_module("xdp_program", PROGRAM)
    assert not r.get("failed") and r["changed"] is False, r
    assert not run_module("lb_service", {"id": 80, "state": "absent", "pin_dir": PIN_DIR}).get("failed")
    p = l4lbctl("mode", "update", "dsr", "--src", SRC_DIR, "--build-dir", BUILD_DIR)
    assert p.returncode == 0, p.stderr
    assert _mode() == "dsr"
