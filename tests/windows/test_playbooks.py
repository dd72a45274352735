"""The Windows inventory with every playbook: syntax, the preflight (the version gate stops the
run before anything changes), and that no secret reaches the output of a -vvv run against an
unreachable Windows node (127.0.0.1, closed port 1: no traffic leaves this machine)."""

from __future__ import annotations

import glob
import shutil
import os
import re
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
    assert "lb_node : Each installer on the controller is the one named by its SHA-256" in out
    assert "ESTABLISH WINRM" not in out


@pytest.mark.parametrize("over, host, needle", [
    ({"windows_ebpf_version": "0.13.0"}, "lb",
     "lb: windows_ebpf_version 0.13.0 has no XDP hook (eBPF-for-Windows removed it from netebpfext in 0.13.0"),
    ({"windows_ebpf_version": "1.0.0", "lb_mode": "dsr"}, "win1",
     "win1: windows_ebpf_version 1.0.0 has no XDP hook"),
    ({"windows_ebpf_msi_sha256": "0" * 64}, "win1", "the inventory's zeros are a placeholder"),
    ({"lab_winrm_ca_path": "/nonexistent/ca.pem"}, "win1", "is not a file on the controller"),
    ({"lab_winrm_transport": "basic"}, "win1", "WinRM must use HTTPS"),
    ({"lb_node_windows_python_sha256": "0" * 64}, "lb",
     "lb: the Windows LB node needs Python (it runs l4lbctl, the control plane): give lb_node_windows_python_src"),
    ({"lb_node_windows_llvm_sha256": "ab" * 32}, "lb", "-win64.exe (LLVM) has SHA-256 "),
    ({"lb_node_windows_python_version": "3.8.10"}, "lb", "what `python.exe --version` prints, 3.9 or later; now 3.8.10"),
    ({"lb_node_windows_llvm_url": "https://example.invalid/llvm.exe"}, "lb", "lb_node_windows_llvm_url, not both"),
    ({"lab_bpffs_dir": "/sys/fs/bpf/l4lb"}, "lb", "lb_node_pin_dir (/sys/fs/bpf/l4lb/lb) a path in eBPF-for-Windows' pin store"),
])
def test_preflight_refuses_before_any_change(inputs, over, host, needle):
    rc, out = run(["playbooks/site.yml", "--limit", "windows_nodes"], extra_vars=dict(inputs, **over),
                  env={"L4LB_WINRM_USER": "Administrator", "L4LB_WINRM_PASSWORD": "x"})
    assert rc == 2, out
    assert needle in out
    assert f"fatal: [{host}]" in out or f"failed: [{host}] (item=" in out  # a loop's item
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


# Every playbook that reaches the Windows LB node, limited so that nothing but the LB node (and
# the controller) runs; verify.yml's probes would go to 127.0.0.1 port 1 if they ever ran.
LB_BOOKS = [("site.yml", "lb", "lb_node : Python and LLVM installers are given"),
            ("mode.yml", "lb", "lb_node : Read the installed Python's and clang's versions"),
            ("service.yml", "lb", "lb_service : Resolve the next hops the datapath sends to (l4lbctl neighbor update)"),
            ("dumpstate.yml", "lb", "Dump on a Windows LB node (l4lbctl service dumpstate), service 1"),
            ("verify.yml", "localhost,client,lb", "lab_verify : Read the mode the Windows LB node runs (l4lbctl mode show)")]
SAFE_VERIFY = {"lab_verify_vip": "127.0.0.1", "lab_verify_port": "1", "lab_verify_count": "1", "lab_verify_bulk": "false"}


@pytest.mark.parametrize("book, limit, reached", LB_BOOKS)
def test_no_password_in_verbose_output_on_the_windows_lb_node(inputs, book, limit, reached):
    """The Windows LB node's tasks (l4lbctl through win_command, delegated from the client in
    lab_verify) run against the unreachable node with -vvv: its password never shows."""
    password = f"Env-Fake-{uuid.uuid4().hex}"
    rc, out = run([f"playbooks/{book}", "--limit", limit, "-vvv"], extra_vars=dict(inputs, **SAFE_VERIFY),
                  env={"L4LB_WINRM_USER": "Administrator", "L4LB_WINRM_PASSWORD": password})
    assert rc in (2, 4), out
    assert reached in out, out[-3000:]
    assert_unreachable_without(out, [password])


def test_the_windows_lb_node_takes_its_windows_tasks(inputs):
    """mode.yml on the Windows LB node: the Linux modules are skipped, the controller preflight
    passes, the first task that reaches the node reads Python's and clang's versions."""
    rc, out = run(["playbooks/mode.yml", "--limit", "lb"], extra_vars=inputs,
                  env={"L4LB_WINRM_USER": "Administrator", "L4LB_WINRM_PASSWORD": "x"})
    assert rc == 4, out
    assert re.search(r"TASK \[lb_node : XDP load balancer in the requested mode is present\][^\n]*\n[^\n]*\n"
                     r"skipping: \[lb\]", out), out
    assert "lb_node : Each installer on the controller is the one named by its SHA-256" in out
    assert "TASK [lb_node : Read the installed Python's and clang's versions]" in out
    assert "fatal: [lb]: UNREACHABLE!" in out


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
    before = _files_under("/var/lib/l4lb-lab")
    rc, out = run(["playbooks/site.yml", "--tags", "lab_topology", "--limit", "localhost", "-v"])
    assert rc == 0, out
    assert re.search(r"localhost +: ok=\d+ +changed=0 +unreachable=0 +failed=0", out), out
    assert '"mtu": 1500, "name": "lb", "os": "windows", "role": "lb"' in out
    # "changes nothing" on the controller too: no WinRM passphrase or CA made for guests that the
    # external provider does not create (a password lookup in a role default once did that)
    assert _files_under("/var/lib/l4lb-lab") == before


def _files_under(top):
    return sorted(os.path.join(d, n) for d, _dirs, names in os.walk(top) for n in names)


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
    assert re.search(r"localhost +: ok=\d+ +changed=0 +unreachable=0 +failed=0", out), out
    assert '"os": "windows"' in out and '"name": "win1"' in out
