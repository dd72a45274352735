# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# Connection plugin for the embedded lab: run a node's tasks inside its Linux network namespace.
# Modelled on ansible-core's local and community.general's chroot connection plugins.

from __future__ import annotations

DOCUMENTATION = r"""
name: netns
short_description: Run tasks inside a network namespace on the Ansible controller
description:
  - Runs commands and transfers files inside a named Linux network namespace on this machine,
    with C(nsenter --net=/run/netns/NAME). Only the network namespace changes; the mount
    namespace stays the host's, so files and bpffs pins under C(/sys/fs/bpf) are shared with the
    host and with every other node (C(ip netns exec) would remount C(/sys) and hide the pins).
  - A missing namespace is a connection failure that names the namespace, so the host is
    reported UNREACHABLE.
  - Requires root (nsenter needs CAP_SYS_ADMIN).
options:
  remote_addr:
    description:
      - Name of the network namespace (a file under O(netns_dir)).
    type: string
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
  netns_dir:
    description:
      - Directory holding the named namespaces (where C(ip netns add) puts them).
    type: string
    default: /run/netns
    vars:
      - name: ansible_netns_dir
  nsenter_exe:
    description:
      - The nsenter binary.
    type: string
    default: nsenter
    vars:
      - name: ansible_netns_nsenter_exe
  executable:
    description:
      - Shell used to run commands inside the namespace.
    type: string
    default: /bin/sh
    ini:
      - section: defaults
        key: executable
    env:
      - name: ANSIBLE_EXECUTABLE
    vars:
      - name: ansible_executable
"""

EXAMPLES = r"""
# inventory: every lab node is a namespace named <lab_prefix>-<name>, set per host (a
# group-level "{{ lab_prefix }}-{{ inventory_hostname }}" would resolve to the delegating host
# under delegate_to; inventory/netns/hosts.yml does the same)
# lab_nodes:
#   vars:
#     ansible_connection: netns
#     ansible_python_interpreter: "{{ ansible_playbook_python }}"
#   hosts:
#     lb:
#       ansible_host: "{{ lab_prefix }}-lb"
- name: Show the LB node's addresses
  hosts: lb
  gather_facts: false
  tasks:
    - name: Read addresses inside the namespace
      ansible.builtin.command: ip -br addr
      changed_when: false
"""

import os
import shlex
import shutil
import subprocess

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible.plugins.connection import BUFSIZE, ConnectionBase
from ansible.utils.display import Display

display = Display()


class Connection(ConnectionBase):
    """Run commands and file transfers inside a named network namespace."""

    transport = "netns"
    has_pipelining = True
    has_tty = False
    default_user = "root"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._nsenter = None
        self._ns_path = None

    @property
    def namespace(self):
        return self.get_option("remote_addr")

    def _connect(self):
        name = self.namespace
        if not name or "/" in name or name in (".", ".."):
            raise AnsibleConnectionFailure(f"netns: invalid network namespace name {name!r}")
        ns_path = os.path.join(self.get_option("netns_dir"), name)
        if not os.path.exists(ns_path):
            raise AnsibleConnectionFailure(
                f"netns: network namespace {name!r} not found ({ns_path} does not exist); "
                "is the lab up? (make lab)")
        if os.geteuid() != 0:
            raise AnsibleConnectionFailure(
                f"netns: entering network namespace {name!r} requires root (euid is {os.geteuid()})")
        exe = self.get_option("nsenter_exe")
        nsenter = exe if os.path.isabs(exe) else shutil.which(exe)
        if not nsenter:
            raise AnsibleConnectionFailure(f"netns: {exe!r} not found on PATH (util-linux)")
        self._nsenter = nsenter
        self._ns_path = ns_path
        if not self._connected:
            display.vvv(f"ENTER NETWORK NAMESPACE {ns_path}", host=name)
            self._connected = True
        return self

    def _popen(self, cmd, stdin=subprocess.PIPE):
        """Start `executable -c cmd` inside the namespace (host mount namespace kept)."""
        self._connect()
        argv = [self._nsenter, f"--net={self._ns_path}", "--", self.get_option("executable"), "-c", cmd]
        display.vvv(f"EXEC {argv}", host=self.namespace)
        argv = [to_bytes(a, errors="surrogate_or_strict") for a in argv]
        return subprocess.Popen(argv, shell=False, stdin=stdin,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def exec_command(self, cmd, in_data=None, sudoable=False):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        p = self._popen(cmd)
        stdout, stderr = p.communicate(in_data)
        return p.returncode, stdout, stderr

    @staticmethod
    def _abs(path):
        if not path.startswith(os.path.sep):
            path = os.path.join(os.path.sep, path)
        return os.path.normpath(path)

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        display.vvv(f"PUT {in_path} TO {out_path}", host=self.namespace)
        out_q = shlex.quote(self._abs(out_path))
        try:
            in_file = open(to_bytes(in_path, errors="surrogate_or_strict"), "rb")
        except OSError as e:
            raise AnsibleError(f"netns: cannot read {in_path}: {to_native(e)}")
        with in_file:
            count = "" if os.fstat(in_file.fileno()).st_size else " count=0"
            p = self._popen(f"dd of={out_q} bs={BUFSIZE}{count} status=none", stdin=in_file)
            stdout, stderr = p.communicate()
        if p.returncode != 0:
            raise AnsibleError(f"netns: failed to transfer {in_path} to {out_path} in "
                               f"{self.namespace}: {to_native(stderr).strip()}")

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        display.vvv(f"FETCH {in_path} TO {out_path}", host=self.namespace)
        in_q = shlex.quote(self._abs(in_path))
        p = self._popen(f"dd if={in_q} bs={BUFSIZE} status=none")
        with open(to_bytes(out_path, errors="surrogate_or_strict"), "wb+") as out_file:
            chunk = p.stdout.read(BUFSIZE)
            while chunk:
                out_file.write(chunk)
                chunk = p.stdout.read(BUFSIZE)
        stdout, stderr = p.communicate()
        if p.returncode != 0:
            raise AnsibleError(f"netns: failed to fetch {in_path} from {self.namespace} to "
                               f"{out_path}: {to_native(stderr).strip()}")

    def close(self):
        super().close()
        self._connected = False
