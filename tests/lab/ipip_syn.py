"""Send one IPIP-encapsulated TCP SYN to a backend and wait for the SYN-ACK from the VIP.

Run inside the client's network namespace (nsenter --net=...), as root:

    python ipip_syn.py --dst-mac 02:.. --backend 20.1.1.10 --vip 40.1.1.1 --src 20.1.1.100 --sport 43001

Outer IPv4 src -> backend (protocol 4), inner src:sport -> vip:80 SYN; sent on an AF_PACKET
socket, so it does not depend on any route. Prints one JSON line:
{"synack": true|false, "from": "ip:port", "seconds": t, "outer_len": n}.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import time

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

ETH_P_ALL = 0x0003


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iface", default="eth0")
    ap.add_argument("--dst-mac", required=True)
    ap.add_argument("--backend", required=True)
    ap.add_argument("--vip", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--sport", type=int, required=True)
    ap.add_argument("--dport", type=int, default=80)
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--plain", action="store_true", help="send the inner SYN without IPIP (control)")
    a = ap.parse_args()

    rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    rx.bind((a.iface, 0))
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    tx.bind((a.iface, 0))
    src_mac = tx.getsockname()[4].hex(":")
    inner = IP(src=a.src, dst=a.vip, ttl=64) / TCP(sport=a.sport, dport=a.dport, flags="S", seq=1000,
                                                   options=[("MSS", 1460)])
    pkt = Ether(src=src_mac, dst=a.dst_mac)
    pkt = pkt / inner if a.plain else pkt / IP(src=a.src, dst=a.backend, proto=4, ttl=64) / inner
    raw = bytes(pkt)
    t0 = time.monotonic()
    tx.send(raw)
    result = {"synack": False, "from": None, "seconds": None, "sent_len": len(raw)}
    deadline = t0 + a.timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([rx], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        data, addr = rx.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        frame = Ether(data)
        if IP not in frame or TCP not in frame:
            continue
        ip, tcp = frame[IP], frame[TCP]
        if ip.dst == a.src and tcp.dport == a.sport and (tcp.flags & 0x12) == 0x12:
            result.update(synack=True, **{"from": f"{ip.src}:{tcp.sport}"},
                          seconds=round(time.monotonic() - t0, 4), ack=tcp.ack)
            break
    print(json.dumps(result))


if __name__ == "__main__":
    main()
