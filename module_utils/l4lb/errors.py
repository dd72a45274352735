# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors raised by the control-plane core. Each message names what was wrong."""

from __future__ import annotations

import os


class L4LBError(Exception):
    """Base class: anything the core refuses or fails to do."""


class InvalidConfig(L4LBError, ValueError):
    """Bad input (service, backend, mode, device): raised before anything is changed."""


class BpfError(L4LBError, OSError):
    """A libbpf / BPF syscall failure. ``log`` carries libbpf's output (e.g. the verifier log)."""

    def __init__(self, op: str, err: int, what: str = "", log: str = ""):
        self.op = op
        self.what = what
        self.log = log
        msg = f"{op}({what}): {os.strerror(err)}" if what else f"{op}: {os.strerror(err)}"
        super().__init__(err, msg)
        self.errno = err

    def __str__(self) -> str:
        return self.args[1]
