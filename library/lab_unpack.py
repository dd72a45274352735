#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: files of an archive, sent inline, present on the node with the same bytes."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lab_unpack
short_description: Make the files of a tar.gz, sent inside the task, present below a directory
description:
  - Writes each regular file of I(archive) below I(dest) (created with its parents) when the file
    on the node is missing or differs in content or mode; directories are created as needed.
    Files below I(dest) that are not in the archive are left alone.
  - The archive travels in the module's arguments, so the whole check-and-write is one module
    run with no separate file transfer. That matters on emulated guests, where every module run
    costs seconds (C(ansible.builtin.unarchive) takes three steps - a directory task, a copy of
    the archive and C(tar --diff) - for the same result).
  - Changed only when a file was (or in check mode would be) written. Files are owned by root.
version_added: "0.1.0"
author: L4LB lab toolkit maintainers (@l4lb-lab)
options:
  archive:
    description:
      - The gzip-compressed tar archive, base64-encoded (what C(ansible.builtin.slurp) returns as
        C(content)). Only regular files and directories are accepted; absolute names, C(..) and
        links are refused before anything is written.
    type: str
    required: true
  dest:
    description: Absolute directory the archive's paths are relative to.
    type: path
    required: true
notes:
  - Supports check mode and diff (the list of files written).
"""

EXAMPLES = r"""
- name: The archive of the sources, read on the controller
  ansible.builtin.slurp:
    src: /repo/build/node-sources/bpf.tar.gz
  register: sources_archive
  delegate_to: localhost
  run_once: true

- name: The sources are present on the node
  lab_unpack:
    archive: "{{ sources_archive.content }}"
    dest: /run/l4lb/win1/src
"""

RETURN = r"""
written:
  description: Paths (relative to I(dest)) that were written, or would be in check mode.
  returned: always
  type: list
  elements: str
  sample: [bpf/decap_xdp.c]
files:
  description: Number of regular files in the archive.
  returned: always
  type: int
  sample: 17
"""

import base64
import binascii
import io
import os
import tarfile
import tempfile

from ansible.module_utils.basic import AnsibleModule


def read_members(archive_b64):
    """[(relative path, mode, bytes or None for a directory)] or raise ValueError naming the problem."""
    try:
        raw = base64.b64decode(archive_b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"archive is not base64: {e}")
    out = []
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
            for m in tar.getmembers():
                name = os.path.normpath(m.name)
                if os.path.isabs(m.name) or name == ".." or name.startswith("../"):
                    raise ValueError(f"archive member {m.name!r} points outside dest")
                if m.isdir():
                    out.append((name, m.mode & 0o7777, None))
                elif m.isfile():
                    out.append((name, m.mode & 0o7777, tar.extractfile(m).read()))
                else:
                    raise ValueError(f"archive member {m.name!r} is not a regular file or directory")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ValueError(f"archive is not a readable tar.gz: {e}")
    return out


def differs(path, mode, data):
    try:
        st = os.lstat(path)
        if (st.st_mode & 0o7777) != mode or st.st_size != len(data) or not os.path.isfile(path) or os.path.islink(path):
            return True
        with open(path, "rb") as f:
            return f.read() != data
    except FileNotFoundError:
        return True


def write_atomic(path, mode, data):
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".lab_unpack.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.chown(tmp, 0, 0)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main():
    module = AnsibleModule(
        argument_spec=dict(
            archive=dict(type="str", required=True, no_log=False),
            dest=dict(type="path", required=True),
        ),
        supports_check_mode=True,
    )
    dest = module.params["dest"]
    if not os.path.isabs(dest):
        module.fail_json(msg=f"dest {dest!r} must be an absolute path")
    try:
        members = read_members(module.params["archive"])
    except ValueError as e:
        module.fail_json(msg=str(e))
    written = [name for name, mode, data in members
               if data is not None and differs(os.path.join(dest, name), mode, data)]
    to_write = set(written)
    if written and not module.check_mode:
        for name, mode, data in members:
            if data is None:
                os.makedirs(os.path.join(dest, name), mode=0o755, exist_ok=True)
        for name, mode, data in members:
            if name in to_write:
                write_atomic(os.path.join(dest, name), mode, data)
    result = dict(changed=bool(written), written=written, files=sum(1 for m in members if m[2] is not None))
    if module._diff and written:
        result["diff"] = dict(before="", after="".join(f"written: {dest}/{n}\n" for n in written))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
