#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: a service's active connections and counters (the seed's dumpstate)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lb_dumpstate
short_description: Show a load-balancer service's connections and counters
description:
  - The seed agent's C(service dumpstate --id N) as structured data - every connection-tracking
    entry of the service with the seed's columns (Source IP, Dest. IP, Source Port, Dest Port,
    Backend IP, State, Rx Bytes, Tx Bytes), the service's and each backend's packet and byte
    counters, and the seed's text table; plus the datapath's trouble counters (RV(trouble)).
  - State is CLOSING once a FIN or RST was seen, IDLE when the last packet is older than
    I(idle_after) seconds, ACTIVE otherwise. Tx counts replies, which cross the LB only in SNAT mode.
  - Read-only; never reports changed.
version_added: "0.1.0"
author: L4LB lab toolkit maintainers (@l4lb-lab)
options:
  id:
    description: Service id.
    type: int
    required: true
  pin_dir:
    description: The LB program's pin directory (the maps are under C(<pin_dir>/maps)).
    type: path
    required: true
  idle_after:
    description: Seconds without packets after which a connection shows as IDLE.
    type: float
    default: 60
notes:
  - Supports check mode (the same read).
  - See also the module C(lb_service) (library/ in the repository).
"""

EXAMPLES = r"""
- name: Dump service 1
  lb_dumpstate:
    id: 1
    pin_dir: /sys/fs/bpf/l4lb/lb
  register: dump

- name: Show the seed's table
  ansible.builtin.debug:
    msg: "{{ dump.table.splitlines() }}"
"""

RETURN = r"""
service:
  description: The service (id, vip, port, protocol).
  returned: always
  type: dict
  sample: {"id": 1, "vip": "40.1.1.1", "port": 80, "protocol": "tcp"}
connections:
  description: One row per tracked connection, keys source_ip, dest_ip, source_port, dest_port, backend_ip, state, rx_bytes, tx_bytes (and packet counts).
  returned: always
  type: list
  elements: dict
stats:
  description: The service's packets and bytes, summed over CPUs.
  returned: always
  type: dict
  sample: {"packets": 120, "bytes": 9600}
backends:
  description: Each backend of the service with its id, ip, port, packets and bytes.
  returned: always
  type: list
  elements: dict
trouble:
  description:
    - The load balancer's reason counters that signal trouble, when non-zero - every C(DROP_*)
      and C(PASS_MTU) - each with C(packets) and C(bytes), summed over CPUs (all services).
  returned: always
  type: dict
  sample: {"PASS_MTU": {"packets": 312, "bytes": 472368}}
trouble_report:
  description: "One line per RV(trouble) counter, C(WARN <reason>: <packets> packets, <bytes> bytes)."
  returned: always
  type: list
  elements: str
  sample: ["WARN PASS_MTU: 312 packets, 472368 bytes"]
maglev:
  description:
    - The service's Maglev table as read from this node's maps, by backend identity - C(size),
      C(slots) (slot count per C(ip:port); C(-) for no backend) and C(digest) (of the whole table,
      slot by slot). Backend ids are each node's own, so the LB nodes of a tier are compared by
      C(digest) - equal digests mean every flow hash picks the same backend on each.
  returned: always
  type: dict
  sample: {"size": 2039, "digest": "5f0c2a3b9d1e7a44", "slots": {"20.1.1.10:80": 510, "20.1.1.20:80": 510}}
maglev_report:
  description: RV(maglev) as one line of text.
  returned: always
  type: str
  sample: "maglev: 2039 slots, digest 5f0c2a3b9d1e7a44: 20.1.1.10:80=510 20.1.1.20:80=510 ..."
table:
  description: The seed's dumpstate table as text.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.l4lb import agent
from ansible.module_utils.l4lb.module_shell import run_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            id=dict(type="int", required=True),
            pin_dir=dict(type="path", required=True),
            idle_after=dict(type="float", default=60.0),
        ),
        supports_check_mode=True,
    )
    run_module(module, lambda: agent.dumpstate(module.params["pin_dir"], module.params["id"],
                                               idle_after_s=module.params["idle_after"]))


if __name__ == "__main__":
    main()
