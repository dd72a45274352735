#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: withdraw or restore an LB node's next hop in the router's ECMP route to the VIPs."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lab_tier_route
short_description: Withdraw or restore an LB node's next hop in the ECMP route toward the VIP range
description:
  - The LB tier's membership at the router (README "An LB tier") - the route toward O(dst) in the
    network namespace the task runs in (the lab's client, which stands in for the upstream router)
    has one next hop per LB node in service. O(state=absent) removes O(gateway) from it, as a
    routing protocol withdraws a node; O(state=present) puts it back. The LB nodes are not touched.
  - The route is read with C(ip -j route show <dst>) and rewritten with one C(ip route replace),
    its next hops in the order of O(tier) (Linux's ECMP hash maps a flow to a next hop by position,
    so a restore gives every flow the LB node it had before the withdraw). Nothing changes when
    the route already is as asked.
  - Refused before any change, naming the problem - a O(gateway) outside O(tier), no route to
    O(dst), a next hop on the route that is not one of O(tier) on O(device), and withdrawing the
    last next hop.
version_added: "0.1.0"
author: L4LB lab toolkit maintainers (@l4lb-lab)
options:
  dst:
    description: The routed VIP range (CIDR), the lab's C(lab_vip_range).
    type: str
    required: true
  tier:
    description: Every LB node's next hop (its C(lab_ip)), in the tier's order (C(lb_nodes)).
    type: list
    elements: str
    required: true
  gateway:
    description: The next hop to withdraw or restore, one of O(tier).
    type: str
    required: true
  device:
    description: The interface the next hops are on.
    type: str
    default: eth0
  state:
    description: C(absent) withdraws O(gateway), C(present) restores it.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Supports check mode and diff mode.
  - See also the module C(lab_topology) (library/ in the repository), which makes the route with
    every LB node's next hop.
"""

EXAMPLES = r"""
- name: Withdraw lb (20.1.1.1) from the tier at the client
  lab_tier_route:
    dst: 40.1.1.0/24
    tier: [20.1.1.1, 20.1.1.2]
    gateway: 20.1.1.1
    state: absent

- name: Restore it
  lab_tier_route:
    dst: 40.1.1.0/24
    tier: [20.1.1.1, 20.1.1.2]
    gateway: 20.1.1.1
    state: present
"""

RETURN = r"""
nexthops:
  description: The route's next hops after the task (in check mode - what they would be).
  returned: success
  type: list
  elements: str
  sample: ["20.1.1.2"]
previous:
  description: The route's next hops before the task.
  returned: success
  type: list
  elements: str
  sample: ["20.1.1.1", "20.1.1.2"]
diff:
  description: The route before and after, one line each.
  returned: success
  type: dict
  sample: {"before": "40.1.1.0/24 via 20.1.1.1, 20.1.1.2\n", "after": "40.1.1.0/24 via 20.1.1.2\n"}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.lab_topology.tier import TierError, describe, plan

LANG_ENV = {"LANG": "C", "LC_ALL": "C", "LC_MESSAGES": "C"}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dst=dict(type="str", required=True),
            tier=dict(type="list", elements="str", required=True),
            gateway=dict(type="str", required=True),
            device=dict(type="str", default="eth0"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    ip = module.get_bin_path("ip", required=True)
    rc, out, err = module.run_command([ip, "-j", "route", "show", p["dst"]], environ_update=LANG_ENV)
    if rc != 0:
        module.fail_json(msg=f"ip route show {p['dst']}: {err.strip()}")
    try:
        changed, want, have, argv = plan(out, p["dst"], p["device"], p["tier"], p["gateway"], p["state"])
    except TierError as exc:
        module.fail_json(msg=str(exc))
    if changed and not module.check_mode:
        rc, _out, err = module.run_command([ip] + argv[1:], environ_update=LANG_ENV)
        if rc != 0:
            module.fail_json(msg=f"{' '.join(argv)}: {err.strip()}")
    module.exit_json(changed=changed, nexthops=want, previous=have,
                     diff={"before": describe(p["dst"], have), "after": describe(p["dst"], want)})


if __name__ == "__main__":
    main()
