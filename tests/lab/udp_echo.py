"""A UDP server for the lab tests, run in a backend's namespace: the users' UDP application.

    python udp_echo.py --name linux1 --bind 20.1.1.30:5353 --bind 40.1.1.1:5353

One socket per address, as UDP servers on a DSR backend are set up: a reply must leave from the
address the datagram was sent to (the VIP in DSR, the backend's own in SNAT), and a socket bound
to 0.0.0.0 would answer from the address the route picks. A request is b"<reply length>\\n" and a
payload; the reply is b"<name> <sha256 of the payload>\\n" padded with PATTERN to that length, so
the client checks what went each way. Prints "ready" once every socket is bound.
"""

from __future__ import annotations

import argparse
import hashlib
import select
import socket
import sys

PATTERN = bytes(range(256))


def padding(n: int) -> bytes:
    """The reply's known filler, n bytes of PATTERN repeated (udp_flows.py checks it)."""
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


def reply(name: str, request: bytes) -> bytes:
    head, _, payload = request.partition(b"\n")
    try:
        length = int(head)
    except ValueError:
        length = 0
    out = f"{name} {hashlib.sha256(payload).hexdigest()}\n".encode()
    return out + padding(max(0, length - len(out)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--bind", action="append", required=True, help="ADDR:PORT, repeatable")
    ap.add_argument("--tag", default="", help="ignored: names the lab in the command line (for clean-up)")
    args = ap.parse_args()
    socks = []
    for spec in args.bind:
        addr, port = spec.rsplit(":", 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((addr, int(port)))
        socks.append(s)
    print("ready", flush=True)
    while True:
        for s in select.select(socks, [], [])[0]:
            data, peer = s.recvfrom(65535)
            s.sendto(reply(args.name, data), peer)


if __name__ == "__main__":
    sys.exit(main())
