"""The Windows roles' argument specs: documented (ansible-doc reads them), every default is an
option, literal defaults agree, and Ansible's role validation refuses a bad value."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from winplay import playbook
from labtest import ANSIBLE_PLAYBOOK, REPO

ROLES = ("windows_ebpf", "backend_windows", "lb_node", "lb_service")
INTERNAL = {"backend_windows_compile_anywhere"}  # derived in defaults, not an input


def load(role, *parts):
    with open(os.path.join(REPO, "roles", role, *parts), encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.mark.parametrize("role", ROLES)
def test_ansible_doc_reads_the_spec(role):
    p = subprocess.run([os.path.join(os.path.dirname(ANSIBLE_PLAYBOOK), "ansible-doc"), "-t", "role", "-r",
                        os.path.join(REPO, "roles"), "-j", role], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)[role]["entry_points"]["main"]
    assert doc["short_description"] and doc["options"]


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_a_documented_option_and_literal_defaults_agree(role):
    defaults = load(role, "defaults", "main.yml")
    options = load(role, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert set(defaults) - INTERNAL == set(options)
    for name, opt in options.items():
        assert name.startswith(role + "_"), name
        assert opt.get("description"), name
        value = defaults[name]
        if "default" in opt:
            if isinstance(value, str) and "{{" in value:
                # a default derived from a shared variable documents its fallback
                literal = str(opt["default"]).lower() if isinstance(opt["default"], bool) else opt["default"]
                assert f"default('{literal}')" in value or f"default({literal})" in value, name
            else:
                assert opt["default"] == value, name
        if "choices" in opt and not (isinstance(value, str) and "{{" in value):
            assert value in opt["choices"], name


@pytest.mark.parametrize("tag, over, needle", [
    ("backend_windows", {"backend_windows_bulk_kib": "many"}, "backend_windows_bulk_kib"),
    ("backend_windows", {"backend_windows_echo_max_body": "lots"}, "backend_windows_echo_max_body"),
    ("windows_ebpf", {"windows_ebpf_lb_mode": "fast"}, "windows_ebpf_lb_mode"),
])
def test_role_validation_refuses_bad_values(inputs, tag, over, needle):
    """The role's own play validates its arguments before any of its tasks (no node is reached)."""
    rc, out = playbook(["playbooks/site.yml", "--tags", tag, "--limit", "win1"], extra_vars=dict(inputs, **over),
                       env={"L4LB_WINRM_USER": "Administrator", "L4LB_WINRM_PASSWORD": "x"})
    assert rc == 2, out
    assert "Validating arguments against arg spec 'main'" in out
    assert needle in out and "ESTABLISH WINRM" not in out, out[-2000:]


@pytest.mark.parametrize("book, over, needle", [
    ("mode.yml", {"lb_node_maglev_size": "many"}, "lb_node_maglev_size"),
    ("mode.yml", {"lb_node_os": "solaris"}, "lb_node_os"),
    ("service.yml", {"lb_service_os": "solaris"}, "lb_service_os"),
])
def test_the_windows_lb_roles_validate_their_arguments(inputs, book, over, needle):
    """lb_node and lb_service on the Windows LB node validate before any task (no node is reached)."""
    tag = "lb_service" if book == "service.yml" else "lb_node"
    rc, out = playbook([f"playbooks/{book}", "--tags", tag, "--limit", "lb"], extra_vars=dict(inputs, **over),
                       env={"L4LB_WINRM_USER": "Administrator", "L4LB_WINRM_PASSWORD": "x"})
    assert rc == 2, out
    assert "Validating arguments against arg spec 'main'" in out
    assert needle in out and "ESTABLISH WINRM" not in out, out[-2000:]
