"""The demo report on a real lab, read in a real browser (issue 13).

site.yml brings the lab up (prefix $L4LB_REPORT_TEST_PREFIX, default l4lbt13) and prints the
report's path last; headless Chromium (Debian's package) loads build/report/<prefix>/report.html,
the test reads the DOM it rendered and checks that the verdict, the topology picture, the hits
chart and table, the mode, the dumpstate table and the captures are there and agree with what
verify printed; it takes a screenshot of each report into build/test-output/. Then a DSR verify
(both modes' captures side by side), a failed verify (one backend's nginx removed: FAIL at the top),
a verify whose task errors outright (ERROR at the top, naming the task), and teardown removing the
report. Teardown first and last.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

import pytest

from labtest import REPO, run_playbook
from labutil import BACKENDS, LB_IP, VIP, backends, report, teardown

PREFIX = os.environ.get("L4LB_REPORT_TEST_PREFIX", "l4lbt13")
EV = {"lab_prefix": PREFIX}
REPORT_DIR = os.path.join(REPO, "build", "report", PREFIX)
REPORT = os.path.join(REPORT_DIR, "report.html")
SHOTS = os.path.join(REPO, "build", "test-output")
CHROMIUM = "/usr/bin/chromium"
IPS = {name: ip for name, (ip, _decap) in BACKENDS.items()}


def chromium(*args):
    """Headless Chromium on a fresh profile, no network of its own (no sync, no updates)."""
    profile = tempfile.mkdtemp(prefix="l4lb-chromium-")
    try:
        p = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                            "--no-first-run", "--disable-background-networking", "--disable-component-update",
                            "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}", *args],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-2000:]
        return p.stdout
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def dom():
    return chromium("--dump-dom", f"file://{REPORT}")


def screenshot(name):
    os.makedirs(SHOTS, exist_ok=True)
    path = os.path.join(SHOTS, f"demo-report-{PREFIX}-{name}.png")
    if os.path.exists(path):
        os.unlink(path)
    chromium("--window-size=1280,3600", f"--screenshot={path}", f"file://{REPORT}")
    from PIL import Image
    with Image.open(path) as im:
        assert im.size == (1280, 3600)
        # the verdict box near the top: green for PASS, red for FAIL/ERROR (the page's own colours)
        box = [im.getpixel((x, y))[:3] for x in range(40, 1200, 20) for y in range(50, 110, 4)]
    return path, box


def verdict(text):
    m = re.search(r'<div id="verdict" class="verdict (\w+)" data-result="(\w+)">(.*?)</div>', text, re.S)
    assert m, text[:2000]
    return m.group(2), m.group(3)


def hits(text):
    return {b: int(n) for b, n in re.findall(r'<tr data-backend="([^"]+)" data-hits="(\d+)">', text)}


def svg_of(text, figure):
    m = re.search(r'<figure id="%s"><svg.*?</svg></figure>' % figure, text, re.S)
    assert m, figure
    return m.group(0)


def captures(text):
    return {m: (cur == " current", int(n) if n else None) for cur, m, n in
            re.findall(r'<div class="capture( current)?" id="capture-\w+" data-mode="(\w+)"(?: data-frames="(\d+)")?>',
                       text)}


def last_msg(output):
    return re.findall(r'"msg": "(.*)"', output)[-1]


def check_layout(path, box, result):
    colour = {"PASS": (223, 243, 216), "FAIL": (251, 224, 221), "ERROR": (251, 224, 221)}[result]
    assert box.count(colour) > len(box) // 4, (path, result)


@pytest.fixture(scope="module")
def lab():
    teardown(PREFIX)
    assert not os.path.exists(REPORT_DIR)
    r = run_playbook("site.yml", EV)
    assert r.rc == 0, r.output
    try:
        yield r
    finally:
        teardown(PREFIX)


def test_site_writes_the_report_and_prints_its_path_last(lab):
    assert last_msg(lab.stdout) == f"demo report: {REPORT}"
    assert sorted(os.listdir(REPORT_DIR)) == ["capture-snat.pcap", "hits.svg", "report.html", "report.json",
                                              "topology.svg"]


def test_chromium_renders_the_report_and_it_agrees_with_verify(lab):
    checks, dist = report(lab.stdout)
    assert set(dist) == set(BACKENDS) and sum(dist.values()) == 40
    text = dom()
    result, headline = verdict(text)
    assert result == "PASS" and headline == f"PASS - all {len(checks)} checks passed"
    # the checks table is verify's, row for row
    rows = re.findall(r'<tr class="(\w+)" data-result="\w+"><td>(.*?)</td>', text)
    assert [(name, res) for res, name in rows] == [(c, r) for c, (r, _d) in checks.items()]
    # the picture: every node of the inventory, with its address, the capture point, the route
    topo = svg_of(text, "topology-picture")
    for name, ip in dict(IPS, lb=LB_IP, client="20.1.1.100").items():
        assert f'id="topo-node-{name}"' in topo and f"{ip}/24" in topo, name
    assert "IPIP decap: xdp" in topo and "IPIP decap: tc" in topo and "(capture point)" in topo
    assert 'id="topo-route-client-0"' in topo and f"via {LB_IP}" in topo
    # the chart and the table: the hits verify counted, beside 10 expected each (weights 1)
    chart = svg_of(text, "hits-chart")
    for name, n in dist.items():
        assert f">{name}<" in chart and f">{n}<" in chart
    assert hits(text) == dist
    cells = {b: re.findall(r"<td[^>]*>(.*?)</td>", row) for b, row in
             re.findall(r'<tr data-backend="([^"]+)" data-hits="\d+">(.*?)</tr>', text)}
    assert {b: c[1:5] for b, c in cells.items()} == {b: ["1", "25.0%", "10.0", str(n)] for b, n in dist.items()}
    # the mode read from the kernel, the service as programmed, the seed's dumpstate table
    assert '<b id="mode-running">snat</b>' in text and "lb_xdp_snat" in text
    service = text[text.index('id="service-table-lb"'):]
    service = service[:service.index("</table>")]
    assert sorted(re.findall(r"<td>(20\.1\.1\.\d+):80</td>", service)) == sorted(IPS.values())
    dump = text[text.index('id="dumpstate-lb"'):]
    dump = dump[:dump.index("</table>")]
    conns = re.findall(r"<tr><td>([\d.]+)</td><td>([\d.]+)</td><td[^>]*>(\d+)</td><td[^>]*>(\d+)</td>"
                       r"<td>([\d.]+)</td><td>(\w+)</td>", dump)
    assert conns and all(c[0] == "20.1.1.100" and c[1] == VIP and c[3] == "80" for c in conns)
    assert {c[4] for c in conns} <= set(IPS.values())
    # a probe flow still tracked went to a backend that the client saw answer
    by_ip = {ip: name for name, ip in IPS.items()}
    assert all(dist[by_ip[c[4]]] > 0 for c in conns if 20000 <= int(c[2]) < 20040)
    # the evidence: this run's SNAT capture, its frame count what lab_capture counted
    frames = int(checks["replies through the LB (SNAT)"][1].split()[0])
    assert captures(text) == {"snat": (True, frames), "dsr": (False, None)}
    from lab_pcap import count_frames
    assert count_frames(os.path.join(REPORT_DIR, "capture-snat.pcap")) == frames > 0
    # a backend's page as served, in a sandboxed frame
    m = re.search(r'<b id="page-backend">(\w+)</b>', text)
    assert m and m.group(1) in BACKENDS
    frame = re.search(r'<iframe id="page-frame" sandbox="" [^>]*srcdoc="([^"]*)"', text)
    assert frame and f"&lt;td id=&quot;backend-name&quot;&gt;{m.group(1)}&lt;/td&gt;" in frame.group(1)
    path, box = screenshot("snat")
    check_layout(path, box, "PASS")


def test_a_rerun_replaces_the_report_and_changes_nothing(lab):
    r = run_playbook("site.yml", EV)
    assert r.rc == 0, r.output
    assert r.changed == 0, r.recap
    assert last_msg(r.stdout) == f"demo report: {REPORT}"
    assert hits(dom()) == report(r.stdout)[1]


def test_dsr_shows_both_modes_captures(lab):
    r = run_playbook("mode.yml", dict(EV, lb_mode="dsr"))
    assert r.rc == 0, r.output
    try:
        r = run_playbook("verify.yml", dict(EV, lb_mode="dsr"))
        assert r.rc == 0, r.output
        assert last_msg(r.stdout) == f"demo report: {REPORT}"
        text = dom()
        assert verdict(text)[0] == "PASS" and '<b id="mode-running">dsr</b>' in text
        caps = captures(text)
        assert caps["dsr"] == (True, 0) and caps["snat"][0] is False and caps["snat"][1] > 0
        assert "capture-dsr.pcap" in os.listdir(REPORT_DIR) and "capture-snat.pcap" in os.listdir(REPORT_DIR)
        assert hits(text) == report(r.stdout)[1]
        path, box = screenshot("dsr")
        check_layout(path, box, "PASS")
    finally:
        r = run_playbook("mode.yml", dict(EV, lb_mode="snat"))
        assert r.rc == 0, r.output


def test_a_failed_verify_says_what_failed_at_the_top(lab):
    r = backends(PREFIX, {"backend_linux_state": "absent"}, args=["--limit", "win1"])
    assert r.rc == 0, r.output
    try:
        r = run_playbook("verify.yml", dict(EV, lab_verify_timeout=0.5))
        assert r.rc != 0 and "lab_verify failed:" in r.output
        assert REPORT in r.output
        checks, dist = report(r.stdout)
        text = dom()
        result, headline = verdict(text)
        assert result == "FAIL"
        failed = [c for c, (res, _d) in checks.items() if res == "FAIL"]
        assert "every backend answered" in failed and headline.startswith(f"FAIL - {len(failed)} of {len(checks)}")
        top = text[:text.index('<section id="checks">')]
        assert "missing: win1" in top and all(f"<b>{c}</b>" in top for c in failed)
        assert hits(text)["win1"] == 0 and hits(text) == dict(dist, win1=0)
        path, box = screenshot("failed")
        check_layout(path, box, "FAIL")
    finally:
        r = backends(PREFIX, args=["--limit", "win1"])
        assert r.rc == 0, r.output


def test_a_verify_task_that_errors_outright_still_writes_the_report(lab):
    # tcpdump cannot listen on an interface that does not exist: the capture task errors
    r = run_playbook("verify.yml", dict(EV, lab_verify_capture_interface="nosuchport0"))
    assert r.rc != 0 and "lab_verify errored: task 'Start a bounded capture on each LB node's switch port'" in r.output
    text = dom()
    result, headline = verdict(text)
    assert result == "ERROR"
    assert "ERROR - verify stopped: task &#x27;Start a bounded capture" in headline or \
        "ERROR - verify stopped: task 'Start a bounded capture" in headline
    assert "nosuchport0" in headline
    path, box = screenshot("error")
    check_layout(path, box, "ERROR")
    r = run_playbook("verify.yml", EV)
    assert r.rc == 0, r.output
    assert verdict(dom())[0] == "PASS"


def test_teardown_removes_the_report(lab):
    assert os.path.isfile(REPORT)
    teardown(PREFIX)
    assert not os.path.exists(REPORT_DIR)
