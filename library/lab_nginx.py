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
notes:
  - Supports check mode.
  - The configuration is tested (C(nginx -t)) before a start or reload.
"""

EXAMPLES = r"""
- name: nginx runs in the backend's namespace
  lab_nginx:
    conf: /run/l4lb/win1/nginx/nginx.conf
    prefix: /run/l4lb/win1/nginx
    pid_file: /run/l4lb/win1/nginx/nginx.pid

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
"""

import os
import signal
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.l4lb import procs


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
        if not ws:
            return False
        hz = os.sysconf("SC_CLK_TCK")
        newest = procs.boot_time() + ws[-1][0] / hz
        # btime is whole seconds: allow for its rounding.
        return os.stat(self.conf).st_mtime > newest + 1.5

    def bin(self, module):
        """The nginx executable, found as Ansible finds one (fails the task when missing)."""
        return module.get_bin_path(self.binary, required=True)

    def test(self, module):
        rc, out, err = module.run_command([self.bin(module), "-t", "-q", "-c", self.conf, "-p", self.prefix])
        if rc != 0:
            module.fail_json(msg=f"nginx -t rejects {self.conf}: {err.strip() or out.strip()}")

    def start(self, module):
        self.test(module)
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

    def reload(self, module, pid):
        self.test(module)
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


def main():
    module = AnsibleModule(
        argument_spec=dict(
            conf=dict(type="path", required=True),
            prefix=dict(type="path", required=True),
            pid_file=dict(type="path", required=True),
            state=dict(type="str", choices=["started", "reloaded", "stopped"], default="started"),
            binary=dict(type="str", default="nginx"),
            timeout=dict(type="float", default=10.0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    inst = Instance(p)
    if p["state"] != "stopped" and not os.path.isfile(p["conf"]) and not module.check_mode:
        module.fail_json(msg=f"conf {p['conf']} does not exist")
    pid = inst.master()
    action = "none"
    if p["state"] == "stopped":
        if pid:
            action = "stop"
            if not module.check_mode:
                inst.stop(module, pid)
                pid = None
    elif not pid:
        action = "start"
        if not module.check_mode:
            pid = inst.start(module)
    elif p["state"] == "reloaded" or inst.stale(pid):
        action = "reload"
        if not module.check_mode:
            inst.reload(module, pid)
    workers = [w[1] for w in inst.workers(pid)] if pid else []
    module.exit_json(changed=action != "none", action=action, pid=pid, workers=workers)


if __name__ == "__main__":
    main()
