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
      - C(present) compiles, loads, pins and attaches.
      - C(absent) detaches the program when it is ours (the pinned one, or named I(program)),
        removes the tc filter (and the C(clsact) qdisc when no filter is left on it) and the pin.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Supports check mode (the candidate is compiled in a temporary directory and loaded to learn
    its tag; nothing is pinned or attached) and diff (program tag, id, attach point).
  - Needs clang, libbpf 1.x (C(libbpf.so.1)), iproute2's C(tc) for I(method=tc), a mounted bpffs,
    and root.
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
  description: What was (or in check mode would be) done, in order.
  returned: always
  type: list
  elements: str
  sample: ["pin decap_xdp at /sys/fs/bpf/l4lb/win1/decap_xdp", "attach XDP (native) to eth0"]
"""

import errno
import json
import os
import shutil
import socket
import subprocess
import tempfile

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils.l4lb import libbpf
    from ansible.module_utils.l4lb.build import compile_object
    from ansible.module_utils.l4lb.errors import BpfError, L4LBError
    HAS_CORE = True
except ImportError:  # pragma: no cover - only when module_utils is missing from the path
    HAS_CORE = False

    class L4LBError(Exception):
        pass

    BpfError = L4LBError

_XDP_MODE_FLAGS = {"native": 1 << 2, "generic": 1 << 1}  # XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE
_XDP_ATTACHED = {1: "native", 2: "generic", 3: "offload", 4: "multi"}
TC_HANDLE = "0x1"


class DecapError(Exception):
    pass


def _run(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise DecapError(f"cannot run {argv[0]}: {exc}") from exc
    if p.returncode != 0:
        raise DecapError(f"{' '.join(argv)} failed (exit {p.returncode}): {p.stderr.strip()}")
    return p.stdout


def _prog(prog_id):
    """(id, tag, name) of a kernel program id; (0, '', '') for 0 or a vanished program."""
    if not prog_id:
        return 0, "", ""
    try:
        fd = libbpf.prog_fd_by_id(prog_id)
    except BpfError:
        return 0, "", ""
    try:
        info = libbpf.prog_info(fd)
        return info.id, bytes(info.tag).hex(), info.name.decode(errors="replace")
    finally:
        os.close(fd)


def _pinned_id(pin):
    if not os.path.exists(pin):
        return 0
    try:
        fd = libbpf.obj_get(pin)
    except BpfError:
        return 0
    try:
        return libbpf.prog_info(fd).id
    except BpfError:
        return 0  # pinned object is not a program
    finally:
        os.close(fd)


class Decap:
    def __init__(self, module):
        self.m = module
        p = module.params
        self.method = p["method"]
        self.device = p["device"]
        self.pin = os.path.join(p["pin_dir"], f"decap_{self.method}")
        self.check = module.check_mode
        self.actions = []
        try:
            self.ifindex = socket.if_nametoindex(self.device)
        except OSError:
            raise DecapError(f"device {self.device!r} does not exist in this network namespace")

    # --- what the kernel has -------------------------------------------------------------

    def xdp_attached(self):
        q = libbpf.xdp_query(self.ifindex)
        pid, tag, name = _prog(q.prog_id)
        return {"prog_id": pid, "tag": tag, "name": name,
                "attach_mode": _XDP_ATTACHED.get(q.attach_mode, "") if pid else ""}

    def tc_clsact(self):
        qd = json.loads(_run(["tc", "-j", "qdisc", "show", "dev", self.device]) or "[]")
        return any(q.get("kind") == "clsact" for q in qd)

    def tc_filters(self):
        """The bpf filters on ingress: list of {pref, handle, da, prog_id, tag, name}."""
        out = []
        for f in json.loads(_run(["tc", "-j", "filter", "show", "dev", self.device, "ingress"]) or "[]"):
            opts = f.get("options") or {}
            if f.get("kind") != "bpf" or "handle" not in opts:
                continue
            prog = opts.get("prog") or {}
            out.append({"pref": f.get("pref"), "handle": opts.get("handle"),
                        "da": bool(opts.get("direct-action")), "prog_id": prog.get("id", 0),
                        "tag": prog.get("tag", ""), "name": prog.get("name", "")})
        return out

    def tc_ours(self):
        pref = self.m.params["tc_pref"]
        for f in self.tc_filters():
            if f["pref"] == pref and f["handle"] == TC_HANDLE:
                return f
        return None

    def tc_attached(self):
        if not self.tc_clsact():
            return {"prog_id": 0, "tag": "", "name": "", "da": False, "clsact": False}
        f = self.tc_ours() or {"prog_id": 0, "tag": "", "name": "", "da": False}
        return dict(f, clsact=True)

    # --- present -------------------------------------------------------------------------

    def candidate(self, workdir):
        p = self.m.params
        if not p["src"]:
            raise DecapError("src is required with state=present")
        out_dir = workdir if self.check else p["build_dir"]
        res = compile_object(p["src"], os.path.join(out_dir, f"decap_{self.method}.o"), p["defines"])
        obj = libbpf.BpfObject(res.path)
        try:
            obj.load()
        except BpfError as exc:
            obj.close()
            raise DecapError(f"the kernel rejected {res.path}: {exc}\n{exc.log[-3000:]}") from exc
        return res, obj, obj.program(p["program"])

    def repin(self, prog):
        self.actions.append(f"pin {prog.name} at {self.pin}")
        if self.check:
            return
        os.makedirs(os.path.dirname(self.pin), exist_ok=True)
        tmp = self.pin + "_new"  # bpffs refuses names with a dot
        if os.path.exists(tmp):
            os.unlink(tmp)
        prog.pin(tmp)
        os.replace(tmp, self.pin)

    def present(self):
        with tempfile.TemporaryDirectory(prefix="bpf_decap-") as work:
            res, obj, prog = self.candidate(work)
            try:
                info = libbpf.prog_info(prog.fd)
                cand = {"tag": bytes(info.tag).hex(), "name": info.name.decode(errors="replace")}
                if self.method == "xdp":
                    before, after = self.present_xdp(prog, cand)
                else:
                    before, after = self.present_tc(prog, cand)
            finally:
                obj.close()
        result = {"object": res.path, "tag": cand["tag"], "name": cand["name"]}
        result.update(after)
        return before, result

    def present_xdp(self, prog, cand):
        want_mode = self.m.params["attach_mode"]
        cur = self.xdp_attached()
        same_prog = cur["prog_id"] and cur["tag"] == cand["tag"]
        # native that had to fall back to generic is accepted (no flapping); generic asked: generic.
        mode_ok = cur["attach_mode"] == want_mode or (want_mode == "native" and cur["attach_mode"] == "generic")
        pinned = _pinned_id(self.pin)
        if same_prog and mode_ok:
            if pinned != cur["prog_id"]:
                # The right program runs but its pin is missing or stale: pin the running one.
                self.actions.append(f"pin attached program {cur['prog_id']} at {self.pin}")
                if not self.check:
                    os.makedirs(os.path.dirname(self.pin), exist_ok=True)
                    fd = libbpf.prog_fd_by_id(cur["prog_id"])
                    try:
                        tmp = self.pin + "_new"  # bpffs refuses names with a dot
                        if os.path.exists(tmp):
                            os.unlink(tmp)
                        libbpf.obj_pin(fd, tmp)
                        os.replace(tmp, self.pin)
                    finally:
                        os.close(fd)
            return cur, {"prog_id": cur["prog_id"], "attach_mode": cur["attach_mode"]}
        used = self.xdp_attach(prog, cur, want_mode)
        self.repin(prog)
        if self.check:
            return cur, {"prog_id": cur["prog_id"] or None, "attach_mode": want_mode}
        now = self.xdp_attached()
        return cur, {"prog_id": now["prog_id"], "attach_mode": used}

    def xdp_attach(self, prog, cur, want_mode):
        order = ["generic"] if want_mode == "generic" else ["native", "generic"]
        last = None
        for mode in order:
            flags = _XDP_MODE_FLAGS[mode]
            atomic = cur["prog_id"] and cur["attach_mode"] == mode
            self.actions.append(f"{'replace' if atomic else 'attach'} XDP ({mode}) on {self.device}")
            if self.check:
                return want_mode
            try:
                if atomic:
                    old = libbpf.prog_fd_by_id(cur["prog_id"])
                    try:
                        libbpf.xdp_attach(self.ifindex, prog.fd, flags, old_prog_fd=old)
                    finally:
                        os.close(old)
                else:
                    if cur["prog_id"]:
                        libbpf.xdp_detach(self.ifindex, _XDP_MODE_FLAGS.get(cur["attach_mode"], 0))
                        cur = dict(cur, prog_id=0)
                    libbpf.xdp_attach(self.ifindex, prog.fd, flags)
                if mode != want_mode:
                    self.m.warn(f"{self.device} refused native XDP; the decap is attached in generic mode")
                return mode
            except BpfError as exc:
                last = exc
                self.actions.pop()
                if mode == "native" and exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTSUP):
                    continue
                raise DecapError(f"attaching XDP ({mode}) to {self.device} failed: {exc}") from exc
        raise DecapError(f"attaching XDP to {self.device} failed: {last}")

    def present_tc(self, prog, cand):
        cur = self.tc_attached()
        pinned = _pinned_id(self.pin)
        if cur["clsact"] and cur["prog_id"] and cur["tag"] == cand["tag"] and cur["da"] \
                and pinned == cur["prog_id"]:
            return cur, {"prog_id": cur["prog_id"], "tc_pref": self.m.params["tc_pref"]}
        if not cur["clsact"]:
            self.actions.append(f"add clsact qdisc on {self.device}")
            if not self.check:
                _run(["tc", "qdisc", "add", "dev", self.device, "clsact"])
        if cur["prog_id"] and cur["tag"] == cand["tag"] and cur["da"]:
            # Right program attached, pin missing: pin the attached one (no reattach).
            self.actions.append(f"pin attached program {cur['prog_id']} at {self.pin}")
            if not self.check:
                os.makedirs(os.path.dirname(self.pin), exist_ok=True)
                fd = libbpf.prog_fd_by_id(cur["prog_id"])
                try:
                    if os.path.exists(self.pin):
                        os.unlink(self.pin)
                    libbpf.obj_pin(fd, self.pin)
                finally:
                    os.close(fd)
            return cur, {"prog_id": cur["prog_id"], "tc_pref": self.m.params["tc_pref"]}
        self.repin(prog)
        pref = str(self.m.params["tc_pref"])
        self.actions.append(f"{'replace' if cur['prog_id'] else 'add'} tc ingress filter pref {pref} "
                            f"handle 1 bpf direct-action on {self.device}")
        if self.check:
            return cur, {"prog_id": cur["prog_id"] or None, "tc_pref": self.m.params["tc_pref"]}
        _run(["tc", "filter", "replace", "dev", self.device, "ingress", "pref", pref, "handle", "1",
              "bpf", "direct-action", "object-pinned", self.pin])
        now = self.tc_attached()
        return cur, {"prog_id": now["prog_id"], "tc_pref": self.m.params["tc_pref"]}

    # --- absent --------------------------------------------------------------------------

    def is_ours(self, cur, pinned):
        name = self.m.params["program"] or f"decap_{self.method}"
        return bool(cur["prog_id"]) and (cur["prog_id"] == pinned or cur["name"] == name)

    def absent(self):
        pinned = _pinned_id(self.pin)
        if self.method == "xdp":
            cur = self.xdp_attached()
            if self.is_ours(cur, pinned):
                self.actions.append(f"detach XDP program {cur['prog_id']} from {self.device}")
                if not self.check:
                    libbpf.xdp_detach(self.ifindex, _XDP_MODE_FLAGS.get(cur["attach_mode"], 0))
        else:
            cur = self.tc_attached()
            if self.is_ours(cur, pinned):
                pref = str(self.m.params["tc_pref"])
                self.actions.append(f"delete tc ingress filter pref {pref} handle 1 on {self.device}")
                if not self.check:
                    _run(["tc", "filter", "delete", "dev", self.device, "ingress", "pref", pref,
                          "handle", "1", "bpf"])
                left = [f for f in self.tc_filters() if not (f["prog_id"] == cur["prog_id"])]
                egress = json.loads(_run(["tc", "-j", "filter", "show", "dev", self.device, "egress"]) or "[]")
                if not left and not egress:
                    self.actions.append(f"delete clsact qdisc on {self.device} (no filter left)")
                    if not self.check:
                        _run(["tc", "qdisc", "delete", "dev", self.device, "clsact"])
        if os.path.lexists(self.pin):
            self.actions.append(f"remove pin {self.pin}")
            if not self.check:
                os.unlink(self.pin)
        return cur, {"prog_id": None, "tag": cur.get("tag") or None, "name": cur.get("name") or None}


def _view(d):
    keys = ("prog_id", "tag", "name", "attach_mode", "tc_pref")
    return {k: d.get(k) or None for k in keys if k in d}


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
    if not HAS_CORE:
        module.fail_json(msg="the l4lb control-plane core (module_utils/l4lb: libbpf, build) is not available")
    p = module.params
    if p["method"] == "tc" and not shutil.which("tc"):
        module.fail_json(msg="iproute2's tc is not installed (needed for method=tc)")
    if not 1 <= p["tc_pref"] <= 0xFFFF:
        module.fail_json(msg=f"tc_pref {p['tc_pref']} is not in 1..65535")
    try:
        d = Decap(module)
        if p["state"] == "present":
            before, after = d.present()
        else:
            before, after = d.absent()
    except (DecapError, L4LBError) as exc:
        module.fail_json(msg=str(exc))
    result = dict(changed=bool(d.actions), method=p["method"], device=p["device"], pin=d.pin,
                  actions=d.actions, **after)
    if module._diff:
        result["diff"] = {"before": _view(before), "after": _view(after)}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
