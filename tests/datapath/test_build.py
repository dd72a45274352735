"""module_utils/l4lb/build.py: validation before compiling, macro rendering, compiler errors."""

from __future__ import annotations

import os

import pytest

from l4lb import build, flowhash
from l4lb.errors import InvalidConfig, L4LBError

GOOD = dict(lb_ip="20.1.1.1", lb_mac="02:00:14:01:01:01", ifindex=3)


@pytest.mark.parametrize("bad,needle", [
    (dict(lb_ip="20.1.1"), "lb_ip"),
    (dict(lb_ip="224.0.0.1"), "lb_ip"),
    (dict(lb_mac="02:00:14:01:01"), "MAC"),
    (dict(lb_mac="01:00:5e:00:00:01"), "lb_mac"),
    (dict(ifindex=0), "ifindex"),
    (dict(ifindex=True), "ifindex"),
    (dict(mode="nat"), "mode"),
    (dict(maglev_size=2040), "maglev_size"),
    (dict(maglev_size=131101), "maglev_size"),
    (dict(snat_port_min=1000), "snat_port_min"),
    (dict(snat_port_min=62000, snat_port_max=61000), "snat_port_min"),
    (dict(snat_port_min=30000, snat_port_max=40000), "ephemeral"),
    (dict(snat_port_min=20000, snat_port_max=30000, ephemeral_range=(10000, 20000)), "ephemeral"),
    (dict(ncpus=0), "ncpus"),
    (dict(mtu=100), "mtu"),
])
def test_invalid_config_names_the_value(bad, needle):
    with pytest.raises(InvalidConfig, match=needle):
        build.BuildConfig(**{**GOOD, **bad})


def test_render_defines():
    cfg = build.BuildConfig(**GOOD, mode="dsr", maglev_size=251, ncpus=2, mtu=9000)
    d = build.render_defines(cfg)
    assert d == {"MODE_DSR": "1", "LB_IP": "0x01010114", "LB_MAC": "{0x02,0x00,0x14,0x01,0x01,0x01}",
                 "LB_IFINDEX": "3", "LB_MTU": "9000", "LB_MAGLEV_LUT_SIZE": "251", "SNAT_PORT_MIN": "1024",
                 "SNAT_PORT_MAX": "32767", "__NR_CPUS__": "2",
                 "LB_CT_SYN_TIMEOUT": "5", "LB_CT_TCP_TIMEOUT": "21600", "LB_CT_FIN_TIMEOUT": "10",
                 "LB_CT_CLOSED_TIMEOUT": "2", "LB_CT_UDP_TIMEOUT": "60", "LB_SNAT_TIME_WAIT": "60"}
    assert "#define LB_IP 0x01010114" in build.render_header(d)


def test_compile_lb_result(tmp_path):
    res = build.compile_lb(build.BuildConfig(**GOOD), tmp_path / "lb.o")
    assert res.path == str(tmp_path / "lb.o") and (tmp_path / "lb.o").stat().st_size > 0
    assert "-DMODE_SNAT=1" in res.cmdline and res.clang_version
    assert not list(tmp_path.glob(".*.tmp"))


def test_compile_error_carries_stderr(tmp_path):
    src = tmp_path / "broken.c"
    src.write_text("int f(void) { return undefined_symbol; }\n")
    with pytest.raises(L4LBError) as exc:
        build.compile_object(src, tmp_path / "broken.o")
    assert "undefined_symbol" in str(exc.value) and "undefined_symbol" in exc.value.stderr
    assert not (tmp_path / "broken.o").exists()


def test_an_unchanged_compile_is_skipped_and_any_changed_input_recompiles(tmp_path):
    """The build cache: same command, compiler and inputs (every file clang read, by SHA-256)
    and an untouched object -> no compile; a change to any of them -> a compile."""
    src = tmp_path / "prog.c"
    inc = tmp_path / "include"
    inc.mkdir()
    (inc / "value.h").write_text("#define VALUE 1\n")
    src.write_text('#include <linux/bpf.h>\n#include "value.h"\n'
                   '__attribute__((section("xdp"), used)) int prog(struct xdp_md *c) { return VALUE; }\n')
    out = tmp_path / "out" / "prog.o"
    first = build.compile_object(src, out)
    assert not first.cached
    again = build.compile_object(src, out)
    assert again.cached and again.cmdline == first.cmdline and again.clang_version == first.clang_version
    (inc / "value.h").write_text("#define VALUE 2\n")  # a header clang read
    assert not build.compile_object(src, out).cached
    assert build.compile_object(src, out).cached
    assert not build.compile_object(src, out, {"EXTRA": "1"}).cached  # another command
    out.write_bytes(out.read_bytes() + b"x")  # the object itself touched
    assert not build.compile_object(src, out, {"EXTRA": "1"}).cached
    assert sorted(p.name for p in out.parent.iterdir()) == [".prog.o.build.json", "prog.o"]


