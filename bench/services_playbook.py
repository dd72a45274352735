"""Many services through the declarative path (issue 12): `service.yml` and `l4lbctl service
apply` with 1,000 services x 4 backends on the embedded lab - apply from none, no-op rerun
(changed=0), change one backend of one service, remove all.

Own prefix ($L4LB_BENCH_PREFIX, default l4lbb): the topology and the LB node only (mode.yml);
services are the lab's four backend addresses on 1,000 ports. Targets (2 cores): apply < 10 s,
no-op < 3 s, one change < 3 s, remove all < 10 s. Wall-clock seconds of whole runs (interpreter
start-up, inventory, module transfer, every task); the machine's load (uptime) is recorded.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time

from bench.topology import PREFIX, REPO, _play

TITLE = "Many services (issue 12): service.yml and l4lbctl service apply, 1,000 services x 4 backends"
ROUNDS = int(os.environ.get("L4LB_BENCH_ROUNDS", "3"))
N_SERVICES = 1000
BACKENDS = ("20.1.1.10", "20.1.1.20", "20.1.1.30", "20.1.1.40")
VIP = "40.1.1.1"
TARGETS = {"apply": 10.0, "noop": 3.0, "change": 3.0, "remove": 10.0}
L4LBCTL = os.path.join(REPO, "bin", "l4lbctl")
PYTHON = os.path.join(REPO, ".venv", "bin", "python")


def services(changed_one: bool = False) -> list:
    out = []
    for i in range(N_SERVICES):
        port = 10000 + i
        bes = [f"{ip}:{port}" for ip in BACKENDS]
        if changed_one and i == N_SERVICES // 2:
            bes[0] = f"{BACKENDS[0]}:{port + 20000}"   # one backend of one service moves
        out.append({"id": i + 1, "frontend": f"{VIP}:{port}", "backends": bes})
    return out


def _l4lbctl(path: str, *extra: str) -> tuple[float, bool]:
    argv = [PYTHON, L4LBCTL, "--netns", f"{PREFIX}-lb", "--pin-dir", f"/sys/fs/bpf/{PREFIX}/lb", "--json",
            "service", "apply", "-f", path, *extra]
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True)
    dt = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError(f"l4lbctl failed: {p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return dt, json.loads(p.stdout)["changed"]


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run() -> str:
    steps = ("apply", "noop", "change", "remove")
    t = {f"{k}_{s}": [] for k in ("play", "ctl") for s in steps}
    loads = [_uptime()]
    _play("teardown.yml")
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}-svc-") as d:
        files = {}
        for name, data in (("set", {"lb_services": services()}),
                           ("changed", {"lb_services": services(changed_one=True)}),
                           ("none", {"lb_services": [], "lb_services_prune": True})):
            files[name] = os.path.join(d, f"{name}.json")
            with open(files[name], "w", encoding="utf-8") as f:
                json.dump(data, f)
        try:
            _play("site.yml", "--tags", "lab_topology", "--skip-tags", "verify")
            _play("mode.yml")
            for _ in range(ROUNDS):
                for step, f, want in (("apply", "set", True), ("noop", "set", False),
                                      ("change", "changed", True), ("remove", "none", True)):
                    dt, changed = _play("service.yml", "-e", f"@{files[f]}")
                    assert (changed > 0) == want, f"service.yml {step}: changed={changed}"
                    t[f"play_{step}"].append(dt)
                for step, f, extra, want in (("apply", "set", (), True), ("noop", "set", (), False),
                                             ("change", "changed", (), True),
                                             ("remove", "none", ("--prune",), True)):
                    dt, changed = _l4lbctl(files[f], *extra)
                    assert changed == want, f"l4lbctl {step}: changed={changed}"
                    t[f"ctl_{step}"].append(dt)
            loads.append(_uptime())
        finally:
            _play("teardown.yml")

    def row(key, label, target):
        xs = t[key]
        med = statistics.median(xs)
        return (f"| {label} | {med:.2f} | {min(xs):.2f} | {max(xs):.2f} | < {target:.0f} s | "
                f"{'met' if med < target else 'MISSED'} |")

    labels = {"apply": "apply from none (1,000 created)", "noop": "no-op rerun (changed=0)",
              "change": "change one backend of one service", "remove": "remove all"}
    how = {"play": "`service.yml -e @services.json`", "ctl": "`l4lbctl service apply -f services.json`"}
    lines = [
        f"{ROUNDS} rounds, prefix `{PREFIX}`; {N_SERVICES:,} services, each `{VIP}:PORT` to the lab's 4 "
        "backends on that port (4,000 slots over 4,000 backend entries, 1,000 Maglev tables of 2039). "
        "The playbook makes two module calls on the LB node (`lb_neighbor addresses=`, `lb_service "
        "services=`); remove all = `lb_services: []` with `lb_services_prune: true` (l4lbctl: an "
        "empty list with `--prune`). Wall-clock seconds of whole runs: `ansible-playbook` start-up, "
        "inventory, module transfer over the netns connection, every task; l4lbctl: Python start-up, "
        "`nsenter`, reading the file, one reconcile.",
        "",
        f"Load before: `{loads[0]}`; after: `{loads[-1]}`.",
        "",
        "| step | median s | min s | max s | target | |",
        "|---|---|---|---|---|---|",
    ]
    for kind in ("play", "ctl"):
        for s in steps:
            lines.append(row(f"{kind}_{s}", f"{how[kind]}: {labels[s]}", TARGETS[s]))
    lines += ["", "Before (issue 12, one `lb_service` call per service): 100 services took 84 s to apply, "
              "85 s for the no-op rerun and 85 s to remove."]
    return "\n".join(lines) + "\n"
