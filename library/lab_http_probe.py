#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Ansible module: HTTP requests to a VIP from fixed, distinct source ports; who answered each."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lab_http_probe
short_description: Send N HTTP requests to a VIP, each from its own fixed source port, and record which backend answered
description:
  - Opens I(count) TCP connections to I(vip):I(port), connection I(i) bound to source port
    I(base_port)+I(i) (with C(SO_REUSEADDR)). The ports are the same on every run, so the flows
    (and so the backends Maglev picks for them) are reproducible - the automated form of the
    seed's "force refresh to get another source port".
  - Each connection sends one C(GET) with C(Connection close), reads the answer to the end and
    records the status, the I(header) (C(X-Backend), the backend's name), the client address the
    backend saw (C(X-Client)) and the address it accepted on (C(X-Server-Addr)).
  - Bounded - a timeout per request and an overall I(deadline); requests not started before the
    deadline are counted as failed. A connection that failed is closed with a reset (linger 0) so
    that no TIME_WAIT keeps its fixed port from the next run.
  - Runs in the network namespace the task runs in (with the C(netns) connection, the client's).
  - Never changes anything (C(changed) is always false); runs in check mode too.
version_added: "0.1.0"
author: L4LB lab toolkit
options:
  vip:
    description: Address to connect to.
    type: str
    required: true
  port:
    description: TCP port.
    type: int
    default: 80
  path:
    description: Request path.
    type: str
    default: /
  host_header:
    description: C(Host) header; default I(vip).
    type: str
  count:
    description: Number of requests (1..1000).
    type: int
    default: 40
  base_port:
    description: Source port of request 0; request I(i) uses I(base_port)+I(i). Keep the range outside the ephemeral range (32768-60999).
    type: int
    default: 20000
  bind_address:
    description: Source address to bind (default any).
    type: str
    default: ""
  header:
    description: Response header naming the backend.
    type: str
    default: X-Backend
  timeout:
    description: Seconds allowed per request (connect, send, and the whole answer).
    type: float
    default: 3.0
  deadline:
    description: Seconds allowed for all requests together.
    type: float
    default: 60.0
"""

EXAMPLES = r"""
- name: 40 requests to the VIP from ports 20000..20039
  lab_http_probe:
    vip: 40.1.1.1
    count: 40
    base_port: 20000
  register: probe

- name: Show the distribution
  ansible.builtin.debug:
    var: probe.counts
"""

RETURN = r"""
counts:
  description: Answered requests per backend (value of I(header)); requests without the header count under C("").
  returned: always
  type: dict
  sample: {"win1": 11, "win2": 9, "linux1": 10, "linux2": 10}
answered:
  description: Requests that got a complete HTTP answer.
  returned: always
  type: int
  sample: 40
unanswered:
  description: Requests that got no complete answer (error, timeout, or not started before the deadline).
  returned: always
  type: int
  sample: 0
failures:
  description: The failed requests (source port and error).
  returned: always
  type: list
  elements: dict
  sample: [{"sport": 20007, "error": "timed out"}]
statuses:
  description: Answered requests per HTTP status code.
  returned: always
  type: dict
  sample: {"200": 40}
client_seen:
  description: Answered requests per client address the backends saw (C(X-Client) without the port).
  returned: always
  type: dict
  sample: {"20.1.1.100": 40}
server_seen:
  description: Answered requests per local address the backends accepted on (C(X-Server-Addr)).
  returned: always
  type: dict
  sample: {"40.1.1.1": 40}
requests:
  description: Per request - source port, backend, status, client and server address seen, milliseconds, error.
  returned: always
  type: list
  elements: dict
  sample: [{"sport": 20000, "backend": "linux2", "status": 200, "client": "20.1.1.100:20000", "server": "40.1.1.1", "ms": 1.9, "error": null}]
by_port:
  description: Source port -> backend (null when the request failed).
  returned: always
  type: dict
  sample: {"20000": "linux2", "20001": "win1"}
elapsed:
  description: Seconds the probe took.
  returned: always
  type: float
  sample: 0.21
"""

import socket
import struct
import time

from ansible.module_utils.basic import AnsibleModule


def _parse_head(head):
    lines = head.decode("iso-8859-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP status line: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return int(parts[1]), headers


def one_request(vip, port, sport, bind_address, request, timeout):
    """One connection from sport; returns (status, headers) or raises OSError/ValueError."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    clean = False
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((bind_address, sport))
        end = time.monotonic() + timeout
        s.settimeout(timeout)
        s.connect((vip, port))
        s.sendall(request)
        buf = b""
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise socket.timeout("timed out reading the answer")
            s.settimeout(left)
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            if len(buf) > 1 << 20:
                raise ValueError("answer larger than 1 MiB")
        head, sep, body = buf.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError(f"incomplete answer ({len(buf)} bytes)")
        status, headers = _parse_head(head)
        length = headers.get("content-length")
        if length is not None and length.isdigit() and len(body) < int(length):
            raise ValueError(f"short body: {len(body)} of {length} bytes")
        clean = True
        return status, headers
    finally:
        if not clean:
            # Reset instead of FIN: no TIME_WAIT holds the fixed port for the next run.
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        s.close()


def probe(p):
    host = p["host_header"] or p["vip"]
    request = (f"GET {p['path']} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lab_http_probe\r\n"
               "Accept: */*\r\nConnection: close\r\n\r\n").encode()
    hdr = p["header"].lower()
    t0 = time.monotonic()
    requests, counts, statuses, clients, servers, failures = [], {}, {}, {}, {}, []
    for i in range(p["count"]):
        sport = p["base_port"] + i
        rec = {"sport": sport, "backend": None, "status": None, "client": None, "server": None,
               "ms": None, "error": None}
        if time.monotonic() - t0 > p["deadline"]:
            rec["error"] = f"not started: the {p['deadline']:g}s deadline passed"
        else:
            t = time.monotonic()
            try:
                status, headers = one_request(p["vip"], p["port"], sport, p["bind_address"], request,
                                              p["timeout"])
                rec.update(status=status, backend=headers.get(hdr, ""),
                           client=headers.get("x-client"), server=headers.get("x-server-addr"))
            except (OSError, ValueError) as exc:
                rec["error"] = str(exc) or type(exc).__name__
            rec["ms"] = round((time.monotonic() - t) * 1000, 2)
        requests.append(rec)
        if rec["error"]:
            failures.append({"sport": sport, "error": rec["error"]})
            continue
        counts[rec["backend"]] = counts.get(rec["backend"], 0) + 1
        statuses[str(rec["status"])] = statuses.get(str(rec["status"]), 0) + 1
        if rec["client"]:
            caddr = rec["client"].rsplit(":", 1)[0]
            clients[caddr] = clients.get(caddr, 0) + 1
        if rec["server"]:
            servers[rec["server"]] = servers.get(rec["server"], 0) + 1
    return {
        "counts": counts, "answered": len(requests) - len(failures), "unanswered": len(failures),
        "failures": failures, "statuses": statuses, "client_seen": clients, "server_seen": servers,
        "requests": requests, "by_port": {str(r["sport"]): r["backend"] for r in requests},
        "elapsed": round(time.monotonic() - t0, 3),
    }


def main():
    module = AnsibleModule(
        argument_spec=dict(
            vip=dict(type="str", required=True),
            port=dict(type="int", default=80),
            path=dict(type="str", default="/"),
            host_header=dict(type="str"),
            count=dict(type="int", default=40),
            base_port=dict(type="int", default=20000),
            bind_address=dict(type="str", default=""),
            header=dict(type="str", default="X-Backend"),
            timeout=dict(type="float", default=3.0),
            deadline=dict(type="float", default=60.0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not 1 <= p["count"] <= 1000:
        module.fail_json(msg=f"count {p['count']} is not in 1..1000")
    if not 1 <= p["base_port"] or p["base_port"] + p["count"] - 1 > 65535:
        module.fail_json(msg=f"source ports {p['base_port']}..{p['base_port'] + p['count'] - 1} are not in 1..65535")
    if not 0 < p["timeout"] <= 60 or not 0 < p["deadline"] <= 3600:
        module.fail_json(msg=f"timeout {p['timeout']} / deadline {p['deadline']} out of range (0..60 / 0..3600)")
    if not p["path"].startswith("/") or any(c in p["path"] for c in "\r\n "):
        module.fail_json(msg=f"path {p['path']!r} is not an absolute request path")
    module.exit_json(changed=False, **probe(p))


if __name__ == "__main__":
    main()
