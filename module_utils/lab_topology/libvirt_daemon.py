# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's own libvirtd, confined to the lab's host namespace (issue 8, "confined mode").

For tests, and for users who want the host untouched, the libvirt lab does not use the system's
libvirtd: it runs its own inside the network namespace ``<prefix>-host`` (which plays the seed's
host and client). libvirt creates its networks' bridges, taps and firewall rules in the network
namespace of the daemon, so the root namespace gets no link, address, route or rule.

Confinement, as far as it goes without a container:

* network: the daemon runs under ``ip netns exec <prefix>-host``;
* files: ``ip netns exec`` also gives it a private mount namespace (propagation from the host
  only), where libvirt's fixed directories are bind mounts of directories below
  ``<state_dir>/libvirtd``::

      /etc/libvirt       <- <state_dir>/libvirtd/etc    (libvirtd.conf, qemu.conf, definitions)
      /var/lib/libvirt   <- <state_dir>/libvirtd/lib
      /var/cache/libvirt <- <state_dir>/libvirtd/cache  (qemu capabilities)
      /var/log/libvirt   <- <state_dir>/libvirtd/log    (qemu/<domain>.log)
      /run/libvirt       <- <state_dir>/libvirtd/run    (domain and network status)

  A directory the host does not have (a host without libvirt-daemon-system has none but
  /etc/libvirt) cannot be a mount point without creating it on the host, so its parent is
  *shadowed* in the private namespace: a tmpfs over the parent holding bind mounts of every
  entry the parent had, plus the new directory. The daemon sees the host's files as they are
  (writes go to the host), but a top-level entry the host adds to a shadowed parent
  (``/run``, ``/var/lib``, ...) after the start is not seen by the daemon: disk images and
  kernels a domain uses must be in directories that exist before the start (or not in a shadowed
  parent, e.g. ``/var/tmp/...`` or ``<state_dir>``);
* sockets: ``unix_sock_dir`` is ``<state_dir>/libvirt``, mode 0700, visible from the host, so the
  client URI is ``qemu+unix:///system?socket=<state_dir>/libvirt/libvirt-sock``; the pid file is
  ``<state_dir>/libvirtd/libvirtd.pid`` (never ``/run/libvirtd.pid`` of a system daemon);
* qemu: runs as root (``qemu.conf``: no ``libvirt-qemu`` user is needed, so no
  libvirt-daemon-system), no cgroups, no security driver, no per-domain mount namespace, and
  ``stdio_handler = "file"``: qemu's output goes to the log directory without virtlogd, so no
  virtlogd runs.

So the daemon never collides with a system libvirtd, and nothing is left in /etc/libvirt,
/var/lib/libvirt or /run/libvirt of the host. Everything is judged by what really runs
(``l4lb.procs``): the daemon is the process whose command line is libvirtd with this state
dir's ``--config``; it is confined when its network namespace is the inode of
``/run/netns/<prefix>-host``; the processes it started (qemu, dnsmasq, ...) are the ones whose
mount table holds this state dir's bind at /etc/libvirt. ``stop`` destroys the domains and
networks through ``virsh`` (so libvirt removes its bridges, taps and rules), kills by pid
what is left, and removes the directories.

What a provider using this daemon should know (checked with libvirt 9.0, qemu 7.2 TCG, a
Debian 12 guest from ``lab_image``): an isolated network (no ``<forward>``, ``<dns enable='no'/>``,
no DHCP) with ``<ip address='20.1.1.100' prefix='24'/>`` and ``<route address='40.1.1.1'
prefix='32' gateway='20.1.1.1'/>`` works, its bridge, address, route and iptables rules in
``<prefix>-host``; the network's ``<mtu>`` is given to the bridge at creation, which the kernel
does not count as set by the user, so the first tap with ``<mtu size='1520'/>`` raises the bridge
(the host, playing the client) to 1520: set it again (``ip -n <prefix>-host link set <bridge> mtu
1500``) after the network starts and it stays. Disks, kernels and serial logs of domains must be
in directories that exist before the daemon starts (see "shadowed" above).

