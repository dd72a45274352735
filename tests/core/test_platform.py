"""The platform seam (module_utils/l4lb/platform/): one interface, both adapters implement all of
it, the core reaches the OS only through it; the Windows adapter calls only what
eBPF-for-Windows 0.12.0's EbpfApi.dll exports - checked statically (what it declares and what
its code and the shared libbpf layer look up) and by running the core's verbs on it over a fake
EbpfApi (tests/core/fake_ebpfapi.py) that refuses any other name - and the command lines and
names it renders, exactly. No root, no Windows host: runs anywhere."""

from __future__ import annotations

import ast
import base64
import json
import os
import sys
import types

import pytest

from l4lb import agent, libbpf, platform, program, reconcile
from l4lb import structs as S
from l4lb.errors import InvalidConfig, L4LBError
from l4lb.platform import linux as L
from l4lb.platform import windows as W

from fake_ebpfapi import FakeEbpfApi, FakeSystem

HERE = os.path.dirname(os.path.abspath(__file__))
CORE = os.path.join(os.path.dirname(os.path.dirname(HERE)), "module_utils", "l4lb")
# Source: microsoft/ebpf-for-windows, tag v0.12.0, ebpfapi/Source.def (header of the file).
EXPORTS_FILE = os.path.join(HERE, "data", "ebpfapi-v0.12.0.exports")
EFW_DIR = "C:\\Program Files\\ebpf-for-windows"
LB_MAC = "02:4c:14:01:01:01"


def load_exports() -> frozenset:
    with open(EXPORTS_FILE) as f:
        return frozenset(ln.strip() for ln in f if ln.strip() and not ln.startswith("#"))


EXPORTS = load_exports()


