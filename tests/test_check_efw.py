"""scripts/check-efw: its verdicts and exit status with stand-in PREVAIL binaries, and (opt-in) the
real check with PREVAIL and the eBPF-for-Windows v0.12.0 headers (README: "Checking the datapath
for eBPF-for-Windows")."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from labtest import REPO

SCRIPT = os.path.join(REPO, "scripts", "check-efw")
PASS_OUT = ("\n1273:1307: Code is unreachable after 1273:1307\n\n"
            "Program terminates within 812 instructions\n1,0.25,20480\n")
FAIL_OUT = ("2143: Possible null access (valid_access(r7.offset, width=8) for write)\n"
            "2150: Possible null access (valid_access(r7.offset+8, width=8) for write)\n"
            "Program terminates within 812 instructions\n0,0.31,20480\n")


def _stub(tmp_path, name, out, rc):
    path = tmp_path / name
    (tmp_path / f"{name}.out").write_text(out)
    path.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/{name}.args\ncat {tmp_path}/{name}.out\nexit {rc}\n")
    path.chmod(0o755)
    return str(path)


def _efw_stub(tmp_path):
    """An include directory whose bpf_helpers.h stops any compile: the Windows compiles FAIL."""
    d = tmp_path / "efw"
    d.mkdir()
    (d / "bpf_helpers.h").write_text("#error not the eBPF-for-Windows headers\n")
    return str(d)


def _run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=600)


def test_prevail_verdicts_and_command_line(tmp_path):
    check = _stub(tmp_path, "check", PASS_OUT, 0)
    res = _run(check, _efw_stub(tmp_path))
    lines = res.stdout.splitlines()
    prevail = [ln for ln in lines if " prevail " in ln]
    assert [ln.split()[0] for ln in prevail] == ["PASS"] * 4, res.stdout
    assert "terminates within 812 instructions, 1 note(s)" in prevail[0]
    assert lines[1] == "      1273:1307: Code is unreachable after 1273:1307"
    calls = (tmp_path / "check.args").read_text().splitlines()
    assert [c.split()[1:] for c in calls] == [["xdp", "-f", "--termination", "--no-simplify"]] * 4
    assert [os.path.basename(c.split()[0]) for c in calls] == [
        "lb_xdp_snat.o", "lb_xdp_dsr.o", "decap_xdp.o", "xdp_pass.o"]
    efw = [ln for ln in lines if " efw-cc " in ln]
    assert [ln.split()[0] for ln in efw] == ["FAIL"] * 3 and "not the eBPF-for-Windows headers" in res.stdout
    assert lines[-1] == "check-efw: 4 passed, 3 failed" and res.returncode == 1


def test_prevail_failure_lists_the_messages(tmp_path):
    check = _stub(tmp_path, "check", FAIL_OUT, 1)
    res = _run(check, _efw_stub(tmp_path))
    assert res.returncode == 1
    first = res.stdout.splitlines()[0]
    assert first.startswith("FAIL  prevail  lb_xdp.c snat") and "2 message(s)" in first
    assert "      2143: Possible null access" in res.stdout


def test_a_verdict_without_the_result_line_fails(tmp_path):
    check = _stub(tmp_path, "check", "error: map_fd not found\n", 1)
    res = _run(check, _efw_stub(tmp_path))
    assert "no verdict" in res.stdout.splitlines()[0] and "      error: map_fd not found" in res.stdout


def test_bad_arguments_exit_2(tmp_path):
    check, efw = _stub(tmp_path, "check", PASS_OUT, 0), _efw_stub(tmp_path)
    assert _run(str(tmp_path / "nope"), efw).returncode == 2
    res = _run(check, str(tmp_path))
    assert res.returncode == 2 and "bpf_helpers.h" in res.stderr
    res = _run(check, efw, "--clang", str(tmp_path / "no-clang"))
    assert res.returncode == 2 and "no-clang" in res.stderr
    assert not (tmp_path / "check.args").exists()


@pytest.mark.skipif(not (os.environ.get("L4LB_PREVAIL_CHECK") and os.environ.get("L4LB_EFW_INCLUDE")),
                    reason="set L4LB_PREVAIL_CHECK and L4LB_EFW_INCLUDE (README: eBPF-for-Windows check)")
def test_the_datapath_passes_for_ebpf_for_windows():
    res = _run(os.environ["L4LB_PREVAIL_CHECK"], os.environ["L4LB_EFW_INCLUDE"])
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[-1] == "check-efw: 7 passed, 0 failed"
