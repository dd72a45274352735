"""Topology bench: lab up from nothing, idempotent rerun, teardown (wall-clock, whole playbooks).

Uses its own prefix ($L4LB_BENCH_PREFIX, default l4lbb), so it never touches `make lab`'s lab.
Targets on 2 cores: up < 15 s, rerun < 10 s, teardown < 5 s.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time

TITLE = "Topology (issue 2): up, idempotent rerun, teardown"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = os.environ.get("L4LB_BENCH_PREFIX", "l4lbb")
ROUNDS = int(os.environ.get("L4LB_BENCH_ROUNDS", "5"))
TARGETS = {"up": 15.0, "rerun": 10.0, "teardown": 5.0}


def _play(playbook, *args):
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + os.environ.get("PATH", ""))
    argv = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"),
            os.path.join(REPO, "playbooks", playbook), "-e", json.dumps({"lab_prefix": PREFIX}), *args]
    t0 = time.monotonic()
    p = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    dt = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{playbook} failed:\n{p.stdout[-3000:]}\n{p.stderr[-2000:]}")
    changed = sum(int(w.split("=")[1]) for line in p.stdout.splitlines() if " : ok=" in line
                  for w in line.split() if w.startswith("changed="))
    return dt, changed


def run() -> str:
    samples = {k: [] for k in ("up", "rerun", "teardown", "up_topology_only", "rerun_topology_only")}
    _play("teardown.yml")  # start from nothing
    try:
        for _ in range(ROUNDS):
            # The topology part of site.yml (its role's tag): namespaces, bridge, veths, XDP_PASS,
            # then the ping matrix and client-route check; bench.lab measures the whole lab.
            dt, changed = _play("site.yml", "--tags", "lab_topology")
            assert changed > 0
            samples["up"].append(dt)
            dt, changed = _play("site.yml", "--tags", "lab_topology")
            assert changed == 0, "rerun was not idempotent"
            samples["rerun"].append(dt)
            dt, _ = _play("teardown.yml")
            samples["teardown"].append(dt)
            dt, _ = _play("site.yml", "--tags", "lab_topology", "--skip-tags", "verify")
            samples["up_topology_only"].append(dt)
            dt, _ = _play("site.yml", "--tags", "lab_topology", "--skip-tags", "verify")
            samples["rerun_topology_only"].append(dt)
            _play("teardown.yml")
    finally:
        _play("teardown.yml")

    def row(name, label, target=None):
        xs = samples[name]
        verdict = "" if target is None else ("met" if statistics.median(xs) < target else "MISSED")
        tgt = "" if target is None else f"< {target:.0f} s"
        return (f"| {label} | {statistics.median(xs):.2f} | {min(xs):.2f} | {max(xs):.2f} | "
                f"{tgt} | {verdict} |")

    lines = [
        f"{ROUNDS} rounds, prefix `{PREFIX}`; wall-clock seconds of whole `ansible-playbook` runs "
        "(interpreter start-up, inventory, every task), default inventory (LB node, 4 backends, "
        "client = 7 namespaces, 6 veth pairs, native XDP_PASS on 6 switch ports).",
        "",
        "| step | median s | min s | max s | target | |",
        "|---|---|---|---|---|---|",
        row("up", "up from nothing: `site.yml --tags lab_topology` (topology + ping matrix + client route check)",
            TARGETS["up"]),
        row("rerun", "idempotent rerun: the same again (changed=0)", TARGETS["rerun"]),
        row("teardown", "teardown: `teardown.yml`", TARGETS["teardown"]),
        row("up_topology_only", "up, topology play only (`--tags lab_topology --skip-tags verify`)"),
        row("rerun_topology_only", "rerun, topology play only (`--tags lab_topology --skip-tags verify`)"),
    ]
    return "\n".join(lines) + "\n"
