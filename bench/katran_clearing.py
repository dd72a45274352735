"""The "flows cleared every 2000" row of the side-by-side, measured with four ways of clearing.

bench/katran.py runs the workplace's tool, whose trbench clears a run's flows every 2,000 calls
(untimed) by walking each table it was given (`-x`) and deleting the run's entries. Katran's
tables are hashes: the walk visits the run's 2,000 entries and takes 2-3 ms. Ours include
lb4_snat, an ARRAY of 262,144 slots that cannot be deleted from: the walk is one get_next_key
and one lookup syscall per slot, 160-180 ms, deletes nothing, and leaves the program idle
that long before each 2,000 calls. On this kind of machine memory left idle for 100+ ms comes
back slow (the same idle time spent in a sleep has the same effect; the MAC-swap floor, which
touches no map, has none), so every new flow after such a clear costs more, whatever the
program. This bench shows how much of the row is that clearing and not the datapath:

    tool's       Katran: its LRU + fallback_cache; ours: CT + the walk of lb4_snat (the tool)
    deletable    each program's deletable flow tables only (ours: CT; the run's SNAT slots stay
                 held by flows whose CT entry is gone, which our datapath must then judge free)
    equal walk   both: their tables as the tool's, and Katran also walks lb4_snat, so both
                 programs sit through the same 160-180 ms before each 2,000 calls
    whole        the run's flows removed whole, as the tool means to: Katran's as deletable;
                 ours, each CT entry deleted and the lb4_snat slot it names freed (written zero,
                 as the control plane's GC frees a gone flow's slot). trbench deletes by key
                 only, so both programs run under bench/newflows.c: trbench's method, with
                 clears by batch (a few syscalls each, about 1 ms for either program). Katran's
                 figure here beside its "deletable" one shows what the two drivers' clears change

It reuses what the tool built (its kept build directory: trbench, Katran's object, the Maglev
ring Katran's own code generated, the packets) and loads and programs Katran again the way the
tool does, then puts Katran's new tables through the tool's "tables fill" runs, as the tool's
run put both programs'. Same method as the tool: trbench -p, 2,000 warm-up + 20,000 timed calls,
one CPU, rounds interleaved with the order rotated; and, as the tool's report shows, every run's
flows must all have been tracked. Katran stops tracking new flows past 125,000 in one second
(MAX_CONN_RATE, its flood guard), so each of its runs starts a second after its previous one.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from bench.topology import PREFIX, REPO

sys.path.insert(0, os.path.join(REPO, "module_utils"))
from l4lb import structs  # noqa: E402  (the layouts, declared once)

VIP, VPORT = "40.1.1.1", 80
REALS = ["20.1.1.10", "20.1.1.20", "20.1.1.30", "20.1.1.40"]
ROUTER_MAC = "00:00:de:ad:be:af"     # the tool's: Katran's tests' kDefaultMac
KATRAN_LRU = 65536                   # the tool's default per-CPU LRU size
CPU, WARM, N, EVERY, ROUNDS = 1, 2000, 20000, 2000, 3
FIRST_FLOW = 1_000_000               # above every flow index the tool uses
KATRAN_QUANTUM_S = 1.05              # Katran counts new flows per second (ONE_SEC) for its flood guard
CLEARINGS = ("tool's", "deletable", "equal walk", "whole")
CELLS = [(clearing, program) for clearing in CLEARINGS for program in ("katran", "ours")]
NEWFLOWS_SRC = os.path.join(REPO, "bench", "newflows.c")


def _sh(*argv: str, **kw) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw).stdout


def _hex(data: bytes) -> list[str]:
    return ["hex", *(f"{b:02x}" for b in data)]


def _ip(a: str) -> bytes:
    return bytes(map(int, a.split(".")))


def _our_tables() -> tuple[int, dict]:
    """The live program's id and its maps by name (as the tool finds them)."""
    link = json.loads(_sh("ip", "-n", f"{PREFIX}-lb", "-j", "link", "show", "eth0"))
    prog = link[0]["xdp"]["prog"]["id"]
    maps = {}
    for m in json.loads(_sh("bpftool", "-j", "prog", "show", "id", str(prog)))["map_ids"]:
        maps[json.loads(_sh("bpftool", "-j", "map", "show", "id", str(m)))["name"]] = m
    return prog, maps