def lib_attributes(path: str, receivers=("lib", "_lib")) -> set:
    """Names looked up on a library in ``path``: ``<receiver>.NAME`` and ``<x>.library().NAME``
    (names with a leading underscore are the wrapper's own, never a library's)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        v = node.value
        if (isinstance(v, ast.Name) and v.id in receivers) or (
                isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute) and v.func.attr == "library"):
            if not node.attr.startswith("_"):
                names.add(node.attr)
    return names


# --- the recorded facts ----------------------------------------------------------------------

def test_the_export_list_is_the_v0_12_0_one():
    """119 names; the ones the adapter is built around are there, the Linux-only ones are not."""
    assert len(EXPORTS) == 119
    assert {"bpf_xdp_attach", "bpf_xdp_detach", "bpf_xdp_query_id", "bpf_program__attach_xdp",
            "bpf_object__open_file", "bpf_map_create", "bpf_prog_test_run_opts", "ebpf_object_unpin",
            "ebpf_api_get_pinned_map_info", "ebpf_get_next_pinned_program_path"} <= EXPORTS
    assert not {"bpf_map_lookup_batch", "bpf_map_update_batch", "bpf_map_delete_batch", "bpf_xdp_query",
                "libbpf_set_print", "bpf_map__set_pin_path", "bpf_map__reuse_fd"} & EXPORTS


# --- static: what the Windows path can look up ------------------------------------------------

def test_every_function_the_windows_adapter_declares_is_exported():
    declared = set(libbpf.SIGNATURES) | set(W.EFW_FUNCTIONS)
    assert declared - EXPORTS == set()


def test_the_shared_layer_calls_only_declared_functions_and_batch_ones_only_by_name():
    """libbpf.py looks up only names of SIGNATURES (all exported by EbpfApi) and of
    BATCH_SIGNATURES (called only where the adapter sets batch_ops, not on Windows)."""
    used = lib_attributes(os.path.join(CORE, "libbpf.py"))
    assert used - set(libbpf.SIGNATURES) - set(libbpf.BATCH_SIGNATURES) == set()
    assert used - set(libbpf.BATCH_SIGNATURES) - EXPORTS == set()
    assert not W.WindowsPlatform.batch_ops


def test_the_windows_adapter_code_looks_up_only_exported_functions():
    used = lib_attributes(os.path.join(CORE, "platform", "windows.py"))
    assert used, "the AST walk found nothing: the check would prove nothing"
    assert used - EXPORTS == set()


# --- dynamic: the core's verbs on the Windows adapter over a fake EbpfApi ---------------------

def _object_file(tmp_path, prog_name: str) -> str:
    """A fake object (JSON, see fake_ebpfapi): the LB's maps in eBPF-for-Windows' numbering."""
    maps = {}
    for name, (mtype, ks, vs, maxe) in S.map_specs().items():
        inner = None
        if mtype == libbpf.BPF_MAP_TYPE_HASH_OF_MAPS:
            inner = [W.CORE_TO_EFW_MAP_TYPES[libbpf.BPF_MAP_TYPE_ARRAY], 4, S.maglev_value_size(S.LB_MAGLEV_LUT_SIZE), 1]
        maps[name] = [W.CORE_TO_EFW_MAP_TYPES[mtype], ks, vs, maxe, inner]
    path = tmp_path / f"{prog_name}.o"
    path.write_text(json.dumps({"maps": maps, "programs": [prog_name]}))
    return str(path)


@pytest.fixture
def win(tmp_path, monkeypatch):
    api = FakeEbpfApi(EXPORTS, str(tmp_path))
    system = FakeSystem({"Ethernet": 7}, {"20.1.1.10": bytes.fromhex("024c1401010a"),
                                           "20.1.1.20": bytes.fromhex("024c14010114")})
    runs = []

    def run(argv):
        runs.append(argv)
        return 0, json.dumps({"ifindex": 7, "mac": "02-4C-14-01-01-01", "mtu": 1500, "ipv4": "20.1.1.1"}), ""

    adapter = W.WindowsPlatform(efw_dir=EFW_DIR, loader=lambda path: api, system_loader=system.load, run=run)
    objects = {mode: _object_file(tmp_path, f"lb_xdp_{mode}") for mode in ("snat", "dsr")}
    monkeypatch.setattr(program, "_build", lambda desired, dev, out_dir: types.SimpleNamespace(
        path=objects[desired.mode], defines={}, clang_version="fake", cached=False))
    with platform.use(adapter):
        yield types.SimpleNamespace(api=api, system=system, runs=runs, adapter=adapter, tmp=tmp_path)


def _desired(win, mode):
    src = win.tmp / "bpf"
    src.mkdir(exist_ok=True)
    return program.Desired(device="Ethernet", src_dir=str(src), build_dir=str(win.tmp / "build"),
                           pin_dir="/ebpf/global/l4lbt/lb", mode=mode)


def test_the_core_on_windows_calls_only_exported_functions(win):
    api, pin_dir = win.api, "/ebpf/global/l4lbt/lb"
    # compile (faked), load, pin, attach: check mode first, then for real
    checked = program.ensure_present(_desired(win, "snat"), check_mode=True)
    assert checked["changed"] and not api.links
    assert not [p for p in api.pins if "l4lb_check_" in p], "check mode left its temporary pins"
    done = agent.mode_update(_desired(win, "snat"))
    assert done["changed"] and done["attach_mode"] == "generic"
    assert done["warnings"] == ["Ethernet: windows has no native XDP; attached in generic mode"]
    assert api.links[7].name == "lb_xdp_snat" and api.pins[pin_dir + "/prog"] is api.links[7]
    # services: a port-translating one (asks the running mode), next hops from SendARP
    svc = {"id": 1, "frontend": "40.1.1.1:80", "backends": "20.1.1.10:8080,20.1.1.20:8080"}
    assert agent.service_update(pin_dir, svc, device="Ethernet")["changed"]
    assert not agent.service_update(pin_dir, svc, device="Ethernet")["changed"]
    listed = agent.service_list(pin_dir)
    assert [b["port"] for b in listed["services"][0]["backends"]] == [8080, 8080]
    assert listed["neighbors"] == {"20.1.1.10": "02:4c:14:01:01:0a", "20.1.1.20": "02:4c:14:01:01:14"}
    assert agent.dumpstate(pin_dir, 1)["service"]["id"] == 1
    info = agent.program_info("Ethernet", pin_dir)
    assert info["status"]["mode"] == "snat" and "lb4_maglev" in info["status"]["maps_pinned"]
    # DSR refused while the service translates ports; then snat -> dsr with services kept
    with pytest.raises(InvalidConfig, match="mode dsr refused"):
        agent.mode_update(_desired(win, "dsr"))
    svc["backends"] = "20.1.1.10:80,20.1.1.20:80"
    assert agent.service_update(pin_dir, svc, device="Ethernet")["changed"]
    assert agent.mode_update(_desired(win, "dsr"))["changed"]
    assert agent.running_mode("Ethernet", pin_dir) == "dsr" and len(api.links) == 1
    assert agent.service_list(pin_dir)["services"][0]["id"] == 1
    # GC, delete, remove
    assert agent.ct_gc(pin_dir, {}, settle_s=0)["ct_entries"] == 0
    assert agent.service_update(pin_dir, {"id": 1}, state="absent")["changed"]
    assert agent.service_list(pin_dir)["services"] == []
    assert program.ensure_absent("Ethernet", pin_dir)["changed"]
    assert not api.links and not [p for p in api.pins if p.startswith(pin_dir + "/")]

    assert api.missing == set(), f"looked up functions EbpfApi.dll 0.12.0 does not export: {api.missing}"
    assert api.looked_up <= EXPORTS
    assert {"bpf_xdp_attach", "bpf_xdp_detach", "bpf_xdp_query_id", "ebpf_object_unpin", "bpf_obj_pin",
            "ebpf_api_get_pinned_map_info", "ebpf_get_next_pinned_program_path", "bpf_map_create",
            "bpf_map_update_elem", "bpf_map_delete_elem", "bpf_map_get_next_key"} <= api.called
    assert win.system.looked_up == {
        "iphlpapi": {"ConvertInterfaceAliasToLuid", "ConvertInterfaceLuidToIndex", "SendARP"},
        "kernel32": {"CreateMutexW", "WaitForSingleObject", "ReleaseMutex", "CloseHandle"}}
    assert win.runs and all(argv == W.powershell_argv(W.device_script("Ethernet")) for argv in win.runs)


def test_mode_update_on_windows_is_idempotent_by_its_attach_record(win):
    """No tag on eBPF-for-Windows: a second mode update with the same object keeps the running
    program (the record names the kernel's id, attached and pinned, and the object's SHA-256);
    another object, --force, another mode, or a program that is not the recorded one replace it."""
    api, pin_dir = win.api, "/ebpf/global/l4lbt/lb"
    first = agent.mode_update(_desired(win, "snat"))
    running = api.links[7]
    record = json.loads((win.tmp / "build" / ".lb_attached.json").read_text())
    assert record["key"] == {"device": "Ethernet", "ifindex": 7, "pin_dir": pin_dir,
                             "prog_id": first["prog_id"], "name": "lb_xdp_snat"}
    again = agent.mode_update(_desired(win, "snat"))
    assert not again["changed"] and api.links[7] is running
    assert not program.ensure_present(_desired(win, "snat"), check_mode=True)["changed"]
    forced = _desired(win, "snat")
    forced.force = True
    assert agent.mode_update(forced)["changed"] and api.links[7] is not running
    running = api.links[7]
    # the object changed (a source, a macro, the compiler): replaced
    obj = win.tmp / "lb_xdp_snat.o"
    obj.write_text(obj.read_text() + " ")
    assert program.ensure_present(_desired(win, "snat"), check_mode=True)["changed"]
    assert agent.mode_update(_desired(win, "snat"))["changed"] and api.links[7] is not running
    assert not agent.mode_update(_desired(win, "snat"))["changed"]
    # the record names a program the kernel no longer runs (removed and attached again by hand)
    assert program.ensure_absent("Ethernet", pin_dir)["changed"]
    assert agent.mode_update(_desired(win, "snat"))["changed"]
    (win.tmp / "build" / ".lb_attached.json").write_text("{not json")
    assert agent.mode_update(_desired(win, "snat"))["changed"]
    assert agent.mode_update(_desired(win, "dsr"))["changed"]
    assert not agent.mode_update(_desired(win, "dsr"))["changed"]
    assert api.missing == set()


def test_the_compile_cache_reads_a_windows_dependency_list():
    """clang -MD on a Windows node: drive colons in the target and the inputs, a space escaped in
    eBPF-for-Windows' directory, CRLF line continuations; Linux's form reads as before."""
    from l4lb import build
    win_deps = ("C:\\l4lb\\lb\\build\\.lb_xdp_snat.o.9.tmp: C:\\l4lb\\lb\\tool\\bpf\\lb_xdp.c \\\r\n"
                "  C:\\Program\\ Files\\ebpf-for-windows\\include\\bpf_helpers.h \\\r\n"
                "  C:\\l4lb\\lb\\tool\\bpf\\include\\compat.h\r\n")
    assert build.make_deps(win_deps) == [
        "C:\\l4lb\\lb\\tool\\bpf\\lb_xdp.c", "C:\\Program Files\\ebpf-for-windows\\include\\bpf_helpers.h",
        "C:\\l4lb\\lb\\tool\\bpf\\include\\compat.h"]
    assert build.make_deps("/run/l4lb/lb/build/.x.o.1.tmp: /r/bpf/lb_xdp.c /r/bpf/include/maps.h \\\n"
                           " /usr/include/linux/bpf.h\n") == [
        "/r/bpf/lb_xdp.c", "/r/bpf/include/maps.h", "/usr/include/linux/bpf.h"]
    assert build.make_deps("") == []


def _l4lbctl(monkeypatch):
    import importlib.machinery
    import importlib.util
    monkeypatch.delenv("L4LB_PIN_DIR", raising=False)
    path = os.path.join(os.path.dirname(CORE), "..", "bin", "l4lbctl")
    loader = importlib.machinery.SourceFileLoader("l4lbctl_win", path)
    spec = importlib.util.spec_from_loader("l4lbctl_win", loader)
    cli = importlib.util.module_from_spec(spec)
    loader.exec_module(cli)
    return cli


def test_l4lbctl_verbs_the_windows_lb_role_drives(win, monkeypatch, capsys):
    """What roles/lb_node/tasks/windows.yml and lb_service run through win_command: --json answers
    with changed (and failed with msg and exit 1), mode update takes the Maglev size, mode show
    carries the trouble counters, mode delete removes the load balancer, ct gc --log writes there."""
    cli = _l4lbctl(monkeypatch)
    pin = ["--pin-dir", "/ebpf/global/l4lbt/lb", "--device", "Ethernet"]
    src, build_dir = str(win.tmp / "bpf"), str(win.tmp / "build")
    os.makedirs(src, exist_ok=True)
    seen = {}
    real_update = agent.mode_update
    monkeypatch.setattr(cli.agent, "mode_update", lambda d, check_mode=False: seen.update(d=d) or real_update(d, check_mode))

    def run(*argv):
        rc = cli.main(["--json", *pin, *argv])
        return rc, json.loads(capsys.readouterr().out)

    rc, out = run("mode", "update", "snat", "--src", src, "--build-dir", build_dir, "--attach-mode", "generic",
                  "--maglev-size", "251", "--snat-ports", "61000-65535", "--ct-timeouts", '{"syn": 5}')
    assert rc == 0 and out["changed"] and out["status"]["mode"] == "snat"
    assert (seen["d"].maglev_size, seen["d"].ct_timeouts, seen["d"].attach_mode) == (251, {"syn": 5}, "generic")
    rc, out = run("mode", "update", "snat", "--src", src, "--build-dir", build_dir, "--attach-mode", "generic",
                  "--maglev-size", "251", "--snat-ports", "61000-65535", "--ct-timeouts", '{"syn": 5}')
    assert rc == 0 and not out["changed"]
    rc, out = run("mode", "show")
    assert rc == 0 and (out["mode"], out["changed"], out["trouble"]) == ("snat", False, {})
    rc, out = run("neighbor", "update", "20.1.1.10", "--check")
    assert rc == 0 and out["changed"] and out["mac"] == "02:4c:14:01:01:0a"
    rc, out = run("service", "update", "--id", "1", "--frontend", "40.1.1.1:80", "--backends", "20.1.1.10:80@2")
    assert rc == 0 and out["changed"] and "1" in out["diff"]["after"] and out["writes"]
    rc, out = run("service", "dumpstate", "--id", "1")
    assert rc == 0 and out["service"]["id"] == 1 and out["changed"] is False
    rc, out = run("service", "dumpstate", "--id", "9")
    assert rc == 1 and out == {"failed": True, "changed": False, "msg": "service 9 is not programmed"}
    log = win.tmp / "gc.log"
    saved = sys.stdout, sys.stderr
    try:
        assert cli.main([*pin, "ct", "gc", "--log", str(log)]) == 0
        assert cli.main([*pin, "--pin-dir", "/ebpf/global/none", "ct", "gc", "--log", str(log)]) == 1
    finally:
        sys.stdout.close()
        sys.stdout, sys.stderr = saved
    assert log.read_text() == (
        "deleted 0 CT and 0 SNAT entries; 0 CT and 0 SNAT entries left\n"
        "l4lbctl: no load balancer is loaded: /ebpf/global/none/maps does not exist (attach it first: "
        "xdp_program / l4lbctl mode update)\n")
    rc, out = run("mode", "delete", "--check")
    assert rc == 0 and out["changed"] and win.api.links
    rc, out = run("mode", "delete")
    assert rc == 0 and out["changed"] and not win.api.links
    rc, out = run("mode", "delete")
    assert rc == 0 and not out["changed"]
    assert win.api.missing == set()


def test_l4lbctl_on_windows(win, monkeypatch, capsys):
    """The CLI a Windows role drives: its default pin directory is the adapter's, and
    ``--json mode show`` answers from the adapter."""
    cli = _l4lbctl(monkeypatch)
    assert cli.DEFAULTS["pin_dir"] == "/ebpf/global/l4lb/lb"
    assert cli.main(["--json", "--device", "Ethernet", "mode", "show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["device"], shown["prog_id"], shown["changed"]) == ("Ethernet", 0, False)
    assert win.api.missing == set()


def test_a_windows_node_compiles_for_ebpf_for_windows(tmp_path):
    """Without efw_include, build.compile_object builds the node's own target: on the Windows
    adapter eBPF-for-Windows' include/ (refused here, naming it: it has no bpf_helpers.h)."""
    from l4lb import build
    src = tmp_path / "x.c"
    src.write_text("int x;\n")
    with platform.use(W.WindowsPlatform(efw_dir=str(tmp_path))):
        with pytest.raises(InvalidConfig, match=r"efw_include '.*\\\\include' has no bpf_helpers.h"):
            build.compile_object(src, tmp_path / "x.o")
    assert L.LinuxPlatform().efw_include() is None


