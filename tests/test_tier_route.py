"""lab_tier_route's planner (module_utils/lab_topology/tier.py): the ECMP route's next hops after a
withdraw or a restore, always in the tier's order, and every refusal before any change. Pure
Python; the module itself runs in tests/reliability/test_lb_tier.py and molecule's tier scenario."""

from __future__ import annotations

import json

import pytest

import labtest  # noqa: F401  (puts module_utils on ansible.module_utils' path)
from ansible.module_utils.lab_topology.tier import TierError, plan

TIER = ["20.1.1.1", "20.1.1.2", "20.1.1.3"]
DST = "40.1.1.0/24"


def shown(*hops):
    """``ip -j route show`` of a route with these next hops."""
    if len(hops) == 1:
        return json.dumps([{"dst": DST, "gateway": hops[0], "dev": "eth0", "flags": []}])
    return json.dumps([{"dst": DST, "flags": [], "nexthops": [{"gateway": h, "dev": "eth0", "weight": 1} for h in hops]}])


def test_withdraw_keeps_the_others_in_order():
    changed, want, have, argv = plan(shown("20.1.1.3", "20.1.1.1", "20.1.1.2"), DST, "eth0", TIER, "20.1.1.2", "absent")
    assert changed and have == TIER and want == ["20.1.1.1", "20.1.1.3"]
    assert argv == ["ip", "route", "replace", DST, "nexthop", "via", "20.1.1.1", "dev", "eth0",
                    "nexthop", "via", "20.1.1.3", "dev", "eth0"]


def test_restore_puts_it_back_in_the_tiers_order():
    changed, want, _have, argv = plan(shown("20.1.1.2"), DST, "eth0", TIER[:2], "20.1.1.1", "present")
    assert changed and want == ["20.1.1.1", "20.1.1.2"]
    assert argv[4:7] == ["nexthop", "via", "20.1.1.1"]


def test_down_to_one_next_hop_is_a_plain_route():
    _c, want, _h, argv = plan(shown("20.1.1.1", "20.1.1.2"), DST, "eth0", TIER[:2], "20.1.1.1", "absent")
    assert want == ["20.1.1.2"] and argv == ["ip", "route", "replace", DST, "via", "20.1.1.2", "dev", "eth0"]


@pytest.mark.parametrize("route,gateway,state", [
    (shown("20.1.1.1", "20.1.1.2"), "20.1.1.1", "present"),
    (shown("20.1.1.2"), "20.1.1.1", "absent"),
])
def test_nothing_to_do_is_unchanged(route, gateway, state):
    assert plan(route, DST, "eth0", TIER[:2], gateway, state)[0] is False


@pytest.mark.parametrize("route,tier,gateway,state,message", [
    (shown("20.1.1.2"), TIER[:2], "20.1.1.2", "absent", "would leave 40.1.1.0/24 without a next hop"),
    (shown("20.1.1.1"), TIER[:2], "20.1.1.9", "absent", "gateway 20.1.1.9 is not a next hop of the tier"),
    ("[]", TIER[:2], "20.1.1.1", "present", "no route to 40.1.1.0/24"),
    (shown("20.1.1.1", "20.1.1.7"), TIER[:2], "20.1.1.1", "present", "no LB node of the tier on eth0: 20.1.1.7 dev eth0"),
    (shown("20.1.1.1"), ["20.1.1.1", "20.1.1.1"], "20.1.1.1", "present", "each LB node's next hop once"),
    (shown("20.1.1.1"), TIER[:2], "lb", "present", "gateway 'lb' is not an IPv4 address"),
])
def test_refusals_name_the_problem(route, tier, gateway, state, message):
    with pytest.raises(TierError, match=message):
        plan(route, DST, "eth0", tier, gateway, state)
