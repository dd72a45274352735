# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Weighted Maglev lookup table (Eisenbud et al., NSDI 2016; weights as in Cilium >= 1.13).

Pure Python, stdlib only (modules run on the targets).

Determinism: each backend's permutation comes from SHA-256 of its identity string
(``"ip:port"``), never from its backend id, so the same backend set always yields the same
table, on any node, across restarts and id reallocations. Backends take turns in sorted
identity order (the input order does not matter).

    h = sha256(name); offset = h[0:8] % M; skip = h[8:16] % (M - 1) + 1
    position j of backend i's preference list: (offset_i + j * skip_i) mod M

Weights: in every round each backend with weight w earns w credits and claims one slot per
``W`` credits held (W = the largest weight), so equal weights give classic Maglev (one slot per
backend per round) and shares are proportional to weights. Weight 0 backends get no slots.
This is the idea of Cilium >= 1.13 (lighter backends skip turns) in our own formulation; tables
are not byte-identical to Cilium's (which also hashes with murmur3), and need not be: the
datapath only reads the table.

Table size M must be prime (so every skip is a full-cycle generator) and at least the number of
weighted backends (refused otherwise). M >= 100 x backends is Cilium's rule of thumb; smaller
tables work but balance in weights and disruption degrade, so :func:`size_warnings` (and the
reconcile plan's warnings) report it rather than refuse. The datapath's table size is a
compile-time macro (LB_MAGLEV_LUT_SIZE, default 2039) and must equal M.

Properties (tests/core/test_core_maglev.py): equal weights -> shares differ by at most one slot,
for any N <= M. Disruption is statistical, not a hard bound: removing one of N backends moves
its slots plus, on average over victims, about 0.2 x sqrt(N/M) of the other slots (measured:
N=4, M=2039: 0.7% mean, 2.5% worst of 160 removals; N=20, M=16381: 0.8%; N=50, M=65521:
0.5%). "Under 1% of the others" therefore holds on average once M >= ~400-800 x N; the lab (4
backends, M = 2039) is at the edge of it.

Speed: the fill loop probes with additions only; once few slots are left (where classic probing
needs ~M/free probes per claim) it switches to picking, for each turn, the free slot with the
lowest index in the backend's permutation (computed through the modular inverse of its skip):
exact same result, far fewer Python-level iterations. Results are memoised per
(identities, weights, M).
"""

from __future__ import annotations

import hashlib
from array import array
from functools import lru_cache
from operator import itemgetter

from .errors import InvalidConfig

DEFAULT_SIZE = 2039
MAX_SIZE = 131071
# Primes Cilium offers for its table size (>= 100 x backends recommended).
SUGGESTED_SIZES = (251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def check_size(m, nbackends: int = 0) -> int:
    if isinstance(m, bool) or not isinstance(m, int):
        raise InvalidConfig(f"maglev_size: {m!r} is not an integer")
    if not 3 <= m <= MAX_SIZE or not is_prime(m):
        raise InvalidConfig(f"maglev_size: {m} must be a prime in 3..{MAX_SIZE} (e.g. {SUGGESTED_SIZES})")
    if nbackends > m:
        raise InvalidConfig(f"maglev_size: {m} is smaller than the number of weighted backends ({nbackends})")
    return m


def size_warnings(m: int, nbackends: int) -> list[str]:
    if m < 100 * nbackends:
        return [f"maglev_size {m} < 100 x {nbackends} backends: Maglev balance/disruption bounds are weaker"]
    return []


@lru_cache(maxsize=65536)
def permutation(name: str, m: int) -> tuple[int, int]:
    """(offset, skip) of the backend named ``name`` for table size ``m``."""
    h = hashlib.sha256(name.encode()).digest()
    offset = int.from_bytes(h[0:8], "little") % m
    skip = int.from_bytes(h[8:16], "little") % (m - 1) + 1
    return offset, skip


def _sorted_key(items):
    order = sorted(range(len(items)), key=lambda i: items[i][0])
    return order, tuple((items[i][0], items[i][1]) for i in order)


def build(backends, m: int = DEFAULT_SIZE) -> list[int]:
    """Table of M indices into ``backends``.

    ``backends``: sequence of (name, weight). The returned list maps slot -> index into that
    sequence as given (callers map indices to backend ids). Raises InvalidConfig if no backend
    has a non-zero weight.
    """
    items = [(str(n), int(w)) for n, w in backends]
    order, key = _sorted_key(items)
    fill, active = _build_sorted(key, m)
    idx = [order[a] for a in active]
    return list(itemgetter(*fill)(idx))


def build_bytes(backend_ids_weights, m: int = DEFAULT_SIZE) -> bytes:
    """(name, weight, backend_id) triples -> the inner map value: u32 backend ids, native order.
    All weights 0 -> a table of zeros (backend id 0 = none)."""
    items = list(backend_ids_weights)
    if not any(item[1] for item in items):
        check_size(m)
        return bytes(4 * m)     # every slot "no backend" (0): the datapath drops new flows
    order, key = _sorted_key(items)
    fill, active = _build_sorted(key, m)
    ids = [items[order[a]][2] for a in active]
    return array("I", itemgetter(*fill)(ids)).tobytes()


@lru_cache(maxsize=1024)
def _build_sorted(key: tuple, m: int) -> tuple:
    """(fill, active): fill maps slot -> index into ``active``; active = indices into key of
    the backends with a non-zero weight."""
    names = [k[0] for k in key]
    weights = [k[1] for k in key]
    if len(set(names)) != len(names):
        raise InvalidConfig(f"backends: duplicate backend identity in {names}")
    active = tuple(i for i, w in enumerate(weights) if w > 0)
    if not active:
        raise InvalidConfig("backends: no backend has a non-zero weight")
    check_size(m, len(active))
    offs, skips = [], []
    for i in active:
        o, s = permutation(names[i], m)
        offs.append(o)
        skips.append(s)
    wts = [weights[i] for i in active]
    return tuple(_fill(offs, skips, wts, m)), active


def _fill(offs: list, skips: list, wts: list, m: int) -> list:
    """The population loop. Returns slot -> index into offs/skips/wts."""
    n = len(offs)
    table = [-1] * m
    cur = offs[:]                   # next candidate (offset) or the last claimed slot, per backend
    wmax = max(wts)
    equal = all(w == wmax for w in wts)
    credit = [0] * n
    everyone = list(range(n))

    def next_round() -> list:
        """Backends claiming in the next round, in turn order (each claims at most once)."""
        if equal:
            return everyone
        out = []
        for k in everyone:
            cr = credit[k] + wts[k]
            if cr >= wmax:
                cr -= wmax
                out.append(k)
            credit[k] = cr
        return out

    # Switch to free-slot scanning when about sqrt(M) slots are left: probing needs ~M/F probes
    # per claim there, scanning costs ~F per claim.
    late = max(int((m * 0.75) ** 0.5), 8)
    limit = m - late - n
    filled = 0
    while filled <= limit:
        ks = next_round()
        for k in ks:
            c = cur[k]
            if table[c] >= 0:       # taken (always so after k's own previous claim)
                s = skips[k]
                c += s
                if c >= m:
                    c -= m
                while table[c] >= 0:
                    c += s
                    if c >= m:
                        c -= m
            table[c] = k
            cur[k] = c
        filled += len(ks)
    # Late phase: every slot in backend k's permutation before its current position is taken,
    # so its next free slot is the free slot with the smallest permutation index.
    invs = [pow(s, m - 2, m) for s in skips]
    free = [p for p in range(m) if table[p] < 0]
    while free:
        for k in next_round():
            o = cur[k]
            inv = invs[k]
            j = min([((p - o) * inv) % m for p in free])
            p = (o + j * skips[k]) % m
            table[p] = k
            cur[k] = p
            free.remove(p)
            if not free:
                break
    return table


ALGORITHM_VERSION = 1   # bump when table contents for the same inputs would change


def fingerprint_name(backend_ids_weights, m: int, table: bytes) -> str:
    """BPF map name (15 chars) binding a table's inputs and its content: "mg" + 13 hex digits
    of SHA-256(version, M, sorted (name, weight, id), table bytes)."""
    desc = "|".join(sorted(f"{n}@{w}#{i}" for n, w, i in backend_ids_weights))
    h = hashlib.sha256(f"{ALGORITHM_VERSION}/{m}/{desc}/".encode())
    h.update(table)
    return "mg" + h.hexdigest()[:13]


def clear_cache() -> None:
    _build_sorted.cache_clear()
    permutation.cache_clear()


def describe_identities(slots) -> dict:
    """A table read back from a node, by backend identity (``"ip:port"`` per slot, ``"-"`` for no
    backend): its size, per-identity slot counts and a digest of the whole table. Backend ids are
    the node's own (allocated in the order it met its backends), so two LB nodes of a tier are
    compared by this digest: equal digests = every hash picks the same backend on both."""
    slots = list(slots)
    h = hashlib.sha256("\n".join(slots).encode()).hexdigest()
    return {"size": len(slots), "digest": h[:16], "slots": shares(slots)}


def shares(table) -> dict:
    """slot counts per value."""
    out: dict = {}
    for x in table:
        out[x] = out.get(x, 0) + 1
    return out
