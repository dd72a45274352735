#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: compile and attach a backend's IPIP decap program (XDP or tc ingress)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bpf_decap
short_description: Compile and attach a backend's IPIP decapsulation program (XDP or tc)
description:
  - In DSR mode the load balancer sends each request to the backend inside an IPIP packet
    (outer 20.1.1.x -> backend, inner client -> VIP). The backend has to strip the outer header
    before its TCP stack sees the packet. This kernel has no C(ipip) module, so that is done by
    a BPF program, as on the seed's backends.
  - I(method=xdp) attaches an XDP program to I(device) (what the seed's Windows backends do
    with C(decap_permit_packet.o)); I(method=tc) adds a C(clsact) qdisc and a direct-action
    ingress filter (what the seed's Linux backends do with C(test_tc_tunnel.o)).
  - The source is compiled on the node with the project's compile function
    (C(module_utils/l4lb/build.py), C(compile_object)) into I(build_dir), loaded through libbpf
    and pinned at C(<pin_dir>/decap_<method>).
  - Changed only when the kernel's state differs from the wanted one, that is when the attached
    program's tag (a hash of its instructions, so source, macros and toolchain all feed it) differs from
    the freshly compiled candidate's, the attach point is missing, or the pin is missing or
    points at another program. Files are never used as markers.
  - An attached XDP program is replaced atomically (one netlink replace, C(XDP_FLAGS_REPLACE));
    the tc filter is replaced atomically with C(tc filter replace) at a fixed I(tc_pref) and
    handle 1.
  - A device has one IPIP decap - with I(state=present), the other method's program on I(device)
    (C(decap_tc) for I(method=xdp), C(decap_xdp) for I(method=tc)) is detached and its pin
    removed in the same task, as I(state=absent) of that method would, after the wanted one is
    attached, so there is no moment without a decap (while both are attached the XDP one
    decapsulates first and the tc one sees no IPIP). Reported in RV(other) and RV(actions).
  - Runs in the network namespace the task runs in (with the C(netns) connection, the node's).
version_added: "0.1.0"
author: L4LB lab toolkit maintainers (@l4lb-lab)
options:
  method:
    description: Where the decap program runs.
    type: str
    choices: [xdp, tc]
    required: true
  src:
    description:
      - The decap program's C source (C(bpf/decap_xdp.c) or C(bpf/decap_tc.c) of this
        repository). Its directory and C(<dir>/include) are on the include path.
      - Required with I(state=present).
    type: path
  defines:
    description: Extra C macros for the compile (name -> value; a null value defines it empty).
    type: dict
    default: {}
  program:
    description:
      - Name of the program (the C function) in the object. Default is the object's only
        program.
      - With I(state=absent), an attached program of this name is also recognised as ours when
        there is no pin (default C(decap_<method>)).
    type: str
  device:
    description: Interface to attach to, in the task's network namespace.
    type: str
    default: eth0
  build_dir:
    description: Where the compiled object C(decap_<method>.o) is written.
    type: path
    required: true
  pin_dir:
    description: bpffs directory for the program's pin C(decap_<method>). Created when missing.
    type: path
    required: true
  attach_mode:
    description:
      - I(method=xdp) only. C(native) attaches in the driver and falls back to C(generic) when
        the driver refuses (with a warning; later runs accept the generic attachment).
    type: str
    choices: [native, generic]
    default: native
  tc_pref:
    description: I(method=tc) only. Priority of the ingress filter (its handle is always 1).
    type: int
    default: 1
  state:
    description:
      - C(present) compiles, loads, pins and attaches, then detaches the other method (see above).
      - C(absent) detaches the program when it is ours (the pinned one, or named I(program)),
        removes the tc filter (and the C(clsact) qdisc when no filter is left on it) and the pin.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Supports check mode (the candidate is compiled in a temporary directory and loaded to learn
    its tag; nothing is pinned or attached) and diff (program tag, id, attach point; the other
    method's under C(other)).
  - Needs clang, libbpf 1.x (C(libbpf.so.1)), iproute2's C(tc) (for I(method=tc), and with
    I(state=present) to check the tc hook for the other method), a mounted bpffs, and root.
  - Linux only. On a Windows backend (eBPF-for-Windows 0.12.0) the seed's
    C(netsh ebpf add program decap_permit_packet.o pinpath=ipip_decap) does this job.
  - See also the module C(xdp_program) (library/ in the repository).
"""

EXAMPLES = r"""
- name: XDP decap, as on the seed's Windows backends
  bpf_decap:
    method: xdp
    src: "{{ playbook_dir }}/../bpf/decap_xdp.c"
    device: eth0
    build_dir: /run/l4lb/win1/decap
    pin_dir: /sys/fs/bpf/l4lb/win1

- name: tc ingress decap, as on the seed's Linux backends
  bpf_decap:
    method: tc
    src: "{{ playbook_dir }}/../bpf/decap_tc.c"
    build_dir: /run/l4lb/linux1/decap
    pin_dir: /sys/fs/bpf/l4lb/linux1

- name: tc decap on a device that had the XDP one - the XDP decap is detached in the same task
  bpf_decap:
    method: tc
    src: "{{ playbook_dir }}/../bpf/decap_tc.c"
    build_dir: /run/l4lb/win1/decap
    pin_dir: /sys/fs/bpf/l4lb/win1
  register: decap
  # decap.other.actions: ["detach XDP program 412 from eth0", "remove pin /sys/fs/bpf/l4lb/win1/decap_xdp"]

- name: Detach the tc decap and remove its pin
  bpf_decap:
    method: tc
    build_dir: /run/l4lb/linux1/decap
    pin_dir: /sys/fs/bpf/l4lb/linux1
    state: absent
"""

RETURN = r"""
method:
  description: The decap method handled.
  returned: always
  type: str
  sample: xdp
device:
  description: The interface.
  returned: always
  type: str
  sample: eth0
prog_id:
  description: Kernel id of the attached program after the task (null when none, or in check mode before the first attach).
  returned: always
  type: int
  sample: 412
tag:
  description: Tag of the wanted program (present) or of the program that was attached (absent).
  returned: always
  type: str
  sample: 3b185187f1855c4c
name:
  description: The program's name.
  returned: always
  type: str
  sample: decap_xdp
attach_mode:
  description: I(method=xdp) only; how the program is attached (native or generic).
  returned: when method=xdp and state=present
  type: str
  sample: native
pin:
  description: Path of the program's pin on bpffs.
  returned: always
  type: str
  sample: /sys/fs/bpf/l4lb/win1/decap_xdp
object:
  description: Path of the compiled object (a temporary path in check mode).
  returned: state=present
  type: str
  sample: /run/l4lb/win1/decap/decap_xdp.o
actions:
  description: What was (or in check mode would be) done, in order (with I(state=present), the other method's last).
  returned: always
  type: list
  elements: str
  sample: ["pin decap_xdp at /sys/fs/bpf/l4lb/win1/decap_xdp", "attach XDP (native) to eth0"]
other:
  description:
    - The other method on I(device), detached (C(state=absent) of it) - its C(method), C(pin), the
      C(tag) and C(name) of the program that was attached there (null when none) and its
      C(actions) (empty when there was nothing to do).
  returned: state=present
  type: dict
  sample: {"method": "tc", "pin": "/sys/fs/bpf/l4lb/win1/decap_tc", "tag": "6d3e2c1b0a998877",
           "name": "decap_tc", "actions": ["delete tc ingress filter pref 1 handle 1 on eth0"]}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.l4lb import decap
from ansible.module_utils.l4lb.module_shell import run_module

OTHER = {"xdp": "tc", "tc": "xdp"}


def present_and_other_absent(module, spec, tc_bin):
    """The wanted method attached, then the other one on the device detached (one decap per
    device; attach first, so the device is never without one)."""
    kw = dict(check_mode=module.check_mode, diff=module._diff, run_command=module.run_command, tc_bin=tc_bin)
    result = decap.ensure(spec, "present", **kw)
    other = decap.DecapSpec(method=OTHER[spec.method], device=spec.device, build_dir=spec.build_dir,
                            pin_dir=spec.pin_dir, tc_pref=spec.tc_pref)
    gone = decap.ensure(other, "absent", **kw)
    result["other"] = {k: gone.get(k) for k in ("method", "pin", "tag", "name", "actions")}
    result["actions"] = result["actions"] + gone["actions"]
    result["changed"] = result["changed"] or gone["changed"]
    result["warnings"] = (result.get("warnings") or []) + (gone.get("warnings") or [])
    if module._diff:
        for side in ("before", "after"):
            result["diff"][side]["other"] = dict(gone["diff"][side], method=other.method)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            method=dict(type="str", choices=["xdp", "tc"], required=True),
            src=dict(type="path"),
            defines=dict(type="dict", default={}),
            program=dict(type="str"),
            device=dict(type="str", default="eth0"),
            build_dir=dict(type="path", required=True),
            pin_dir=dict(type="path", required=True),
            attach_mode=dict(type="str", choices=["native", "generic"], default="native"),
            tc_pref=dict(type="int", default=1),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        required_if=[("state", "present", ["src"])],
        supports_check_mode=True,
    )
    p = module.params
    need_tc = p["method"] == "tc" or p["state"] == "present"
    tc_bin = module.get_bin_path("tc") if need_tc else None
    if need_tc and not tc_bin:
        module.fail_json(msg="iproute2's tc is not installed (needed for method=tc, and with state=present "
                             "to check the tc hook for the other method)")
    if not 1 <= p["tc_pref"] <= 0xFFFF:
        module.fail_json(msg=f"tc_pref {p['tc_pref']} is not in 1..65535")
    spec = decap.DecapSpec(
        method=p["method"], device=p["device"], build_dir=p["build_dir"], pin_dir=p["pin_dir"], src=p["src"],
        defines=p["defines"], program=p["program"], attach_mode=p["attach_mode"], tc_pref=p["tc_pref"],
    )

    def action():
        if p["state"] == "present":
            return present_and_other_absent(module, spec, tc_bin)
        return decap.ensure(spec, "absent", check_mode=module.check_mode, diff=module._diff,
                            run_command=module.run_command, tc_bin=tc_bin)

    run_module(module, action)


if __name__ == "__main__":
    main()
