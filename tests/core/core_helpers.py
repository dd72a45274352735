"""Helpers shared by the core tests (a uniquely named module: several conftest.py exist)."""

from l4lb.reconcile import MAGLEV, LBMaps


def dump_all(maps: LBMaps) -> dict:
    """Every map's content (Maglev: the inner tables' content by service id), for equality."""
    out = {}
    for name, mp in sorted(maps.maps.items()):
        if name == MAGLEV:
            out[name] = {sid: maps.read_inner(mid)[0] for sid, mid in sorted(maps.inner_map_ids().items())}
            out[name + ":ids"] = sorted(maps.inner_map_ids().items())
        else:
            out[name] = sorted(mp.items())
    return out
