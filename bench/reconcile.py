"""Control-plane benchmark: reconcile 1,000 services x 64 backends from empty, then a no-op rerun.

    .venv/bin/python -m bench.reconcile [--rounds 3] [--out BENCHMARKS.md] [--no-write]

Method: the LB object (bpf/lb_xdp.c) is compiled and loaded with its own pin root under
/sys/fs/bpf/l4lbt3c-bench-<pid>/ (nothing attached); its pinned maps are programmed through
l4lb.reconcile exactly as the Ansible module and l4lbctl do (plan_services + apply). Every round
starts from freshly created (empty) maps and an empty Maglev memo cache, so each figure includes
building every Maglev table. The no-op rerun is measured twice: in the same process (caches
cleared) and in a fresh Python process (what an Ansible task or an l4lbctl call pays, interpreter
start-up excluded). Wall time (time.perf_counter) and the process's CPU time are reported; the
machine may be shared with other work, which inflates wall time, not CPU time.

Provides TITLE and run() for bench/run.py, and main() to run alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.join(REPO, "module_utils") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "module_utils"))

from l4lb import build, libbpf, maglev, reconcile  # noqa: E402
from l4lb.model import Service  # noqa: E402

TITLE = "Control plane: reconcile"
NAME = "reconcile"
PIN_ROOT = f"/sys/fs/bpf/l4lbt3c-bench-{os.getpid()}"
N_SERVICES, N_BACKENDS = 1000, 64


def services_as_input(shared: bool) -> list:
    """The desired state as the Ansible module receives it (dicts, seed syntax strings)."""
    out = []
    for i in range(N_SERVICES):
        if shared:
            bes = ",".join(f"10.0.0.{j + 1}:8080" for j in range(N_BACKENDS))
        else:
            bes = ",".join(f"10.{i >> 8}.{i & 255}.{j + 1}:8080" for j in range(N_BACKENDS))
        out.append({"id": i + 1, "frontend": f"40.{i >> 8}.{i & 255}.1:80", "backends": bes})
    return out


def _load(obj: str, d: str) -> None:
    os.makedirs(d)
    o = libbpf.BpfObject(obj, pin_root_path=d)
    try:
        o.load()
    finally:
        o.close()


class _Timer:
    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w
        self.cpu = time.process_time() - self.c


def _child_noop(pin_dir: str, shared: bool) -> None:
    """Run in a fresh interpreter: parse, plan (must be empty); print timings as JSON."""
    with _Timer() as tp:
        svcs = [Service.parse(s) for s in services_as_input(shared)]
    with reconcile.LBMaps.open(pin_dir) as maps, _Timer() as t:
        plan = reconcile.plan_services(maps, svcs)
    print(json.dumps({"wall": t.wall, "cpu": t.cpu, "writes": len(plan.writes), "parse": tp.wall,
                      "parse_cpu": tp.cpu}))


def _round(obj: str, shared: bool, k: int) -> dict:
    d = os.path.join(PIN_ROOT, f"{'shared' if shared else 'distinct'}{k}")
    _load(obj, d)
    r = {}
    try:
        with _Timer() as tp:
            svcs = [Service.parse(s) for s in services_as_input(shared)]
        r["parse"] = (tp.wall, tp.cpu, 0)
        maglev.clear_cache()
        with reconcile.LBMaps.open(d) as maps:
            with _Timer() as t1:
                plan = reconcile.plan_services(maps, svcs)
            with _Timer() as t2:
                reconcile.apply(maps, plan)
            r["plan"] = (t1.wall, t1.cpu, len(plan.writes))
            r["apply"] = (t2.wall, t2.cpu, len(plan.writes))
            r["empty"] = (t1.wall + t2.wall, t1.cpu + t2.cpu, len(plan.writes))
            maglev.clear_cache()
            with _Timer() as t3:
                again = reconcile.plan_services(maps, svcs)
            assert not again.writes, f"no-op rerun planned {len(again.writes)} writes"
            r["noop"] = (t3.wall, t3.cpu, 0)
            maglev.clear_cache()
            with _Timer() as t4:
                full = reconcile.plan_services(maps, svcs, full_maglev_check=True)
            assert not full.writes
            r["noop_full"] = (t4.wall, t4.cpu, 0)
            # one service changes one backend on top of the 1,000
            one = dict(services_as_input(shared)[499])
            one["backends"] = one["backends"].replace(":8080,", ":8081,", 1)
            svcs2 = list(svcs)
            svcs2[499] = Service.parse(one)
            with _Timer() as t5:
                p5 = reconcile.plan_services(maps, svcs2)
                reconcile.apply(maps, p5)
            r["one"] = (t5.wall, t5.cpu, len(p5.writes))
            reconcile.apply(maps, reconcile.plan_services(maps, svcs))
        out = subprocess.run([sys.executable, "-m", "bench.reconcile", "--child-noop", d]
                             + (["--shared"] if shared else []),
                             cwd=REPO, capture_output=True, text=True, check=True)
        child = json.loads(out.stdout.strip().splitlines()[-1])
        assert child["writes"] == 0
        r["noop_fresh"] = (child["wall"], child["cpu"], 0)
        r["noop_fresh_total"] = (child["wall"] + child["parse"], child["cpu"] + child["parse_cpu"], 0)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return r


ROWS = [
    ("parse", "parse + validate 1,000 services from seed-syntax dicts (64,000 backend strings)", None),
    ("plan", "plan from empty (incl. 1,000 Maglev tables, M = 2039)", None),
    ("apply", "apply from empty (batched writes, 1,000 inner maps swapped in)", None),
    ("empty", "**reconcile from empty: plan + apply**", 5.0),
    ("noop", "**no-op rerun: plan, 0 writes** (same process, caches cleared)", 1.0),
    ("noop_fresh", "no-op rerun in a fresh Python process: plan (start-up, parsing excluded)", 1.0),
    ("noop_fresh_total", "no-op rerun in a fresh Python process: parse + plan", None),
    ("noop_full", "no-op rerun with full_maglev_check (rebuild every table, compare content)", None),
    ("one", "change 1 backend of 1 service among the 1,000: plan + apply", None),
]


def run(rounds: int = 3) -> str:
    if os.geteuid() != 0:
        raise SystemExit("bench.reconcile needs root (BPF maps)")
    tmp = tempfile.mkdtemp(prefix="l4lbt3c-bench-")
    os.makedirs(PIN_ROOT, exist_ok=True)
    try:
        obj = os.path.join(tmp, "lb_xdp.o")
        cfg = build.BuildConfig(lb_ip="20.1.1.1", lb_mac="02:00:14:01:01:01", ifindex=1, mode="snat")
        build.compile_lb(cfg, obj)
        results = {}
        for shared in (False, True):
            results[shared] = [_round(obj, shared, k) for k in range(rounds)]
    finally:
        shutil.rmtree(PIN_ROOT, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [
        f"{N_SERVICES:,} services x {N_BACKENDS} backends, Maglev M = 2039, programmed into the "
        "maps of the loaded LB object through `l4lb.reconcile` (`plan_services` + `apply`). "
        f"{rounds} rounds per scenario, each from fresh empty maps and empty caches; wall seconds "
        "(median, min, max) and CPU seconds of the process (median). *distinct*: every service has "
        "its own 64 backends (64,000 backend entries, 1,000 different tables: the worst case); "
        "*shared*: all services use one pool of 64 backends (the lab's shape: identical tables are "
        "built once).",
        "",
        "| scenario | step | median s | min s | max s | CPU s | writes | target | |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for shared in (False, True):
        rs = results[shared]
        for key, label, target in ROWS:
            walls = [r[key][0] for r in rs]
            cpus = [r[key][1] for r in rs]
            writes = rs[0][key][2]
            med = statistics.median(walls)
            tgt = f"< {target:g} s" if target else ""
            met = ("met" if med < target else "NOT met") if target else ""
            lines.append(f"| {'shared' if shared else 'distinct'} | {label} | {med:.3f} | {min(walls):.3f} | "
                         f"{max(walls):.3f} | {statistics.median(cpus):.3f} | {writes:,} | {tgt} | {met} |")
    lines += [
        "",
        "How: reads use one BPF_MAP_LOOKUP_BATCH per 8,192 entries; writes are grouped per map and "
        "phase into BPF_MAP_UPDATE_BATCH/DELETE_BATCH calls; new Maglev inner maps are swapped in "
        "with one batch update of `lb4_maglev` per 256 services (the kernel waits for an RCU grace "
        "period after each map-in-map update: ~14 ms each, 14 s for 1,000 single updates). A no-op "
        "needs no Maglev rebuild when an inner map's name (`mg` + 13 hex digits) is the fingerprint "
        "of the desired inputs and of the content read back; otherwise the table is rebuilt and "
        "compared (the `full_maglev_check` row).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(REPO, "BENCHMARKS.md"))
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--child-noop", metavar="PIN_DIR", help=argparse.SUPPRESS)
    ap.add_argument("--shared", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_noop:
        _child_noop(args.child_noop, args.shared)
        return 0
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    body = run(args.rounds)
    try:
        from bench.run import machine, write_section
    except ImportError:  # run alone without the registry
        machine, write_section = (lambda: os.uname().release), None
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                         text=True).stdout.strip() or "?"
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    body = (f"Machine: {machine()}. Measured {stamp} at commit {rev} "
            f"(1-min load average {load0:.2f} at the start, {load:.2f} at the end; with other "
            f"work running, wall time exceeds the process's CPU time).\n\n{body}")
    print(f"## {TITLE}\n\n{body}")
    if not args.no_write and write_section is not None:
        write_section(args.out, NAME, TITLE, body)
        print(f"(written to {args.out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
