#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: lab_netns
short_description: Build or remove the embedded L4LB lab (network namespaces, bridge, veths)
description:
  - Realises the lab topology on this machine. Each node is a network namespace
    C(<prefix>-<name>) with interface O(node_iface) holding the node's address; the internal
    switch is the bridge O(bridge) in namespace C(<prefix>-switch); every node is joined to it by
    a veth pair whose switch-side end is named after the node.
  - Each switch-side veth carries a trivial native XDP_PASS program (compiled from
    O(xdp_pass_src) into O(state_dir) when the source changed, loaded once and pinned at
    C(<bpffs_dir>/switch/xdp_pass), attached in the switch's namespace; compiled, loaded, pinned
    and attached through the control-plane core, C(module_utils/l4lb/)), so native XDP_TX from a node's interface is not dropped (a veth peer
    must be NAPI-ready). Both ends of a node's veth pair carry the node's O(nodes[].mtu). A node
    interface's MAC is C(02:4c:) followed by its four address bytes. Checksum offload (rx, tx) is
    turned off on node interfaces, since XDP rewrites would otherwise leave bad checksums. Client nodes get the route
    C(<vip>/32 via <lb address>).
  - Every link is created with C(ip -n <namespace>); nothing is ever added to the root namespace.
  - Idempotent by inspecting the real state (namespaces under C(/run/netns), links, addresses,
    routes, attached XDP programs, offload settings); only what differs is changed.
  - All input is validated, and root and the kernel features (network namespaces, the bpf
    syscall, veth, bridge, native XDP on veth, a mounted bpffs) are checked, before any change.
    Every error names the inventory variable or the requirement at fault.
  - O(state=absent) kills every process whose network namespace is a lab namespace (found by
    namespace inode, so lost pid files do not matter), deletes the namespaces the topology names
    (which removes their veths), and removes O(bpffs_dir) and O(state_dir). Nothing else.
  - The logic lives in C(module_utils/lab_topology/) (C(model.py) model and validation,
    C(provider.py) the provider interface, C(netns.py) this provider).
version_added: "1.0.0"
author: L4LB lab toolkit maintainers (@l4lb-lab)
options:
  state:
    description: Whether the lab topology should exist.
    type: str
    choices: [present, absent]
    default: present
  provider:
    description: How nodes are realised. Only C(netns) (this machine) is implemented.
    type: str
    choices: [netns]
    default: netns
  prefix:
    description: Namespace prefix (inventory C(lab_prefix)).
    type: str
    required: true
  subnet:
    description: The switch's IPv4 subnet (inventory C(lab_subnet)).
    type: str
    required: true
  vip:
    description: The service VIP (inventory C(lab_vip)); must lie outside O(subnet).
    type: str
    required: true
  nodes:
    description: The lab nodes.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Inventory hostname; also the switch-side veth name (at most 15 characters).
        type: str
        required: true
      ip:
        description: The node's address (inventory C(lab_ip)), inside O(subnet).
        type: str
        required: true
      role:
        description: What the node is in the seed's topology.
        type: str
        required: true
        choices: [lb, backend, client]
      decap:
        description:
          - The backend's decapsulation method (inventory C(backend_decap)), C(xdp) or C(tc);
            required for backends. Checked by the module itself so the error names the host.
        type: str
      mtu:
        description:
          - MTU of the node's interface and of its switch-side peer, 1280..9000. The lab gives the
            LB node and the backends room for DSR's 20-byte IPIP header (inventory
            C(lab_dsr_fit=mtu), C(lab_dsr_mtu)) while the client keeps 1500. A difference from
            the running MTU is planned and fixed like any other.
        type: int
        default: 1500
  bridge:
    description: Bridge name inside the switch namespace.
    type: str
    default: br0
  node_iface:
    description: Interface name inside each node namespace.
    type: str
    default: eth0
  state_dir:
    description: Runtime directory of the lab (inventory C(lab_state_dir)); removed on absent.
    type: path
    required: true
  bpffs_dir:
    description: Directory on bpffs holding every lab pin (inventory C(lab_bpffs_dir)); removed on absent.
    type: path
    required: true
  xdp_pass_src:
    description: Source of the XDP_PASS program for the switch-side veths. Required for O(state=present).
    type: path
notes:
  - Must run as root on the machine hosting the lab (connection local).
  - Supports check mode and diff mode.
  - Shared names and contracts of the toolkit - C(docs/ARCHITECTURE.md) in the repository.
