# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A backend's IPIP decap program (bpf/decap_xdp.c or bpf/decap_tc.c): compiled on the node,
loaded, pinned at ``<pin_dir>/decap_<method>`` and attached with XDP (the LB program's life
cycle, :mod:`.xdp`) or as a tc ingress filter (:mod:`.tc`). Judged by the attached program's
tag, never by files; check mode touches nothing."""

from __future__ import annotations

import os
import posixpath
import tempfile
from dataclasses import asdict, dataclass, field

from . import platform, xdp
from .build import compile_object
from .errors import InvalidConfig
from .program import load_object
from .tc import TcIngress


@dataclass
class DecapSpec:
    method: str                 # xdp | tc
    device: str
    build_dir: str
    pin_dir: str
    src: str | None = None
    defines: dict = field(default_factory=dict)
    program: str | None = None
    attach_mode: str = "native"
    tc_pref: int = 1

    @property
    def pin(self) -> str:
        return posixpath.join(self.pin_dir, f"decap_{self.method}")


def _view(d: dict) -> dict:
    return {k: d.get(k) or None for k in ("prog_id", "tag", "name", "attach_mode", "tc_pref") if k in d}


def _present_xdp(spec, ifindex, prog_fd, actions, check_mode):
    done = xdp.ensure(spec.device, ifindex, prog_fd, spec.pin, spec.attach_mode, check_mode=check_mode)
    actions += done.actions
    prog_id = (done.before.prog_id or None) if check_mode else xdp.attached(ifindex).prog_id
    return asdict(done.before), {"prog_id": prog_id, "attach_mode": done.attach_mode}, done.warnings


def _present_tc(spec, tc, prog_fd, cand, actions, check_mode):
    cur = tc.attached()
    same = bool(cur["prog_id"]) and cur["tag"] == cand.tag and cur["da"]
    if cur["clsact"] and same and xdp.pinned_prog_id(spec.pin) == cur["prog_id"]:
        return cur, {"prog_id": cur["prog_id"], "tc_pref": spec.tc_pref}
    if not cur["clsact"]:
        actions.append(f"add clsact qdisc on {spec.device}")
        if not check_mode:
            tc.add_clsact()
    if same:
        # The right program is attached, its pin is missing: pin the attached one (no reattach).
        actions.append(f"pin attached program {cur['prog_id']} at {spec.pin}")
        if not check_mode:
            xdp.pin_id(cur["prog_id"], spec.pin)
        return cur, {"prog_id": cur["prog_id"], "tc_pref": spec.tc_pref}
    actions.append(f"pin {cand.name} at {spec.pin}")
    actions.append(f"{'replace' if cur['prog_id'] else 'add'} tc ingress filter pref {spec.tc_pref} "
                   f"handle 1 bpf direct-action on {spec.device}")
    if check_mode:
        return cur, {"prog_id": cur["prog_id"] or None, "tc_pref": spec.tc_pref}
    xdp.pin_fd(prog_fd, spec.pin)
    tc.replace(spec.pin)
    return cur, {"prog_id": tc.attached()["prog_id"], "tc_pref": spec.tc_pref}


def _present(spec, ifindex, tc, actions, check_mode):
    if not spec.src:
        raise InvalidConfig("src is required with state=present")
    with tempfile.TemporaryDirectory(prefix="bpf_decap-") as work:
        out_dir = work if check_mode else spec.build_dir
        res = compile_object(spec.src, os.path.join(out_dir, f"decap_{spec.method}.o"), spec.defines)
        obj = load_object(res.path)
        try:
            prog_fd = obj.program(spec.program).fd
            cand = xdp.prog_summary(prog_fd)
            if spec.method == "xdp":
                before, after, warnings = _present_xdp(spec, ifindex, prog_fd, actions, check_mode)
            else:
                before, after = _present_tc(spec, tc, prog_fd, cand, actions, check_mode)
                warnings = []
        finally:
            obj.close()
    return before, dict(after, object=res.path, tag=cand.tag, name=cand.name), warnings


def _absent(spec, ifindex, tc, actions, check_mode):
    pinned = xdp.pinned_prog_id(spec.pin)
    cur = asdict(xdp.attached(ifindex)) if spec.method == "xdp" else tc.attached()
    ours = bool(cur["prog_id"]) and (cur["prog_id"] == pinned
                                     or cur["name"] == (spec.program or f"decap_{spec.method}"))
    if ours and spec.method == "xdp":
        actions.append(f"detach XDP program {cur['prog_id']} from {spec.device}")
        if not check_mode:
            xdp.detach(ifindex, cur["attach_mode"])
    elif ours:
        actions.append(f"delete tc ingress filter pref {spec.tc_pref} handle 1 on {spec.device}")
        if not check_mode:
            tc.delete()
        left = [f for f in tc.filters() if f["prog_id"] != cur["prog_id"]]
        if not left and not tc.filters("egress"):
            actions.append(f"delete clsact qdisc on {spec.device} (no filter left)")
            if not check_mode:
                tc.delete_clsact()
    if platform.current().pin_exists(spec.pin):
        actions.append(f"remove pin {spec.pin}")
        if not check_mode:
            platform.current().unpin(spec.pin)
    return cur, {"prog_id": None, "tag": cur["tag"] or None, "name": cur["name"] or None}


def ensure(spec: DecapSpec, state: str = "present", check_mode: bool = False, diff: bool = False,
           run_command=None, tc_bin: str | None = None) -> dict:
    """Bring the decap program to ``state``; the result dict of the bpf_decap module.

    ``run_command`` and ``tc_bin`` (the module's run_command and the path of tc) are needed
    for method=tc only."""
    ifindex = platform.current().ifindex(spec.device)
    tc = TcIngress(run_command, tc_bin, spec.device, spec.tc_pref) if spec.method == "tc" else None
    actions: list[str] = []
    if state == "present":
        before, after, warnings = _present(spec, ifindex, tc, actions, check_mode)
    else:
        (before, after), warnings = _absent(spec, ifindex, tc, actions, check_mode), []
    result = dict(after, changed=bool(actions), method=spec.method, device=spec.device, pin=spec.pin,
                  actions=actions, warnings=warnings)
    if diff:
        result["diff"] = {"before": _view(before), "after": _view(after)}
    return result
