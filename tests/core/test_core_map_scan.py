"""Map.items_list(nonzero_prefix=N): an ARRAY's entries in use (the first N value bytes not all
zero), as the GC reads lb4_snat's slots and a reconcile reads the backends and fast-path ARRAYs.
The batch path skips unused entries while scanning its buffers; it must answer exactly what
filtering every entry would, across batch boundaries, and the by-key path (eBPF-for-Windows has
no batch calls) must answer the same."""

from __future__ import annotations

import os
import random

import pytest

from l4lb import libbpf, platform
from l4lb.libbpf import _nonzero_records

SIZE, PREFIX = 16, 4


def _records(n: int, used: set, tail_only: set) -> bytes:
    buf = bytearray(SIZE * n)
    for i in used:
        buf[i * SIZE:i * SIZE + PREFIX] = (i + 1).to_bytes(PREFIX, "little")
    for i in tail_only:   # zero prefix, non-zero bytes after it: not in use
        buf[i * SIZE + SIZE - 1] = 0xFF
    return bytes(buf)


def _filtered(pairs, prefix=PREFIX):
    return [(k, v) for k, v in pairs if v[:prefix] != bytes(prefix)]


@pytest.mark.parametrize("density", [0.0, 0.01, 0.5, 1.0])
def test_nonzero_records_are_the_records_with_a_nonzero_prefix(density):
    n = 3000
    rng = random.Random(density)
    used = set(rng.sample(range(n), int(n * density))) | ({0, 1, 2, n - 1} if density else set())
    tail_only = set(rng.sample(sorted(set(range(n)) - used), min(50, n - len(used))))
    raw = _records(n, used, tail_only)
    assert list(_nonzero_records(raw, SIZE, PREFIX)) == sorted(used)
    # a prefix as long as the value: any non-zero byte marks the record in use
    assert list(_nonzero_records(raw, SIZE, SIZE)) == sorted(used | tail_only)


@pytest.fixture
def array_map():
    if os.geteuid() != 0:
        pytest.skip("needs root (BPF maps)")
    n = 20000
    fd = libbpf.map_create(libbpf.BPF_MAP_TYPE_ARRAY, "scan_test", 4, SIZE, n)
    m = libbpf.Map(fd, "scan_test")
    used = {0, 1, 2, 3, 999, 1000, 1001, 8191, 8192, 8193, 16383, 16384, n - 1}
    tail_only = {5, 8190, 12345}
    raw = _records(n, used, tail_only)
    m.update_batch([(i.to_bytes(4, "little"), raw[i * SIZE:(i + 1) * SIZE]) for i in used | tail_only])
    yield m, used
    m.close()


def test_items_list_keeps_only_entries_in_use_by_batch_and_by_key(array_map, monkeypatch):
    m, used = array_map
    everything = m.items_list()
    assert len(everything) == m.max_entries
    expected = _filtered(everything)
    assert sorted(int.from_bytes(k, "little") for k, _ in expected) == sorted(used)
    assert m.items_list(nonzero_prefix=PREFIX) == expected
    # batches of 1000 split the runs of used entries (999-1001) and the tail-only ones
    assert m.items_list(chunk=1000, nonzero_prefix=PREFIX) == expected
    assert m.items_list(nonzero_prefix=SIZE) == _filtered(everything, SIZE)
    monkeypatch.setattr(platform.current(), "batch_ops", False)
    assert m.items_list(nonzero_prefix=PREFIX) == expected
