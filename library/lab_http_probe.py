#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
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
  - With I(bulk=true) it instead moves data through the VIP (the answers the backends of this lab
    give) - an upload of I(bulk_bytes) random bytes to I(upload_path), which the backend echoes
    back, and a download of I(download_path), a file of known content (line I(i) is I(i) as 63
    decimal digits and a newline, C(module_utils/lab_bulk.py), what C(lab_nginx) writes with
    I(bulk_kib)). Each is compared by SHA-256 and bounded by I(bulk_timeout); a
    transfer that makes no progress for I(timeout) seconds is reported as stalled, with the bytes
    moved so far (a DSR path that cannot carry full-size packets stalls the upload after the
    first window).
  - Never changes anything (C(changed) is always false); runs in check mode too.
version_added: "0.1.0"
author: L4LB lab toolkit maintainers (@l4lb-lab)
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
  bulk:
    description: Run the bulk upload and download (RV(bulk)) instead of the I(count) requests.
    type: bool
    default: false
  bulk_bytes:
    description: Size of the upload, and the expected size of the download, in bytes (1..67108864).
    type: int
    default: 1048576
  bulk_timeout:
    description: Seconds allowed for each whole transfer (connect, send, answer).
    type: float
    default: 20.0
  upload_path:
    description: Path that answers a POST with its body.
    type: str
    default: /echo
  download_path:
    description: Path of the known-content download.
    type: str
    default: /bulk.bin
  sample_page:
    description:
      - Also return the first answered request's page as served (RV(sample_page)), up to
        I(sample_max_bytes) of its body - what a browser at that source port would show (the
        demo report shows it).
    type: bool
    default: false
  sample_max_bytes:
    description: Longest body kept in RV(sample_page) (1..1048576); a longer one is cut and marked C(truncated).
    type: int
    default: 65536
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
bulk:
  description:
    - With I(bulk=true) - C(upload) and C(download), each with C(ok) (complete and the SHA-256
      matches), C(bytes) (expected), C(sent), C(received) (body bytes), C(sha256_match),
      C(backend), C(ms), C(mbit_s), C(stalled) and C(error) (null when ok).
  returned: when bulk is true
  type: dict
  sample: {"upload": {"ok": true, "bytes": 1048576, "sent": 1048576, "received": 1048576, "sha256_match": true,
           "backend": "win1", "ms": 9.1, "mbit_s": 921.8, "stalled": false, "error": null}}
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
sample_page:
  description:
    - With I(sample_page=true) - the first answered request - C(sport), C(backend), C(status),
      C(headers) (the response headers, names lower-cased), C(body) (text, decoded as UTF-8 with
      replacement) and C(truncated); null when no request was answered.
  returned: when sample_page is true
  type: dict
  sample: {"sport": 20000, "backend": "linux2", "status": 200, "headers": {"x-backend": "linux2"},
           "body": "<!DOCTYPE html>...", "truncated": false}
elapsed:
  description: Seconds the probe took.
  returned: always
  type: float
  sample: 0.21
