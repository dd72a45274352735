#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: a bounded background tcpdump in a named network namespace (start, then stop and count)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lab_capture
short_description: Run a bounded tcpdump in a network namespace in the background, then stop it and count the frames
description:
  - C(state=started) starts C(nsenter --net=/run/netns/<netns> timeout <max_seconds> tcpdump -i
    <interface> -c <max_packets> -w <pcap> <filter>) detached from the task, waits until tcpdump
    listens, and returns its pid. It is bounded in time (C(timeout)) and count (C(-c)) even if
    nobody stops it.
  - C(state=stopped) stops that capture (SIGINT, so tcpdump flushes the file), then reads the
    pcap and returns the number of frames and a short text summary of the first ones.
  - Used by the lab_verify role for the seed's Wireshark observation - on the LB node's switch
    port, SNAT shows the replies from the VIP, DSR shows none.
  - Runs on the machine hosting the lab (connection local); nothing is created in any namespace.
version_added: "0.1.0"
author: L4LB lab toolkit maintainers (@l4lb-lab)
options:
  state:
    description: started or stopped.
    type: str
    choices: [started, stopped]
    required: true
  netns:
    description: Name of the network namespace (under C(/run/netns)) holding I(interface). Required with I(state=started).
    type: str
  interface:
    description: Interface to capture on. Required with I(state=started).
    type: str
  filter:
    description: pcap filter expression.
    type: str
    default: ""
  direction:
    description: tcpdump C(-Q) - frames received by, sent by, or both.
    type: str
    choices: [in, out, inout]
    default: inout
  pcap:
    description: Capture file. Its directory is created when missing.
    type: path
    required: true
  max_packets:
    description: tcpdump stops after this many frames.
    type: int
    default: 1000
  max_seconds:
    description: The capture is killed after this many seconds at the latest.
    type: int
    default: 120
  pid:
    description: With I(state=stopped), the pid I(state=started) returned. Stopped only if it is still our tcpdump (its command line names I(pcap)).
    type: int
  summary_lines:
    description: How many frames to summarise in C(summary).
    type: int
    default: 10
notes:
  - Needs root, C(nsenter) (util-linux), C(timeout) (coreutils) and C(tcpdump).
  - C(changed) is false - a capture changes nothing in the lab.
"""

EXAMPLES = r"""
- name: Capture what the LB node sends from the VIP
  lab_capture:
    state: started
    netns: l4lb-switch
    interface: lb
    filter: src host 40.1.1.1 and tcp
    pcap: /run/l4lb/verify/lb-port.pcap
  register: capture

- name: Stop it and count
  lab_capture:
    state: stopped
    pcap: /run/l4lb/verify/lb-port.pcap
    pid: "{{ capture.pid }}"
  register: captured
"""

RETURN = r"""
pid:
  description: The capture's pid (state=started).
  returned: state=started
  type: int
  sample: 31337
frames:
  description: Frames in the capture file (state=stopped).
  returned: state=stopped
  type: int
  sample: 0
summary:
  description: tcpdump's one-line view of the first I(summary_lines) frames.
  returned: state=stopped
  type: list
  elements: str
stopped:
  description: Whether the capture was still running and was stopped (false when it had ended by its bounds).
  returned: state=stopped
  type: bool
"""

import os
import signal
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.l4lb import procs
from ansible.module_utils.lab_pcap import count_frames


def start(module, p):
    nsenter, timeout, tcpdump = (module.get_bin_path(tool, required=True)
                                 for tool in ("nsenter", "timeout", "tcpdump"))
    for opt in ("netns", "interface"):
        if not p[opt]:
            module.fail_json(msg=f"{opt} is required with state=started")
    ns_path = os.path.join("/run/netns", p["netns"])
    if "/" in p["netns"] or not os.path.exists(ns_path):
        module.fail_json(msg=f"network namespace {p['netns']!r} not found ({ns_path})")
    os.makedirs(os.path.dirname(p["pcap"]) or ".", exist_ok=True)
    for path in (p["pcap"], p["pcap"] + ".log"):
        if os.path.exists(path):
            os.unlink(path)
    argv = [nsenter, f"--net={ns_path}", "--", timeout, "--signal=INT", "--kill-after=5",
            str(p["max_seconds"]), tcpdump, "--immediate-mode", "-i", p["interface"], "-n", "-U", "-Q", p["direction"],
            "-c", str(p["max_packets"]), "-w", p["pcap"]]
    if p["filter"]:
        argv.append(p["filter"])
    log_path = p["pcap"] + ".log"
    with open(log_path, "wb"):
        pass  # a fresh log: "listening on" below must be this tcpdump's
    proc = procs.spawn_detached(argv, log_path)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(log_path, "rb") as f:
            text = f.read().decode(errors="replace")
        if "listening on" in text:
            return proc.pid, argv
        if proc.poll() is not None:
            module.fail_json(msg=f"tcpdump exited ({proc.returncode}) before listening: {text.strip()}",
                             cmd=argv)
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    module.fail_json(msg="tcpdump did not start listening within 10s", cmd=argv)


def stop(module, p):
    stopped = False
    pid = p["pid"]
    if pid and procs.alive(pid) and p["pcap"] in procs.cmdline(pid):
        # pid is `timeout` (nsenter execs it); SIGINT is passed on to tcpdump, which flushes.
        procs.terminate([pid], ((signal.SIGINT, 10), (signal.SIGKILL, 0)))
        stopped = True
    try:
        os.waitpid(pid, os.WNOHANG) if pid else None
    except ChildProcessError:
        pass
    if not os.path.exists(p["pcap"]):
        module.fail_json(msg=f"capture file {p['pcap']} does not exist")
    frames = count_frames(p["pcap"])
    summary = []
    if frames and p["summary_lines"] > 0:
        tcpdump = module.get_bin_path("tcpdump", required=True)
        _rc, out, _err = module.run_command([tcpdump, "-n", "-r", p["pcap"], "-c", str(p["summary_lines"])])
        summary = out.splitlines()
    return frames, summary, stopped


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["started", "stopped"], required=True),
            netns=dict(type="str"),
            interface=dict(type="str"),
            filter=dict(type="str", default=""),
            direction=dict(type="str", choices=["in", "out", "inout"], default="inout"),
            pcap=dict(type="path", required=True),
            max_packets=dict(type="int", default=1000),
            max_seconds=dict(type="int", default=120),
            pid=dict(type="int"),
            summary_lines=dict(type="int", default=10),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not 1 <= p["max_packets"] <= 1000000 or not 1 <= p["max_seconds"] <= 3600:
        module.fail_json(msg="max_packets must be in 1..1000000 and max_seconds in 1..3600")
    if p["state"] == "started":
        pid, argv = start(module, p)
        module.exit_json(changed=False, pid=pid, cmd=argv, pcap=p["pcap"])
    frames, summary, stopped = stop(module, p)
    module.exit_json(changed=False, frames=frames, summary=summary, stopped=stopped, pcap=p["pcap"])


if __name__ == "__main__":
    main()
