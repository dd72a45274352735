# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The demo report: one self-contained HTML page a presenter opens after ``make lab``.

What lab_verify found, on one screen: the verdict (what failed, at the top), the checks, the
topology drawn by Graphviz from the lab's topology model (``lab_topology``'s ``topology``), the
hits per backend of the verify run charted by matplotlib beside each backend's expected share
(its weight over the service's weights), the mode read from the kernel, the service as the maps
hold it and the seed's dumpstate table, the capture on the LB's switch port per mode (the seed's
Wireshark step; the .pcap files are saved beside the report) and one backend's page as served.

Nothing is fetched when the page is opened: the pictures are inline SVG, the style is inline,
there is no script, and the backend's page is shown in a sandboxed ``iframe`` (``srcdoc``).

:func:`build` makes every file in memory from plain data (what the ``lab_report`` module is
given); :func:`write` puts them in place (atomically, only the files whose bytes differ);
:func:`remove` takes them away again. ``report.json`` holds the report's findings without the
run's counters and timings (:func:`findings`): a rerun that finds the same is no change.
Imported as ``ansible.module_utils.lab_report`` by the module and as ``lab_report`` by tests.
"""

from __future__ import annotations

import html
import io
import json
import os
import re
import tempfile
import traceback

from ansible.module_utils.l4lb.ct import COLUMNS as DUMP_COLUMNS
from ansible.module_utils.lab_pcap import count_frames, describe, frames

try:
    import graphviz
except ImportError:
    graphviz = None
    GRAPHVIZ_IMPORT_ERROR = traceback.format_exc()
else:
    GRAPHVIZ_IMPORT_ERROR = None

try:
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure
except ImportError:
    matplotlib = None
    MATPLOTLIB_IMPORT_ERROR = traceback.format_exc()
else:
    MATPLOTLIB_IMPORT_ERROR = None

REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
TOPOLOGY_SVG = "topology.svg"
HITS_SVG = "hits.svg"
MODES = ("snat", "dsr")
FRAMES_LISTED = 12
# What each mode must show on the LB's switch port (the seed's Wireshark observation).
EXPECT = {"snat": "the replies from the VIP pass the LB node: more than 0 frames",
          "dsr": "the backends answer the client directly: 0 frames from the VIP"}
ROLE_STYLE = {"lb": ("LB node", "#f6c28b"), "backend": ("backend", "#a9cff2"), "client": ("client", "#b9e3b0")}


class ReportError(Exception):
    """The report cannot be made from what it was given."""


# capture-<mode>.pcap (one LB node), capture-<mode>-<its switch port>.pcap (each node of a tier)
CAPTURE_RE = re.compile(r"^capture-(%s)(?:-([A-Za-z0-9_.-]+))?\.pcap$" % "|".join(MODES))


def capture_file(mode, port=None):
    return f"capture-{mode}-{port}.pcap" if port else f"capture-{mode}.pcap"


def own_files(names=()):
    """Every file the report puts in its directory (and so what :func:`remove` removes): its
    fixed ones and, of ``names`` (a directory's listing), the captures."""
    return [REPORT_HTML, REPORT_JSON, TOPOLOGY_SVG, HITS_SVG] + sorted(n for n in names if CAPTURE_RE.match(n))


def missing_libraries():
    """[(package, traceback)] of the Python packages the report needs and cannot import."""
    out = []
    if graphviz is None:
        out.append(("graphviz", GRAPHVIZ_IMPORT_ERROR))
    if matplotlib is None:
        out.append(("matplotlib", MATPLOTLIB_IMPORT_ERROR))
    return out


def _e(value):
    return html.escape("" if value is None else str(value), quote=True)


def _svg_body(svg):
    """An SVG document as an inline element: no XML prolog, doctype or comments before <svg."""
    start = svg.find("<svg")
    if start < 0:
        raise ReportError("the renderer produced no <svg> element")
    return svg[start:].strip()


# --- the verdict ------------------------------------------------------------------------------

def verdict(checks, error=None):
    """{result, headline, failed}: ERROR when a verify task errored outright (``error``), FAIL
    when a check failed, else PASS. ``failed`` lists the failed checks."""
    failed = [c for c in checks if c.get("result") == "FAIL"]
    if error:
        head = f"ERROR - verify stopped: {error}"
        if failed:
            head += f"; failed before that: {', '.join(c['check'] for c in failed)}"
        return {"result": "ERROR", "headline": head, "failed": failed}
    if not checks:
        return {"result": "ERROR", "headline": "ERROR - no check was judged", "failed": []}
    if failed:
        return {"result": "FAIL", "headline": f"FAIL - {len(failed)} of {len(checks)} checks failed: "
                + "; ".join(f"{c['check']}: {c.get('detail', '')}" for c in failed), "failed": failed}
    warn = [c for c in checks if c.get("result") == "WARN"]
    return {"result": "PASS", "headline": f"PASS - all {len(checks) - len(warn)} checks passed"
            + (f" ({len(warn)} warnings)" if warn else ""), "failed": []}


def expected_shares(backends, weights):
    """{name: share of new flows} by weight (Maglev gives each backend slots in proportion to its
    weight); backends without a weight count 1, weight 0 gets none."""
    w = {b: max(int((weights or {}).get(b, 1)), 0) for b in backends}
    total = sum(w.values())
    return {b: (w[b] / total if total else 0.0) for b in backends}


def distribution(data):
    """Rows {backend, weight, share, expected, hits, actual} in the service's backend order, then
    any backend that answered without being one of the service's."""
    counts = (data.get("probe") or {}).get("counts") or {}
    weights = data.get("weights") or {}
    backends = list(data.get("backends") or [])
    for name in weights:
        if name not in backends:
            backends.append(name)  # drained (weight 0): shown with its 0 share
    shares = expected_shares(backends, weights)
    count = int(data.get("count") or 0)
    answered = sum(counts.values())
    rows = []
    for name in backends + [n for n in counts if n not in backends]:
        known = name in shares
        hits = int(counts.get(name, 0))
        rows.append({"backend": name if name else "(no X-Backend)", "weight": weights.get(name, 1) if known else None,
                     "share": shares.get(name) if known else None,
                     "expected": round(count * shares[name], 1) if known else None,
                     "hits": hits, "actual": (hits / answered) if answered else 0.0})
    return rows


# --- pictures ---------------------------------------------------------------------------------

def _node_lines(n, placement):
    role, _color = ROLE_STYLE.get(n.get("role"), (n.get("role"), "#dddddd"))
    lines = [n["name"], n.get("ip", ""), role]
    if n.get("role") == "backend" and n.get("decap"):
        lines.append(f"IPIP decap: {n['decap']}")
    lines.append(f"{n.get('os', 'linux')}, MTU {n.get('mtu', '')}")
    where = ((placement or {}).get("nodes") or {}).get(n["name"]) or {}
    if where.get("namespace"):
        lines.append(f"netns {where['namespace']}")
    elif where.get("domain"):
        lines.append(f"domain {where['domain']}")
    return lines


def topology_graph(topology, provider="netns", placement=None):
    """The lab as a Graphviz graph: the switch, every node (address, role, OS and MTU, decap
    method of each backend), each node's switch port (the capture point on the LB's), the VIP
    range and the client's route to it, one edge per next hop (one per LB node)."""
    if graphviz is None:
        raise ReportError("the Python package graphviz is not installed")
    nodes = topology.get("nodes") or []
    if not nodes:
        raise ReportError("the topology has no nodes")
    placement = placement or {}
    capture = placement.get("capture") or {}
    lb_ports = list(capture.get("lb_ports") or [])
    g = graphviz.Digraph("lab", engine="dot", format="svg")
    g.attr("graph", rankdir="TB", fontname="DejaVu Sans", fontsize="11", nodesep="0.35", ranksep="0.7",
           label=f"lab {topology.get('prefix', '')} - provider {provider} - subnet {topology.get('subnet', '')}",
           labelloc="t")
    g.attr("node", fontname="DejaVu Sans", fontsize="10", shape="box", style="rounded,filled")
    g.attr("edge", fontname="DejaVu Sans", fontsize="9", dir="none")
    bridge = (topology.get("switch") or {}).get("bridge", "br0")
    where = capture.get("namespace") or capture.get("bridge") or ""
    g.node("switch", label=f"switch {bridge}\n{topology.get('subnet', '')}" + (f"\n({where})" if where else ""),
           shape="box", style="filled", fillcolor="#e4e4e4", id="topo-switch")
    vip_range = topology.get("vip_range") or topology.get("vip")
    g.node("vip", label=f"VIP range {vip_range}\nVIP {topology.get('vip', '')}", shape="ellipse",
           style="dashed", id="topo-vip")
    lbs = [n for n in nodes if n.get("role") == "lb"]
    by_ip = {n.get("ip", "").split("/")[0]: n["name"] for n in nodes}
    for rank in ("client", "lb", "backend"):
        with g.subgraph(name=f"rank_{rank}") as sub:
            sub.attr(rank="min" if rank == "client" else "max" if rank == "backend" else "same")
            for n in nodes:
                if n.get("role") != rank and not (rank == "backend" and n.get("role") not in ROLE_STYLE):
                    continue
                _role, color = ROLE_STYLE.get(n.get("role"), ("", "#dddddd"))
                sub.node(f"n_{n['name']}", label="\n".join(_node_lines(n, placement)), fillcolor=color,
                         id=f"topo-node-{n['name']}")
    for n in nodes:
        port = n.get("switch_port") or n["name"]
        attrs = {"label": port, "id": f"topo-link-{n['name']}"}
        if n in lbs and lbs.index(n) < len(lb_ports):
            attrs.update(label=f"{lb_ports[lbs.index(n)]}\n(capture point)", color="#c0392b", fontcolor="#c0392b",
                         penwidth="2")
        g.edge(f"n_{n['name']}", "switch", **attrs)
    for lb in lbs:
        g.edge(f"n_{lb['name']}", "vip", style="dotted", label="serves", id=f"topo-serves-{lb['name']}")
    for n in nodes:
        for r in n.get("routes") or []:
            hops = r.get("nexthops") or [r.get("via")]
            for i, hop in enumerate(hops):
                target = by_ip.get(str(hop))
                label = f"route {r.get('dst')}\nvia {hop}" + (f" (ECMP {i + 1}/{len(hops)})" if len(hops) > 1 else "")
                g.edge(f"n_{n['name']}", f"n_{target}" if target else "vip", label=label, style="dashed",
                       dir="forward", color="#2e7d32", fontcolor="#2e7d32", constraint="false",
                       id=f"topo-route-{n['name']}-{i}")
    return g


def topology_svg(topology, provider="netns", placement=None):
    try:
        return _svg_body(topology_graph(topology, provider, placement).pipe(format="svg", encoding="utf-8"))
    except graphviz.ExecutableNotFound as e:
        raise ReportError(f"Graphviz's dot is not installed (Debian package graphviz): {e}") from None


def hits_svg(rows, title):
    """Bars of the hits per backend, each beside its expected hits by weight (matplotlib)."""
    if matplotlib is None:
        raise ReportError("the Python package matplotlib is not installed")
    names = [r["backend"] for r in rows]
    hits = [r["hits"] for r in rows]
    expected = [r["expected"] or 0 for r in rows]
    # No pyplot: a Figure with its own SVG canvas keeps no global state and needs no display.
    # svg.fonttype none keeps the labels as text (readable in the page's DOM); the fixed hash salt
    # and no date make the same data give the same bytes.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "l4lb-report",
                                "font.family": "DejaVu Sans", "font.size": 10}):
        fig = Figure(figsize=(max(4.5, 1.1 * len(names) + 2), 3.4))
        FigureCanvasSVG(fig)
        ax = fig.add_subplot()
        x = list(range(len(names)))
        width = 0.38
        bars = ax.bar([i - width / 2 for i in x], hits, width, label="hits", color="#2f6db3", gid="bars-hits")
        exp = ax.bar([i + width / 2 for i in x], expected, width, label="expected by weight", color="#ffffff",
                     edgecolor="#888888", hatch="//", gid="bars-expected")
        ax.bar_label(bars, labels=[str(h) for h in hits], padding=2)
        ax.bar_label(exp, labels=[f"{e:g}" for e in expected], padding=2, color="#666666")
        ax.set_xticks(x, names)
        ax.set_ylabel("requests")
        ax.set_title(title)
        ax.set_ylim(0, max(hits + expected + [1]) * 1.45)
        ax.legend(loc="upper left", ncols=2, frameon=False)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return _svg_body(buf.getvalue())


