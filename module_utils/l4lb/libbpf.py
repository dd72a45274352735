# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The libbpf API over ctypes, as both systems export it: libbpf.so.1 on Linux, ebpfapi.dll on
Windows (eBPF-for-Windows exports bpf_object__open_file, bpf_obj_get, bpf_map_*_elem, ...), so the
rest of the core is written against this module and :mod:`.platform` only.

Which library is loaded, the layouts of the info structs, map type numbers, batch map calls,
XDP attachment, pins and devices differ between the two: those are the platform adapter's
(:mod:`.platform`; ``platform.current()``). Nothing here calls a function the other system
lacks, except the batch calls, which run only where the adapter has them (``batch_ops``).

libbpf 1.x convention: int-returning calls return -errno; pointer-returning calls return NULL
and set errno. Every failure raises :class:`BpfError` naming the operation.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import re

from . import platform
from .errors import BpfError

# --- constants (uapi/linux/bpf.h): the core's numbering on every platform ---------------------

BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2

BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_LRU_HASH = 9
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
BPF_MAP_TYPE_ARRAY_OF_MAPS = 12
BPF_MAP_TYPE_HASH_OF_MAPS = 13

PERCPU_MAP_TYPES = frozenset(
    {BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_LRU_PERCPU_HASH}
)

# Linux XDP verdicts (eBPF-for-Windows numbers them differently; see bpf/include/compat.h).
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)
TC_ACT_OK, TC_ACT_SHOT = 0, 2


# --- option structs (libbpf 1.1 layouts; `sz` first, so newer libbpf accepts them) -------

class ObjectOpenOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("object_name", ctypes.c_char_p),
        ("relaxed_maps", ctypes.c_bool),
        ("pin_root_path", ctypes.c_char_p),
        ("_unused_attach_prog_fd", ctypes.c_uint32),
        ("kconfig", ctypes.c_char_p),
        ("btf_custom_path", ctypes.c_char_p),
        ("kernel_log_buf", ctypes.c_char_p),
        ("kernel_log_size", ctypes.c_size_t),
        ("kernel_log_level", ctypes.c_uint32),
    ]


class TestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


class MapBatchOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


class XdpAttachOpts(ctypes.Structure):
    _fields_ = [("sz", ctypes.c_size_t), ("old_prog_fd", ctypes.c_int)]


class MapCreateOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("btf_fd", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
        ("numa_node", ctypes.c_uint32),
        ("map_ifindex", ctypes.c_uint32),
    ]


# --- the functions both systems export, and the library ------------------------------------

_vp, _cp, _i, _u32 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32
_u32p = ctypes.POINTER(_u32)

# name -> (restype, argtypes): what this module calls on either system. An adapter sets these
# (and its own functions') signatures when it loads its library.
SIGNATURES = {
    "bpf_object__open_file": (_vp, [_cp, ctypes.POINTER(ObjectOpenOpts)]),
    "bpf_object__load": (_i, [_vp]),
    "bpf_object__close": (None, [_vp]),
    "bpf_object__next_program": (_vp, [_vp, _vp]),
    "bpf_object__find_map_by_name": (_vp, [_vp, _cp]),
    "bpf_object__next_map": (_vp, [_vp, _vp]),
    "bpf_program__fd": (_i, [_vp]),
    "bpf_program__name": (_cp, [_vp]),
    "bpf_program__pin": (_i, [_vp, _cp]),
    "bpf_map__fd": (_i, [_vp]),
    "bpf_map__name": (_cp, [_vp]),
    "bpf_obj_get": (_i, [_cp]),
    "bpf_obj_pin": (_i, [_i, _cp]),
    "bpf_obj_get_info_by_fd": (_i, [_i, _vp, _u32p]),
    "bpf_map_create": (_i, [_i, _cp, _u32, _u32, _u32, ctypes.POINTER(MapCreateOpts)]),
    "bpf_map_lookup_elem": (_i, [_i, _vp, _vp]),
    "bpf_map_update_elem": (_i, [_i, _vp, _vp, ctypes.c_uint64]),
    "bpf_map_delete_elem": (_i, [_i, _vp]),
    "bpf_map_get_next_key": (_i, [_i, _vp, _vp]),
    "bpf_prog_get_fd_by_id": (_i, [_u32]),
    "bpf_map_get_fd_by_id": (_i, [_u32]),
    "bpf_prog_test_run_opts": (_i, [_i, ctypes.POINTER(TestRunOpts)]),
    "bpf_xdp_attach": (_i, [_i, _i, _u32, ctypes.POINTER(XdpAttachOpts)]),
    "bpf_xdp_detach": (_i, [_i, _u32, ctypes.POINTER(XdpAttachOpts)]),
    "libbpf_num_possible_cpus": (_i, []),
}

