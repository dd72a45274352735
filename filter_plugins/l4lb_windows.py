# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for the Windows roles (windows_ebpf, backend_windows, and the Windows tasks of lb_node,
lb_service, lab_verify): the eBPF-for-Windows version gate, the readers of what Windows tools
print (netsh ebpf, bcdedit, a program's --version, l4lbctl --json), and the quoting of a Windows
command line. Pure functions of their arguments, so each decision the roles take is unit-tested
without a Windows host (tests/windows/test_filters.py).

Facts they encode (docs: README "Windows nodes"):

* The XDP hook lived in eBPF-for-Windows' netebpfext up to v0.12.0 and was removed in v0.13.0;
  XDP-for-Windows, its successor, has no ``bpf_xdp_adjust_head``, which IPIP decap and DSR
  encapsulation need. So a node that needs XDP must run a release <= 0.12.0 (the lab pins 0.12.0).
* ``netsh ebpf show programs`` (0.12.0, libs/ebpfnetsh/programs.cpp) prints, at the normal level::

      <blank line>
          ID  Pins  Links  Mode       Type           Name
      ======  ====  =====  =========  =============  ====================
           5     1      1  JIT        xdp            decap_xdp

  and ``netsh ebpf show pins`` (pins.cpp)::

      <blank line>
           ID     Type  Path
      =======  =======  ==============
            5  Program  ipip_decap
"""

from __future__ import annotations

import json
import re
import subprocess

from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: l4lb_windows
short_description: eBPF-for-Windows version gate and netsh/bcdedit readers for the Windows roles
description:
  - C(l4lb_efw_has_xdp_hook), C(l4lb_efw_xdp_need), C(l4lb_efw_xdp_gate) - the version gate.
  - C(l4lb_netsh_programs), C(l4lb_netsh_pins), C(l4lb_efw_decap_plan) - the decap program's state.
  - C(l4lb_bcdedit_testsigning) - test signing in C(bcdedit /enum {current}) output.
  - C(l4lb_program_version) - the version in C(python --version) or C(clang --version) output.
  - C(l4lb_prereqs_to_install) - the prerequisites whose C(--version) is not the wanted one.
  - C(l4lb_ctl_json) - the result of C(l4lbctl --json), or a failure naming what it printed.
  - C(l4lb_program_info) - C(l4lbctl --json mode show) shaped as the C(xdp_program_info) result.
  - C(l4lb_win_cmdline) - an argument list as one Windows command line (a scheduled task's arguments).
author: L4LB lab toolkit contributors (@l4lb-lab)
"""

# The newest eBPF-for-Windows release with netebpfext's XDP hook (removed in 0.13.0).
EFW_LAST_XDP = (0, 12, 0)
EFW_PINNED = "0.12.0"
_VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-+~][0-9A-Za-z.+~-]*)?$")
_PROGRAM_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S.*?)\s*$")
_PIN_ROW = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\S.*?)\s*$")


def efw_version(value):
    """``value`` ("0.12.0", "v0.12.0", "0.12", "0.12.0.0", "0.13.0-rc1") as a tuple of three
    integers (a fourth part is ignored); AnsibleFilterError when it is not a version."""
    m = _VERSION_RE.match(str(value if value is not None else "").strip())
    if not m:
        raise AnsibleFilterError(f"{value!r} is not an eBPF-for-Windows version (like {EFW_PINNED})")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def efw_has_xdp_hook(version):
    """True when eBPF-for-Windows ``version`` still has netebpfext's XDP hook (<= 0.12.0)."""
    return efw_version(version) <= EFW_LAST_XDP


def efw_xdp_need(kind, decap=None, mode=None):
    """Why a node needs the XDP hook, or '' when it does not: the LB node always (its datapath is
    an XDP program); a backend with XDP decap in DSR mode (the IPIP packets reach it only then)."""
    if kind == "lb":
        return "it is the LB node (the load balancer is an XDP program)"
    if kind == "backend" and decap == "xdp" and mode == "dsr":
        return "it decapsulates DSR's IPIP packets with XDP (backend_decap xdp, lb_mode dsr)"
    return ""


def efw_xdp_gate(version, host, kind, decap=None, mode=None):
    """'' when ``host`` may run eBPF-for-Windows ``version``; else the problem, naming the version
    and the reason (the preflight fails with it before any change)."""
    try:
        hook = efw_has_xdp_hook(version)
    except AnsibleFilterError as e:
        return f"{host}: windows_ebpf_version {e}"
    need = efw_xdp_need(kind, decap, mode)
    if hook or not need:
        return ""
    return (f"{host}: windows_ebpf_version {version} has no XDP hook (eBPF-for-Windows removed it "
            f"from netebpfext in 0.13.0, and XDP-for-Windows, its successor, lacks "
            f"bpf_xdp_adjust_head, which IPIP decap and DSR encapsulation need), but this node needs "
            f"XDP: {need}. Use eBPF-for-Windows {EFW_PINNED}.")


def _rows(text, row_re, header_mark):
    """The rows after the '=====' rule line of a netsh table."""
    lines = str(text or "").splitlines()
    start = next((i + 1 for i, line in enumerate(lines) if line.strip().startswith(header_mark)), None)
    if start is None:
        return []
    return [m for m in (row_re.match(line) for line in lines[start:]) if m]


def netsh_programs(text):
    """``netsh ebpf show programs`` as a list of {id, pins, links, mode, type, name}."""
    return [{"id": int(m.group(1)), "pins": int(m.group(2)), "links": int(m.group(3)),
             "mode": m.group(4), "type": m.group(5), "name": m.group(6)}
            for m in _rows(text, _PROGRAM_ROW, "======")]


