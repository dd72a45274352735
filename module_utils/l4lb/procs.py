# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Starting a process that outlives the task that starts it (a capture, the GC loop).

Ansible's ``module.run_command`` waits for its command; these processes must keep running after
the module returns, in their own session (so the connection's end does not signal them), with
their output in a log file (never on the module's pipes, which the connection waits on).
"""

from __future__ import annotations

import subprocess


def spawn_detached(argv, log_path):
    """Start ``argv`` in a new session, stdin from /dev/null, stdout and stderr appended to
    ``log_path``; returns the Popen (its pid, ``poll()``)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                close_fds=True, start_new_session=True)
