#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: what XDP program a device runs (read-only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: xdp_program_info
short_description: Report the XDP program attached to a device and the load balancer's mode
description:
  - Reads the kernel's state for I(device) in the network namespace the task runs in - the
    attached XDP program's id, name, tag and attach mode - and the load balancer's pins under
    I(pin_dir).
  - The load balancer's program is named C(lb_xdp_snat) or C(lb_xdp_dsr), so RV(status.mode) is
    the mode the node really runs, whatever the inventory says.
  - Also returns the load balancer's trouble counters (RV(trouble)) - every non-zero C(DROP_*)
    reason and C(PASS_MTU) of C(lb4_stats_reason) - so a check can warn about them.
  - Read-only; never reports changed.
version_added: "0.1.0"
author: L4LB lab toolkit maintainers (@l4lb-lab)
options:
  device:
    description: The interface to inspect.
    type: str
    default: eth0
  pin_dir:
    description: The load balancer's pin directory.
    type: path
    required: true
notes:
  - Supports check mode (the same read).
  - See also the module C(xdp_program) (library/ in the repository).
"""

EXAMPLES = r"""
- name: Which mode does the LB run?
  xdp_program_info:
    pin_dir: /sys/fs/bpf/l4lb/lb
  register: lb

- name: Show it
  ansible.builtin.debug:
    msg: "{{ lb.status.mode }}"
"""

RETURN = r"""
status:
  description: The device's XDP state.
  returned: always
  type: dict
  contains:
    device:
      description: The device.
      type: str
    prog_id:
      description: Attached program id (0 when none).
      type: int
    name:
      description: Attached program name.
      type: str
    tag:
      description: Attached program tag.
      type: str
    mode:
      description: C(snat) or C(dsr) for the load balancer's program, null otherwise.
      type: str
    attach_mode:
      description: C(native) or C(generic), null when nothing is attached.
      type: str
    pinned_prog_id:
      description: Id of the program pinned under I(pin_dir) (0 when none).
      type: int
    maps_pinned:
      description: Names of the maps pinned under C(<pin_dir>/maps).
      type: list
      elements: str
trouble:
  description:
    - Datapath reasons that signal trouble with a non-zero count, summed over CPUs - every
      C(DROP_*) and C(PASS_MTU) (a DSR packet too large to encapsulate, handed to the kernel,
      which drops it) - each with C(packets) and C(bytes). Empty when all are zero or no maps are pinned.
  returned: always
  type: dict
  sample: {"PASS_MTU": {"packets": 312, "bytes": 472368}}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.l4lb import agent
from ansible.module_utils.l4lb.module_shell import run_module


def main():
    module = AnsibleModule(
        argument_spec=dict(device=dict(type="str", default="eth0"), pin_dir=dict(type="path", required=True)),
        supports_check_mode=True,
    )
    run_module(module, lambda: agent.program_info(module.params["device"], module.params["pin_dir"]))


if __name__ == "__main__":
    main()
