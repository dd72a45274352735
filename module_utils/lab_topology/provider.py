# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The provider seam: how a validated :class:`~.model.Topology` becomes real.

A provider realises the model on something (``netns``: namespaces, a bridge and veth pairs on
this machine; ``libvirt``: an isolated network and one domain per node). It implements
:class:`TopologyProvider` and nothing else is asked of it; the ``lab_topology`` module (and any
other caller) drives every provider the same way:

    provider = get_provider(name, topology, **settings)
    provider.preflight(state)           # requirements and provider-specific input; changes nothing
    snap = provider.current()           # the real state, read from the system
    actions = provider.plan(state, snap)   # [] when nothing differs (idempotence, check mode)
    provider.apply(actions)             # in order; stops at the first failure, naming it
    provider.wait_ready(timeout)        # nodes that boot: until each answers (state present)
    provider.describe(snap), provider.describe_desired()   # --diff text
    provider.missing(snap)              # nodes that do not exist (check mode from nothing)
    provider.placement()                # where each node and the LB's switch port are, for the
                                        # roles after the topology (connection, capture point)

Providers register with :func:`register`; ``docs/ARCHITECTURE.md`` ("Topology providers")
documents the contract.
"""

from __future__ import annotations

import abc
import json
import os

from ..l4lb import procs
from .model import TopologyError


class ProviderError(Exception):
    """A command failed while the provider was changing (or reading) the system."""


def run(argv, check=True, input_=None):
    """Run a command (procs.run); ProviderError with its stderr when it fails and ``check``."""
    return procs.run(argv, check=check, input_=input_, error=ProviderError)


def _in_netns(argv, netns, netns_dir):
    return ["nsenter", f"--net={os.path.join(netns_dir, netns)}", "--", *argv] if netns else list(argv)


def offload_features(dev, netns=None, netns_dir="/run/netns"):
    """``dev``'s offload features, ``{name: "on" | "off"}``, from ethtool's JSON output ({} when
    it cannot be read). ethtool stays for these: the core has no adapter for offload features
    (its Linux adapter reads iproute2's JSON, which does not carry them)."""
    p = run(_in_netns(["ethtool", "--json", "-k", dev], netns, netns_dir), check=False)
    try:
        features = json.loads(p.stdout)[0] if p.returncode == 0 else {}
    except (ValueError, IndexError):
        return {}
    return {k: "on" if v.get("active") else "off" for k, v in features.items() if isinstance(v, dict)}


def checksum_offload_off_argv(dev, netns=None, netns_dir="/run/netns"):
    """The command turning rx/tx checksum offload off on ``dev``: the LB's XDP program rewrites
    packets, which a partial (offloaded) checksum would leave wrong."""
    return _in_netns(["ethtool", "-K", dev, "rx", "off", "tx", "off"], netns, netns_dir)


def checksum_offload_is_off(features):
    return features.get("rx-checksumming") == "off" and features.get("tx-checksumming") == "off"


class Action:
    """One planned change: a text for the user and either a command or a function."""

    def __init__(self, text, argv=None, func=None):
        self.text = text
        self.argv = argv
        self.func = func

    def run(self):
        if self.func is not None:
            self.func()
        else:
            run(self.argv)

    def __repr__(self):
        return self.text


class TopologyProvider(abc.ABC):
    """What every topology provider implements (see the module docstring for the call order)."""

    name = ""

    def __init__(self, topology):
        self.t = topology

    @abc.abstractmethod
    def preflight(self, state):
        """Check requirements (privileges, tools, kernel or hypervisor features) and the input
        only this provider cares about. Raise TopologyError listing every problem. Changes
        nothing."""

    @abc.abstractmethod
    def current(self):
        """A snapshot (plain data) of the real state of everything the topology names."""

    @abc.abstractmethod
    def plan(self, state, snap):
        """The actions that take ``snap`` to ``state`` (present/absent); [] when none."""

    def apply(self, actions):
        """Run the actions in order; a failure names the action. Returns the texts done."""
        done = []
        for a in actions:
            try:
                a.run()
            except ProviderError as e:
                raise ProviderError(f"{a.text}: {e}") from e
            done.append(a.text)
        return done

    def wait_ready(self, timeout):
        """Wait (up to ``timeout`` seconds) until every node can be reached by the roles after
        the topology; return the names confirmed, or None when this provider cannot tell (the
        playbook then waits on its own). Raise ProviderError naming the nodes still silent.
        Nodes that exist as soon as they are created (namespaces) are ready at once."""
        return [n.name for n in self.t.nodes]

    @abc.abstractmethod
    def describe(self, snap):
        """The snapshot as compact text (the diff's before)."""

    @abc.abstractmethod
    def describe_desired(self):
        """The desired state as the same text (the diff's after)."""

    @abc.abstractmethod
    def missing(self, snap):
        """The names of the nodes the roles cannot reach in ``snap`` because they do not exist
        (or do not run) yet: what check mode from nothing reports, so the node plays skip them."""

    @abc.abstractmethod
    def placement(self):
        """Where things are, for the roles after the topology: ``{"nodes": {name: {...}},
        "capture": {...}}`` (how to reach each node; where the LB's switch port can be
        captured)."""


PROVIDERS = {}


def register(cls):
    """Class decorator: make a provider available by its ``name``."""
    PROVIDERS[cls.name] = cls
    return cls


def get_provider(name, topology, **settings):
    """The provider called ``name`` for ``topology``; ``settings`` are its own (e.g. the libvirt
    URI and machines), passed to its constructor."""
    try:
        cls = PROVIDERS[name]
    except KeyError:
        raise TopologyError(f"lab_topology_provider {name!r} is not one of {', '.join(sorted(PROVIDERS))}") \
            from None
    return cls(topology, **settings)
