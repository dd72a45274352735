#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: compile, load, pin and attach the L4 load balancer's XDP program."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: xdp_program
short_description: Compile, load and attach the XDP L4 load balancer on the LB node
description:
  - Compiles the load balancer in I(src) on the node with the device's properties (IPv4 address,
    MAC, ifindex, MTU, read from the kernel over netlink) and the mode as C macros, as the seed's
    agent does, then loads it, pins it under I(pin_dir) and attaches it to I(device).
  - Maps are pinned by name under C(<pin_dir>/maps) and reused by every later load, so services
    and connection tracking survive a reload or a mode switch (the seed's C(mode update dsr)).
  - A running program is replaced atomically (one netlink replace, no moment without a program)
    when it is attached in the same mode (native or generic).
  - Changed only when the program the kernel would run differs from the attached one (its tag, which
    source, macros and toolchain all feed), the attach mode differs, or the pin is missing.
    The module judges by the kernel's state, not by files.
  - I(mode=dsr) is refused, before anything is compiled or attached (in check mode too), while
    a port-translating service (a backend port differing from the frontend port) is programmed
    in the pinned maps; the message lists them. In DSR the backend answers the client directly,
    from the port it received on, so such a service cannot work there.
  - Runs on Linux. On a Windows LB node (eBPF-for-Windows 0.12.0) drive C(l4lbctl) instead;
    see the README.
version_added: "0.1.0"
author: L4LB lab toolkit maintainers (@l4lb-lab)
options:
  device:
    description: Interface to attach to, in the network namespace the task runs in.
    type: str
    required: true
  src:
    description: Directory holding the datapath sources (the project's C(bpf/) copied to the node).
    type: path
    required: true
  build_dir:
    description: Where the compiled object is written (kept for inspection with bpftool).
    type: path
    required: true
  pin_dir:
    description: bpffs directory for the program pin (C(prog)) and the map pins (C(maps/)).
    type: path
    required: true
  mode:
    description: Load-balancing mode compiled into the program.
    type: str
    choices: [snat, dsr]
    default: snat
  attach_mode:
    description:
      - C(native) attaches in the driver; when the driver refuses native XDP the program is
        attached in generic mode, a warning says so, and later runs accept that.
      - C(generic) attaches in the kernel's generic (skb) path on request.
    type: str
    choices: [native, generic]
    default: native
  maglev_size:
    description: Maglev table size per service (prime). Changing it needs I(state=absent) first.
    type: int
    default: 2039
  snat_port_min:
    description:
      - Lowest source port SNAT allocates on the LB IP. The range must stay outside the node's
        ephemeral range (C(net.ipv4.ip_local_port_range)); the module refuses an overlap.
      - Each port serves up to 4 backends at once, so the range is how many concurrent SNAT flows
        one backend can have, and 4 times the range how many all backends can have together.
    type: int
    default: 1024
  snat_port_max:
    description: Highest source port SNAT allocates.
    type: int
    default: 32767
  ct_timeouts:
    description:
      - Connection lifetimes in whole seconds, compiled into the program (C(LB_CT_*_TIMEOUT),
        C(LB_SNAT_TIME_WAIT)); keys omitted keep their defaults. A flow quiet for its state's
        lifetime is over; its SNAT port may then go to another flow. The C(lb_gc) module
        garbage-collects with the same values.
      - C(syn) (default 5) TCP whose handshake the client has not completed; C(tcp) (21600)
        established; C(fin) (10) a FIN seen one way only; C(closed) (2) FIN both ways or RST;
        C(udp) (60); C(time_wait) (60) how long the port of a flow the backend closed first
        (the backend then holds TIME_WAIT) is kept from other clients.
    type: dict
    default: {}
  force:
    description: Reload and re-attach even when nothing changed (a forced reload; maps are kept).
    type: bool
    default: false
  state:
    description: C(present) compiles and attaches; C(absent) detaches (only our own program) and removes every pin.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Supports check mode (compiles and verifies the candidate in the kernel with private maps; nothing is pinned or attached) and diff.
  - Needs clang, libbpf 1.x and a mounted bpffs on the node; the lb_node role installs them.
  - See also the modules C(lb_service), C(lb_dumpstate) (library/ in the repository).
"""

EXAMPLES = r"""
- name: Attach the load balancer in SNAT mode
  xdp_program:
    device: eth0
    src: /run/l4lb/src/bpf
    build_dir: /run/l4lb/lb/build
    pin_dir: /sys/fs/bpf/l4lb/lb
    mode: snat

- name: Switch to DSR (services and connection tracking are kept)
  xdp_program:
    device: eth0
    src: /run/l4lb/src/bpf
    build_dir: /run/l4lb/lb/build
    pin_dir: /sys/fs/bpf/l4lb/lb
    mode: dsr

- name: Remove the program and its pins
  xdp_program:
    device: eth0
    src: /run/l4lb/src/bpf
    build_dir: /run/l4lb/lb/build
    pin_dir: /sys/fs/bpf/l4lb/lb
    state: absent
"""

RETURN = r"""
prog_id:
  description: Kernel id of the attached program (null in check mode before the first attach).
  returned: state=present
  type: int
  sample: 214
tag:
  description: The program's tag (hash of its instructions), as bpftool shows it.
  returned: state=present
  type: str
  sample: 6d2b0e6a93c1f0a4
attach_mode:
  description: How the program is attached.
  returned: state=present
  type: str
  sample: native
pins:
  description: Where the program and the maps are pinned.
  returned: state=present
  type: dict
  sample: {"prog": "/sys/fs/bpf/l4lb/lb/prog", "maps": "/sys/fs/bpf/l4lb/lb/maps"}
build:
  description: The compile that produced the candidate program.
  returned: state=present
  type: dict
  contains:
    object:
      description: Path of the compiled object.
      type: str
    defines:
      description: The macros passed to clang (device properties, mode, sizes).
      type: dict
    clang:
      description: The compiler's version line.
      type: str
    cached:
      description:
        - True when the object in I(build_dir) was already built from the same command, compiler
          and inputs (every file clang read, by SHA-256), so clang did not run. Whether the
          program is loaded and attached is still read from the kernel.
      type: bool
status:
  description: The device's XDP state after the task (prog_id, tag, name, attach_mode, pins).
  returned: always
  type: dict
fast_path_filled:
  description:
    - Entries written to the fast paths' maps (C(lb4_service_by_id), C(lb4_vip_filter),
      C(lb4_front_hint)) from the services already programmed. Only a program loaded on maps
      pinned before those maps existed needs this (they start empty; an empty VIP filter passes
      every packet, and empty hints send every new flow to the service hash).
  returned: when the fast path's maps had to be filled (not in check mode)
  type: int
  sample: 2
"""

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.l4lb import agent, maglev, program
from ansible.module_utils.l4lb.module_shell import run_module


def main():
    module = AnsibleModule(
        argument_spec=dict(
            device=dict(type="str", required=True),
            src=dict(type="path", required=True),
            build_dir=dict(type="path", required=True),
            pin_dir=dict(type="path", required=True),
            mode=dict(type="str", choices=["snat", "dsr"], default="snat"),
            attach_mode=dict(type="str", choices=["native", "generic"], default="native"),
            maglev_size=dict(type="int", default=maglev.DEFAULT_SIZE),
            snat_port_min=dict(type="int", default=1024),
            snat_port_max=dict(type="int", default=32767),
            ct_timeouts=dict(type="dict", default={}),
            force=dict(type="bool", default=False),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if p["state"] == "absent":
        run_module(module, lambda: program.ensure_absent(p["device"], p["pin_dir"], check_mode=module.check_mode))
    desired = program.Desired(
        device=p["device"], src_dir=p["src"], build_dir=p["build_dir"], pin_dir=p["pin_dir"],
        mode=p["mode"], attach_mode=p["attach_mode"], maglev_size=p["maglev_size"],
        snat_port_min=p["snat_port_min"], snat_port_max=p["snat_port_max"],
        ct_timeouts=p["ct_timeouts"], force=p["force"],
    )
    run_module(module, lambda: agent.mode_update(desired, check_mode=module.check_mode))


if __name__ == "__main__":
    main()
