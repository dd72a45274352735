"""Render what the Windows roles render, without a Windows host: their templates and the module
arguments of their tasks, through Ansible's own templating (with the project's filters), from
the role defaults plus a host's inventory variables."""

from __future__ import annotations

import os
import re

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import filter_loader
from ansible.template import Templar, trust_as_template

from labtest import REPO

filter_loader.add_directory(os.path.join(REPO, "filter_plugins"))
ROLES = os.path.join(REPO, "roles")
ALL_HOSTS = ["lb", "win1", "win2", "linux1", "linux2", "client"]
GROUPS = {"lb_nodes": ["lb"], "backends": ["win1", "win2", "linux1", "linux2"], "clients": ["client"],
          "lab_nodes": ALL_HOSTS}
LAB_IP = {"lb": "20.1.1.1", "win1": "20.1.1.10", "win2": "20.1.1.20", "linux1": "20.1.1.30",
          "linux2": "20.1.1.40", "client": "20.1.1.100"}


def trust(x):
    if isinstance(x, str):
        return trust_as_template(x)
    if isinstance(x, dict):
        return {k: trust(v) for k, v in x.items()}
    if isinstance(x, list):
        return [trust(i) for i in x]
    return x


def host_vars(host, **extra):
    """The seed's inventory variables of ``host`` (as inventory/windows gives them)."""
    v = {"inventory_hostname": host, "lab_ip": LAB_IP[host], "lab_vip": "40.1.1.1", "lb_mode": "snat",
         "lab_subnet": "20.1.1.0/24", "groups": GROUPS, "ansible_play_hosts": ["win1", "win2"],
         "ansible_managed": "Ansible managed", "ansible_check_mode": False}
    if host in ("win1", "win2"):
        v["backend_decap"] = "xdp"
    if host in ("lb", "win1", "win2"):
        v["lab_os"] = "windows"
    v.update(extra)
    return v


def role_defaults(role):
    with open(os.path.join(ROLES, role, "defaults", "main.yml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def role_vars(role):
    """The role's vars/main.yml (derived values; above inventory variables), or {}."""
    path = os.path.join(ROLES, role, "vars", "main.yml")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


class Renderer:
    """Templates of one role, for one host: role defaults < the host's inventory variables <
    role vars < ``extra`` (as extra vars)."""

    def __init__(self, role, host, **extra):
        self.role = role
        variables = dict(role_defaults(role), role_path=os.path.join(ROLES, role))
        if role == "backend_windows":
            variables.update({k: v for k, v in role_defaults("windows_ebpf").items()
                              if k not in variables})
        variables.update(host_vars(host))
        variables.update(role_vars(role))
        variables.update(extra)
        self.vars = trust(variables)
        # Every host of the play has the preflight's facts (hostvars), unless the test gives them.
        if "hostvars" not in extra:
            self.vars["hostvars"] = {h: {"backend_windows_decap_compile": extra.get(
                "backend_windows_decap_compile", True)} for h in ALL_HOSTS}
        self.templar = Templar(loader=DataLoader(), variables=self.vars)

    def value(self, expr, **extra):
        t = Templar(loader=DataLoader(), variables=dict(self.vars, **trust(extra))) if extra else self.templar
        return t.template(trust(expr))

    def var(self, name, **extra):
        return self.value("{{ %s }}" % name, **extra)

    def template(self, name, **extra):
        with open(os.path.join(ROLES, self.role, "templates", name), encoding="utf-8") as f:
            return self.value(f.read(), **extra)

    def task(self, tasks_file, name):
        """The task called ``name`` (a prefix is enough) in ``tasks_file`` of the role."""
        return find_task(os.path.join(ROLES, self.role, "tasks", tasks_file), name)

    def args(self, tasks_file, name, module, **extra):
        """The rendered arguments of ``module`` in that task."""
        return self.value(self.task(tasks_file, name)[module], **extra)


def find_task(path, name):
    with open(path, encoding="utf-8") as f:
        tasks = yaml.safe_load(f)
    found = [t for t in tasks if t.get("name") == name] or \
        [t for t in tasks if str(t.get("name", "")).startswith(name)]
    assert len(found) == 1, f"{len(found)} tasks named {name!r} in {path}"
    return found[0]


def ps1_params(path):
    """The parameter names of a PowerShell script's param() block."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    block = text[text.index("param ("):]
    block = block[:block.index("\n)\n")]
    return re.findall(r"\$([A-Za-z]+)\s*(?:=|,|$)", block, re.MULTILINE)
