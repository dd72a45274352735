"""The Windows roles' decisions, as pure functions (filter_plugins/l4lb_windows.py): the
eBPF-for-Windows version gate, the readers of netsh ebpf and bcdedit output, and the decap plan."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

# netsh ebpf show programs / show pins, as eBPF-for-Windows 0.12.0's ebpfnetsh prints them
# (libs/ebpfnetsh/programs.cpp, pins.cpp: the header lines and printf formats).
PROGRAMS = ("\r\n"
            "    ID  Pins  Links  Mode       Type           Name\r\n"
            "======  ====  =====  =========  =============  ====================\r\n"
            "     5     1      1  JIT        xdp            decap_xdp\r\n"
            "    12     0      1  JIT        bind           bind_monitor\r\n")
PINS = ("\r\n"
        "     ID     Type  Path\r\n"
        "=======  =======  ==============\r\n"
        "      5  Program  ipip_decap\r\n"
        "     12  Program  /ebpf/global/other\r\n")
EMPTY_PROGRAMS = ("\r\n    ID  Pins  Links  Mode       Type           Name\r\n"
                  "======  ====  =====  =========  =============  ====================\r\n")
EMPTY_PINS = "\r\n     ID     Type  Path\r\n=======  =======  ==============\r\n"


@pytest.mark.parametrize("version, hook", [
    ("0.12.0", True), ("v0.12.0", True), ("0.12", True), ("0.12.0.0", True), ("0.11.0", True),
    ("0.9.0", True), ("0.12.0-rc1", True),
    ("0.13.0", False), ("0.13.0-rc1", False), ("0.14.0", False), ("1.0.0", False), ("1.0.0-rc2", False),
    ("0.20.0", False), ("1.5.0", False),
])
def test_xdp_hook_by_version(winfilters, version, hook):
    assert winfilters.efw_has_xdp_hook(version) is hook


@pytest.mark.parametrize("bad", ["", None, "latest", "0", "0.x.1", "12", " 0.12.0 beta"])
def test_a_non_version_is_an_error(winfilters, bad):
    with pytest.raises(AnsibleFilterError, match="is not an eBPF-for-Windows version"):
        winfilters.efw_has_xdp_hook(bad)


@pytest.mark.parametrize("kind, decap, mode, needs", [
    ("lb", None, "snat", True), ("lb", None, "dsr", True),
    ("backend", "xdp", "dsr", True), ("backend", "xdp", "snat", False),
    ("backend", "none", "dsr", False), ("backend", "tc", "dsr", False), ("client", None, "dsr", False),
])
def test_which_nodes_need_xdp(winfilters, kind, decap, mode, needs):
    assert bool(winfilters.efw_xdp_need(kind, decap, mode)) is needs


def test_gate_passes_0_12_0_everywhere(winfilters):
    for kind, decap, mode in (("lb", None, "dsr"), ("backend", "xdp", "dsr"), ("backend", "xdp", "snat")):
        assert winfilters.efw_xdp_gate("0.12.0", "h", kind, decap, mode) == ""


def test_gate_refuses_0_13_on_the_lb_naming_version_and_reason(winfilters):
    assert winfilters.efw_xdp_gate("0.13.0", "lb", "lb", None, "snat") == (
        "lb: windows_ebpf_version 0.13.0 has no XDP hook (eBPF-for-Windows removed it from netebpfext "
        "in 0.13.0, and XDP-for-Windows, its successor, lacks bpf_xdp_adjust_head, which IPIP decap and "
        "DSR encapsulation need), but this node needs XDP: it is the LB node (the load balancer is an "
        "XDP program). Use eBPF-for-Windows 0.12.0.")


def test_gate_refuses_a_dsr_xdp_backend_on_1_x(winfilters):
    msg = winfilters.efw_xdp_gate("1.0.0", "win1", "backend", "xdp", "dsr")
    assert msg.startswith("win1: windows_ebpf_version 1.0.0 has no XDP hook")
    assert msg.endswith("this node needs XDP: it decapsulates DSR's IPIP packets with XDP (backend_decap "
                        "xdp, lb_mode dsr). Use eBPF-for-Windows 0.12.0.")


def test_gate_lets_a_backend_that_needs_no_xdp_run_a_newer_release(winfilters):
    assert winfilters.efw_xdp_gate("0.13.0", "win1", "backend", "xdp", "snat") == ""
    assert winfilters.efw_xdp_gate("1.0.0", "win1", "backend", "none", "dsr") == ""


def test_gate_names_a_bad_version(winfilters):
    assert winfilters.efw_xdp_gate("latest", "win1", "backend", "xdp", "dsr") == (
        "win1: windows_ebpf_version 'latest' is not an eBPF-for-Windows version (like 0.12.0)")


def test_netsh_programs_table(winfilters):
    assert winfilters.netsh_programs(PROGRAMS) == [
        {"id": 5, "pins": 1, "links": 1, "mode": "JIT", "type": "xdp", "name": "decap_xdp"},
        {"id": 12, "pins": 0, "links": 1, "mode": "JIT", "type": "bind", "name": "bind_monitor"}]
    assert winfilters.netsh_programs(EMPTY_PROGRAMS) == []
    assert winfilters.netsh_programs("") == []
    assert winfilters.netsh_programs("The following command was not found: ebpf show programs.") == []


def test_netsh_pins_table(winfilters):
    assert winfilters.netsh_pins(PINS) == [{"id": 5, "type": "Program", "path": "ipip_decap"},
                                           {"id": 12, "type": "Program", "path": "/ebpf/global/other"}]
    assert winfilters.netsh_pins(EMPTY_PINS) == []


def plan(winfilters, pins=PINS, programs=PROGRAMS, state="present", reload=False):
    return winfilters.efw_decap_plan(pins, programs, "ipip_decap", "decap_xdp", state, reload)


def test_decap_plan_present_and_attached_is_left_alone(winfilters):
    assert plan(winfilters) == {"action": "none", "ids": [5],
                                "reason": "program 5 (decap_xdp, xdp) pinned at ipip_decap and attached"}


def test_decap_plan_adds_when_nothing_is_pinned(winfilters):
    assert plan(winfilters, pins=EMPTY_PINS, programs=EMPTY_PROGRAMS) == {
        "action": "add", "ids": [], "reason": "nothing pinned at ipip_decap"}


def test_decap_plan_replaces_a_changed_object(winfilters):
    assert plan(winfilters, reload=True) == {"action": "replace", "ids": [5],
                                             "reason": "its object changed (program 5)"}


def test_decap_plan_replaces_a_detached_or_foreign_program(winfilters):
    detached = PROGRAMS.replace("     5     1      1  JIT", "     5     1      0  JIT")
    assert plan(winfilters, programs=detached)["reason"] == "program 5 (decap_xdp) is pinned but not attached"
    other = PROGRAMS.replace("decap_xdp", "decap_permit_packet")
    assert plan(winfilters, programs=other) == {
        "action": "replace", "ids": [5],
        "reason": "program 5 pinned at ipip_decap is xdp 'decap_permit_packet', not xdp 'decap_xdp'"}
    assert plan(winfilters, programs=EMPTY_PROGRAMS)["action"] == "replace"


def test_decap_plan_replaces_duplicates(winfilters):
    two = PINS + "      7  Program  ipip_decap\r\n"
    assert plan(winfilters, pins=two) == {"action": "replace", "ids": [5, 7],
                                          "reason": "2 programs pinned at ipip_decap"}


def test_decap_plan_absent(winfilters):
    assert plan(winfilters, state="absent") == {"action": "delete", "ids": [5],
                                                "reason": "program 5 pinned at ipip_decap"}
    assert plan(winfilters, pins=EMPTY_PINS, state="absent") == {
        "action": "none", "ids": [], "reason": "nothing pinned at ipip_decap"}


# bcdedit /enum {current} (English), with and without test signing.
BCD_ON = """
Windows Boot Loader
-------------------
identifier              {current}
device                  partition=C:
path                    \\Windows\\system32\\winload.efi
description             Windows Server
locale                  en-US
testsigning             Yes
nx                      OptOut
"""


def test_bcdedit_testsigning(winfilters):
    assert winfilters.bcdedit_testsigning(BCD_ON) is True
    assert winfilters.bcdedit_testsigning(BCD_ON.replace("Yes", "No")) is False
    assert winfilters.bcdedit_testsigning(BCD_ON.replace("testsigning             Yes\n", "")) is False
    assert winfilters.bcdedit_testsigning(BCD_ON.replace("\n", "\r\n")) is True
    assert winfilters.bcdedit_testsigning("") is False


def test_filters_are_registered_under_their_names(winfilters):
    names = set(winfilters.FilterModule().filters())
    assert names == {"l4lb_efw_has_xdp_hook", "l4lb_efw_xdp_need", "l4lb_efw_xdp_gate", "l4lb_netsh_programs",
                     "l4lb_netsh_pins", "l4lb_efw_decap_plan", "l4lb_bcdedit_testsigning",
                     "l4lb_program_version", "l4lb_prereqs_to_install", "l4lb_ctl_json", "l4lb_program_info",
                     "l4lb_win_cmdline"}


@pytest.mark.parametrize("text, version", [
    ("Python 3.12.7\r\n", "3.12.7"),
    ("Python 3.13.0rc2\r\n", "3.13.0rc2"),
    ("clang version 18.1.8\r\nTarget: x86_64-pc-windows-msvc\r\nThread model: posix\r\n"
     "InstalledDir: C:\\l4lb\\llvm\\bin\r\n", "18.1.8"),
    ("Debian clang version 16.0.6 (15+b1)\nTarget: x86_64-pc-linux-gnu\n", "16.0.6"),
    ("", ""), (None, ""),
    ("'C:\\l4lb\\python\\python.exe' is not recognized as an internal or external command", ""),
    ("Python was not found; run without arguments to install from the Microsoft Store", ""),
])
def test_program_version(winfilters, text, version):
    assert winfilters.program_version(text) == version


def test_prereqs_to_install(winfilters):
    py = {"name": "Python", "version": "3.12.7"}
    llvm = {"name": "LLVM", "version": "18.1.8"}
    results = [{"item": py, "rc": 0, "stdout": "Python 3.12.7\r\n", "changed": False},
               {"item": llvm, "failed": False, "msg": "The system cannot find the file specified."}]
    assert winfilters.prereqs_to_install(results) == [llvm]
    results[1] = {"item": llvm, "rc": 0, "stdout": "clang version 17.0.6\r\nTarget: x86_64-pc-windows-msvc\r\n"}
    assert winfilters.prereqs_to_install(results) == [llvm]
    results[1]["stdout"] = "clang version 18.1.8\r\n"
    assert winfilters.prereqs_to_install(results) == []
    assert winfilters.prereqs_to_install([{"item": py, "skipped": True}]) == []
    assert winfilters.prereqs_to_install(None) == []


def test_ctl_json(winfilters):
    assert winfilters.ctl_json('{\n  "changed": true,\n  "writes": ["x"]\n}\n') == {"changed": True, "writes": ["x"]}
    assert winfilters.ctl_json('{"failed": true, "changed": false, "msg": "service 9 is not programmed"}', 1) == {
        "failed": True, "changed": False, "msg": "service 9 is not programmed"}
    assert winfilters.ctl_json("Traceback (most recent call last):\r\n  File \"l4lbctl\", line 3\r\nOSError: x\r\n", 1) == {
        "failed": True, "changed": False,
        "msg": 'l4lbctl answered no JSON (exit 1): Traceback (most recent call last): |   File "l4lbctl", line 3 | OSError: x'}
    assert winfilters.ctl_json("", 2)["msg"] == "l4lbctl answered no JSON (exit 2): (nothing)"
    assert winfilters.ctl_json("[1, 2]")["failed"] is True


def test_program_info_has_xdp_program_infos_shape(winfilters):
    shown = {"attach_mode": "generic", "changed": False, "device": "Ethernet", "maps_pinned": ["ct4_global"],
             "mode": "snat", "name": "lb_xdp_snat", "pinned_prog_id": 12, "prog_id": 12, "tag": "",
             "trouble": {"PASS_MTU": {"packets": 3, "bytes": 4500}}}
    assert winfilters.program_info(shown) == {"changed": False, "trouble": {"PASS_MTU": {"packets": 3, "bytes": 4500}},
                                              "status": {"attach_mode": "generic", "device": "Ethernet",
                                                         "maps_pinned": ["ct4_global"], "mode": "snat",
                                                         "name": "lb_xdp_snat", "pinned_prog_id": 12,
                                                         "prog_id": 12, "tag": ""}}
    assert winfilters.program_info(None) == {"changed": False, "status": {}, "trouble": {}}


def test_win_cmdline_quotes_as_the_c_runtime_splits(winfilters):
    assert winfilters.win_cmdline(["C:\\l4lb\\lb\\tool\\bin\\l4lbctl", "--every", 5, "--timeouts", "{}"]) == \
        "C:\\l4lb\\lb\\tool\\bin\\l4lbctl --every 5 --timeouts {}"
    assert winfilters.win_cmdline(["--timeouts", '{"syn": 5, "tcp": 21600}', "--log", "C:\\Program Files\\x\\gc.log"]) == \
        '--timeouts "{\\"syn\\": 5, \\"tcp\\": 21600}" --log "C:\\Program Files\\x\\gc.log"'
    assert winfilters.win_cmdline(["a b\\", ""]) == '"a b\\\\" ""'
    with pytest.raises(AnsibleFilterError):
        winfilters.win_cmdline("--every 5")
