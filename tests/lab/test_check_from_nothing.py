"""`site.yml --check --diff` on a machine without the lab (issue 12): rc 0, the topology that
would be created in the diff, a plain message that the node plays are skipped because their
nodes do not exist yet, and nothing created (root namespace unchanged, no namespace, pin or
state directory of the prefix). With the topology up, check mode reaches every node as before.

Prefix $L4LB_LAB_TEST_PREFIX (default l4lbt12); teardown first and last.
"""

from __future__ import annotations

import os

import pytest

from labtest import lab_namespaces, root_ns_snapshot, run_playbook
from labutil import teardown, topology

PREFIX = os.environ.get("L4LB_LAB_TEST_PREFIX", "l4lbt12")
NODES = ("lb", "win1", "win2", "linux1", "linux2", "client")
SKIPPED = "skipped for lb, win1, win2, linux1, linux2, client because their nodes do not exist yet"


@pytest.fixture(scope="module")
def nothing():
    teardown(PREFIX)
    yield
    teardown(PREFIX)


def test_check_from_nothing_reports_the_topology_and_skips_node_plays(nothing):
    before = root_ns_snapshot()
    r = run_playbook("site.yml", {"lab_prefix": PREFIX}, args=["--check", "--diff"])
    assert r.rc == 0, r.output
    assert "UNREACHABLE" not in r.output and r.failed == 0, r.recap
    assert "Check mode: the lab does not exist yet" in r.stdout and SKIPPED in r.stdout, r.stdout
    for node in NODES:   # the diff lists what would be created
        assert f"+netns {PREFIX}-{node}" in r.stdout, r.stdout
    assert f"+netns {PREFIX}-switch" in r.stdout
    assert r.recap["localhost"]["changed"] == 1, "the topology task reports what it would change"
    assert all(r.recap[n]["changed"] == 0 for n in NODES), r.recap
    # nothing was created
    assert root_ns_snapshot() == before
    assert lab_namespaces(PREFIX) == []
    assert not os.path.exists(f"/run/{PREFIX}") and not os.path.exists(f"/sys/fs/bpf/{PREFIX}")


def test_check_with_the_topology_up_reaches_every_node(nothing):
    topology(PREFIX)
    r = run_playbook("site.yml", {"lab_prefix": PREFIX}, args=["--check", "--tags", "lab_topology"])
    assert r.rc == 0, r.output
    assert "do not exist yet" not in r.stdout
    # the topology's own verification (ping matrix, the client's route) ran on every node
    assert all(r.recap[n]["ok"] >= 2 for n in NODES), r.recap
    assert r.changed == 0, r.recap
