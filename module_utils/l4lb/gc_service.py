# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The GC loop as a process on the LB node: ``l4lbctl ct gc --every N`` kept running, judged by
what runs (its command line, in this network namespace), never by a pid file.

The datapath needs no GC to work (a new flow takes over a SNAT port whose flow is over), but
without one the CT and SNAT maps keep every finished flow until reused or LRU-evicted; the loop
keeps them to live flows plus those in their guard time, as Cilium's agent does with its CT GC.
On a systemd host the same command line belongs in a unit; in the embedded lab it runs in the LB
node's namespace and teardown ends it with every other process there.
"""

from __future__ import annotations

import json
import os
import time

from .errors import L4LBError
from .lifetimes import CtTimeouts
from . import procs


def command(python: str, l4lbctl: str, pin_dir: str, timeouts, every_s: float) -> list[str]:
    t = CtTimeouts.parse(timeouts)
    if not every_s > 0:
        raise L4LBError(f"every: {every_s!r} is not a positive number of seconds")
    return [python, l4lbctl, "--pin-dir", pin_dir, "ct", "gc", "--every", f"{float(every_s):g}",
            "--timeouts", json.dumps(t.as_dict(), sort_keys=True, separators=(",", ":"))]


def running(pin_dir: str) -> dict[int, list[str]]:
    """pid -> argv of every GC loop for ``pin_dir`` in this network namespace."""
    me = procs.netns_ino()
    out = {}
    for pid in procs.pids():
        argv = procs.cmdline(pid)
        if len(argv) < 8 or argv[-6:-4] != ["ct", "gc"] or "--every" not in argv:
            continue
        if argv[2:4] != ["--pin-dir", pin_dir]:
            continue
        if procs.netns_ino(pid) == me:
            out[pid] = argv
    return out


def _stop(pid: int) -> None:
    if procs.terminate([pid]):
        raise L4LBError(f"GC loop pid {pid} did not stop")


def ensure(pin_dir: str, state: str = "started", timeouts=None, every_s: float = 5.0, l4lbctl: str = "",
           python: str = "python3", log: str = "/dev/null", check_mode: bool = False) -> dict:
    """state started: exactly one loop with this command line runs; stopped: none runs."""
    if state not in ("started", "stopped"):
        raise L4LBError(f"state: {state!r} is not 'started' or 'stopped'")
    want = None
    if state == "started":
        # In check mode the copy that would bring l4lbctl has not happened either.
        if not l4lbctl or not (check_mode or os.path.isfile(l4lbctl)):
            raise L4LBError(f"l4lbctl: {l4lbctl!r} is not a file on this node")
        want = command(python, l4lbctl, pin_dir, timeouts, every_s)
    have = running(pin_dir)
    # argv[0] is compared by name only: an interpreter given as "python3" may re-exec itself
    # under its full path (pyenv shims, alternatives).
    keep = [pid for pid, argv in have.items()
            if want and argv[1:] == want[1:] and os.path.basename(argv[0]).startswith(os.path.basename(want[0]))]
    stop = [pid for pid in have if pid not in keep[:1]]
    start = want is not None and not keep
    changed = bool(stop) or start
    result = {"changed": changed, "stopped": sorted(stop), "command": want,
              "diff": {"before": {"gc_loops": sorted(" ".join(a) for a in have.values())},
                       "after": {"gc_loops": [" ".join(want)] if want else []}}}
    if check_mode or not changed:
        result["pid"] = keep[0] if keep else None
        return result
    for pid in stop:
        _stop(pid)
    if start:
        if not os.path.isdir(os.path.join(pin_dir, "maps")):
            raise L4LBError(f"no load balancer is loaded: {pin_dir}/maps does not exist")
        os.makedirs(os.path.dirname(log) or ".", exist_ok=True)
        proc = procs.spawn_detached(want, log)
        time.sleep(0.3)
        if proc.poll() is not None:
            raise L4LBError(f"GC loop exited at once (exit {proc.returncode}); see {log}")
        result["pid"] = proc.pid
    else:
        result["pid"] = keep[0] if keep else None
    return result