def test_windows_lock_is_one_writer_at_a_time(win):
    with win.adapter.lock("/ebpf/global/l4lbt/lb/maps"):
        with pytest.raises(L4LBError, match="another writer holds the lock on /ebpf/global/l4lbt/lb/maps"):
            with win.adapter.lock("/ebpf/global/l4lbt/lb/maps", blocking=False):
                pass
    with win.adapter.lock("/ebpf/global/l4lbt/lb/maps", blocking=False):
        pass


def test_windows_devices(win):
    assert win.adapter.ifindex("Ethernet") == 7
    with pytest.raises(InvalidConfig, match="'Ethernet 9' does not exist on this node"):
        win.adapter.ifindex("Ethernet 9")
    assert win.adapter.device("Ethernet") == platform.Device("Ethernet", 7, LB_MAC, "20.1.1.1", 1500)
    with pytest.raises(L4LBError, match="20.1.1.99 did not answer ARP on Ethernet"):
        win.adapter.resolve_mac("20.1.1.99", "Ethernet")
    win.adapter._run = lambda argv: (1, "", "No MSFT_NetAdapter objects found with property 'Name' equal to 'eth7'")
    with pytest.raises(InvalidConfig, match="device 'eth7' does not exist on this node .Get-NetAdapter: No MSFT"):
        win.adapter.device("eth7")
    win.adapter._run = lambda argv: (0, '{"ifindex":7,"mac":"02-4C-14-01-01-01","mtu":1500,"ipv4":null}', "")
    with pytest.raises(InvalidConfig, match="has no IPv4 address"):
        win.adapter.device("Ethernet")


