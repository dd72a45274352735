"""The Windows inventory with every playbook: syntax, the preflight (the version gate stops the
run before anything changes), and that no secret reaches the output of a -vvv run against an
unreachable Windows node (127.0.0.1, closed port 1: no traffic leaves this machine)."""

from __future__ import annotations

import glob
import shutil
import os
import subprocess
import uuid

import pytest

from winplay import playbook
from labtest import ANSIBLE_PLAYBOOK, REPO

PLAYBOOKS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REPO, "playbooks", "*.yml")))


def run(args, env=None, extra_vars=None):
    return playbook(args, extra_vars=extra_vars, env=env)


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_every_playbook_passes_syntax_check_with_the_windows_inventory(playbook):
    rc, out = run(["--syntax-check", os.path.join("playbooks", playbook)])
    assert rc == 0, out


def test_preflight_passes_and_touches_no_node(inputs):
    rc, out = run(["playbooks/site.yml", "--tags", "preflight-only", "--limit", "windows_nodes"], extra_vars=inputs,
                  env={"L4LB_WINRM_USER": "Administrator", "L4LB_WINRM_PASSWORD": "x"})
    assert rc == 0, out
    assert "windows_ebpf : The eBPF-for-Windows version has the XDP hook where the node needs XDP" in out
    assert "backend_windows : The decap object, or what compiles it, is on the controller" in out
    assert "ESTABLISH WINRM" not in out


@pytest.mark.parametrize("over, host, needle", [
    ({"windows_ebpf_version": "0.13.0"}, "lb",
     "lb: windows_ebpf_version 0.13.0 has no XDP hook (eBPF-for-Windows removed it from netebpfext in 0.13.0"),
    ({"windows_ebpf_version": "1.0.0", "lb_mode": "dsr"}, "win1",
     "win1: windows_ebpf_version 1.0.0 has no XDP hook"),
    ({"windows_ebpf_msi_sha256": "0" * 64}, "win1", "the inventory's zeros are a placeholder"),
    ({"lab_winrm_ca_path": "/nonexistent/ca.pem"}, "win1", "is not a file on the controller"),
    ({"lab_winrm_transport": "basic"}, "win1", "WinRM must use HTTPS"),
])
def test_preflight_refuses_before_any_change(inputs, over, host, needle):
    rc, out = run(["playbooks/site.yml", "--limit", "windows_nodes"], extra_vars=dict(inputs, **over),
                  env={"L4LB_WINRM_USER": "Administrator", "L4LB_WINRM_PASSWORD": "x"})
    assert rc == 2, out
    assert needle in out
    assert f"fatal: [{host}]" in out
    # any_errors_fatal: no later play ran, no node was connected to
    assert "PLAY [Windows nodes - eBPF-for-Windows" not in out and "ESTABLISH WINRM" not in out


def test_preflight_refuses_missing_credentials(inputs):
    rc, out = run(["playbooks/site.yml", "--limit", "win1"], extra_vars=inputs)
    assert rc == 2 and "credentials (L4LB_WINRM_USER / L4LB_WINRM_PASSWORD in the environment" in out, out


def assert_unreachable_without(out, secrets):
    assert "ESTABLISH WINRM CONNECTION FOR USER: Administrator on PORT 1 TO 127.0.0.1" in out
    assert "UNREACHABLE!" in out and "Connection refused" in out
    for s in secrets:
        assert s not in out, f"a secret reached the output: {s[:6]}..."


def test_no_password_in_verbose_output_from_the_environment(inputs):
    password = f"Env-Fake-{uuid.uuid4().hex}"
    rc, out = run(["playbooks/site.yml", "--limit", "win1", "-vvv"], extra_vars=inputs,
                  env={"L4LB_WINRM_USER": "Administrator", "L4LB_WINRM_PASSWORD": password})
    assert rc == 4, out
    assert_unreachable_without(out, [password])


def test_no_password_in_verbose_output_from_a_vault(inputs, tmp_path):
    password = f"Vault-Fake-{uuid.uuid4().hex}"
    vault_pass = f"vault-pass-{uuid.uuid4().hex}"
    (tmp_path / "vault-pass").write_text(vault_pass + "\n")
    plain = tmp_path / "vault.yml"
    plain.write_text(f"vault_lab_winrm_user: Administrator\nvault_lab_winrm_password: {password}\n")
    subprocess.run([os.path.join(os.path.dirname(ANSIBLE_PLAYBOOK), "ansible-vault"), "encrypt", str(plain),
                    "--vault-password-file", str(tmp_path / "vault-pass")], check=True, capture_output=True)
    assert password not in plain.read_text()
    rc, out = run(["playbooks/site.yml", "--limit", "win1,win2", "-vvv", "--vault-password-file",
                   str(tmp_path / "vault-pass"), "-e", f"@{plain}"], extra_vars=inputs)
    assert rc == 4, out
    assert_unreachable_without(out, [password, vault_pass])


def test_lab_topology_external_accepts_the_seeds_windows_lb_node_and_changes_nothing():
    """inventory/windows as it is: the LB node and win1/win2 on Windows (the seed's lab)."""
    rc, out = run(["playbooks/site.yml", "--tags", "lab_topology", "--limit", "localhost", "-v"])
    assert rc == 0, out
    assert "localhost                  : ok=3    changed=0" in out
    assert '"mtu": 1500, "name": "lb", "os": "windows", "role": "lb"' in out


def test_lab_topology_external_accepts_windows_backends_and_changes_nothing(tmp_path):
    """The inventory's own advice: the LB node on Linux, moved to linux_nodes."""
    inv = tmp_path / "windows"
    shutil.copytree(os.path.join(REPO, "inventory", "windows"), inv)
    hosts = (inv / "hosts.yml").read_text()
    hosts = hosts.replace("    windows_nodes:\n      hosts:\n        lb:\n", "    windows_nodes:\n      hosts:\n")
    hosts = hosts.replace("    linux_nodes:\n      hosts:\n", "    linux_nodes:\n      hosts:\n        lb:\n")
    (inv / "hosts.yml").write_text(hosts)
    rc, out = playbook(["playbooks/site.yml", "--tags", "lab_topology", "--limit", "localhost", "-v"],
                       inventory=str(inv))
    assert rc == 0, out
    assert "localhost                  : ok=3    changed=0" in out
    assert '"os": "windows"' in out and '"name": "win1"' in out
