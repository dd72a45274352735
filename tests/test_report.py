"""The demo report's core (module_utils/lab_report.py) and its module, from fixture data: what the
page holds and where, escaping, the verdict at the top, the findings that decide `changed`, the
captures per mode, removal. Real Graphviz and matplotlib; no lab (tests/lab/test_demo_report.py
runs it on a real one, in Chromium)."""

from __future__ import annotations

import copy
import html
import os
import re
import struct

import pytest

from labtest import REPO, run_module
from ansible.module_utils import lab_pcap, lab_report as R

VIP = "40.1.1.1"
TOPOLOGY = {
    "prefix": "t13", "subnet": "20.1.1.0/24", "vip": VIP, "vip_range": "40.1.1.0/24", "switch": {"bridge": "br0"},
    "nodes": [
        {"name": "lb", "ip": "20.1.1.1/24", "role": "lb", "os": "linux", "mtu": 1520, "decap": None,
         "switch_port": "lb", "routes": []},
        {"name": "lb2", "ip": "20.1.1.2/24", "role": "lb", "os": "linux", "mtu": 1520, "decap": None,
         "switch_port": "lb2", "routes": []},
        {"name": "win1", "ip": "20.1.1.10/24", "role": "backend", "os": "linux", "mtu": 1520, "decap": "xdp",
         "switch_port": "win1", "routes": []},
        {"name": "linux1", "ip": "20.1.1.30/24", "role": "backend", "os": "linux", "mtu": 1520, "decap": "tc",
         "switch_port": "linux1", "routes": []},
        {"name": "client", "ip": "20.1.1.100/24", "role": "client", "os": "linux", "mtu": 1500, "decap": None,
         "switch_port": "client",
         "routes": [{"dst": "40.1.1.0/24", "via": "20.1.1.1", "nexthops": ["20.1.1.1", "20.1.1.2"]}]},
    ]}
PAGE = ('<!DOCTYPE html><html><head><title>L4LB demo: win1</title></head><body><h1>Cilium L4 load balancer demo</h1>'
        '<td id="backend-name">win1</td><td id="client">20.1.1.100:20000</td>'
        '<script>document.title="x"</script><p>"quotes" &amp; \'apostrophes\'</p></body></html>')
CHECKS = [
    {"check": "LB runs the expected mode", "result": "PASS", "detail": "program lb_xdp_snat on lb: snat"},
    {"check": "requests answered", "result": "PASS", "detail": "40/40 in 0.02s"},
    {"check": "every backend answered", "result": "PASS", "detail": "win1=14 linux1=26"},
    {"check": "replies through the LB (SNAT)", "result": "PASS", "detail": "3 frames from 40.1.1.1"},
]
DUMP = {"service": {"id": 1, "vip": VIP, "port": 80, "protocol": "tcp"}, "stats": {"packets": 9, "bytes": 900},
        "backends": [{"backend_id": 1, "ip": "20.1.1.10", "port": 80, "packets": 4, "bytes": 400},
                     {"backend_id": 2, "ip": "20.1.1.30", "port": 80, "packets": 5, "bytes": 500}],
        "connections": [{"source_ip": "20.1.1.100", "dest_ip": VIP, "source_port": 20000, "dest_port": 80,
                         "backend_ip": "20.1.1.10", "state": "CLOSING", "rx_bytes": 432, "tx_bytes": 1062}],
        "table": "Source IP  | Dest. IP\n", "trouble_report": []}


def _frame(src, dst, sport, dport, flags=0x12):
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, bytes(map(int, src.split("."))),
                     bytes(map(int, dst.split("."))))
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 5 << 4, flags, 1000, 0, 0)
    return b"\x02\x4c\x14\x01\x01\x64" + b"\x02\x4c\x14\x01\x01\x01" + b"\x08\x00" + ip + tcp