Standard library only; imported as ``ansible.module_utils.lab_topology.libvirt_daemon`` and by
tests as ``lab_topology.libvirt_daemon``.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import shutil
import subprocess
import time

from ..l4lb import procs
from .model import PROTECTED_DIRS

NETNS_DIR = "/run/netns"
HOST_NS_SUFFIX = "-host"
# (name below <state_dir>/libvirtd, the fixed directory libvirtd and its drivers use)
DIRS = (("etc", "/etc/libvirt"), ("lib", "/var/lib/libvirt"), ("cache", "/var/cache/libvirt"),
        ("log", "/var/log/libvirt"), ("run", "/run/libvirt"))
TOOLS = ("ip", "libvirtd", "virsh", "mount")
START_TIMEOUT_S = 30.0
QEMU_ACCOUNT = "libvirt-qemu"  # Debian's build-time qemu user and group
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

LIBVIRTD_CONF = """# The L4LB lab's own libvirtd (module_utils/lab_topology/libvirt_daemon.py); not the system's.
unix_sock_dir = "{sock_dir}"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
unix_sock_admin_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:stderr"
"""

QEMU_CONF = """# The L4LB lab's own libvirtd: qemu as root (no libvirt-qemu user needed), nothing outside the
# lab's directories: no cgroups, no security driver, no virtlogd (stdio_handler = "file").
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""

# Runs under `ip netns exec` (a private mount namespace, slave of the host's): libvirt's fixed
# directories become bind mounts of the state dir's, then it execs libvirtd (same pid).
START_SH = r"""#!/bin/sh
set -eu
ROOT={root}
shadow() {{
  # $1 becomes a tmpfs holding bind mounts of every entry it had, so directories can be made in it
  dir=$1
  keep=$ROOT/shadow/$(printf '%s' "$dir" | tr / _)
  mkdir -p "$keep"
  mount --rbind "$dir" "$keep"
  cd "$keep"
  mount -t tmpfs -o mode=0755 l4lb-shadow "$dir"
  for e in * .[!.]* ..?*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    [ -e "$dir/$e" ] || [ -L "$dir/$e" ] && continue  # made meanwhile (mount's /run/mount)
    if [ -L "$e" ]; then cp -P "$e" "$dir/$e"
    elif [ -d "$e" ]; then mkdir "$dir/$e"; mount --no-canonicalize --rbind "$e" "$dir/$e"
    else : > "$dir/$e"; mount --no-canonicalize --bind "$e" "$dir/$e"
    fi
  done
  cd /
}}
place() {{
  src=$1 target=$2
  if [ ! -d "$target" ]; then
    parent=$(dirname "$target")
    while [ ! -d "$parent" ]; do parent=$(dirname "$parent"); done
    shadow "$parent"
    mkdir -p "$target"
  fi
  mount --bind "$src" "$target"
}}
{places}
{accounts}
exec {libvirtd} --config {conf} --pid-file {pid_file}
"""


class DaemonError(Exception):
    """Bad input, a missing tool, or a daemon that would not start or stop (the message says which)."""


# -- names and paths ----------------------------------------------------------------------------

def netns_name(prefix: str) -> str:
    """The lab's host namespace: it holds the daemon, the networks' bridges and the taps."""
    return f"{prefix}{HOST_NS_SUFFIX}"


def paths(prefix: str, state_dir: str) -> dict:
    root = os.path.join(state_dir, "libvirtd")
    sock_dir = os.path.join(state_dir, "libvirt")
    out = {"root": root, "sock_dir": sock_dir, "socket": os.path.join(sock_dir, "libvirt-sock"),
           "conf": os.path.join(root, "etc", "libvirtd.conf"),
           "qemu_conf": os.path.join(root, "etc", "qemu.conf"),
           "pid_file": os.path.join(root, "libvirtd.pid"), "log": os.path.join(root, "libvirtd.log"),
           "script": os.path.join(root, "start.sh"), "netns": netns_name(prefix),
           "netns_path": os.path.join(NETNS_DIR, netns_name(prefix))}
    for name, _fixed in DIRS:
        out[f"dir_{name}"] = os.path.join(root, name)
    return out


def uri(prefix: str, state_dir: str) -> str:
    """What ``libvirt.open()`` (and ``virsh -c``) takes to reach this daemon."""
    return f"qemu+unix:///system?socket={paths(prefix, state_dir)['socket']}"


def validate(prefix, state_dir, tools=TOOLS) -> None:
    """DaemonError naming every bad argument and missing tool; changes nothing."""
    problems = []
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        problems.append(f"lab_prefix {prefix!r} must be a non-empty name of letters, digits, '_', '.', '-'")
    if not isinstance(state_dir, str) or not os.path.isabs(state_dir):
        problems.append(f"lab_state_dir {state_dir!r} must be an absolute path")
    elif os.path.normpath(state_dir) in PROTECTED_DIRS or os.path.normpath(state_dir).count("/") < 2:
        problems.append(f"lab_state_dir {state_dir!r} is too broad a directory for the lab to own; "
                        "use a dedicated one such as /run/<lab_prefix>")
    elif re.search(r"[\s\\'\"]", state_dir):
        problems.append(f"lab_state_dir {state_dir!r} must not hold blanks, quotes or backslashes "
                        "(it is matched in /proc/<pid>/mountinfo and libvirtd.conf)")
    elif len(paths("x", state_dir)["socket"]) > 100:
        problems.append(f"lab_state_dir {state_dir!r} is too long for a unix socket path below it")
    missing = [t for t in tools if not _which(t)]
    if missing:
        problems.append(f"requirement: {', '.join(missing)} not found (scripts/setup.sh installs them)")
    if problems:
        raise DaemonError("; ".join(problems))


def _which(tool):
    return shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin")


def _run(argv):
    return procs.run(argv, error=DaemonError)


# -- what is really there -------------------------------------------------------------------------

def netns_inode(prefix: str):
    """The inode of ``<prefix>-host``'s network namespace, or None when there is no such namespace."""
    path = os.path.join(NETNS_DIR, netns_name(prefix))
    try:
        ino = os.stat(path).st_ino
    except OSError:
        return None
    # An unmounted leftover file in /run/netns is not a namespace.
    return ino if ino != os.lstat(NETNS_DIR).st_ino and _is_nsfs(path) else None