def _load_katran(kept: str, pin: str) -> None:
    """Katran as the tool loads and programs it ("load and program Katran" in the tool)."""
    shutil.rmtree(pin, ignore_errors=True)
    os.makedirs(pin)
    maps = f"{pin}/maps"
    _sh("bpftool", "prog", "loadall", f"{kept}/katran-build/bpf/balancer.o", f"{pin}/prog", "type", "xdp",
        "pinmaps", maps)
    vip_key = _ip(VIP) + bytes(12) + VPORT.to_bytes(2, "big") + b"\x06\x00"
    _sh("bpftool", "map", "update", "pinned", f"{maps}/vip_map", "key", *_hex(vip_key), "value", *_hex(bytes(8)))
    for i, real in enumerate(REALS, 1):
        _sh("bpftool", "map", "update", "pinned", f"{maps}/reals", "key", *_hex(i.to_bytes(4, "little")),
            "value", *_hex(_ip(real) + bytes(16)))
    # the ring the tool generated with Katran's own Maglev code, as bpftool batch lines naming
    # the tool's pin path, which is this one
    _sh("bpftool", "batch", "file", f"{kept}/ring.batch")
    mac = bytes(int(x, 16) for x in ROUTER_MAC.split(":"))
    _sh("bpftool", "map", "update", "pinned", f"{maps}/ctl_array", "key", *_hex(bytes(4)),
        "value", *_hex(mac + bytes(2)))
    for cpu in range(os.cpu_count() or 1):
        _sh("bpftool", "map", "create", f"{pin}/lru{cpu}", "type", "lru_hash", "key", "40", "value", "16",
            "entries", str(KATRAN_LRU), "name", f"katran_lru{cpu}")
        _sh("bpftool", "map", "update", "pinned", f"{maps}/lru_mapping", "key", *_hex(cpu.to_bytes(4, "little")),
            "value", "pinned", f"{pin}/lru{cpu}")


def _trbench(kept: str, target: str, tables: list[str], first: int, n: int, *opts: str) -> list[str]:
    """trbench's argv: new flows from index `first` (ports 10000.., as the tool's), `tables` (-x)."""
    return ["taskset", "-c", str(CPU), f"{kept}/trbench", *opts, "-p", "-P", "10000", "-R", "20000",
            "-o", str(first), *[a for t in tables for a in ("-x", t)], target, f"{kept}/new.bin", str(n)]


def _newflows(kept: str, target: str, tables: list[str], first: int, n: int) -> list[str]:
    """bench/newflows.c's argv, the counterpart of _trbench: `tables` are its -k/-s options."""
    return ["taskset", "-c", str(CPU), f"{kept}/newflows", "-w", str(WARM), "-c", str(EVERY), "-P", "10000",
            "-R", "20000", "-o", str(first), *tables, target, f"{kept}/new.bin", str(n)]


