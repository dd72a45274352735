"""Datapath benchmark: ns per packet per path of bpf/lb_xdp.c, beside a MAC-swap XDP_TX floor.

    .venv/bin/python -m bench.datapath [--runs 20000] [--cpu N] [--out BENCHMARKS.md]

Method (reference/facts.md): BPF_PROG_TEST_RUN with repeat = 1 and a fresh copy of the packet on
every call (repeat > 1 would reuse the rewritten buffer and time another path), all calls from
this one process pinned to one CPU (os.sched_setaffinity), after a warm-up. Per path the median
of >= 10,000 calls of the kernel-measured run time (``duration``, ns) is reported, with the p90
and the median wall time of the whole syscall as seen from Python. Services are programmed
through the core (l4lb.reconcile); nothing is attached to an interface.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "module_utils"))

from l4lb import build, libbpf, maglev, reconcile  # noqa: E402
from l4lb.model import Service  # noqa: E402

TITLE = "Datapath: ns per packet"
PIN_ROOT = f"/sys/fs/bpf/l4lbt3-bench-{os.getpid()}"

LB_IP, LB_MAC = "20.1.1.1", "02:00:14:01:01:01"
VIP, VPORT = "40.1.1.1", 80
CLIENT = "20.1.1.100"
BACKENDS = ["20.1.1.10", "20.1.1.20", "20.1.1.30", "20.1.1.40"]
NEIGHBORS = {ip: f"02:00:14:01:01:{int(ip.split('.')[-1]):02x}" for ip in BACKENDS + [CLIENT]}


# --- packets (raw bytes: no scapy in the measuring process) -----------------------------------

def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return 0xFFFF - s


def _ip(a: str) -> bytes:
    return bytes(map(int, a.split(".")))


def tcp_packet(src: str, dst: str, sport: int, dport: int, flags: int = 0x10, payload: bytes = b"",
               smac: str = "02:00:14:01:01:64", dmac: str = LB_MAC) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1000, 1, 5 << 4, flags, 65535, 0, 0) + payload
    pseudo = _ip(src) + _ip(dst) + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, _ip(src), _ip(dst))
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    eth = bytes.fromhex(dmac.replace(":", "")) + bytes.fromhex(smac.replace(":", "")) + b"\x08\x00"
    return eth + ip + tcp


PAYLOAD = b"GET / HTTP/1.1\r\nHost: 40.1.1.1\r\n\r\n"


# --- measuring --------------------------------------------------------------------------------

def measure(runner: libbpf.TestRunner, packets, runs: int, warmup: int, expect: int,
            every: int = 0, between=None):
    """Run ``runs`` packets (cycling through ``packets``) after ``warmup``; kernel ns and wall ns.
    ``between()`` is called (untimed) after every ``every`` runs."""
    run = runner.run
    n = len(packets)
    for i in range(warmup):
        run(packets[i % n])
    if between:
        between()
    kern, wall = [], []
    clock = time.perf_counter_ns
    for i in range(runs):
        p = packets[(warmup + i) % n]
        t0 = clock()
        ret, dur = run(p)
        t1 = clock()
        if ret != expect:
            raise RuntimeError(f"verdict {ret}, expected {expect}")
        kern.append(dur)
        wall.append(t1 - t0)
        if between and (i + 1) % every == 0:
            between()
    kern.sort()
    return {"median": statistics.median(kern), "p90": kern[int(len(kern) * 0.9)],
            "wall": statistics.median(wall), "runs": runs}


def clear_flows(obj: libbpf.BpfObject):
    """Forget every flow (CT entries deleted, SNAT slots freed), as if each run of new flows
    met an idle LB."""
    def clear():
        with obj.map("ct4_global") as m:
            m.delete_batch(list(m.keys()))
        with obj.map("lb4_snat") as m:
            free = bytes(m.value_size)
            m.update_batch([(k, free) for k, v in m.items_list() if v != free])
    return clear


class Loaded:
    def __init__(self, path: str, pin_root: str | None, prog: str | None = None):
        self.obj = libbpf.BpfObject(path, pin_root)
        self.obj.load()
        self.fd = os.dup(self.obj.program(prog).fd)
        self.runner = libbpf.TestRunner(self.fd, 4096)

    def close(self):
        os.close(self.fd)
        self.obj.close()


def program_services(pin_root: str) -> None:
    maps = reconcile.LBMaps.open(pin_root, maglev_size=maglev.DEFAULT_SIZE)
    try:
        svc = Service.parse(id=1, frontend=f"{VIP}:{VPORT}", backends=",".join(f"{b}:80" for b in BACKENDS))
        reconcile.reconcile(maps, [svc], neighbors=NEIGHBORS)
    finally:
        maps.close()


def load_programmed(path: str, name: str, loaded: list) -> Loaded:
    """The LB object loaded with its maps pinned under PIN_ROOT/<name>, the seed's service
    programmed through the core; remembered in ``loaded`` for cleanup."""
    root = os.path.join(PIN_ROOT, name)
    os.makedirs(root)
    lb = Loaded(path, root)
    loaded.append(lb)
    program_services(root)
    return lb


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        jit = open("/proc/sys/net/core/bpf_jit_enable").read().strip()
    except OSError:
        jit = "?"
    return (f"{cpu}, {os.cpu_count()} CPUs, kernel {platform.release()}, bpf_jit_enable={jit}, "
            f"{build.clang_version()}, libbpf {_libbpf_version()}")


def _libbpf_version() -> str:
    try:
        out = subprocess.run(["bpftool", "version"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if "libbpf" in line:
                return line.split()[-1]
    except OSError:
        pass
    return "?"


def bench(runs: int = 20000, cpu: int | None = None) -> tuple[list, dict]:
    """Measure every path; returns (rows, info)."""
    if runs < 10000:
        raise SystemExit("--runs must be >= 10000 (the median of at least 10,000 runs)")
    cpus = sorted(os.sched_getaffinity(0))
    cpu = cpus[-1] if cpu is None else cpu
    os.sched_setaffinity(0, {cpu})
    tmp = tempfile.mkdtemp(prefix="l4lb-bench-")
    os.makedirs(PIN_ROOT, exist_ok=True)
    loaded = []
    rows = []
    warm = 2000
    try:
        objs = {}
        for mode in ("snat", "dsr"):
            cfg = build.BuildConfig(lb_ip=LB_IP, lb_mac=LB_MAC, ifindex=1, mode=mode)
            objs[mode] = build.compile_lb(cfg, os.path.join(tmp, f"lb_{mode}.o")).path
        floor_obj = build.compile_object(os.path.join(REPO, "bpf", "bench", "xdp_macswap.c"),
                                         os.path.join(tmp, "xdp_macswap.o"),
                                         include_dirs=[os.path.join(REPO, "bpf", "include")]).path

        floor = Loaded(floor_obj, None, "xdp_macswap")
        loaded.append(floor)
        est = tcp_packet(CLIENT, VIP, 40000, VPORT, 0x18, PAYLOAD)
        rows.append(("floor: MAC swap, XDP_TX", "TX", measure(floor.runner, [est], runs, warm, libbpf.XDP_TX)))

        # SNAT program; maps pinned under PIN_ROOT/snat and programmed through the core.
        snat = load_programmed(objs["snat"], "snat", loaded)
        # new flows: every packet a different client tuple (SYN), never seen before
        news = [tcp_packet(f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255 or 1}", VIP, 1024 + i % 60000, VPORT, 0x02)
                for i in range(runs + warm)]
        rows.append(("SNAT new flow (Maglev + CT + SNAT port)", "TX",
                     measure(snat.runner, news, runs, warm, libbpf.XDP_TX, 2000, clear_flows(snat.obj))))

        def ablation(knobs):
            cfg = build.BuildConfig(lb_ip=LB_IP, lb_mac=LB_MAC, ifindex=1, mode="snat")
            defines = {**build.render_defines(cfg), **{k: "1" for k in knobs}}
            name = "_".join(k.replace("LB_BENCH_", "").lower() for k in knobs)
            path = build.compile_object(os.path.join(REPO, "bpf", "lb_xdp.c"), os.path.join(tmp, f"{name}.o"),
                                        defines).path
            return load_programmed(path, name, loaded)

        # Where a new flow's time goes: the same program without its CT insert, without its
        # Maglev lookup (outer hash of maps + inner array), without both.
        for label, knobs in (("SNAT new flow, no CT insert", ["LB_BENCH_NO_CT_INSERT"]),
                             ("SNAT new flow, no Maglev lookup", ["LB_BENCH_NO_MAGLEV"]),
                             ("SNAT new flow, neither", ["LB_BENCH_NO_CT_INSERT", "LB_BENCH_NO_MAGLEV"])):
            ab = ablation(knobs)
            rows.append((f"({label})", "TX", measure(ab.runner, news, runs, warm, libbpf.XDP_TX, 2000,
                                                      clear_flows(ab.obj))))
        rows.append(("SNAT established (CT hit)", "TX", measure(snat.runner, [est], runs, warm, libbpf.XDP_TX)))
        # Where the established path's time goes: the same program without the per-flow
        # timestamp (LB_NOW_NS, read once per tick) and without the per-backend counter.
        for label, knobs in (("SNAT established, no CT timestamp", ["LB_BENCH_NO_CT_TIME"]),
                             ("SNAT established, no CT timestamp, no backend counter",
                              ["LB_BENCH_NO_CT_TIME", "LB_BENCH_NO_BACKEND_STATS"])):
            ab = ablation(knobs)
            rows.append((f"({label})", "TX", measure(ab.runner, [est], runs, warm, libbpf.XDP_TX)))
        snat.runner.run(est)
        out = snat.runner.output()
        backend, nat_port = ".".join(map(str, out[30:34])), struct.unpack("!H", out[34:36])[0]
        reply = tcp_packet(backend, LB_IP, 80, nat_port, 0x18, b"HTTP/1.1 200 OK\r\n\r\n",
                           smac=NEIGHBORS[backend])
        rows.append(("SNAT reply (reverse NAT)", "TX", measure(snat.runner, [reply], runs, warm, libbpf.XDP_TX)))
        other = tcp_packet(CLIENT, "40.1.1.2", 40000, VPORT, 0x18, PAYLOAD)
        rows.append(("non-VIP pass", "PASS", measure(snat.runner, [other], runs, warm, libbpf.XDP_PASS)))

        dsr = load_programmed(objs["dsr"], "dsr", loaded)
        rows.append(("DSR new flow (Maglev + CT + IPIP)", "TX",
                     measure(dsr.runner, news, runs, warm, libbpf.XDP_TX, 2000, clear_flows(dsr.obj))))
        rows.append(("DSR established (CT hit + IPIP)", "TX", measure(dsr.runner, [est], runs, warm, libbpf.XDP_TX)))
    finally:
        for x in loaded:
            x.close()
        shutil.rmtree(PIN_ROOT, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return rows, {"cpu": cpu, "runs": runs, "machine": machine()}


def render(rows, info, with_machine: bool = True) -> str:
    floor = rows[0][2]["median"]
    lines = []
    if with_machine:
        lines.append(f"Machine: {info['machine']}.")
        lines.append("")
    lines += [
        f"BPF_PROG_TEST_RUN, repeat = 1, a fresh copy of the packet per call, {info['runs']} calls per path "
        f"after 2,000 warm-up calls, one process pinned to CPU {info['cpu']}. New-flow paths: every "
        "call a tuple never seen, CT and SNAT entries cleared (untimed) every 2,000 calls. *kernel ns*: the run time "
        "the kernel reports per call (median, p90); *call ns*: the whole syscall seen from Python "
        "(median). Established paths target: <= 3x the floor. Rows in parentheses are benchmark-only "
        "builds (LB_BENCH_* macros, bpf/include/bench.h) that leave one step out to show what it costs; "
        "they are not shipped.",
        "",
        "| path | verdict | kernel ns (median) | kernel ns (p90) | call ns (median) | x floor |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, verdict, r in rows:
        ratio = r["median"] / floor if floor else float("nan")
        lines.append(f"| {name} | {verdict} | {r['median']:.0f} | {r['p90']:.0f} | {r['wall']:.0f} | {ratio:.2f} |")
    est = [r["median"] / floor for n, _, r in rows if "established" in n and not n.startswith("(")]
    lines.append("")
    lines.append(f"Established paths: {', '.join(f'{x:.2f}x' for x in est)} the floor "
                 f"({'within' if all(x <= 3 for x in est) else 'ABOVE'} the 3x target).")
    return "\n".join(lines) + "\n"


def run() -> str:
    """bench.run entry point: the section body (bench.run adds its own machine line)."""
    rows, info = bench()
    return render(rows, info, with_machine=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="ns per packet per datapath path")
    ap.add_argument("--runs", type=int, default=20000)
    ap.add_argument("--cpu", type=int, default=None)
    ap.add_argument("--out", help="also write the section into this Markdown file (e.g. BENCHMARKS.md)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("needs root (BPF_PROG_TEST_RUN, bpffs)")
    rows, info = bench(args.runs, args.cpu)
    body = render(rows, info)
    print(f"## {TITLE}\n\n{body}")
    if args.out:
        try:
            from bench.run import write_section
        except ImportError:
            write_section = _write_section
        write_section(args.out, "datapath", TITLE, body)
    return 0


def _write_section(path: str, name: str, title: str, body: str) -> None:
    """Fallback when bench.run is absent: same markers, replaces only this section."""
    import re
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmarks\n"
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    section = f"{start}\n## {title}\n\n{body.rstrip()}\n{end}"
    pat = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pat.sub(lambda _: section, text) if pat.search(text) else text.rstrip() + "\n\n" + section + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    raise SystemExit(main())
