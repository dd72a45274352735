#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: one private nginx instance per lab node (its own config, pid and logs)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lab_nginx
short_description: Start, reload or stop a private nginx instance in the task's network namespace
description:
  - Runs C(nginx -c <conf> -p <prefix>) in the network namespace the task runs in (with the
    C(netns) connection, the lab node's). The instance has its own configuration, pid file and
    logs; the system's nginx service is never touched.
  - The instance counts as running only when the process named by I(pid_file) is alive, is an
    nginx master started with I(conf), and lives in this network namespace (its
    C(/proc/<pid>/ns/net) is ours). Anything else is "not running"; a pid file is never trusted
    on its own.
  - With I(state=started), a running instance whose newest worker is older than the
    configuration file (a change whose reload was missed) is reloaded.
  - With I(config), the module owns the instance's files too - the directories C(<prefix>),
    C(logs/), C(tmp/) and C(html/) (root, 0755), and I(conf) (root, 0644), written only when its
    content differs, through a temporary file in I(conf)'s directory that C(nginx -t) must accept
    before it is moved into place (atomically). A running instance whose configuration this task
    changed is reloaded in the same task, so no handler is needed and a play that dies between
    the write and the reload leaves nothing pending (the stale check above would catch it anyway).
  - With I(bulk_kib), C(<prefix>/html/bulk.bin) is the first I(bulk_kib) KiB of the known content
    the bulk download is checked against (line I(i) is I(i) as 63 decimal digits and a newline;
    C(module_utils/lab_bulk.py), which C(lab_http_probe) compares with). It is judged by its size,
    then byte for byte, and rewritten (atomically) only when it differs.
version_added: "0.1.0"
author: L4LB lab toolkit maintainers (@l4lb-lab)
options:
  conf:
    description: The configuration file (absolute path).
    type: path
    required: true
  prefix:
    description: nginx's prefix directory (C(-p)).
    type: path
    required: true
  pid_file:
    description: The pid file the configuration's C(pid) directive names.
    type: path
    required: true
  state:
    description:
      - C(started) starts the instance when it is not running (and reloads a stale one).
      - C(reloaded) reloads a running instance (SIGHUP; new workers read the configuration) or
        starts it.
      - C(stopped) stops it gracefully (SIGQUIT, then SIGTERM, then SIGKILL).
    type: str
    choices: [started, reloaded, stopped]
    default: started
  binary:
    description: The nginx executable.
    type: str
    default: nginx
  timeout:
    description: Seconds to wait for a start, reload or stop to take effect.
    type: float
    default: 10
  config:
    description:
      - The content I(conf) must have (the role renders it on the controller with
        C(lookup('ansible.builtin.template', 'nginx.conf.j2'))). Written with every I(state),
        only when different, after C(nginx -t) accepted it; the prefix's directories are created
        first (the configuration's logs and temp paths live there).
      - Omitted, I(conf) must exist and is left as it is.
    type: str
  bulk_kib:
    description:
      - Size in KiB of the known-content file C(<prefix>/html/bulk.bin) (1..65536). C(0), the
        default, leaves that path alone.
    type: int
    default: 0
notes:
  - Supports check mode (nothing is written, started, signalled or stopped; a changed I(config)
    is not tested by C(nginx -t) then) and diff (I(conf) before and after, C(bulk.bin) and the
    directories as a summary line each, the instance's state).
  - The configuration is tested (C(nginx -t)) before a start or reload.
seealso:
  - name: nginx command-line parameters
    description: C(-c), C(-p), C(-t) and the signals used here.
    link: https://nginx.org/en/docs/switches.html
"""

EXAMPLES = r"""
- name: nginx runs in the backend's namespace
  lab_nginx:
    conf: /run/l4lb/win1/nginx/nginx.conf
    prefix: /run/l4lb/win1/nginx
    pid_file: /run/l4lb/win1/nginx/nginx.pid

- name: nginx with its files - directories, configuration (tested, then moved into place) and a 1 MiB download
  lab_nginx:
    conf: /run/l4lb/win1/nginx/nginx.conf
    prefix: /run/l4lb/win1/nginx
    pid_file: /run/l4lb/win1/nginx/nginx.pid
    config: "{{ lookup('ansible.builtin.template', 'nginx.conf.j2') }}"
    bulk_kib: 1024

- name: Reload after a configuration change
  lab_nginx:
    conf: /run/l4lb/win1/nginx/nginx.conf
    prefix: /run/l4lb/win1/nginx
    pid_file: /run/l4lb/win1/nginx/nginx.pid
    state: reloaded
"""

RETURN = r"""
pid:
  description: The master's pid after the task (null when stopped).
  returned: always
  type: int
  sample: 4242
workers:
  description: The worker pids after the task.
  returned: always
  type: list
  elements: int
action:
  description: What was done (none, start, reload, stop).
  returned: always
  type: str
  sample: start
files:
  description: What was (in check mode would be) done to the instance's files, in order.
  returned: always
  type: list
  elements: str
  sample: ["create directory /run/l4lb/win1/nginx/logs", "write /run/l4lb/win1/nginx/nginx.conf (nginx -t passed)"]
"""

import os
import signal
import stat
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.l4lb import procs
from ansible.module_utils.lab_bulk import matches as bulk_matches, write as bulk_write

BULK_KIB_MAX = 65536  # 64 MiB, lab_http_probe's largest bulk_bytes
DIR_MODE = 0o755
FILE_MODE = 0o644


class Instance:
    def __init__(self, p):
        self.conf = p["conf"]
        self.prefix = p["prefix"].rstrip("/") + "/"
        self.pid_file = p["pid_file"]
        self.binary = p["binary"]
        self.timeout = p["timeout"]
        self.netns = procs.netns_ino()

    def master(self):
        """The master's pid when our instance runs in this namespace, else None."""
        try:
            with open(self.pid_file) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        # nginx rewrites its title: "nginx: master process nginx -c <conf> -p <prefix>".
        text = " ".join(procs.cmdline(pid))
        if "nginx: master process" not in text or f" {self.conf} " not in f"{text} ":
            return None
        if procs.netns_ino(pid) != self.netns:
            return None
        return pid

    def workers(self, master):
        out = []
        for pid in procs.pids():
            st = procs.stat(pid)
            if st and st.ppid == master and "worker process" in " ".join(procs.cmdline(pid)):
                out.append((st.starttime, pid))
        return sorted(out)

    def stale(self, master):
        """True when the configuration changed after the newest worker started."""
        ws = self.workers(master)
        if not ws or not os.path.exists(self.conf):
            return False
        hz = os.sysconf("SC_CLK_TCK")
        newest = procs.boot_time() + ws[-1][0] / hz
        # btime is whole seconds: allow for its rounding.
        return os.stat(self.conf).st_mtime > newest + 1.5

    def bin(self, module):
        """The nginx executable, found as Ansible finds one (fails the task when missing)."""
        return module.get_bin_path(self.binary, required=True)

    def test(self, module, conf=None):
        """nginx -t on ``conf`` (default the instance's); fails the task with nginx's words."""
        conf = conf or self.conf
        rc, out, err = module.run_command([self.bin(module), "-t", "-q", "-c", conf, "-p", self.prefix])
        if rc != 0:
            return f"nginx -t rejects {conf}: {err.strip() or out.strip()}"
        return None

    def start(self, module, tested=False):
        if not tested:
            self._must_pass(module)
        rc, text = procs.run_daemonizing([self.bin(module), "-c", self.conf, "-p", self.prefix], self.timeout)
        if rc != 0:
            module.fail_json(msg=f"nginx -c {self.conf} failed (exit {rc}): {text}")
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            pid = self.master()
            if pid and self.workers(pid):
                return pid
            time.sleep(0.05)
        module.fail_json(msg=f"nginx -c {self.conf} did not come up within {self.timeout}s: {text}")

    def reload(self, module, pid, tested=False):
        if not tested:
            self._must_pass(module)
        before = {w[1] for w in self.workers(pid)}
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            now = {w[1] for w in self.workers(pid)}
            if now - before:
                return
            time.sleep(0.05)
        module.fail_json(msg=f"nginx (pid {pid}) did not start new workers within {self.timeout}s after SIGHUP")

    def stop(self, module, pid):
        steps = ((signal.SIGQUIT, self.timeout), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0))
        if procs.terminate([pid], steps):
            module.fail_json(msg=f"nginx (pid {pid}) did not stop")

    def _must_pass(self, module):
        err = self.test(module)
        if err:
            module.fail_json(msg=err)


class Files:
    """The instance's files (with ``config`` / ``bulk_kib``): judged by what is on disk, written
    only where it differs. ``done`` lists what was (in check mode would be) done; ``diff`` holds
    Ansible diff entries."""

    def __init__(self, module, inst):
        self.module = module
        self.inst = inst
        self.check = module.check_mode
        self.done = []
        self.diff = []

    def _attrs(self, path, mode):
        """Owner root:root and ``mode`` on an existing path."""
        st = os.lstat(path)
        wrong = []
        if stat.S_IMODE(st.st_mode) != mode:
            wrong.append(f"mode {stat.S_IMODE(st.st_mode):04o} -> {mode:04o}")
        if (st.st_uid, st.st_gid) != (0, 0):
            wrong.append(f"owner {st.st_uid}:{st.st_gid} -> 0:0")
        if wrong:
            self.done.append(f"set {path} {', '.join(wrong)}")
            if not self.check:
                os.chown(path, 0, 0)
                os.chmod(path, mode)

    def directories(self):
        prefix = self.inst.prefix.rstrip("/")
        wanted = [prefix] + [os.path.join(prefix, d) for d in ("logs", "tmp", "html")]
        conf_dir = os.path.dirname(self.inst.conf)
        if conf_dir not in wanted:
            wanted.insert(0, conf_dir)
        made = []
        for path in wanted:
            if os.path.isdir(path):
                self._attrs(path, DIR_MODE)
                continue
            if os.path.lexists(path):
                self.module.fail_json(msg=f"{path} exists and is not a directory")
            made.append(path)
            self.done.append(f"create directory {path}")
            if not self.check:
                os.makedirs(path, mode=DIR_MODE, exist_ok=True)
                os.chown(path, 0, 0)
                os.chmod(path, DIR_MODE)
        if made:
            self.diff.append({"before_header": "directories", "after_header": "directories",
                              "before": "".join(f"{d}: absent\n" for d in made),
                              "after": "".join(f"{d}: directory root 0755\n" for d in made)})

    def _tmp_beside(self, path):
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(path))
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, "wb"), tmp

    def config(self, text):
        """Returns True when the configuration's content changed (in check mode: would)."""
        conf = self.inst.conf
        try:
            with open(conf, "rb") as f:
                before = f.read().decode(errors="replace")
        except FileNotFoundError:
            before = None
        if before == text:
            self._attrs(conf, FILE_MODE)
            return False
        self.diff.append({"before_header": conf, "after_header": conf, "before": before or "", "after": text})
        if self.check:
            self.done.append(f"write {conf}")
            return True
        f, tmp = self._tmp_beside(conf)
        try:
            with f:
                f.write(text.encode())
            err = self.inst.test(self.module, tmp)
            if err:
                self.module.fail_json(msg=f"config not written: {err}")
            os.chown(tmp, 0, 0)
            self.module.atomic_move(tmp, conf, keep_dest_attrs=False)
            os.chmod(conf, FILE_MODE)  # atomic_move gives a new file the umask's mode
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        self.done.append(f"write {conf} (nginx -t passed)")
        return True

    def bulk(self, kib):
        path = os.path.join(self.inst.prefix, "html", "bulk.bin")
        size = kib * 1024
        if bulk_matches(path, size):
            self._attrs(path, FILE_MODE)
            return
        try:
            was = f"{os.path.getsize(path)} bytes, not the known content\n"
        except OSError:
            was = "absent\n"
        self.diff.append({"before_header": path, "after_header": path, "before": was,
                          "after": f"{size} bytes ({kib} KiB) of the known content\n"})
        self.done.append(f"write {path} ({kib} KiB of the known content)")
        if self.check:
            return
        f, tmp = self._tmp_beside(path)
        try:
            with f:
                bulk_write(f, size)
            os.chown(tmp, 0, 0)
            self.module.atomic_move(tmp, path, keep_dest_attrs=False)
            os.chmod(path, FILE_MODE)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            conf=dict(type="path", required=True),
            prefix=dict(type="path", required=True),
            pid_file=dict(type="path", required=True),
            state=dict(type="str", choices=["started", "reloaded", "stopped"], default="started"),
            binary=dict(type="str", default="nginx"),
            timeout=dict(type="float", default=10.0),
            config=dict(type="str"),
            bulk_kib=dict(type="int", default=0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    if not 0 <= p["bulk_kib"] <= BULK_KIB_MAX:
        module.fail_json(msg=f"bulk_kib {p['bulk_kib']} is not in 0..{BULK_KIB_MAX}")
    for key in ("conf", "prefix", "pid_file"):
        if not os.path.isabs(p[key]):
            module.fail_json(msg=f"{key} {p[key]!r} is not an absolute path")
    inst = Instance(p)
    files = Files(module, inst)
    conf_changed = False
    if p["config"] is not None:
        files.directories()
        conf_changed = files.config(p["config"])
    if p["bulk_kib"]:
        if p["config"] is None and not os.path.isdir(os.path.join(inst.prefix, "html")):
            module.fail_json(msg=f"bulk_kib: {inst.prefix}html does not exist (give config, which creates it)")
        files.bulk(p["bulk_kib"])
    if p["state"] != "stopped" and p["config"] is None and not os.path.isfile(p["conf"]) and not module.check_mode:
        module.fail_json(msg=f"conf {p['conf']} does not exist")
    pid = inst.master()
    was = f"running (pid {pid})" if pid else "not running"
    action = "none"
    # A configuration written above has been tested already (as the candidate file).
    tested = conf_changed
    if p["state"] == "stopped":
        if pid:
            action = "stop"
            if not module.check_mode:
                inst.stop(module, pid)
                pid = None
    elif not pid:
        action = "start"
        if not module.check_mode:
            pid = inst.start(module, tested)
    elif p["state"] == "reloaded" or conf_changed or inst.stale(pid):
        action = "reload"
        if not module.check_mode:
            inst.reload(module, pid, tested)
    workers = [w[1] for w in inst.workers(pid)] if pid else []
    result = dict(changed=action != "none" or bool(files.done), action=action, pid=pid, workers=workers,
                  files=files.done)
    if module._diff:
        diff = list(files.diff)
        if action != "none":
            diff.append({"before_header": "nginx instance", "after_header": "nginx instance",
                         "before": f"{was}\n", "after": f"{action}\n"})
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
