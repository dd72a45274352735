"""Bounded traffic for the SNAT-port tests, run inside a lab namespace (nsenter --net=...):

    conn_load.py pace --rate 1000 --seconds 60     new connections at a steady rate, each one
                                                   GET with Connection: close, read to EOF
    conn_load.py reconnect --port 22100 --count 100  one fixed source port, connect/close in a row
    conn_load.py synflood --count 20000 --rate 1300  spoofed SYNs from lab addresses (raw socket)

Prints one JSON object. Every loop is bounded in count and time; the only destination is the
lab's VIP, and spoofed sources are unused addresses of the lab's own subnet.
"""

from __future__ import annotations

import argparse
import errno
import json
import random
import selectors
import socket
import struct
import time

VIP = "40.1.1.1"
REQUEST = f"GET / HTTP/1.1\r\nHost: {VIP}\r\nConnection: close\r\n\r\n".encode()
HARD_LIMIT_S = 150


def pace(rate: float, seconds: float, timeout: float) -> dict:
    """One new connection every 1/rate s for `seconds`; the server closes first (as with wrk's
    Connection: close), so each connection leaves the backend in TIME_WAIT on its tuple."""
    sel = selectors.DefaultSelector()
    total = int(rate * min(seconds, HARD_LIMIT_S - 30))
    start = time.monotonic()
    started = ok = 0
    failures: dict[str, int] = {}
    slow = 0        # connected only after a SYN retransmission (> 0.9 s)
    inflight = peak = 0

    def fail(key, why):
        nonlocal inflight
        failures[why] = failures.get(why, 0) + 1
        sel.unregister(key.fileobj)
        key.fileobj.close()
        inflight -= 1

    while (started < total or inflight) and time.monotonic() - start < HARD_LIMIT_S:
        now = time.monotonic()
        due = min(total, int((now - start) * rate) + 1)
        while started < due:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex((VIP, 80))
            if rc not in (0, errno.EINPROGRESS):
                failures[f"connect: {errno.errorcode.get(rc, rc)}"] = failures.get(f"connect: {errno.errorcode.get(rc, rc)}", 0) + 1
                s.close()
            else:
                sel.register(s, selectors.EVENT_WRITE, {"t0": now, "buf": b"", "sent": False})
                inflight += 1
                peak = max(peak, inflight)
            started += 1
        for key, _ in sel.select(timeout=0.0005):
            d, s = key.data, key.fileobj
            if not d["sent"]:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(key, f"connect: {errno.errorcode.get(err, err)}")
                    continue
                if time.monotonic() - d["t0"] > 0.9:
                    slow += 1
                try:
                    s.send(REQUEST)
                except OSError as exc:
                    fail(key, f"send: {exc.__class__.__name__}")
                    continue
                d["sent"] = True
                sel.modify(s, selectors.EVENT_READ, d)
                continue
            try:
                chunk = s.recv(65536)
            except OSError as exc:
                fail(key, f"recv: {exc.__class__.__name__}")
                continue
            if chunk:
                d["buf"] += chunk
                continue
            if not d["buf"].startswith(b"HTTP/1.1 200"):
                fail(key, "bad response")
                continue
            sel.unregister(s)
            s.close()
            inflight -= 1
            ok += 1
        now = time.monotonic()
        for key in list(sel.get_map().values()):
            if now - key.data["t0"] > timeout:
                fail(key, "timeout")
    elapsed = time.monotonic() - start
    for key in list(sel.get_map().values()):
        fail(key, "unfinished")
    failed = sum(failures.values())
    return {"started": started, "ok": ok, "failed": failed, "failures": failures, "slow": slow,
            "peak_inflight": peak, "seconds": round(elapsed, 2), "rate": round(started / elapsed, 1)}


TCP_CLOSE = 7             # tcpi_state: our FIN has been acknowledged
LAST_ACK_WAIT_S = 0.15    # below TCP's minimum RTO (200 ms): a lost ACK would take longer


def reconnect(port: int, count: int, timeout: float) -> dict:
    """The same client tuple, connect - GET - close (server first), `count` times in a row.

    The tuple is free for the next connect only once the backend's ACK of our FIN is back (until
    then our socket is in LAST_ACK and connect() fails with EADDRNOTAVAIL); each round waits for
    that, at most LAST_ACK_WAIT_S, so a late softirq does not fail the next rounds while an ACK
    the LB lost (it would come only after a FIN retransmission) still does."""
    ok, failures = 0, []
    for i in range(min(count, 1000)):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.settimeout(timeout)
        t0 = time.monotonic()
        try:
            s.bind(("0.0.0.0", port))
            s.connect((VIP, 80))
            s.sendall(REQUEST)
            buf = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            if not buf.startswith(b"HTTP/1.1 200"):
                raise ConnectionError("bad response")
            if time.monotonic() - t0 > 0.9:
                raise ConnectionError("slow: a SYN was retransmitted")
            s.shutdown(socket.SHUT_WR)
            acked_by = time.monotonic() + LAST_ACK_WAIT_S
            while s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != TCP_CLOSE:
                if time.monotonic() > acked_by:
                    raise ConnectionError(f"our FIN was not acknowledged within {LAST_ACK_WAIT_S} s")
                time.sleep(0.001)
            ok += 1
        except (OSError, ConnectionError) as exc:
            failures.append(f"{i}: {exc}")
        finally:
            s.close()
    return {"ok": ok, "failed": len(failures), "failures": failures[:10]}


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def synflood(count: int, rate: float, sources: int, first_host: int) -> dict:
    """`count` SYNs to VIP:80 from `sources` spoofed addresses 20.1.1.<first_host>.. with random
    ports; no handshake is ever completed."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    vip = socket.inet_aton(VIP)
    count = min(count, 50000)
    start = time.monotonic()
    rnd = random.Random(4242)
    for i in range(count):
        if time.monotonic() - start > HARD_LIMIT_S:
            break
        wait = start + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        src = socket.inet_aton(f"20.1.1.{first_host + i % sources}")
        sport = rnd.randrange(1024, 65535)
        tcp = struct.pack("!HHIIBBHHH", sport, 80, rnd.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0)
        pseudo = src + vip + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xFFFF, 0, 64, 6, 0, src, vip)
        ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
        raw.sendto(ip + tcp, (VIP, 0))
    elapsed = time.monotonic() - start
    raw.close()
    return {"sent": count, "seconds": round(elapsed, 2), "rate": round(count / elapsed, 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["pace", "reconnect", "synflood"])
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--port", type=int, default=22100)
    ap.add_argument("--sources", type=int, default=150)
    ap.add_argument("--first-host", type=int, default=101)
    ap.add_argument("--timeout", type=float, default=3.0)
    a = ap.parse_args()
    if a.what == "pace":
        out = pace(a.rate, a.seconds, a.timeout)
    elif a.what == "reconnect":
        out = reconnect(a.port, a.count, a.timeout)
    else:
        out = synflood(a.count, a.rate, a.sources, a.first_host)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