def test_windows_map_types_are_translated(win):
    fd = libbpf.map_create(libbpf.BPF_MAP_TYPE_PERCPU_ARRAY, "t", 4, 16, 4)
    with libbpf.Map(fd) as m:
        assert m.type == libbpf.BPF_MAP_TYPE_PERCPU_ARRAY and m.ncpus == 2 and m.full_value_size == 32
    assert [W.CORE_TO_EFW_MAP_TYPES[t] for t in (libbpf.BPF_MAP_TYPE_HASH_OF_MAPS, libbpf.BPF_MAP_TYPE_LRU_HASH)] == [6, 8]


def test_missing_ebpfapi_names_the_library_and_the_role():
    def fail(path):
        raise OSError("[WinError 126] The specified module could not be found")

    adapter = W.WindowsPlatform(efw_dir=EFW_DIR, loader=fail)
    with pytest.raises(L4LBError, match=r"cannot load C:\\Program Files\\ebpf-for-windows\\EbpfApi.dll .*"
                                        r"eBPF-for-Windows 0.12.0 is needed on this node \(the windows_ebpf role"):
        adapter.check_pins()


# --- exact strings the Windows adapter renders ------------------------------------------------

def test_device_script_exactly():
    assert W.device_script("Ethernet 2") == (
        "$a = Get-NetAdapter -Name 'Ethernet 2' -ErrorAction Stop; "
        "$i = Get-NetIPInterface -InterfaceIndex $a.ifIndex -AddressFamily IPv4 -ErrorAction Stop; "
        "$ip = Get-NetIPAddress -InterfaceIndex $a.ifIndex -AddressFamily IPv4 -ErrorAction SilentlyContinue "
        "| Where-Object { -not $_.SkipAsSource } | Select-Object -First 1 -ExpandProperty IPAddress; "
        "ConvertTo-Json -Compress -InputObject ([ordered]@{ifindex = $a.ifIndex; mac = $a.MacAddress; "
        "mtu = $i.NlMtu; ipv4 = $ip})")