def test_missing_source_and_bad_decap_kind(tmp_path):
    with pytest.raises(InvalidConfig):
        build.compile_object(tmp_path / "nope.c", tmp_path / "x.o")
    with pytest.raises(InvalidConfig):
        build.compile_decap("ebpf", tmp_path / "x.o")


def test_flowhash_known_values():
    """Pinned values: a change of the hash is a change of the datapath contract (that the datapath
    computes the same hash is checked in test_maglev_datapath.py)."""
    assert flowhash.jhash_3words(0, 0, 0, 0) == 0x1B68E557
    assert flowhash.jhash_3words(1, 2, 3, 4) == 0x8103143F
    h = flowhash.flow_hash("20.1.1.100", "40.1.1.1", 40000, 80, 6)
    assert h == flowhash.flow_hash(0x14010164, b"\x28\x01\x01\x01", 40000, 80, 6)
    assert h != flowhash.flow_hash("20.1.1.100", "40.1.1.1", 40000, 80, 17)
    assert 0 <= flowhash.maglev_index("20.1.1.100", "40.1.1.1", 40000, 80, 6, 2039) < 2039


def _fake_clang(tmp_path):
    """A clang that records its arguments and writes an empty object."""
    log = tmp_path / "clang.args"
    clang = tmp_path / "clang"
    clang.write_text("#!/bin/sh\n"
                     "[ \"$1\" = --version ] && { echo 'fake clang 1'; exit 0; }\n"
                     f"printf '%s\\n' \"$@\" > {log}\n"
                     "while [ $# -gt 1 ]; do [ \"$1\" = -o ] && : > \"$2\"; shift; done\n")
    clang.chmod(0o755)
    return str(clang), log


def test_windows_target_command_line(tmp_path, monkeypatch):
    """efw_include selects compat.h's Windows branch: -DLB_TARGET_WINDOWS, the eBPF-for-Windows
    include directory after the project's, freestanding (clang's own stdint.h), no Linux
    multiarch include."""
    clang, log = _fake_clang(tmp_path)
    monkeypatch.setenv("L4LB_CLANG", clang)
    efw = tmp_path / "efw"
    efw.mkdir()
    (efw / "bpf_helpers.h").write_text("")
    res = build.compile_lb(build.BuildConfig(**GOOD), tmp_path / "lb.o", efw_include=efw)
    args = log.read_text().splitlines()
    assert args[:8] == ["-O2", "-g", "-target", "bpf", "-Wall", "-Wno-unused-function", "-ffreestanding",
                        f"-I{build.source_path('lb_xdp.c').parent / 'include'}"]
    assert args[9] == f"-I{efw}" and "-DLB_TARGET_WINDOWS" in args and "-DMODE_SNAT=1" in args
    assert not [a for a in args if a.startswith("-I/usr/include")]
    assert res.defines["LB_TARGET_WINDOWS"] is None
    build.compile_decap("xdp", tmp_path / "d.o", efw_include=efw)
    assert "-DLB_TARGET_WINDOWS" in log.read_text().splitlines()


def test_windows_target_refusals(tmp_path):
    with pytest.raises(InvalidConfig, match="bpf_helpers.h"):
        build.compile_lb(build.BuildConfig(**GOOD), tmp_path / "lb.o", efw_include=tmp_path)
    (tmp_path / "bpf_helpers.h").write_text("")
    with pytest.raises(InvalidConfig, match="Linux only"):
        build.compile_decap("tc", tmp_path / "d.o", efw_include=tmp_path)


@pytest.mark.skipif(not os.environ.get("L4LB_EFW_INCLUDE"),
                    reason="set L4LB_EFW_INCLUDE to eBPF-for-Windows v0.12.0's include/ (README)")
def test_windows_target_compiles_cleanly(tmp_path):
    """Against the real 0.12.0 headers: no error and no warning (eBPF-for-Windows uses -Werror)."""
    efw = os.environ["L4LB_EFW_INCLUDE"]
    for mode in build.MODES:
        res = build.compile_lb(build.BuildConfig(**GOOD, mode=mode), tmp_path / f"lb_{mode}.o", efw_include=efw)
        assert res.warnings == ""
    assert build.compile_decap("xdp", tmp_path / "decap.o", efw_include=efw).warnings == ""