def write_pcap(path, n, truncated=False):
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    for i in range(n):
        f = _frame(VIP, "20.1.1.100", 80, 20000 + i, 0x12 if i % 2 == 0 else 0x11)
        out += struct.pack("<IIII", 1000, 500 * i, len(f), len(f)) + f
    if truncated:
        out += struct.pack("<IIII", 1000, 0, 60, 60) + b"\x00" * 10
    with open(path, "wb") as fh:
        fh.write(out)
    return path


def data(tmp_path, **over):
    d = {"prefix": "t13", "provider": "netns", "topology": copy.deepcopy(TOPOLOGY),
         "placement": {"capture": {"namespace": "t13-switch", "lb_ports": ["lb", "lb2"]},
                       "nodes": {"lb": {"connection": "netns", "namespace": "t13-lb"}}},
         "mode": "snat", "program": {"mode": "snat", "name": "lb_xdp_snat", "prog_id": 7}, "lb_host": "lb",
         "checks": copy.deepcopy(CHECKS), "error": None,
         "probe": {"counts": {"win1": 14, "linux1": 26}, "answered": 40, "unanswered": 0}, "count": 40, "vip": VIP,
         "port": 80, "client_ip": "20.1.1.100", "base_port": 20000, "backends": ["win1", "linux1"],
         "weights": {"win1": 1, "linux1": 2}, "backend_names": {"20.1.1.10": "win1", "20.1.1.30": "linux1"},
         "dumps": [{"host": "lb", "dump": copy.deepcopy(DUMP)}, {"host": "lb2", "error": "pins missing"}],
         "capture": {"run": True, "pcap": write_pcap(str(tmp_path / "lb-snat.pcap"), 3), "interface": "lb",
                     "filter": f"src host {VIP} and tcp"},
         "page": {"sport": 20000, "backend": "win1", "status": 200, "headers": {"x-backend": "win1"}, "body": PAGE,
                  "truncated": False}}
    d.update(over)
    return d


def page_of(built):
    return built["files"][R.REPORT_HTML].decode()


def section(text, sid):
    m = re.search(r'<section id="%s">(.*?)</section>' % sid, text, re.S)
    assert m, sid
    return m.group(1)


def test_the_page_holds_every_part_and_fetches_nothing(tmp_path):
    text = page_of(R.build(data(tmp_path), str(tmp_path / "r")))
    order = [text.index(f'id="{s}"') for s in ("verdict", "checks", "topology", "distribution", "lb", "evidence", "page")]
    assert order == sorted(order)
    # self-contained: no script, no stylesheet or image from elsewhere, only the files beside it
    assert "<script" not in text.replace("&lt;script", "")
    refs = re.findall(r'\s(?:src|href)="([^"]*)"', text)
    assert refs and all(r in R.own_files(refs) for r in refs), refs
    topo = section(text, "topology")
    assert topo.count("<svg") == 1
    for n in TOPOLOGY["nodes"]:
        assert n["name"] in topo and n["ip"] in topo
    assert "IPIP decap: xdp" in topo and "IPIP decap: tc" in topo and "(capture point)" in topo
    # the client's route: one edge per LB node (the ECMP route of an LB tier)
    assert "ECMP 1/2" in topo and "ECMP 2/2" in topo and "via 20.1.1.2" in topo
    assert "client: 40.1.1.0/24 via 20.1.1.1, 20.1.1.2" in topo


def test_the_chart_and_the_table_give_hits_beside_the_share_by_weight(tmp_path):
    built = R.build(data(tmp_path), str(tmp_path / "r"))
    dist = section(page_of(built), "distribution")
    chart = dist[dist.index("<svg"):dist.index("</svg>")]
    for label in ("win1", "linux1", "14", "26", "13.3", "26.7", "expected by weight"):
        assert f">{label}<" in chart, label   # matplotlib's text kept as text (svg.fonttype none)
    rows = re.findall(r'<tr data-backend="([^"]+)" data-hits="(\d+)">(.*?)</tr>', dist)
    assert [(b, int(h)) for b, h, _ in rows] == [("win1", 14), ("linux1", 26)]
    assert "33.3%" in rows[0][2] and "66.7%" in rows[1][2]
    assert built["findings"]["hits"] == {"win1": 14, "linux1": 26}


