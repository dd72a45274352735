#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: next-hop MACs in the load balancer's neighbour map."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lb_neighbor
short_description: Put next hops' MACs into the load balancer's neighbour map
description:
  - The seed agent's C(neighbor update <ip>). The datapath has no FIB lookup (as on
    eBPF-for-Windows), it takes the destination MAC of every frame it sends from the neighbour
    map. C(lb_service) fills it for backends; this module adds other next hops, such as the client
    SNAT replies go back to.
  - The MAC comes from I(mac), else from the LB node's kernel neighbour table, resolving it (ARP)
    when missing.
  - I(addresses) handles several next hops in one call - every address is resolved before the
    map is written.
version_added: "0.1.0"
author: L4LB lab toolkit maintainers (@l4lb-lab)
options:
  address:
    description: The next hop's IPv4 address. Required unless I(addresses) is given.
    type: str
  addresses:
    description: Several next hops' IPv4 addresses, in one call (instead of I(address)).
    type: list
    elements: str
  mac:
    description: The MAC to store instead of resolving it (with I(address) only).
    type: str
  device:
    description: The LB node's interface, where the address is resolved.
    type: str
    default: eth0
  pin_dir:
    description: The LB program's pin directory (the maps are under C(<pin_dir>/maps)).
    type: path
    required: true
  state:
    description: C(present) stores the entry; C(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Supports check mode and diff.
  - See also the module C(lb_service) (library/ in the repository).
"""

EXAMPLES = r"""
- name: The client's MAC, for SNAT replies
  lb_neighbor:
    address: 20.1.1.100
    pin_dir: /sys/fs/bpf/l4lb/lb

- name: Every client's MAC in one call
  lb_neighbor:
    addresses: [20.1.1.100, 20.1.1.101]
    pin_dir: /sys/fs/bpf/l4lb/lb
"""

RETURN = r"""
address:
  description: The address.
  returned: with I(address)
  type: str
  sample: 20.1.1.100
mac:
  description: The MAC stored (null with state=absent).
  returned: with I(address)
  type: str
  sample: 02:00:14:01:01:64
macs:
  description: With I(addresses) - each address's MAC stored (null with state=absent).
  returned: with I(addresses)
  type: dict
  sample: {"20.1.1.100": "02:4c:14:01:01:64"}
previous:
  description: With I(addresses) - each address's MAC before the call (null when it had none).
  returned: with I(addresses)
  type: dict
  sample: {"20.1.1.100": null}
changed_addresses:
  description: With I(addresses) - the addresses whose entry was (or would be) written.
  returned: with I(addresses)
  type: list
  elements: str
  sample: [20.1.1.100]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.l4lb import agent
from ansible.module_utils.l4lb.module_shell import run_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            address=dict(type="str"),
            addresses=dict(type="list", elements="str"),
            mac=dict(type="str"),
            device=dict(type="str", default="eth0"),
            pin_dir=dict(type="path", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        required_one_of=[("address", "addresses")],
        mutually_exclusive=[("address", "addresses"), ("addresses", "mac")],
        supports_check_mode=True,
    )
    p = module.params
    if p["addresses"] is not None:
        run_module(module, lambda: agent.neighbors_update(
            p["pin_dir"], p["addresses"], device=p["device"], state=p["state"], check_mode=module.check_mode))
    run_module(module, lambda: agent.neighbor_update(
        p["pin_dir"], p["address"], device=p["device"], mac=p["mac"], state=p["state"],
        check_mode=module.check_mode))


if __name__ == "__main__":
    main()
