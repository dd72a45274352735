"""The Windows LB node (lb_node and lb_service on lab_os windows; lab_verify, the summary and
dumpstate.yml reading a Windows LB): every command line, parameter set and module argument
their tasks render, exactly, from the roles' defaults and the seed's inventory; how each task
judges l4lbctl's JSON; the controller's zip of what the node runs. No Windows host needed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile

import pytest
import yaml

from labtest import REPO
from winrender import ROLES, Renderer, find_task, ps1_params

PY = "C:\\l4lb\\python\\python.exe"
CTL = "C:\\l4lb\\lb\\tool\\bin\\l4lbctl"
CLANG = "C:\\l4lb\\llvm\\bin\\clang.exe"
PIN = "/ebpf/global/l4lb/lb"
BASE = [PY, CTL, "--json", "--device", "Ethernet", "--pin-dir", PIN]
# What inventory/windows gives the LB node (its group_vars and host vars), plus installers.
INVENTORY = {"lab_bpffs_dir": "/ebpf/global/l4lb", "lb_node_device": "Ethernet",
             "ansible_connection": "ansible.builtin.winrm", "ansible_playbook_python": "/usr/bin/python3"}
INSTALLERS = {"lb_node_windows_python_src": "/srv/in/python-3.12.7-amd64.exe",
              "lb_node_windows_python_sha256": "ab" * 32, "lb_node_windows_python_version": "3.12.7",
              "lb_node_windows_llvm_url": "https://example.invalid/LLVM-18.1.8-win64.exe",
              "lb_node_windows_llvm_sha256": "cd" * 32, "lb_node_windows_llvm_version": "18.1.8"}


@pytest.fixture
def lb():
    return Renderer("lb_node", "lb", **INVENTORY, **INSTALLERS)


def test_windows_paths_and_the_node_os(lb):
    assert lb.var("lb_node_os") == "windows"
    assert [lb.var(v) for v in ("lb_node_tool_root", "lb_node_src_dir", "lb_node_build_dir", "lb_node_gc_log",
                                "lb_node_gc_python", "lb_node_pin_dir", "lb_node_windows_clang")] == [
        "C:\\l4lb\\lb\\tool", "C:\\l4lb\\lb\\tool\\bpf", "C:\\l4lb\\lb\\build", "C:\\l4lb\\lb\\gc.log", PY, PIN, CLANG]
    assert lb.var("lb_node_windows_ctl") == BASE


def test_the_linux_defaults_are_as_before():
    """lab_os linux: the same values the role had before its Windows tasks."""
    ssh = Renderer("lb_node", "lb", lab_os="linux", ansible_connection="ssh", lab_state_dir="/run/l4lb",
                   lab_bpffs_dir="/sys/fs/bpf/l4lb")
    assert [ssh.var(v) for v in ("lb_node_os", "lb_node_tool_root", "lb_node_src_dir", "lb_node_build_dir",
                                 "lb_node_gc_log", "lb_node_gc_python", "lb_node_pin_dir")] == [
        "linux", "/run/l4lb/lb/tool", "/run/l4lb/lb/tool/bpf", "/run/l4lb/lb/build", "/run/l4lb/lb/gc.log",
        "python3", "/sys/fs/bpf/l4lb/lb"]
    netns = Renderer("lb_node", "lb", lab_os="linux", ansible_connection="netns")
    assert netns.var("lb_node_tool_root") == REPO and netns.var("lb_node_src_dir") == os.path.join(REPO, "bpf")
    assert netns.var("lb_node_build_dir") == "/run/l4lb/lb/build"


def test_the_tasks_are_chosen_by_the_nodes_os():
    tasks = yaml.safe_load(open(os.path.join(ROLES, "lb_node", "tasks", "main.yml"), encoding="utf-8"))
    assert [t.get("when") for t in tasks] == [
        ["lb_node_os != 'windows'", "lb_node_state == 'present'", "lb_node_copy_sources | bool"],
        "lb_node_os != 'windows'", "lb_node_os != 'windows'", "lb_node_os == 'windows'"]
    assert tasks[-1]["ansible.builtin.include_tasks"]["file"] == "windows.yml"
    services = yaml.safe_load(open(os.path.join(ROLES, "lb_service", "tasks", "main.yml"), encoding="utf-8"))
    # first, on either OS: every service's VIP in the lab's range (before any change)
    assert services[0]["ansible.builtin.include_tasks"]["file"] == "vip_range.yml"
    assert [t.get("when") for t in services] == [
        "lb_service_vip_range | length > 0",
        ["lb_service_os != 'windows'", "lb_service_neighbors | length > 0"], "lb_service_os != 'windows'",
        "lb_service_os == 'windows'"]


def test_prerequisites_are_read_staged_and_installed(lb):
    prereqs = lb.var("lb_node_windows_prereqs")
    assert [(p["name"], p["exe"], p["version"], p["staged"]) for p in prereqs] == [
        ("Python", PY, "3.12.7", "C:\\l4lb\\lb\\stage\\python-3.12.7.exe"),
        ("LLVM", CLANG, "18.1.8", "C:\\l4lb\\lb\\stage\\llvm-18.1.8.exe")]
    read = lb.task("windows.yml", "Read the installed Python's and clang's versions")
    assert [lb.value(read["ansible.windows.win_command"], item=p) for p in prereqs] == [
        {"argv": [PY, "--version"]}, {"argv": [CLANG, "--version"]}]
    assert (read["changed_when"], read["failed_when"], read["check_mode"]) == (False, False, False)
    decide = lb.task("windows.yml", "Decide which prerequisites to install")
    results = {"results": [{"item": prereqs[0], "stdout": "Python 3.12.7\r\n", "rc": 0},
                           {"item": prereqs[1], "msg": "The system cannot find the file specified.", "failed": False}]}
    assert lb.value(decide["ansible.builtin.set_fact"]["lb_node_windows_install"],
                    lb_node_windows_versions=results) == [prereqs[1]]
    copy = lb.task("windows.yml", "Copy the installers from the controller")
    assert lb.value(copy["loop"], lb_node_windows_install=prereqs) == [prereqs[0]]  # LLVM comes by URL
    assert lb.value(copy["ansible.windows.win_copy"], item=prereqs[0]) == {
        "src": "/srv/in/python-3.12.7-amd64.exe", "dest": "C:\\l4lb\\lb\\stage\\python-3.12.7.exe"}
    install = lb.task("windows.yml", "Python and LLVM are installed")["ansible.windows.win_package"]
    assert [lb.value(install, item=p) for p in prereqs] == [
        {"path": "C:\\l4lb\\lb\\stage\\python-3.12.7.exe", "checksum": "AB" * 32, "checksum_algorithm": "sha256",
         "arguments": "/quiet InstallAllUsers=1 PrependPath=0 Include_launcher=0 Include_test=0 Include_doc=0 "
                      "Include_tcltk=0 Shortcuts=0 AssociateFiles=0 \"TargetDir=C:\\l4lb\\python\"",
         "state": "present"},
        {"path": "https://example.invalid/LLVM-18.1.8-win64.exe", "checksum": "CD" * 32,
         "checksum_algorithm": "sha256", "arguments": "/S /D=C:\\l4lb\\llvm", "state": "present"}]
    with_id = dict(prereqs[1], product_id="LLVM")
    assert lb.value(install, item=with_id)["product_id"] == "LLVM"
    again = lb.task("windows.yml", "Read the installed versions again")
    cond = "{{ %s }}" % again["failed_when"]
    assert lb.value(cond, item=prereqs[1], lb_node_windows_versions_after={"stdout": "clang version 18.1.8\r\n"}) is False
    assert lb.value(cond, item=prereqs[1], lb_node_windows_versions_after={"stdout": "clang version 17.0.1\r\n"}) is True


def test_sources_go_as_one_zip_unpacked_by_content(lb):
    build = lb.task("windows.yml", "Build the zip")
    assert lb.value(build["ansible.builtin.command"]) == {"argv": [
        "/usr/bin/python3", os.path.join(ROLES, "lb_node", "files", "zip_sources.py"), REPO,
        os.path.join(REPO, "build", "node-sources", "windows-lb.zip"), "bpf", "bin/l4lbctl", "module_utils/l4lb"]}
    assert (build["delegate_to"], build["run_once"], build["changed_when"]) == ("localhost", True, False)
    assert lb.value(lb.task("windows.yml", "The zip is on the node")["ansible.windows.win_copy"]) == {
        "src": os.path.join(REPO, "build", "node-sources", "windows-lb.zip"),
        "dest": "C:\\l4lb\\lb\\stage\\l4lb-sources.zip"}
    unpack = lb.args("windows.yml", "The node's l4lbctl and sources are the zip's", "ansible.windows.win_powershell")
    assert unpack == {"path": "tool_sources.ps1", "parameters": {
        "State": "present", "Destination": "C:\\l4lb\\lb\\tool", "Archive": "C:\\l4lb\\lb\\stage\\l4lb-sources.zip"}}
    removed = lb.args("windows.yml", "The LB node's directory is removed", "ansible.windows.win_powershell")
    assert removed == {"path": "tool_sources.ps1", "parameters": {"State": "absent", "Destination": "C:\\l4lb\\lb"}}
    assert ps1_params(os.path.join(ROLES, "lb_node", "files", "tool_sources.ps1")) == ["State", "Destination", "Archive"]


def test_the_controllers_zip_is_reproducible_and_holds_what_the_node_runs(tmp_path):
    script = os.path.join(ROLES, "lb_node", "files", "zip_sources.py")
    paths = ["bpf", "bin/l4lbctl", "module_utils/l4lb"]
    for out in (tmp_path / "a.zip", tmp_path / "b.zip"):
        subprocess.run([sys.executable, script, REPO, str(out), *paths], check=True, capture_output=True)
    a, b = (tmp_path / "a.zip").read_bytes(), (tmp_path / "b.zip").read_bytes()
    assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest()
    with zipfile.ZipFile(tmp_path / "a.zip") as z:
        names = z.namelist()
        assert names == sorted(names)
        assert "bin/l4lbctl" in names and "bpf/lb_xdp.c" in names and "module_utils/l4lb/platform/windows.py" in names
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert z.read("bin/l4lbctl") == open(os.path.join(REPO, "bin", "l4lbctl"), "rb").read()
    expected = sorted(os.path.relpath(os.path.join(d, n), REPO)
                      for p in ("bpf", "module_utils/l4lb") for d, dirs, ns in os.walk(os.path.join(REPO, p))
                      if "__pycache__" not in d for n in ns if not n.endswith(".pyc"))
    assert names == sorted(expected + ["bin/l4lbctl"])


def _mode_task(r):
    return r.task("windows.yml", "The XDP load balancer is")


def test_mode_update_command_line(lb):
    t = _mode_task(lb)
    snat = BASE + ["mode", "update", "snat", "--src", "C:\\l4lb\\lb\\tool\\bpf", "--build-dir", "C:\\l4lb\\lb\\build",
                   "--attach-mode", "generic", "--maglev-size", "2039", "--snat-ports", "1024-32767", "--ct-timeouts", "{}"]
    assert lb.value(t["vars"]["lb_node_windows_mode_argv"]) == snat
    assert lb.value(t["ansible.windows.win_command"]["chdir"]) == "C:\\l4lb\\lb\\tool"
    assert lb.value(t["environment"]) == {"L4LB_CLANG": CLANG, "L4LB_EFW_DIR": "C:\\Program Files\\ebpf-for-windows"}
    assert t["check_mode"] is False and t["notify"] == "Restart the CT GC task"
    dsr = Renderer("lb_node", "lb", **INVENTORY, **INSTALLERS, lb_mode="dsr", lb_node_force_reload=True,
                   lb_node_ct_timeouts={"syn": 5, "closed": 2}, lb_node_maglev_size=251,
                   lb_node_snat_port_min=2000, lb_node_snat_port_max=29999, ansible_check_mode=True)
    assert dsr.value(t["vars"]["lb_node_windows_mode_argv"]) == BASE + [
        "mode", "update", "dsr", "--src", "C:\\l4lb\\lb\\tool\\bpf", "--build-dir", "C:\\l4lb\\lb\\build",
        "--attach-mode", "generic", "--maglev-size", "251", "--snat-ports", "2000-29999",
        "--ct-timeouts", '{"syn": 5, "closed": 2}', "--force", "--check"]
    absent = Renderer("lb_node", "lb", **INVENTORY, lb_node_state="absent")
    assert absent.value(t["vars"]["lb_node_windows_mode_argv"]) == BASE + ["mode", "delete"]


@pytest.mark.parametrize("rc, stdout, changed, failed", [
    (0, '{"changed": true, "diff": {}, "status": {"mode": "snat"}}', True, False),
    (0, '{"changed": false, "status": {"mode": "snat"}}', False, False),
    (1, '{"failed": true, "changed": false, "msg": "device \'Ethernet\' does not exist on this node"}', False, True),
    (1, "Traceback (most recent call last):\r\n  ...\r\nModuleNotFoundError: No module named 'l4lb'\r\n", False, True),
    (2, "", False, True),
])
def test_l4lbctl_json_decides_changed_and_failed(lb, rc, stdout, changed, failed):
    t = _mode_task(lb)
    result = {"rc": rc, "stdout": stdout}
    assert lb.value("{{ %s }}" % t["changed_when"], lb_node_windows_mode=result) is changed
    assert lb.value("{{ %s }}" % t["failed_when"], lb_node_windows_mode=result) is failed


def test_absent_needs_l4lbctl_on_the_node(lb):
    cond = "{{ %s }}" % _mode_task(lb)["when"]
    absent = Renderer("lb_node", "lb", **INVENTORY, lb_node_state="absent")
    both = {"results": [{"stat": {"exists": True}}, {"stat": {"exists": True}}]}
    assert absent.value(cond, lb_node_windows_ctl_files=both) is True
    one = {"results": [{"stat": {"exists": True}}, {"stat": {"exists": False}}]}
    assert absent.value(cond, lb_node_windows_ctl_files=one) is False
    assert lb.value(cond) is True
    # check mode on a node without them yet: l4lbctl does not run, and that is said
    checking = Renderer("lb_node", "lb", **INVENTORY, ansible_check_mode=True)
    assert checking.value(cond, lb_node_windows_ctl_files=one) is False
    assert checking.value(cond, lb_node_windows_ctl_files=both) is True
    stat = lb.task("windows.yml", "Are Python and l4lbctl on the node")
    assert lb.value(stat["loop"]) == [PY, CTL]
    assert [r.value("{{ %s }}" % stat["when"]) for r in (lb, checking, absent)] == [False, True, True]
    why = lb.task("windows.yml", "Say why l4lbctl did not run")
    assert checking.value(why["ansible.builtin.debug"]["msg"], **why["vars"]) == (
        f"lb: {PY} or {CTL} is not on the node, so l4lbctl cannot tell what it would do (check mode; a real run "
        "installs them first, then attaches)")
    assert absent.value(why["ansible.builtin.debug"]["msg"], **why["vars"]) == (
        f"lb: {PY} or {CTL} is not on the node, so no load balancer of the lab's can be detached by it; pins "
        f"left under {PIN} show in `netsh ebpf show pins`")


def test_lb_node_program_comes_from_l4lbctls_answer(lb):
    t = lb.task("windows.yml", "What l4lbctl reports")
    answer = {"rc": 0, "stdout": '{"changed": true, "status": {"mode": "dsr", "prog_id": 9}}'}
    assert lb.value(t["ansible.builtin.set_fact"]["lb_node_program"], lb_node_windows_mode=answer) == {
        "changed": True, "status": {"mode": "dsr", "prog_id": 9}}


def test_the_ct_gc_scheduled_task(lb):
    task = lb.args("windows.yml", "The CT GC task runs", "community.windows.win_scheduled_task")
    assert task == {
        "name": "l4lb-ct-gc", "path": "\\l4lb",
        "description": "L4LB lab: garbage-collects the load balancer's connection tracking and SNAT ports "
                       "(l4lbctl ct gc --every 5; lb_node role)",
        "actions": [{"path": PY, "working_directory": "C:\\l4lb\\lb\\tool",
                     "arguments": f"{CTL} --pin-dir {PIN} ct gc --every 5 --timeouts {{}} --log C:\\l4lb\\lb\\gc.log"}],
        "triggers": [{"type": "time", "start_boundary": "2026-01-01T00:00:00", "repetition": {"interval": "PT1M"}}],
        "username": "SYSTEM", "logon_type": "service_account", "run_level": "highest", "multiple_instances": 2,
        "execution_time_limit": "PT0S", "start_when_available": True, "disallow_start_if_on_batteries": False,
        "stop_if_going_on_batteries": False, "enabled": True, "state": "present"}
    quoted = Renderer("lb_node", "lb", **INVENTORY, lb_node_ct_timeouts={"syn": 5, "tcp": 600}, lb_node_gc_every=2.5,
                      lb_node_windows_dir="C:\\Lab Files\\lb")
    action = quoted.args("windows.yml", "The CT GC task runs", "community.windows.win_scheduled_task")["actions"][0]
    assert action["arguments"] == ('"C:\\Lab Files\\lb\\tool\\bin\\l4lbctl" --pin-dir /ebpf/global/l4lb/lb ct gc '
                                   '--every 2.5 --timeouts "{\\"syn\\": 5, \\"tcp\\": 600}" --log "C:\\Lab Files\\lb\\gc.log"')
    # what Python's sys.argv on the node gets back (the C runtime's rules, as subprocess documents them)
    assert _split_windows(action["arguments"])[-3] == '{"syn": 5, "tcp": 600}'
    stop = lb.args("windows.yml", "The CT GC loop is stopped", "ansible.windows.win_powershell")
    assert stop == {"path": "gc_task.ps1", "parameters": {"Action": "stop", "TaskPath": "\\l4lb", "TaskName": "l4lb-ct-gc"}}
    assert lb.args("windows.yml", "The CT GC task is absent", "community.windows.win_scheduled_task") == {
        "name": "l4lb-ct-gc", "path": "\\l4lb", "state": "absent"}
    handler = find_task(os.path.join(ROLES, "lb_node", "handlers", "main.yml"), "Restart the CT GC task")
    assert lb.value(handler["ansible.windows.win_powershell"]) == {
        "path": "gc_task.ps1", "parameters": {"Action": "restart", "TaskPath": "\\l4lb", "TaskName": "l4lb-ct-gc"}}
    assert ps1_params(os.path.join(ROLES, "lb_node", "files", "gc_task.ps1")) == ["Action", "TaskPath", "TaskName"]


def _split_windows(cmdline):
    """The Microsoft C runtime's argv splitting (the inverse of subprocess.list2cmdline)."""
    args, cur, i, quoted, has = [], [], 0, False, False
    while i < len(cmdline):
        c = cmdline[i]
        if c == "\\":
            j = i
            while j < len(cmdline) and cmdline[j] == "\\":
                j += 1
            n = j - i
            if j < len(cmdline) and cmdline[j] == '"':
                cur.append("\\" * (n // 2))
                if n % 2:
                    cur.append('"')
                    i = j + 1
                else:
                    i = j
                continue
            cur.append("\\" * n)
            i = j
            continue
        if c == '"':
            quoted, has = not quoted, True
        elif c in " \t" and not quoted:
            if cur or has:
                args.append("".join(cur))
            cur, has = [], False
        else:
            cur.append(c)
        i += 1
    if cur or has:
        args.append("".join(cur))
    return args


# --- lb_service on a Windows LB node -----------------------------------------------------------

LAB_HOSTVARS = {h: {"lab_ip": ip} for h, ip in (("lb", "20.1.1.1"), ("win1", "20.1.1.10"), ("win2", "20.1.1.20"),
                                                  ("linux1", "20.1.1.30"), ("linux2", "20.1.1.40"),
                                                  ("client", "20.1.1.100"))}


@pytest.fixture
def svc():
    return Renderer("lb_service", "lb", **INVENTORY, hostvars=LAB_HOSTVARS)


def test_lb_service_windows_command_lines(svc):
    assert svc.var("lb_service_windows_ctl") == BASE
    neighbor = svc.task("windows.yml", "Resolve the next hops")
    assert svc.value(neighbor["loop"]) == ["20.1.1.100"]
    assert svc.value(neighbor["ansible.windows.win_command"], item="20.1.1.100") == {
        "argv": BASE + ["neighbor", "update", "20.1.1.100"]}
    assert svc.value(neighbor["environment"]) == {"L4LB_EFW_DIR": "C:\\Program Files\\ebpf-for-windows"}
    services = svc.task("windows.yml", "Services are programmed")
    seed = [{"id": 1, "frontend": "40.1.1.1:80", "protocol": "tcp",
             "backends": ["20.1.1.10:80", "20.1.1.20:80", "20.1.1.30:80", "20.1.1.40:80"]}]
    assert svc.value(services["ansible.windows.win_command"]) == {
        "argv": BASE + ["service", "apply", "-f", "-"], "stdin": json.dumps(seed)}
    assert json.loads(svc.value(services["ansible.windows.win_command"]["stdin"])) == seed
    assert svc.value(services["environment"]) == {"L4LB_EFW_DIR": "C:\\Program Files\\ebpf-for-windows"}
    mine = [{"id": 2, "frontend": "40.1.1.1:53", "protocol": "udp",
             "backends": ["20.1.1.10:53@0", {"ip": "20.1.1.20", "port": 53, "weight": 2}]}, {"id": 3, "state": "absent"}]
    pruning = Renderer("lb_service", "lb", **INVENTORY, hostvars=LAB_HOSTVARS, lb_services=mine, lb_services_prune=True,
                       ansible_check_mode=True)
    assert pruning.value(services["ansible.windows.win_command"]) == {
        "argv": BASE + ["service", "apply", "-f", "-", "--prune", "--check"], "stdin": json.dumps(mine)}
    checking = Renderer("lb_service", "lb", **INVENTORY, hostvars=LAB_HOSTVARS, ansible_check_mode=True)
    assert checking.value(neighbor["ansible.windows.win_command"], item="20.1.1.100")["argv"][-1] == "--check"
    assert services["check_mode"] is False and neighbor["check_mode"] is False
    answer = {"rc": 0, "stdout": json.dumps({"changed": True, "diff": {"before": {}, "after": {"1": {}}},
                                             "services": {"create": [1], "update": [], "remove": []},
                                             "changes": {"1": ["w"]}, "counts": {"x": 1}})}
    assert svc.value("{{ %s }}" % services["changed_when"], lb_service_windows_services=answer) is True
    assert svc.value("{{ %s }}" % services["failed_when"], lb_service_windows_services=answer) is False
    refused = {"rc": 1, "stdout": '{"failed": true, "changed": false, "msg": "services[0].backends: ..."}'}
    assert svc.value("{{ %s }}" % services["failed_when"], lb_service_windows_services=refused) is True
    shown = svc.task("windows.yml", "Show the changes")
    assert svc.value(shown["ansible.builtin.debug"]["msg"], item=answer) == {
        "diff": {"before": {}, "after": {"1": {}}}, "services": {"create": [1], "update": [], "remove": []},
        "changes": {"1": ["w"]}}


# --- lab_verify, the summary and dumpstate.yml with a Windows LB node ------------------------------

def _verify(**extra):
    lb_vars = {"lab_os": "windows", "lb_node_device": "Ethernet", "lab_bpffs_dir": "/ebpf/global/l4lb", "lab_ip": "20.1.1.1"}
    hostvars = {h: {"lab_ip": ip} for h, ip in (("win1", "20.1.1.10"), ("win2", "20.1.1.20"),
                                                  ("linux1", "20.1.1.30"), ("linux2", "20.1.1.40"))}
    hostvars.update(lb=lb_vars, localhost={"lab_topology_result": {"placement": {"capture": None}}})
    return Renderer("lab_verify", "client", hostvars=hostvars, lab_bpffs_dir="/sys/fs/bpf/l4lb",
                    groups={"lb_nodes": ["lb"], "backends": ["win1", "win2", "linux1", "linux2"],
                            "clients": ["client"], "lab_hosts": ["localhost"]}, **extra)


def test_lab_verify_reads_a_windows_lb_with_l4lbctl():
    v = _verify()
    assert [v.var(x) for x in ("lab_verify_lb_os", "lab_verify_lb_device", "lab_verify_lb_pin_dir")] == [
        "windows", "Ethernet", PIN]
    assert v.var("lab_verify_lb_windows_ctl") == BASE
    for name, reg in (("Read the mode the Windows LB node runs", "lab_verify_lb_windows"),
                      ("Read the Windows LB's trouble counters", "lab_verify_lb_windows_after")):
        t = v.task("checks.yml", name)
        assert v.value(t["ansible.windows.win_command"]) == {"argv": BASE + ["mode", "show"]}
        assert (t["delegate_to"], t["changed_when"], t["check_mode"], t["register"]) == (
            "{{ lab_verify_lb_host }}", False, False, reg)
    shown = '{"changed": false, "device": "Ethernet", "mode": "snat", "name": "lb_xdp_snat", "prog_id": 4, "trouble": {}}'
    fact = v.task("checks.yml", "What the Windows LB node runs")["ansible.builtin.set_fact"]["lab_verify_lb_program"]
    assert v.value(fact, lab_verify_lb_windows={"stdout": shown, "rc": 0}) == {
        "changed": False, "trouble": {}, "status": {"device": "Ethernet", "mode": "snat", "name": "lb_xdp_snat", "prog_id": 4}}


def test_lab_verify_skips_the_capture_for_a_windows_lb_saying_so():
    v = _verify(lab_verify_capture=True)
    decide = v.task("checks.yml", "Decide whether the capture runs")["ansible.builtin.set_fact"]["lab_verify_capture_run"]
    assert v.value(decide) is False
    said = v.task("checks.yml", "Say that the capture is skipped")
    assert v.value("{{ %s }}" % " and ".join(f"({w})" for w in said["when"]), lab_verify_capture_run=False) is True
    assert v.value(said["ansible.builtin.debug"]["msg"], **said["vars"]) == (
        "lab_verify: no capture on the switch port of the LB node lb (Windows) - the topology provider places no "
        "capture point on localhost (placement capture: none); the replies check is SKIP. Capture on the switch or "
        "the LB's NIC by hand, or set lab_verify_capture_netns and lab_verify_capture_interface where a namespace "
        "holds its switch port.")
    off = _verify(lab_verify_capture=False)
    assert off.value(said["ansible.builtin.debug"]["msg"], **said["vars"]).startswith(
        "lab_verify: no capture on the switch port of the LB node lb (Windows) - lab_verify_capture is false; "
        "the replies check is SKIP.")
    # a capture point given by hand is used; a Linux LB without one still fails the assert
    assert v.value(decide, lab_verify_capture_netns="l4lb-host", lab_verify_capture_interface="l4lb-lb") is True
    linux = _verify()
    linux.vars["hostvars"]["lb"]["lab_os"] = "linux"
    assert linux.value(decide) is True


def test_the_demo_report_dumps_a_windows_lb_with_l4lbctl_and_goes_on_without_it():
    v = _verify()
    t = v.task("report.yml", "Dump the main service on a Windows LB node")
    assert v.value(t["ansible.windows.win_command"]) == {"argv": BASE + ["service", "dumpstate", "--id", "1"]}
    # an unreachable or failing LB node is said in the report, not a second failure
    assert (t["delegate_to"], t["changed_when"], t["failed_when"], t["ignore_unreachable"], t["check_mode"]) == (
        "{{ lab_verify_lb_host }}", False, False, True, False)
    linux = v.task("report.yml", "Dump the main service on each Linux LB node")
    assert v.value("{{ %s }}" % linux["when"], item="lb") is False


def test_the_summary_and_dumpstate_yml_read_a_windows_lb_with_l4lbctl():
    for book, play_name, var, task_name in (
            ("site.yml", "Summary", "site_summary_windows_ctl", "Dump the seed's service 1 on a Windows LB node"),
            ("dumpstate.yml", "Load balancer state", "dumpstate_windows_ctl", "Dump on a Windows LB node")):
        plays = yaml.safe_load(open(os.path.join(REPO, "playbooks", book), encoding="utf-8"))
        (play,) = [p for p in plays if p.get("name") == play_name]
        r = Renderer("lb_node", "lb", **INVENTORY, dumpstate_id=1, dumpstate_pin_dir=PIN)
        assert r.value(play["vars"][var]) == BASE, book
        (task,) = [t for t in play["tasks"] if t["name"].startswith(task_name)]
        assert r.value(task["ansible.windows.win_command"], **{var: BASE}) == {
            "argv": BASE + ["service", "dumpstate", "--id", "1"]}, book
        assert task["check_mode"] is False and task["changed_when"] is False


def test_inventory_windows_places_the_lbs_pins_in_the_efw_store():
    with open(os.path.join(REPO, "inventory", "windows", "group_vars", "windows_nodes", "ebpf.yml"), encoding="utf-8") as f:
        assert yaml.safe_load(f) == {"lab_bpffs_dir": "/ebpf/global/{{ lab_prefix }}"}
    with open(os.path.join(REPO, "inventory", "windows", "hosts.yml"), encoding="utf-8") as f:
        hosts = yaml.safe_load(f)
    assert hosts["all"]["children"]["lab_nodes"]["children"]["lb_nodes"]["hosts"]["lb"]["lb_node_device"] == "Ethernet"
    assert "lb" in hosts["all"]["children"]["windows_nodes"]["hosts"]
    assert json.dumps(hosts)  # plain data
