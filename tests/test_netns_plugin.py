"""The netns connection plugin against real network namespaces.

Uses its own namespaces (<L4LB_TEST_PREFIX>p-a, -b) and cleans them up; nothing is added to
the root namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from labtest import ANSIBLE, REPO, ansible_env, root_ns_snapshot

PREFIX = os.environ.get("L4LB_TEST_PREFIX", "l4lbt2") + "p"
NS_A, NS_B = f"{PREFIX}-a", f"{PREFIX}-b"
BPFFS_DIR = f"/sys/fs/bpf/{PREFIX}"


def _del_ns(name):
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture(scope="module")
def namespaces(tmp_path_factory):
    for ns in (NS_A, NS_B):
        _del_ns(ns)
    before = root_ns_snapshot()
    for ns in (NS_A, NS_B):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "-n", NS_A, "link", "set", "lo", "up"], check=True)
    inv = tmp_path_factory.mktemp("inv") / "hosts.yml"
    inv.write_text(
        "all:\n"
        "  vars:\n"
        "    ansible_connection: netns\n"
        "    ansible_python_interpreter: \"{{ ansible_playbook_python }}\"\n"
        "  hosts:\n"
        f"    a: {{ansible_host: {NS_A}}}\n"
        f"    b: {{ansible_host: {NS_B}}}\n"
        f"    missing: {{ansible_host: {PREFIX}-nosuchns}}\n")
    try:
        yield str(inv)
    finally:
        for ns in (NS_A, NS_B):
            _del_ns(ns)
        shutil.rmtree(BPFFS_DIR, ignore_errors=True)
        assert root_ns_snapshot() == before


def adhoc(inv, host, module, args, env=None):
    argv = [ANSIBLE, host, "-i", inv, "-m", module, "-a", args, "-o"]
    return subprocess.run(argv, cwd=REPO, env=ansible_env(env), capture_output=True, text=True,
                          timeout=120)


def _ns_inode(path):
    return f"net:[{os.stat(path).st_ino}]"


def test_exec_runs_inside_the_namespace(namespaces):
    p = adhoc(namespaces, "a", "ansible.builtin.command", "readlink /proc/self/ns/net")
    assert p.returncode == 0, p.stdout + p.stderr
    assert _ns_inode(f"/run/netns/{NS_A}") in p.stdout
    assert _ns_inode("/proc/self/ns/net") not in p.stdout
    # only the namespace's own links are visible
    p = adhoc(namespaces, "a", "ansible.builtin.command", "ip -br link show")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "lo " in p.stdout and "eth0" not in p.stdout


def test_exec_keeps_host_mount_namespace_and_bpffs(namespaces):
    os.makedirs(f"{BPFFS_DIR}/probe", exist_ok=True)
    p = adhoc(namespaces, "b", "ansible.builtin.command", f"ls -d {BPFFS_DIR}/probe")
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"{BPFFS_DIR}/probe" in p.stdout
    p = adhoc(namespaces, "b", "ansible.builtin.command", "readlink /proc/self/ns/mnt")
    assert os.readlink("/proc/self/ns/mnt") in p.stdout


@pytest.mark.parametrize("pipelining", ["True", "False"])
def test_put_file(namespaces, tmp_path, pipelining):
    # With pipelining off, the module itself is transferred with put_file too.
    dest = tmp_path / "copied.txt"
    p = adhoc(namespaces, "a", "ansible.builtin.copy", f"content='hello from a\n' dest={dest}",
              env={"ANSIBLE_PIPELINING": pipelining})
    assert p.returncode == 0, p.stdout + p.stderr
    assert dest.read_text() == "hello from a\n"


def test_put_empty_file(namespaces, tmp_path):
    src = tmp_path / "empty"
    src.write_text("")
    dest = tmp_path / "empty.copy"
    p = adhoc(namespaces, "a", "ansible.builtin.copy", f"src={src} dest={dest}",
              env={"ANSIBLE_PIPELINING": "False"})
    assert p.returncode == 0, p.stdout + p.stderr
    assert dest.exists() and dest.read_text() == ""


def test_fetch_file(namespaces, tmp_path):
    src = tmp_path / "in-ns.txt"
    src.write_bytes(os.urandom(200_000))
    out = tmp_path / "fetched"
    p = adhoc(namespaces, "b", "ansible.builtin.fetch", f"src={src} dest={out}/ flat=true")
    assert p.returncode == 0, p.stdout + p.stderr
    assert (out / "in-ns.txt").read_bytes() == src.read_bytes()


def test_missing_namespace_is_a_connection_error_naming_it(namespaces):
    p = adhoc(namespaces, "missing", "ansible.builtin.command", "true")
    assert p.returncode != 0
    assert "UNREACHABLE" in p.stdout
    assert f"{PREFIX}-nosuchns" in p.stdout
    assert "not found" in p.stdout


def test_exec_directly_through_the_plugin(namespaces):
    """exec_command/put_file/fetch_file called on the plugin object, without a playbook."""
    script = f"""
import json, os, sys, tempfile
from ansible.plugins.loader import connection_loader, init_plugin_loader
from ansible.playbook.play_context import PlayContext
init_plugin_loader()
connection_loader.add_directory({os.path.join(REPO, 'connection_plugins')!r})
conn = connection_loader.get('netns', PlayContext(), None)
conn.set_options(var_options={{'ansible_host': {NS_A!r}}})
rc, out, err = conn.exec_command('ip -o link show | wc -l; echo "$0"')
d = tempfile.mkdtemp()
src = os.path.join(d, 's'); open(src, 'w').write('payload')
conn.put_file(src, os.path.join(d, 'p'))
conn.fetch_file(os.path.join(d, 'p'), os.path.join(d, 'f'))
print(json.dumps({{'rc': rc, 'out': out.decode(), 'fetched': open(os.path.join(d, 'f')).read()}}))
"""
    p = subprocess.run([os.path.join(REPO, ".venv", "bin", "python"), "-c", script], cwd=REPO,
                       env=ansible_env(), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["rc"] == 0
    assert res["out"].split()[0] == "1"  # only lo inside the namespace
    assert res["fetched"] == "payload"
