"""Parsing and validation of services and backends (no maps)."""

import pytest

from l4lb.errors import InvalidConfig
from l4lb.model import MAX_BACKENDS, Backend, Service, check_unique, parse_backends, parse_neighbors


def test_seed_syntax():
    s = Service.parse(id=1, frontend="40.1.1.1:80",
                      backends="20.1.1.10:80,20.1.1.20:80,20.1.1.30:80,20.1.1.40:80")
    assert (s.id, s.vip, s.port, s.protocol) == (1, "40.1.1.1", 80, "tcp")
    assert [b.name for b in s.backends] == ["20.1.1.10:80", "20.1.1.20:80", "20.1.1.30:80", "20.1.1.40:80"]
    assert all(b.weight == 1 for b in s.backends)


def test_other_forms():
    s = Service.parse({"id": "7", "vip": "40.1.1.1", "port": "53", "protocol": "UDP",
                       "backends": ["20.1.1.10:53@3", {"ip": "20.1.1.20", "port": 53, "weight": 0},
                                    {"address": "20.1.1.30", "port": "53"}, Backend("20.1.1.40", 53, 2)]})
    assert s.id == 7 and s.port == 53 and s.protocol == "udp"
    assert [(b.ip, b.port, b.weight) for b in s.backends] == [
        ("20.1.1.10", 53, 3), ("20.1.1.20", 53, 0), ("20.1.1.30", 53, 1), ("20.1.1.40", 53, 2)]
    # constructing directly validates too
    assert Service(2, "40.1.1.1", 80, "tcp", ["1.2.3.4:80"]).backends == (Backend("1.2.3.4", 80),)
    assert s.to_dict()["backends"][0] == {"ip": "20.1.1.10", "port": 53, "weight": 3}


BAD = [
    ({"id": 0}, "id"),
    ({"id": 65536}, "id"),
    ({"id": -1}, "id"),
    ({"id": "x"}, "id"),
    ({"id": True}, "id"),
    ({"frontend": "40.1.1.256:80"}, "frontend address"),
    ({"frontend": "40.1.1:80"}, "frontend address"),
    ({"frontend": "040.1.1.1:80"}, "frontend address"),
    ({"frontend": "host.example:80"}, "frontend address"),
    ({"frontend": "0.0.0.0:80"}, "frontend address"),
    ({"frontend": "224.0.0.1:80"}, "frontend address"),
    ({"frontend": "40.1.1.1:0"}, "frontend port"),
    ({"frontend": "40.1.1.1:65536"}, "frontend port"),
    ({"frontend": "40.1.1.1"}, "frontend"),
    ({"frontend": "40.1.1.1:80:1"}, "frontend"),
    ({"protocol": "sctp"}, "protocol"),
    ({"protocol": 6}, "protocol"),
    ({"backends": []}, "backends"),
    ({"backends": ""}, "backends"),
    ({"backends": None}, "backends"),
    ({"backends": "20.1.1.10:80,20.1.1.10:80"}, "duplicate backend 20.1.1.10:80"),
    ({"backends": "20.1.1.10:80@65536"}, "weight"),
    ({"backends": "20.1.1.10:80@-1"}, "weight"),
    ({"backends": "20.1.1.10:0"}, "backends port"),
    ({"backends": "20.1.1.10:70000"}, "backends port"),
    ({"backends": "20.1.1.300:80"}, "backends address"),
    ({"backends": "20.1.1.10"}, "backends"),
    ({"backends": [{"ip": "20.1.1.10"}]}, "needs 'ip' and 'port'"),
    ({"backends": [{"ip": "20.1.1.10", "port": 80, "wieght": 2}]}, "unknown key"),
    ({"backends": [42]}, "backends"),
    ({"backends": [f"10.0.{i // 250}.{i % 250 + 1}:80" for i in range(MAX_BACKENDS + 1)]}, "maximum"),
]


@pytest.mark.parametrize("override,needle", BAD, ids=[repr(o)[:60] for o, _ in BAD])
def test_bad_input(override, needle):
    data = {"id": 1, "frontend": "40.1.1.1:80", "backends": "20.1.1.10:80"}
    data.update(override)
    with pytest.raises(InvalidConfig) as exc:
        Service.parse(data)
    msg = str(exc.value)
    assert needle in msg
    # the message names the bad value
    bad = next(iter(override.values()))
    if isinstance(bad, (str, int)) and not isinstance(bad, bool) and bad != "" and "maximum" not in needle:
        probe = str(bad).split(",")[0].split("@")[-1] if needle.startswith("weight") else str(bad)
        assert any(part in msg for part in (probe, probe.split(":")[0], probe.split(":")[-1])), msg


def test_max_backends_ok():
    bs = [f"10.0.{i // 250}.{i % 250 + 1}:80" for i in range(MAX_BACKENDS)]
    assert len(parse_backends(bs)) == MAX_BACKENDS


def test_direct_construction_validates():
    with pytest.raises(InvalidConfig, match="port"):
        Backend("1.2.3.4", 0)
    with pytest.raises(InvalidConfig, match="id"):
        Service(0, "40.1.1.1", 80, "tcp", ["1.2.3.4:80"])
    with pytest.raises(InvalidConfig, match="duplicate"):
        Service(1, "40.1.1.1", 80, "tcp", (Backend("1.2.3.4", 80), Backend("1.2.3.4", 80, 2)))


def test_unique_ids_and_frontends():
    a = Service.parse(id=1, frontend="40.1.1.1:80", backends="1.1.1.1:80")
    b = Service.parse(id=1, frontend="40.1.1.1:81", backends="1.1.1.1:80")
    c = Service.parse(id=2, frontend="40.1.1.1:80", backends="1.1.1.1:80")
    d = Service.parse(id=3, frontend="40.1.1.1:80", protocol="udp", backends="1.1.1.1:80")
    with pytest.raises(InvalidConfig, match="id 1"):
        check_unique([a, b])
    with pytest.raises(InvalidConfig, match="40.1.1.1:80"):
        check_unique([a, c])
    check_unique([a, d])


def test_neighbors():
    assert parse_neighbors({"20.1.1.10": "02-00-14-01-01-0A"}) == {"20.1.1.10": "02:00:14:01:01:0a"}
    with pytest.raises(InvalidConfig, match="zz"):
        parse_neighbors({"20.1.1.10": "zz:00:14:01:01:0a"})
    with pytest.raises(InvalidConfig, match="20.1.1"):
        parse_neighbors({"20.1.1": "02:00:14:01:01:0a"})


def test_all_weights_zero_is_a_full_drain():
    s = Service.parse(id=1, frontend="40.1.1.1:80", backends="20.1.1.10:80@0,20.1.1.20:80@0")
    assert [b.weight for b in s.backends] == [0, 0]