# --- the capture evidence ---------------------------------------------------------------------

def read_capture(path, vip=None, limit=FRAMES_LISTED):
    """{frames, listed: [{t, src, dst, sport, dport, flags, length}]} of a pcap file; the first
    ``limit`` frames, time relative to the first."""
    listed = []
    recs = frames(path, limit)
    t0 = recs[0][0] if recs else 0.0
    for ts, data, orig in recs:
        d = describe(data)
        d.update(t=round(ts - t0, 6), length=orig, from_vip=bool(vip) and d["src"] == vip)
        listed.append(d)
    return {"frames": count_frames(path), "listed": listed}


def _this_runs_ports(cap):
    """{switch port: capture file} of this run: ``pcaps`` (every LB node's port, an LB tier), else
    ``interface`` with ``pcap``."""
    ports = dict(cap.get("pcaps") or {})
    if not ports and cap.get("pcap"):
        ports = {cap.get("interface") or "lb": cap["pcap"]}
    return ports


def evidence(data, dest):
    """Per mode, this run's captures (its mode) or those an earlier run left for the other mode:
    {mode, current, expect, frames (all ports), verdict, note, ports: [{port, file, source,
    frames, listed}]}; ``frames`` None when there is none (no capture ran, or none kept)."""
    cap = data.get("capture") or {}
    mode = data.get("mode")
    kept_names = sorted(os.listdir(dest)) if os.path.isdir(dest) else []
    out = []
    for m in MODES:
        item = {"mode": m, "current": m == mode, "expect": EXPECT[m], "frames": None, "ports": [], "note": None}
        if m == mode:
            ports = _this_runs_ports(cap)
            missing = [src for src in ports.values() if not src or not os.path.isfile(src)]
            if not cap.get("run"):
                item["note"] = f"no capture in this run: {cap.get('skipped') or 'lab_verify_capture is false'}"
            elif not ports or missing:
                item["note"] = f"the capture file {', '.join(missing) or '(none)'} is not on this machine"
            else:
                one = len(ports) == 1
                item["ports"] = [dict(read_capture(src, data.get("vip")), port=port, source=src,
                                      file=capture_file(m, None if one else port)) for port, src in ports.items()]
        else:
            kept = [(n, CAPTURE_RE.match(n)) for n in kept_names]
            item["ports"] = [dict(read_capture(os.path.join(dest, n), data.get("vip")), port=k.group(2) or "",
                                  source=os.path.join(dest, n), file=n) for n, k in kept if k and k.group(1) == m]
            item["note"] = ("from an earlier verify run in this mode (kept until teardown)" if item["ports"] else
                            f"no {m.upper()} verify has run on this lab yet (playbooks/verify.yml -e lb_mode={m})")
        if item["ports"]:
            item["frames"] = sum(p["frames"] for p in item["ports"])
            ok = item["frames"] > 0 if m == "snat" else item["frames"] == 0
            item["verdict"] = "as expected" if ok else "NOT as expected"
        out.append(item)
    return out