# The batch calls (Linux >= 5.6; not in eBPF-for-Windows): called only where batch_ops is set.
BATCH_SIGNATURES = {
    "bpf_map_lookup_batch": (_i, [_i, _vp, _vp, _vp, _vp, _u32p, ctypes.POINTER(MapBatchOpts)]),
    "bpf_map_update_batch": (_i, [_i, _vp, _vp, _u32p, ctypes.POINTER(MapBatchOpts)]),
    "bpf_map_delete_batch": (_i, [_i, _vp, _u32p, ctypes.POINTER(MapBatchOpts)]),
}


def set_signatures(lib, signatures: dict) -> None:
    """Set restype/argtypes of each function in ``signatures`` that ``lib`` has (an older
    library without one fails only when it is called)."""
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(lib, name, None)
        if fn is None:
            continue
        fn.restype = restype
        fn.argtypes = argtypes


class _LazyLib:
    """The current platform's library, loaded on first use: importing this module works
    without it (a module can then report a missing library as a task failure), and each
    function is looked up once (again after ``platform.use`` switches adapters)."""

    def __getattr__(self, name):
        fn = getattr(platform.current().library(), name)
        setattr(self, name, fn)
        return fn

    def _reset(self) -> None:
        self.__dict__.clear()


_lib = _LazyLib()
platform.on_switch(_lib._reset)


def take_log() -> str:
    """Return and clear what the library logged since the last call (warnings, verifier output)."""
    return platform.current().take_log()


# What a kernel or map type without batch lookups answers (the callers fall back to one by one).
_BATCH_REFUSED = (_errno.EINVAL, _errno.ENOTSUP, _errno.EOPNOTSUPP, _errno.ENOSYS)

_NONZERO_BYTE = re.compile(rb"[^\x00]")


def _nonzero_records(raw: bytes, size: int, prefix: int):
    """Indexes of the ``size``-byte records of ``raw`` whose first ``prefix`` bytes are not all
    zero. The search for the next non-zero byte runs in C, so zero runs cost about their copy
    (a sparse ARRAY is scanned without a Python object per unused entry); a run of records in
    use is read record by record."""
    zero = bytes(prefix)
    end = len(raw)
    pos = 0
    while pos < end:
        found = _NONZERO_BYTE.search(raw, pos)
        if found is None:
            return
        start = found.start() - found.start() % size
        if raw[start:start + prefix] == zero:   # its non-zero bytes lie past the prefix
            pos = start + size
            continue
        while start < end and raw[start:start + prefix] != zero:
            yield start // size
            start += size
        pos = start


def _check(ret: int, op: str, what: str = "") -> int:
    if ret < 0:
        err = -ret
        raise BpfError(op, err, what)
    return ret


def _check_ptr(ptr, op: str, what: str = ""):
    if not ptr:
        err = ctypes.get_errno() or _errno.EINVAL
        raise BpfError(op, err, what)
    return ptr


def num_possible_cpus() -> int:
    return _check(_lib.libbpf_num_possible_cpus(), "libbpf_num_possible_cpus")


# --- pinned objects and info ------------------------------------------------------------

def obj_get(path: str) -> int:
    """Open a pinned map or program; returns a new fd (caller closes it)."""
    return _check(_lib.bpf_obj_get(os.fsencode(path)), "bpf_obj_get", path)


