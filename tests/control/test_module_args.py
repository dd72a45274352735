"""Argument handling of our modules, in-process (no kernel state involved): Ansible's own
argument-spec validation and our core's checks both fail with a message naming the bad field."""

from __future__ import annotations

import os

import ansible.module_utils
import pytest

from control_lab import REPO
from labtest import run_module

# Make module_utils/l4lb importable as ansible.module_utils.l4lb, as AnsiballZ ships it.
ansible.module_utils.__path__.append(os.path.join(REPO, "module_utils"))


run = run_module  # labtest's: the module in this process, its JSON answer

@pytest.mark.parametrize("module,args,needle", [
    ("xdp_program", {"device": "eth0", "src": "/x", "build_dir": "/y"}, "pin_dir"),
    ("xdp_program", {"device": "eth0", "src": "/x", "build_dir": "/y", "pin_dir": "/z", "mode": "nat"}, "mode"),
    ("xdp_program", {"device": "eth0", "src": "/x", "build_dir": "/y", "pin_dir": "/z",
                     "attach_mode": "offload"}, "attach_mode"),
    ("lb_service", {"id": 1, "pin_dir": "/z"}, "frontend"),
    ("lb_service", {"id": 1, "pin_dir": "/z", "frontend": "40.1.1.1:80", "backends": ["a"], "protocol": "icmp"},
     "protocol"),
    ("lb_service", {"id": "one", "pin_dir": "/z", "state": "absent"}, "id"),
    ("lb_dumpstate", {"pin_dir": "/z"}, "id"),
    ("lb_neighbor", {"pin_dir": "/z", "address": "20.1.1.1", "state": "gone"}, "state"),
    # Refused before anything is read or changed (this runs in the root namespace: only inputs
    # that must fail belong here; the real runs are in test_backend_modules.py).
    ("lab_backend_net", {"vips": ["40.1.1.1"], "state": "gone"}, "state"),
    ("lab_backend_net", {"vips": ["40.1.1"], "state": "absent"}, "vips: '40.1.1' is not an IPv4 address"),
    ("lab_backend_net", {"advmss": "lots"}, "advmss"),
    ("lab_nginx", {"conf": "/x/nginx.conf", "prefix": "/x", "pid_file": "/x/pid", "bulk_kib": 65537},
     "bulk_kib 65537 is not in 0..65536"),
    ("bpf_decap", {"method": "tc", "build_dir": "/y", "pin_dir": "/z"}, "src"),
    ("lab_http_probe", {"vip": "40.1.1.1", "sample_page": True, "sample_max_bytes": 0}, "sample_max_bytes 0 is not in"),
    ("lab_report", {"dest": "/work/x/build/report/t", "state": "present"}, "topology"),
    ("lab_report", {"dest": "build/report/t", "topology": {}}, "must be an absolute path"),
    ("lab_report", {"dest": "/tmp", "state": "absent"}, "too broad a directory"),
    ("lab_report", {"dest": "/work/x/build/report/t", "topology": {}, "mode": "nat"}, "mode"),
])
def test_argument_spec_rejects(module, args, needle):
    result = run(module, args)
    assert result["failed"] is True
    assert needle in result["msg"]


def test_core_rejects_before_touching_anything():
    # The pin dir does not exist: validation of the service must come first and say what is wrong.
    result = run("lb_service", {"id": 1, "pin_dir": "/nonexistent", "frontend": "40.1.1.1:80",
                                "backends": ["20.1.1.10:80", "20.1.1.10:80"]})
    assert result["failed"] is True and "duplicate backend 20.1.1.10:80" in result["msg"]


def test_src_must_exist():
    result = run("xdp_program", {"device": "lo", "src": "/nonexistent/bpf", "build_dir": "/tmp/x",
                                 "pin_dir": "/sys/fs/bpf/none"})
    assert result["failed"] is True and "/nonexistent/bpf" in result["msg"]


def test_missing_libbpf_is_a_task_failure():
    """Without libbpf.so.1 a module fails its task with a message naming the library and the
    package to install (the module still imports: libbpf is loaded on first use)."""
    from ansible.module_utils.l4lb import platform
    from ansible.module_utils.l4lb.platform.linux import LinuxPlatform
    with platform.use(LinuxPlatform("libbpf-missing-h9cc.so.1")):
        result = run("xdp_program_info", {"device": "lo", "pin_dir": "/sys/fs/bpf/none"})
    assert result["failed"] is True
    assert "libbpf-missing-h9cc.so.1" in result["msg"] and "apt-get install libbpf1" in result["msg"], result
