"""UDP flows from the client to a UDP service, run in the client's namespace (tests/lab/test_udp.py).

    python udp_flows.py --vip 40.1.1.1 --port 5353 --src 20.1.1.100 --sport 41000 --flows 64 --rounds 3

Flow i is the socket bound to src:(sport + i) and connected to vip:port, so it takes replies from
vip:port only. Each round, each flow in turn sends one request (udp_echo.py's format: the reply
length, then --up random bytes) and waits for its answer, resending the same request after
--timeout up to --tries times in all. An answer must carry the payload's SHA-256 and be --down
bytes of the known pattern; anything else received is counted as bad (a late answer to an
earlier try included) and passed over. Bounded: --rounds rounds, or as many as fit in --seconds;
SIGTERM ends it after the request under way. Prints one JSON line: the backends that answered
each flow, answers per backend, and the counts (sent, answered, retried: answered after a
resend, unanswered, bad, rounds).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import time

from udp_echo import padding   # the server's format (this script runs from tests/lab)


def check(answer: bytes, payload: bytes, down: int) -> str | None:
    """The backend's name if the answer is right, else None."""
    head, sep, pad = answer.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) != 2 or parts[1] != hashlib.sha256(payload).hexdigest().encode():
        return None
    if pad != padding(max(0, down - len(head) - 1)):
        return None
    return parts[0].decode(errors="replace")


def receive(s: socket.socket, payload: bytes, down: int, timeout: float, counts: dict) -> str | None:
    """The answer to `payload` within `timeout`; anything else received meanwhile (a late answer
    to an earlier try or request, or wrong content) counts as bad and is passed over."""
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            answer = s.recv(65535)
        except socket.timeout:
            return None
        except ConnectionRefusedError:   # an ICMP port unreachable, for this or an earlier try
            continue
        name = check(answer, payload, down)
        if name:
            return name
        counts["bad"] += 1
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vip", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--sport", type=int, required=True, help="first source port")
    ap.add_argument("--flows", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=0.0, help="rounds until this much time has passed")
    ap.add_argument("--interval", type=float, default=0.0, help="pause between rounds")
    ap.add_argument("--up", type=int, default=64, help="request payload bytes")
    ap.add_argument("--down", type=int, default=128, help="answer bytes")
    ap.add_argument("--timeout", type=float, default=1.0)
    ap.add_argument("--tries", type=int, default=3)
    args = ap.parse_args()

    socks = []
    for i in range(args.flows):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((args.src, args.sport + i))
        s.connect((args.vip, args.port))
        socks.append(s)
    flows: dict = {str(args.sport + i): set() for i in range(args.flows)}
    answers: dict = {}
    counts = {"sent": 0, "answered": 0, "retried": 0, "unanswered": 0, "bad": 0, "rounds": 0}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    end = time.monotonic() + args.seconds
    while counts["rounds"] < args.rounds or (args.seconds and time.monotonic() < end):
        for i, s in enumerate(socks):
            if stop:
                break
            payload = os.urandom(args.up)
            request = f"{args.down}\n".encode() + payload
            counts["sent"] += 1
            name = None
            for attempt in range(args.tries):
                s.send(request)
                name = receive(s, payload, args.down, args.timeout, counts)
                if name:
                    break
            if name is None:
                counts["unanswered"] += 1
                continue
            counts["answered"] += 1
            counts["retried"] += attempt > 0
            flows[str(args.sport + i)].add(name)
            answers[name] = answers.get(name, 0) + 1
        if stop:
            break
        counts["rounds"] += 1
        if args.interval:
            time.sleep(args.interval)
    print(json.dumps({"flows": {k: sorted(v) for k, v in flows.items()}, "answers": answers, **counts}))


if __name__ == "__main__":
    main()