def measure(kept: str, pin: str) -> tuple[list[tuple], dict]:
    """Rows (clearing, Katran ns, ours ns, Katran's per-round medians, ours): the ns are medians
    over rounds of each run's median; and the clear's duration per program (ms, one clear of
    2,000 flows)."""
    prog, ours = _our_tables()
    tup, ent, slot = structs.Ipv4CtTuple, structs.CtEntry, structs.SnatEntry
    ct = f"{ours['ct4_global']}:k:{tup.saddr.offset}:{tup.sport.offset}"
    snat = f"{ours['lb4_snat']}:v:{slot.client_addr.offset}:{slot.client_port.offset}"
    _sh("gcc", "-O2", "-Wall", "-o", f"{kept}/newflows", NEWFLOWS_SRC, "-lbpf")  # as the tool builds trbench
    _load_katran(kept, pin)
    katran_prog = f"{pin}/prog/" + sorted(os.listdir(f"{pin}/prog"))[0]
    katran = [f"{pin}/lru{CPU}:k:0:32", f"{pin}/maps/fallback_cache:k:0:32"]
    katran_whole = [a for t in katran for a in ("-k", t.replace(":k:", ":"))]
    ours_whole = ["-s", f"{ours['ct4_global']}:{ours['lb4_snat']}:{tup.saddr.offset}:{tup.sport.offset}:"
                  f"{ent.nat_port.offset}:{ent.backend_id.offset}:{structs.SNAT_SLOTS}"]
    plan = {("tool's", "katran"): katran, ("tool's", "ours"): [ct, snat],
            ("deletable", "katran"): katran, ("deletable", "ours"): [ct],
            ("equal walk", "katran"): katran + [snat], ("equal walk", "ours"): [ct, snat],
            ("whole", "katran"): katran_whole, ("whole", "ours"): ours_whole}
    medians: dict = {cell: [] for cell in CELLS}
    whole_clear_us: dict = {"katran": [], "ours": []}
    first = FIRST_FLOW
    katran_done = 0.0

    def run(cell, argv: list[str]) -> str:
        """One run; every one of its flows must have been tracked (and deleted afterwards)."""
        nonlocal katran_done
        if cell[1] == "katran":
            # Katran stops tracking new flows past MAX_CONN_RATE (125,000) in one second, its
            # flood guard: a new flow then costs it no LRU insert (about 150 ns here, where
            # tracked ones cost 250-330). Its runs start a new second each, so every flow of
            # theirs is tracked, as every one of ours is.
            time.sleep(max(0.0, katran_done + KATRAN_QUANTUM_S - time.monotonic()))
        out = _sh(*argv)
        if cell[1] == "katran":
            katran_done = time.monotonic()
        deleted = int(out.split("deleted=")[1].split()[0])
        if deleted != WARM + N:
            raise RuntimeError(f"{cell}: {deleted} of {WARM + N} flows tracked:\n{out}")
        return out

    try:
        # Katran's tables are new (reloaded); ours have been through the tool's run. Give Katran's
        # the history the tool gave both programs' tables, its "tables fill" runs (22,000 new
        # flows each, nothing cleared, deleted afterwards): a new LRU hands out its free entries
        # in address order, a used one in no order, which may change what an insert costs.
        for _ in range(ROUNDS):
            run(("fill", "katran"), _trbench(kept, katran_prog, katran, first, N, "-v", "-w", str(WARM)))
            first += WARM + N
        for r in range(ROUNDS):
            for i in range(len(CELLS)):
                cell = CELLS[(i + r) % len(CELLS)]
                target = katran_prog if cell[1] == "katran" else str(prog)
                if cell[0] == "whole":
                    out = run(cell, _newflows(kept, target, plan[cell], first, N))
                    whole_clear_us[cell[1]].append(int(out.split("clear_us=")[1].split()[0]))
                else:
                    out = run(cell, _trbench(kept, target, plan[cell], first, N, "-v", "-w", str(WARM),
                                             "-c", str(EVERY)))
                median, _p10, _p90, verdict = map(int, out.split()[:4])
                if verdict != 3:
                    raise RuntimeError(f"{cell}: verdict {verdict}, not XDP_TX:\n{out}")
                medians[cell].append(median)
                first += WARM + N
        clear_ms = {}
        for name, tables in (("katran", katran), ("ours, tool's", [ct, snat]), ("ours, deletable", [ct])):
            t = []
            for _ in range(3):
                target = katran_prog if name == "katran" else str(prog)
                t0 = time.monotonic()
                _sh(*_trbench(kept, target, tables, first, EVERY, "-D"))
                t.append((time.monotonic() - t0) * 1000)
            clear_ms[name] = statistics.median(t)
        for name, us in whole_clear_us.items():
            clear_ms[f"{name}, whole"] = statistics.median(us) / 1000
    finally:
        # whatever a failed run left of its flows in our CT (Katran's tables go with its pins)
        subprocess.run(_trbench(kept, str(prog), [ct], FIRST_FLOW, first - FIRST_FLOW + WARM + N, "-D"),
                       check=False, capture_output=True)
        shutil.rmtree(pin, ignore_errors=True)
    rows = []
    for clearing in CLEARINGS:
        rows.append((clearing, int(statistics.median(medians[(clearing, "katran")])),
                     int(statistics.median(medians[(clearing, "ours")])),
                     medians[(clearing, "katran")], medians[(clearing, "ours")]))
    return rows, clear_ms