def test_expected_shares_follow_the_weights():
    assert R.expected_shares(["a", "b", "c"], {"a": 1, "b": 3, "c": 0}) == {"a": 0.25, "b": 0.75, "c": 0.0}
    assert R.expected_shares(["a", "b"], {}) == {"a": 0.5, "b": 0.5}
    rows = R.distribution({"probe": {"counts": {"a": 3, "x": 1}}, "count": 4, "backends": ["a"],
                           "weights": {"a": 1, "d": 0}})
    assert [(r["backend"], r["weight"], r["expected"], r["hits"]) for r in rows] == [
        ("a", 1, 4.0, 3), ("d", 0, 0.0, 0), ("x", None, None, 1)]


def test_lb_section_shows_the_kernels_mode_the_service_and_the_dumpstate_table(tmp_path):
    lb = section(page_of(R.build(data(tmp_path), str(tmp_path / "r"))), "lb")
    assert '<b id="mode-running">snat</b>' in lb and "lb_xdp_snat" in lb
    assert re.search(r'id="service-table-lb".*20\.1\.1\.10:80</td><td>win1</td><td[^>]*>1</td>', lb, re.S)
    table = lb[lb.index('id="dumpstate-lb"'):]
    for head in ("Source IP", "Dest. IP", "Source Port", "Backend IP", "State", "Rx Bytes", "Tx Bytes"):
        assert f"<th>{head}</th>" in table
    assert ">20000<" in table and ">CLOSING<" in table
    assert "dumpstate on lb2: pins missing" in lb


def test_everything_shown_is_escaped_and_the_page_is_sandboxed(tmp_path):
    d = data(tmp_path)
    d["checks"][2] = {"check": "every backend answered", "result": "FAIL", "detail": "<img src=x onerror=alert(1)>"}
    d["probe"]["counts"] = {'<b>"evil"</b>': 40}
    text = page_of(R.build(d, str(tmp_path / "r")))
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert '<b>"evil"</b>' not in text and "&lt;b&gt;&quot;evil&quot;&lt;/b&gt;" in text
    frame = re.search(r'<iframe id="page-frame" sandbox="" [^>]*srcdoc="([^"]*)"></iframe>', text)
    assert frame and html.unescape(frame.group(1)) == PAGE
    assert "<script>document" not in text


def test_a_failed_verify_says_what_failed_at_the_top(tmp_path):
    d = data(tmp_path)
    d["checks"][2] = {"check": "every backend answered", "result": "FAIL", "detail": "win1=0 linux1=40 ; missing: win1"}
    built = R.build(d, str(tmp_path / "r"))
    text = page_of(built)
    top = text[:text.index('id="checks"')]
    assert 'class="verdict FAIL" data-result="FAIL"' in top
    assert "FAIL - 1 of 4 checks failed: every backend answered: win1=0 linux1=40 ; missing: win1" in top
    assert '<ul id="failed"><li><b>every backend answered</b>' in top
    assert "<title>L4LB demo report - t13 - FAIL</title>" in text
    assert built["findings"]["verdict"] == "FAIL"


