# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Windows adapter: eBPF-for-Windows 0.12.0 (the last release with the XDP hook).

- Library: ``EbpfApi.dll`` from eBPF-for-Windows' directory (``$L4LB_EFW_DIR``, default
  ``%ProgramFiles%\\ebpf-for-windows``, where its MSI installs it), which exports the libbpf API.
  Only functions that release exports are called (``EFW_FUNCTIONS`` below, plus the shared
  ones of ``libbpf.SIGNATURES``; tests/core/test_platform.py checks both against its
  ``ebpfapi/Source.def``). It has no batch map calls: the core goes one element at a time.
- Info structs: its own ``bpf_map_info``/``bpf_prog_info`` layouts (include/ebpf_structs.h),
  its own map type numbers (translated to the core's Linux numbering here), and no program
  tag: ``prog_info().tag`` is "", so the core cannot judge a running program the same as a
  candidate and always replaces it.
- Pins: paths in the eBPF store, not files (``/ebpf/global/...``, its default root). Listed
  with ``ebpf_api_get_pinned_map_info`` and ``ebpf_get_next_pinned_program_path``, removed with
  ``ebpf_object_unpin``; re-pinning is unpin-then-pin (not atomic).
- XDP: one hook (netebpfext's, reported as ``generic``): ``bpf_xdp_attach`` with its
  ``XDP_FLAGS_REPLACE`` (0x01: detach what runs on the interface, then attach),
  ``bpf_xdp_detach``, and ``bpf_xdp_query_id`` (answers -ENOENT when nothing is attached).
- Lock: a named kernel mutex per pin directory (kernel32), held by one writer at a time.
- Devices: the index through iphlpapi (``ConvertInterfaceAliasToLuid`` and
  ``ConvertInterfaceLuidToIndex``: names are adapter aliases such as ``Ethernet 2``), address,
  MAC and MTU through PowerShell (``Get-NetAdapter``, ``Get-NetIPInterface``,
  ``Get-NetIPAddress``; the exact command is :func:`device_script`), next hops through
  iphlpapi's ``SendARP`` (the cache first, else one ARP exchange on the interface the route to
  the address picks).
- Build: the Windows target of build.compile_object (``-DLB_TARGET_WINDOWS``, bpf/include/compat.h)
  against eBPF-for-Windows' ``include`` directory.

File descriptors are the C runtime's (EbpfApi.dll uses the same ucrtbase as Python), so
``os.close`` and ``os.dup`` serve as on Linux. Nothing here loads a Windows library at import
time: every loader is called on first use, and tests pass fakes for them.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import errno
import hashlib
import ipaddress
import json
import ntpath
import os
import socket
import subprocess
import uuid

from .. import libbpf
from ..errors import BpfError, InvalidConfig, L4LBError
from . import Device, MapInfo, Platform, ProgInfo

LIBRARY = "EbpfApi.dll"
PIN_ROOT = "/ebpf/global"        # eBPF-for-Windows' default pin root (libs/api/ebpf_api.cpp)
MAX_PIN_PATH = 256               # EBPF_MAX_PIN_PATH_LENGTH (include/ebpf_core_structs.h)
OBJ_NAME_LEN = 64                # BPF_OBJ_NAME_LEN (include/ebpf_structs.h)
XDP_FLAGS_REPLACE = 0x01         # include/ebpf_structs.h (Linux's is 1 << 4)
POWERSHELL = "powershell.exe"

# ebpf_result_t (include/ebpf_result.h)
EBPF_SUCCESS = 0
EBPF_OBJECT_NOT_FOUND = 7
EBPF_NOT_PINNED = 11
EBPF_KEY_NOT_FOUND = 19
EBPF_NO_MORE_KEYS = 25
_RESULT_ERRNO = {EBPF_OBJECT_NOT_FOUND: errno.ENOENT, EBPF_NOT_PINNED: errno.ENOENT,
                 EBPF_KEY_NOT_FOUND: errno.ENOENT, 6: errno.EINVAL, 12: errno.ENOMEM,
                 18: errno.EOPNOTSUPP, 20: errno.EACCES}

# The core's (Linux) map type numbers -> eBPF-for-Windows' enum bpf_map_type (include/ebpf_structs.h).
CORE_TO_EFW_MAP_TYPES = {
    libbpf.BPF_MAP_TYPE_HASH: 1,
    libbpf.BPF_MAP_TYPE_ARRAY: 2,
    libbpf.BPF_MAP_TYPE_PERCPU_HASH: 4,
    libbpf.BPF_MAP_TYPE_PERCPU_ARRAY: 5,
    libbpf.BPF_MAP_TYPE_HASH_OF_MAPS: 6,
    libbpf.BPF_MAP_TYPE_ARRAY_OF_MAPS: 7,
    libbpf.BPF_MAP_TYPE_LRU_HASH: 8,
    libbpf.BPF_MAP_TYPE_LRU_PERCPU_HASH: 11,
}
EFW_TO_CORE_MAP_TYPES = {v: k for k, v in CORE_TO_EFW_MAP_TYPES.items()}
UNKNOWN_MAP_TYPE = 0x10000       # added to an eBPF-for-Windows type the core has no number for

# kernel32
_INFINITE = 0xFFFFFFFF
_WAIT_OBJECT_0, _WAIT_ABANDONED, _WAIT_TIMEOUT = 0, 0x80, 0x102


# --- struct layouts (include/ebpf_structs.h, include/ebpf_core_structs.h at v0.12.0) ---------

class _EfwMapInfo(ctypes.Structure):
    """struct bpf_map_info"""

    _fields_ = [
        ("id", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("name", ctypes.c_char * OBJ_NAME_LEN),
        ("map_flags", ctypes.c_uint32),
        ("inner_map_id", ctypes.c_uint32),
        ("pinned_path_count", ctypes.c_uint32),
    ]


class _Guid(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint8 * 16)]


class _EfwProgInfo(ctypes.Structure):
    """struct bpf_prog_info"""

    _fields_ = [
        ("id", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_void_p),
        ("name", ctypes.c_char * OBJ_NAME_LEN),
        ("type_uuid", _Guid),
        ("attach_type_uuid", _Guid),
        ("pinned_path_count", ctypes.c_uint32),
        ("link_count", ctypes.c_uint32),
    ]


class _EfwPinnedMapInfo(ctypes.Structure):
    """ebpf_map_info_t: ebpf_map_definition_in_memory_t, then the pin path."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("inner_map_id", ctypes.c_uint32),
        ("pinning", ctypes.c_uint32),
        ("pin_path", ctypes.c_char_p),
    ]


class _NetLuid(ctypes.Structure):
    _fields_ = [("value", ctypes.c_uint64)]


_r = ctypes.c_int32   # ebpf_result_t
# What this adapter calls beyond libbpf.SIGNATURES (every one exported by EbpfApi.dll 0.12.0).
EFW_FUNCTIONS = {
    "bpf_xdp_query_id": (ctypes.c_int, [ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_uint32)]),
    "ebpf_object_unpin": (_r, [ctypes.c_char_p]),
    "ebpf_get_next_pinned_program_path": (_r, [ctypes.c_char_p, ctypes.c_char_p]),
    "ebpf_api_get_pinned_map_info": (_r, [ctypes.POINTER(ctypes.c_uint16),
                                          ctypes.POINTER(ctypes.POINTER(_EfwPinnedMapInfo))]),
    "ebpf_api_map_info_free": (None, [ctypes.c_uint16, ctypes.POINTER(_EfwPinnedMapInfo)]),
}


def default_efw_dir() -> str:
    return os.environ.get("L4LB_EFW_DIR") or ntpath.join(os.environ.get("ProgramFiles", "C:\\Program Files"),
                                                         "ebpf-for-windows")


def ps_quote(text: str) -> str:
    """``text`` as a PowerShell single-quoted string (PowerShell also takes the typographic
    single quotes as quotes, so they are doubled too)."""
    out = "".join(c + c if c in "'\u2018\u2019\u201a\u201b" else c for c in text)
    return f"'{out}'"


def device_script(name: str) -> str:
    """The PowerShell that reads a device's index, MAC, IP MTU and first IPv4 address as JSON."""
    return (f"$a = Get-NetAdapter -Name {ps_quote(name)} -ErrorAction Stop; "
            "$i = Get-NetIPInterface -InterfaceIndex $a.ifIndex -AddressFamily IPv4 -ErrorAction Stop; "
            "$ip = Get-NetIPAddress -InterfaceIndex $a.ifIndex -AddressFamily IPv4 -ErrorAction SilentlyContinue"
            " | Where-Object { -not $_.SkipAsSource } | Select-Object -First 1 -ExpandProperty IPAddress; "
            "ConvertTo-Json -Compress -InputObject ([ordered]@{ifindex = $a.ifIndex; "
            "mac = $a.MacAddress; mtu = $i.NlMtu; ipv4 = $ip})")


def powershell_argv(script: str) -> list:
    """powershell.exe running ``script``; -EncodedCommand (base64 of UTF-16LE), so no quoting of
    the command line can change it."""
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    return [POWERSHELL, "-NoProfile", "-NonInteractive", "-EncodedCommand", encoded]


def _run(argv: list):
    """(rc, stdout, stderr) of a command run to its end."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise L4LBError(f"cannot run {argv[0]}: {exc}") from exc
    return p.returncode, p.stdout, p.stderr


def _cdll(path: str):
    return ctypes.CDLL(path, use_errno=True)


def _windll(name: str):
    return ctypes.WinDLL(name, use_last_error=True)


class WindowsPlatform(Platform):
    name = "windows"
    pin_root = PIN_ROOT
    xdp_modes = ("generic",)
    batch_ops = False

    def __init__(self, efw_dir: str | None = None, loader=_cdll, system_loader=_windll, run=_run):
        """``loader(path)`` loads EbpfApi.dll, ``system_loader(name)`` iphlpapi and kernel32,
        ``run(argv)`` runs a command: all replaceable (tests)."""
        self.efw_dir = efw_dir or default_efw_dir()
        self._loader = loader
        self._system_loader = system_loader
        self._run = run
        self._lib = None
        self._system: dict = {}

    # --- the library ------------------------------------------------------------------------

    def library(self):
        if self._lib is None:
            path = ntpath.join(self.efw_dir, LIBRARY)
            try:
                if hasattr(os, "add_dll_directory") and os.path.isdir(self.efw_dir):
                    os.add_dll_directory(self.efw_dir)   # its own dependencies sit beside it
                lib = self._loader(path)
            except OSError as exc:
                raise L4LBError(f"cannot load {path} ({exc}); eBPF-for-Windows 0.12.0 is needed on this "
                                "node (the windows_ebpf role installs it; L4LB_EFW_DIR names its "
                                "directory)") from exc
            libbpf.set_signatures(lib, {**libbpf.SIGNATURES, **EFW_FUNCTIONS})
            self._lib = lib
        return self._lib

    def _sys(self, name: str):
        if name not in self._system:
            dll = self._system_loader(name)
            if name == "iphlpapi":
                dll.ConvertInterfaceAliasToLuid.argtypes = [ctypes.c_wchar_p, ctypes.POINTER(_NetLuid)]
                dll.ConvertInterfaceLuidToIndex.argtypes = [ctypes.POINTER(_NetLuid), ctypes.POINTER(ctypes.c_uint32)]
                dll.SendARP.argtypes = [ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p,
                                        ctypes.POINTER(ctypes.c_uint32)]
            elif name == "kernel32":
                dll.CreateMutexW.restype = ctypes.c_void_p
                dll.CreateMutexW.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_wchar_p]
                dll.WaitForSingleObject.restype = ctypes.c_uint32
                dll.WaitForSingleObject.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
                dll.ReleaseMutex.argtypes = [ctypes.c_void_p]
                dll.CloseHandle.argtypes = [ctypes.c_void_p]
            self._system[name] = dll
        return self._system[name]

    def map_info(self, fd: int) -> MapInfo:
        i = libbpf.obj_info(fd, _EfwMapInfo(), "map")
        return MapInfo(id=i.id, type=EFW_TO_CORE_MAP_TYPES.get(i.type, UNKNOWN_MAP_TYPE + i.type),
                       key_size=i.key_size, value_size=i.value_size, max_entries=i.max_entries,
                       map_flags=i.map_flags, name=i.name.decode(errors="replace"))

    def prog_info(self, fd: int) -> ProgInfo:
        i = libbpf.obj_info(fd, _EfwProgInfo(), "prog")
        return ProgInfo(id=i.id, tag="", name=i.name.decode(errors="replace"))

    def native_map_type(self, map_type: int) -> int:
        if map_type not in CORE_TO_EFW_MAP_TYPES:
            raise InvalidConfig(f"map type {map_type} has no eBPF-for-Windows equivalent here")
        return CORE_TO_EFW_MAP_TYPES[map_type]

    # --- pins: paths in eBPF-for-Windows' store ---------------------------------------------

    def _result(self, result: int, op: str, what: str) -> None:
        if result != EBPF_SUCCESS:
            raise BpfError(op, _RESULT_ERRNO.get(result, errno.EIO), f"{what}: ebpf_result_t {result}")

    def all_pins(self) -> list:
        """Every pin path in the store: maps', then programs'."""
        lib = self.library()
        count = ctypes.c_uint16(0)
        infos = ctypes.POINTER(_EfwPinnedMapInfo)()
        self._result(lib.ebpf_api_get_pinned_map_info(ctypes.byref(count), ctypes.byref(infos)),
                     "ebpf_api_get_pinned_map_info", "pinned maps")
        paths = []
        try:
            for k in range(count.value):
                if infos[k].pin_path:
                    paths.append(infos[k].pin_path.decode(errors="replace"))
        finally:
            if infos:
                lib.ebpf_api_map_info_free(count, infos)
        buf = ctypes.create_string_buffer(MAX_PIN_PATH)
        while lib.ebpf_get_next_pinned_program_path(buf, buf) == EBPF_SUCCESS:
            paths.append(buf.value.decode(errors="replace"))
        return paths

    def check_pins(self) -> None:
        self.library()

    def pin_exists(self, path: str) -> bool:
        fd = self.library().bpf_obj_get(os.fsencode(path))
        if fd >= 0:
            os.close(fd)
            return True
        below = path.rstrip("/") + "/"
        return any(p.startswith(below) for p in self.all_pins())

    def pins_under(self, path: str) -> list:
        below = path.rstrip("/") + "/"
        return sorted({p[len(below):].split("/", 1)[0] for p in self.all_pins() if p.startswith(below)})

    def prepare_pin_dir(self, path: str) -> None:
        """Pin paths are names in the store: there is no directory to make."""

    def repin(self, fd: int, path: str) -> None:
        self.unpin(path)
        libbpf.obj_pin(fd, path)

    def unpin(self, path: str) -> bool:
        result = self.library().ebpf_object_unpin(os.fsencode(path))
        if result in (EBPF_OBJECT_NOT_FOUND, EBPF_KEY_NOT_FOUND, EBPF_NOT_PINNED):
            return False
        self._result(result, "ebpf_object_unpin", path)
        return True

    def remove_pins(self, path: str) -> None:
        below = path.rstrip("/") + "/"
        for p in sorted(p for p in self.all_pins() if p == path or p.startswith(below)):
            self.unpin(p)

    @contextlib.contextmanager
    def temp_pin_root(self):
        root = f"{PIN_ROOT}/l4lb_check_{uuid.uuid4().hex[:12]}"
        try:
            yield root
        finally:
            with contextlib.suppress(L4LBError):
                self.remove_pins(root)

    @staticmethod
    def mutex_name(path: str) -> str:
        """The named mutex of a pin directory (Global: the same for every session)."""
        return "Global\\l4lb-" + hashlib.sha256(path.encode()).hexdigest()[:16]

    @contextlib.contextmanager
    def lock(self, path: str, blocking: bool = True):
        if not path:
            yield
            return
        k32 = self._sys("kernel32")
        handle = k32.CreateMutexW(None, 0, self.mutex_name(path))
        if not handle:
            raise L4LBError(f"cannot create the lock of {path} (CreateMutexW failed)")
        try:
            waited = k32.WaitForSingleObject(handle, _INFINITE if blocking else 0)
            if waited == _WAIT_TIMEOUT:
                raise L4LBError(f"another writer holds the lock on {path}")
            if waited not in (_WAIT_OBJECT_0, _WAIT_ABANDONED):   # abandoned: its holder died
                raise L4LBError(f"cannot take the lock of {path} (WaitForSingleObject: {waited:#x})")
            try:
                yield
            finally:
                k32.ReleaseMutex(handle)
        finally:
            k32.CloseHandle(handle)

    # --- XDP: netebpfext's hook -------------------------------------------------------------

    def xdp_query(self, ifindex: int) -> tuple:
        prog_id = ctypes.c_uint32(0)
        ret = self.library().bpf_xdp_query_id(ifindex, 0, ctypes.byref(prog_id))
        if ret == -errno.ENOENT:
            return 0, ""
        libbpf._check(ret, "bpf_xdp_query_id", f"ifindex {ifindex}")
        return (prog_id.value, "generic") if prog_id.value else (0, "")

    def xdp_attach(self, ifindex: int, prog_fd: int, mode: str, old_prog_fd=None) -> None:
        opts = libbpf.XdpAttachOpts(sz=ctypes.sizeof(libbpf.XdpAttachOpts))
        flags = 0
        if old_prog_fd is not None:
            opts.old_prog_fd = old_prog_fd
            flags = XDP_FLAGS_REPLACE
        libbpf._check(self.library().bpf_xdp_attach(ifindex, prog_fd, flags, ctypes.byref(opts)),
                      "bpf_xdp_attach", f"ifindex {ifindex}")

    def xdp_detach(self, ifindex: int, mode: str) -> None:
        opts = libbpf.XdpAttachOpts(sz=ctypes.sizeof(libbpf.XdpAttachOpts))
        libbpf._check(self.library().bpf_xdp_detach(ifindex, 0, ctypes.byref(opts)),
                      "bpf_xdp_detach", f"ifindex {ifindex}")

    # --- devices ----------------------------------------------------------------------------

    def ifindex(self, name: str) -> int:
        if not name or len(name) > 256:
            raise InvalidConfig(f"device {name!r} is not a valid interface alias")
        iphlp = self._sys("iphlpapi")
        luid, index = _NetLuid(), ctypes.c_uint32(0)
        if iphlp.ConvertInterfaceAliasToLuid(name, ctypes.byref(luid)) != 0 or \
                iphlp.ConvertInterfaceLuidToIndex(ctypes.byref(luid), ctypes.byref(index)) != 0:
            raise InvalidConfig(f"device {name!r} does not exist on this node (no adapter with that alias)")
        return index.value

    def device(self, name: str) -> Device:
        rc, out, err = self._run(powershell_argv(device_script(name)))
        if rc != 0:
            raise InvalidConfig(f"device {name!r} does not exist on this node (Get-NetAdapter: "
                                f"{err.strip() or 'exit %d' % rc})")
        try:
            d = json.loads(out)
            mac = d["mac"].replace("-", ":").lower()
            index, mtu, ipv4 = int(d["ifindex"]), int(d["mtu"]), d["ipv4"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise L4LBError(f"device {name!r}: unexpected answer from PowerShell: {out.strip()!r}") from exc
        if not ipv4:
            raise InvalidConfig(f"device {name!r} has no IPv4 address (the LB needs one for SNAT and DSR)")
        return Device(name=name, ifindex=index, mac=mac, ipv4=ipv4, mtu=mtu)

    def resolve_mac(self, ip: str, dev: str, timeout: float = 3.0) -> str:
        """SendARP: the neighbour cache, else one ARP exchange (with Windows' own timeout, so
        ``timeout`` is not used) on the interface the route to ``ip`` picks (``dev`` only names
        it in the error)."""
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError as exc:
            raise InvalidConfig(f"next hop {ip!r} is not an IPv4 address") from exc
        mac = (ctypes.c_uint8 * 8)()
        size = ctypes.c_uint32(6)
        dest = int.from_bytes(socket.inet_aton(str(addr)), "little")   # IPAddr: in_addr's bytes
        code = self._sys("iphlpapi").SendARP(dest, 0, ctypes.byref(mac), ctypes.byref(size))
        if code != 0 or size.value != 6:
            raise L4LBError(f"no next hop: {ip} did not answer ARP on {dev} (SendARP: error {code})")
        return ":".join(f"{b:02x}" for b in bytes(mac)[:6])

    # --- build --------------------------------------------------------------------------------

    def efw_include(self):
        return ntpath.join(self.efw_dir, "include")

    def system_includes(self) -> list:
        return []   # no Linux-target compile here: efw_include() is the target