def test_powershell_command_line_exactly():
    assert W.powershell_argv("Get-NetAdapter") == [
        "powershell.exe", "-NoProfile", "-NonInteractive", "-EncodedCommand", "RwBlAHQALQBOAGUAdABBAGQAYQBwAHQAZQByAA=="]
    name = "it's \u2019quoted\u2019; $(Remove-Item x)"
    argv = W.powershell_argv(W.device_script(name))
    assert base64.b64decode(argv[-1]).decode("utf-16-le") == W.device_script(name)
    assert "-Name 'it''s \u2019\u2019quoted\u2019\u2019; $(Remove-Item x)' -ErrorAction" in W.device_script(name)


def test_ps_quote_exactly():
    assert W.ps_quote("Ethernet") == "'Ethernet'"
    assert W.ps_quote("a'b\u2018c\u201bd") == "'a''b\u2018\u2018c\u201b\u201bd'"


def test_windows_build_target_mutex_and_pins_exactly():
    adapter = W.WindowsPlatform(efw_dir=EFW_DIR)
    assert (adapter.efw_include(), adapter.system_includes()) == ("C:\\Program Files\\ebpf-for-windows\\include", [])
    assert adapter.mutex_name("/ebpf/global/l4lb/lb/maps") == "Global\\l4lb-c88117dfb8c854d1"
    assert (adapter.pin_root, adapter.xdp_modes, adapter.batch_ops) == ("/ebpf/global", ("generic",), False)


