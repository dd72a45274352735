"""SNAT port bench (issue 15): the sustainable rate of new SNAT connections, stated and measured.

Own prefix ($L4LB_BENCH_SNAT_PREFIX, default l4lbs): never touches `make lab`'s lab. The load is
tests/reliability/conn_load.py from the client namespace (new connections at a steady rate, each
a GET with Connection: close read to EOF, so the backend closes first and keeps TIME_WAIT),
bounded in count and time; all traffic stays inside the lab's namespaces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from bench.topology import REPO
from bench.topology import _play as _topology_play

sys.path.insert(0, os.path.join(REPO, "module_utils"))
from l4lb import agent, ct  # noqa: E402
from l4lb.lifetimes import CtTimeouts, sustainable_rate  # noqa: E402
from l4lb.structs import SNAT_PORT_MAX_DEFAULT, SNAT_PORT_MIN_DEFAULT  # noqa: E402

PREFIX = os.environ.get("L4LB_BENCH_SNAT_PREFIX", "l4lbs")
RATE = int(os.environ.get("L4LB_BENCH_SNAT_RATE", "1000"))
SECONDS = int(os.environ.get("L4LB_BENCH_SNAT_SECONDS", "60"))
LOAD = os.path.join(REPO, "tests", "reliability", "conn_load.py")
BACKENDS = ("win1", "win2", "linux1", "linux2")
PORTS = SNAT_PORT_MAX_DEFAULT - SNAT_PORT_MIN_DEFAULT + 1   # per backend (each port has a slot per backend)
TITLE = "SNAT ports (issue 15): sustainable rate of new SNAT connections, stated and measured"


def _play(playbook: str) -> None:
    _topology_play(playbook, "-e", json.dumps({"lab_prefix": PREFIX, "lb_mode": "snat"}))


def _nstat(node: str, names: tuple) -> dict:
    p = subprocess.run(["nsenter", f"--net=/run/netns/{PREFIX}-{node}", "--", "nstat", "-az", *names],
                       capture_output=True, text=True, check=True)
    out = {}
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in names:
            out[parts[0]] = int(parts[1])
    return out


def _maps() -> tuple:
    with agent.open_maps(f"/sys/fs/bpf/{PREFIX}/lb") as maps:
        reasons = {k: v["packets"] for k, v in ct.reason_stats(maps).items()}
        return reasons, len(ct.snat_slots(maps)), len(maps["ct4_global"].items_list())


def run() -> str:
    t = CtTimeouts()
    _play("teardown.yml")
    try:
        _play("site.yml")
        before, _, _ = _maps()
        p = subprocess.run(["nsenter", f"--net=/run/netns/{PREFIX}-client", "--", sys.executable, LOAD, "pace",
                            "--rate", str(RATE), "--seconds", str(SECONDS)],
                           capture_output=True, text=True, timeout=SECONDS + 120, check=True)
        load = json.loads(p.stdout)
        after, snat, cts = _maps()
        paws = sum(_nstat(b, ("TcpExtPAWSTimewait",)).get("TcpExtPAWSTimewait", 0) for b in BACKENDS)
        client = _nstat("client", ("TcpExtTCPSynRetrans",))
    finally:
        _play("teardown.yml")
    refused = after.get("DROP_SNAT_PORTS", 0) - before.get("DROP_SNAT_PORTS", 0)
    one = sustainable_rate(PORTS, len(BACKENDS), t.closed)
    many = sustainable_rate(PORTS, len(BACKENDS), t.time_wait)
    rows = [
        ("sustainable new SNAT flows/s, one client address or client-closed (guard `closed`)",
         f"{PORTS:,} x {len(BACKENDS)} / {t.closed} s = {one:,.0f}/s",
         f"{load['rate']:,.0f}/s for {load['seconds']:.0f} s: {load['started']:,} started, {load['failed']} failed, "
         f"{refused} SYNs refused (DROP_SNAT_PORTS)"),
        ("sustainable new SNAT flows/s, many clients, backend closes first (guard `time_wait`)",
         f"{PORTS:,} x {len(BACKENDS)} / {t.time_wait} s = {many:,.0f}/s", "not measured (one client namespace)"),
        ("connections slower than 0.9 s (a SYN retried)", "", f"{load['slow']}"),
        ("reused tuples meeting a rejecting backend TIME_WAIT (backends' TcpExtPAWSTimewait; "
         "each costs an RST and an immediate SYN retry)", "",
         f"{paws:,} ({paws / max(load['started'], 1):.1%}); client TcpExtTCPSynRetrans {client.get('TcpExtTCPSynRetrans', 0):,}"),
        ("SNAT / CT entries right after the load (GC every 5 s keeps flows in their guard)",
         f"<= {PORTS * len(BACKENDS):,}", f"{snat:,} / {cts:,}"),
    ]
    out = [f"Prefix `{PREFIX}`, SNAT mode, default lifetimes ({', '.join(f'{k} {v} s' for k, v in t.as_dict().items())}), "
           f"ports {SNAT_PORT_MIN_DEFAULT}-{SNAT_PORT_MAX_DEFAULT} ({PORTS:,} per backend), {len(BACKENDS)} backends; load: `conn_load.py pace --rate {RATE} "
           f"--seconds {SECONDS}` from the client namespace (Connection: close, read to EOF: the backend closes first).",
           "", "| figure | stated (bpf/README.md \"Lifetimes\") | measured |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(out) + "\n"