def obj_pin(fd: int, path: str) -> None:
    _check(_lib.bpf_obj_pin(fd, os.fsencode(path)), "bpf_obj_pin", path)


def obj_info(fd: int, info, what: str):
    """Fill the ctypes struct ``info`` (the platform's layout) from ``fd``."""
    size = ctypes.c_uint32(ctypes.sizeof(info))
    _check(_lib.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)), f"bpf_obj_get_info_by_fd({what})")
    return info


def map_info(fd: int) -> platform.MapInfo:
    return platform.current().map_info(fd)


def prog_info(fd: int) -> platform.ProgInfo:
    return platform.current().prog_info(fd)


def prog_fd_by_id(prog_id: int) -> int:
    return _check(_lib.bpf_prog_get_fd_by_id(prog_id), "bpf_prog_get_fd_by_id", str(prog_id))


def map_fd_by_id(map_id: int) -> int:
    return _check(_lib.bpf_map_get_fd_by_id(map_id), "bpf_map_get_fd_by_id", str(map_id))


# --- maps ---------------------------------------------------------------------------------

class Map:
    """A BPF map opened by fd, with raw-bytes element operations.

    Keys and values are ``bytes`` (or ctypes objects, converted with ``bytes()``); for per-CPU
    maps a value is ``value_size`` rounded up to 8, times the number of possible CPUs.
    """

    def __init__(self, fd: int, name: str = ""):
        self.fd = fd
        info = map_info(fd)
        self.name = name or info.name
        self.type = info.type
        self.id = info.id
        self.key_size = info.key_size
        self.value_size = info.value_size
        self.max_entries = info.max_entries
        if self.type in PERCPU_MAP_TYPES:
            self.ncpus = num_possible_cpus()
            self.stride = (self.value_size + 7) & ~7
            self.full_value_size = self.stride * self.ncpus
        else:
            self.ncpus = 1
            self.stride = self.value_size
            self.full_value_size = self.value_size

    @classmethod
    def from_pin(cls, path: str) -> "Map":
        return cls(obj_get(path), os.path.basename(path))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _key(self, key) -> ctypes.Array:
        data = bytes(key)
        if len(data) != self.key_size:
            raise ValueError(f"map {self.name}: key is {len(data)} bytes, map wants {self.key_size}")
        return ctypes.create_string_buffer(data, len(data))

    def lookup(self, key) -> bytes | None:
        k = self._key(key)
        v = ctypes.create_string_buffer(self.full_value_size)
        ret = _lib.bpf_map_lookup_elem(self.fd, k, v)
        if ret == -_errno.ENOENT:
            return None
        _check(ret, "bpf_map_lookup_elem", self.name)
        return v.raw

    def update(self, key, value, flags: int = BPF_ANY) -> None:
        data = bytes(value)
        if len(data) not in (self.value_size, self.full_value_size):
            raise ValueError(f"map {self.name}: value is {len(data)} bytes, map wants {self.value_size}")
        k = self._key(key)
        v = ctypes.create_string_buffer(data, len(data))
        _check(_lib.bpf_map_update_elem(self.fd, k, v, flags), "bpf_map_update_elem", self.name)

    def update_fd(self, key, inner_fd: int, flags: int = BPF_ANY) -> None:
        """Map-in-map: store the inner map referenced by fd."""
        k = self._key(key)
        v = ctypes.c_uint32(inner_fd)
        _check(_lib.bpf_map_update_elem(self.fd, k, ctypes.byref(v), flags), "bpf_map_update_elem", self.name)

    def delete(self, key) -> bool:
        """Delete a key; False if it was not there."""
        ret = _lib.bpf_map_delete_elem(self.fd, self._key(key))
        if ret == -_errno.ENOENT:
            return False
        _check(ret, "bpf_map_delete_elem", self.name)
        return True

    def keys(self):
        prev = None
        nxt = ctypes.create_string_buffer(self.key_size)
        while True:
            ret = _lib.bpf_map_get_next_key(self.fd, prev, nxt)
            if ret == -_errno.ENOENT:
                return
            _check(ret, "bpf_map_get_next_key", self.name)
            key = nxt.raw
            yield key
            prev = ctypes.create_string_buffer(key, len(key))

    def _items_by_key(self):
        """(key, value) pairs one syscall each: the fallback where batch lookups are refused."""
        for key in list(self.keys()):
            value = self.lookup(key)
            if value is not None:
                yield key, value

    def items(self):
        """All (key, value) pairs. Uses one batch call where the kernel supports it."""
        if not platform.current().batch_ops:
            yield from self._items_by_key()
            return
        try:
            yield from self.lookup_batch()
            return
        except BpfError as exc:
            if exc.errno not in _BATCH_REFUSED:
                raise
        yield from self._items_by_key()

    def percpu_values(self, value: bytes) -> list[bytes]:
        return [value[i * self.stride : i * self.stride + self.value_size] for i in range(self.ncpus)]

    # Batch operations (Linux >= 5.6): hash and ARRAY maps; where refused (_BATCH_REFUSED) the caller
    # falls back to one by one.
    def _lookup_batches(self, chunk: int, nonzero_prefix: int = 0):
        """The one bpf_map_lookup_batch loop: yields each batch as a list of (key, value), only
        those whose value's first ``nonzero_prefix`` bytes are not all zero when that is > 0.
        Each batch's buffers are copied out once (``.raw`` copies the whole buffer)."""
        count = min(chunk, max(self.max_entries, 1))
        ks, vs = self.key_size, self.full_value_size
        keys = ctypes.create_string_buffer(ks * count)
        values = ctypes.create_string_buffer(vs * count)
        in_batch = None
        out_batch = ctypes.create_string_buffer(max(ks, 8))
        opts = MapBatchOpts(sz=ctypes.sizeof(MapBatchOpts))
        while True:
            n = ctypes.c_uint32(count)
            ret = _lib.bpf_map_lookup_batch(
                self.fd, in_batch, out_batch, keys, values, ctypes.byref(n), ctypes.byref(opts)
            )
            done = ret == -_errno.ENOENT
            if ret < 0 and not done:
                _check(ret, "bpf_map_lookup_batch", self.name)
            got = n.value
            if got:
                kraw = keys.raw[: ks * got]
                vraw = values.raw[: vs * got]
                if nonzero_prefix:
                    yield [(kraw[i * ks:(i + 1) * ks], vraw[i * vs:(i + 1) * vs])
                           for i in _nonzero_records(vraw, vs, nonzero_prefix)]
                else:
                    yield list(zip([kraw[i:i + ks] for i in range(0, ks * got, ks)],
                                   [vraw[i:i + vs] for i in range(0, vs * got, vs)]))
            if done:
                return
            in_batch = ctypes.create_string_buffer(out_batch.raw, len(out_batch.raw))

    def lookup_batch(self, chunk: int = 4096):
        """All (key, value) pairs, one batch syscall per ``chunk`` entries (BpfError if refused)."""
        for batch in self._lookup_batches(chunk):
            yield from batch

    def items_list(self, chunk: int = 8192, nonzero_prefix: int = 0) -> list:
        """All (key, value) pairs as a list, like items() but with bigger batches. With
        ``nonzero_prefix`` > 0, only the pairs whose value's first that many bytes are not all
        zero: an ARRAY's entries in use, where every index has an entry and zero marks an unused
        one (the unused ones are skipped in the batch buffers, at C speed)."""
        if not platform.current().batch_ops:
            return self._nonzero_only(self._items_by_key(), nonzero_prefix)
        out = []
        try:
            for batch in self._lookup_batches(chunk, nonzero_prefix):
                out.extend(batch)
        except BpfError as exc:
            if out or exc.errno not in _BATCH_REFUSED:
                raise
            return self._nonzero_only(self._items_by_key(), nonzero_prefix)
        return out

    @staticmethod
    def _nonzero_only(pairs, nonzero_prefix: int) -> list:
        zero = bytes(nonzero_prefix)
        return [(k, v) for k, v in pairs if not nonzero_prefix or v[:nonzero_prefix] != zero]

    def update_batch(self, pairs, flags: int = BPF_ANY) -> None:
        """Write many (key, value) pairs in one syscall; falls back to single updates."""
        pairs = [(bytes(k), bytes(v)) for k, v in pairs]
        if not pairs:
            return
        if not platform.current().batch_ops:
            for k, v in pairs:
                self.update(k, v, flags)
            return
        keys = b"".join(kv[0] for kv in pairs)
        values = b"".join(kv[1] for kv in pairs)
        n = ctypes.c_uint32(len(pairs))
        opts = MapBatchOpts(sz=ctypes.sizeof(MapBatchOpts), elem_flags=flags)
        ret = _lib.bpf_map_update_batch(
            self.fd,
            ctypes.create_string_buffer(keys, len(keys)),
            ctypes.create_string_buffer(values, len(values)),
            ctypes.byref(n),
            ctypes.byref(opts),
        )
        if ret in (-_errno.EINVAL, -_errno.ENOTSUP, -_errno.EOPNOTSUPP) and n.value == 0:
            for k, v in pairs:
                self.update(k, v, flags)
            return
        _check(ret, "bpf_map_update_batch", self.name)

    def delete_batch(self, keys) -> None:
        keys = [bytes(k) for k in keys]
        if not keys:
            return
        if not platform.current().batch_ops:
            for k in keys:
                self.delete(k)
            return
        blob = b"".join(keys)
        n = ctypes.c_uint32(len(keys))
        opts = MapBatchOpts(sz=ctypes.sizeof(MapBatchOpts))
        ret = _lib.bpf_map_delete_batch(
            self.fd, ctypes.create_string_buffer(blob, len(blob)), ctypes.byref(n), ctypes.byref(opts)
        )
        if ret in (-_errno.EINVAL, -_errno.ENOTSUP, -_errno.EOPNOTSUPP) and n.value == 0:
            for k in keys:
                self.delete(k)
            return
        _check(ret, "bpf_map_delete_batch", self.name)


