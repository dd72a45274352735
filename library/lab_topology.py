#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: lab_topology
short_description: Build or remove the L4LB lab's topology (namespaces, libvirt guests, or external hosts)
description:
  - Realises the lab topology through a provider (O(provider)); the model, its validation and
    the provider interface are in C(module_utils/lab_topology/) (C(model.py), C(provider.py)),
    one file per provider (C(netns.py), C(libvirt.py)); C(docs/ARCHITECTURE.md) documents them.
  - B(netns) (the embedded default) builds the lab on this machine. Each node is a network
    namespace C(<prefix>-<name>) with interface O(node_iface) holding the node's address; the
    internal switch is the bridge O(bridge) in namespace C(<prefix>-switch); every node is joined
    to it by a veth pair whose switch-side end is named after the node. Each switch-side veth
    carries a trivial native XDP_PASS program (compiled from O(xdp_pass_src) into O(state_dir)
    when the source changed, pinned at C(<bpffs_dir>/switch/xdp_pass), compiled, loaded and
    attached through the control-plane core C(module_utils/l4lb/)), so native XDP_TX from a
    node's interface is not dropped (a veth peer must be NAPI-ready). Both ends of a node's veth pair carry the node's
    O(nodes[].mtu). Checksum offload (rx, tx) is turned off on node interfaces, since XDP rewrites
    would otherwise leave bad checksums. Every link is created with C(ip -n <namespace>); nothing
    is ever added to the root namespace. O(state=absent) kills every process whose network
    namespace is a lab namespace (found by namespace inode), deletes the namespaces, and removes
    O(bpffs_dir) and O(state_dir).
  - B(external) takes nodes that already exist (the user's machines, e.g. Windows hosts reached
    over WinRM); the model is validated, nothing is made or removed.
  - B(libvirt) builds the seed's lab as real guests. The switch is an isolated libvirt network
    C(<prefix>-switch) (bridge C(<prefix>-br), no DHCP, no DNS) whose host address is the client
    node's address and which carries the client's route C(<vip_range> via <lb address>); the client
    is the hypervisor's host. Every other node is a domain C(<prefix>-<name>) (C(kvm) where the
    hypervisor offers it, else C(qemu) with a warning) booted directly from its image's kernel and
    initrd, with a qcow2 overlay in the pool C(<prefix>-pool) (directory C(<lab_dir>/pool)); its
    hostname, address, MTU and the lab's SSH key are on its kernel command line.
  - With O(libvirt.confined=true) the module runs the lab's own libvirtd inside the namespace
    C(<prefix>-host), which then plays the seed's host and client; the root namespace and any
    system libvirtd are untouched and O(libvirt.uri) is ignored. With C(false) it uses
    O(libvirt.uri), whose network then adds the client address and the VIP range's route to that host,
    as the seed does.
  - The libvirt provider never changes an object it did not make - a domain without the lab's
    metadata, a network with another bridge or a forward mode, a pool at another directory -
    and fails naming it instead.
  - Idempotent by inspecting the real state (netns - namespaces, links, addresses, routes,
    attached XDP programs, offload settings; libvirt - the daemon, network, pool, volumes and
    each domain's definition and state); only what differs is changed. A domain whose definition
    must change is stopped, redefined and started again.
  - All input is validated, and the requirements (root, kernel features or the hypervisor's
    reach, domain types, free memory and disk) are checked, before any change. Every error names
    the inventory variable or the requirement at fault.
version_added: "1.0.0"
author: L4LB lab toolkit maintainers (@l4lb-lab)
options:
  state:
    description: Whether the lab topology should exist.
    type: str
    choices: [present, absent]
    default: present
  provider:
    description: How nodes are realised (inventory C(lab_topology_provider)).
    type: str
    choices: [netns, libvirt, external]
    default: netns
  prefix:
    description: Name prefix of everything the lab makes (inventory C(lab_prefix)).
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
  vip_range:
    description:
      - Every address a service may use as its VIP (inventory C(lab_vip_range)), an IPv4 network in
        CIDR form that holds O(vip) and does not overlap O(subnet). The client routes it through
        the LB node (netns - the client namespace's route; libvirt - the network's C(<route>);
        external - yours to set).
      - Omitted - O(vip)'s C(/32).
    type: str
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
      os:
        description:
          - The node's OS (inventory C(lab_os)). C(windows) is accepted where the Windows roles
            exist (backends, with C(xdp) decap) and refused, naming the host, elsewhere; the
            C(netns) provider refuses it (a namespace runs no Windows). Checked by the module
            itself (C(linux) or C(windows)) so the error names the host.
        type: str
        default: linux
      mtu:
        description:
          - MTU of the node's interface (and of its switch-side veth, or its virtio-net device),
            1280..9000. The lab gives the LB node and the backends room for DSR's 20-byte IPIP
            header (inventory C(lab_dsr_fit=mtu), C(lab_dsr_mtu)) while the client keeps 1500.
        type: int
        default: 1500
  bridge:
    description: Bridge name inside the switch namespace (netns).
    type: str
    default: br0
  node_iface:
    description: Interface name inside each node namespace (netns).
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
    description: Source of the XDP_PASS program for the switch-side veths (netns); required for O(state=present) there.
    type: path
  boot_timeout:
    description:
      - With I(state=present), seconds to wait until every node can be reached (a libvirt guest's
        sshd answers on its switch address, probed from the client's side of the switch). A node
        that is up answers at once. The netns provider's nodes are ready when made.
    type: float
    default: 600
  libvirt:
    description: Settings of the libvirt provider (inventory C(lab_libvirt_*)).
    type: dict
    default: {}
    suboptions:
      uri:
        description: The hypervisor (C(qemu:///system), C(qemu+ssh://host/system)); ignored when O(libvirt.confined).
        type: str
        default: qemu:///system
      confined:
        description: Run the lab's own libvirtd in namespace C(<prefix>-host) (the host stays untouched).
        type: bool
        default: true
      lab_dir:
        description:
          - Directory of the lab's guests on the hypervisor host - the pool (overlays),
            console logs, the lab's known_hosts; removed on absent. Default C(/var/lib/l4lb-lab/<prefix>).
        type: path
      domain_type:
        description: C(kvm), C(qemu) (TCG), or C(auto) (kvm where the hypervisor offers it).
        type: str
        choices: [auto, kvm, qemu]
        default: auto
      ssh_pubkey:
        description: The lab's SSH public key (one line), put on every guest's kernel command line.
        type: str
      windows_admin_password:
        description: The administrator password of Windows guests (their config drive sets it; inventory C(lab_winrm_password)).
        type: str
      machines:
        description: Per guest node - memory, vCPUs, the image to boot, OS.
        type: list
        elements: dict
        default: []
        suboptions:
          name:
            description: The node (inventory hostname).
            type: str
            required: true
          memory_mb:
            description: Memory in MiB (inventory C(lab_memory_mb)).
            type: int
            default: 1024
          vcpus:
            description: Virtual CPUs (inventory C(lab_vcpus)).
            type: int
            default: 1
          image:
            description: The qcow2 base image the node's overlay is backed by (inventory C(lab_image)).
            type: path
          kernel:
            description: Kernel for direct boot (inventory C(lab_image_kernel)).
            type: path
          initrd:
            description: Initrd for direct boot (inventory C(lab_image_initrd)).
            type: path
          os:
            description:
              - The node's OS (inventory C(lab_os)). A C(windows) guest boots O(libvirt.machines[].image)
                (a user's sysprepped Windows image with cloudbase-init and the virtio drivers) from its
                disk, with a cloudbase-init config drive (ISO C(config-2)) giving it its address, the
                administrator password and WinRM over HTTPS with O(libvirt.machines[].winrm_pfx).
            type: str
            default: linux
          winrm_pfx:
            description: A Windows guest's WinRM certificate and key, PKCS#12 (the lab_topology role makes it, signed by the lab's CA).
            type: path
          winrm_pfx_passphrase:
            description: The passphrase of O(libvirt.machines[].winrm_pfx).
            type: str
          mac:
            description: MAC of the node's interface (inventory C(lab_mac)); default C(02:4c:) and the address bytes.
            type: str
          seed:
            description:
              - How the guest learns its name, address and the lab's key (inventory C(lab_image_seed)).
              - C(cmdline) - the kernel command line of direct kernel boot (the image C(lab_image) builds).
              - C(nocloud) - a cloud-init NoCloud seed volume (label C(cidata)) the provider writes to
                C(<lab_dir>/seed/<node>.iso) with xorriso; for stock cloud images, which then boot
                their own bootloader (no O(libvirt.machines[].kernel)).
              - C(configdrive) - a Windows guest's cloudbase-init config drive (label C(config-2), mode
                0600) at the same place - its address, the administrator password
                (O(libvirt.windows_admin_password)) and WinRM over HTTPS with
                O(libvirt.machines[].winrm_pfx).
              - C(auto) - C(configdrive) for C(os=windows), else C(cmdline) with a kernel, else C(nocloud).
            type: str
            choices: [auto, cmdline, nocloud, configdrive]
            default: auto
notes:
  - Must run as root on the machine hosting the lab, or (libvirt, not confined) with access to O(libvirt.uri).
  - Supports check mode and diff mode.
  - Shared names and contracts of the toolkit - C(docs/ARCHITECTURE.md) in the repository.
"""

EXAMPLES = r"""
- name: Build the seed's five-node lab plus its client
  lab_topology:
    state: present
    prefix: l4lb
    subnet: 20.1.1.0/24
    vip: 40.1.1.1
    vip_range: 40.1.1.0/24
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

- name: The same lab as libvirt guests, with the lab's own libvirtd confined to namespace l4lb-host
  lab_topology:
    state: present
    provider: libvirt
    prefix: l4lb
    subnet: 20.1.1.0/24
    vip: 40.1.1.1
    state_dir: /run/l4lb
    bpffs_dir: /sys/fs/bpf/l4lb
    nodes: "{{ lab_topology_nodes }}"
    libvirt:
      confined: true
      ssh_pubkey: "{{ lookup('ansible.builtin.file', '/var/lib/l4lb-lab/l4lb/ssh/id_ed25519.pub') }}"
      machines:
        - name: lb
          memory_mb: 1024
          vcpus: 2
          image: /var/cache/l4lb-images/debian12-0123456789abcdef/base.qcow2
          kernel: /var/cache/l4lb-images/debian12-0123456789abcdef/vmlinuz
          initrd: /var/cache/l4lb-images/debian12-0123456789abcdef/initrd.img

- name: Tear the lab down
  lab_topology:
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
  description: The validated, provider-neutral model (prefix, subnet, vip, vip_range, switch, nodes with address, MTU, switch port, routes).
  returned: always
  type: dict
  sample:
    prefix: l4lb
    subnet: 20.1.1.0/24
    vip: 40.1.1.1
    vip_range: 40.1.1.0/24
    switch: {bridge: br0}
    nodes:
      - {name: client, ip: 20.1.1.100/24, role: client, switch_port: client,
         routes: [{dst: 40.1.1.0/24, via: 20.1.1.1, nexthops: [20.1.1.1]}]}
domain_type:
  description: The libvirt provider's domain type (C(kvm), or C(qemu) when the hypervisor offers no KVM).
  returned: provider libvirt, when the hypervisor answered
  type: str
  sample: qemu
missing:
  description: >-
    The nodes that do not exist (or do not run) after this call, so the roles cannot reach them:
    in check mode from nothing, every node the run would create (site.yml then skips the node
    plays); [] after a real run with state present.
  returned: always
  type: list
  elements: str
  sample: [lb, win1, win2, linux1, linux2, client]
ready:
  description: >-
    The nodes confirmed reachable after the change (state present, not in check mode); null when
    the provider cannot probe them (a libvirt hypervisor on another host), in which case the
    playbook's own wait covers them.
  returned: state present, not in check mode
  type: list
  elements: str
  sample: [lb, win1, win2, linux1, linux2]
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


def provider_settings(p):
    """The provider-specific settings of the module's parameters."""
    if p["provider"] != "libvirt":
        return {}
    lv = p["libvirt"] or {}
    return {"uri": lv.get("uri") or "qemu:///system", "confined": lv.get("confined", True),
            "lab_dir": lv.get("lab_dir"), "domain_type": lv.get("domain_type") or "auto",
            "ssh_pubkey": lv.get("ssh_pubkey"), "machines": lv.get("machines") or [],
            "windows_admin_password": lv.get("windows_admin_password")}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent"], default="present"),
            provider=dict(type="str", choices=["netns", "libvirt", "external"], default="netns"),
            prefix=dict(type="str", required=True),
            subnet=dict(type="str", required=True),
            vip=dict(type="str", required=True),
            vip_range=dict(type="str"),
            nodes=dict(type="list", elements="dict", required=True, options=dict(
                name=dict(type="str", required=True),
                ip=dict(type="str", required=True),
                role=dict(type="str", required=True, choices=["lb", "backend", "client"]),
                decap=dict(type="str"),
                mtu=dict(type="int", default=1500),
                os=dict(type="str", default="linux"),
            )),
            bridge=dict(type="str", default="br0"),
            node_iface=dict(type="str", default="eth0"),
            state_dir=dict(type="path", required=True),
            bpffs_dir=dict(type="path", required=True),
            xdp_pass_src=dict(type="path", no_log=False),
            boot_timeout=dict(type="float", default=600.0),
            libvirt=dict(type="dict", default={}, options=dict(
                uri=dict(type="str", default="qemu:///system"),
                confined=dict(type="bool", default=True),
                lab_dir=dict(type="path"),
                domain_type=dict(type="str", choices=["auto", "kvm", "qemu"], default="auto"),
                ssh_pubkey=dict(type="str", no_log=False),
                windows_admin_password=dict(type="str", no_log=True),
                machines=dict(type="list", elements="dict", default=[], options=dict(
                    name=dict(type="str", required=True),
                    memory_mb=dict(type="int", default=1024),
                    vcpus=dict(type="int", default=1),
                    image=dict(type="path"),
                    kernel=dict(type="path"),
                    initrd=dict(type="path"),
                    os=dict(type="str", default="linux"),
                    mac=dict(type="str"),
                    seed=dict(type="str", choices=["auto", "cmdline", "nocloud", "configdrive"], default="auto"),
                    winrm_pfx=dict(type="path"),
                    winrm_pfx_passphrase=dict(type="str", no_log=True),
                )),
            )),
        ),
        supports_check_mode=True,
    )
    p = module.params
    state = p["state"]
    if p["provider"] == "netns" and state == "present" and not p["xdp_pass_src"]:
        module.fail_json(msg="lab_topology: xdp_pass_src is required for the netns provider's state=present")
    try:
        topo = build_topology(p)
        provider = get_provider(p["provider"], topo, **provider_settings(p))
        provider.preflight(state)
        snap = provider.current()
        actions = provider.plan(state, snap)
    except TopologyError as e:
        module.fail_json(msg=f"lab_topology: {e}", problems=e.problems)
    except ProviderError as e:
        module.fail_json(msg=f"lab_topology: inspecting the lab failed: {e}")

    for w in getattr(provider, "warnings", []):
        module.warn(w)
    placement = provider.placement()
    result = dict(changed=bool(actions), actions=[a.text for a in actions],
                  namespaces=placement.get("namespaces", []), placement=placement,
                  topology=topo.as_dict(),
                  missing=provider.missing(snap) if state == "present" or module.check_mode
                  else [n.name for n in topo.nodes])
    if getattr(provider, "domain_type", None):
        result["domain_type"] = provider.domain_type
    if module._diff:
        result["diff"] = dict(before=provider.describe(snap),
                              after=provider.describe_desired() if state == "present" else "",
                              before_header=f"lab {topo.prefix}", after_header=f"lab {topo.prefix}")
    if module.check_mode:
        module.exit_json(**result)
    try:
        if actions:
            provider.apply(actions)
        if state == "present":
            result["ready"] = provider.wait_ready(p["boot_timeout"])
            result["missing"] = []
    except ProviderError as e:
        result.update(msg=f"lab_topology: {e}", failed=True)
        module.fail_json(**result)
    if getattr(provider, "domain_type", None):
        result["domain_type"] = provider.domain_type
    module.exit_json(**result)


if __name__ == "__main__":
    main()
