#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: the load balancer's connection-tracking GC loop on the LB node."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lb_gc
short_description: Keep the LB's connection-tracking garbage collector running (or run it once)
description:
  - The datapath judges a flow over when its connection-tracking entry has been quiet for the
    lifetime of its state, and a new flow then takes over the SNAT port such a flow held. This
    module keeps the maps small as well, as Cilium's agent does, by running
    C(l4lbctl ct gc --every N) on the node, which deletes the CT entries of flows that are over
    and frees their SNAT port slots.
  - C(started) makes exactly one loop with this command line run in the task's network
    namespace (judged from the running processes, not from a pid file); a loop with other
    settings is replaced. C(stopped) ends it. C(once) runs one collection now and reports what
    it deleted.
  - The loop ends by itself when the LB's maps are removed.
version_added: "0.1.0"
author: L4LB lab toolkit maintainers (@l4lb-lab)
options:
  pin_dir:
    description: The LB program's pin directory (the maps are under C(<pin_dir>/maps)).
    type: path
    required: true
  timeouts:
    description:
      - Lifetimes in seconds, the same as the C(ct_timeouts) the program was compiled with
        (C(xdp_program)); keys omitted keep their defaults (C(syn) 5, C(tcp) 21600, C(fin) 10,
        C(closed) 2, C(udp) 60, C(time_wait) 60).
    type: dict
    default: {}
  every:
    description: Seconds between two collections of the loop.
    type: float
    default: 5.0
  l4lbctl:
    description: Path of C(bin/l4lbctl) on the node (with C(module_utils/l4lb) beside its C(bin/)). Required with C(started).
    type: path
  python:
    description: Python interpreter that runs the loop.
    type: str
    default: python3
  log:
    description: File the loop appends its output to.
    type: path
    default: /dev/null
  state:
    description: C(started), C(stopped) or C(once).
    type: str
    choices: [started, stopped, once]
    default: started
notes:
  - Supports check mode (C(once) then counts what it would delete) and diff.
  - See also the module C(xdp_program) (library/ in the repository).
"""

EXAMPLES = r"""
- name: The GC loop runs on the LB node
  lb_gc:
    pin_dir: /sys/fs/bpf/l4lb/lb
    timeouts: {syn: 5, closed: 2}
    l4lbctl: /opt/l4lb/bin/l4lbctl
    python: /usr/bin/python3
    log: /run/l4lb/lb/gc.log

- name: Collect now
  lb_gc:
    pin_dir: /sys/fs/bpf/l4lb/lb
    state: once
"""

RETURN = r"""
pid:
  description: The running loop's pid (C(started)).
  returned: state is started
  type: int
command:
  description: The loop's command line.
  returned: state is started
  type: list
  elements: str
stopped:
  description: Pids of loops that were stopped (other settings, or C(stopped)).
  returned: state is started or stopped
  type: list
  elements: int
deleted:
  description: "C(once): CT entries deleted and SNAT slots freed (or that would be, in check mode): C({ct: N, snat: N})."
  returned: state is once
  type: dict
ct_entries:
  description: C(once) - CT entries left.
  returned: state is once
  type: int
snat_entries:
  description: C(once) - SNAT port slots still held (lb4_snat slots with a flow).
  returned: state is once
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.l4lb import agent, gc_service
from ansible.module_utils.l4lb.lifetimes import CtTimeouts
from ansible.module_utils.l4lb.module_shell import run_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            pin_dir=dict(type="path", required=True),
            timeouts=dict(type="dict", default={}),
            every=dict(type="float", default=5.0),
            l4lbctl=dict(type="path"),
            python=dict(type="str", default="python3"),
            log=dict(type="path", default="/dev/null"),
            state=dict(type="str", choices=["started", "stopped", "once"], default="started"),
        ),
        required_if=[("state", "started", ["l4lbctl"])],
        supports_check_mode=True,
    )
    p = module.params
    if p["state"] == "once":
        run_module(module, lambda: agent.ct_gc(p["pin_dir"], CtTimeouts.parse(p["timeouts"]),
                                               check_mode=module.check_mode))
    run_module(module, lambda: gc_service.ensure(
        p["pin_dir"], state=p["state"], timeouts=p["timeouts"], every_s=p["every"], l4lbctl=p["l4lbctl"],
        python=p["python"], log=p["log"], check_mode=module.check_mode))


if __name__ == "__main__":
    main()
