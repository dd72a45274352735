#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: the demo report (one self-contained HTML page) from what lab_verify found."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lab_report
short_description: Write the lab's demo report, one self-contained HTML page, from a verify run
description:
  - With I(state=present) writes C(report.html) in I(dest), with C(report.json) (its findings),
    C(topology.svg), C(hits.svg) and the capture of this run as C(capture-<mode>.pcap) beside it.
  - The page, top to bottom - the verdict (PASS, or what failed, or the task that errored), the
    checks, the topology drawn by Graphviz from the lab's topology model (every node with its
    address, role, OS, MTU and decap method, the switch and its ports, the capture point, the
    client's route to the VIP range with one next hop per LB node), the hits per backend charted by
    matplotlib beside each backend's expected share by weight, the mode read from the kernel,
    the service as programmed and the seed's dumpstate table of each LB node, the frames from
    the VIP on the LB's switch port per mode (this run's capture, and the other mode's from an
    earlier run, kept in I(dest)), and one backend's page as served (in a sandboxed iframe).
  - Self-contained - inline SVG and style, no script, nothing fetched when it is opened.
  - C(changed) means the findings differ from the previous report's (C(report.json) - the
    verdict, each check's result, the hits, the mode, the service and the topology); the page's
    counters, timings and the captures are refreshed on every run without counting as a change
    (RV(written) lists the files replaced). So a rerun that finds the same reports no change.
  - A rerun replaces the report; this mode's captures of an earlier run that this run did not
    make are removed, the other mode's are kept (the page shows both).
  - With I(state=absent) removes the report's own files from I(dest), then I(dest) when empty.
  - Runs on the controller (the machine that keeps the report); reads the capture file there.
version_added: "0.1.0"
author: L4LB lab toolkit maintainers (@l4lb-lab)
options:
  state:
    description: present writes the report, absent removes it.
    type: str
    choices: [present, absent]
    default: present
  dest:
    description: The report's directory (absolute, at least three levels deep), e.g. C(<repo>/build/report/<lab_prefix>).
    type: path
    required: true
  prefix:
    description: The lab's prefix (C(lab_prefix)), in the title.
    type: str
    default: ""
  provider:
    description: The topology provider (C(lab_topology_provider)), named beside the picture.
    type: str
    default: netns
  topology:
    description:
      - The lab's topology model as the C(lab_topology) module returns it in its C(topology) (an
        empty one - the report says there is none). Required with I(state=present).
    type: dict
  placement:
    description: Where the provider put things (the C(lab_topology) module's C(placement)) - namespaces and the capture point.
    type: dict
    default: {}
  mode:
    description: The mode the verify expected.
    type: str
    choices: [snat, dsr]
    default: snat
  program:
    description: What the LB node runs, as C(xdp_program_info) returns it in C(status) (C(name), C(mode), C(prog_id)).
    type: dict
    default: {}
  lb_host:
    description: The LB node whose program was read.
    type: str
    default: ""
  checks:
    description: lab_verify's checks, each C({check, result, detail}) with result PASS, FAIL, SKIP or WARN.
    type: list
    elements: dict
    default: []
  error:
    description: A verify task that errored outright (its name and message); the report then says ERROR at the top.
    type: str
  probe:
    description: The C(lab_http_probe) result of the main service (C(counts), C(answered), C(unanswered)).
    type: dict
    default: {}
  count:
    description: Requests sent to the main service.
    type: int
    default: 0
  vip:
    description: The main service's VIP.
    type: str
    default: ""
  port:
    description: The main service's port.
    type: int
    default: 80
  client_ip:
    description: The client's address.
    type: str
    default: ""
  base_port:
    description: The source port of the first request.
    type: int
    default: 20000
  backends:
    description: The main service's backends that must answer (inventory names), in order.
    type: list
    elements: str
    default: []
  weights:
    description: Each backend's weight in the main service (name to weight); the expected share is weight over the sum.
    type: dict
    default: {}
  backend_names:
    description: Backend address to inventory name, to name the backends of the programmed service.
    type: dict
    default: {}
  dumps:
    description:
      - Per LB node C({host, dump}) with C(dump) the C(lb_dumpstate) result of the main service,
        or C({host, error}) when it could not be read.
    type: list
    elements: dict
    default: []
  capture:
    description:
      - This run's capture on the LB's switch port - C(run) (whether it ran), C(pcap) (the file on
        the controller), C(interface), C(filter), C(skipped) (why it did not run), and C(pcaps)
        (switch port to file, one per LB node of a tier; then each is saved as
        C(capture-<mode>-<port>.pcap)).
    type: dict
    default: {}
  page:
    description: One backend's page as served (the C(lab_http_probe) C(sample_page)), or null.
    type: dict
notes:
  - Needs the Python packages C(graphviz) and C(matplotlib) and Graphviz's C(dot) (Debian package
    C(graphviz)) on the controller; C(scripts/setup.sh) installs them.
  - Supports check mode (nothing written; C(changed) and the diff of C(report.json) as they would be) and diff.
