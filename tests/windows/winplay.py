"""Running the playbooks with inventory/windows in tests: never towards a real address."""

from __future__ import annotations

import os
import subprocess

from labtest import ANSIBLE_PLAYBOOK, REPO

# Every playbook run of these tests points every node at 127.0.0.1, port 1 (closed): whatever a
# run does, no connection leaves this machine (the seed's addresses are public ones).
NOWHERE = {"ansible_host": "127.0.0.1", "ansible_port": "1", "ansible_winrm_connection_timeout": "5",
           "ansible_winrm_operation_timeout_sec": "5", "ansible_winrm_read_timeout_sec": "6"}


def playbook(args, extra_vars=None, env=None, timeout=180, inventory=None):
    """ansible-playbook with inventory/windows (or ``inventory``); returns (rc, stdout + stderr)."""
    e = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
             ANSIBLE_FORCE_COLOR="0", L4LB_WINRM_USER="", L4LB_WINRM_PASSWORD="")
    e.update(env or {})
    argv = [ANSIBLE_PLAYBOOK, "-i", inventory or os.path.join(REPO, "inventory", "windows"), *args]
    for k, v in dict(extra_vars or {}, **NOWHERE).items():
        argv += ["-e", f"{k}={v}"]
    p = subprocess.run(argv, cwd=REPO, env=e, capture_output=True, text=True, timeout=timeout, check=False)
    return p.returncode, p.stdout + p.stderr
