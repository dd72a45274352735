# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compiling the datapath: the one place that turns a device's properties into macros and runs
clang.

The seed's agent compiles ``bpf_xdp.c`` on the LB node with the device's MAC, address, ifindex
and the mode as ``-D`` macros; so do we. Rendering the macros (:func:`render_defines`) is kept
apart from running the compiler (:func:`compile_object`). The eBPF-for-Windows target is the same
compile with ``efw_include`` (its ``include/`` directory): compat.h's Windows branch, selected by
``-DLB_TARGET_WINDOWS`` (scripts/check-efw builds it so against the 0.12.0 headers). Without
``efw_include`` the node's own target is built: the platform adapter's ``efw_include()`` (a
Windows node: eBPF-for-Windows' ``include/``), else Linux's with its ``system_includes()``.

    cfg = BuildConfig(lb_ip="20.1.1.1", lb_mac="02:00:14:01:01:01", ifindex=3, mode="snat")
    result = compile_lb(cfg, "/run/l4lb/lb_xdp.o")
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path

from . import platform
from .errors import InvalidConfig, L4LBError
from .lifetimes import CtTimeouts
from .maglev import DEFAULT_SIZE as DEFAULT_MAGLEV_SIZE
from .maglev import check_size as check_maglev_size
from .structs import SNAT_PORT_MAX_DEFAULT, SNAT_PORT_MIN_DEFAULT, bytes_to_mac, mac_to_bytes

MODES = ("snat", "dsr")
LINUX_EPHEMERAL_DEFAULT = (32768, 60999)


def _bpf_dir() -> Path | None:
    """The repository's ``bpf/`` directory, when this file lives in a checkout."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "bpf" / "lb_xdp.c"
        if cand.is_file():
            return cand.parent
    return None


def local_ephemeral_range(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int]:
    """The running network namespace's ephemeral port range (Linux adapter)."""
    try:
        lo, hi = Path(path).read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return LINUX_EPHEMERAL_DEFAULT


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """What the LB program is compiled for. Validated on construction (InvalidConfig)."""

    lb_ip: str
    lb_mac: str
    ifindex: int
    mode: str = "snat"
    maglev_size: int = DEFAULT_MAGLEV_SIZE
    snat_port_min: int = SNAT_PORT_MIN_DEFAULT
    snat_port_max: int = SNAT_PORT_MAX_DEFAULT
    ncpus: int | None = None
    mtu: int = 1500
    # The LB node's ephemeral range: SNAT ports must not overlap it. None = Linux's default.
    ephemeral_range: tuple[int, int] | None = None
    # Connection lifetimes (lifetimes.CtTimeouts, or a dict of seconds).
    ct_timeouts: CtTimeouts = dataclasses.field(default_factory=CtTimeouts)

    def __post_init__(self):
        try:
            ip = ipaddress.IPv4Address(self.lb_ip)
        except (ipaddress.AddressValueError, ValueError) as exc:
            raise InvalidConfig(f"lb_ip {self.lb_ip!r} is not an IPv4 address") from exc
        if ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
            raise InvalidConfig(f"lb_ip {self.lb_ip!r} is not a unicast address")
        object.__setattr__(self, "lb_ip", str(ip))
        mac = mac_to_bytes(self.lb_mac, "lb_mac")
        if mac[0] & 1 or mac == b"\x00" * 6:
            raise InvalidConfig(f"lb_mac {self.lb_mac!r} is not a unicast MAC")
        object.__setattr__(self, "lb_mac", bytes_to_mac(mac))
        if isinstance(self.ifindex, bool) or not isinstance(self.ifindex, int) or not 1 <= self.ifindex <= 0x7FFFFFFF:
            raise InvalidConfig(f"ifindex {self.ifindex!r} is not a positive integer")
        if self.mode not in MODES:
            raise InvalidConfig(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        check_maglev_size(self.maglev_size)
        lo, hi = self.snat_port_min, self.snat_port_max
        for name, v in (("snat_port_min", lo), ("snat_port_max", hi)):
            if isinstance(v, bool) or not isinstance(v, int) or not 1024 <= v <= 65535:
                raise InvalidConfig(f"{name} {v!r} is not a port in 1024..65535")
        if lo > hi:
            raise InvalidConfig(f"snat_port_min {lo} > snat_port_max {hi}")
        eph = self.ephemeral_range or LINUX_EPHEMERAL_DEFAULT
        if lo <= eph[1] and eph[0] <= hi:
            raise InvalidConfig(
                f"SNAT ports {lo}..{hi} overlap the LB node's ephemeral range {eph[0]}..{eph[1]}")
        if self.ncpus is not None and (isinstance(self.ncpus, bool) or not isinstance(self.ncpus, int)
                                       or not 1 <= self.ncpus <= 4096):
            raise InvalidConfig(f"ncpus {self.ncpus!r} is not in 1..4096")
        if isinstance(self.mtu, bool) or not isinstance(self.mtu, int) or not 576 <= self.mtu <= 65535:
            raise InvalidConfig(f"mtu {self.mtu!r} is not in 576..65535")
        object.__setattr__(self, "ct_timeouts", CtTimeouts.parse(self.ct_timeouts))


def lb_ip_macro(ip: str) -> int:
    """LB_IP: the __be32 as a little-endian CPU reads it (20.1.1.1 -> 0x01010114)."""
    return int.from_bytes(ipaddress.IPv4Address(ip).packed, "little")


def render_defines(cfg: BuildConfig) -> dict[str, str]:
    """The macros for bpf/lb_xdp.c (compiler-independent)."""
    mac = mac_to_bytes(cfg.lb_mac, "lb_mac")
    ncpus = cfg.ncpus if cfg.ncpus is not None else (os.cpu_count() or 1)
    return {
        "MODE_SNAT" if cfg.mode == "snat" else "MODE_DSR": "1",
        "LB_IP": f"0x{lb_ip_macro(cfg.lb_ip):08x}",
        "LB_MAC": "{" + ",".join(f"0x{b:02x}" for b in mac) + "}",
        "LB_IFINDEX": str(cfg.ifindex),
        "LB_MTU": str(cfg.mtu),
        "LB_MAGLEV_LUT_SIZE": str(cfg.maglev_size),
        "SNAT_PORT_MIN": str(cfg.snat_port_min),
        "SNAT_PORT_MAX": str(cfg.snat_port_max),
        "__NR_CPUS__": str(ncpus),
        **cfg.ct_timeouts.macros(),
    }


def render_header(defines: dict[str, str]) -> str:
    """The same macros as a config header (what the seed's agent writes before compiling)."""
    lines = ["/* generated by module_utils/l4lb/build.py */"]
    lines += [f"#define {k} {v}" for k, v in defines.items()]
    return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True)
class CompileResult:
    path: str
    defines: dict
    cmdline: list
    clang_version: str
    warnings: str = ""  # the compiler's stderr of a successful compile
    cached: bool = False  # True: the object was already built from the same inputs (not recompiled)


def find_clang() -> str:
    """The clang compile_object runs: $L4LB_CLANG, else clang on PATH; L4LBError when neither."""
    clang = os.environ.get("L4LB_CLANG") or shutil.which("clang")
    if not clang:
        raise L4LBError("clang not found (install clang or set L4LB_CLANG)")
    return clang


_version_cache: dict[str, str] = {}


def clang_version(clang: str | None = None) -> str:
    clang = clang or find_clang()
    if clang not in _version_cache:
        try:
            out = subprocess.run([clang, "--version"], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            raise L4LBError(f"{clang} --version failed: {exc}") from exc
        _version_cache[clang] = out.splitlines()[0].strip() if out else "unknown"
    return _version_cache[clang]


WINDOWS_DEFINE = "LB_TARGET_WINDOWS"


def compile_object(src: str | os.PathLike, out_path: str | os.PathLike, defines: dict | None = None,
                   include_dirs: list | None = None, efw_include: str | os.PathLike | None = None) -> CompileResult:
    """clang -O2 -g -target bpf -c src -o out_path with -D defines. Raises L4LBError carrying
    the compiler's stderr on failure. The object is written atomically (temp file + rename).

    ``efw_include``: compile for eBPF-for-Windows against that ``include/`` directory instead of
    Linux's headers (-DLB_TARGET_WINDOWS). Its headers include <stdint.h>; -ffreestanding makes
    that clang's own, not the build host's C library (glibc's cannot serve -target bpf).
    None: the node's own target (the platform adapter's ``efw_include()``)."""
    plat = platform.current()
    if efw_include is None:
        efw_include = plat.efw_include()
    src = Path(os.path.abspath(src))  # clang's dependency list then names files absolutely
    out = Path(out_path)
    if not src.is_file():
        raise InvalidConfig(f"source {str(src)!r} does not exist")
    if efw_include is not None and not Path(efw_include, "bpf_helpers.h").is_file():
        raise InvalidConfig(f"efw_include {str(efw_include)!r} has no bpf_helpers.h")
    clang = find_clang()
    defines = dict(defines or {})
    incs = [f"-I{d}" for d in (include_dirs or [src.parent / "include", src.parent])]
    if efw_include is None:
        target = plat.system_includes()
    else:
        defines[WINDOWS_DEFINE] = None
        target = ["-ffreestanding"]
        incs.append(f"-I{efw_include}")
    cmd = [clang, "-O2", "-g", "-target", "bpf", "-Wall", "-Wno-unused-function", *target, *incs]
    cmd += [f"-D{k}={v}" if v is not None else f"-D{k}" for k, v in defines.items()]
    cmd += ["-c", str(src), "-o"]
    final_cmd = cmd + [str(out)]
    hit = _cached(out, cmd, clang)
    if hit is not None:
        return CompileResult(path=str(out), defines=defines, cmdline=final_cmd, clang_version=hit["clang_version"],
                             warnings=hit["warnings"], cached=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    deps = out.with_name(f".{out.name}.{os.getpid()}.d")
    try:
        proc = subprocess.run(cmd + [str(tmp), "-MD", "-MF", str(deps)], capture_output=True, text=True, check=False)
    except OSError as exc:
        raise L4LBError(f"cannot run {clang}: {exc}") from exc
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        deps.unlink(missing_ok=True)
        err = L4LBError(f"compiling {src} failed (clang exit {proc.returncode}):\n{proc.stderr.strip()}")
        err.stderr = proc.stderr
        err.cmdline = final_cmd
        raise err
    os.replace(tmp, out)
    version = clang_version(clang)
    _remember(out, cmd, clang, deps, version, proc.stderr.strip())
    return CompileResult(path=str(out), defines=defines, cmdline=final_cmd, clang_version=version,
                         warnings=proc.stderr.strip())


# The build cache: beside each object, what made it - the command, the compiler's identity and
# the SHA-256 of the object and of every file clang read (its -MD list). A compile whose inputs
# all still hash the same is skipped: on an emulated guest clang costs seconds per run. Only the
# compile is skipped; whether the program is loaded and attached is always read from the kernel.
def _record_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.build.json")


def _sha256(path) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def _compiler_id(clang: str) -> list:
    real = os.path.realpath(clang)
    st = os.stat(real)
    return [real, st.st_size, st.st_mtime_ns]


def _cached(out: Path, cmd: list, clang: str) -> dict | None:
    try:
        with open(_record_path(out)) as f:
            rec = json.load(f)
        if rec["cmd"] != cmd or rec["compiler"] != _compiler_id(clang) or rec["object"] != _sha256(out):
            return None
        if any(_sha256(p) != h for p, h in rec["inputs"].items()):
            return None
        return rec
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _remember(out: Path, cmd: list, clang: str, deps: Path, version: str, warnings: str) -> None:
    try:
        text = deps.read_text()
    except OSError:
        return
    finally:
        deps.unlink(missing_ok=True)
    inputs = make_deps(text)
    rec = {"cmd": cmd, "compiler": _compiler_id(clang), "object": _sha256(out), "clang_version": version,
           "warnings": warnings, "inputs": {p: _sha256(p) for p in inputs}}
    tmp = _record_path(out).with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(rec))
    os.replace(tmp, _record_path(out))


def make_deps(text: str) -> list:
    """The prerequisites of clang's -MD file (make syntax: ``target: dep dep \\<newline> dep``).
    The target ends at the first colon followed by white space (a Windows path's drive colon is
    followed by a backslash); a space inside a path is escaped as backslash-space (``C:\\Program\\ Files``)."""
    text = text.replace("\\\r\n", " ").replace("\\\n", " ")
    end = text.find(": ")
    if end < 0:
        end = text.find(":\n")
    if end < 0:
        return []
    rest = text[end + 2:]
    deps, cur, i = [], [], 0
    while i < len(rest):
        c = rest[i]
        if c == "\\" and i + 1 < len(rest) and rest[i + 1] == " ":
            cur.append(" ")
            i += 2
            continue
        if c.isspace():
            if cur:
                deps.append("".join(cur))
                cur = []
        else:
            cur.append(c)
        i += 1
    if cur:
        deps.append("".join(cur))
    return deps


def source_path(name: str, src_dir: str | os.PathLike | None = None) -> Path:
    """``name`` in ``src_dir`` (the bpf/ directory, or a checkout holding bpf/)."""
    base = Path(src_dir) if src_dir else _bpf_dir()
    if base is None:
        raise InvalidConfig("bpf source directory unknown: pass src_dir")
    if not (base / name).is_file() and (base / "bpf" / name).is_file():
        base = base / "bpf"
    return base / name


def compile_lb(config: BuildConfig, out_path: str | os.PathLike,
               src_dir: str | os.PathLike | None = None,
               efw_include: str | os.PathLike | None = None) -> CompileResult:
    """Compile bpf/lb_xdp.c for ``config`` (for eBPF-for-Windows with ``efw_include``)."""
    if not isinstance(config, BuildConfig):
        raise InvalidConfig(f"config {config!r} is not a BuildConfig")
    return compile_object(source_path("lb_xdp.c", src_dir), out_path, render_defines(config),
                          efw_include=efw_include)


def compile_decap(kind: str, out_path: str | os.PathLike, src_dir: str | os.PathLike | None = None,
                  efw_include: str | os.PathLike | None = None) -> CompileResult:
    """Compile the backend decap program: kind 'xdp' (decap_xdp.c) or 'tc' (decap_tc.c, Linux only)."""
    names = {"xdp": "decap_xdp.c", "tc": "decap_tc.c"}
    if kind not in names:
        raise InvalidConfig(f"decap kind {kind!r} is not one of xdp, tc")
    if kind == "tc" and efw_include is not None:
        raise InvalidConfig("decap kind 'tc' is Linux only (eBPF-for-Windows backends use xdp)")
    return compile_object(source_path(names[kind], src_dir), out_path, {}, efw_include=efw_include)
