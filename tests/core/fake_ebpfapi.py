"""A stand-in for eBPF-for-Windows 0.12.0's EbpfApi.dll, iphlpapi, kernel32 and PowerShell, so
the Windows adapter and the core above it run here, on Linux, against an in-memory store.

Every attribute the core looks up on the fake library is recorded (``looked_up``); a name that
EbpfApi.dll 0.12.0 does not export raises AttributeError, as ctypes does for a missing symbol,
and is recorded in ``missing``. The behaviour follows eBPF-for-Windows' libbpf layer as far as
the core relies on it: -errno returns, its own info layouts and map type numbers, map-in-map
updates taking an fd and lookups answering the inner map's id, ``bpf_xdp_query_id`` answering
-ENOENT when nothing is attached, ``XDP_FLAGS_REPLACE`` (0x01) detaching what runs first.

An "object file" here is JSON: {"maps": {name: [efw type, key size, value size, max entries,
inner spec or null]}, "programs": [name, ...]}. File descriptors are real (one file per object
in ``tmpdir``), so ``os.close`` and ``os.dup`` work on them; an fd is resolved by its inode.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import struct

from l4lb.platform import windows as W

EFW_PERCPU = {4, 5, 11}
EFW_MAP_IN_MAP = {6, 7}


def _obj(arg):
    return getattr(arg, "_obj", arg)   # byref(x) -> x


def _read(arg, size=None) -> bytes:
    data = bytes(_obj(arg))
    return data if size is None else data[:size]


def _write(arg, data: bytes) -> None:
    ctypes.memmove(ctypes.addressof(_obj(arg)), data, len(data))


class _Fn:
    """A looked-up function: argtypes/restype settable (and ignored), callable."""

    def __init__(self, impl, on_call=None):
        self._impl = impl
        self._on_call = on_call
        self.argtypes = None
        self.restype = None

    def __call__(self, *args):
        if self._on_call:
            self._on_call()
        return self._impl(*args)


class _Map:
    def __init__(self, mid, mtype, ks, vs, maxe, name, flags=0, inner=None):
        self.id, self.type, self.key_size, self.value_size = mid, mtype, ks, vs
        self.max_entries, self.name, self.flags, self.inner = maxe, name, flags, inner
        self.data: dict = {}


class _Prog:
    def __init__(self, pid, name):
        self.id, self.name = pid, name


class FakeEbpfApi:
    def __init__(self, exports, tmpdir, ncpus=2):
        self._exports = frozenset(exports)
        self._tmpdir = tmpdir
        self.ncpus = ncpus
        self.looked_up: set = set()
        self.missing: set = set()
        self.called: set = set()
        self._by_ino: dict = {}
        self._by_id: dict = {}
        self._next_id = 1
        self._handles: dict = {}
        self._next_handle = 1000
        self.pins: dict = {}          # path -> _Map | _Prog
        self.links: dict = {}         # ifindex -> _Prog
        self._freed: list = []

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._exports:
            self.missing.add(name)
            raise AttributeError(f"function '{name}' not found")
        impl = getattr(type(self), "f_" + name, None)
        self.looked_up.add(name)
        fn = _Fn(impl.__get__(self) if impl else self._unsimulated(name), lambda: self.called.add(name))
        setattr(self, name, fn)
        return fn

    @staticmethod
    def _unsimulated(name):
        def call(*args):
            raise AssertionError(f"the fake does not simulate {name} (exported, but no test path calls it)")
        return call

    # --- the store --------------------------------------------------------------------------

    def _new(self, cls, *args):
        oid = self._next_id
        self._next_id += 1
        ob = cls(oid, *args)
        path = os.path.join(self._tmpdir, f"efw-{oid}")
        with open(path, "w"):
            pass
        self._by_ino[os.stat(path).st_ino] = ob
        self._by_id[oid] = ob
        ob.path = path
        return ob

    def _fd(self, ob) -> int:
        return os.open(ob.path, os.O_RDONLY)

    def _of(self, fd):
        try:
            return self._by_ino.get(os.fstat(fd).st_ino)
        except OSError:
            return None

    def _handle(self, value) -> int:
        self._next_handle += 1
        self._handles[self._next_handle] = value
        return self._next_handle

    def _value_size(self, m) -> int:
        return ((m.value_size + 7) & ~7) * self.ncpus if m.type in EFW_PERCPU else m.value_size

    # --- objects ------------------------------------------------------------------------------

    def f_bpf_object__open_file(self, path, opts):
        with open(os.fsdecode(path)) as f:
            spec = json.load(f)
        root = _obj(opts).pin_root_path if opts is not None else None
        return self._handle({"spec": spec, "root": os.fsdecode(root) if root else W.PIN_ROOT,
                             "maps": [], "progs": []})

    def f_bpf_object__load(self, h):
        o = self._handles[h]
        for name, (mtype, ks, vs, maxe, inner) in o["spec"]["maps"].items():
            pin = f"{o['root']}/{name}"
            m = self.pins.get(pin)
            if m is None:
                m = self._new(_Map, mtype, ks, vs, maxe, name, 0, inner)
                self.pins[pin] = m
            elif (m.type, m.key_size, m.value_size, m.max_entries) != (mtype, ks, vs, maxe):
                return -errno.EINVAL
            o["maps"].append(self._handle(m))
        for name in o["spec"]["programs"]:
            o["progs"].append(self._handle(self._new(_Prog, name)))
        return 0

    def f_bpf_object__close(self, h):
        self._handles.pop(h, None)

    def _next(self, h, prev, key):
        items = self._handles[h][key]
        if not prev:
            return items[0] if items else None
        i = items.index(prev) + 1
        return items[i] if i < len(items) else None

    def f_bpf_object__next_program(self, h, prev):
        return self._next(h, prev, "progs")

    def f_bpf_object__next_map(self, h, prev):
        return self._next(h, prev, "maps")

    def f_bpf_object__find_map_by_name(self, h, name):
        for mh in self._handles[h]["maps"]:
            if self._handles[mh].name == name.decode():
                return mh
        return None

    def f_bpf_program__fd(self, p):
        return self._fd(self._handles[p])

    def f_bpf_program__name(self, p):
        return self._handles[p].name.encode()

    def f_bpf_program__pin(self, p, path):
        return self._pin(self._handles[p], os.fsdecode(path))

    def f_bpf_map__fd(self, m):
        return self._fd(self._handles[m])

    def f_bpf_map__name(self, m):
        return self._handles[m].name.encode()

    # --- pins ---------------------------------------------------------------------------------

    def _pin(self, ob, path):
        if path in self.pins:
            return -errno.EEXIST
        self.pins[path] = ob
        return 0

    def f_bpf_obj_get(self, path):
        ob = self.pins.get(os.fsdecode(path))
        return self._fd(ob) if ob is not None else -errno.ENOENT

    def f_bpf_obj_pin(self, fd, path):
        ob = self._of(fd)
        return self._pin(ob, os.fsdecode(path)) if ob is not None else -errno.EBADF

    def f_ebpf_object_unpin(self, path):
        return W.EBPF_SUCCESS if self.pins.pop(os.fsdecode(path), None) is not None else W.EBPF_KEY_NOT_FOUND

    def f_ebpf_get_next_pinned_program_path(self, start, out):
        after = _obj(start).value.decode()
        progs = sorted(p for p, ob in self.pins.items() if isinstance(ob, _Prog) and p > after)
        if not progs:
            return W.EBPF_NO_MORE_KEYS
        _obj(out).value = progs[0].encode()
        return W.EBPF_SUCCESS

    def f_ebpf_api_get_pinned_map_info(self, count, infos):
        maps = sorted((p, m) for p, m in self.pins.items() if isinstance(m, _Map))
        arr = (W._EfwPinnedMapInfo * max(len(maps), 1))()
        for k, (path, m) in enumerate(maps):
            arr[k].type, arr[k].key_size, arr[k].value_size = m.type, m.key_size, m.value_size
            arr[k].max_entries, arr[k].pin_path = m.max_entries, path.encode()
        self._freed.append(arr)   # kept alive until freed
        _obj(count).value = len(maps)
        _obj(infos).contents = arr[0]
        return W.EBPF_SUCCESS

    def f_ebpf_api_map_info_free(self, count, infos):
        pass

    # --- info and ids ---------------------------------------------------------------------------

    def f_bpf_obj_get_info_by_fd(self, fd, info, size):
        ob, out = self._of(fd), _obj(info)
        if ob is None:
            return -errno.EBADF
        if isinstance(ob, _Map):
            assert isinstance(out, W._EfwMapInfo), "map info asked with another layout"
            out.id, out.type, out.key_size, out.value_size = ob.id, ob.type, ob.key_size, ob.value_size
            out.max_entries, out.map_flags, out.name = ob.max_entries, ob.flags, ob.name.encode()
        else:
            assert isinstance(out, W._EfwProgInfo), "program info asked with another layout"
            out.id, out.type, out.name, out.link_count = ob.id, 1, ob.name.encode(), 0
        _obj(size).value = ctypes.sizeof(out)
        return 0

    def f_bpf_prog_get_fd_by_id(self, pid):
        ob = self._by_id.get(pid)
        return self._fd(ob) if isinstance(ob, _Prog) else -errno.ENOENT

    def f_bpf_map_get_fd_by_id(self, mid):
        ob = self._by_id.get(mid)
        return self._fd(ob) if isinstance(ob, _Map) else -errno.ENOENT

    def f_libbpf_num_possible_cpus(self):
        return self.ncpus

    # --- maps -----------------------------------------------------------------------------------

    def f_bpf_map_create(self, mtype, name, ks, vs, maxe, opts):
        if mtype not in (1, 2, 4, 5, 6, 7, 8, 11):
            return -errno.EINVAL
        return self._fd(self._new(_Map, mtype, ks, vs, maxe, name.decode(), _obj(opts).map_flags))

    def f_bpf_map_lookup_elem(self, fd, key, value):
        m = self._of(fd)
        v = m.data.get(_read(key, m.key_size))
        if v is None:
            return -errno.ENOENT
        _write(value, v)
        return 0

    def f_bpf_map_update_elem(self, fd, key, value, flags):
        m = self._of(fd)
        k = _read(key, m.key_size)
        if m.type in EFW_MAP_IN_MAP:
            inner = self._of(struct.unpack("=I", _read(value, 4))[0])
            t, ks, vs, maxe = m.inner
            if inner is None or (inner.type, inner.key_size, inner.value_size, inner.max_entries) != (t, ks, vs, maxe):
                return -errno.EINVAL
            v = struct.pack("=I", inner.id)
        else:
            v = _read(value, self._value_size(m))
        if k not in m.data and len(m.data) >= m.max_entries:
            return -errno.E2BIG
        m.data[k] = v
        return 0

    def f_bpf_map_delete_elem(self, fd, key):
        m = self._of(fd)
        return 0 if m.data.pop(_read(key, m.key_size), None) is not None else -errno.ENOENT

    def f_bpf_map_get_next_key(self, fd, prev, nxt):
        m = self._of(fd)
        keys = sorted(m.data)
        if prev is not None:
            p = _read(prev, m.key_size)
            keys = [k for k in keys if k > p] if p in m.data else keys
        if not keys:
            return -errno.ENOENT
        _write(nxt, keys[0])
        return 0

    # --- XDP ------------------------------------------------------------------------------------

    def f_bpf_xdp_attach(self, ifindex, prog_fd, flags, opts):
        cur = self.links.get(ifindex)
        if prog_fd == -1 or flags & W.XDP_FLAGS_REPLACE:
            self.links.pop(ifindex, None)
            cur = None
        if prog_fd == -1:
            return 0
        if cur is not None:
            return -errno.EEXIST
        self.links[ifindex] = self._of(prog_fd)
        return 0

    def f_bpf_xdp_detach(self, ifindex, flags, opts):
        return self.f_bpf_xdp_attach(ifindex, -1, flags, opts)

    def f_bpf_xdp_query_id(self, ifindex, flags, prog_id):
        prog = self.links.get(ifindex)
        if prog is None:
            return -errno.ENOENT
        _obj(prog_id).value = prog.id
        return 0


class FakeSystem:
    """iphlpapi and kernel32: adapters by alias, SendARP from a neighbour table, named mutexes.
    Records the functions looked up per library."""

    def __init__(self, adapters, neighbours):
        self.adapters = adapters            # alias -> ifindex
        self.neighbours = neighbours        # ip -> mac bytes
        self.looked_up: dict = {}
        self.mutexes: dict = {}             # handle -> name
        self.held: set = set()

    def load(self, name):
        lib = _SysLib(self, name)
        return lib


class _SysLib:
    def __init__(self, system, name):
        self._system, self._name = system, name

    def __getattr__(self, fn):
        if fn.startswith("_"):
            raise AttributeError(fn)
        self._system.looked_up.setdefault(self._name, set()).add(fn)
        f = _Fn(getattr(self, "f_" + fn))
        setattr(self, fn, f)
        return f

    def f_ConvertInterfaceAliasToLuid(self, alias, luid):
        if alias not in self._system.adapters:
            return 1168   # ERROR_NOT_FOUND
        _obj(luid).value = 0x6000000 + self._system.adapters[alias]
        return 0

    def f_ConvertInterfaceLuidToIndex(self, luid, index):
        _obj(index).value = _obj(luid).value - 0x6000000
        return 0

    def f_SendARP(self, dest, src, mac, size):
        ip = ".".join(str(b) for b in dest.to_bytes(4, "little"))
        if ip not in self._system.neighbours:
            return 67     # ERROR_BAD_NET_NAME
        _write(mac, self._system.neighbours[ip])
        _obj(size).value = 6
        return 0

    def f_CreateMutexW(self, attrs, owner, name):
        handle = len(self._system.mutexes) + 1
        self._system.mutexes[handle] = name
        return handle

    def f_WaitForSingleObject(self, handle, ms):
        name = self._system.mutexes[handle]
        if name in self._system.held:
            return W._WAIT_TIMEOUT
        self._system.held.add(name)
        return 0

    def f_ReleaseMutex(self, handle):
        self._system.held.discard(self._system.mutexes[handle])
        return 1

    def f_CloseHandle(self, handle):
        return 1