def _is_nsfs(path):
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            return any(line.split()[4] == path and " - nsfs " in line for line in f)
    except OSError:
        return False


def daemon_pids(prefix: str, state_dir: str) -> list:
    """Live libvirtd processes started with this state dir's configuration (anywhere), without
    the daemon's own forks: libvirtd forks before it execs qemu (its capability probe, a
    domain's start), and such a fork, until it execs, shows the daemon's argv. A fork is one of
    the daemon's children, not a second daemon."""
    conf = paths(prefix, state_dir)["conf"]
    found = {}
    for pid in procs.pids():
        argv = procs.cmdline(pid)
        st = procs.stat(pid)
        if argv and os.path.basename(argv[0]) == "libvirtd" and conf in argv and st and st.state != "Z":
            found[pid] = st.ppid
    return sorted(pid for pid, ppid in found.items() if ppid not in found)


def _mountinfo_marks(pid, etc_dir):
    """True when ``pid``'s mount table has this state dir's bind at /etc/libvirt."""
    try:
        with open(f"/proc/{pid}/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[4] == "/etc/libvirt" and fields[3] != "/" \
                        and etc_dir.endswith(fields[3]):
                    return True
    except OSError:
        pass
    return False


def owned_pids(prefix: str, state_dir: str) -> list:
    """Every live process in this daemon's confinement: the daemon, and what it started (qemu,
    dnsmasq, ...), judged by the mount table (one read per mount namespace)."""
    etc_dir = paths(prefix, state_dir)["dir_etc"]
    by_mnt = {}
    me = os.getpid()
    for pid in procs.pids():
        if pid == me:
            continue
        try:
            ino = os.stat(f"/proc/{pid}/ns/mnt").st_ino
        except OSError:
            continue
        by_mnt.setdefault(ino, []).append(pid)
    out = []
    for members in by_mnt.values():  # one mount namespace, one mount table
        if _mountinfo_marks(members[0], etc_dir):
            out += [p for p in members if procs.alive(p)]
    return sorted(set(out) | set(daemon_pids(prefix, state_dir)))


def _listening(pid, path) -> bool:
    """True when ``pid``'s network namespace has a listening unix socket bound to ``path``, read
    from /proc/<pid>/net/unix (no connection: the daemon logs every client that leaves)."""
    try:
        with open(f"/proc/{pid}/net/unix", encoding="utf-8", errors="replace") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                # Num RefCount Protocol Flags Type St Inode Path; Flags 0x10000: accepting
                if len(fields) >= 8 and fields[7] == path and int(fields[3], 16) & 0x10000:
                    return True
    except (OSError, ValueError):
        pass
    return False


def status(prefix: str, state_dir: str) -> dict:
    """What is there now (read from /proc and the file system; changes nothing).

    ``running``: exactly one libvirtd of this state dir is alive, in ``<prefix>-host``, and
    listens on its socket; ``children``: what it started (qemu, ...); ``stray``: a daemon of
    this state dir outside the namespace, or children left by a daemon that is gone."""
    p = paths(prefix, state_dir)
    ns_ino = netns_inode(prefix)
    daemons = daemon_pids(prefix, state_dir)
    confined = [pid for pid in daemons if ns_ino is not None and procs.netns_ino(pid) == ns_ino]
    owned = owned_pids(prefix, state_dir)
    sock = len(confined) == 1 and os.path.exists(p["socket"]) and _listening(confined[0], p["socket"])
    running = len(confined) == 1 and len(daemons) == 1 and sock
    children = [pid for pid in owned if pid not in daemons]
    stray = [pid for pid in daemons if pid not in confined] + ([] if confined else children)
    return {"running": running, "pid": confined[0] if len(confined) == 1 else None,
            "daemon_pids": daemons, "children": children, "stray": sorted(stray),
            "netns": p["netns"], "netns_exists": ns_ino is not None, "socket": p["socket"],
            "socket_listening": sock, "dirs": [d for d in (p["root"], p["sock_dir"]) if os.path.isdir(d)],
            "uri": uri(prefix, state_dir)}


# -- the namespace ------------------------------------------------------------------------------

def netns_create(prefix: str, check_mode: bool = False) -> bool:
    """``<prefix>-host`` exists with lo up; True when it had to be made."""
    if netns_inode(prefix) is not None:
        return False
    if not check_mode:
        ns = netns_name(prefix)
        _run(["ip", "netns", "add", ns])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
    return True


def netns_remove(prefix: str, check_mode: bool = False) -> bool:
    """``<prefix>-host`` is gone (its links with it); True when there was one."""
    ns = netns_name(prefix)
    if netns_inode(prefix) is None and not os.path.lexists(os.path.join(NETNS_DIR, ns)):
        return False
    if not check_mode:
        _run(["ip", "netns", "delete", ns])
    return True


# -- start and stop ---------------------------------------------------------------------------

def _write(path, text, mode=0o600):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _accounts(p):
    """libvirt's privileged qemu driver resolves its build's user and group (Debian:
    ``libvirt-qemu``, made by libvirt-daemon-system) before it reads qemu.conf, which then says
    root. Where the host lacks them, the daemon's private mount namespace gets copies of
    /etc/passwd and /etc/group with them added (a free id): the host's files stay as they are.
    Returns [(copy, file it is bound over)]."""
    out = []
    for db, getter, line in (("passwd", pwd.getpwnam, "{n}:x:{i}:{i}:L4LB confined libvirtd:/nonexistent:/usr/sbin/nologin"),
                             ("group", grp.getgrnam, "{n}:x:{i}:")):
        try:
            getter(QEMU_ACCOUNT)
            continue
        except KeyError:
            pass
        with open(f"/etc/{db}", encoding="utf-8") as f:
            text = f.read()
        used = {int(fields[2]) for fields in (ln.split(":") for ln in text.splitlines())
                if len(fields) > 2 and fields[2].isdigit()}
        free = next(i for i in range(64055, 65534) if i not in used)
        copy = os.path.join(p["root"], db)
        _write(copy, text.rstrip("\n") + "\n" + line.format(n=QEMU_ACCOUNT, i=free) + "\n", mode=0o644)
        out.append((copy, f"/etc/{db}"))
    return out


def _prepare(p):
    # lib/dnsmasq: the network driver writes each network's MAC list there at a domain's start
    # and only makes the directory when dnsmasq is installed (the lab's networks need none)
    for d in [p["root"], p["sock_dir"]] + [p[f"dir_{name}"] for name, _fixed in DIRS] + \
            [os.path.join(p["dir_lib"], "dnsmasq")]:
        os.makedirs(d, mode=0o700, exist_ok=True)
    _write(p["conf"], LIBVIRTD_CONF.format(sock_dir=p["sock_dir"]))
    _write(p["qemu_conf"], QEMU_CONF)
    places = "\n".join(f"place {shlex.quote(p[f'dir_{name}'])} {fixed}" for name, fixed in DIRS)
    accounts = "\n".join(f"mount --bind {shlex.quote(path)} {fixed}" for path, fixed in _accounts(p))
    _write(p["script"], START_SH.format(root=shlex.quote(p["root"]), places=places, accounts=accounts,
                                        libvirtd=shlex.quote(_which("libvirtd")),
                                        conf=shlex.quote(p["conf"]), pid_file=shlex.quote(p["pid_file"])),
           mode=0o700)


def _log_tail(path, n=2000):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace").strip()[-n:]
    except OSError:
        return ""


def start(prefix: str, state_dir: str, check_mode: bool = False, timeout: float = START_TIMEOUT_S) -> dict:
    """The confined daemon runs (started if not; a stale one of this state dir stopped first),
    ``<prefix>-host`` made if missing. Returns {changed, uri, pid, netns_created}."""
    validate(prefix, state_dir)
    now = status(prefix, state_dir)
    result = {"changed": False, "uri": now["uri"], "pid": now["pid"], "netns": now["netns"],
              "netns_created": False}
    if now["running"] and not now["stray"]:
        return result
    result["changed"] = True
    if check_mode:
        result["netns_created"] = not now["netns_exists"]
        return result
    if now["daemon_pids"] or now["stray"] or now["dirs"]:
        stop(prefix, state_dir)
    result["netns_created"] = netns_create(prefix)
    p = paths(prefix, state_dir)
    _prepare(p)
    proc = procs.spawn_detached(["ip", "netns", "exec", p["netns"], "/bin/sh", p["script"]], p["log"])
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise DaemonError(f"libvirtd for {p['netns']} exited (rc={proc.returncode}) before it "
                              f"listened on {p['socket']}: {_log_tail(p['log'])}")
        if os.path.exists(p["socket"]) and _listening(proc.pid, p["socket"]):
            break
        if time.monotonic() > deadline:
            procs.terminate([proc.pid])
            raise DaemonError(f"libvirtd for {p['netns']} did not listen on {p['socket']} within "
                              f"{timeout:.0f} s: {_log_tail(p['log'])}")
        time.sleep(0.1)
    ino = netns_inode(prefix)
    if procs.netns_ino(proc.pid) != ino:
        procs.terminate([proc.pid])
        raise DaemonError(f"libvirtd pid {proc.pid} is not in {p['netns']} (netns inode "
                          f"{procs.netns_ino(proc.pid)}, expected {ino})")
    result["pid"] = proc.pid
    return result


def _virsh(p, *args, timeout=30):
    return subprocess.run([_which("virsh"), "-q", "-c", f"qemu+unix:///system?socket={p['socket']}", *args],
                          capture_output=True, text=True, check=False, timeout=timeout)


def _destroy_all(p):
    """Domains and networks destroyed (and undefined) through the daemon itself, so libvirt
    removes its taps, bridges and firewall rules; best effort (the kills follow)."""
    if not os.path.exists(p["socket"]) or not _which("virsh"):
        return
    try:
        for kind, destroy, undefine in (("list --all --name", "destroy", "undefine --nvram"),
                                        ("net-list --all --name", "net-destroy", "net-undefine")):
            out = _virsh(p, *kind.split())
            for name in out.stdout.split() if out.returncode == 0 else []:
                _virsh(p, destroy, name)
                _virsh(p, *undefine.split(), name)
    except subprocess.TimeoutExpired:
        pass


def _mounted_below(path):
    """Mount points at or below ``path`` in this process's mount namespace."""
    path = os.path.realpath(path).rstrip("/")
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return [m for m in (line.split()[4] for line in f) if m == path or m.startswith(path + "/")]


def stop(prefix: str, state_dir: str, remove_netns: bool = False, check_mode: bool = False) -> dict:
    """Nothing of the daemon is left: its domains and networks destroyed, the daemon and every
    process it started killed by pid, its directories removed; ``remove_netns``: the
    ``<prefix>-host`` namespace too. Returns {changed, killed, removed, netns_removed}.
    Needs only ``ip`` (a host without libvirt can still be cleaned)."""
    validate(prefix, state_dir, tools=("ip",))
    p = paths(prefix, state_dir)
    now = status(prefix, state_dir)
    pids = sorted(set(now["daemon_pids"]) | set(now["children"]) | set(now["stray"]))
    dirs = now["dirs"]
    ns_there = now["netns_exists"] and remove_netns
    result = {"changed": bool(pids or dirs or ns_there), "killed": pids, "removed": dirs,
              "netns_removed": ns_there}
    if check_mode or not result["changed"]:
        return result
    if pids:
        _destroy_all(p)
        # children first (the daemon notices and cleans up after them), then the daemon
        daemons = set(daemon_pids(prefix, state_dir))
        rest = [pid for pid in owned_pids(prefix, state_dir) if pid not in daemons]
        left = procs.terminate(rest) if rest else set()
        left |= procs.terminate(sorted(daemons | set(now["daemon_pids"])))
        left |= procs.terminate(owned_pids(prefix, state_dir))
        for pid in pids:  # a daemon this process started is its child: reap it (no zombie)
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        if left:
            raise DaemonError(f"processes of {p['netns']}'s libvirtd still alive after SIGKILL: {sorted(left)}")
    for d in (p["root"], p["sock_dir"]):
        if os.path.isdir(d):
            mounted = _mounted_below(d)
            if mounted:  # never remove through a bind mount of a host directory
                raise DaemonError(f"{d} has mount points in this mount namespace ({', '.join(mounted)}); "
                                  "not removing it")
            shutil.rmtree(d)
    try:
        os.rmdir(state_dir)  # only when the daemon's directories were all it held
    except OSError:
        pass
    if remove_netns:
        netns_remove(prefix)
    return result


__all__ = ["DIRS", "DaemonError", "daemon_pids", "netns_create", "netns_inode", "netns_name",
           "netns_remove", "owned_pids", "paths", "start", "status", "stop", "uri", "validate"]
