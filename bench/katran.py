"""Side by side with Katran (issue 11): the lab's LB program against Katran's balancer and a
MAC-swap floor, ns per packet measured in one run, in SNAT and in DSR mode.

    KATRAN_SRC=/path/to/katran .venv/bin/python -m bench.run katran

It runs the workplace's tool, ``katran-side-by-side.sh`` with ``trbench.c`` (from
$KATRAN_TOOL_DIR, default ``../shared/tools`` beside the repository): Katran built with its own
flags and programmed like its tests, our live program, the floor, all by BPF_PROG_TEST_RUN on
one CPU, interleaved over 3 rounds. The lab is its own (prefix $L4LB_BENCH_PREFIX, default
l4lbb), brought up once per mode and torn down at the end. Katran's source is fetched outside
the repository (nothing of Katran goes into the project); without $KATRAN_SRC or the tool the
bench is skipped with a message and its section of BENCHMARKS.md is left as it is.

After each mode's run, bench/katran_clearing.py measures the "run's flows cleared" row again
four ways (the tool's clearing, each program's deletable tables only, both through the tool's
walk of lb4_snat, the run's flows removed whole): the tool's clearing walks our ARRAY of SNAT
slots for 160-180 ms, and that idle time costs the next calls more than the datapath does (its
docstring says why).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

from bench import Skipped, katran_clearing
from bench.topology import PREFIX, REPO
from bench.topology import _play as _topology_play

TITLE = "Datapath side by side with Katran (issue 11): ns per packet, SNAT and DSR"
TOOL_DIR = os.environ.get("KATRAN_TOOL_DIR", os.path.join(os.path.dirname(REPO), "shared", "tools"))
TOOL = os.path.join(TOOL_DIR, "katran-side-by-side.sh")
# Issue 11's targets: ours / Katran, same run, per path (the tool's row names).
TARGETS = {"established": 0.7, "new flow, run's flows cleared": 0.8, "non-VIP": 0.8}
PIN = f"/sys/fs/bpf/{PREFIX}-katran-bench"
ROW = re.compile(r"^\| (?P<path>[^|]+?) \| (?P<k>\d+) / \d+ ns [^|]*\| (?P<o>\d+) / \d+ ns [^|]*\| (?P<f>\d+) / \d+ ns")


def _play(playbook: str, mode: str | None = None) -> None:
    _topology_play(playbook, *(["-e", json.dumps({"lb_mode": mode})] if mode else []))


def _target(path: str):
    for prefix, target in TARGETS.items():
        if path.startswith(prefix):
            return target
    return None


def _side_by_side(mode: str, src: str) -> tuple[str, list, str]:
    """The tool's report, its rows, and its build directory (kept for katran_clearing)."""
    env = dict(os.environ, KATRAN_SRC=src, LB_NETNS=f"{PREFIX}-lb", LAB_WAIT_S="0", PIN=PIN, KEEP_TMP="1")
    p = subprocess.run(["bash", TOOL], env=env, capture_output=True, text=True, timeout=1800)
    kept = re.search(r"^kept (/tmp/katran-side-by-side\.\w+)$", p.stderr, re.M)
    if p.returncode != 0:
        if kept:
            shutil.rmtree(kept[1], ignore_errors=True)
        raise RuntimeError(f"katran-side-by-side.sh ({mode}) failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    if not kept:
        raise RuntimeError(f"katran-side-by-side.sh ({mode}) kept no build directory:\n{p.stderr[-2000:]}")
    rows = []
    for line in p.stdout.splitlines():
        m = ROW.match(line)
        if m:
            k, o, f = int(m["k"]), int(m["o"]), int(m["f"])
            rows.append((m["path"], k, o, f))
    if not rows:
        shutil.rmtree(kept[1], ignore_errors=True)
        raise RuntimeError(f"no result table in the tool's output ({mode}):\n{p.stdout[-2000:]}")
    return p.stdout, rows, kept[1]


CLEARINGS = {
    "tool's": "the tool's: Katran its LRU + fallback_cache; ours CT + a walk of lb4_snat's 262,144 slots",
    "deletable": "each program's deletable flow tables only (ours: CT; the run's SNAT slots stay held)",
    "equal walk": "both as the tool's, and Katran also walks lb4_snat (the same idle time for both)",
    "whole": "the run's flows removed whole (ours: CT entries and the SNAT slots they hold, freed as the GC "
             "frees them; Katran: as deletable), both by bench/newflows.c",
}


def _clearing_table(mode: str, rows: list, clear_ms: dict) -> list[str]:
    """bench/katran_clearing.py's rows: the cleared-flows row under four ways of clearing."""
    target = TARGETS["new flow, run's flows cleared"]
    walk_ms = clear_ms["ours, tool's"]
    out = [f"New flows, the run's flows cleared every 2,000 calls, four ways ({mode.upper()}; "
           "bench/katran_clearing.py, same method, 3 interleaved rounds; one clear of 2,000 flows took "
           f"{clear_ms['katran']:.0f} ms for Katran's tables, {clear_ms['ours, deletable']:.0f} ms for our CT, "
           f"{walk_ms:.0f} ms with the walk of lb4_snat; removed whole, by batch: "
           f"{clear_ms['katran, whole']:.1f} ms for Katran's, {clear_ms['ours, whole']:.1f} ms for ours):", "",
           "| clearing | Katran ns | ours ns | ours / Katran | target | | per-round medians (Katran; ours) |",
           "|---|---:|---:|---:|---:|---|---|"]
    for clearing, k, o, ks, os_ in rows:
        ratio = o / k
        out.append(f"| {CLEARINGS[clearing]} | {k} | {o} | {ratio:.2f} | <= {target} | "
                   f"{'met' if ratio <= target else 'NOT met'} | {ks}; {os_} |")
    return out + [""]


def run() -> str:
    src = os.environ.get("KATRAN_SRC")
    if not src:
        raise Skipped("KATRAN_SRC is not set: give it a Katran source tree (fetched outside the "
                      "repository) to measure side by side")
    if not os.path.exists(TOOL):
        raise Skipped(f"no {TOOL} (set KATRAN_TOOL_DIR to the directory holding katran-side-by-side.sh)")
    out = []
    _play("teardown.yml")
    try:
        for mode in ("snat", "dsr"):
            _play("site.yml", mode)
            raw, rows, kept = _side_by_side(mode, src)
            try:
                clearing, clear_ms = katran_clearing.measure(kept, PIN)
            finally:
                shutil.rmtree(kept, ignore_errors=True)
            out += [f"### {mode.upper()} (`lb_xdp_{mode}`)", "",
                    "| path | Katran ns | ours ns | floor ns | ours / Katran | target | |",
                    "|---|---:|---:|---:|---:|---:|---|"]
            for path, k, o, f in rows:
                t = _target(path)
                ratio = o / k
                verdict = "" if t is None else ("met" if ratio <= t else "NOT met")
                out.append(f"| {path} | {k} | {o} | {f} | {ratio:.2f} | {'' if t is None else f'<= {t}'} | {verdict} |")
            keep = [ln for ln in raw.splitlines()
                    if ln.startswith(("Katran ", "  Maglev", "  per-CPU", "BPF_PROG", "per-round", "verdicts", "  est",
                                      "  new", "  pass", "entries deleted", "  round"))
                    or re.match(r"^\d+\.\d+", ln)]
            out += ["", "The tool's own report (medians per round, verdicts of the timed calls):", "", "```",
                    *keep, "```", ""]
            out += _clearing_table(mode, clearing, clear_ms)
    finally:
        _play("teardown.yml")
    return "\n".join(out) + "\n"