def map_create(map_type: int, name: str, key_size: int, value_size: int, max_entries: int,
               inner_map_fd: int = 0, map_flags: int = 0) -> int:
    opts = MapCreateOpts(sz=ctypes.sizeof(MapCreateOpts), inner_map_fd=inner_map_fd, map_flags=map_flags)
    return _check(
        _lib.bpf_map_create(platform.current().native_map_type(map_type), name.encode(), key_size, value_size, max_entries, ctypes.byref(opts)),
        "bpf_map_create",
        name,
    )


# --- objects and programs -----------------------------------------------------------------

class BpfObject:
    """A compiled .o opened and (optionally) loaded through libbpf.

    ``pin_root_path``: maps declared with ``pinning = LIBBPF_PIN_BY_NAME`` are reused from
    ``<pin_root_path>/<map name>`` when compatible, or created and pinned there, so services
    and connection tracking survive a program reload.
    """

    def __init__(self, path: str, pin_root_path: str | None = None):
        self.path = path
        self._pin_root = os.fsencode(pin_root_path) if pin_root_path else None
        opts = ObjectOpenOpts(sz=ctypes.sizeof(ObjectOpenOpts), pin_root_path=self._pin_root)
        take_log()
        self._obj = _check_ptr(_lib.bpf_object__open_file(os.fsencode(path), ctypes.byref(opts)),
                               "bpf_object__open_file", path)
        self.loaded = False

    def load(self) -> None:
        take_log()
        ret = _lib.bpf_object__load(self._obj)
        if ret < 0:
            raise BpfError("bpf_object__load", -ret, self.path, log=take_log())
        self.loaded = True

    def programs(self) -> dict[str, "Program"]:
        progs, prev = {}, None
        while True:
            prev = _lib.bpf_object__next_program(self._obj, prev)
            if not prev:
                return progs
            progs[_lib.bpf_program__name(prev).decode()] = Program(prev)

    def program(self, name: str | None = None) -> "Program":
        progs = self.programs()
        if name is None:
            if len(progs) != 1:
                raise BpfError("find program", _errno.ENOENT, f"{self.path} has {sorted(progs)}; name one")
            return next(iter(progs.values()))
        if name not in progs:
            raise BpfError("find program", _errno.ENOENT, f"{name} not in {self.path} ({sorted(progs)})")
        return progs[name]

    def map_names(self) -> list[str]:
        names, prev = [], None
        while True:
            prev = _lib.bpf_object__next_map(self._obj, prev)
            if not prev:
                return names
            names.append(_lib.bpf_map__name(prev).decode())

    def map_fd(self, name: str) -> int:
        m = _check_ptr(_lib.bpf_object__find_map_by_name(self._obj, name.encode()), "find map", name)
        return _check(_lib.bpf_map__fd(m), "bpf_map__fd", name)

    def map(self, name: str) -> Map:
        """A Map over a dup of the object's fd (valid after the object is closed)."""
        return Map(os.dup(self.map_fd(name)), name)

    def close(self) -> None:
        if self._obj:
            _lib.bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Program:
    def __init__(self, handle):
        self._p = handle

    @property
    def name(self) -> str:
        return _lib.bpf_program__name(self._p).decode()

    @property
    def fd(self) -> int:
        return _check(_lib.bpf_program__fd(self._p), "bpf_program__fd", self.name)

    def pin(self, path: str) -> None:
        _check(_lib.bpf_program__pin(self._p, os.fsencode(path)), "bpf_program__pin", path)


