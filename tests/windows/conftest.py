"""Fixtures of the Windows tests: nothing here needs a Windows host."""

from __future__ import annotations

import hashlib
import importlib.util
import os

import pytest

from labtest import REPO


@pytest.fixture(scope="session")
def winfilters():
    """filter_plugins/l4lb_windows.py, imported by path (as Ansible loads it)."""
    path = os.path.join(REPO, "filter_plugins", "l4lb_windows.py")
    spec = importlib.util.spec_from_file_location("l4lb_windows_filters", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"


@pytest.fixture
def inputs(tmp_path):
    """What a user provides, as files on the controller: the MSI (a stand-in), the WinRM CA,
    devcon.exe, eBPF-for-Windows' include directory, and the Windows LB node's Python and LLVM
    installers (stand-ins)."""
    msi = tmp_path / "eBPF-for-Windows.0.12.0.msi"
    msi.write_bytes(b"not really an MSI")
    ca = tmp_path / "winrm-ca.pem"
    ca.write_text(open(SYSTEM_CA, encoding="utf-8").read() if os.path.exists(SYSTEM_CA) else "")
    devcon = tmp_path / "devcon.exe"
    devcon.write_bytes(b"MZ")
    inc = tmp_path / "include"
    inc.mkdir()
    for h in ("bpf_helpers.h", "ebpf_nethooks.h"):
        (inc / h).write_text("/* stand-in */\n")
    python = tmp_path / "python-3.12.7-amd64.exe"
    python.write_bytes(b"MZ python stand-in")
    llvm = tmp_path / "LLVM-18.1.8-win64.exe"
    llvm.write_bytes(b"MZ llvm stand-in")
    return {"windows_ebpf_msi_src": str(msi), "windows_ebpf_msi_sha256": hashlib.sha256(msi.read_bytes()).hexdigest(),
            "lab_winrm_ca_path": str(ca), "backend_windows_devcon_src": str(devcon),
            "backend_windows_efw_include_dir": str(inc),
            "lb_node_windows_python_src": str(python),
            "lb_node_windows_python_sha256": hashlib.sha256(python.read_bytes()).hexdigest(),
            "lb_node_windows_llvm_src": str(llvm),
            "lb_node_windows_llvm_sha256": hashlib.sha256(llvm.read_bytes()).hexdigest()}