"""

EXAMPLES = r"""
- name: The demo report
  lab_report:
    dest: /work/l4lb/build/report/l4lb
    prefix: l4lb
    topology: "{{ lab_topology_result.topology }}"
    placement: "{{ lab_topology_result.placement }}"
    mode: snat
    program: "{{ lab_verify_lb_program.status }}"
    checks: "{{ lab_verify_checks }}"
    probe: "{{ lab_verify_probe }}"
    count: 40
    vip: 40.1.1.1
    backends: [win1, win2, linux1, linux2]
    weights: {win1: 1, win2: 1, linux1: 1, linux2: 1}
    dumps: [{host: lb, dump: "{{ dump }}"}]
    capture: {run: true, pcap: /run/l4lb/verify/lb-snat.pcap, interface: lb}
    page: "{{ lab_verify_probe.sample_page }}"
  delegate_to: localhost

- name: Remove it (teardown)
  lab_report:
    state: absent
    dest: /work/l4lb/build/report/l4lb
"""

RETURN = r"""
path:
  description: The report page.
  returned: state=present
  type: str
  sample: /work/l4lb/build/report/l4lb/report.html
verdict:
  description: C(PASS), C(FAIL) or C(ERROR), as the top of the page says.
  returned: state=present
  type: str
  sample: PASS
headline:
  description: The verdict line at the top of the page.
  returned: state=present
  type: str
  sample: PASS - all 9 checks passed
findings:
  description: What C(report.json) holds - the findings without the run's counters and timings.
  returned: state=present
  type: dict
written:
  description: The files replaced in I(dest) by this run (in check mode, those that would be).
  returned: state=present
  type: list
  elements: str
  sample: [report.html, capture-snat.pcap]
removed:
  description: The files removed (state=absent).
  returned: state=absent
  type: list
  elements: str
  sample: [report.html, report.json]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.lab_report import REPORT_HTML, ReportError, build, check_dest, missing_libraries, remove, write


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent"], default="present"),
            dest=dict(type="path", required=True),
            prefix=dict(type="str", default=""),
            provider=dict(type="str", default="netns"),
            topology=dict(type="dict"),
            placement=dict(type="dict", default={}),
            mode=dict(type="str", choices=["snat", "dsr"], default="snat"),
            program=dict(type="dict", default={}),
            lb_host=dict(type="str", default=""),
            checks=dict(type="list", elements="dict", default=[]),
            error=dict(type="str"),
            probe=dict(type="dict", default={}),
            count=dict(type="int", default=0),
            vip=dict(type="str", default=""),
            port=dict(type="int", default=80),
            client_ip=dict(type="str", default=""),
            base_port=dict(type="int", default=20000),
            backends=dict(type="list", elements="str", default=[]),
            weights=dict(type="dict", default={}),
            backend_names=dict(type="dict", default={}),
            dumps=dict(type="list", elements="dict", default=[]),
            capture=dict(type="dict", default={}),
            page=dict(type="dict"),
        ),
        required_if=[("state", "present", ["topology"])],
        supports_check_mode=True,
    )
    p = module.params
    try:
        dest = check_dest(p["dest"])
        if p["state"] == "absent":
            module.exit_json(**remove(dest, module.check_mode))
        for lib, trace in missing_libraries():
            module.fail_json(msg=missing_required_lib(lib), exception=trace)
        data = {k: v for k, v in p.items() if k not in ("state", "dest")}
        built = build(data, dest)
        result = write(dest, built, module.check_mode)
    except (ReportError, OSError) as exc:
        module.fail_json(msg=f"lab_report: {exc}")
    module.exit_json(changed=result["changed"], diff=result["diff"], written=result["written"],
                     path=f"{dest}/{REPORT_HTML}", verdict=built["verdict"]["result"],
                     headline=built["verdict"]["headline"], findings=built["findings"])


if __name__ == "__main__":
    main()