"""

EXAMPLES = r"""
- name: Build the seed's five-node lab plus its client
  lab_netns:
    state: present
    prefix: l4lb
    subnet: 20.1.1.0/24
    vip: 40.1.1.1
    state_dir: /run/l4lb
    bpffs_dir: /sys/fs/bpf/l4lb
    xdp_pass_src: "{{ playbook_dir }}/../bpf/xdp_pass.c"
    nodes:
      - {name: lb, ip: 20.1.1.1, role: lb}
      - {name: win1, ip: 20.1.1.10, role: backend, decap: xdp}
      - {name: win2, ip: 20.1.1.20, role: backend, decap: xdp}
      - {name: linux1, ip: 20.1.1.30, role: backend, decap: tc}
      - {name: linux2, ip: 20.1.1.40, role: backend, decap: tc}
      - {name: client, ip: 20.1.1.100, role: client}

- name: Tear the lab down
  lab_netns:
    state: absent
    prefix: l4lb
    subnet: 20.1.1.0/24
    vip: 40.1.1.1
    state_dir: /run/l4lb
    bpffs_dir: /sys/fs/bpf/l4lb
    nodes: "{{ lab_topology_nodes }}"
"""

RETURN = r"""
actions:
  description: What was changed (or, in check mode, would be), in order.
  returned: always
  type: list
  elements: str
  sample: ["add netns l4lb-lb", "l4lb-switch: add veth lb <-> l4lb-lb:eth0"]
namespaces:
  description: Every namespace the topology names (the switch first).
  returned: always
  type: list
  elements: str
  sample: [l4lb-switch, l4lb-lb, l4lb-client]
placement:
  description: >-
    Where the provider put things, for the roles after the topology: per node how to reach it,
    and where the LB node's switch port can be captured.
  returned: always
  type: dict
  sample:
    nodes: {lb: {connection: netns, namespace: l4lb-lb}}
    capture: {connection: netns, namespace: l4lb-switch, lb_ports: [lb]}
    namespaces: [l4lb-switch, l4lb-lb, l4lb-client]
topology:
  description: The validated, provider-neutral model (prefix, subnet, vip, switch, nodes with address, MTU, switch port, routes).
  returned: always
  type: dict
  sample:
    prefix: l4lb
    subnet: 20.1.1.0/24
    vip: 40.1.1.1
    switch: {bridge: br0}
    nodes:
      - {name: client, ip: 20.1.1.100/24, role: client, switch_port: client,
         routes: [{dst: 40.1.1.1/32, via: 20.1.1.1}]}
problems:
  description: On failure before any change, every validation or requirement problem found.
  returned: failure
  type: list
  elements: str
  sample: ["hostvars[win1].lab_ip 20.1.2.10 is outside lab_subnet 20.1.1.0/24"]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.lab_topology import (ProviderError, TopologyError, build_topology,
                                               get_provider)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent"], default="present"),
            provider=dict(type="str", choices=["netns"], default="netns"),
            prefix=dict(type="str", required=True),
            subnet=dict(type="str", required=True),
            vip=dict(type="str", required=True),
            nodes=dict(type="list", elements="dict", required=True, options=dict(
                name=dict(type="str", required=True),
                ip=dict(type="str", required=True),
                role=dict(type="str", required=True, choices=["lb", "backend", "client"]),
                decap=dict(type="str"),
                mtu=dict(type="int", default=1500),
            )),
            bridge=dict(type="str", default="br0"),
            node_iface=dict(type="str", default="eth0"),
            state_dir=dict(type="path", required=True),
            bpffs_dir=dict(type="path", required=True),
            xdp_pass_src=dict(type="path", no_log=False),
        ),
        required_if=[("state", "present", ["xdp_pass_src"])],
        supports_check_mode=True,
    )
    p = module.params
    state = p["state"]
    try:
        topo = build_topology(p)
        provider = get_provider(p["provider"], topo)
        provider.preflight(state)
        snap = provider.current()
        actions = provider.plan(state, snap)
    except TopologyError as e:
        module.fail_json(msg=f"lab_netns: {e}", problems=e.problems)
    except ProviderError as e:
        module.fail_json(msg=f"lab_netns: inspecting the lab failed: {e}")

    placement = provider.placement()
    result = dict(changed=bool(actions), actions=[a.text for a in actions],
                  namespaces=placement.get("namespaces", []), placement=placement,
                  topology=topo.as_dict())
    if module._diff:
        result["diff"] = dict(before=provider.describe(snap),
                              after=provider.describe_desired() if state == "present" else "",
                              before_header=f"lab {topo.prefix}", after_header=f"lab {topo.prefix}")
    if module.check_mode or not actions:
        module.exit_json(**result)
    try:
        provider.apply(actions)
    except ProviderError as e:
        result.update(msg=f"lab_netns: {e}", failed=True)
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
