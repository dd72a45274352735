#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: a DSR backend's host side in one call - VIPs on lo, live sysctls, MSS-clamping routes."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lab_backend_net
short_description: A DSR backend's host side in its network namespace - VIPs on lo, live sysctls, advmss routes
description:
  - Everything a DSR backend needs from its own network stack, judged from the live state of the
    network namespace the task runs in (with the C(netns) connection, the lab node's) and changed
    only where it differs, in one module run - the backend role's reads and writes used to be
    one task each, and on emulated guests every task costs seconds.
  - I(vips) - each address as a C(/32) on C(lo), so the backend accepts the packets the load
    balancer forwards to the VIP (decapsulated) and answers from the VIP. With I(vip_range), the
    C(/32) addresses on C(lo) inside that range and not in I(vips) are removed (the VIPs of
    services that are gone).
  - I(sysctls) - live values of this namespace, read from C(/proc/sys) and written there when they
    differ; C(/etc/sysctl.*) is never touched. The backend role sets C(arp_ignore)/C(arp_announce)
    so the backend neither answers ARP for the VIP nor announces it. They are written before any
    VIP is added.
  - I(mss_clients) with I(advmss) - a C(/32) route toward each client on I(device) that carries
    C(advmss), so clients send segments that still fit the load balancer's MTU after the IPIP
    header (C(ip route replace <client>/32 dev <device> advmss <advmss>), only where the route's
    advmss or device differ). I(advmss=0) removes those routes toward I(mss_clients) that carry an
    advmss (other routes toward them are not this module's).
  - Reads the state once each - C(ip -j -4 addr show dev lo), C(ip -j -4 route show table main)
    (only with I(mss_clients)) and the I(sysctls) files - then every option is checked before
    anything changes; a bad address, range or sysctl name fails the task naming the option.
version_added: "0.1.0"
author: L4LB lab toolkit maintainers (@l4lb-lab)
options:
  vips:
    description: IPv4 addresses wanted as C(/32) on C(lo) (with I(state=absent), removed from it).
    type: list
    elements: str
    default: []
  vip_range:
    description:
      - An IPv4 network (CIDR) the VIPs belong to. The C(/32) addresses on C(lo) inside it that are
        not in I(vips) are removed (with I(state=absent), all of them). Every one of I(vips) must
        lie inside it.
      - Omitted, addresses on C(lo) that are not in I(vips) are left alone.
    type: str
  sysctls:
    description:
      - Sysctl name -> value, set live in this network namespace when the value differs
        (compared with whitespace runs collapsed, as C(sysctl) shows them). Names in dotted form
        (C(net.ipv4.conf.all.arp_ignore)) or slash form (C(net/ipv4/conf/eth0.100/arp_ignore),
        for interface names with dots).
      - Left as they are with I(state=absent).
    type: dict
    default: {}
  mss_clients:
    description: IPv4 addresses of the clients the MSS clamp (I(advmss)) applies to.
    type: list
    elements: str
    default: []
  device:
    description: The interface the routes toward I(mss_clients) use.
    type: str
    default: eth0
  advmss:
    description:
      - MSS advertised to I(mss_clients) (C(advmss) of the C(/32) route toward each), 1..65535.
      - C(0) - no such routes; those toward I(mss_clients) that carry an advmss are removed.
    type: int
    default: 0
  state:
    description:
      - C(present) - as the options say.
      - C(absent) - I(vips) (and, with I(vip_range), every C(/32) inside it) removed from C(lo),
        the advmss routes toward I(mss_clients) removed; I(sysctls) are left as they are.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Supports check mode (nothing is written) and diff (the C(/32) addresses on C(lo), the advmss
    routes toward I(mss_clients) and the I(sysctls), before and after).
  - Needs iproute2's C(ip) and root; Linux only.
seealso:
  - module: ansible.posix.sysctl
    description: Sets sysctls persistently through C(/etc/sysctl.conf) - what this module does not do.
  - name: ip-route(8), advmss
    description: The route attribute that sets the MSS TCP advertises toward a destination.
    link: https://man7.org/linux/man-pages/man8/ip-route.8.html
"""

EXAMPLES = r"""
- name: The backend's DSR host side
  lab_backend_net:
    vips: [40.1.1.1]
    vip_range: 40.1.1.0/24
    sysctls:
      net.ipv4.conf.all.arp_ignore: 1
      net.ipv4.conf.all.arp_announce: 2
    mss_clients: [20.1.1.100]
    device: eth0
    advmss: 1440

- name: VIPs and MSS-clamping routes removed (sysctls stay)
  lab_backend_net:
    vips: [40.1.1.1]
    mss_clients: [20.1.1.100]
    state: absent
"""

RETURN = r"""
vips:
  description: The C(/32) addresses on C(lo) after the task that are in I(vips) or I(vip_range) (in check mode, as they would be).
  returned: always
  type: list
  elements: str
  sample: ["40.1.1.1"]
advmss_routes:
  description: The routes toward I(mss_clients) that carry an advmss, after the task.
  returned: always
  type: list
  elements: str
  sample: ["20.1.1.100/32 dev eth0 advmss 1440"]
sysctls:
  description: The live values of I(sysctls) after the task (empty with I(state=absent)).
  returned: always
  type: dict
  sample: {"net.ipv4.conf.all.arp_ignore": "1"}
actions:
  description: What was (in check mode would be) done, in order.
  returned: always
  type: list
  elements: str
  sample: ["sysctl net.ipv4.conf.all.arp_ignore = 1 (was 0)", "ip addr add 40.1.1.1/32 dev lo"]
"""

import ipaddress
import json
import os
import re
import socket

from ansible.module_utils.basic import AnsibleModule

SYSCTL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@/-]*$")


def _address(option, text):
    """A unicast IPv4 address, or fail naming the option."""
    try:
        addr = ipaddress.IPv4Address(str(text).strip())
    except ValueError:
        return None, f"{option}: {text!r} is not an IPv4 address"
    if addr.is_multicast or addr.is_unspecified or addr == ipaddress.IPv4Address("255.255.255.255"):
        return None, f"{option}: {text} is not a unicast address"
    return str(addr), None


def _sysctl_value(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    return " ".join(str(value).split())


class BackendNet:
    """Read once, plan per state, then apply: the kernel_blacklist pattern (read the vars, state
    methods compute the wanted ones, one apply at the end)."""

    def __init__(self, module):
        self.module = module
        p = module.params
        self.state = p["state"]
        self.errors = []
        self.vips = self._addresses("vips", p["vips"])
        self.clients = self._addresses("mss_clients", p["mss_clients"])
        self.range = None
        if p["vip_range"]:
            try:
                self.range = ipaddress.IPv4Network(p["vip_range"].strip(), strict=True)
            except ValueError as exc:
                self.errors.append(f"vip_range: {p['vip_range']!r} is not an IPv4 network in CIDR form ({exc})")
        if self.range is not None:
            outside = [v for v in self.vips if ipaddress.IPv4Address(v) not in self.range]
            if outside:
                self.errors.append(f"vips: {', '.join(outside)} not inside vip_range {self.range}")
        self.advmss = p["advmss"]
        if not 0 <= self.advmss <= 65535:
            self.errors.append(f"advmss: {self.advmss} is not in 0..65535 (0: no clamp)")
        self.device = p["device"]
        self.sysctls = {}
        if self.state == "present":
            self.sysctls = self._sysctl_paths(p["sysctls"] or {})
            if self.clients and self.advmss:
                try:
                    socket.if_nametoindex(self.device)
                except OSError:
                    self.errors.append(f"device: no interface {self.device!r} in this network namespace")
        if self.errors:
            module.fail_json(msg="; ".join(self.errors))
        self.ip = module.get_bin_path("ip", required=True)
        self.actions = []
        self.read()

    def _addresses(self, option, items):
        out = []
        for item in items or []:
            addr, err = _address(option, item)
            if err:
                self.errors.append(err)
            elif addr not in out:
                out.append(addr)
        return out

    def _sysctl_paths(self, wanted):
        out = {}
        for name, value in wanted.items():
            rel = name if "/" in name else name.replace(".", "/")
            if not SYSCTL_NAME.match(name) or ".." in rel.split("/") or rel.startswith("/"):
                self.errors.append(f"sysctls: {name!r} is not a sysctl name")
                continue
            path = os.path.join("/proc/sys", rel)
            if not os.path.isfile(path):
                self.errors.append(f"sysctls: unknown sysctl {name!r} (no {path} in this network namespace)")
                continue
            if value is None or "\n" in str(value):
                self.errors.append(f"sysctls: {name}: value {value!r} is not a single line")
                continue
            out[name] = (path, _sysctl_value(value))
        return out

    # --- the live state ---------------------------------------------------------------------

    def _ip_json(self, *args):
        argv = [self.ip, "-j", "-4", *args]
        rc, out, err = self.module.run_command(argv)
        if rc != 0:
            self.module.fail_json(msg=f"{' '.join(argv)} failed (exit {rc}): {err.strip()}")
        return json.loads(out or "[]")

    def read(self):
        self.lo = sorted({a["local"] for link in self._ip_json("addr", "show", "dev", "lo")
                          for a in link.get("addr_info", []) if a.get("prefixlen") == 32 and "local" in a},
                         key=ipaddress.IPv4Address)
        self.routes = self._ip_json("route", "show", "table", "main") if self.clients else []
        self.live = {}
        for name, (path, dummy) in self.sysctls.items():
            try:
                with open(path) as f:
                    self.live[name] = " ".join(f.read().split())
            except OSError as exc:
                self.module.fail_json(msg=f"sysctls: cannot read {name} ({path}): {exc}")

    def _ours(self, addr):
        """A /32 on lo this task answers for: in vips, or inside vip_range."""
        return addr in self.vips or (self.range is not None and ipaddress.IPv4Address(addr) in self.range)

    def _client_routes(self, client):
        """Main-table unicast routes toward ``client``/32 (any priority)."""
        return [r for r in self.routes
                if r.get("dst") in (client, f"{client}/32") and r.get("type", "unicast") == "unicast"]

    @staticmethod
    def _advmss(route):
        for m in route.get("metrics") or []:
            if isinstance(m, dict) and "advmss" in m:
                return m["advmss"]
        return 0

    def view(self):
        routes = []
        for c in self.clients:
            for r in self._client_routes(c):
                if self._advmss(r):
                    routes.append(f"{c}/32 dev {r.get('dev')} advmss {self._advmss(r)}"
                                  + (f" metric {r['metric']}" if r.get("metric") else ""))
        return {"lo": [a for a in self.lo if self._ours(a)], "advmss_routes": sorted(routes),
                "sysctls": dict(self.live)}

    # --- plans ------------------------------------------------------------------------------

    def _do(self, text, argv=None, write=None):
        self.actions.append((text, argv, write))

    def _drop_advmss_routes(self):
        for c in self.clients:
            for r in self._client_routes(c):
                if self._advmss(r):
                    argv = [self.ip, "route", "del", f"{c}/32", "dev", r["dev"], "table", "main"]
                    if r.get("metric"):
                        argv += ["metric", str(r["metric"])]
                    self._do(" ".join(["ip"] + argv[1:]), argv)

    def state_present(self):
        # ARP behaviour first, so a VIP added below is never answered for or announced.
        for name, (path, want) in self.sysctls.items():
            if self.live[name] != want:
                self._do(f"sysctl {name} = {want} (was {self.live[name]})", write=(name, path, want))
        for addr in self.lo:
            if self._ours(addr) and addr not in self.vips:
                self._do(f"ip addr del {addr}/32 dev lo", [self.ip, "addr", "del", f"{addr}/32", "dev", "lo"])
        for addr in self.vips:
            if addr not in self.lo:
                self._do(f"ip addr add {addr}/32 dev lo", [self.ip, "addr", "add", f"{addr}/32", "dev", "lo"])
        if not self.advmss:
            self._drop_advmss_routes()
            return
        for c in self.clients:
            ours = [r for r in self._client_routes(c) if not r.get("metric")]
            if ours and ours[0].get("dev") == self.device and not ours[0].get("gateway") \
                    and self._advmss(ours[0]) == self.advmss:
                continue
            argv = [self.ip, "route", "replace", f"{c}/32", "dev", self.device, "advmss", str(self.advmss)]
            self._do(" ".join(["ip"] + argv[1:]), argv)

    def state_absent(self):
        for addr in self.lo:
            if self._ours(addr):
                self._do(f"ip addr del {addr}/32 dev lo", [self.ip, "addr", "del", f"{addr}/32", "dev", "lo"])
        self._drop_advmss_routes()

    # --- apply ------------------------------------------------------------------------------

    def apply(self):
        done = []
        for text, argv, write in self.actions:
            if write:
                dummy, path, value = write
                try:
                    with open(path, "w") as f:
                        f.write(value + "\n")
                except OSError as exc:
                    self.module.fail_json(msg=f"writing {path}: {exc}", actions=done)
            else:
                rc, dummy, err = self.module.run_command(argv)
                if rc != 0:
                    self.module.fail_json(msg=f"{text} failed (exit {rc}): {err.strip()}", actions=done)
            done.append(text)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            vips=dict(type="list", elements="str", default=[]),
            vip_range=dict(type="str"),
            sysctls=dict(type="dict", default={}),
            mss_clients=dict(type="list", elements="str", default=[]),
            device=dict(type="str", default="eth0"),
            advmss=dict(type="int", default=0),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    net = BackendNet(module)
    before = net.view()
    getattr(net, f"state_{net.state}")()
    texts = [a[0] for a in net.actions]
    if net.actions and not module.check_mode:
        net.apply()
        net.read()
        after = net.view()
    else:
        after = _planned(net, before)
    result = dict(changed=bool(net.actions), actions=texts, vips=after["lo"],
                  advmss_routes=after["advmss_routes"], sysctls=after["sysctls"])
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)


def _planned(net, before):
    """The view after the planned actions (check mode, or nothing to do)."""
    if not net.actions:
        return before
    lo = set(before["lo"])
    sysctls = dict(before["sysctls"])
    for text, argv, write in net.actions:
        if write:
            sysctls[write[0]] = write[2]
        elif argv[1:3] == ["addr", "add"]:
            lo.add(argv[3].split("/")[0])
        elif argv[1:3] == ["addr", "del"]:
            lo.discard(argv[3].split("/")[0])
    if net.state == "present" and net.advmss:
        routes = [f"{c}/32 dev {net.device} advmss {net.advmss}" for c in net.clients]
        # routes at another priority that carry an advmss are not replaced: they stay
        routes += [r for r in before["advmss_routes"] if " metric " in r]
    else:
        routes = []
    return {"lo": sorted(lo, key=ipaddress.IPv4Address), "advmss_routes": sorted(routes), "sysctls": sysctls}


if __name__ == "__main__":
    main()