# --- the interface and its choice ---------------------------------------------------------------

@pytest.mark.parametrize("cls", [L.LinuxPlatform, W.WindowsPlatform])
def test_every_adapter_implements_the_whole_interface(cls):
    adapter = cls()            # an abstract member left would make this raise TypeError
    assert adapter.name in platform.NAMES and adapter.pin_root.startswith("/")
    assert adapter.xdp_modes and set(adapter.xdp_modes) <= {"native", "generic"}


def test_the_adapter_is_chosen_by_os_and_overridable(monkeypatch):
    monkeypatch.delenv("L4LB_PLATFORM", raising=False)
    assert platform.detect() == "linux"
    assert isinstance(platform.current(), L.LinuxPlatform)
    monkeypatch.setenv("L4LB_PLATFORM", "windows")
    assert platform.detect() == "windows"
    before = platform.current()
    with platform.use("windows") as adapter:
        assert platform.current() is adapter and isinstance(adapter, W.WindowsPlatform)
    assert platform.current() is before
    with pytest.raises(InvalidConfig, match="platform 'bsd' .L4LB_PLATFORM. is not one of linux, windows"):
        platform._make("bsd")


def test_the_linux_adapter_keeps_todays_values():
    adapter = L.LinuxPlatform()
    assert (adapter.pin_root, adapter.xdp_modes, adapter.batch_ops) == ("/sys/fs/bpf", ("native", "generic"), True)
    assert adapter.native_map_type(libbpf.BPF_MAP_TYPE_LRU_HASH) == libbpf.BPF_MAP_TYPE_LRU_HASH