def test_a_task_that_errored_is_named_at_the_top_even_with_nothing_else_known(tmp_path):
    err = "task 'Read the mode the LB node runs (from its attached program)': device eth0 not found"
    d = data(tmp_path, checks=[], error=err, probe={}, dumps=[], page=None, program={},
             capture={"run": False, "pcap": None, "skipped": "not reached"})
    text = page_of(R.build(d, str(tmp_path / "r")))
    top = text[:text.index('id="checks"')]
    assert 'data-result="ERROR"' in top and html.escape(f"ERROR - verify stopped: {err}", quote=True) in top
    assert "No request was answered" in text and '<b id="mode-running">none</b>' in text
    assert "no capture in this run: not reached" in text
    # and with no topology model at all, the rest of the report is still written
    built = R.build(data(tmp_path, topology={}, error=err), str(tmp_path / "r"))
    assert R.TOPOLOGY_SVG not in built["files"] and "No topology model was given" in page_of(built)


def test_pcap_reading_is_shared_and_tolerates_a_cut_record(tmp_path):
    path = write_pcap(str(tmp_path / "c.pcap"), 5, truncated=True)
    assert lab_pcap.count_frames(path) == 5 and lab_pcap.linktype(path) == lab_pcap.LINKTYPE_ETHERNET
    got = R.read_capture(path, VIP, limit=2)
    assert got["frames"] == 5 and len(got["listed"]) == 2
    assert got["listed"][1] == {"src": VIP, "dst": "20.1.1.100", "proto": "tcp", "sport": 80, "dport": 20001,
                                "flags": "F.", "t": 0.0005, "length": 54, "from_vip": True}
    empty = str(tmp_path / "e.pcap")
    open(empty, "wb").close()
    assert lab_pcap.count_frames(empty) == 0 and R.read_capture(empty)["listed"] == []
    # lab_capture counts with this very function (one reader, not two)
    with open(os.path.join(REPO, "library", "lab_capture.py"), encoding="utf-8") as f:
        src = f.read()
    assert "from ansible.module_utils.lab_pcap import count_frames" in src and "def count_frames" not in src


def test_captures_per_mode_this_runs_copied_the_other_kept(tmp_path):
    dest = str(tmp_path / "r")
    R.write(dest, R.build(data(tmp_path), dest))
    with open(os.path.join(dest, "capture-snat.pcap"), "rb") as a, open(str(tmp_path / "lb-snat.pcap"), "rb") as b:
        assert a.read() == b.read()
    dsr = data(tmp_path, mode="dsr", capture={"run": True, "pcap": write_pcap(str(tmp_path / "lb-dsr.pcap"), 0),
                                               "interface": "lb"})
    R.write(dest, R.build(dsr, dest))
    ev = section(open(os.path.join(dest, R.REPORT_HTML), encoding="utf-8").read(), "evidence")
    assert re.search(r'class="capture current" id="capture-dsr" data-mode="dsr" data-frames="0"', ev)
    assert re.search(r'class="capture" id="capture-snat" data-mode="snat" data-frames="3"', ev)
    assert "from an earlier verify run" in ev and ev.count("as expected") == 2
    assert sorted(os.listdir(dest)) == sorted(R.own_files(["capture-snat.pcap", "capture-dsr.pcap"]))
    # a DSR run that saw replies from the VIP is shown as not as expected
    bad = data(tmp_path, mode="dsr", capture={"run": True, "pcap": write_pcap(str(tmp_path / "x.pcap"), 2)})
    assert "NOT as expected" in section(page_of(R.build(bad, dest)), "evidence")


def test_changed_only_when_the_findings_differ_and_check_mode_writes_nothing(tmp_path):
    dest = str(tmp_path / "r")
    first = R.write(dest, R.build(data(tmp_path), dest), check_mode=True)
    assert first["changed"] and not os.path.exists(dest)
    first = R.write(dest, R.build(data(tmp_path), dest))
    assert first["changed"] and R.REPORT_HTML in first["written"]
    # same findings, other counters and timings: rewritten where the bytes differ, no change
    d = data(tmp_path)
    d["checks"][1]["detail"] = "40/40 in 0.09s"
    d["dumps"][0]["dump"]["connections"][0]["rx_bytes"] = 999
    again = R.write(dest, R.build(d, dest))
    assert not again["changed"] and again["written"] == [R.REPORT_HTML]
    same = R.write(dest, R.build(d, dest))
    assert not same["changed"] and same["written"] == []
    # other hits are other findings
    moved = R.write(dest, R.build(data(tmp_path, probe={"counts": {"win1": 20, "linux1": 20}, "answered": 40}), dest))
    assert moved["changed"] and '"win1": 20' in moved["diff"]["after"] and '"win1": 14' in moved["diff"]["before"]


