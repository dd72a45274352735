"""A bounded HTTP client for the reliability tests, run inside the client's network namespace:

    nsenter --net=/run/netns/<prefix>-client python http_client.py load --count 500 --rate 50
    ... flows --base-port 21000 --count 100      (one request per fixed source port)
    ... hold --seconds 20 --interval 0.5         (one keep-alive connection, a request every interval)
    ... sticky --base-port 21000 --count 120     (N keep-alive connections from fixed ports: a
        request on each, then, after a line on stdin, a second request on each; a connection
        that fails is reopened from the same port)
    ... steady --base-port 23000 --count 100 --interval 0.1   (N keep-alive connections from
        fixed ports, a request on each every interval until a line on stdin: per port its first
        backend, every other backend that answered, requests and the failure that ended it)

Prints one JSON object: per-backend counts (X-Backend), failures, and per-port backends.
Every loop is bounded in count and time; the only destination is the lab's VIP.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import struct
import sys
import time

VIP = "40.1.1.1"


def request(sock: socket.socket, keepalive: bool) -> str:
    conn = "keep-alive" if keepalive else "close"
    sock.sendall(f"GET / HTTP/1.1\r\nHost: {VIP}\r\nConnection: {conn}\r\n\r\n".encode())
    return request_read(sock)


def request_read(sock: socket.socket) -> str:
    """Read one response; its X-Backend header."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the headers")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    if " 200 " not in lines[0]:
        raise ConnectionError(f"status {lines[0]!r}")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed in the body")
        body += chunk
    return headers.get("x-backend", "?")


def one(port: int | None, timeout: float) -> str:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        if port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
        s.connect((VIP, 80))
        return request(s, keepalive=False)
    finally:
        s.close()


def _connect(port: int, timeout: float) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.connect((VIP, 80))
    return s


def sticky(a) -> int:
    """Established flows across a change: phase 1 opens and uses N connections, the caller
    changes the lab, phase 2 reuses each connection (or reopens it from the same port)."""
    count = min(a.count, 500)
    socks, first = {}, {}
    for i in range(count):
        port = a.base_port + i
        socks[port] = _connect(port, a.timeout)
        first[port] = request(socks[port], keepalive=True)
    print(json.dumps({"first": first}), flush=True)
    sys.stdin.readline()  # the caller's change is done
    second, reopened = {}, {}
    for port, s in socks.items():
        try:
            second[port] = request(s, keepalive=True)
        except (OSError, ConnectionError):
            # abortive close (RST, no FIN_WAIT/TIME_WAIT): the same 4-tuple is free at once for
            # the reopen; a graceful close could still hold it when the broken flow's RST has
            # not arrived yet (connect would fail with EADDRNOTAVAIL)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            try:
                s = _connect(port, a.timeout)
                reopened[port] = request(s, keepalive=False)
            except (OSError, ConnectionError) as exc:
                reopened[port] = f"failed: {exc}"
        s.close()
    print(json.dumps({"second": second, "reopened": reopened}), flush=True)
    return 0


def steady(a) -> int:
    """Long-lived connections across a change (the LB tier): every interval a request on each
    live connection (all sent, then all read: N requests in flight at once); a connection whose
    request fails is recorded and not reopened. Prints {"ready": ...} once every connection has
    answered, then the result after a line on stdin (or the hard deadline)."""
    count = min(a.count, 500)
    deadline = time.monotonic() + min(a.seconds, 150)
    socks, ports = {}, {}
    for i in range(count):
        port = a.base_port + i
        socks[port] = _connect(port, a.timeout)
        ports[port] = {"first": request(socks[port], keepalive=True), "others": [], "requests": 1,
                       "failed": None}
    print(json.dumps({"ready": {p: v["first"] for p, v in ports.items()}}), flush=True)
    msg = f"GET / HTTP/1.1\r\nHost: {VIP}\r\nConnection: keep-alive\r\n\r\n".encode()
    start, ticks, late = time.monotonic(), 0, 0
    while time.monotonic() < deadline:
        if select.select([sys.stdin], [], [], 0)[0]:
            break
        tick = start + ticks * a.interval
        wait = tick - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        else:
            late += 1
        ticks += 1
        live = [p for p, v in ports.items() if v["failed"] is None]
        sent = []
        for p in live:
            try:
                socks[p].sendall(msg)
                sent.append(p)
            except OSError as exc:
                ports[p]["failed"] = f"{time.monotonic() - start:.2f}s send: {type(exc).__name__}: {exc}"
        for p in sent:
            try:
                b = request_read(socks[p])
            except (OSError, ConnectionError) as exc:
                ports[p]["failed"] = f"{time.monotonic() - start:.2f}s: {type(exc).__name__}: {exc}"
                continue
            v = ports[p]
            v["requests"] += 1
            if b != v["first"] and b not in v["others"]:
                v["others"].append(b)
    for s in socks.values():
        s.close()
    print(json.dumps({"seconds": round(time.monotonic() - start, 2), "ticks": ticks, "late_ticks": late,
                      "requests": sum(v["requests"] for v in ports.values()),
                      "ports": ports}), flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["load", "flows", "hold", "sticky", "steady"])
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--rate", type=float, default=50.0, help="requests per second (load)")
    ap.add_argument("--base-port", type=int, default=21000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--timeout", type=float, default=3.0)
    a = ap.parse_args()
    counts: dict[str, int] = {}
    failures: list[str] = []
    ports: dict[int, str] = {}
    deadline = time.monotonic() + 120  # hard bound for any mode
    if a.what == "sticky":
        return sticky(a)
    if a.what == "steady":
        return steady(a)
    if a.what == "hold":
        s = socket.create_connection((VIP, 80), timeout=a.timeout)
        end = min(time.monotonic() + a.seconds, deadline)
        n = 0
        while time.monotonic() < end:
            try:
                b = request(s, keepalive=True)
                counts[b] = counts.get(b, 0) + 1
            except (OSError, ConnectionError) as exc:
                failures.append(f"request {n}: {exc}")
                break
            n += 1
            time.sleep(a.interval)
        s.close()
    else:
        start = time.monotonic()
        for i in range(min(a.count, 5000)):
            if time.monotonic() > deadline:
                failures.append("deadline")
                break
            if a.what == "load":
                wait = start + i / a.rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            port = a.base_port + i if a.what == "flows" else None
            try:
                b = one(port, a.timeout)
                counts[b] = counts.get(b, 0) + 1
                if port:
                    ports[port] = b
            except (OSError, ConnectionError) as exc:
                failures.append(f"request {i}: {type(exc).__name__}: {exc}")
    json.dump({"counts": counts, "failures": failures, "ports": ports}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
