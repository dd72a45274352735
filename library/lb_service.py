#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: load-balancer services, one or a whole set, reconciled into the XDP program's maps."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lb_service
short_description: Program load-balancer services (frontend, backends, id) into the XDP maps
description:
  - The seed agent's C(service update --frontend=VIP:PORT --backends=IP:PORT,... --id=N) and
    C(service delete --id N), made declarative.
  - One service (I(id), I(frontend), I(backends), I(state)), or the whole desired set in one call
    (I(services)) - one reconcile of every service listed, with I(prune) choosing between "these
    services, leave the others alone" (the default) and "exactly these services" (every other
    service is removed). The set is validated as a whole (ids and frontends unique, every
    backend valid, every next hop resolved) before any map is written; a refusal names the
    service (C(services[7] (id 8))) and the field.
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
    description: Service id (the reverse-NAT index), 1..65535. Required unless I(services) is given.
    type: int
  services:
    description:
      - The desired services, all reconciled in one call (instead of I(id), I(frontend),
        I(protocol), I(backends), I(state)). The result lists per service what changed.
    type: list
    elements: dict
    suboptions:
      id:
        description: Service id, 1..65535.
        type: int
        required: true
      frontend:
        description: C(VIP:PORT). Required with I(state=present).
        type: str
      protocol:
        description: L4 protocol.
        type: str
        choices: [tcp, udp]
        default: tcp
      backends:
        description: As the per-service I(backends). Required with I(state=present).
        type: list
        elements: raw
      state:
        description: C(present), or C(absent) to remove this service.
        type: str
        choices: [present, absent]
        default: present
  prune:
    description:
      - With I(services) - C(true) makes the listed services exactly the services the load
        balancer serves (every other one is removed, with its backends, reverse NAT and Maglev
        table); C(false) leaves services not listed alone.
    type: bool
    default: false
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
    description:
      - C(present) programs the service; C(absent) removes it and every backend no other service uses.
      - Not used with I(services) (each element has its own I(state)).
    type: str
    choices: [present, absent]
    default: present
notes:
  - Supports check mode and diff; the diff and RV(writes) list exactly the map entries that would change.
  - With I(services) the diff holds only the services that change (before and after of each),
    RV(changes) their writes per service.
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

- name: Exactly these services, in one reconcile (every other service is removed)
  lb_service:
    services:
      - {id: 1, frontend: "40.1.1.1:80", backends: [20.1.1.10:80, 20.1.1.20:80]}
      - {id: 2, frontend: "40.1.1.1:443", backends: [20.1.1.10:443, 20.1.1.20:443]}
    prune: true
    pin_dir: /sys/fs/bpf/l4lb/lb
"""

RETURN = r"""
writes:
  description: The map writes, in the order they were (or, in check mode, would be) applied.
  returned: without I(services)
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
services:
  description: With I(services) - the ids of the services created, updated and removed.
  returned: with I(services)
  type: dict
  sample: {"create": [3], "update": [1], "remove": [2]}
unchanged:
  description: With I(services) - how many listed services needed no write.
  returned: with I(services)
  type: int
  sample: 998
changes:
  description: With I(services) - per service id, the writes for it, in order.
  returned: with I(services)
  type: dict
  sample: {"3": ["service 3: new Maglev table (2039 slots over 2 backends)", "service 3: master 40.1.1.1:8080/tcp count 2"]}
shared_writes:
  description: With I(services) - writes tied to no one service (backends, neighbours).
  returned: with I(services)
  type: list
  elements: str
  sample: ["backend 7 = 20.1.1.30:8080/tcp"]
diff:
  description:
    - The service as the maps hold it before and after (id, vip, port, protocol, backends with ids and Maglev slot counts).
    - With I(services) only the services that change, keyed by id.
  returned: with --diff
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.l4lb import agent
from ansible.module_utils.l4lb.module_shell import run_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            id=dict(type="int"),
            services=dict(type="list", elements="dict", options=dict(
                id=dict(type="int", required=True),
                frontend=dict(type="str"),
                protocol=dict(type="str", choices=["tcp", "udp"], default="tcp"),
                backends=dict(type="list", elements="raw"),
                state=dict(type="str", choices=["present", "absent"], default="present"),
            )),
            prune=dict(type="bool", default=False),
            frontend=dict(type="str"),
            protocol=dict(type="str", choices=["tcp", "udp"], default="tcp"),
            backends=dict(type="list", elements="raw"),
            neighbors=dict(type="dict"),
            device=dict(type="str", default="eth0"),
            pin_dir=dict(type="path", required=True),
            maglev_size=dict(type="int"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        required_one_of=[("id", "services")],
        mutually_exclusive=[("id", "services"), ("services", "frontend"), ("services", "backends")],
        supports_check_mode=True,
    )
    p = module.params
    if p["services"] is not None:
        run_module(module, lambda: agent.services_apply(
            p["pin_dir"], p["services"], prune=p["prune"], device=p["device"], neighbors=p["neighbors"],
            maglev_size=p["maglev_size"], check_mode=module.check_mode, diff=module._diff))
    if p["prune"]:
        module.fail_json(msg="prune: only with services (the whole set); one service never removes others")
    missing = [k for k in ("frontend", "backends") if p["state"] == "present" and not p[k]]
    if missing:
        module.fail_json(msg=f"state is present but all of the following are missing: {', '.join(missing)}")
    service = {"id": p["id"]}
    if p["state"] == "present":
        service.update(frontend=p["frontend"], protocol=p["protocol"], backends=p["backends"])
    run_module(module, lambda: agent.service_update(
        p["pin_dir"], service, device=p["device"], state=p["state"], neighbors=p["neighbors"],
        maglev_size=p["maglev_size"], check_mode=module.check_mode))


if __name__ == "__main__":
    main()
