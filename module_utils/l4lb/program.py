# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The LB program's life cycle: compile on the node, load reusing pinned maps, attach or replace
atomically, detach. Judged by what the kernel has (attached program id and tag), never by files.

Layout under ``pin_dir`` (ARCHITECTURE.md): ``prog`` (the program) and ``maps/<name>`` (every map,
pinned by name by libbpf, so a reload or mode switch keeps services and connection tracking).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import shutil
import tempfile
from dataclasses import dataclass, field

from . import libbpf, platform, xdp
from .build import BuildConfig, compile_lb
from .errors import BpfError, InvalidConfig, L4LBError
from .maglev import DEFAULT_SIZE
from .structs import SNAT_PORT_MAX_DEFAULT, SNAT_PORT_MIN_DEFAULT

ATTACH_MODES = xdp.ATTACH_MODES
VERIFIER_LOG_LINES = 30


def lb_mode(name: str) -> str | None:
    """snat | dsr, from the program's name (bpf/lb_xdp.c names it lb_xdp_<mode>)."""
    prefix = "lb_xdp_"
    return name[len(prefix):] if name.startswith(prefix) else None


@dataclass
class ProgramStatus:
    device: str
    ifindex: int
    attached: xdp.Attached = field(default_factory=xdp.Attached)
    pinned_prog_id: int = 0
    maps_pinned: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "device": self.device,
            "prog_id": self.attached.prog_id,
            "tag": self.attached.tag,
            "name": self.attached.name,
            "mode": lb_mode(self.attached.name),
            "attach_mode": self.attached.attach_mode or None,
            "pinned_prog_id": self.pinned_prog_id,
            "maps_pinned": self.maps_pinned,
        }


def prog_pin_path(pin_dir: str) -> str:
    return posixpath.join(pin_dir, "prog")


def maps_pin_dir(pin_dir: str) -> str:
    return posixpath.join(pin_dir, "maps")


def status(device: str, pin_dir: str) -> ProgramStatus:
    plat = platform.current()
    ifindex = plat.ifindex(device)
    return ProgramStatus(device=device, ifindex=ifindex, attached=xdp.attached(ifindex),
                         pinned_prog_id=xdp.pinned_prog_id(prog_pin_path(pin_dir)),
                         maps_pinned=plat.pins_under(maps_pin_dir(pin_dir)))


def trim_verifier_log(log: str, lines: int = VERIFIER_LOG_LINES) -> str:
    """The tail of the verifier's log: the failing instructions and the reason."""
    text = log
    if "-- BEGIN PROG LOAD LOG --" in text:
        text = text.split("-- BEGIN PROG LOAD LOG --", 1)[1].split("-- END PROG LOAD LOG --", 1)[0]
    kept = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


@dataclass
class Desired:
    device: str
    src_dir: str
    build_dir: str
    pin_dir: str
    mode: str = "snat"
    attach_mode: str = "native"
    maglev_size: int = DEFAULT_SIZE
    snat_port_min: int = SNAT_PORT_MIN_DEFAULT
    snat_port_max: int = SNAT_PORT_MAX_DEFAULT
    ct_timeouts: dict | None = None
    force: bool = False

    def validate(self) -> None:
        if self.mode not in ("snat", "dsr"):
            raise InvalidConfig(f"mode {self.mode!r} is not one of snat, dsr")
        if self.attach_mode not in ATTACH_MODES:
            raise InvalidConfig(f"attach_mode {self.attach_mode!r} is not one of {', '.join(ATTACH_MODES)}")
        if not os.path.isdir(self.src_dir):
            raise InvalidConfig(f"src {self.src_dir!r} is not a directory with the bpf/ sources")
        platform.current().check_pins()


def _build(desired: Desired, dev, out_dir: str):
    config = BuildConfig(
        lb_ip=dev.ipv4, lb_mac=dev.mac, ifindex=dev.ifindex, mode=desired.mode,
        maglev_size=desired.maglev_size, snat_port_min=desired.snat_port_min,
        snat_port_max=desired.snat_port_max, mtu=dev.mtu, ct_timeouts=desired.ct_timeouts,
    )
    return compile_lb(config, os.path.join(out_dir, f"lb_xdp_{desired.mode}.o"), src_dir=desired.src_dir)


def load_object(obj_path: str, pin_root: str | None = None) -> libbpf.BpfObject:
    """Open and load a compiled object (its maps reused from or pinned under ``pin_root``);
    a refusal raises L4LBError with the tail of the verifier log."""
    obj = libbpf.BpfObject(obj_path, pin_root_path=pin_root)
    try:
        obj.load()
    except BpfError as exc:
        obj.close()
        log = trim_verifier_log(exc.log)
        if "couldn't reuse pinned map" in exc.log:
            raise L4LBError(
                f"the pinned maps under {pin_root} do not match the new program's maps "
                f"(a changed map layout or Maglev size); remove the program (state=absent) first.\n{log}"
            ) from exc
        raise L4LBError(f"the kernel rejected the program ({exc}):\n{log}") from exc
    return obj


