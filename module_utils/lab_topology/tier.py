# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An LB tier's membership at the upstream router: the next hops of the ECMP route toward the
VIP range, one per LB node in service. Withdrawing a node removes its next hop, restoring puts it
back, as a routing protocol (BGP, ECMP from the routers) would; the LB nodes themselves are not
touched. Used by the ``lab_tier_route`` module on the client (the lab's router), inside its
namespace.

The next hops are always written in the tier's order (``lb_nodes``): Linux's ECMP hash
(hash-threshold) maps a flow to a next hop by its position, so a restore in that order gives
every flow the LB node it had before the withdraw.
"""

from __future__ import annotations

import ipaddress
import json

from .model import Route
from .netns import route_argv, route_hops


class TierError(Exception):
    """Bad input, or a route this module will not change; raised before any change."""


def _addr(value, what):
    try:
        return str(ipaddress.IPv4Address(str(value).strip()))
    except ValueError:
        raise TierError(f"{what} {value!r} is not an IPv4 address") from None


def plan(route_json, dst, device, tier, gateway, state):
    """(changed, want, have, argv) from ``ip -j route show <dst>``'s output.

    ``tier``: every LB node's next hop, in the tier's order; ``gateway``: the one to withdraw
    (``state=absent``) or restore (``present``). Refuses, naming the problem: a gateway outside
    the tier, no route to ``dst``, a next hop on the route that is no LB node of the tier or on
    another device, and a withdraw that would leave no next hop."""
    try:
        net = ipaddress.IPv4Network(str(dst).strip(), strict=True)
    except ValueError as e:
        raise TierError(f"dst {dst!r} is not an IPv4 network in CIDR form ({e})") from None
    if state not in ("present", "absent"):
        raise TierError(f"state {state!r} must be present or absent")
    tier = [_addr(h, "tier") for h in tier]
    if not tier or len(set(tier)) != len(tier):
        raise TierError(f"tier {tier} must list each LB node's next hop once")
    gateway = _addr(gateway, "gateway")
    if gateway not in tier:
        raise TierError(f"gateway {gateway} is not a next hop of the tier ({', '.join(tier)})")
    routes = json.loads(route_json or "[]")
    if not routes:
        raise TierError(f"no route to {net} here: the tier's ECMP route is made by the lab_topology role")
    hops = set()
    for r in routes:
        hops |= route_hops(r)
    foreign = sorted(f"{gw} dev {dev}" for gw, dev in hops if gw not in tier or dev != device)
    if foreign:
        raise TierError(f"the route to {net} has next hops that are no LB node of the tier on {device}: "
                        f"{', '.join(foreign)}; fix it with the lab_topology role first")
    have = [h for h in tier if (h, device) in hops]
    want = [h for h in tier if h != gateway and h in have] if state == "absent" else \
        [h for h in tier if h in have or h == gateway]
    if not want:
        raise TierError(f"withdrawing {gateway} would leave {net} without a next hop: it is the last "
                        "LB node in the tier; restore another first")
    argv = ["ip", "route", "replace", str(net)] + route_argv(
        Route(net, [ipaddress.IPv4Address(h) for h in want]), device)
    return want != have, want, have, argv


def describe(dst, hops):
    return f"{dst} via {', '.join(hops)}\n" if hops else f"{dst}: no route\n"
