# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The XDP life cycle every program of ours shares (the LB's, the backends' decap): what is
attached (id, tag, name, mode), what a pin holds, pinning atomically, attaching or replacing
atomically with the native -> generic fallback, detaching.

Judged by the kernel: a program is "the same" when its tag (a hash of its instructions, so
source, macros and toolchain all feed it) equals the candidate's, never by files.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

from . import libbpf, platform
from .errors import BpfError, L4LBError

ATTACH_MODES = ("native", "generic")
_NO_NATIVE = (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTSUP)


@dataclass
class Attached:
    """A program as the kernel has it (on a device: with the mode it is attached in)."""

    prog_id: int = 0
    tag: str = ""
    name: str = ""
    attach_mode: str = ""   # native | generic | offload | multi | "" (none)

    @property
    def present(self) -> bool:
        return self.prog_id != 0


def prog_summary(fd: int) -> Attached:
    info = libbpf.prog_info(fd)
    return Attached(info.id, info.tag, info.name)


def prog_by_id(prog_id: int) -> Attached:
    """The program of a kernel id; empty for 0 or a program that vanished meanwhile."""
    if not prog_id:
        return Attached()
    try:
        fd = libbpf.prog_fd_by_id(prog_id)
    except BpfError:
        return Attached()
    try:
        return prog_summary(fd)
    finally:
        os.close(fd)


def attached(ifindex: int) -> Attached:
    """The XDP program on the device and the mode it is attached in."""
    prog_id, mode = platform.current().xdp_query(ifindex)
    cur = prog_by_id(prog_id)
    if cur.present:
        cur.attach_mode = mode
    return cur


def pinned_prog_id(pin: str) -> int:
    """Id of the program pinned at ``pin``; 0 when there is none (or the pin is not a program)."""
    if not platform.current().pin_exists(pin):
        return 0
    try:
        fd = libbpf.obj_get(pin)
    except BpfError:
        return 0
    try:
        return libbpf.prog_info(fd).id
    except BpfError:
        return 0
    finally:
        os.close(fd)


def pin_fd(fd: int, pin: str) -> None:
    """Pin (or re-pin) the program ``fd`` at ``pin`` (atomically where the platform can)."""
    platform.current().repin(fd, pin)


def pin_id(prog_id: int, pin: str) -> None:
    """Pin the kernel's program ``prog_id`` (one already running) at ``pin``."""
    fd = libbpf.prog_fd_by_id(prog_id)
    try:
        pin_fd(fd, pin)
    finally:
        os.close(fd)


def detach(ifindex: int, attach_mode: str) -> None:
    platform.current().xdp_detach(ifindex, attach_mode)


def mode_ok(cur: Attached, attach_mode: str) -> bool:
    """``native`` running as generic means native was refused when it was attached (we fall back
    only on refusal): accepted rather than flapping."""
    return cur.attach_mode == attach_mode or (attach_mode == "native" and cur.attach_mode == "generic")


def attach(ifindex: int, prog_fd: int, attach_mode: str, cur: Attached) -> tuple[str, bool]:
    """Attach, or replace with one netlink call (no moment without a program) when a program
    runs in the same mode. ``native`` falls back to ``generic`` when the driver refuses (or the
    platform has no native XDP). Returns (mode used, replaced atomically)."""
    plat = platform.current()
    attached_mode = cur.attach_mode if cur.present else ""
    order = [attach_mode] if attach_mode == "generic" else ["native", "generic"]
    order = [m for m in order if m in plat.xdp_modes]
    last_exc = None
    for mode in order:
        atomic = attached_mode == mode
        try:
            if atomic:
                old_fd = libbpf.prog_fd_by_id(cur.prog_id)
                try:
                    plat.xdp_attach(ifindex, prog_fd, mode, old_prog_fd=old_fd)
                finally:
                    os.close(old_fd)
            else:
                if attached_mode:
                    # Changing native <-> generic cannot be atomic: the kernel keeps one per mode.
                    detach(ifindex, attached_mode)
                    attached_mode = ""
                plat.xdp_attach(ifindex, prog_fd, mode)
            return mode, atomic
        except BpfError as exc:
            last_exc = exc
            if mode == "native" and exc.errno in _NO_NATIVE:
                continue
            raise L4LBError(f"attaching XDP ({mode}) failed: {exc}") from exc
    raise L4LBError(f"attaching XDP failed: {last_exc}")


@dataclass
class Ensured:
    """What :func:`ensure` did (or in check mode would do)."""

    before: Attached
    attach_mode: str
    actions: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.actions)


def ensure(device: str, ifindex: int, prog_fd: int, pin: str, attach_mode: str,
           check_mode: bool = False, force: bool = False, untagged_same: bool = False) -> Ensured:
    """The loaded candidate ``prog_fd`` runs on the device, pinned at ``pin``.

    The same program (tag) already running in an acceptable mode is kept; when only its pin is
    missing or stale, the running program is pinned. Otherwise (or with ``force``) the candidate
    is attached (replacing atomically) and pinned. Check mode only lists the actions. Where the
    platform keeps no tag (eBPF-for-Windows), the kernel cannot tell the running program the same:
    the caller may (``untagged_same``: program.py's attach record, read against the kernel's
    program id); otherwise the candidate always replaces it. With tags, ``untagged_same`` is
    never used.
    """
    plat = platform.current()
    cur = attached(ifindex)
    cand = prog_summary(prog_fd)
    done = Ensured(before=cur, attach_mode=cur.attach_mode)
    same = (bool(cur.tag) and cur.tag == cand.tag) or (
        untagged_same and not cur.tag and not cand.tag and cur.name == cand.name)
    if not force and cur.present and same and mode_ok(cur, attach_mode):
        if pinned_prog_id(pin) != cur.prog_id:
            done.actions.append(f"pin attached program {cur.prog_id} at {pin}")
            if not check_mode:
                pin_id(cur.prog_id, pin)
        return done
    if check_mode:
        first = attach_mode if attach_mode in plat.xdp_modes else plat.xdp_modes[0]
        verb = "replace" if cur.present and cur.attach_mode == first else "attach"
        done.actions += [f"{verb} XDP ({first}) on {device}", f"pin {cand.name} at {pin}"]
        done.attach_mode = first
        return done
    try:
        used, atomic = attach(ifindex, prog_fd, attach_mode, cur)
    except L4LBError as exc:
        raise L4LBError(f"{device}: {exc}") from exc
    done.actions.append(f"{'replace' if atomic else 'attach'} XDP ({used}) on {device}")
    pin_fd(prog_fd, pin)
    done.actions.append(f"pin {cand.name} at {pin}")
    done.attach_mode = used
    if used != attach_mode and attach_mode in plat.xdp_modes:
        done.warnings.append(f"{device} refused native XDP; attached in generic mode")
    elif used != attach_mode:
        done.warnings.append(f"{device}: {plat.name} has no {attach_mode} XDP; attached in {used} mode")
    return done
