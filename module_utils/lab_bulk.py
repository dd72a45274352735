# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bulk download's known content, defined once: line i (from 0) is i as 63 decimal digits and
a newline, so every 64-byte line is unique and a file of it can be checked byte for byte.

``lab_nginx`` writes it (``bulk_kib``, the backends' ``<prefix>/html/bulk.bin``) and
``lab_http_probe`` compares what it downloads against it. Imported as
``ansible.module_utils.lab_bulk`` by the modules and as ``lab_bulk`` by tests.
"""

from __future__ import annotations

LINE = 64                # bytes per line: 63 digits and a newline
CHUNK_LINES = 16384      # 1 MiB per chunk


def chunks(size):
    """The first ``size`` bytes of the known content, in chunks of at most 1 MiB."""
    if size < 0:
        raise ValueError(f"size {size} is negative")
    lines = (size + LINE - 1) // LINE
    left = size
    for start in range(0, lines, CHUNK_LINES):
        block = b"".join(b"%063d\n" % i for i in range(start, min(start + CHUNK_LINES, lines)))
        yield block[:left]
        left -= min(len(block), left)


def content(size):
    """The first ``size`` bytes of the known content, as one bytes object."""
    return b"".join(chunks(size))


def matches(path, size):
    """True when the file at ``path`` is exactly the first ``size`` bytes of the known content
    (its size is compared first, then its bytes chunk by chunk); False when it differs or is
    missing."""
    try:
        with open(path, "rb") as f:
            if f.seek(0, 2) != size:
                return False
            f.seek(0)
            for want in chunks(size):
                if f.read(len(want)) != want:
                    return False
            return True
    except OSError:
        return False


def write(f, size):
    """Write the first ``size`` bytes of the known content to the binary file object ``f``."""
    for block in chunks(size):
        f.write(block)
