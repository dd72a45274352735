"""The LB tier's property on real maps: two LB nodes given the same services pick the same
backend for every flow hash, even when their histories gave the backends other ids."""

from array import array

from l4lb import ct, reconcile
from l4lb.maglev import describe_identities
from l4lb.model import Service
from l4lb.reconcile import apply, plan_services

SEED = [dict(id=1, frontend="40.1.1.1:80", backends="20.1.1.10:80,20.1.1.20:80,20.1.1.30:80,20.1.1.40:80"),
        dict(id=2, frontend="40.1.1.2:80", backends="20.1.1.20:80,20.1.1.40:80")]


def program(maps, services):
    apply(maps, plan_services(maps, [Service.parse(s) for s in services]))


def test_same_services_same_tables_whatever_the_ids(lbmaps, lbmaps_other):
    a, b = lbmaps, lbmaps_other
    program(a, SEED)
    # node b met another backend first (a service since removed): its ids are shifted
    program(b, [dict(id=9, frontend="40.1.1.9:80", backends="20.1.1.99:80")])
    program(b, list(reversed(SEED)))
    apply(b, reconcile.plan_service(b, 9, state="absent"))
    sa, sb = reconcile.read_state(a), reconcile.read_state(b)
    assert array("I", sa.maglev[1]) != array("I", sb.maglev[1]), "ids should differ here"
    ta, tb = reconcile.maglev_tables(a), reconcile.maglev_tables(b)
    assert sorted(ta) == sorted(tb) == [1, 2]
    for sid in ta:
        assert ta[sid] == tb[sid]
        assert describe_identities(ta[sid])["digest"] == describe_identities(tb[sid])["digest"]
    da, db = ct.dump_state(a, 1)["maglev"], ct.dump_state(b, 1)["maglev"]
    assert da == db and da["size"] == len(ta[1])
    assert set(da["slots"]) == {"20.1.1.10:80", "20.1.1.20:80", "20.1.1.30:80", "20.1.1.40:80"}
    # a different backend set is a different table (the comparison can fail)
    program(b, [dict(SEED[0], backends="20.1.1.10:80,20.1.1.20:80,20.1.1.30:80")])
    assert reconcile.maglev_tables(b)[1] != ta[1]
    assert ct.dump_state(b, 1)["maglev"]["digest"] != da["digest"]
