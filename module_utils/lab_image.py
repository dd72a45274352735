# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest images for VM providers (issue 8): a Debian 12 base image built from Debian's packages,
cached by content.

No image can be downloaded here, and a user's KVM host should not need one: the base image is
built with ``mmdebstrap`` from the same Debian mirror the host's apt uses, with what the node
roles need (systemd, sshd, python3 for Ansible, nginx-light and iproute2 for backends, clang,
llvm, libbpf and bpftool for the LB node, which compiles its XDP program on the node as the
seed does). ``mkfs.ext4 -d`` turns the tree into a file system without loop devices and
``qemu-img`` into a qcow2 base that per-VM overlays back onto. The kernel and initrd are kept
beside it for direct kernel boot (``root=/dev/vda``).

One image serves every node: what makes a guest a particular node (hostname, address, MTU, the
lab's SSH key) is given at boot on the kernel command line of direct kernel boot, built by
:func:`kernel_cmdline` (the contract the VM providers call). No cloud-init, no metadata service,
no network fetch: ``systemd-network-generator`` turns the dracut-style ``ip=`` into a networkd
unit for ``eth0`` (address, MTU), ``systemd.hostname=`` names the guest, and the image's
``l4lb-ssh-key.service`` installs ``l4lb.ssh_key=`` as root's authorized key before sshd starts.

The cache key is the content: the suite, every requested package at the version the mirror
offers now (``apt-cache policy``), the image size and this builder's version. A rerun with the
same key reuses the image (judged by the files and ``qemu-img info``, not by a marker alone);
a new package version makes a new image under a new key.

Standard library and the core's ``procs.run`` (commands); imported as
``ansible.module_utils.lab_image`` by ``library/lab_image.py`` and as ``lab_image`` by tests
(which put ``module_utils/`` on ``ansible.module_utils``' path, tests/labtest.py).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import re
import shutil
import tempfile
import time

from ansible.module_utils.l4lb import procs

BUILDER_VERSION = 2  # 2: per-node first-boot configuration from the kernel command line
SUITE = "bookworm"
# What every lab node needs; the LB node's toolchain is in every image (one image, built once).
BASE_PACKAGES = (
    "systemd", "systemd-sysv", "udev", "dbus", "kmod", "openssh-server", "python3", "iproute2",
    "iputils-ping", "ethtool", "curl", "tcpdump", "nginx-light", "linux-image-cloud-amd64",
    "clang", "llvm", "libbpf-dev", "bpftool", "libc6-dev", "linux-libc-dev",
)
TOOLS = ("mmdebstrap", "mkfs.ext4", "qemu-img", "apt-cache")
_PKG_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")

# The kernel command line of direct kernel boot: what every guest gets, then the node's part.
CMDLINE_BASE = ("root=/dev/vda", "ro", "console=ttyS0", "net.ifnames=0")
CMDLINE_MAX = 2047  # x86's COMMAND_LINE_SIZE is 2048 bytes with the terminating NUL
GUEST_IFACE = "eth0"
MTU_RANGE = (576, 9216)
SSH_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                 "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
                 "sk-ecdsa-sha2-nistp256@openssh.com")
_HOST_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_B64_RE = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")

# Installed in the image: reads l4lb.ssh_key=<type>:<base64> from /proc/cmdline (every boot, so
# the key the provider gives is the one that works) and makes it root's only authorized key.
SSH_KEY_SCRIPT = """#!/bin/sh
# L4LB lab: root's authorized key from the kernel command line (l4lb.ssh_key=<type>:<base64>),
# written by lab_image.kernel_cmdline(). Without the parameter the file is left as it is.
set -eu
set -f
key=
for word in $(cat /proc/cmdline); do
  case "$word" in l4lb.ssh_key=*) key=${word#l4lb.ssh_key=} ;; esac
done
[ -n "$key" ] || exit 0
type=${key%%:*}
blob=${key#*:}
case "$type" in
  %s) ;;
  *) echo "l4lb.ssh_key: unknown key type '$type'" >&2; exit 1 ;;
esac
case "$blob" in
  ''|*[!A-Za-z0-9+/=]*) echo "l4lb.ssh_key: the key is not base64" >&2; exit 1 ;;
esac
umask 077
mkdir -p /root/.ssh
printf '%%s %%s l4lb-lab\\n' "$type" "$blob" > /root/.ssh/authorized_keys.l4lb
mv -f /root/.ssh/authorized_keys.l4lb /root/.ssh/authorized_keys
echo "l4lb.ssh_key: installed a $type key for root"
""" % "|".join(SSH_KEY_TYPES)

SSH_KEY_UNIT = """[Unit]
Description=L4LB lab: root's SSH key from the kernel command line
After=local-fs.target
Before=ssh.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/l4lb-ssh-key

[Install]
WantedBy=multi-user.target
"""


class ImageError(Exception):
    """Bad input, a missing tool, or a failed build step (the message names which)."""


def _run(argv, check=True):
    """Run a command (procs.run); ImageError naming it when it fails and ``check``."""
    return procs.run(argv, check=check, error=ImageError)


def validate(packages, size_mb, cache_dir) -> list:
    """The full package list, or ImageError naming the bad variable; changes nothing."""
    problems = []
    extra = list(packages or [])
    for p in extra:
        if not isinstance(p, str) or not _PKG_RE.match(p):
            problems.append(f"lab_image_packages: {p!r} is not a Debian package name")
    if isinstance(size_mb, bool) or not isinstance(size_mb, int) or not 1024 <= size_mb <= 65536:
        problems.append(f"lab_image_size_mb: {size_mb!r} is not a size in MiB in 1024..65536")
    if not cache_dir or not os.path.isabs(cache_dir) or os.path.normpath(cache_dir).count("/") < 2:
        problems.append(f"lab_image_cache_dir: {cache_dir!r} is not a dedicated absolute directory")
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        problems.append(f"requirement: {', '.join(missing)} not found (scripts/setup.sh installs them)")
    if problems:
        raise ImageError("; ".join(problems))
    return sorted(set(BASE_PACKAGES) | set(extra))


def _parse_ssh_key(ssh_pubkey):
    """(type, base64) of an OpenSSH public key line ("<type> <base64> [comment]"), or a message."""
    if not isinstance(ssh_pubkey, str) or not ssh_pubkey.strip():
        return None, f"ssh_pubkey: {ssh_pubkey!r} is not an OpenSSH public key line"
    fields = ssh_pubkey.split()
    if len(fields) < 2:
        return None, "ssh_pubkey: expected '<type> <base64> [comment]' (the content of a .pub file)"
    ktype, blob = fields[0], fields[1]
    if ktype not in SSH_KEY_TYPES:
        return None, f"ssh_pubkey: key type {ktype!r} is not one of {', '.join(SSH_KEY_TYPES)}"
    if not _B64_RE.match(blob):
        return None, "ssh_pubkey: the key is not base64"
    try:
        raw = base64.b64decode(blob, validate=True)
    except ValueError:
        return None, "ssh_pubkey: the key is not base64"
    # The wire format starts with the key type as an SSH string: uint32 length, then the name.
    if len(raw) < 4 + len(ktype) or raw[4:4 + int.from_bytes(raw[:4], "big")] != ktype.encode():
        return None, f"ssh_pubkey: the key's content is not a {ktype} key"
    return (ktype, blob), None


def _first_boot(hostname, ip_cidr, mtu, ssh_pubkey):
    """(IPv4Interface, (key type, base64)) of a node's first-boot settings; ImageError naming
    every bad argument."""
    problems = []
    if not isinstance(hostname, str) or len(hostname) > 63 or not _HOST_LABEL_RE.match(hostname):
        problems.append(f"hostname: {hostname!r} is not a host name (lower-case letters, digits, "
                        "'-', at most 63, no leading or trailing '-')")
    iface = None
    try:
        if not isinstance(ip_cidr, str) or "/" not in ip_cidr:
            raise ValueError
        iface = ipaddress.IPv4Interface(ip_cidr)
        ip, net = iface.ip, iface.network
        if net.prefixlen > 30 or ip in (net.network_address, net.broadcast_address):
            raise ValueError
        if ip.is_loopback or ip.is_multicast or ip.is_link_local or ip.is_unspecified or ip.is_reserved:
            raise ValueError
    except ValueError:
        iface = None
        problems.append(f"ip_cidr: {ip_cidr!r} is not a host's IPv4 address with a prefix length "
                        "(e.g. 20.1.1.1/24, prefix at most 30, not the network or broadcast address, "
                        "nor a loopback, link-local, multicast or reserved one)")
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not MTU_RANGE[0] <= mtu <= MTU_RANGE[1]:
        problems.append(f"mtu: {mtu!r} is not an MTU in {MTU_RANGE[0]}..{MTU_RANGE[1]}")
    key, why = _parse_ssh_key(ssh_pubkey)
    if why:
        problems.append(why)
    if problems:
        raise ImageError("; ".join(problems))
    return iface, key


def kernel_cmdline(hostname, ip_cidr, mtu, ssh_pubkey) -> str:
    """The kernel command line that makes the base image node ``hostname``: ``eth0`` with
    ``ip_cidr`` (e.g. ``20.1.1.1/24``; no gateway, the lab's subnet is on-link) and ``mtu``, and
    ``ssh_pubkey`` (an OpenSSH public key line) as root's authorized key. For the domain's
    ``<cmdline>`` of direct kernel boot; ImageError names every bad argument."""
    iface, key = _first_boot(hostname, ip_cidr, mtu, ssh_pubkey)
    # dracut's ip=<client-IP>:[<peer>]:<gateway-IP>:<netmask>:<client_hostname>:<interface>:
    # {none|off|...}[:<mtu>], as systemd-network-generator (systemd 252) reads it; the netmask
    # may be a prefix length.
    words = list(CMDLINE_BASE) + [
        f"systemd.hostname={hostname}",
        f"ip={iface.ip}:::{iface.network.prefixlen}::{GUEST_IFACE}:off:{mtu}",
        f"l4lb.ssh_key={key[0]}:{key[1]}",
    ]
    line = " ".join(words)
    if len(line) > CMDLINE_MAX:
        raise ImageError(f"ssh_pubkey: the kernel command line would be {len(line)} bytes, more than "
                         f"x86's {CMDLINE_MAX} (use a shorter key type, e.g. ssh-ed25519)")
    return line


def nocloud_seed(hostname, ip_cidr, mtu, ssh_pubkey, mac) -> dict:
    """The files of a cloud-init NoCloud seed (a volume labelled ``cidata``) that make a stock
    cloud image node ``hostname`` on its first boot, with nothing fetched from a network: the
    interface with ``mac`` named ``eth0`` (the roles' name) with ``ip_cidr`` and ``mtu``, root
    logging in with ``ssh_pubkey`` only. {file name: text}; ImageError naming every bad argument.
    The instance-id carries the content's hash: a changed seed is a new instance to cloud-init,
    which then applies it on the next boot."""
    iface, key = _first_boot(hostname, ip_cidr, mtu, ssh_pubkey)
    if not isinstance(mac, str) or not re.fullmatch(r"(?:[0-9a-f]{2}:){5}[0-9a-f]{2}", mac.lower()):
        raise ImageError(f"mac: {mac!r} is not a MAC address")
    # JSON is YAML: what cloud-init reads is exactly what json.dumps wrote.
    network = {"version": 2, "ethernets": {GUEST_IFACE: {
        "match": {"macaddress": mac.lower()}, "set-name": GUEST_IFACE, "dhcp4": False,
        "addresses": [str(iface)], "mtu": mtu}}}
    # locale: false - the lab needs none, and the image's own is left as it is
    user = {"disable_root": False, "ssh_pwauth": False, "locale": False,
            "ssh_authorized_keys": [f"{key[0]} {key[1]} l4lb-lab"], "preserve_hostname": False,
            "hostname": hostname, "manage_etc_hosts": True}
    files = {"network-config": json.dumps(network, indent=1, sort_keys=True) + "\n",
             "user-data": "#cloud-config\n" + json.dumps(user, indent=1, sort_keys=True) + "\n"}
    digest = hashlib.sha256("".join(files[k] for k in sorted(files)).encode()).hexdigest()[:16]
    files["meta-data"] = json.dumps({"instance-id": f"{hostname}-{digest}", "local-hostname": hostname},
                                    indent=1, sort_keys=True) + "\n"
    return files


def candidate_versions(packages) -> dict:
    """{package: version the host's apt would install}; ImageError naming unknown packages."""
    out = _run(["apt-cache", "policy", *packages]).stdout
    versions, current = {}, None
    for line in out.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = line[:-1]
        elif current and line.strip().startswith("Candidate:"):
            v = line.split(":", 1)[1].strip()
            if v and v != "(none)":
                versions[current] = v
    unknown = [p for p in packages if p not in versions]
    if unknown:
        raise ImageError(f"lab_image_packages: no Debian package {', '.join(unknown)} "
                         "(run apt-get update, or check the name)")
    return versions


def content_key(versions: dict, size_mb: int) -> str:
    blob = json.dumps({"suite": SUITE, "packages": sorted(f"{p}={v}" for p, v in versions.items()),
                       "size_mb": size_mb, "builder": BUILDER_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def image_dir(cache_dir: str, key: str) -> str:
    return os.path.join(cache_dir, f"debian12-{key}")


def files(cache_dir: str, key: str) -> dict:
    d = image_dir(cache_dir, key)
    return {"base": os.path.join(d, "base.qcow2"), "kernel": os.path.join(d, "vmlinuz"),
            "initrd": os.path.join(d, "initrd.img"), "manifest": os.path.join(d, "manifest.json")}


def present(cache_dir: str, key: str) -> bool:
    """The image for ``key`` is really there: kernel, initrd, and a qcow2 qemu-img can read."""
    f = files(cache_dir, key)
    if not all(os.path.isfile(f[k]) for k in ("base", "kernel", "initrd")):
        return False
    p = _run(["qemu-img", "info", "--output=json", f["base"]], check=False)
    try:
        return p.returncode == 0 and json.loads(p.stdout).get("format") == "qcow2"
    except ValueError:
        return False


def host_sources() -> list:
    """The host's apt sources files: the image gets packages from the same mirror and suites
    (updates, security) whose versions ``candidate_versions`` read."""
    out = []
    if os.path.isfile("/etc/apt/sources.list") and os.path.getsize("/etc/apt/sources.list"):
        out.append("/etc/apt/sources.list")
    d = "/etc/apt/sources.list.d"
    if os.path.isdir(d):
        out += sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith((".list", ".sources")))
    return out


def _configure(root: str) -> None:
    """What every guest needs before its first boot, independent of the node: the root file
    system, a serial console, networkd with systemd-network-generator (the node's address and
    MTU come from ``ip=`` on the kernel command line), root's SSH key from ``l4lb.ssh_key=``,
    sshd by key only, and host keys made at first boot (never shared between guests)."""
    with open(os.path.join(root, "etc/fstab"), "w", encoding="ascii") as f:
        f.write("/dev/vda / ext4 errors=remount-ro 0 1\n")
    with open(os.path.join(root, "etc/hostname"), "w", encoding="ascii") as f:
        f.write("l4lb-node\n")
    os.makedirs(os.path.join(root, "etc/ssh/sshd_config.d"), exist_ok=True)
    with open(os.path.join(root, "etc/ssh/sshd_config.d/l4lb.conf"), "w", encoding="ascii") as f:
        f.write("PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                "PermitRootLogin prohibit-password\n")
    for name in os.listdir(os.path.join(root, "etc/ssh")):
        if name.startswith("ssh_host_"):
            os.unlink(os.path.join(root, "etc/ssh", name))
    unit = os.path.join(root, "etc/systemd/system/l4lb-ssh-hostkeys.service")
    with open(unit, "w", encoding="ascii") as f:
        f.write("[Unit]\nDescription=SSH host keys made on this guest's first boot\n"
                "Before=ssh.service\nConditionPathExists=!/etc/ssh/ssh_host_ed25519_key\n\n"
                "[Service]\nType=oneshot\nExecStart=/usr/bin/ssh-keygen -A\n\n"
                "[Install]\nWantedBy=multi-user.target\n")
    script = os.path.join(root, "usr/local/sbin/l4lb-ssh-key")
    os.makedirs(os.path.dirname(script), exist_ok=True)
    with open(script, "w", encoding="ascii") as f:
        f.write(SSH_KEY_SCRIPT)
    os.chmod(script, 0o755)
    with open(os.path.join(root, "etc/systemd/system/l4lb-ssh-key.service"), "w", encoding="ascii") as f:
        f.write(SSH_KEY_UNIT)
    wants = os.path.join(root, "etc/systemd/system/multi-user.target.wants")
    os.makedirs(wants, exist_ok=True)
    sysinit = os.path.join(root, "etc/systemd/system/sysinit.target.wants")
    os.makedirs(sysinit, exist_ok=True)
    for where, link, target in (
            (wants, "l4lb-ssh-hostkeys.service", "/etc/systemd/system/l4lb-ssh-hostkeys.service"),
            (wants, "l4lb-ssh-key.service", "/etc/systemd/system/l4lb-ssh-key.service"),
            (wants, "systemd-networkd.service", "/lib/systemd/system/systemd-networkd.service"),
            (sysinit, "systemd-network-generator.service",
             "/lib/systemd/system/systemd-network-generator.service")):
        path = os.path.join(where, link)
        if not os.path.lexists(path):
            os.symlink(target, path)
    # nginx is started by the backend role with the lab's own configuration
    nginx = os.path.join(wants, "nginx.service")
    if os.path.lexists(nginx):
        os.unlink(nginx)
    os.makedirs(os.path.join(root, "root/.ssh"), mode=0o700, exist_ok=True)


def _newest(root: str, pattern: str) -> str:
    boot = os.path.join(root, "boot")
    found = sorted(n for n in os.listdir(boot) if n.startswith(pattern))
    if not found:
        raise ImageError(f"the image has no /boot/{pattern}* (is linux-image-cloud-amd64 in it?)")
    return os.path.join(boot, found[-1])


def build(cache_dir: str, key: str, versions: dict, size_mb: int, log=None) -> dict:
    """Build the image for ``key`` (mmdebstrap -> configure -> mkfs.ext4 -d -> qcow2), in a
    temporary directory beside the cache, moved into place only when complete."""
    os.makedirs(cache_dir, mode=0o755, exist_ok=True)
    t0 = time.monotonic()
    work = tempfile.mkdtemp(prefix=".build-", dir=cache_dir)
    try:
        root = os.path.join(work, "root")
        include = ",".join(f"{p}={v}" for p, v in sorted(versions.items()))
        _run(["mmdebstrap", "--variant=apt", "--mode=root", f"--include={include}", SUITE, root,
              *host_sources()])
        _configure(root)
        out = os.path.join(work, "out")
        os.makedirs(out)
        shutil.copy2(_newest(root, "vmlinuz-"), os.path.join(out, "vmlinuz"))
        shutil.copy2(_newest(root, "initrd.img-"), os.path.join(out, "initrd.img"))
        raw = os.path.join(work, "root.img")
        _run(["mkfs.ext4", "-q", "-F", "-L", "l4lbroot", "-d", root, raw, f"{size_mb}M"])
        _run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, os.path.join(out, "base.qcow2")])
        manifest = {"key": key, "suite": SUITE, "packages": versions, "size_mb": size_mb,
                    "builder": BUILDER_VERSION, "built_s": round(time.monotonic() - t0, 1)}
        with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1, sort_keys=True)
        final = image_dir(cache_dir, key)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(out, final)
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure(cache_dir: str, packages=(), size_mb: int = 3072, state: str = "present",
           check_mode: bool = False) -> dict:
    """state present: the image for today's content key exists (built if not); absent: every
    image this builder made under ``cache_dir`` is removed (only debian12-* directories)."""
    if state not in ("present", "absent"):
        raise ImageError(f"state: {state!r} is not present or absent")
    if state == "absent":
        ours = sorted(n for n in os.listdir(cache_dir) if n.startswith(("debian12-", ".build-"))) \
            if os.path.isdir(cache_dir) else []
        if ours and not check_mode:
            for n in ours:
                shutil.rmtree(os.path.join(cache_dir, n), ignore_errors=True)
        return {"changed": bool(ours), "removed": ours,
                "diff": {"before": {"images": ours}, "after": {"images": []}}}
    wanted = validate(packages, size_mb, cache_dir)
    versions = candidate_versions(wanted)
    key = content_key(versions, size_mb)
    have = present(cache_dir, key)
    result = {"changed": not have, "key": key, **files(cache_dir, key),
              "diff": {"before": {"image": key if have else None}, "after": {"image": key}}}
    if have or check_mode:
        return result
    result["manifest"] = build(cache_dir, key, versions, size_mb)
    return result
