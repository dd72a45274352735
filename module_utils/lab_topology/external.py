# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``external`` provider: the lab's nodes are machines that already exist (netlab's
``external`` provider), such as the seed's Hyper-V guests on a Windows host. The user built the
switch, gave each node its address and the client its route to the VIP; the lab makes and removes
nothing here. What the provider still does is what every provider does first: the model is
validated (addresses, roles, each node's OS) before any role touches a node.

Nodes are reached by their inventory connection (WinRM for Windows nodes, SSH for Linux ones);
the verify capture on the LB's switch port is the user's (``lab_verify_capture: false``).
"""

from __future__ import annotations

from .provider import TopologyProvider, register


@register
class ExternalProvider(TopologyProvider):
    """Nodes that exist already: nothing to create, nothing to remove."""

    name = "external"

    def preflight(self, state):
        """Nothing beyond the model: the machines are the user's."""

    def current(self):
        return {"nodes": [n.name for n in self.t.nodes]}

    def plan(self, state, snap):
        return []

    def describe(self, snap):
        return self.describe_desired()

    def describe_desired(self):
        lines = [f"external lab {self.t.prefix}: subnet {self.t.subnet}, vip {self.t.vip} "
                 "(the machines are the user's; nothing is made or removed)"]
        for n in self.t.nodes:
            routes = "".join(f", route {r}" for r in n.routes)
            lines.append(f"  {n.name}: {n.role} {n.os} {n.ip}{routes}")
        return "\n".join(lines) + "\n"

    def missing(self, snap):
        return []   # the user's machines: there by definition

    def placement(self):
        return {"nodes": {n.name: {"connection": "inventory"} for n in self.t.nodes},
                "capture": None, "namespaces": []}
