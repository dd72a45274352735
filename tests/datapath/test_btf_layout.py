"""The struct layouts are declared once (module_utils/l4lb/structs.py, ctypes) and must match the
compiled datapath's BTF: every struct's size, every field's offset and size, every map's type,
key size, value size and max_entries (statically from the BTF map definitions and, after
loading, from the kernel)."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess

import pytest

import dp_helpers as H
from l4lb import libbpf, structs as S

BPFTOOL = shutil.which("bpftool") or "/usr/sbin/bpftool"
# Additive to the ARCHITECTURE.md schema: verdict/drop reasons (enum lb_reason) -> lb_stats.
EXTRA_MAPS = {"lb4_stats_reason": (libbpf.BPF_MAP_TYPE_PERCPU_ARRAY, 4, ctypes.sizeof(S.LbStats), len(H.REASONS))}


class Btf:
    def __init__(self, path: str):
        out = subprocess.run([BPFTOOL, "-j", "btf", "dump", "file", path], capture_output=True, text=True,
                             check=True).stdout
        self.types = {t["id"]: t for t in json.loads(out)["types"]}

    def resolve(self, tid: int) -> dict:
        t = self.types[tid]
        while t["kind"] in ("TYPEDEF", "VOLATILE", "CONST", "RESTRICT"):
            t = self.types[t["type_id"]]
        return t

    def size(self, tid: int) -> int:
        t = self.resolve(tid)
        k = t["kind"]
        if k in ("INT", "STRUCT", "UNION", "ENUM"):
            return t["size"]
        if k == "PTR":
            return 8
        if k == "ARRAY":
            return self.size(t["type_id"]) * t["nr_elems"]
        raise AssertionError(f"cannot size BTF kind {k}")

    def struct(self, name: str) -> dict:
        found = [t for t in self.types.values() if t["kind"] == "STRUCT" and t["name"] == name]
        assert len(found) == 1, f"struct {name}: {len(found)} definitions in BTF"
        return found[0]

    def var(self, name: str) -> dict:
        found = [t for t in self.types.values() if t["kind"] == "VAR" and t["name"] == name]
        assert len(found) == 1, f"map {name} not in BTF"
        return self.resolve(found[0]["type_id"])

    def map_def(self, name: str, st: dict | None = None) -> dict:
        """{type, key_size, value_size, max_entries, values?} of a BTF-defined map."""
        st = st or self.var(name)
        out = {}
        for m in st["members"]:
            ptr = self.resolve(m["type_id"])
            if m["name"] in ("type", "max_entries", "map_flags", "pinning"):
                out[m["name"]] = self.resolve(ptr["type_id"])["nr_elems"]
            elif m["name"] in ("key", "value"):
                out[m["name"] + "_size"] = self.size(ptr["type_id"])
            elif m["name"] == "values":   # map-in-map: array of pointers to the inner definition
                arr = ptr
                inner = self.resolve(self.resolve(arr["type_id"])["type_id"])
                out["inner"] = self.map_def(name + ".inner", inner)
                out["value_size"] = 4
        return out

    def map_names(self) -> list[str]:
        secs = [t for t in self.types.values() if t["kind"] == "DATASEC" and t["name"] == ".maps"]
        return [self.types[v["type_id"]]["name"] for v in secs[0]["vars"]]


@pytest.fixture(scope="module", params=[("snat", 2039), ("dsr", 2039), ("snat", 251)],
                ids=["snat", "dsr", "snat-M251"])
def obj(request, compiled):
    mode, m = request.param
    res = compiled(mode, maglev_size=m)
    return res.path, m


def test_every_struct_matches_structs_py(obj):
    btf = Btf(obj[0])
    for cname, cls in S.C_STRUCTS.items():
        st = btf.struct(cname)
        assert st["size"] == ctypes.sizeof(cls), f"{cname}: BTF size {st['size']} != {ctypes.sizeof(cls)}"
        btf_fields = {m["name"]: m for m in st["members"]}
        py_fields = [f[0] for f in cls._fields_]
        assert list(btf_fields) == py_fields, f"{cname}: fields {list(btf_fields)} != {py_fields}"
        for name in py_fields:
            m = btf_fields[name]
            desc = getattr(cls, name)
            assert m["bits_offset"] % 8 == 0 and m["bits_offset"] // 8 == desc.offset, \
                f"{cname}.{name}: BTF offset {m['bits_offset'] // 8} != {desc.offset}"
            assert btf.size(m["type_id"]) == desc.size, \
                f"{cname}.{name}: BTF size {btf.size(m['type_id'])} != {desc.size}"


def test_every_map_definition_matches(obj):
    path, m = obj
    btf = Btf(path)
    specs = {**S.map_specs(m), **EXTRA_MAPS, S.MAGLEV_TEMPLATE: S.maglev_inner_spec(m)}
    assert sorted(btf.map_names()) == sorted(specs), "maps in the object differ from structs.map_specs"
    for name, (mtype, ksize, vsize, maxe) in specs.items():
        d = btf.map_def(name)
        assert (d["type"], d["key_size"], d["value_size"], d["max_entries"]) == (mtype, ksize, vsize, maxe), \
            f"{name}: BTF {d} != spec {(mtype, ksize, vsize, maxe)}"
    inner = btf.map_def("lb4_maglev")["inner"]
    assert inner == {"type": libbpf.BPF_MAP_TYPE_ARRAY, "key_size": 4, "value_size": S.maglev_value_size(m),
                     "max_entries": 1}


def test_maglev_template_is_the_inner_definition(obj):
    """eBPF-for-Windows (libbtf, PREVAIL) resolves lb4_maglev's inner map to the .maps variable
    whose BTF type is the one __array(values, ...) points at: the template must be that very type,
    and it must not be pinned (nothing reuses it)."""
    btf = Btf(obj[0])
    outer = btf.var("lb4_maglev")
    values = next(mb for mb in outer["members"] if mb["name"] == "values")
    inner_id = btf.resolve(btf.resolve(values["type_id"])["type_id"])["type_id"]
    tmpl = [t for t in btf.types.values() if t["kind"] == "VAR" and t["name"] == S.MAGLEV_TEMPLATE]
    assert len(tmpl) == 1 and tmpl[0]["type_id"] == inner_id
    assert "pinning" not in btf.map_def(S.MAGLEV_TEMPLATE)


def test_loaded_maps_match(obj, pin_root):
    """What the kernel created (map_info) agrees with structs.map_specs, and an inner map of
    the specified shape is accepted by lb4_maglev."""
    path, m = obj
    root = os.path.join(pin_root, f"btf-{os.path.basename(path)[:-2]}")
    os.makedirs(root, exist_ok=True)
    o = libbpf.BpfObject(path, root)
    try:
        o.load()
        for name, (mtype, ksize, vsize, maxe) in {**S.map_specs(m), **EXTRA_MAPS,
                                                  S.MAGLEV_TEMPLATE: S.maglev_inner_spec(m)}.items():
            info = libbpf.map_info(o.map_fd(name))
            assert (info.type, info.key_size, info.value_size, info.max_entries) == (mtype, ksize, vsize, maxe), name
        fd = libbpf.map_create(libbpf.BPF_MAP_TYPE_ARRAY, "lb4_maglev_in", 4, S.maglev_value_size(m), 1)
        try:
            with o.map("lb4_maglev") as outer:
                outer.update_fd(S.U16.pack(1), fd)
        finally:
            os.close(fd)
        bad = libbpf.map_create(libbpf.BPF_MAP_TYPE_ARRAY, "lb4_maglev_in", 4, S.maglev_value_size(m) + 4, 1)
        try:
            with o.map("lb4_maglev") as outer, pytest.raises(libbpf.BpfError):
                outer.update_fd(S.U16.pack(2), bad)
        finally:
            os.close(bad)
    finally:
        o.close()
        shutil.rmtree(root, ignore_errors=True)


def test_codecs_agree_with_ctypes():
    for cls, codec in S.CODECS.items():
        assert codec.size == ctypes.sizeof(cls), cls.__name__
