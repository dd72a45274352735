#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: one load-balancer service, reconciled into the XDP program's maps."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lb_service
short_description: Program a load-balancer service (frontend, backends, id) into the XDP maps
description:
  - The seed agent's C(service update --frontend=VIP:PORT --backends=IP:PORT,... --id=N) and
    C(service delete --id N), made declarative.
  - Reads the service's current entries from the pinned maps (the maps are the truth), computes
    the minimal ordered writes and applies them in the seed's safe order - neighbours, backends,
    Maglev table (a new table swapped in atomically), backend slots, reverse NAT, and the master
    slot last - so a half-applied update never blackholes traffic.
  - Resolves each backend's next-hop MAC on the LB node from the kernel's neighbour table,
    resolving it (ARP) when missing, as the seed's agent does. A backend with no resolvable next
    hop fails the task before any map is written.
  - Backend ids are stable per (ip, port, protocol); a backend shared by services has one id.
    Weight 0 drains a backend - connections already tracked keep it, new flows do not get it.
  - A port-translating service (a backend port differing from the frontend port) is refused,
    before any map is written (in check mode too), while the load balancer on I(device) runs DSR
    (read from the attached program's name); in DSR the backend answers the client directly,
    from the port it received on. It works in SNAT.
  - Needs the load balancer to be attached (module C(xdp_program)) with its maps pinned under
    I(pin_dir).
version_added: "0.1.0"
author: L4LB lab toolkit maintainers (@l4lb-lab)
options:
  id:
    description: Service id (the reverse-NAT index), 1..65535.
    type: int
    required: true
  frontend:
    description: The service's C(VIP:PORT). Required with I(state=present).
    type: str
  protocol:
    description: L4 protocol of the service.
    type: str
    choices: [tcp, udp]
    default: tcp
  backends:
    description:
      - Backends as C(IP:PORT) or C(IP:PORT@WEIGHT) strings, or dicts with C(ip), C(port) and
        optional C(weight) (default 1; 0 drains). Required with I(state=present). At most 1024,
        no duplicates, at least one with a non-zero weight.
    type: list
    elements: raw
  neighbors:
    description:
      - Known next-hop MACs, a mapping of IP to MAC; addresses listed here are not resolved on the node.
    type: dict
  device:
    description: The LB node's interface, where next hops are resolved and whose attached program tells the running mode.
    type: str
    default: eth0
  pin_dir:
    description: The LB program's pin directory (the maps are under C(<pin_dir>/maps)).
    type: path
    required: true
  maglev_size:
    description: Maglev table size; must equal the compiled program's (checked against the maps).
    type: int
  state:
    description: C(present) programs the service; C(absent) removes it and every backend no other service uses.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Supports check mode and diff; the diff and RV(writes) list exactly the map entries that would change.
  - A second run with the same input writes nothing and reports C(changed=false).
  - See also the modules C(xdp_program), C(lb_dumpstate), C(lb_neighbor) (library/ in the repository).
"""

EXAMPLES = r"""
- name: The seed's service 1 - the VIP to the four backends
  lb_service:
    id: 1
    frontend: 40.1.1.1:80
    backends:
      - 20.1.1.10:80
      - 20.1.1.20:80
      - 20.1.1.30:80
      - 20.1.1.40:80
    pin_dir: /sys/fs/bpf/l4lb/lb

- name: Drain one backend (existing connections stay, new flows avoid it)
  lb_service:
    id: 1
    frontend: 40.1.1.1:80
    backends: [20.1.1.10:80@0, 20.1.1.20:80, 20.1.1.30:80, 20.1.1.40:80]
    pin_dir: /sys/fs/bpf/l4lb/lb

- name: Remove the service
  lb_service:
    id: 1
    state: absent
    pin_dir: /sys/fs/bpf/l4lb/lb
"""

RETURN = r"""
writes:
  description: The map writes, in the order they were (or, in check mode, would be) applied.
  returned: always
  type: list
  elements: str
  sample: ["neighbour 20.1.1.10 -> 02:00:14:01:01:0a", "backend 1 = 20.1.1.10:80/tcp", "service 1 slot 0 (master): count 4"]
counts:
  description: Number of writes per map and operation.
  returned: always
  type: dict
  sample: {"lb4_backends:update": 4, "lb4_services_v2:update": 5}
neighbors:
  description: The next hops used, a mapping of IP to MAC.
  returned: always
  type: dict
  sample: {"20.1.1.10": "02:00:14:01:01:0a"}
diff:
  description: The service as the maps hold it before and after (id, vip, port, protocol, backends with ids and Maglev slot counts).
  returned: with --diff
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.l4lb import agent
from ansible.module_utils.l4lb.module_shell import run_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            id=dict(type="int", required=True),
            frontend=dict(type="str"),
            protocol=dict(type="str", choices=["tcp", "udp"], default="tcp"),
            backends=dict(type="list", elements="raw"),
            neighbors=dict(type="dict"),
            device=dict(type="str", default="eth0"),
            pin_dir=dict(type="path", required=True),
            maglev_size=dict(type="int"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        required_if=[("state", "present", ("frontend", "backends"))],
        supports_check_mode=True,
    )
    p = module.params
    service = {"id": p["id"]}
    if p["state"] == "present":
        service.update(frontend=p["frontend"], protocol=p["protocol"], backends=p["backends"])
    run_module(module, lambda: agent.service_update(
        p["pin_dir"], service, device=p["device"], state=p["state"], neighbors=p["neighbors"],
        maglev_size=p["maglev_size"], check_mode=module.check_mode))


if __name__ == "__main__":
    main()
