# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The seed agent's verbs on the core, shared by the Ansible modules and ``l4lbctl``.

Each verb validates its input first, then reads the kernel's state, then writes (unless
``check_mode``), and returns a plain dict with ``changed`` and a ``diff`` (before/after), so the
same result serves Ansible and ``l4lbctl --json``. Nothing here is specific to an OS: what is
goes through the platform adapter (:mod:`.platform`).
"""

from __future__ import annotations

import time

from . import ct, platform, program, reconcile
from .errors import InvalidConfig, L4LBError
from .model import Service, parse_ip, parse_neighbors, parse_service_id, parse_service_set, port_translating
from .structs import U32, ip_to_be32

DEFAULT_DEVICE = "eth0"

# Why DSR refuses port-translating services (said in both refusals).
DSR_PORTS_WHY = ("in DSR the backend answers the client directly, from the port it received on, so "
                 "a backend port that differs from the frontend port cannot work (SNAT translates it)")


def open_maps(pin_dir: str, maglev_size: int | None = None,
              required=reconcile.RECONCILE_MAPS) -> reconcile.LBMaps:
    maps_dir = program.maps_pin_dir(pin_dir)
    if not platform.current().pin_exists(maps_dir):
        raise L4LBError(f"no load balancer is loaded: {maps_dir} does not exist "
                        "(attach it first: xdp_program / l4lbctl mode update)")
    return reconcile.LBMaps.open(maps_dir, maglev_size=maglev_size, required=required)


def resolve_neighbors(ips, device: str, known: dict | None = None) -> dict:
    """{ip: mac} for every ip, from ``known`` first, else resolved on ``device`` (ARP)."""
    known = parse_neighbors(known or {})
    out = {}
    for ip in ips:
        out[ip] = known.get(ip) or platform.current().resolve_mac(ip, device)
    return out


def service_update(pin_dir: str, service, device: str = DEFAULT_DEVICE, state: str = "present",
                   neighbors: dict | None = None, maglev_size: int | None = None,
                   check_mode: bool = False) -> dict:
    """The seed's ``service update`` (state=present) and ``service delete`` (state=absent)."""
    if state not in ("present", "absent"):
        raise InvalidConfig(f"state: {state!r} is not 'present' or 'absent'")
    if state == "present":
        svc = service if isinstance(service, Service) else Service.parse(service)
        _refuse_port_translation_in_dsr(svc, device, pin_dir)
        # Next hops first: a backend without one fails here, before any map is touched.
        try:
            nbrs = resolve_neighbors(sorted({b.ip for b in svc.backends}), device, neighbors)
        except L4LBError as exc:
            raise L4LBError(f"service {svc.id}: {exc}") from exc
        target = svc
    else:
        sid = service.id if isinstance(service, Service) else (
            service.get("id") if isinstance(service, dict) else service)
        target = parse_service_id(sid)
        nbrs = {}
    with open_maps(pin_dir, maglev_size) as maps, maps.locked():
        if state == "present":   # again under the lock a mode update holds while it switches
            _refuse_port_translation_in_dsr(target, device, pin_dir)
        plan = reconcile.plan_service(maps, target, state=state, neighbors=nbrs, maglev_size=maglev_size)
        if not check_mode and plan.changed:
            reconcile.apply(maps, plan)
        return {"changed": plan.changed, "diff": plan.diff, "writes": plan.describe(),
                "counts": plan.counts(), "neighbors": nbrs}


def services_apply(pin_dir: str, services, prune: bool = False, device: str = DEFAULT_DEVICE,
                   neighbors: dict | None = None, maglev_size: int | None = None,
                   check_mode: bool = False, diff: bool = False) -> dict:
    """The whole desired service set in one reconcile (``lb_service services=``, ``l4lbctl
    service apply``). ``services``: dicts as for ``Service.parse`` with an optional ``state``
    (absent: removed). ``prune``: services not in the list are removed too ("exactly these");
    without it they are left alone ("these, and leave the others"). Every item is validated,
    and every next hop resolved, before any map is written."""
    present, absent = parse_service_set(services)
    _refuse_port_translation_in_dsr(present, device, pin_dir)
    nbrs = resolve_service_neighbors(present, device, neighbors)
    with open_maps(pin_dir, maglev_size) as maps, maps.locked():
        _refuse_port_translation_in_dsr(present, device, pin_dir)   # again, under the lock
        plan = reconcile.plan_services(maps, present, nbrs, prune=prune, absent=absent,
                                       maglev_size=maglev_size)
        if not check_mode and plan.changed:
            reconcile.apply(maps, plan)
        actions = plan.actions()
        listed = {s.id for s in present} | set(absent)
        result = {
            "changed": plan.changed,
            "services": {a: sorted(sid for sid, x in actions.items() if x == a)
                         for a in ("create", "update", "remove")},
            "unchanged": len(listed - set(actions)),
            "changes": {str(sid): w for sid, w in sorted(plan.by_service().items())},
            "shared_writes": plan.shared_writes(),
            "counts": plan.counts(),
            "neighbors": nbrs,
            "warnings": plan.warnings,
        }
        if diff:
            result["diff"] = plan.service_diff()
        return result


