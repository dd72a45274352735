# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The platform seam: everything the control-plane core does differently on Linux and on
Windows (eBPF-for-Windows 0.12.0) is a member of :class:`Platform`, and nothing else is.

Both systems export the libbpf API (libbpf.so.1; eBPF-for-Windows' ebpfapi.dll), so the core's
map, object and program code (:mod:`..libbpf`) is shared; what differs is here: which library
and how it logs, the layouts of ``bpf_map_info``/``bpf_prog_info`` and the map type numbers,
whether batch map calls exist, where and how pins live, how XDP is attached and queried, the
advisory lock, how a device's index, address, MAC and next hops are found, and what the datapath
is compiled for. ARCHITECTURE.md ("Platform seam") lists the members and how to add an adapter.

The adapter is chosen once, by the OS this runs on (``$L4LB_PLATFORM`` overrides it); tests
swap one in with :func:`use`. Adapters are imported only when chosen, and load their libraries
on first use, so this package imports on any system.
"""

from __future__ import annotations

import abc
import contextlib
import os
import sys
from dataclasses import dataclass

from ..errors import InvalidConfig

NAMES = ("linux", "windows")


@dataclass(frozen=True)
class Device:
    """A network device as the LB program is compiled for it."""

    name: str
    ifindex: int
    mac: str
    ipv4: str
    mtu: int


@dataclass(frozen=True)
class MapInfo:
    """What the core reads of a map (the platform's ``bpf_map_info``, whatever its layout).
    ``type`` is in the core's numbering: Linux's (uapi/linux/bpf.h, the constants of libbpf.py)."""

    id: int
    type: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int
    name: str


@dataclass(frozen=True)
class ProgInfo:
    """What the core reads of a program. ``tag`` is the hex of the kernel's hash of the program's
    instructions, or "" where the platform keeps none (eBPF-for-Windows)."""

    id: int
    tag: str
    name: str


class Platform(abc.ABC):
    """One operating system's way of doing what the core needs beyond the shared libbpf API.

    Attributes every adapter sets: ``name`` (one of NAMES), ``pin_root`` (the directory every
    pin lives below), ``xdp_modes`` (the XDP attach modes it has, preferred first: ``native``,
    ``generic``) and ``batch_ops`` (whether ``bpf_map_*_batch`` exist; without them the core
    goes one element at a time).
    """

    name = ""
    pin_root = ""
    xdp_modes: tuple = ()
    batch_ops = False

    # --- the libbpf-compatible library ------------------------------------------------------

    @abc.abstractmethod
    def library(self):
        """The loaded library (a ctypes CDLL) with the signatures of the functions the core
        calls set; loaded on the first call. L4LBError (naming the library and how to get it)
        when it cannot be loaded."""

    def take_log(self) -> str:
        """Return and clear what the library logged since the last call (the verifier's
        output among it); "" where the library has no log hook."""
        return ""

    @abc.abstractmethod
    def map_info(self, fd: int) -> MapInfo:
        """The map's facts, its type in the core's (Linux) numbering."""

    @abc.abstractmethod
    def prog_info(self, fd: int) -> ProgInfo:
        """The program's id, tag and name."""

    def native_map_type(self, map_type: int) -> int:
        """A map type in the core's (Linux) numbering as this platform numbers it."""
        return map_type

    # --- pins ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def check_pins(self) -> None:
        """InvalidConfig when pins cannot be made here (Linux: bpffs not mounted)."""

    @abc.abstractmethod
    def pin_exists(self, path: str) -> bool:
        """A pin at ``path``, or pins below it (a pin directory)."""

    @abc.abstractmethod
    def pins_under(self, path: str) -> list:
        """The sorted names directly below the pin directory ``path`` ([] when there is none)."""

    @abc.abstractmethod
    def prepare_pin_dir(self, path: str) -> None:
        """Make ``path`` able to hold pins (Linux: the bpffs directories)."""

    @abc.abstractmethod
    def repin(self, fd: int, path: str) -> None:
        """Pin ``fd`` at ``path``, replacing what is pinned there (atomically where possible)."""

    @abc.abstractmethod
    def unpin(self, path: str) -> bool:
        """Remove the pin at ``path``; False when there was none."""

    @abc.abstractmethod
    def remove_pins(self, path: str) -> None:
        """Remove the pin directory ``path`` and every pin below it."""

    @abc.abstractmethod
    def temp_pin_root(self):
        """A context manager: a fresh, private pin directory, removed with its pins on exit."""

    @abc.abstractmethod
    def lock(self, path: str, blocking: bool = True):
        """A context manager: the exclusive advisory lock of the pin directory ``path`` (one
        writer of the LB's maps at a time); L4LBError when not ``blocking`` and it is held."""

    # --- XDP ----------------------------------------------------------------------------------

    @abc.abstractmethod
    def xdp_query(self, ifindex: int) -> tuple:
        """(program id, attach mode) of the XDP program on the device; (0, "") when none."""

    @abc.abstractmethod
    def xdp_attach(self, ifindex: int, prog_fd: int, mode: str, old_prog_fd=None) -> None:
        """Attach ``prog_fd`` in ``mode`` (one of xdp_modes); with ``old_prog_fd``, replace that
        program (atomically where the platform can). BpfError on refusal."""

    @abc.abstractmethod
    def xdp_detach(self, ifindex: int, mode: str) -> None:
        """Detach the XDP program attached in ``mode``."""

    # --- devices --------------------------------------------------------------------------------

    @abc.abstractmethod
    def ifindex(self, name: str) -> int:
        """The device's index; InvalidConfig naming the device when there is none."""

    @abc.abstractmethod
    def device(self, name: str) -> Device:
        """The device's index, MAC, first IPv4 address and MTU; InvalidConfig when it has no
        IPv4 address."""

    @abc.abstractmethod
    def resolve_mac(self, ip: str, dev: str, timeout: float = 3.0) -> str:
        """The next hop ``ip``'s MAC on ``dev``, resolving it (ARP) when unknown."""

    # --- build ----------------------------------------------------------------------------------

    @abc.abstractmethod
    def efw_include(self):
        """What the datapath is compiled for on this node: eBPF-for-Windows' ``include/``
        directory (build.compile_object's Windows target), or None for the Linux target."""

    @abc.abstractmethod
    def system_includes(self) -> list:
        """clang's include arguments for the Linux target on this build host."""


_current: list = []
_on_switch: list = []


def _make(name: str) -> Platform:
    if name == "linux":
        from .linux import LinuxPlatform
        return LinuxPlatform()
    if name == "windows":
        from .windows import WindowsPlatform
        return WindowsPlatform()
    raise InvalidConfig(f"platform {name!r} (L4LB_PLATFORM) is not one of {', '.join(NAMES)}")


def detect() -> str:
    """The platform name for this system: $L4LB_PLATFORM, else by the OS."""
    return os.environ.get("L4LB_PLATFORM") or ("windows" if sys.platform == "win32" else "linux")


def current() -> Platform:
    """The adapter in use, chosen on the first call."""
    if not _current:
        _current.append(_make(detect()))
    return _current[0]


def on_switch(callback) -> None:
    """``callback()`` runs whenever :func:`use` changes the adapter (caches of its library)."""
    _on_switch.append(callback)


def _set(adapter) -> None:
    _current[:] = [adapter] if adapter is not None else []
    for callback in _on_switch:
        callback()


@contextlib.contextmanager
def use(adapter):
    """Run with ``adapter`` (a Platform, or a name of NAMES) as the current one; the previous
    one is back afterwards. For tests."""
    if isinstance(adapter, str):
        adapter = _make(adapter)
    before = list(_current)
    _set(adapter)
    try:
        yield adapter
    finally:
        _set(before[0] if before else None)