# --- the seam holds: what differs lives in platform/ only ------------------------------------------

FORBIDDEN = {
    "/sys/fs/bpf": "the bpffs path (Linux adapter: pin_root, check_pins, temp_pin_root)",
    "fcntl": "flock (the adapter's lock)",
    "if_nametoindex": "device index (the adapter's ifindex)",
    "SO_BINDTODEVICE": "next-hop resolution (the adapter's resolve_mac)",
    "bpf_xdp_query": "XDP query (the adapter's xdp_query)",
    "XDP_FLAGS_": "XDP attach flags (the adapter's xdp_attach)",
}


def _code_strings_and_names(path):
    """Non-docstring string constants, names, attributes and imported modules of a file."""
    with open(path) as f:
        tree = ast.parse(f.read())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.value
        elif isinstance(node, ast.Name):
            yield node.id
        elif isinstance(node, ast.Attribute):
            yield node.attr
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module or ""


def test_nothing_os_specific_outside_the_adapters():
    found = []
    for name in sorted(os.listdir(CORE)):
        if not name.endswith(".py"):
            continue
        for text in _code_strings_and_names(os.path.join(CORE, name)):
            for needle, what in FORBIDDEN.items():
                if needle in text:
                    found.append(f"{name}: {text!r} - {what}")
    assert found == []
    assert not os.path.exists(os.path.join(CORE, "netdev.py"))
    assert reconcile.LBMaps.locked.__doc__ and "platform" in reconcile.LBMaps.locked.__doc__