# --- test runs (BPF_PROG_TEST_RUN; eBPF-for-Windows exports it too) --------------------------------------------------

def prog_test_run(prog_fd: int, data: bytes, repeat: int = 1, out_size: int | None = None) -> tuple[int, bytes, int]:
    """Run a program on one packet; returns (retval, packet out, duration ns per run)."""
    size_out = out_size if out_size is not None else len(data) + 512
    din = ctypes.create_string_buffer(data, len(data))
    dout = ctypes.create_string_buffer(size_out)
    opts = TestRunOpts(
        sz=ctypes.sizeof(TestRunOpts),
        data_in=ctypes.cast(din, ctypes.c_void_p),
        data_out=ctypes.cast(dout, ctypes.c_void_p),
        data_size_in=len(data),
        data_size_out=size_out,
        repeat=repeat,
    )
    _check(_lib.bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)), "bpf_prog_test_run_opts")
    return opts.retval, dout.raw[: opts.data_size_out], opts.duration


class TestRunner:
    """Reusable buffers for many BPF_PROG_TEST_RUN calls (benchmarks, fuzzing)."""

    def __init__(self, prog_fd: int, max_size: int = 2048):
        self.prog_fd = prog_fd
        self.din = ctypes.create_string_buffer(max_size)
        self.dout = ctypes.create_string_buffer(max_size + 512)
        self.opts = TestRunOpts(sz=ctypes.sizeof(TestRunOpts))
        self.opts.data_in = ctypes.cast(self.din, ctypes.c_void_p)
        self.opts.data_out = ctypes.cast(self.dout, ctypes.c_void_p)
        self._run = _lib.bpf_prog_test_run_opts
        self._ref = ctypes.byref(self.opts)

    def run(self, data: bytes, repeat: int = 1) -> tuple[int, int]:
        """Copy ``data`` in fresh and run; returns (retval, duration ns). Output in .output()."""
        ctypes.memmove(self.din, data, len(data))
        o = self.opts
        o.data_size_in = len(data)
        o.data_size_out = len(self.dout)
        o.repeat = repeat
        ret = self._run(self.prog_fd, self._ref)
        if ret < 0:
            _check(ret, "bpf_prog_test_run_opts")
        return o.retval, o.duration

    def output(self) -> bytes:
        return self.dout.raw[: self.opts.data_size_out]