def ensure_present(desired: Desired, check_mode: bool = False) -> dict:
    """Compile, load, pin and attach; replace atomically when the running program differs."""
    desired.validate()
    plat = platform.current()
    dev = plat.device(desired.device)
    before = status(desired.device, desired.pin_dir)
    os.makedirs(desired.build_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="build-", dir=desired.build_dir)
    try:
        # Built in build_dir, where the compile cache (build.py) finds the last object; check
        # mode builds in the throw-away directory.
        build = _build(desired, dev, work if check_mode else desired.build_dir)
        maps_dir = maps_pin_dir(desired.pin_dir)
        if check_mode:
            # The candidate gets throw-away maps in a private pin root (every map pins by name,
            # and without a root libbpf would pin into the pin root itself); nothing is attached.
            with plat.temp_pin_root() as load_root:
                obj = load_object(build.path, load_root)
        else:
            plat.prepare_pin_dir(maps_dir)
            obj = load_object(build.path, maps_dir)
        try:
            prog = obj.program()
            cand = xdp.prog_summary(prog.fd)
            # A pin missing or pointing elsewhere: the running program may use other maps than
            # the pinned ones, so reattach the candidate (loaded on the pinned maps).
            pinned_ok = before.pinned_prog_id == before.attached.prog_id and before.pinned_prog_id != 0
            untagged_same = not cand.tag and pinned_ok and _recorded_same(desired, before, build.path)
            done = xdp.ensure(desired.device, dev.ifindex, prog.fd, prog_pin_path(desired.pin_dir),
                              desired.attach_mode, check_mode=check_mode, force=desired.force or not pinned_ok,
                              untagged_same=untagged_same)
            result = {
                "changed": done.changed,
                "diff": {
                    "before": _diff_view(before),
                    "after": {"mode": desired.mode, "prog_tag": cand.tag, "prog_name": cand.name,
                              "attach_mode": desired.attach_mode, "device": desired.device},
                },
                "build": {"object": build.path, "defines": build.defines, "clang": build.clang_version,
                          "cached": build.cached},
            }
            if not done.changed or check_mode:
                if check_mode and done.changed:
                    result["diff"]["after"]["prog_id"] = None
                result.update(status=before.as_dict(), prog_id=before.attached.prog_id or None,
                              tag=cand.tag, attach_mode=desired.attach_mode,
                              pins={"prog": prog_pin_path(desired.pin_dir), "maps": maps_dir})
                return result
            # Keep the object on disk beside the pins for inspection (bpftool, tests).
            final_obj = os.path.join(desired.build_dir, os.path.basename(build.path))
            if os.path.abspath(build.path) != os.path.abspath(final_obj):
                shutil.copyfile(build.path, final_obj)
            result["build"]["object"] = final_obj
        finally:
            obj.close()
        after = status(desired.device, desired.pin_dir)
        if not cand.tag:
            _record_attached(desired, after, final_obj)
        result["diff"]["after"]["attach_mode"] = done.attach_mode
        result.update(status=after.as_dict(), prog_id=after.attached.prog_id, tag=after.attached.tag,
                      attach_mode=done.attach_mode, pins={"prog": prog_pin_path(desired.pin_dir), "maps": maps_dir},
                      warnings=done.warnings)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


# The attach record, for platforms that keep no program tag (eBPF-for-Windows): after an attach,
# the kernel's id of the program and the SHA-256 of the object it was loaded from, beside the
# object. A later run takes the running program as the candidate's equal only when the kernel
# still runs and pins that very id on the device and the candidate object hashes the same; a
# record naming another id (a reload, a reboot, someone else's attach) counts for nothing.
def _record_path(build_dir: str) -> str:
    return os.path.join(build_dir, ".lb_attached.json")


def _file_sha256(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def _record_key(desired: Desired, st: ProgramStatus) -> dict:
    return {"device": desired.device, "ifindex": st.ifindex, "pin_dir": desired.pin_dir,
            "prog_id": st.attached.prog_id, "name": st.attached.name}


def _recorded_same(desired: Desired, before: ProgramStatus, obj_path: str) -> bool:
    try:
        with open(_record_path(desired.build_dir)) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return False
    if not isinstance(rec, dict) or not before.attached.present:
        return False
    sha = _file_sha256(obj_path)
    return sha is not None and rec.get("object_sha256") == sha and rec.get("key") == _record_key(desired, before)


def _record_attached(desired: Desired, after: ProgramStatus, obj_path: str) -> None:
    """After an attach; a record that cannot be written only costs the next run a replace."""
    rec = {"key": _record_key(desired, after), "object_sha256": _file_sha256(obj_path)}
    path = _record_path(desired.build_dir)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(rec, f, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _diff_view(st: ProgramStatus) -> dict:
    return {"mode": lb_mode(st.attached.name), "prog_tag": st.attached.tag or None, "prog_name": st.attached.name or None,
            "attach_mode": st.attached.attach_mode or None, "device": st.device}


def ensure_absent(device: str, pin_dir: str, check_mode: bool = False) -> dict:
    """Detach our program (only if the attached one is ours) and remove every pin."""
    try:
        before = status(device, pin_dir)
    except InvalidConfig:
        before = None  # the device is gone: only the pins can be left
    plat = platform.current()
    has_pins = plat.pin_exists(pin_dir)
    ours = bool(before and before.attached.present and before.attached.prog_id == before.pinned_prog_id)
    changed = ours or has_pins
    result = {"changed": changed,
              "diff": {"before": _diff_view(before) if before else {"device": device},
                       "after": {"mode": None, "prog_tag": None, "prog_name": None, "attach_mode": None,
                                 "device": device}}}
    if check_mode or not changed:
        return result
    if ours:
        xdp.detach(before.ifindex, before.attached.attach_mode)
    if has_pins:
        plat.remove_pins(pin_dir)
    return result
