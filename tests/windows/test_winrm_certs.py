"""The lab's WinRM CA and the Windows guests' certificates (role lab_topology, winrm_certs.yml),
made for real on this machine: the guest's certificate chains to the CA, names its address,
serves TLS servers, and its PKCS#12 opens with the lab's passphrase; a rerun changes nothing."""

from __future__ import annotations

import os
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from labtest import ANSIBLE_PLAYBOOK, REPO

INVENTORY = """all:
  children:
    lab_hosts:
      hosts:
        localhost:
          ansible_connection: local
          ansible_python_interpreter: "{{ ansible_playbook_python }}"
    lb_nodes:
      hosts:
        lb: {lab_ip: 20.1.1.1}
    backends:
      hosts:
        win1: {lab_ip: 20.1.1.10, lab_os: windows}
        linux1: {lab_ip: 20.1.1.30}
"""
PLAY = """- name: WinRM certificates of the Windows guests
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Make them
      ansible.builtin.include_role:
        name: lab_topology
        tasks_from: winrm_certs.yml
      vars:
        lab_topology_libvirt_dir: "{{ lab_dir }}"
        lab_topology_prefix: l4tc
"""


def play(tmp_path):
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    (tmp_path / "play.yml").write_text(PLAY)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_ROLES_PATH=os.path.join(REPO, "roles"))
    p = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml"),
                        "-e", f"lab_dir={tmp_path / 'lab'}"], cwd=REPO, env=env, capture_output=True, text=True,
                       check=False)
    return p.returncode, p.stdout + p.stderr


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("winrm")
    first = play(tmp)
    second = play(tmp)
    return tmp / "lab" / "winrm", first, second


def test_the_role_makes_them_and_a_rerun_changes_nothing(made):
    d, (rc1, out1), (rc2, out2) = made
    assert rc1 == 0, out1
    assert rc2 == 0 and "changed=0" in out2, out2
    assert sorted(os.listdir(d)) == ["ca.key", "ca.pem", "pfx.pass", "win1.key", "win1.pem", "win1.pfx"]
    for name in ("ca.key", "win1.key", "win1.pfx"):
        assert oct((d / name).stat().st_mode & 0o777) == "0o600", name


def test_the_guest_certificate_chains_to_the_lab_ca_and_names_its_address(made):
    d = made[0]
    r = subprocess.run(["openssl", "verify", "-CAfile", str(d / "ca.pem"), "-purpose", "sslserver",
                        str(d / "win1.pem")], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    cert = x509.load_pem_x509_certificate((d / "win1.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["20.1.1.10"]
    assert san.get_values_for_type(x509.DNSName) == ["win1"]
    ca = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


def test_the_pkcs12_opens_with_the_lab_passphrase_only(made):
    d = made[0]
    passphrase = (d / "pfx.pass").read_text().split()[0]
    assert len(passphrase) == 32
    key, cert, _ = pkcs12.load_key_and_certificates((d / "win1.pfx").read_bytes(), passphrase.encode())
    assert key is not None and cert == x509.load_pem_x509_certificate((d / "win1.pem").read_bytes())
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates((d / "win1.pfx").read_bytes(), b"wrong")


def test_the_passphrase_is_not_in_the_output(made):
    d, (_, out1), (_, out2) = made
    passphrase = (d / "pfx.pass").read_text().split()[0]
    assert passphrase not in out1 and passphrase not in out2
