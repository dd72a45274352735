# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's topology: model -> validate -> provider (netlab's shape).

* ``model``: the provider-neutral model and :func:`build_topology` (validation naming every bad
  inventory variable; touches nothing).
* ``provider``: the seam, :class:`TopologyProvider` (preflight, current, plan, apply, describe,
  describe_desired, placement), :class:`Action`, the registry and :func:`get_provider`.
* ``netns``: the embedded lab's provider (network namespaces on this machine).
* ``libvirt``: real guests on an isolated libvirt network (``libvirt_daemon``: the lab's own
  libvirtd confined to a namespace).
* ``external``: machines the user already has (e.g. Windows hosts); validated, never changed.

Imported by the ``lab_topology`` module as ``ansible.module_utils.lab_topology`` and by tests and
benches as ``lab_topology`` (with ``module_utils/`` on ``sys.path``). Standard library only.
"""

from __future__ import annotations

from .model import DECAP_METHODS, NODE_OSES, NODE_ROLES, WINDOWS_ROLES, Node, Route, Topology, TopologyError, build_topology
from .provider import PROVIDERS, Action, ProviderError, TopologyProvider, get_provider, register
from .netns import NetnsProvider, is_bpffs, kill_pids, lab_pids
from .libvirt import LibvirtProvider
from .external import ExternalProvider

__all__ = ["DECAP_METHODS", "NODE_OSES", "NODE_ROLES", "WINDOWS_ROLES", "Node", "Route", "Topology", "TopologyError", "build_topology",
           "PROVIDERS", "Action", "ProviderError", "TopologyProvider", "get_provider", "register",
           "NetnsProvider", "LibvirtProvider", "ExternalProvider", "is_bpffs", "kill_pids", "lab_pids"]
