"""Maglev table properties: balance, disruption, weights, determinism, reference equality."""

import random

import pytest

from l4lb import maglev
from l4lb.errors import InvalidConfig


def names(n, seed=0):
    rnd = random.Random(seed)
    out = set()
    while len(out) < n:
        out.add(f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}:{rnd.choice([80, 443, 8080])}")
    return sorted(out)


def reference(items, m):
    """Textbook Maglev population (paper's pseudo-code), equal or weighted via credits."""
    items = sorted(items)
    act = [i for i, (_, w) in enumerate(items) if w > 0]
    perms = [maglev.permutation(items[i][0], m) for i in act]
    wts = [items[i][1] for i in act]
    wmax = max(wts)
    credit = [0] * len(act)
    nxt = [0] * len(act)
    table = [None] * m
    filled = 0
    while True:
        for k, (o, s) in enumerate(perms):
            credit[k] += wts[k]
            if credit[k] < wmax:
                continue
            credit[k] -= wmax
            c = (o + nxt[k] * s) % m
            while table[c] is not None:
                nxt[k] += 1
                c = (o + nxt[k] * s) % m
            table[c] = items[act[k]][0]
            nxt[k] += 1
            filled += 1
            if filled == m:
                return table


@pytest.mark.parametrize("n,m", [(1, 251), (2, 251), (3, 2039), (7, 2039), (64, 2039), (200, 2039), (5, 13), (13, 13)])
def test_matches_reference(n, m):
    items = [(x, 1) for x in names(n, n)]
    table = maglev.build(items, m)
    assert [items[i][0] for i in table] == reference(items, m)


def test_matches_reference_weighted():
    items = [(x, w) for x, w in zip(names(9, 3), [1, 2, 3, 0, 5, 1, 7, 2, 1])]
    table = maglev.build(items, 2039)
    assert [items[i][0] for i in table] == reference(items, 2039)


@pytest.mark.parametrize("n,m", [(1, 2039), (2, 2039), (3, 2039), (4, 2039), (10, 2039), (20, 2039),
                                 (64, 2039), (100, 16381), (251, 251)])
def test_balance(n, m):
    items = [(x, 1) for x in names(n, n + 1)]
    counts = maglev.shares(maglev.build(items, m))
    assert len(counts) == n
    assert max(counts.values()) - min(counts.values()) <= 1


def _removal_disruption(all_names, m):
    """Fraction of the non-victim slots that change owner, for each possible victim."""
    before = [all_names[i] for i in maglev.build([(x, 1) for x in all_names], m)]
    out = []
    for victim in all_names:
        rest = [x for x in all_names if x != victim]
        after = [rest[i] for i in maglev.build([(x, 1) for x in rest], m)]
        assert victim not in after
        others = [i for i in range(m) if before[i] != victim]
        # every slot the victim held goes to someone else; of the rest only a few move
        out.append(sum(1 for i in others if before[i] != after[i]) / len(others))
    return out


@pytest.mark.parametrize("n,m,sets", [(3, 2039, 8), (4, 2039, 8), (5, 2039, 8), (10, 16381, 3),
                                      (20, 16381, 2), (50, 65521, 1)])
