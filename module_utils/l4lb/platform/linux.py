# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Linux adapter: libbpf.so.1, pins in bpffs, XDP through netlink (libbpf's bpf_xdp_*),
devices and next hops through netlink (iproute2's JSON output).

Why not /sys/class/net for devices: the netns connection keeps the host's mount namespace, so
sysfs shows the root namespace's devices; netlink always answers for the namespace we run in.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import ipaddress
import json
import os
import platform as _os_platform
import shutil
import socket
import subprocess
import tempfile
import threading
import time

try:
    import fcntl
except ImportError:  # imported (not used) on Windows
    fcntl = None

from .. import libbpf
from ..errors import InvalidConfig, L4LBError
from . import Device, MapInfo, Platform, ProgInfo

LIBRARY = "libbpf.so.1"
BPFFS = "/sys/fs/bpf"

XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_REPLACE = 1 << 4
MODE_FLAGS = {"native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE}
# XDP_ATTACHED_* (if_link.h; also iproute2's "mode") -> the core's mode names
XDP_ATTACHED_NONE, XDP_ATTACHED_DRV, XDP_ATTACHED_SKB, XDP_ATTACHED_HW, XDP_ATTACHED_MULTI = range(5)
ATTACHED_NAMES = {XDP_ATTACHED_DRV: "native", XDP_ATTACHED_SKB: "generic", XDP_ATTACHED_HW: "offload",
                  XDP_ATTACHED_MULTI: "multi"}

_REACHABLE_STATES = {"REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP"}

LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = range(3)
_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


# --- struct layouts (uapi/linux/bpf.h, if_link.h) -------------------------------------------

class _MapInfo(ctypes.Structure):
    """struct bpf_map_info (prefix we read)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
        ("ifindex", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
    ]


class _ProgInfo(ctypes.Structure):
    """struct bpf_prog_info (prefix we read)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * 16),
        ("ifindex", ctypes.c_uint32),
        ("gpl_compatible", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("nr_jited_ksyms", ctypes.c_uint32),
        ("nr_jited_func_lens", ctypes.c_uint32),
        ("jited_ksyms", ctypes.c_uint64),
        ("jited_func_lens", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64),
        ("nr_func_info", ctypes.c_uint32),
        ("nr_line_info", ctypes.c_uint32),
        ("line_info", ctypes.c_uint64),
        ("jited_line_info", ctypes.c_uint64),
        ("nr_jited_line_info", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("jited_line_info_rec_size", ctypes.c_uint32),
        ("nr_prog_tags", ctypes.c_uint32),
        ("prog_tags", ctypes.c_uint64),
        ("run_time_ns", ctypes.c_uint64),
        ("run_cnt", ctypes.c_uint64),
        ("recursion_misses", ctypes.c_uint64),
        ("verified_insns", ctypes.c_uint32),
        ("attach_btf_obj_id", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


# --- library loading and the log hook ----------------------------------------------------


class XdpQueryOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("prog_id", ctypes.c_uint32),
        ("drv_prog_id", ctypes.c_uint32),
        ("hw_prog_id", ctypes.c_uint32),
        ("skb_prog_id", ctypes.c_uint32),
        ("attach_mode", ctypes.c_uint8),
    ]


LINUX_SIGNATURES = {
    **libbpf.BATCH_SIGNATURES,
    "bpf_xdp_query": (ctypes.c_int, [ctypes.c_int, ctypes.c_int, ctypes.POINTER(XdpQueryOpts)]),
    "libbpf_set_print": (ctypes.c_void_p, [_PRINT_FN]),
}


def _ip_json(*args: str) -> list:
    try:
        out = subprocess.run(["ip", "-j", *args], check=True, capture_output=True, text=True).stdout
    except FileNotFoundError as exc:
        raise L4LBError("iproute2 ('ip') is not installed") from exc
    except subprocess.CalledProcessError as exc:
        raise L4LBError(f"ip {' '.join(args)}: {exc.stderr.strip()}") from exc
    return json.loads(out or "[]")


class LinuxPlatform(Platform):
    name = "linux"
    pin_root = BPFFS
    xdp_modes = ("native", "generic")
    batch_ops = True

    def __init__(self, library_name: str = LIBRARY):
        self.library_name = library_name
        self._lib = None
        self._log_lock = threading.Lock()
        self._log_lines: list = []
        self._libc = None
        self._hook = _PRINT_FN(self._print_hook)

    # --- the library ----------------------------------------------------------------------

    def library(self):
        if self._lib is None:
            try:
                lib = ctypes.CDLL(self.library_name, use_errno=True)
            except OSError as exc:
                raise L4LBError(f"cannot load {self.library_name} ({exc}); libbpf 1.x is needed on this "
                                "node: apt-get install libbpf1") from exc
            libbpf.set_signatures(lib, {**libbpf.SIGNATURES, **LINUX_SIGNATURES})
            self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            self._libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
            if hasattr(lib, "libbpf_set_print"):
                lib.libbpf_set_print(self._hook)
            self._lib = lib
        return self._lib

    def _print_hook(self, level, fmt, va_list):
        """Collect libbpf's messages (the verifier log among them) instead of printing them."""
        buf = ctypes.create_string_buffer(4096)
        self._libc.vsnprintf(buf, len(buf), fmt, va_list)
        with self._log_lock:
            if level <= LIBBPF_INFO:
                self._log_lines.append(buf.value.decode(errors="replace"))
        return 0

    def take_log(self) -> str:
        with self._log_lock:
            text = "".join(self._log_lines)
            self._log_lines.clear()
        return text

    def map_info(self, fd: int) -> MapInfo:
        i = libbpf.obj_info(fd, _MapInfo(), "map")
        return MapInfo(id=i.id, type=i.type, key_size=i.key_size, value_size=i.value_size,
                       max_entries=i.max_entries, map_flags=i.map_flags, name=i.name.decode(errors="replace"))

    def prog_info(self, fd: int) -> ProgInfo:
        i = libbpf.obj_info(fd, _ProgInfo(), "prog")
        return ProgInfo(id=i.id, tag=bytes(i.tag).hex(), name=i.name.decode(errors="replace"))

    # --- pins: files in bpffs ---------------------------------------------------------------

    def check_pins(self) -> None:
        if not os.path.isdir(BPFFS) or not os.path.ismount(BPFFS):
            raise InvalidConfig(f"bpffs is not mounted at {BPFFS}")

    def pin_exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def pins_under(self, path: str) -> list:
        return sorted(os.listdir(path)) if os.path.isdir(path) else []

    def prepare_pin_dir(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def repin(self, fd: int, path: str) -> None:
        """Temporary pin, then rename: the pin never goes missing."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + "_next"  # bpffs refuses names with dots
        if os.path.lexists(tmp):
            os.unlink(tmp)
        libbpf.obj_pin(fd, tmp)
        os.replace(tmp, path)

    def unpin(self, path: str) -> bool:
        if not os.path.lexists(path):
            return False
        os.unlink(path)
        return True

    def remove_pins(self, path: str) -> None:
        shutil.rmtree(path)

    @contextlib.contextmanager
    def temp_pin_root(self):
        root = tempfile.mkdtemp(prefix="l4lb_check_", dir=BPFFS)
        try:
            yield root
        finally:
            shutil.rmtree(root, ignore_errors=True)

    @contextlib.contextmanager
    def lock(self, path: str, blocking: bool = True):
        """flock on the pin directory; a no-op where the directory is not there."""
        if fcntl is None or not path:
            yield
            return
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                raise L4LBError(f"another writer holds the lock on {path}") from None
            yield
        finally:
            os.close(fd)      # releases the lock

    # --- XDP: netlink through libbpf ----------------------------------------------------------

    def xdp_query(self, ifindex: int) -> tuple:
        q = XdpQueryOpts(sz=ctypes.sizeof(XdpQueryOpts))
        libbpf._check(self.library().bpf_xdp_query(ifindex, 0, ctypes.byref(q)), "bpf_xdp_query",
                      f"ifindex {ifindex}")
        return q.prog_id, (ATTACHED_NAMES.get(q.attach_mode, str(q.attach_mode)) if q.prog_id else "")

    def xdp_attach(self, ifindex: int, prog_fd: int, mode: str, old_prog_fd=None) -> None:
        """With ``old_prog_fd`` the kernel replaces only if that program is still the attached
        one (XDP_FLAGS_REPLACE), so two writers cannot silently overwrite each other."""
        flags = MODE_FLAGS[mode]
        opts = libbpf.XdpAttachOpts(sz=ctypes.sizeof(libbpf.XdpAttachOpts))
        if old_prog_fd is not None:
            opts.old_prog_fd = old_prog_fd
            flags |= XDP_FLAGS_REPLACE
        libbpf._check(self.library().bpf_xdp_attach(ifindex, prog_fd, flags, ctypes.byref(opts)),
                      "bpf_xdp_attach", f"ifindex {ifindex}")

    def xdp_detach(self, ifindex: int, mode: str) -> None:
        opts = libbpf.XdpAttachOpts(sz=ctypes.sizeof(libbpf.XdpAttachOpts))
        libbpf._check(self.library().bpf_xdp_detach(ifindex, MODE_FLAGS.get(mode, 0), ctypes.byref(opts)),
                      "bpf_xdp_detach", f"ifindex {ifindex}")

    # --- devices: netlink ---------------------------------------------------------------------

    def ifindex(self, name: str) -> int:
        """The device's ifindex in the current network namespace (no subprocess)."""
        if not name or len(name) > 15 or "/" in name:
            raise InvalidConfig(f"device {name!r} is not a valid interface name")
        try:
            return socket.if_nametoindex(name)
        except OSError as exc:
            raise InvalidConfig(f"device {name!r} does not exist in this network namespace") from exc

    def device(self, name: str) -> Device:
        index = self.ifindex(name)
        links = _ip_json("addr", "show", "dev", name)
        if not links:
            raise InvalidConfig(f"device {name!r} does not exist in this network namespace")
        link = links[0]
        addrs = [a["local"] for a in link.get("addr_info", []) if a.get("family") == "inet"]
        if not addrs:
            raise InvalidConfig(f"device {name!r} has no IPv4 address (the LB needs one for SNAT and DSR)")
        return Device(name=name, ifindex=index, mac=link.get("address", ""), ipv4=addrs[0],
                      mtu=int(link.get("mtu", 1500)))

    @staticmethod
    def _neigh_mac(ip: str, dev: str):
        for entry in _ip_json("neigh", "show", "to", ip, "dev", dev):
            states = set(entry.get("state", []))
            if entry.get("lladdr") and states & _REACHABLE_STATES:
                return entry["lladdr"]
        return None

    def resolve_mac(self, ip: str, dev: str, timeout: float = 3.0) -> str:
        """A datagram to the discard port makes the kernel ARP for the address, as the seed's
        agent's `neighbor update` does; nothing listens there, and the target is on the lab's
        own link."""
        try:
            ipaddress.IPv4Address(ip)
        except ValueError as exc:
            raise InvalidConfig(f"next hop {ip!r} is not an IPv4 address") from exc
        mac = self._neigh_mac(ip, dev)
        if mac:
            return mac
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
            while time.monotonic() < deadline:
                try:
                    sock.sendto(b"", (ip, 9))
                except OSError:
                    pass
                time.sleep(0.05)
                mac = self._neigh_mac(ip, dev)
                if mac:
                    return mac
                time.sleep(0.2)
        raise L4LBError(f"no next hop: {ip} did not answer ARP on {dev} within {timeout:g}s")

    # --- build ----------------------------------------------------------------------------------

    def efw_include(self):
        return None

    def system_includes(self) -> list:
        """Where asm/types.h lives on Debian multiarch (clang -target bpf does not look there)."""
        arch = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}.get(_os_platform.machine())
        return [f"-I/usr/include/{arch}"] if arch and os.path.isdir(f"/usr/include/{arch}") else []
