"""Upload bench (issue 16): large HTTP uploads from the client through the VIP in SNAT and in DSR
(lab_dsr_fit=mtu, the default) and directly to a backend, in the same run.

Own prefix ($L4LB_BENCH_UPLOAD_PREFIX, default l4lbu): never touches `make lab`'s lab. Each
upload is one curl from the client namespace POSTing SIZE bytes to the backends' /sink location
(nginx reads the whole body, answers with its length); bounded by a per-upload timeout.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess

from bench.topology import _play as _topology_play

PREFIX = os.environ.get("L4LB_BENCH_UPLOAD_PREFIX", "l4lbu")
SIZE = int(os.environ.get("L4LB_BENCH_UPLOAD_BYTES", str(4 << 20)))
ROUNDS = int(os.environ.get("L4LB_BENCH_UPLOAD_ROUNDS", "15"))
TIMEOUT_S = 20
VIP, DIRECT = "40.1.1.1", "20.1.1.10"
TITLE = "Uploads through the VIP (issue 16): SNAT, DSR with lab_dsr_fit=mtu, direct"


def _play(playbook: str, extra: dict) -> None:
    """ansible-playbook as the other lab benches run it; this -e (our prefix) comes last and wins."""
    _topology_play(playbook, "-e", json.dumps(extra))


def _upload(url: str, path: str) -> float:
    """One upload; seconds curl took. Raises if it failed or the sink saw another size."""
    p = subprocess.run(["nsenter", f"--net=/run/netns/{PREFIX}-client", "--", "curl", "-s", "-m", str(TIMEOUT_S),
                        "-H", "Expect:", "--data-binary", f"@{path}", "-w", "\n%{time_total}", url],
                       capture_output=True, text=True, timeout=TIMEOUT_S + 10)
    body, _, secs = p.stdout.rpartition("\n")
    if p.returncode != 0 or body.strip() != f"received {SIZE}":
        raise RuntimeError(f"upload to {url} failed (curl rc {p.returncode}): {p.stdout!r} {p.stderr!r}")
    return float(secs)


def _measure(url: str, path: str) -> list:
    _upload(url, path)   # warm-up (connections, ARP, CT)
    return [_upload(url, path) for _ in range(ROUNDS)]


def run() -> str:
    state = f"/run/{PREFIX}"
    _play("teardown.yml", {"lab_prefix": PREFIX})
    try:
        _play("site.yml", {"lab_prefix": PREFIX})
        path = os.path.join(state, "upload.bin")
        with open(path, "wb") as f:
            f.write(os.urandom(SIZE))
        secs = {"direct": _measure(f"http://{DIRECT}/sink", path),
                "snat": _measure(f"http://{VIP}/sink", path)}
        _play("mode.yml", {"lab_prefix": PREFIX, "lb_mode": "dsr"})
        secs["dsr"] = _measure(f"http://{VIP}/sink", path)
        secs["direct_after"] = _measure(f"http://{DIRECT}/sink", path)
    finally:
        _play("teardown.yml", {"lab_prefix": PREFIX})

    def row(label, xs, ref):
        med = statistics.median(xs)
        return (f"| {label} | {med * 1000:.1f} | {min(xs) * 1000:.1f} | {max(xs) * 1000:.1f} | "
                f"{SIZE * 8 / med / 1e6:.0f} | {ref / med:.2f} |")

    ref = statistics.median(secs["direct"])
    lines = [
        f"{ROUNDS} uploads of {SIZE // (1 << 20)} MiB per path (after one warm-up), "
        f"each a `curl --data-binary` from the client namespace to the backends' `/sink` (nginx reads "
        f"the whole body); prefix `{PREFIX}`, default inventory (`lab_dsr_fit: mtu`: LB and backends "
        "at MTU 1520, client at 1500). Every process shares the same 2 cores.",
        "",
        "| path | median ms | min ms | max ms | Mbit/s (median) | x direct |",
        "|---|---|---|---|---|---|",
        row(f"direct to a backend ({DIRECT})", secs["direct"], ref),
        row("VIP, XDP LB in SNAT mode", secs["snat"], ref),
        row("VIP, XDP LB in DSR mode (IPIP, full-size client segments)", secs["dsr"], ref),
        row(f"direct to a backend again, after the DSR runs", secs["direct_after"], ref),
        "",
        "Before issue 16 the DSR row could not be measured: with MTU 1500 everywhere a full-size "
        "client segment plus the 20-byte IPIP header exceeded the LB's MTU, the LB passed it "
        "(`PASS_MTU`) and the upload stalled after the first window (`tests/lab/test_bulk.py` "
        "shows that with `lab_dsr_fit: none`).",
        "",
        "Reading: through the VIP each client packet crosses the LB node and two more veth pairs "
        "on the same 2 cores, so compare with the floor of an extra kernel-router hop (0.75-0.83x "
        "of direct for HTTP requests, shared/reference facts section 7), not with direct. DSR "
        "uploads cost about what SNAT ones do: the client's data takes the LB in both modes, only "
        "the small ACK stream skips it in DSR.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    print(run())


if __name__ == "__main__":
    main()
