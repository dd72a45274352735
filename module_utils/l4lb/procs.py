# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Processes on this node: running a command to its end (:func:`run`), starting one that
outlives the task that starts it (a capture, the GC loop), the /proc readings every module judges
processes by (network namespace, command line, state), with one way to stop them, and calling
code in another network namespace.

Ansible's ``module.run_command`` waits for its command; these processes must keep running after
the module returns, in their own session (so the connection's end does not signal them), with
their output in a log file (never on the module's pipes, which the connection waits on).
A process is judged by what runs (its command line, its network namespace), never by a pid file.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections import namedtuple

CLONE_NEWNET = 0x40000000

# From /proc/<pid>/stat: state letter ("Z" zombie), parent pid, start time in clock ticks since boot.
ProcStat = namedtuple("ProcStat", "state ppid starttime")


def run(argv, check=True, input_=None, error=RuntimeError):
    """Run ``argv`` to its end, output captured as text; returns the CompletedProcess. When it
    fails and ``check``, raises ``error`` (the caller's exception class) naming the command, its
    exit code and its stderr (or stdout; the last 2000 characters)."""
    p = subprocess.run(argv, input=input_, capture_output=True, text=True, check=False)
    if check and p.returncode != 0:
        raise error(f"{' '.join(argv)} failed (rc={p.returncode}): "
                    f"{(p.stderr or p.stdout).strip()[-2000:]}")
    return p


def spawn_detached(argv, log_path):
    """Start ``argv`` in a new session, stdin from /dev/null, stdout and stderr appended to
    ``log_path``; returns the Popen (its pid, ``poll()``)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                close_fds=True, start_new_session=True)


def run_daemonizing(argv, timeout):
    """Run a command that daemonises (nginx): returns (exit code, its output). The daemon keeps
    the launcher's stdout and stderr, so they go to a file, never to a pipe (run_command's, or
    the module's, which the connection waits on). Killed after ``timeout`` seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "output.log")
        proc = spawn_detached(argv, log)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        with open(log, "rb") as f:
            return rc, f.read().decode(errors="replace").strip()


def pids():
    """Every pid in /proc (this pid namespace's view)."""
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def netns_ino(pid="self"):
    """The inode of ``pid``'s network namespace, or None when it is gone (or not ours to read)."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def cmdline(pid) -> list:
    """``pid``'s argv ([] when it is gone or a kernel thread)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def stat(pid):
    """ProcStat(state, ppid, starttime) from /proc/<pid>/stat, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            rest = f.read().rsplit(")", 1)[1].split()  # the command name may hold blanks and ')'
        return ProcStat(rest[0], int(rest[1]), int(rest[19]))
    except (OSError, IndexError, ValueError):
        return None


def alive(pid) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    st = stat(pid)
    return st is not None and st.state != "Z"


def boot_time() -> int:
    """The boot time in seconds since the epoch (``btime`` in /proc/stat); 0 when unknown."""
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            if line.startswith("btime "):
                return int(line.split()[1])
    return 0


def pids_in_netns(inodes) -> set:
    """Pids (other than this one) whose network namespace inode is one of ``inodes``."""
    me = os.getpid()
    return {pid for pid in pids() if pid != me and netns_ino(pid) in inodes}


def terminate(pid_list, steps=((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0))) -> set:
    """Signal every pid with each step's signal in turn, waiting up to the step's seconds for them
    to end before the next step; returns the pids still alive after the last step."""
    left = set(pid_list)
    for sig, wait_s in steps:
        for pid in list(left):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                left.discard(pid)
        deadline = time.monotonic() + wait_s
        while left:
            left = {pid for pid in left if alive(pid)}
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if not left:
            break
    return left


def _enter_netns(ns_path):
    """Move the calling thread into the network namespace at ``ns_path``, or into a new one."""
    libc = ctypes.CDLL(None, use_errno=True)
    if ns_path is None:
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
        return
    fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({ns_path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def in_netns(func, ns_path=None):
    """``func()`` called in the network namespace at ``ns_path`` (a ``/run/netns/<name>`` file),
    or in a new, empty one that vanishes afterwards (with every link made in it) when None; returns
    what ``func`` returns, raises what it raises.

    ``func`` runs on a thread of its own: setns and unshare move only the calling thread, so this
    process and its other threads stay where they are, and the thread ends with ``func``. Sockets
    it opens (netlink: libbpf's XDP attach, ``socket.if_nametoindex``) and commands it starts are
    in that namespace; the mount namespace is the caller's, so bpffs pins stay visible."""
    box = {}

    def body():
        try:
            _enter_netns(ns_path)
            box["result"] = func()
        except BaseException as exc:  # handed to the caller's thread, raised there
            box["error"] = exc

    thread = threading.Thread(target=body, name="in_netns", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")
