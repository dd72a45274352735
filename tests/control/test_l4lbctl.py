"""l4lbctl through its command line, as a seed user types it, on the real kernel."""

from __future__ import annotations

import json

import pytest

from control_lab import BE_IP, BUILD_DIR, PIN_DIR, SRC_DIR, VIP, attached_prog_id, l4lbctl, make_ct_entries

pytestmark = pytest.mark.usefixtures("slice_lab")


@pytest.fixture(scope="module", autouse=True)
def attached():
    p = l4lbctl("mode", "update", "snat", "--src", SRC_DIR, "--build-dir", BUILD_DIR, check=True)
    assert "changed" in p.stdout
    yield
    l4lbctl("service", "delete", "--id", "1")
    l4lbctl("service", "delete", "--id", "2")


def test_seed_service_update_then_unchanged():
    l4lbctl("service", "delete", "--id", "1", check=True)
    p = l4lbctl("service", "update", f"--frontend={VIP}:80", f"--backends={BE_IP}:80", "--id=1", check=True)
    assert p.stdout.startswith("changed")
    assert "master" in p.stdout
    p = l4lbctl("service", "update", f"--frontend={VIP}:80", f"--backends={BE_IP}:80", "--id=1", check=True)
    assert p.stdout.strip() == "unchanged"
    listing = l4lbctl("service", "list", check=True).stdout
    assert f"1: {VIP}:80/tcp -> {BE_IP}:80" in listing


def test_json_output_has_changed_and_diff():
    p = l4lbctl("--json", "--check", "service", "update", f"--frontend={VIP}:8080",
                f"--backends={BE_IP}:8080", "--id=2", check=True)
    out = json.loads(p.stdout)
    assert out["changed"] is True and out["diff"]["after"]["2"]["port"] == 8080
    assert "2" not in out["diff"]["before"]
    # --check changed nothing
    out = json.loads(l4lbctl("--json", "service", "list", check=True).stdout)
    assert all(s["id"] != 2 for s in out["services"])


def test_json_and_check_after_the_verb_as_users_type_them():
    """`service dumpstate --id 1 --json` (the docstring's form) and `--check` after the verb."""
    l4lbctl("service", "update", f"--frontend={VIP}:80", f"--backends={BE_IP}:80", "--id=1", check=True)
    out = json.loads(l4lbctl("service", "dumpstate", "--id", "1", "--json", check=True).stdout)
    assert "connections" in out and out["changed"] is False
    p = l4lbctl("service", "update", f"--frontend={VIP}:8081", f"--backends={BE_IP}:8081", "--id=3",
                "--check", "--json", check=True)
    out = json.loads(p.stdout)
    assert out["changed"] is True and out["diff"]["after"]["3"]["port"] == 8081
    listing = json.loads(l4lbctl("service", "list", "--json", check=True).stdout)
    assert all(s["id"] != 3 for s in listing["services"]), "--check after the verb changed the maps"
    # a flag given before the verb is not reset by the verb's parser
    out = json.loads(l4lbctl("--json", "service", "list", check=True).stdout)
    assert "services" in out


def test_dumpstate_table_has_the_seed_columns():
    l4lbctl("service", "update", f"--frontend={VIP}:80", f"--backends={BE_IP}:80", "--id=1", check=True)
    make_ct_entries(PIN_DIR, [42001])
    text = l4lbctl("service", "dumpstate", "--id", "1", check=True).stdout
    header = text.splitlines()[1]
    for col in ("Source IP", "Dest. IP", "Source Port", "Dest Port", "Backend IP", "State", "Rx Bytes", "Tx Bytes"):
        assert col in header
    assert "42001" in text and BE_IP in text
    # after the seed's table: the Maglev table by backend identity (an LB tier compares it)
    assert "maglev: 2039 slots, digest " in text and f"{BE_IP}:80=2039" in text
    out = json.loads(l4lbctl("--json", "service", "dumpstate", "--id", "1", check=True).stdout)
    assert any(c["source_port"] == 42001 for c in out["connections"])


def test_mode_update_keeps_services():
    l4lbctl("service", "update", f"--frontend={VIP}:80", f"--backends={BE_IP}:80", "--id=1", check=True)
    before = json.loads(l4lbctl("--json", "service", "list", check=True).stdout)["services"]
    out = json.loads(l4lbctl("--json", "mode", "update", "dsr", "--src", SRC_DIR, "--build-dir", BUILD_DIR,
                             check=True).stdout)
    assert out["changed"] is True and out["build"]["defines"]["MODE_DSR"] == "1"
    assert json.loads(l4lbctl("--json", "service", "list", check=True).stdout)["services"] == before
    shown = l4lbctl("mode", "show", check=True).stdout
    assert f"id {attached_prog_id()}" in shown and "mode dsr" in shown
    l4lbctl("mode", "update", "snat", "--src", SRC_DIR, "--build-dir", BUILD_DIR, check=True)


def test_mode_update_takes_the_port_range_and_lifetimes_ansible_would():
    argv = ["--json", "mode", "update", "snat", "--src", SRC_DIR, "--build-dir", BUILD_DIR]
    out = json.loads(l4lbctl(*argv, "--snat-ports", "62000-63000", "--ct-timeouts", '{"syn": 3}',
                             check=True).stdout)
    d = out["build"]["defines"]
    assert out["changed"] is True
    assert (d["SNAT_PORT_MIN"], d["SNAT_PORT_MAX"], d["LB_CT_SYN_TIMEOUT"], d["LB_CT_TCP_TIMEOUT"]) == \
        ("62000", "63000", "3", "21600")
    back = json.loads(l4lbctl(*argv, check=True).stdout)
    assert back["changed"] is True and back["build"]["defines"]["LB_CT_SYN_TIMEOUT"] == "5"


def test_neighbor_update():
    out = json.loads(l4lbctl("--json", "neighbor", "update", BE_IP, check=True).stdout)
    assert out["address"] == BE_IP and len(out["mac"]) == 17


@pytest.mark.parametrize("argv,needle", [
    (["service", "update", "--frontend=40.1.1.1:80", "--backends=", "--id=1"], "at least one backend"),
    (["service", "update", "--frontend=40.1.1.1:99999", f"--backends={BE_IP}:80", "--id=1"], "99999"),
    (["service", "update", "--frontend=40.1.1.1:80", f"--backends={BE_IP}:80", "--id=0"], "id"),
    (["service", "dumpstate", "--id", "9"], "service 9 is not programmed"),
    (["mode", "update", "ipvs"], "ipvs"),
    (["mode", "update", "snat", "--snat-ports", "61000"], "--snat-ports"),
    (["mode", "update", "snat", "--ct-timeouts", "[5]"], "--ct-timeouts"),
    (["mode", "update", "snat", "--ct-timeouts", '{"sin": 5}'], "sin"),
    (["ct", "gc", "--timeouts", "{"], "--timeouts"),
])
def test_bad_input_exits_1_with_a_message(argv, needle):
    p = l4lbctl(*argv)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert needle in p.stderr


def test_json_errors_are_json():
    p = l4lbctl("--json", "service", "dumpstate", "--id", "9")
    assert p.returncode == 1
    assert json.loads(p.stdout)["failed"] is True