# --- the findings (report.json) ---------------------------------------------------------------

def findings(data, rows, judged):
    """What the report concludes, without the run's counters and timings: the same lab and
    result give the same findings, so a rerun that finds the same changes nothing."""
    topo = data.get("topology") or {}
    dumps = data.get("dumps") or []
    return {
        "prefix": data.get("prefix"), "verdict": judged["result"], "error": data.get("error") or None,
        "mode": {"expected": data.get("mode"), "running": (data.get("program") or {}).get("mode")},
        "checks": [[c.get("check"), c.get("result")] for c in data.get("checks") or []],
        "service": {"vip": data.get("vip"), "port": data.get("port"), "weights": data.get("weights") or {},
                    "programmed": [{"lb": d.get("host"),
                                    "backends": [f"{b.get('ip')}:{b.get('port')}"
                                                 for b in (d.get("dump") or {}).get("backends") or []]}
                                   for d in dumps]},
        "requests": data.get("count"),
        "hits": {r["backend"]: r["hits"] for r in rows},
        "topology": {"provider": data.get("provider"), "vip_range": topo.get("vip_range"),
                     "nodes": [[n.get("name"), n.get("role"), n.get("ip"), n.get("decap"),
                                [h for r in n.get("routes") or [] for h in r.get("nexthops") or [r.get("via")]]]
                               for n in topo.get("nodes") or []]},
    }


