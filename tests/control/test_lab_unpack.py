"""lab_unpack (node_sources' one module run on a node): files written only when they differ,
check mode writes nothing, bad archives are refused before anything is written."""

from __future__ import annotations

import base64
import io
import os
import tarfile

from test_module_args import run


def archive(files, extra=None):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, (mode, data) in files.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, mode
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
        if extra:
            tar.addfile(extra)
    return base64.b64encode(buf.getvalue()).decode()


FILES = {"bpf": (0o755, None), "bpf/a.c": (0o644, b"int a;\n"), "bin/tool": (0o755, b"#!/bin/sh\n")}


def test_writes_then_nothing_then_only_what_differs(tmp_path):
    dest = str(tmp_path / "src")
    args = {"archive": archive(FILES), "dest": dest}

    r = run("lab_unpack", {**args, "_ansible_check_mode": True, "_ansible_diff": True})
    assert r["changed"] is True and sorted(r["written"]) == ["bin/tool", "bpf/a.c"]
    assert "written: " + dest + "/bpf/a.c" in r["diff"]["after"]
    assert not os.path.exists(dest), "check mode must not write"

    r = run("lab_unpack", args)
    assert r["changed"] is True and r["files"] == 2
    assert open(os.path.join(dest, "bpf/a.c"), "rb").read() == b"int a;\n"
    assert os.stat(os.path.join(dest, "bin/tool")).st_mode & 0o777 == 0o755

    assert run("lab_unpack", args)["changed"] is False

    # A file changed on the node, another's mode: both rewritten, nothing else.
    with open(os.path.join(dest, "bpf/a.c"), "w") as f:
        f.write("int b;\n")
    os.chmod(os.path.join(dest, "bin/tool"), 0o700)
    open(os.path.join(dest, "bpf/local.o"), "w").close()
    r = run("lab_unpack", args)
    assert sorted(r["written"]) == ["bin/tool", "bpf/a.c"]
    assert open(os.path.join(dest, "bpf/a.c"), "rb").read() == b"int a;\n"
    assert os.path.exists(os.path.join(dest, "bpf/local.o")), "files not in the archive are left alone"
    assert not [n for n in os.listdir(os.path.join(dest, "bpf")) if n.startswith(".lab_unpack.")]


def test_refuses_escapes_links_and_garbage(tmp_path):
    dest = str(tmp_path / "src")
    link = tarfile.TarInfo("bpf/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    cases = [
        (archive({"../evil": (0o644, b"x")}), "outside dest"),
        (archive({"/etc/evil": (0o644, b"x")}), "outside dest"),
        (archive(FILES, extra=link), "not a regular file"),
        ("not base64!", "not base64"),
        (base64.b64encode(b"plain bytes").decode(), "not a readable tar.gz"),
    ]
    for blob, needle in cases:
        r = run("lab_unpack", {"archive": blob, "dest": dest})
        assert r.get("failed") and needle in r["msg"], r
        assert not os.path.exists(dest), f"{needle}: nothing may be written"
    r = run("lab_unpack", {"archive": archive(FILES), "dest": "relative/dir"})
    assert r.get("failed") and "absolute" in r["msg"]