def test_disruption(n, m, sets):
    """Removing one of N backends moves its slots plus under 1% of the others (mean over every
    victim and several backend sets, for M >= ~800 x N; ~400 x N suffices for N <= 5). Maglev's disruption is statistical: we
    measured mean ~0.2 x sqrt(N/M), with single removals up to ~3x the mean (docs in maglev.py)."""
    fractions = []
    for k in range(sets):
        fractions += _removal_disruption(names(n, 1000 * n + k), m)
    mean = sum(fractions) / len(fractions)
    assert mean < 0.01, (mean, max(fractions))
    assert sorted(fractions)[len(fractions) // 2] < 0.01


@pytest.mark.parametrize("n,m", [(3, 2039), (5, 16381), (10, 16381)])
def test_adding_backend_disruption(n, m):
    all_names = names(n + 1, 7 + n)
    base = all_names[:-1]
    before = [base[i] for i in maglev.build([(x, 1) for x in base], m)]
    after = [all_names[i] for i in maglev.build([(x, 1) for x in all_names], m)]
    moved_not_to_new = sum(1 for a, b in zip(before, after) if a != b and b != all_names[-1])
    assert moved_not_to_new / m < 0.01


def test_weights_proportional_and_zero_excluded():
    ns = names(4, 42)
    items = [(ns[0], 1), (ns[1], 2), (ns[2], 3), (ns[3], 0)]
    counts = maglev.shares(maglev.build(items, 2039))
    assert 3 not in counts
    total_w = 6
    for i, w in enumerate([1, 2, 3]):
        assert abs(counts[i] - 2039 * w / total_w) <= 2, counts
    # equal non-unit weights = classic Maglev
    eq = [(x, 5) for x in ns]
    assert maglev.build(eq, 2039) == maglev.build([(x, 1) for x in ns], 2039)


def test_input_order_does_not_matter():
    ns = names(10, 5)
    t1 = maglev.build([(x, 1) for x in ns], 2039)
    shuffled = ns[:]
    random.Random(1).shuffle(shuffled)
    t2 = maglev.build([(x, 1) for x in shuffled], 2039)
    assert [ns[i] for i in t1] == [shuffled[i] for i in t2]


def test_build_bytes_uses_ids():
    import array
    raw = maglev.build_bytes([("1.1.1.1:80", 1, 7), ("1.1.1.2:80", 0, 9), ("1.1.1.3:80", 1, 11)], 251)
    ids = array.array("I", raw)
    assert len(ids) == 251 and set(ids) == {7, 11}


# Pinned values, computed outside this module: `printf %s 20.1.1.10:80 | sha256sum` gives
# db1477eeaf0dcfea 59ec9e9c176d62cd...; offset = bytes 0..7 read little-endian mod M, skip =
# bytes 8..15 little-endian mod (M - 1) + 1 (the module docstring's definition). A change here
# changes every table in a running lab.
SHA256_PREFIX = {
    "20.1.1.10:80": "db1477eeaf0dcfea59ec9e9c176d62cd",
    "20.1.1.20:80": "58b2b70c59f6e44638898c6ea332dde7",
    "20.1.1.30:80": "311d869858e58f892521447854ae649c",
}
PINNED = {  # (name, M) -> (offset, skip)
    ("20.1.1.10:80", 2039): (684, 542), ("20.1.1.20:80", 2039): (285, 1549),
    ("20.1.1.30:80", 2039): (1110, 660),
    ("20.1.1.10:80", 7): (5, 4), ("20.1.1.20:80", 7): (0, 5), ("20.1.1.30:80", 7): (0, 2),
}


@pytest.mark.parametrize("name,m", sorted(PINNED))
def test_permutation_pinned(name, m):
    assert maglev.permutation(name, m) == PINNED[(name, m)]


def test_pinned_values_follow_the_definition():
    """The pinned numbers are the definition applied to sha256sum's output (guards the pins)."""
    for (name, m), (offset, skip) in PINNED.items():
        h = bytes.fromhex(SHA256_PREFIX[name])
        assert int.from_bytes(h[0:8], "little") % m == offset
        assert int.from_bytes(h[8:16], "little") % (m - 1) + 1 == skip


def test_table_by_hand_m7():
    """M = 7, three backends, worked by hand from the paper's population loop.

    Preference lists (offset + j * skip) mod 7:  .10: 5 2 6 3 0 4 1;  .20: 0 5 3 1 6 4 2;
    .30: 0 2 4 6 1 3 5. Turns in sorted order: round 1: .10 takes 5, .20 takes 0, .30 takes 2
    (0 is taken); round 2: .10 takes 6 (2 taken), .20 takes 3 (5 taken), .30 takes 4; round 3:
    .10 takes 1 (3, 0, 4 taken). Slots 0..6: .20 .10 .30 .20 .30 .10 .10.
    """
    backends = [("20.1.1.10:80", 1), ("20.1.1.20:80", 1), ("20.1.1.30:80", 1)]
    assert maglev.build(backends, 7) == [1, 0, 2, 1, 2, 0, 0]
    # input order does not matter: the same slots, as indices into the reversed list
    assert maglev.build(backends[::-1], 7) == [1, 2, 0, 1, 0, 2, 2]


@pytest.mark.parametrize("m", [0, 1, 4, 2040, 131072, 262139, "2039", True])
def test_bad_sizes(m):
    with pytest.raises(InvalidConfig, match="maglev_size"):
        maglev.check_size(m)


def test_size_vs_backends():
    with pytest.raises(InvalidConfig, match="smaller"):
        maglev.build([(x, 1) for x in names(20, 1)], 13)
    with pytest.raises(InvalidConfig, match="non-zero"):
        maglev.build([("1.1.1.1:80", 0)], 13)
    assert maglev.size_warnings(2039, 64) and not maglev.size_warnings(2039, 20)


def test_default_size_literals_agree():
    """maglev.DEFAULT_SIZE is the one default; the places that must hold a literal (module
    documentation, role defaults and argument specs, the C macro) hold the same number."""
    import os
    import re

    import yaml

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def read(*parts):
        with open(os.path.join(repo, *parts), encoding="utf-8") as f:
            return f.read()

    m = maglev.DEFAULT_SIZE
    src = read("library", "xdp_program.py")
    doc = yaml.safe_load(re.search(r'DOCUMENTATION = r"""(.*?)"""', src, re.S).group(1))
    assert doc["options"]["maglev_size"]["default"] == m
    assert yaml.safe_load(read("roles", "lb_node", "defaults", "main.yml"))["lb_node_maglev_size"] == m
    assert f"default({m})" in yaml.safe_load(read("roles", "lb_service", "defaults", "main.yml"))["lb_service_maglev_size"]
    for role, var in (("lb_node", "lb_node_maglev_size"), ("lb_service", "lb_service_maglev_size")):
        spec = yaml.safe_load(read("roles", role, "meta", "argument_specs.yml"))
        assert spec["argument_specs"]["main"]["options"][var]["default"] == m, role
    assert re.search(rf"#define LB_MAGLEV_LUT_SIZE {m}\b", read("bpf", "include", "consts.h"))