# --- the page ---------------------------------------------------------------------------------

CSS = """
body{font-family:"DejaVu Sans",sans-serif;margin:1.2em 2em;color:#222;max-width:1200px}
h1{font-size:1.5em;margin:0 0 .4em}h2{font-size:1.15em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
.verdict{font-size:1.15em;font-weight:bold;padding:.6em .9em;border-radius:6px;margin:.6em 0}
.verdict.PASS{background:#dff3d8;border:2px solid #3c8d2f}.verdict.FAIL,.verdict.ERROR{background:#fbe0dd;border:2px solid #c0392b}
table{border-collapse:collapse;margin:.4em 0;font-size:.92em}th,td{border:1px solid #ccc;padding:.2em .55em;text-align:left}
th{background:#f0f0f0}td.num{text-align:right}tr.FAIL td{background:#fbe0dd}tr.WARN td{background:#fff4d6}
tr.SKIP td{color:#777}.res-PASS{color:#2d7a22;font-weight:bold}.res-FAIL{color:#c0392b;font-weight:bold}
figure{margin:.5em 0}figure svg{max-width:100%;height:auto}pre{background:#f6f6f6;padding:.5em;overflow:auto;font-size:.85em}
.captures{display:flex;gap:1.5em;flex-wrap:wrap}.capture{flex:1 1 430px;border:1px solid #ccc;border-radius:6px;padding:.5em .8em}
.capture.current{border:2px solid #2f6db3}.scroll{max-height:24em;overflow:auto;display:inline-block}
.muted{color:#666}iframe{width:100%;height:260px;border:1px solid #999;background:#fff}
"""