def resolve_service_neighbors(services, device: str, known: dict | None = None) -> dict:
    """The next hops of every backend of ``services``, each address once; a failure names the
    services that need that address."""
    ips = sorted({b.ip for s in services for b in s.backends})
    try:
        return resolve_neighbors(ips, device, known)
    except L4LBError as exc:
        bad = next((ip for ip in ips if ip in str(exc)), None)
        users = [s.id for s in services if any(b.ip == bad for b in s.backends)]
        more = f" (and {len(users) - 5} more)" if len(users) > 5 else ""
        who = f"service {users[0]}" if len(users) == 1 else f"services {users[:5]}{more}"
        raise L4LBError(f"{who}: backends: {exc}") from exc


def _refuse_port_translation_in_dsr(services, device: str, pin_dir: str) -> None:
    """``services``: a Service or a list of them; the running mode is read once, and only when
    one of them translates ports."""
    services = [services] if isinstance(services, Service) else services
    translating = port_translating(services)
    if translating and running_mode(device, pin_dir) == "dsr":
        first = next(s for s in services if port_translating([s]))
        more = f" (and {len(translating) - 1} more)" if len(translating) > 1 else ""
        raise InvalidConfig(
            f"{translating[0]}{more} translates ports, but the load balancer on {device} runs "
            f"dsr: {DSR_PORTS_WHY}. Use backend port {first.port}, or switch to snat first")


def neighbor_update(pin_dir: str, ip: str, device: str = DEFAULT_DEVICE, mac: str | None = None,
                    state: str = "present", check_mode: bool = False) -> dict:
    """The seed's ``neighbor update <ip>``: resolve the MAC and store it in the neighbour map."""
    ip = parse_ip(ip, "address")
    r = neighbors_update(pin_dir, [ip], device, {ip: mac} if mac else None, state, check_mode)
    return {"changed": r["changed"], "address": ip, "mac": r["macs"][ip],
            "diff": {"before": {ip: r["previous"][ip]}, "after": {ip: r["macs"][ip]}}}


def neighbors_update(pin_dir: str, ips, device: str = DEFAULT_DEVICE, macs: dict | None = None,
                     state: str = "present", check_mode: bool = False) -> dict:
    """Several next hops in one call: every address resolved (or taken from ``macs``) before
    the neighbour map is written, then one reconcile of those entries."""
    if isinstance(ips, str) or not isinstance(ips, (list, tuple)):
        raise InvalidConfig(f"addresses: {ips!r} is not a list of IPv4 addresses")
    ips = sorted({parse_ip(ip, "address") for ip in ips})
    if state not in ("present", "absent"):
        raise InvalidConfig(f"state: {state!r} is not 'present' or 'absent'")
    want = dict.fromkeys(ips)
    if state == "present":
        want = resolve_neighbors(ips, device, macs)
    with open_maps(pin_dir) as maps, maps.locked():
        have_all = reconcile.neighbors(maps)
        have = {ip: have_all.get(ip) for ip in ips}
        changed = sorted(ip for ip in ips if have[ip] != want[ip])
        if changed and not check_mode:
            gone = [ip for ip in changed if want[ip] is None]
            for ip in gone:
                maps[reconcile.NEIGH].delete(U32.pack(ip_to_be32(ip)))
            put = {ip: want[ip] for ip in changed if want[ip] is not None}
            # also when only deleting: backends keep a copy of their next hop's MAC
            reconcile.apply(maps, reconcile.plan_services(maps, [], neighbors=put))
        return {"changed": bool(changed), "macs": want, "previous": have, "changed_addresses": changed,
                "diff": {"before": {ip: have[ip] for ip in changed}, "after": {ip: want[ip] for ip in changed}}}


def dumpstate(pin_dir: str, service_id, idle_after_s: float = ct.DEFAULT_IDLE_AFTER_S) -> dict:
    """The seed's ``service dumpstate --id N``: connections, counters and the text table."""
    sid = parse_service_id(service_id, "id")
    with open_maps(pin_dir) as maps:
        state = ct.dump_state(maps, sid, idle_after_s=idle_after_s)
        state["trouble"] = ct.trouble_counters(maps)
    state["trouble_report"] = ct.trouble_lines(state["trouble"])
    if state["service"] is None:
        raise L4LBError(f"service {sid} is not programmed")
    state["table"] = ct.render_table(state["connections"])
    state["maglev_report"] = ct.maglev_line(state["maglev"])
    state["changed"] = False
    return state


