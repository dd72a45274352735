"""Every command line and parameter set the windows_ebpf role renders, exactly, from its defaults
and the seed's inventory (no Windows host needed)."""

from __future__ import annotations

import os

import pytest

from winrender import ROLES, Renderer, ps1_params

STAGE = "C:\\l4lb\\stage"
MSI = STAGE + "\\eBPF-for-Windows.0.12.0.msi"


@pytest.fixture
def lb():
    return Renderer("windows_ebpf", "lb")


@pytest.fixture
def win1():
    return Renderer("windows_ebpf", "win1")


def test_node_kind_features_and_services(lb, win1):
    assert lb.var("windows_ebpf_node_kind") == "lb"
    assert win1.var("windows_ebpf_node_kind") == "backend"
    assert lb.var("windows_ebpf_features") == ["eBPF_Runtime_Components", "eBPF_Runtime_Components_JIT",
                                               "eBPF_Development"]
    assert win1.var("windows_ebpf_features") == ["eBPF_Runtime_Components", "eBPF_Runtime_Components_JIT"]
    assert win1.var("windows_ebpf_services") == ["eBPFCore", "NetEbpfExt", "eBPFSvc"]
    no_jit = Renderer("windows_ebpf", "win1", windows_ebpf_features=["eBPF_Runtime_Components"])
    assert no_jit.var("windows_ebpf_services") == ["eBPFCore", "NetEbpfExt"]


def test_state_read_parameters_match_the_script(win1):
    params = win1.args("present.yml", "Read the node's boot settings", "ansible.windows.win_powershell")
    assert params == {"path": "ebpf_state.ps1", "parameters": {
        "ProductId": "{022C44B5-8969-4B75-8DB0-73F98B1BD7DC}",
        "Features": ["eBPF_Runtime_Components", "eBPF_Runtime_Components_JIT"],
        "Services": ["eBPFCore", "NetEbpfExt", "eBPFSvc"]}}
    script = os.path.join(ROLES, "windows_ebpf", "files", "ebpf_state.ps1")
    assert ps1_params(script) == ["ProductId", "Features", "Services"]


def test_testsigning_command_and_reboot(win1):
    assert win1.args("present.yml", "Test signing is on", "ansible.windows.win_command") == {
        "argv": ["bcdedit.exe", "-set", "testsigning", "on"]}
    task = win1.task("present.yml", "Test signing is on")
    bcd_on = "Windows Boot Loader\r\nidentifier              {current}\r\ntestsigning             Yes\r\n"
    now = {"result": {"bcdedit": bcd_on}}
    assert win1.value("{{ %s }}" % task["when"], windows_ebpf_now=now) is False
    now = {"result": {"bcdedit": bcd_on.replace("Yes", "No")}}
    assert win1.value("{{ %s }}" % task["when"], windows_ebpf_now=now) is True
    reboot = win1.task("present.yml", "Reboot so that test signing takes effect")
    assert reboot["ansible.windows.win_reboot"]["reboot_timeout"] == "{{ windows_ebpf_reboot_timeout }}"
    assert win1.var("windows_ebpf_reboot_timeout") == 900
    # a reboot only when bcdedit was changed, or the running boot lacks test signing
    cond = "{{ %s }}" % reboot["when"]
    unchanged = {"changed": False, "skipped": True}
    assert win1.value(cond, windows_ebpf_testsigning=unchanged,
                      windows_ebpf_now={"result": {"running_testsigning": True}}) is False
    assert win1.value(cond, windows_ebpf_testsigning={"changed": True},
                      windows_ebpf_now={"result": {"running_testsigning": True}}) is True
    assert win1.value(cond, windows_ebpf_testsigning=unchanged,
                      windows_ebpf_now={"result": {"running_testsigning": False}}) is True


def test_missing_features(win1, lb):
    expr = win1.task("present.yml", "Decide what to install")["ansible.builtin.set_fact"]["windows_ebpf_missing_features"]
    fresh = {"result": {"features": {}}}
    assert win1.value(expr, windows_ebpf_now=fresh) == ["eBPF_Runtime_Components", "eBPF_Runtime_Components_JIT"]
    done = {"result": {"features": {"eBPF_Runtime_Components": 3, "eBPF_Runtime_Components_JIT": 3}}}
    assert win1.value(expr, windows_ebpf_now=done) == []
    assert lb.value(expr, windows_ebpf_now=done) == ["eBPF_Development"]


def test_vcredist_command(win1):
    assert win1.args("present.yml", "The VC++ redistributable is installed", "ansible.windows.win_command") == {
        "argv": [STAGE + "\\vc_redist.x64.exe", "/install", "/quiet", "/norestart"]}


def test_msi_install(win1, lb):
    assert win1.args("present.yml", "The eBPF-for-Windows MSI is installed", "ansible.windows.win_package") == {
        "path": MSI, "product_id": "{022C44B5-8969-4B75-8DB0-73F98B1BD7DC}",
        "arguments": "ADDLOCAL=eBPF_Runtime_Components,eBPF_Runtime_Components_JIT", "state": "present"}
    assert lb.args("present.yml", "The eBPF-for-Windows MSI is installed", "ansible.windows.win_package")["arguments"] == \
        "ADDLOCAL=eBPF_Runtime_Components,eBPF_Runtime_Components_JIT,eBPF_Development"


def test_msi_modify_adds_only_missing_features(lb):
    args = lb.args("present.yml", "Missing features are added", "ansible.windows.win_command",
                   windows_ebpf_missing_features=["eBPF_Development"])
    assert args == {"argv": ["msiexec.exe", "/i", MSI, "ADDLOCAL=eBPF_Development", "/qn", "/norestart"]}


def test_services_and_netsh(win1):
    task = win1.task("present.yml", "The eBPF services run")
    assert win1.value(task["loop"]) == ["eBPFCore", "NetEbpfExt", "eBPFSvc"]
    assert win1.value(task["ansible.windows.win_service"], item="eBPFCore") == {"name": "eBPFCore", "state": "started"}
    assert win1.args("present.yml", "Netsh's eBPF helper answers", "ansible.windows.win_command") == {
        "argv": ["netsh.exe", "ebpf", "show", "programs"]}


def test_staging_copy_and_download(win1):
    stage = {"name": "the MSI", "src": "/srv/efw.msi", "url": "", "sha256": "AB" * 32, "dest": MSI}
    assert win1.args("stage.yml", "Copy the installer", "ansible.windows.win_copy", windows_ebpf_stage=stage) == {
        "src": "/srv/efw.msi", "dest": MSI}
    stage.update(src="", url="https://example.invalid/efw.msi")
    assert win1.args("stage.yml", "Download the installer", "ansible.windows.win_get_url", windows_ebpf_stage=stage) == {
        "url": "https://example.invalid/efw.msi", "dest": MSI, "checksum": "ab" * 32,
        "checksum_algorithm": "sha256", "force": False}


def test_uninstall(win1):
    assert win1.args("absent.yml", "The eBPF-for-Windows product is uninstalled", "ansible.windows.win_package") == {
        "product_id": "{022C44B5-8969-4B75-8DB0-73F98B1BD7DC}", "state": "absent"}