def _table(headers, rows, table_id, row_attrs=None):
    out = [f'<table id="{_e(table_id)}"><thead><tr>' + "".join(f"<th>{_e(h)}</th>" for h in headers)
           + "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        attrs = (row_attrs or (lambda _i: ""))(i)
        out.append(f"<tr{attrs}>" + "".join(
            f'<td class="num">{_e(c)}</td>' if isinstance(c, (int, float)) and not isinstance(c, bool)
            else f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _pct(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def _section_checks(data, judged):
    checks = data.get("checks") or []
    parts = ['<section id="checks"><h2>Checks</h2>']
    if data.get("error"):
        parts.append(f'<p id="error" class="res-FAIL">A verify task errored outright: {_e(data["error"])}</p>')
    if checks:
        rows = [[c.get("check"), c.get("result"), c.get("detail")] for c in checks]
        parts.append(_table(["check", "result", "detail"], rows, "checks-table",
                            lambda i: f' class="{_e(rows[i][1])}" data-result="{_e(rows[i][1])}"'))
    else:
        parts.append('<p class="muted">No check was judged.</p>')
    parts.append("</section>")
    return "".join(parts)


def _section_topology(topo_svg, data):
    topo = data.get("topology") or {}
    clients = [n for n in topo.get("nodes") or [] if n.get("role") == "client"]
    routes = [f"{c['name']}: {r.get('dst')} via {', '.join(r.get('nexthops') or [r.get('via')])}"
              for c in clients for r in c.get("routes") or []]
    return ('<section id="topology"><h2>Topology</h2>'
            f'<p>From the lab\'s topology model (provider <b>{_e(data.get("provider"))}</b>); the client\'s route to the '
            f'VIP range: <span id="vip-route">{_e("; ".join(routes) or "none")}</span>. '
            f'File: <a href="{TOPOLOGY_SVG}">{TOPOLOGY_SVG}</a></p>'
            f'<figure id="topology-picture">{topo_svg}</figure></section>')


def _section_distribution(hits_chart, rows, data):
    probe = data.get("probe") or {}
    table = _table(["backend", "weight", "expected share", "expected hits", "hits", "share of answers"],
                   [[r["backend"], "-" if r["weight"] is None else r["weight"], _pct(r["share"]),
                     "-" if r["expected"] is None else r["expected"], r["hits"], _pct(r["actual"])] for r in rows],
                   "hits-table",
                   lambda i: f' data-backend="{_e(rows[i]["backend"])}" data-hits="{rows[i]["hits"]}"')
    return ('<section id="distribution"><h2>Load spread</h2>'
            f'<p>{_e(data.get("count"))} requests from {_e(data.get("client_ip"))}, source ports '
            f'{_e(data.get("base_port"))}.. (the same flows every run), to {_e(data.get("vip"))}:{_e(data.get("port"))}; '
            f'<span id="answered">{_e(probe.get("answered", 0))}</span> answered, '
            f'{_e(probe.get("unanswered", data.get("count")))} not. The expected share is the backend\'s weight over '
            f'the service\'s weights (Maglev gives slots by weight); with few requests the spread is coarse. '
            f'File: <a href="{HITS_SVG}">{HITS_SVG}</a></p>'
            f'<figure id="hits-chart">{hits_chart}</figure>{table}</section>')


def _section_lb(data):
    prog = data.get("program") or {}
    running = prog.get("mode")
    parts = ['<section id="lb"><h2>The load balancer</h2>',
             f'<p>Mode read from the kernel (the attached program on {_e(data.get("lb_host"))}): '
             f'<b id="mode-running">{_e(running or "none")}</b> (program {_e(prog.get("name") or "none")}'
             f'{", id " + _e(prog.get("prog_id")) if prog.get("prog_id") is not None else ""}); expected '
             f'<b id="mode-expected">{_e(data.get("mode"))}</b>.</p>']
    dumps = data.get("dumps") or []
    if not dumps:
        parts.append('<p class="muted">No dumpstate was read.</p>')
    for d in dumps:
        host = d.get("host")
        dump = d.get("dump") or {}
        if d.get("error") or not dump:
            parts.append(f'<p class="res-FAIL">dumpstate on {_e(host)}: {_e(d.get("error") or "no answer")}</p>')
            continue
        svc = dump.get("service") or {}
        stats = dump.get("stats") or {}
        parts.append(f'<h3>Service {_e(svc.get("id"))} as programmed on {_e(host)}: '
                     f'{_e(svc.get("vip"))}:{_e(svc.get("port"))}/{_e(svc.get("protocol"))}</h3>')
        weights = data.get("weights") or {}
        names = data.get("backend_names") or {}
        parts.append(_table(["backend id", "address", "host", "weight", "packets", "bytes"],
                            [[b.get("backend_id"), f"{b.get('ip')}:{b.get('port')}", names.get(b.get("ip"), "-"),
                              weights.get(names.get(b.get("ip")), "-"), b.get("packets", 0), b.get("bytes", 0)]
                             for b in dump.get("backends") or []], f"service-table-{host}"))
        parts.append(f'<p>Service counters: {_e(stats.get("packets", 0))} packets, {_e(stats.get("bytes", 0))} bytes.</p>')
        for line in dump.get("trouble_report") or []:
            parts.append(f'<p class="res-FAIL">{_e(line)}</p>')
        conns = dump.get("connections") or []
        parts.append(f'<h3>dumpstate --id {_e(svc.get("id"))} on {_e(host)} ({len(conns)} connections)</h3>')
        cells = [[r.get(k, "") for _h, k in DUMP_COLUMNS] for r in conns]
        table = _table([c[0] for c in DUMP_COLUMNS], cells, f"dumpstate-{host}")
        parts.append(f'<div class="scroll">{table}</div>')
        if dump.get("table"):
            parts.append(f'<details><summary>as the seed\'s agent prints it</summary><pre>{_e(dump["table"])}</pre></details>')
    parts.append("</section>")
    return "".join(parts)


def _section_evidence(items, data):
    cap = data.get("capture") or {}
    parts = ['<section id="evidence"><h2>DSR / SNAT evidence: frames from the VIP on the LB\'s switch port</h2>',
             f'<p>The seed\'s Wireshark step: a capture on {_e(cap.get("interface") or "the LB port")} with the filter '
             f'<code>{_e(cap.get("filter") or "")}</code> while the requests ran. Open the .pcap files in Wireshark.</p>',
             '<div class="captures">']
    for it in items:
        cls = "capture current" if it["current"] else "capture"
        frames_attr = "" if it["frames"] is None else f' data-frames="{it["frames"]}"'
        parts.append(f'<div class="{cls}" id="capture-{it["mode"]}" data-mode="{it["mode"]}"{frames_attr}>')
        title = f'{it["mode"].upper()}' + (" (this run)" if it["current"] else "")
        parts.append(f"<h3>{_e(title)}</h3><p>expected: {_e(it['expect'])}</p>")
        if it["frames"] is not None:
            links = ", ".join(f'<a href="{_e(p["file"])}">{_e(p["file"])}</a>' for p in it["ports"])
            parts.append(f'<p><b class="frames">{it["frames"]}</b> frames from the VIP - {_e(it["verdict"])}. {links}</p>')
        if it["note"]:
            parts.append(f'<p class="muted">{_e(it["note"])}</p>')
        for p in it["ports"]:
            if len(it["ports"]) > 1:
                parts.append(f'<p>switch port <b>{_e(p["port"])}</b>: {p["frames"]} frames</p>')
            if p["listed"]:
                parts.append(_table(["time (s)", "source", "destination", "flags", "length"],
                                    [[f'{f["t"]:.6f}', f'{f["src"]}:{f["sport"]}', f'{f["dst"]}:{f["dport"]}',
                                      f["flags"] or f["proto"] or "", f["length"]] for f in p["listed"]],
                                    f"frames-{it['mode']}-{p['port']}"))
                if p["frames"] > len(p["listed"]):
                    parts.append(f'<p class="muted">first {len(p["listed"])} of {p["frames"]} frames</p>')
        parts.append("</div>")
    parts.append("</div></section>")
    return "".join(parts)


def _section_page(page):
    if not page:
        return ('<section id="page"><h2>A backend\'s page</h2><p class="muted">No request was answered, so there is '
                'no page to show.</p></section>')
    headers = page.get("headers") or {}
    shown = "".join(f"{_e(k)}: {_e(v)}\n" for k, v in sorted(headers.items()) if k.startswith("x-"))
    # srcdoc in a sandbox without any allow-*: the page renders as served, its scripts (none
    # here) cannot run and it cannot reach this page or the network.
    return ('<section id="page"><h2>A backend\'s page</h2>'
            f'<p>What a browser at source port <b>{_e(page.get("sport"))}</b> got through the VIP: '
            f'backend <b id="page-backend">{_e(page.get("backend"))}</b>, HTTP {_e(page.get("status"))}'
            f'{" (cut)" if page.get("truncated") else ""}.</p>'
            f'<iframe id="page-frame" sandbox="" title="the backend\'s page" srcdoc="{_e(page.get("body"))}"></iframe>'
            f'<details><summary>its headers and HTML as served</summary><pre>{shown}</pre>'
            f'<pre id="page-source">{_e(page.get("body"))}</pre></details></section>')


def render_html(data, judged, rows, items, topo_svg, hits_chart):
    failed = judged["failed"]
    fail_list = ""
    if failed:
        fail_list = '<ul id="failed">' + "".join(
            f'<li><b>{_e(c["check"])}</b>: {_e(c.get("detail"))}</li>' for c in failed) + "</ul>"
    title = f"L4LB demo report - {data.get('prefix')} - {judged['result']}"
    body = [
        f'<header><h1>L4LB lab <span id="prefix">{_e(data.get("prefix"))}</span>: demo report</h1>',
        f'<div id="verdict" class="verdict {judged["result"]}" data-result="{judged["result"]}">{_e(judged["headline"])}'
        f'</div>{fail_list}',
        f'<p>Mode <b>{_e(data.get("mode"))}</b>, VIP {_e(data.get("vip"))}:{_e(data.get("port"))}, '
        f'{_e(data.get("count"))} requests from the client. Written by lab_verify (playbooks/verify.yml, site.yml).</p>'
        '</header>',
        _section_checks(data, judged),
        _section_topology(topo_svg, data),
        _section_distribution(hits_chart, rows, data),
        _section_lb(data),
        _section_evidence(items, data),
        _section_page(data.get("page")),
    ]
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<title>{_e(title)}</title><style>{CSS}</style></head>\n<body>\n' + "\n".join(body) + "\n</body></html>\n")


def build(data, dest):
    """Every file of the report in memory: {files: {name: bytes}, copies: {name: source path},
    findings, verdict}. Reads the capture files (this run's, and the other mode's kept in
    ``dest``); writes nothing."""
    judged = verdict(data.get("checks") or [], data.get("error"))
    rows = distribution(data)
    topo = data.get("topology") or {}
    # No model (a verify that could not read the topology): said in its place, no picture.
    topo_svg = (topology_svg(topo, data.get("provider") or "netns", data.get("placement")) if topo.get("nodes")
                else '<p class="muted">No topology model was given (lab_topology_result.topology).</p>')
    chart = hits_svg(rows, f"hits per backend, {data.get('count')} requests ({str(data.get('mode')).upper()})")
    items = evidence(data, dest)
    found = findings(data, rows, judged)
    files = {
        REPORT_HTML: render_html(data, judged, rows, items, topo_svg, chart).encode(),
        REPORT_JSON: (json.dumps(found, indent=2, sort_keys=True) + "\n").encode(),
        HITS_SVG: chart.encode(),
    }
    if topo.get("nodes"):
        files[TOPOLOGY_SVG] = topo_svg.encode()
    copies = {p["file"]: p["source"] for it in items if it["current"] for p in it["ports"]}
    # this mode's captures of an earlier run that this run did not make (another set of ports)
    listing = os.listdir(dest) if os.path.isdir(dest) else []
    stale = sorted(n for n in listing if (CAPTURE_RE.match(n) or [None, None])[1] == data.get("mode") and n not in copies)
    return {"files": files, "copies": copies, "stale": stale, "findings": found, "verdict": judged}


# --- on disk ----------------------------------------------------------------------------------

def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _put(path, content):
    """Atomically replace ``path`` with ``content`` (a temporary file in its directory, renamed)."""
    fd, tmp = tempfile.mkstemp(prefix=".report-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write(dest, built, check_mode=False):
    """Put the report in ``dest``: each file whose bytes differ is replaced, the capture of this
    run copied in. ``changed`` is whether the findings (report.json) differ from the previous
    report's; ``written`` lists every file replaced (counters and captures are refreshed on every
    run; ``stale`` captures of this mode that this run did not make are removed, and listed
    too). Returns {changed, written, diff}."""
    before = _read(os.path.join(dest, REPORT_JSON))
    after = built["files"][REPORT_JSON]
    result = {"changed": before != after, "written": [],
              "diff": {"before": before.decode() if before else "", "after": after.decode(),
                       "before_header": os.path.join(dest, REPORT_JSON), "after_header": os.path.join(dest, REPORT_JSON)}}
    wanted = dict(built["files"])
    for name, src in built["copies"].items():
        wanted[name] = _read(src) or b""
    if not check_mode:
        os.makedirs(dest, exist_ok=True)
    for name in sorted(wanted, key=lambda n: n == REPORT_HTML):  # the page last: it links the others
        path = os.path.join(dest, name)
        if _read(path) != wanted[name]:
            result["written"].append(name)
            if not check_mode:
                _put(path, wanted[name])
    for name in built.get("stale") or []:
        result["written"].append(name)
        if not check_mode:
            os.unlink(os.path.join(dest, name))
    return result


def remove(dest, check_mode=False):
    """Remove the report's own files from ``dest``, then ``dest`` itself when that left it
    empty (anything else put there is kept). Returns {changed, removed}."""
    listing = os.listdir(dest) if os.path.isdir(dest) else []
    removed = [n for n in own_files(listing) if os.path.lexists(os.path.join(dest, n))]
    leftovers = [n for n in listing if n not in removed]
    temp = [n for n in leftovers if n.startswith(".report-")]
    if not check_mode:
        for n in removed + temp:
            os.unlink(os.path.join(dest, n))
        if os.path.isdir(dest) and not os.listdir(dest):
            os.rmdir(dest)
    gone_dir = os.path.isdir(dest) and not [n for n in leftovers if n not in temp]
    return {"changed": bool(removed or temp or (gone_dir and check_mode)), "removed": removed + temp}


def check_dest(dest):
    """The report directory must be a dedicated one: an absolute path at least three levels deep
    (it is removed on teardown, its own files only)."""
    if not dest or not os.path.isabs(dest):
        raise ReportError(f"dest {dest!r} must be an absolute path")
    path = os.path.normpath(dest)
    if len([p for p in path.split("/") if p]) < 3 or re.search(r"(^|/)\.\.?(/|$)", dest):
        raise ReportError(f"dest {dest!r} is too broad a directory for the report (use e.g. <repo>/build/report/<prefix>)")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ReportError(f"dest {dest!r} exists and is not a directory")
    return path


__all__ = ["ReportError", "build", "write", "remove", "check_dest", "verdict", "distribution", "expected_shares",
           "topology_graph", "topology_svg", "hits_svg", "evidence", "findings", "read_capture", "own_files",
           "missing_libraries", "capture_file"]