def netsh_pins(text):
    """``netsh ebpf show pins`` as a list of {id, type, path}."""
    return [{"id": int(m.group(1)), "type": m.group(2), "path": m.group(3)}
            for m in _rows(text, _PIN_ROW, "=======")]


def efw_decap_plan(pins_text, programs_text, pinpath, name, state="present", reload=False):
    """What to do with the decap program pinned at ``pinpath``:
    {"action": "none" | "add" | "replace" | "delete", "ids": [program ids to delete first],
    "reason": text}. Present means exactly one program pinned there, called ``name``, of type
    xdp, attached (links >= 1); ``reload`` (its object changed) replaces it."""
    ids = sorted({p["id"] for p in netsh_pins(pins_text) if p["path"] == pinpath and p["type"] == "Program"})
    programs = {p["id"]: p for p in netsh_programs(programs_text)}
    if state == "absent":
        if ids:
            return {"action": "delete", "ids": ids, "reason": f"program {', '.join(map(str, ids))} pinned at {pinpath}"}
        return {"action": "none", "ids": [], "reason": f"nothing pinned at {pinpath}"}
    if not ids:
        return {"action": "add", "ids": [], "reason": f"nothing pinned at {pinpath}"}
    if len(ids) > 1:
        return {"action": "replace", "ids": ids, "reason": f"{len(ids)} programs pinned at {pinpath}"}
    p = programs.get(ids[0])
    if p is None:
        why = f"program {ids[0]} pinned at {pinpath} is not listed by netsh ebpf show programs"
    elif p["name"] != name or p["type"] != "xdp":
        why = f"program {ids[0]} pinned at {pinpath} is {p['type']} {p['name']!r}, not xdp {name!r}"
    elif p["links"] < 1:
        why = f"program {ids[0]} ({name}) is pinned but not attached"
    elif reload:
        why = f"its object changed (program {ids[0]})"
    else:
        return {"action": "none", "ids": ids, "reason": f"program {ids[0]} ({name}, xdp) pinned at {pinpath} and attached"}
    return {"action": "replace", "ids": ids, "reason": why}


def bcdedit_testsigning(text):
    """True when ``bcdedit /enum {current}`` output says ``testsigning Yes`` (English output;
    the entry is absent when test signing was never set)."""
    return any(re.match(r"^\s*testsigning\s+yes\s*$", line, re.IGNORECASE)
               for line in str(text or "").splitlines())


_PROGRAM_VERSION = re.compile(r"^\s*(?:Python|(?:\S+ )?clang version)\s+(\d+\.\d+\.\d+\S*)", re.MULTILINE)


def program_version(text):
    """The version a program printed: ``Python 3.12.7`` (python --version) or ``clang version
    18.1.8`` (clang --version, also with a vendor prefix), a pre-release with its suffix
    (``3.13.0rc2``); '' when there is none (the program is missing, or printed something else)."""
    m = _PROGRAM_VERSION.search(str(text or ""))
    return m.group(1) if m else ""


def prereqs_to_install(results):
    """From the loop results of reading each prerequisite's ``--version`` (each with its ``item``,
    a prerequisite with ``version``): the prerequisites whose program is missing or printed
    another version. Skipped results are ignored."""
    out = []
    for r in results or []:
        if not isinstance(r, dict) or r.get("skipped") or "item" not in r:
            continue
        if program_version(r.get("stdout", "")) != str(r["item"].get("version", "")):
            out.append(r["item"])
    return out


def ctl_json(stdout, rc=0):
    """What ``l4lbctl --json`` answered: its JSON object (``changed``, ``diff``, ... or, exit 1,
    ``failed`` and ``msg``); when it printed no JSON object (Python missing, a traceback, a usage
    error), ``failed`` with a ``msg`` naming the exit code and the start of what it printed."""
    text = str(stdout or "").strip()
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    head = " | ".join(text.splitlines()[:5]) or "(nothing)"
    return {"failed": True, "changed": False, "msg": f"l4lbctl answered no JSON (exit {rc}): {head}"}


def program_info(shown):
    """``l4lbctl --json mode show``'s answer in the shape of the xdp_program_info module's
    result: ``status`` (device, prog_id, name, mode, ...) and ``trouble``."""
    shown = dict(shown or {})
    trouble = shown.pop("trouble", {}) or {}
    for key in ("changed", "failed", "msg"):
        shown.pop(key, None)
    return {"changed": False, "status": shown, "trouble": trouble}


def win_cmdline(argv):
    """``argv`` as one Windows command line, quoted as the Microsoft C runtime (and Python's
    sys.argv on Windows) splits it again: subprocess.list2cmdline's rules."""
    if isinstance(argv, (str, bytes)) or not hasattr(argv, "__iter__"):
        raise AnsibleFilterError(f"l4lb_win_cmdline wants a list of arguments, not {argv!r}")
    return subprocess.list2cmdline([str(a) for a in argv])


class FilterModule:
    def filters(self):
        return {
            "l4lb_efw_has_xdp_hook": efw_has_xdp_hook,
            "l4lb_efw_xdp_need": efw_xdp_need,
            "l4lb_efw_xdp_gate": efw_xdp_gate,
            "l4lb_netsh_programs": netsh_programs,
            "l4lb_netsh_pins": netsh_pins,
            "l4lb_efw_decap_plan": efw_decap_plan,
            "l4lb_bcdedit_testsigning": bcdedit_testsigning,
            "l4lb_program_version": program_version,
            "l4lb_prereqs_to_install": prereqs_to_install,
            "l4lb_ctl_json": ctl_json,
            "l4lb_program_info": program_info,
            "l4lb_win_cmdline": win_cmdline,
        }
