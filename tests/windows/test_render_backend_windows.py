"""Every template, command line and parameter set the backend_windows role renders, exactly,
from its defaults and the seed's inventory (no Windows host needed). The page, the headers and
the bulk file are what lab_verify reads from the Linux backends."""

from __future__ import annotations

import importlib.util
import os

import pytest
import yaml

from labtest import REPO
from winrender import ROLES, Renderer, find_task, ps1_params


@pytest.fixture
def win1():
    return Renderer("backend_windows", "win1")


def _probe():
    spec = importlib.util.spec_from_file_location("lab_http_probe", os.path.join(REPO, "library", "lab_http_probe.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


WEB_CONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Ansible managed -->
<!-- Lab backend win1 (20.1.1.10): the seed's page (index.asp),
     the X-Backend header on every answer, classic ASP for the echo (/echo)
     and the upload sink (/sink), and /bulk.bin as a
     static file. Written by the backend_windows role. -->
<configuration>
  <system.webServer>
    <defaultDocument enabled="true">
      <files>
        <clear />
        <add value="index.asp" />
      </files>
    </defaultDocument>
    <httpProtocol>
      <customHeaders>
        <add name="X-Backend" value="win1" />
        <add name="X-Backend-IP" value="20.1.1.10" />
      </customHeaders>
    </httpProtocol>
    <handlers>
      <add name="l4lb-echo" path="echo" verb="POST" modules="IsapiModule" scriptProcessor="%windir%\\system32\\inetsrv\\asp.dll" resourceType="File" />
      <add name="l4lb-sink" path="sink" verb="POST" modules="IsapiModule" scriptProcessor="%windir%\\system32\\inetsrv\\asp.dll" resourceType="File" />
    </handlers>
    <staticContent>
      <remove fileExtension=".bin" />
      <mimeMap fileExtension=".bin" mimeType="application/octet-stream" />
    </staticContent>
    <security>
      <requestFiltering>
        <requestLimits maxAllowedContentLength="8388608" />
      </requestFiltering>
    </security>
  </system.webServer>
</configuration>
"""

INDEX_ASP = """<%@ Language="VBScript" %>
<%
' Ansible managed
' The seed's sample page of lab backend win1: the backend's name and address,
' and the client's address and port as this server saw them (server-side, hence classic ASP).
' X-Backend comes from web.config; X-Client and X-Server-Addr are what lab_verify reads.
Dim client, server
client = Request.ServerVariables("REMOTE_ADDR") & ":" & Request.ServerVariables("REMOTE_PORT")
server = Request.ServerVariables("LOCAL_ADDR") & ":" & Request.ServerVariables("SERVER_PORT")
Response.ContentType = "text/html"
Response.AddHeader "X-Client", client
Response.AddHeader "X-Server-Addr", Request.ServerVariables("LOCAL_ADDR")
%><!DOCTYPE html>
<html>
<head><title>L4LB demo: win1</title></head>
<body>
<h1>Cilium L4 load balancer demo</h1>
<table>
<tr><td>Backend name</td><td id="backend-name">win1</td></tr>
<tr><td>Backend IP</td><td id="backend-ip">20.1.1.10</td></tr>
<tr><td>Backend kind</td><td id="backend-kind">Windows backend (XDP decap)</td></tr>
<tr><td>Client</td><td id="client"><%= client %></td></tr>
<tr><td>Connected to</td><td id="server"><%= server %></td></tr>
</table>
</body>
</html>
"""

ECHO_ASP = """<%@ Language="VBScript" %>
<%
' Ansible managed
' /echo of lab backend win1: answers a POST with its body,
' the upload half of lab_verify's bulk check (up to 8388608 bytes).
Dim size
Response.Buffer = True
' Nothing but the body: drop what the lines around the script blocks put in the buffer.
Response.Clear
Response.ContentType = "application/octet-stream"
Response.AddHeader "X-Client", Request.ServerVariables("REMOTE_ADDR") & ":" & Request.ServerVariables("REMOTE_PORT")
Response.AddHeader "X-Server-Addr", Request.ServerVariables("LOCAL_ADDR")
size = Request.TotalBytes
If size > 0 Then Response.BinaryWrite Request.BinaryRead(size)
Response.End
%>
"""

SINK_ASP = """<%@ Language="VBScript" %>
<%
' Ansible managed
' /sink of lab backend win1: reads a POST's body whole and
' answers with its length (the upload bench).
Dim size, body
Response.Buffer = True
Response.Clear
Response.ContentType = "text/plain"
size = Request.TotalBytes
If size > 0 Then body = Request.BinaryRead(size)
Response.Write "received " & size
Response.End
%>
"""


def test_web_config(win1):
    assert win1.template("web.config.j2") == WEB_CONFIG


def test_the_page_names_backend_address_and_client(win1):
    assert win1.template("index.asp.j2") == INDEX_ASP
    nodecap = Renderer("backend_windows", "win2", backend_decap="none")
    page = nodecap.template("index.asp.j2")
    assert '<td id="backend-name">win2</td>' in page and '<td id="backend-ip">20.1.1.20</td>' in page
    assert '<td id="backend-kind">Windows backend (no decap)</td>' in page


def test_echo_and_sink(win1):
    assert win1.template("echo.asp.j2") == ECHO_ASP
    assert win1.template("sink.asp.j2") == SINK_ASP


def test_bulk_file_is_what_lab_verify_expects(win1):
    body = win1.template("bulk.bin.j2")
    assert body.encode() == _probe().known_content(1024 * 1024)
    task = win1.task("present.yml", "The bulk download file")
    assert task["ansible.windows.win_template"]["newline_sequence"] == "\\n"  # LF, not win_template's CRLF
    assert win1.value(task["ansible.windows.win_template"]["dest"]) == "C:\\l4lb\\www\\bulk.bin"


def test_content_files_land_at_the_paths_lab_verify_uses(win1):
    task = win1.task("present.yml", "The seed's page, the echo and the upload sink")
    items = win1.value(task["loop"])
    assert items == [{"src": "index.asp.j2", "dest": "index.asp"}, {"src": "echo.asp.j2", "dest": "echo"},
                     {"src": "sink.asp.j2", "dest": "sink"}]
    assert win1.value(task["ansible.windows.win_template"]["dest"], item=items[1]) == "C:\\l4lb\\www\\echo"
    lab_verify = os.path.join(REPO, "roles", "lab_verify", "defaults", "main.yml")
    with open(lab_verify, encoding="utf-8") as f:
        text = f.read()
    assert "lab_verify_bulk_upload_path: /echo" in text and "lab_verify_bulk_download_path: /bulk.bin" in text


def test_iis_features_and_site(win1):
    assert win1.args("present.yml", "IIS with classic ASP is installed", "ansible.windows.win_feature") == {
        "name": ["Web-Server", "Web-ASP"], "state": "present", "include_management_tools": False}
    params = win1.args("present.yml", "The site serves the backend's directory", "ansible.windows.win_powershell")
    assert params == {"path": "iis_site.ps1", "parameters": {
        "State": "present", "Site": "Default Web Site", "PhysicalPath": "C:\\l4lb\\www",
        "AspMaxRequestBytes": 8388608}}
    absent = win1.args("absent.yml", "The site serves IIS's default directory again", "ansible.windows.win_powershell")
    assert absent["parameters"] == {"State": "absent", "Site": "Default Web Site", "PhysicalPath": "C:\\l4lb\\www"}
    script = os.path.join(ROLES, "backend_windows", "files", "iis_site.ps1")
    assert set(params["parameters"]) <= set(ps1_params(script))
    assert ps1_params(script) == ["State", "Site", "PhysicalPath", "DefaultPhysicalPath", "AspMaxRequestBytes"]


def test_iis_acl(win1):
    task = win1.task("present.yml", "IIS's anonymous user and worker processes may read the site")
    assert win1.value(task["loop"]) == ["IUSR", "IIS_IUSRS"]
    assert win1.value(task["ansible.windows.win_acl"], item="IUSR") == {
        "path": "C:\\l4lb\\www", "user": "IUSR", "rights": "ReadAndExecute", "type": "allow", "state": "present",
        "inherit": "ContainerInherit, ObjectInherit", "propagation": "None"}


def test_vip_loopback_and_weak_host(win1):
    params = win1.args("present.yml", "The VIPs are on the loopback adapter", "ansible.windows.win_powershell")
    assert params == {"path": "vip_loopback.ps1", "parameters": {
        "State": "present", "LoopbackName": "l4lb-loopback", "Vips": ["40.1.1.1"], "VipRange": "",
        "ExternalIp": "20.1.1.10", "ExternalAlias": "", "DevconPath": "C:\\l4lb\\bin\\devcon.exe"}}
    script = os.path.join(ROLES, "backend_windows", "files", "vip_loopback.ps1")
    assert ps1_params(script) == ["State", "LoopbackName", "Vips", "VipRange", "ExternalIp", "ExternalAlias",
                                  "DevconPath"]
    absent = win1.args("absent.yml", "The loopback adapter (and the VIPs on it) is removed",
                       "ansible.windows.win_powershell")
    assert absent["parameters"] == {"State": "absent", "LoopbackName": "l4lb-loopback",
                                    "ExternalIp": "20.1.1.10", "ExternalAlias": ""}
    with open(script, encoding="utf-8") as f:
        text = f.read()
    # the commands the issue names, as the script runs them
    assert "& $DevconPath install $inf '*MSLOOP'" in text and "'inf\\netloop.inf'" in text
    assert ("Set-NetIPInterface -InterfaceIndex $iface.InterfaceIndex -AddressFamily IPv4 -WeakHostSend Enabled "
            "-WeakHostReceive Enabled") in text
    assert "New-NetIPAddress -InterfaceIndex $loopback.ifIndex -IPAddress $Vip -PrefixLength 32 -SkipAsSource $true" in text
    assert "& pnputil.exe /remove-device $loopback.PnPDeviceID" in text
    assert "[CmdletBinding(SupportsShouldProcess)]" in text  # runs in check mode, changing nothing
    # the VIPs of services that are gone, inside the range, are removed
    assert "$Vips -notcontains $_.IPAddress -and (Test-InRange $_.IPAddress $VipRange)" in text


def test_the_vips_come_from_the_service_list():
    """Every VIP of a service that lists the backend, in the lab's range; none when no service
    uses it (the VIP of a gone service is then removed from the adapter)."""
    services = [{"id": 1, "frontend": "40.1.1.1:80", "backends": ["20.1.1.10:80", "20.1.1.30:80"]},
                {"id": 2, "frontend": "40.1.1.2:80", "backends": ["20.1.1.20:80", "20.1.1.10:80"]},
                {"id": 3, "frontend": "40.1.1.3:80", "backends": ["20.1.1.10:80"], "state": "absent"}]
    for host, vips in (("win1", ["40.1.1.1", "40.1.1.2"]), ("win2", ["40.1.1.2"])):
        r = Renderer("backend_windows", host, lb_services=services, lab_vip_range="40.1.1.0/24")
        params = r.args("present.yml", "The VIPs are on the loopback adapter", "ansible.windows.win_powershell")
        assert (params["parameters"]["Vips"], params["parameters"]["VipRange"]) == (vips, "40.1.1.0/24")
    r = Renderer("backend_windows", "win2", lb_services=services[:1], lab_vip_range="40.1.1.0/24")
    assert r.args("present.yml", "The VIPs are on the loopback adapter",
                  "ansible.windows.win_powershell")["parameters"]["Vips"] == []


def test_devcon_copy(win1):
    assert win1.args("present.yml", "Copy devcon.exe", "ansible.windows.win_copy",
                     backend_windows_devcon_src="/srv/wdk/devcon.exe") == {
        "src": "/srv/wdk/devcon.exe", "dest": "C:\\l4lb\\bin\\devcon.exe"}


def test_decap_compiled_on_the_controller(win1):
    task = win1.task("decap.yml", "Compile bpf/decap_xdp.c for eBPF-for-Windows on the controller")
    argv = win1.value(task["vars"]["backend_windows_compile_argv"],
                      backend_windows_efw_include_dir="/srv/ebpf-for-windows-0.12.0/include")
    bpf = os.path.join(REPO, "bpf")
    assert argv == ["clang", "-O2", "-g", "-target", "bpf", "-DLB_TARGET_WINDOWS",
                    "-I/srv/ebpf-for-windows-0.12.0/include", f"-I{bpf}/include", f"-I{bpf}", "-c",
                    f"{bpf}/decap_xdp.c", "-o", os.path.join(REPO, "build", "windows") + "/decap_xdp.o"]
    assert task["delegate_to"] == "localhost" and task["run_once"] is True
    assert win1.value("{{ %s }}" % task["when"], backend_windows_compile_anywhere=True) is True
    assert win1.var("backend_windows_compile_anywhere") is True
    none = Renderer("backend_windows", "win1", backend_windows_decap_compile=False)
    assert none.var("backend_windows_compile_anywhere") is False


def test_decap_object_copy(win1):
    args = win1.args("decap.yml", "The decap object is on the node", "ansible.windows.win_copy")
    assert args == {"src": os.path.join(REPO, "build", "windows") + "/decap_xdp.o",
                    "dest": "C:\\l4lb\\decap\\decap_xdp.o"}
    prebuilt = win1.args("decap.yml", "The decap object is on the node", "ansible.windows.win_copy",
                         backend_windows_decap_object="/srv/decap_xdp.o")
    assert prebuilt["src"] == "/srv/decap_xdp.o"


def test_netsh_command_lines(win1):
    assert win1.args("decap.yml", "Read the pinned eBPF programs", "ansible.windows.win_command") == {
        "argv": ["netsh.exe", "ebpf", "show", "pins"]}
    assert win1.args("decap.yml", "Read the loaded eBPF programs", "ansible.windows.win_command") == {
        "argv": ["netsh.exe", "ebpf", "show", "programs"]}
    plan = {"action": "replace", "ids": [5], "reason": "its object changed (program 5)"}
    assert win1.args("decap.yml", "The decap program that is not as wanted is deleted", "ansible.windows.win_command",
                     item=5, backend_windows_decap_plan=plan) == {
        "argv": ["netsh.exe", "ebpf", "delete", "program", "id=5"]}
    assert win1.args("decap.yml", "The decap program is loaded and attached", "ansible.windows.win_command",
                     backend_windows_net={"result": {"external_ifindex": 7}}, backend_windows_decap_plan=plan) == {
        "argv": ["netsh.exe", "ebpf", "add", "program", "filename=C:\\l4lb\\decap\\decap_xdp.o", "interface=7",
                 "pinpath=ipip_decap"]}


def test_decap_plan_as_the_role_computes_it(win1):
    expr = win1.task("decap.yml", "Decide what to do with the decap program")["ansible.builtin.set_fact"][
        "backend_windows_decap_plan"]
    pins = "\r\n     ID     Type  Path\r\n=======  =======  ==============\r\n      5  Program  ipip_decap\r\n"
    programs = ("\r\n    ID  Pins  Links  Mode       Type           Name\r\n"
                "======  ====  =====  =========  =============  ====================\r\n"
                "     5     1      1  JIT        xdp            decap_xdp\r\n")
    unchanged = {"changed": False}
    common = dict(backend_windows_pins={"stdout": pins}, backend_windows_programs={"stdout": programs},
                  backend_windows_decap_state="present")
    assert win1.value(expr, backend_windows_decap_copy=unchanged, **common)["action"] == "none"
    assert win1.value(expr, backend_windows_decap_copy={"changed": True}, **common)["action"] == "replace"
    common["backend_windows_decap_state"] = "absent"
    assert win1.value(expr, backend_windows_decap_copy={"skipped": True, "changed": False}, **common) == {
        "action": "delete", "ids": [5], "reason": "program 5 pinned at ipip_decap"}


def test_decap_follows_the_xdp_hook(win1):
    expr = win1.task("preflight.yml", "Decide how the decap program comes to be")["ansible.builtin.set_fact"]
    assert win1.value(expr["backend_windows_decap_on"]) is True
    assert win1.value(expr["backend_windows_decap_on"], backend_windows_efw_version="0.13.0") is False
    assert win1.value(expr["backend_windows_decap_compile"], backend_windows_decap_object="/srv/x.o") is False


def test_recycle_handler(win1):
    handlers = os.path.join(ROLES, "backend_windows", "handlers", "main.yml")
    task = find_task(handlers, "Recycle the site's application pool")
    assert win1.value(task["ansible.windows.win_command"]) == {
        "argv": ["C:\\Windows\\System32\\inetsrv\\appcmd.exe", "recycle", "apppool", "/apppool.name:DefaultAppPool"]}


def test_site_windows_ping_and_firewall_scripts():
    """site.yml's Windows steps of the topology check, rendered for win1."""
    site = os.path.join(REPO, "playbooks", "site.yml")
    with open(site, encoding="utf-8") as f:
        plays = yaml.safe_load(f)
    (verify,) = [p for p in plays if p["name"] == "Verify the lab topology"]
    r = Renderer("backend_windows", "win1")
    peers = r.value(verify["vars"]["lab_verify_peers"], hostvars={h: {"lab_ip": ip} for h, ip in
                                                                   {"lb": "20.1.1.1", "win1": "20.1.1.10",
                                                                    "win2": "20.1.1.20", "linux1": "20.1.1.30",
                                                                    "linux2": "20.1.1.40",
                                                                    "client": "20.1.1.100"}.items()})
    assert sorted(peers) == ["20.1.1.1", "20.1.1.100", "20.1.1.20", "20.1.1.30", "20.1.1.40"]
    peers = ["20.1.1.1", "20.1.1.20", "20.1.1.30", "20.1.1.40", "20.1.1.100"]
    tasks = {t["name"]: t for t in verify["tasks"]}
    rule = r.value(tasks["Windows nodes answer ping from the lab's subnet (a firewall rule of the lab's)"]
                   ["ansible.windows.win_shell"])
    assert rule == (
        "$rule = Get-NetFirewallRule -Name 'l4lb-icmp4-echo' -ErrorAction SilentlyContinue\n"
        "if ($null -eq $rule) {\n"
        "    New-NetFirewallRule -Name 'l4lb-icmp4-echo' -DisplayName 'L4LB lab: ICMPv4 echo from the lab' `\n"
        "        -Direction Inbound -Protocol ICMPv4 -IcmpType 8 -RemoteAddress '20.1.1.0/24' -Action Allow | Out-Null\n"
        "    'changed'\n"
        "}\n")
    ping = r.value(tasks["Every Windows node pings every other node"]["ansible.windows.win_shell"],
                   lab_verify_peers=peers)
    assert ping == (
        "$bad = @()\n"
        "foreach ($ip in @('20.1.1.1', '20.1.1.20', '20.1.1.30', '20.1.1.40', '20.1.1.100')) {\n"
        "    if (-not (Test-Connection -ComputerName $ip -Count 1 -Quiet)) { $bad += $ip }\n"
        "}\n"
        "if ($bad) { \"unreachable: $($bad -join ', ')\"; exit 1 }\n")
