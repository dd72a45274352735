# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A tc ingress BPF program on a device, through iproute2's ``tc``: the ``clsact`` qdisc and one
direct-action ``bpf`` filter at a fixed priority and handle 1, replaced atomically with
``tc filter replace``.

Commands run through the caller's ``run_command`` (an Ansible module's ``module.run_command``:
argv in, ``(rc, stdout, stderr)`` out) and the ``tc`` binary the caller found.
"""

from __future__ import annotations

import json

from .errors import L4LBError

HANDLE = "0x1"


class TcIngress:
    def __init__(self, run_command, tc_bin: str, device: str, pref: int):
        self._run_command = run_command
        self.tc_bin = tc_bin
        self.device = device
        self.pref = pref

    def _tc(self, *args: str) -> str:
        argv = [self.tc_bin, *args]
        rc, out, err = self._run_command(argv)
        if rc != 0:
            raise L4LBError(f"{' '.join(argv)} failed (exit {rc}): {err.strip()}")
        return out

    def _json(self, *args: str) -> list:
        return json.loads(self._tc("-j", *args) or "[]")

    def has_clsact(self) -> bool:
        return any(q.get("kind") == "clsact" for q in self._json("qdisc", "show", "dev", self.device))

    def filters(self, direction: str = "ingress") -> list[dict]:
        """The bpf filters: {pref, handle, da, prog_id, tag, name} each."""
        out = []
        for f in self._json("filter", "show", "dev", self.device, direction):
            opts = f.get("options") or {}
            if f.get("kind") != "bpf" or "handle" not in opts:
                continue
            prog = opts.get("prog") or {}
            out.append({"pref": f.get("pref"), "handle": opts.get("handle"),
                        "da": bool(opts.get("direct-action")), "prog_id": prog.get("id", 0),
                        "tag": prog.get("tag", ""), "name": prog.get("name", "")})
        return out

    def attached(self) -> dict:
        """Our filter's program (at ``pref``, handle 1) and whether the clsact qdisc exists."""
        none = {"prog_id": 0, "tag": "", "name": "", "da": False}
        if not self.has_clsact():
            return dict(none, clsact=False)
        ours = [f for f in self.filters() if f["pref"] == self.pref and f["handle"] == HANDLE]
        return dict(ours[0] if ours else none, clsact=True)

    def add_clsact(self) -> None:
        self._tc("qdisc", "add", "dev", self.device, "clsact")

    def delete_clsact(self) -> None:
        self._tc("qdisc", "delete", "dev", self.device, "clsact")

    def replace(self, pin: str) -> None:
        """Attach the program pinned at ``pin`` (atomically replacing the one there)."""
        self._tc("filter", "replace", "dev", self.device, "ingress", "pref", str(self.pref), "handle", "1",
                 "bpf", "direct-action", "object-pinned", pin)

    def delete(self) -> None:
        self._tc("filter", "delete", "dev", self.device, "ingress", "pref", str(self.pref), "handle", "1", "bpf")
