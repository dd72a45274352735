"""Shared, generic test helpers: paths, running playbooks, root-namespace snapshots.

Import the helpers with ``from labtest import run_playbook, root_ns_snapshot, ...`` (a module
of its own name: several test directories have a conftest.py, so ``import conftest`` would be
ambiguous).
Tests that build a lab must use their own ``lab_prefix`` (never the default ``l4lb``, which
belongs to ``make lab``), passed with ``extra_vars={"lab_prefix": ...}``; lab_state_dir and
lab_bpffs_dir follow the prefix.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from contextlib import redirect_stdout
from dataclasses import dataclass, field

import ansible.module_utils


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.join(REPO, ".venv", "bin")
ANSIBLE_PLAYBOOK = os.path.join(VENV_BIN, "ansible-playbook")
ANSIBLE = os.path.join(VENV_BIN, "ansible")
MODULE_UTILS = os.path.join(REPO, "module_utils")
if MODULE_UTILS not in sys.path:
    sys.path.insert(0, MODULE_UTILS)
# lab_topology imports l4lb relatively (..l4lb), as a package of ansible.module_utils, the way
# AnsiballZ ships them: tests import it as ansible.module_utils.lab_topology.
if MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(MODULE_UTILS)

_RECAP_RE = re.compile(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$")


@dataclass
class PlaybookResult:
    rc: int
    stdout: str
    stderr: str
    recap: dict = field(default_factory=dict)  # host -> {"ok": n, "changed": n, "failed": n, ...}

    @property
    def output(self):
        return self.stdout + self.stderr

    def total(self, key):
        return sum(h.get(key, 0) for h in self.recap.values())

    @property
    def changed(self):
        return self.total("changed")

    @property
    def failed(self):
        return self.total("failed") + self.total("unreachable")


def ansible_env(extra=None):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": os.path.join(REPO, "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "PATH": VENV_BIN + os.pathsep + env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    })
    env.update(extra or {})
    return env


def parse_recap(text):
    recap = {}
    in_recap = False
    for line in text.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        if in_recap:
            m = _RECAP_RE.match(line.strip())
            if m:
                recap[m.group(1)] = {k: int(v) for k, v in
                                     (kv.split("=") for kv in m.group(2).split())}
            elif line.strip() == "" and recap:
                in_recap = False
    return recap


def run_playbook(playbook, extra_vars=None, args=(), env=None, inventories=(), timeout=600,
                 preexec=None):
    """Run ``playbooks/<playbook>`` (or a path) from the repo root; parse the recap."""
    path = playbook if os.path.isabs(playbook) else os.path.join(REPO, "playbooks", playbook)
    argv = [ANSIBLE_PLAYBOOK, path]
    if inventories:
        argv += ["-i", os.path.join(REPO, "inventory", "netns")]
        for inv in inventories:
            argv += ["-i", inv]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    argv += list(args)
    p = subprocess.run(argv, cwd=REPO, env=ansible_env(env), capture_output=True, text=True,
                       timeout=timeout, preexec_fn=preexec)
    return PlaybookResult(p.returncode, p.stdout, p.stderr, parse_recap(p.stdout))


def _ipj(*args):
    p = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True)
    return json.loads(p.stdout or "[]")


def root_ns_snapshot():
    """The root network namespace's links, addresses and routes, without volatile fields.

    Must be called from the root network namespace (pytest is)."""
    links = sorted((l["ifname"], l.get("link_type"), l.get("address"), l.get("mtu"),
                    l.get("master"), l.get("link_netnsid"))
                   for l in _ipj("link", "show"))
    addrs = sorted((l["ifname"], a.get("family"), a.get("local"), a.get("prefixlen"))
                   for l in _ipj("addr", "show") for a in l.get("addr_info", []))
    routes = []
    for fam in ("-4", "-6"):
        for r in _ipj(fam, "route", "show", "table", "all"):
            routes.append((fam, r.get("table", "main"), r.get("type", ""), r.get("dst"),
                           r.get("gateway"), r.get("dev"), r.get("prefsrc")))
    return {"links": links, "addrs": addrs, "routes": sorted(routes, key=str)}


def lab_namespaces(prefix):
    """Names under /run/netns that start with ``<prefix>-``."""
    try:
        return sorted(n for n in os.listdir("/run/netns") if n.startswith(prefix + "-"))
    except FileNotFoundError:
        return []


def run_module(module_name, args):
    """Run ``library/<module_name>.py`` in this process with ``args`` (Ansible's own argument
    handling, ``_ansible_check_mode`` and the like included); its JSON answer as a dict."""
    import pytest
    from ansible.module_utils.testing import patch_module_args
    spec = importlib.util.spec_from_file_location(module_name, os.path.join(REPO, "library", module_name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = io.StringIO()
    with patch_module_args(args), redirect_stdout(out), pytest.raises(SystemExit):
        mod.main()
    return json.loads(out.getvalue())