def test_remove_takes_only_the_reports_own_files(tmp_path):
    dest = str(tmp_path / "r")
    R.write(dest, R.build(data(tmp_path), dest))
    assert R.remove(dest, check_mode=True)["changed"] and os.path.isdir(dest)
    with open(os.path.join(dest, "notes.txt"), "w") as f:
        f.write("mine")
    out = R.remove(dest)
    assert out["changed"] and os.listdir(dest) == ["notes.txt"]
    os.unlink(os.path.join(dest, "notes.txt"))
    R.write(dest, R.build(data(tmp_path), dest))
    assert R.remove(dest)["changed"] and not os.path.exists(dest)
    assert R.remove(dest) == {"changed": False, "removed": []}


@pytest.mark.parametrize("dest", ["relative/report", "/tmp", "/a/b", "/work/x/../y/z"])
def test_dest_must_be_a_dedicated_absolute_directory(dest):
    with pytest.raises(R.ReportError):
        R.check_dest(dest)


def test_the_module_writes_reports_and_removes(tmp_path):
    dest = str(tmp_path / "build" / "report" / "t13")
    args = {k: v for k, v in data(tmp_path).items() if v is not None}
    args["dest"] = dest
    checked = run_module("lab_report", dict(args, _ansible_check_mode=True, _ansible_diff=True))
    assert checked["changed"] and not os.path.exists(dest) and R.REPORT_HTML in checked["written"]
    done = run_module("lab_report", args)
    assert done["changed"] and done["verdict"] == "PASS" and done["path"] == os.path.join(dest, R.REPORT_HTML)
    assert done["headline"] == "PASS - all 4 checks passed" and os.path.isfile(done["path"])
    assert run_module("lab_report", args)["changed"] is False
    gone = run_module("lab_report", {"dest": dest, "state": "absent"})
    assert gone["changed"] and not os.path.exists(dest)
    refused = run_module("lab_report", {"dest": dest})
    assert refused["failed"] and "topology" in refused["msg"]


def test_an_lb_tier_has_a_capture_per_switch_port_and_a_rerun_drops_the_old_ones(tmp_path):
    dest = str(tmp_path / "r")
    R.write(dest, R.build(data(tmp_path), dest))           # one LB node: capture-snat.pcap
    tier = data(tmp_path, capture={"run": True, "interface": "lb", "filter": "src host 40.1.1.1 and tcp", "pcaps": {
        "lb": write_pcap(str(tmp_path / "a.pcap"), 2), "lb2": write_pcap(str(tmp_path / "b.pcap"), 3)}})
    built = R.build(tier, dest)
    out = R.write(dest, built)
    assert "capture-snat.pcap" in out["written"] and "capture-snat-lb2.pcap" in out["written"]
    assert sorted(n for n in os.listdir(dest) if n.endswith(".pcap")) == ["capture-snat-lb.pcap", "capture-snat-lb2.pcap"]
    ev = section(page_of(built), "evidence")
    assert 'data-mode="snat" data-frames="5"' in ev and "switch port <b>lb2</b>: 3 frames" in ev
    assert 'href="capture-snat-lb.pcap"' in ev and 'href="capture-snat-lb2.pcap"' in ev
    # the dumpstate of every LB node, and their ports in the picture
    text = page_of(built)
    assert "dumpstate on lb2: pins missing" in text
    assert section(text, "topology").count("(capture point)") == 2
    assert R.remove(dest)["changed"] and not os.path.exists(dest)