"""

import hashlib
import os
import socket
import struct
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.lab_bulk import content as known_content


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


def _close(s, clean):
    """Close a connection: with FIN when the exchange ended cleanly, else with a reset (no
    TIME_WAIT then holds a fixed source port for the next run)."""
    if not clean:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    s.close()


def one_request(vip, port, sport, bind_address, request, timeout):
    """One connection from sport; returns (status, headers, body) or raises OSError/ValueError."""
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
        return status, headers, body
    finally:
        _close(s, clean)


def _transfer(vip, port, request, body, timeout, total_timeout):
    """Send request (+ body), read the answer to EOF. A recv/send that makes no progress for
    ``timeout`` s, or the whole exceeding ``total_timeout`` s, is a stall. Returns a dict."""
    out = {"sent": 0, "received": 0, "backend": None, "status": None, "stalled": False, "error": None}
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    clean = False
    t0 = time.monotonic()
    end = t0 + total_timeout
    data = b""
    try:
        s.settimeout(timeout)
        s.connect((vip, port))
        payload = request + body
        view = memoryview(payload)
        sent = 0
        while sent < len(payload):
            if time.monotonic() > end:
                raise socket.timeout("timed out")
            sent += s.send(view[sent:sent + 65536])
            out["sent"] = max(sent - len(request), 0)
        while True:
            if time.monotonic() > end:
                raise socket.timeout("timed out")
            chunk = s.recv(262144)
            if not chunk:
                break
            data += chunk
        clean = True
    except socket.timeout:
        out["stalled"] = True
        out["error"] = (f"stalled: no progress for {timeout:g}s (or over {total_timeout:g}s in all) after "
                        f"sending {out['sent']} of {len(body)} body bytes and receiving {len(data)} bytes")
    except OSError as exc:
        out["error"] = str(exc) or type(exc).__name__
    finally:
        _close(s, clean)
    out["ms"] = round((time.monotonic() - t0) * 1000, 1)
    head, sep, rest = data.partition(b"\r\n\r\n")
    if sep:
        try:
            status, headers = _parse_head(head)
            out.update(status=status, backend=headers.get("x-backend"))
        except ValueError as exc:
            out["error"] = out["error"] or str(exc)
    out["body"] = rest
    out["received"] = len(rest)
    return out


def bulk(p):
    """One upload (echoed) and one download (known content), each compared by SHA-256."""
    host = p["host_header"] or p["vip"]
    size = p["bulk_bytes"]
    result = {}
    upload = os.urandom(size)
    want = {"upload": upload, "download": known_content(size)}
    requests = {
        "upload": (f"POST {p['upload_path']} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: lab_http_probe\r\n"
                   f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n").encode(),
        "download": (f"GET {p['download_path']} HTTP/1.0\r\nHost: {host}\r\n"
                     "User-Agent: lab_http_probe\r\n\r\n").encode(),
    }
    for name in ("upload", "download"):
        r = _transfer(p["vip"], p["port"], requests[name], upload if name == "upload" else b"",
                      p["timeout"], p["bulk_timeout"])
        body = r.pop("body")
        r["bytes"] = size
        r["sha256_match"] = hashlib.sha256(body).digest() == hashlib.sha256(want[name]).digest()
        if r["error"] is None and r["status"] != 200:
            r["error"] = f"HTTP status {r['status']}"
        if r["error"] is None and not r["sha256_match"]:
            r["error"] = f"content differs: {len(body)} of {size} bytes received, SHA-256 mismatch"
        r["ok"] = r["error"] is None
        r["mbit_s"] = round(size * 8 / (r["ms"] / 1000) / 1e6, 1) if r["ok"] and r["ms"] else None
        result[name] = r
    return result


def probe(p):
    host = p["host_header"] or p["vip"]
    request = (f"GET {p['path']} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lab_http_probe\r\n"
               "Accept: */*\r\nConnection: close\r\n\r\n").encode()
    hdr = p["header"].lower()
    t0 = time.monotonic()
    requests, counts, statuses, clients, servers, failures = [], {}, {}, {}, {}, []
    sample = None
    for i in range(p["count"]):
        sport = p["base_port"] + i
        rec = {"sport": sport, "backend": None, "status": None, "client": None, "server": None,
               "ms": None, "error": None}
        if time.monotonic() - t0 > p["deadline"]:
            rec["error"] = f"not started: the {p['deadline']:g}s deadline passed"
        else:
            t = time.monotonic()
            try:
                status, headers, body = one_request(p["vip"], p["port"], sport, p["bind_address"], request,
                                                    p["timeout"])
                rec.update(status=status, backend=headers.get(hdr, ""),
                           client=headers.get("x-client"), server=headers.get("x-server-addr"))
                if sample is None and p["sample_page"]:
                    cut = body[:p["sample_max_bytes"]]
                    sample = {"sport": sport, "backend": rec["backend"], "status": status, "headers": headers,
                              "body": cut.decode("utf-8", errors="replace"), "truncated": len(cut) < len(body)}
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
    out = {
        "counts": counts, "answered": len(requests) - len(failures), "unanswered": len(failures),
        "failures": failures, "statuses": statuses, "client_seen": clients, "server_seen": servers,
        "requests": requests, "by_port": {str(r["sport"]): r["backend"] for r in requests},
        "elapsed": round(time.monotonic() - t0, 3),
    }
    if p["sample_page"]:
        out["sample_page"] = sample
    return out


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
            bulk=dict(type="bool", default=False),
            bulk_bytes=dict(type="int", default=1048576),
            bulk_timeout=dict(type="float", default=20.0),
            upload_path=dict(type="str", default="/echo"),
            download_path=dict(type="str", default="/bulk.bin"),
            sample_page=dict(type="bool", default=False),
            sample_max_bytes=dict(type="int", default=65536),
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
    if not 1 <= p["sample_max_bytes"] <= 1 << 20:
        module.fail_json(msg=f"sample_max_bytes {p['sample_max_bytes']} is not in 1..1048576")
    if not p["path"].startswith("/") or any(c in p["path"] for c in "\r\n "):
        module.fail_json(msg=f"path {p['path']!r} is not an absolute request path")
    for key in ("upload_path", "download_path"):
        if not p[key].startswith("/") or any(c in p[key] for c in "\r\n "):
            module.fail_json(msg=f"{key} {p[key]!r} is not an absolute request path")
    if p["bulk"]:
        if not 1 <= p["bulk_bytes"] <= 64 << 20:
            module.fail_json(msg=f"bulk_bytes {p['bulk_bytes']} is not in 1..67108864")
        if not 0 < p["bulk_timeout"] <= 600:
            module.fail_json(msg=f"bulk_timeout {p['bulk_timeout']} is not in 0..600")
        module.exit_json(changed=False, bulk=bulk(p))
    module.exit_json(changed=False, **probe(p))


if __name__ == "__main__":
    main()