def ct_gc(pin_dir: str, timeouts=None, check_mode: bool = False, settle_s: float = 0.2) -> dict:
    """One garbage collection of connection tracking and SNAT (``ct.gc``): two passes
    ``settle_s`` apart, so an entry that lost its flow is judged twice before it goes."""
    with open_maps(pin_dir) as maps:
        first = ct.gc(maps, timeouts, dry_run=check_mode)
        if first["suspects"]:
            time.sleep(settle_s)
            second = ct.gc(maps, timeouts, suspects=first["suspects"], dry_run=check_mode)
        else:
            second = {"ct_deleted": 0, "snat_deleted": 0, "snat_entries": first["snat_entries"]}
        ct_left = len(maps[reconcile.CT].items_list())
    deleted = {"ct": first["ct_deleted"] + second["ct_deleted"],
               "snat": first["snat_deleted"] + second["snat_deleted"]}
    return {"changed": bool(deleted["ct"] or deleted["snat"]), "deleted": deleted,
            "ct_entries": ct_left, "snat_entries": second["snat_entries"]}


def ct_gc_loop(pin_dir: str, timeouts=None, every_s: float = 5.0, passes: int = 0, log=None) -> dict:
    """Garbage-collect every ``every_s`` seconds (``passes`` times, 0 = until the LB's maps are
    removed: the loop must not keep unpinned maps alive)."""
    maps_dir = program.maps_pin_dir(pin_dir)
    suspects: dict = {}
    total = {"ct": 0, "snat": 0}
    done = 0
    with open_maps(pin_dir) as maps:
        while platform.current().pin_exists(maps_dir) and (passes == 0 or done < passes):
            r = ct.gc(maps, timeouts, suspects=suspects)
            suspects = r["suspects"]
            total["ct"] += r["ct_deleted"]
            total["snat"] += r["snat_deleted"]
            done += 1
            if log and (r["ct_deleted"] or r["snat_deleted"]):
                log(f"gc: deleted {r['ct_deleted']} CT and {r['snat_deleted']} SNAT entries; "
                    f"{r['snat_entries']} SNAT entries left")
            if passes == 0 or done < passes:
                time.sleep(every_s)
    return {"changed": bool(total["ct"] or total["snat"]), "deleted": total, "passes": done}


def program_info(device: str, pin_dir: str) -> dict:
    """What ``device`` runs (program, mode) and the LB's trouble counters (every non-zero DROP_*
    and PASS_MTU reason; {} when no maps are pinned)."""
    info = {"changed": False, "status": program.status(device, pin_dir).as_dict(), "trouble": {}}
    if platform.current().pin_exists(program.maps_pin_dir(pin_dir)):
        with open_maps(pin_dir) as maps:
            info["trouble"] = ct.trouble_counters(maps)
    return info


def service_list(pin_dir: str) -> dict:
    with open_maps(pin_dir) as maps:
        return {"changed": False, "services": reconcile.dump(maps), "neighbors": reconcile.neighbors(maps)}


def running_mode(device: str, pin_dir: str) -> str | None:
    """snat | dsr | None: the mode the kernel runs on ``device``, from the attached program's
    name (lb_xdp_snat / lb_xdp_dsr), never from a file or the inventory."""
    return program.lb_mode(program.status(device, pin_dir).attached.name)


def mode_update(desired: program.Desired, check_mode: bool = False) -> dict:
    """The seed's ``mode update dsr|snat``: recompile, re-attach atomically, keep the maps.

    Services need no re-programming: the new program reuses the pinned maps (the seed's agent
    unpins everything and programs every service again; keeping the maps also keeps CT).
    DSR is refused, before anything is compiled or attached (check mode too), while a
    port-translating service is programmed."""
    pinned = platform.current().pin_exists(program.maps_pin_dir(desired.pin_dir))
    if desired.mode == "dsr" and pinned:
        # Under the maps' lock: no service update can slip in between the check and the switch.
        # Only the service maps are needed (maps pinned by an older program may lack others).
        with open_maps(desired.pin_dir, required=(reconcile.SERVICES,)) as maps, maps.locked():
            translating = port_translating(reconcile.dump(maps))
            if translating:
                raise InvalidConfig(
                    f"mode dsr refused: {len(translating)} service(s) translate ports: "
                    f"{'; '.join(translating)}; {DSR_PORTS_WHY}. Delete or change them first "
                    "(backend port = frontend port), or stay in snat")
            result = program.ensure_present(desired, check_mode=check_mode)
    else:
        result = program.ensure_present(desired, check_mode=check_mode)
    if check_mode:
        return result
    with open_maps(desired.pin_dir) as maps, maps.locked():
        return _fill_fast_path(maps, result)


def _fill_fast_path(maps: reconcile.LBMaps, result: dict) -> dict:
    """Maps pinned before the fast paths existed get their maps empty when the program loads (an
    empty VIP filter passes every service packet; empty hints send new flows to the service
    hash): fill them from the services programmed (nothing to do on every other load)."""
    plan = reconcile.plan_fast_path(maps)
    if plan.changed:
        reconcile.apply(maps, plan)
        result["changed"] = True
        result["fast_path_filled"] = len(plan.writes)
    return result
