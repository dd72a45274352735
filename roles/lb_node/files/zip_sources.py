#!/usr/bin/env python3
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""lb_node (Windows), on the controller: pack repository paths into one reproducible zip for a
Windows node (PowerShell 5.1 reads zip, not tar.gz): names sorted, one fixed time and mode, no
__pycache__ or .pyc, so the same sources make the same bytes and copying it again changes
nothing. The node unpacks it with files/tool_sources.ps1.

    zip_sources.py REPO OUT.zip PATH...    (PATH relative to REPO: a file or a directory)
"""

import os
import sys
import zipfile

FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def files_of(repo, paths):
    found = set()
    for rel in paths:
        full = os.path.join(repo, rel)
        if os.path.isdir(full):
            for parent, dirs, names in os.walk(full):
                dirs[:] = [d for d in dirs if d != "__pycache__"]
                found.update(os.path.relpath(os.path.join(parent, n), repo) for n in names if not n.endswith(".pyc"))
        elif os.path.isfile(full):
            found.add(os.path.normpath(rel))
        else:
            raise SystemExit(f"zip_sources: {full} does not exist")
    return sorted(p.replace(os.sep, "/") for p in found)


def main(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    repo, out, paths = argv[0], argv[1], argv[2:]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = f"{out}.{os.getpid()}.tmp"
    with zipfile.ZipFile(tmp, "w") as z:
        for rel in files_of(repo, paths):
            info = zipfile.ZipInfo(rel, date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(os.path.join(repo, rel), "rb") as f:
                z.writestr(info, f.read(), compresslevel=9)
    os.replace(tmp, out)
    print(out)


if __name__ == "__main__":
    main(sys.argv[1:])
