#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: the Debian 12 base image VM providers boot their nodes from."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: lab_image
short_description: Build (or reuse) the lab's Debian 12 guest base image from Debian's packages
description:
  - Builds a Debian 12 (bookworm) root file system with C(mmdebstrap) from the host's apt sources,
    with what every lab node needs (systemd, sshd, python3, nginx-light, iproute2, the cloud
    kernel) and the LB node's toolchain (clang, llvm, libbpf, bpftool), prepares it for a first
    boot (root on C(/dev/vda), systemd-networkd, sshd by key only, host keys made on the guest's
    first boot), and writes a qcow2 base image with the kernel and initrd beside it for direct
    kernel boot.
  - Cached by content - the suite, each package at the version the mirror offers, the size and
    the builder's version make the key - so a rerun with the same content changes nothing, and a
    new package version builds a new image under a new key. Presence is judged from the files
    and C(qemu-img info), not from a marker.
  - Runs on the host that runs the VMs (C(lab_hosts)).
version_added: "0.1.0"
author: L4LB lab toolkit maintainers (@l4lb-lab)
options:
  cache_dir:
    description: Directory holding the images (one C(debian12-<key>) directory each); kept across labs.
    type: path
    required: true
  packages:
    description: Packages added to the base set.
    type: list
    elements: str
    default: []
  size_mb:
    description: Size of the guest's root file system in MiB.
    type: int
    default: 3072
  state:
    description: C(present) builds the image unless the cache has it; C(absent) removes every image under I(cache_dir).
    type: str
    choices: [present, absent]
    default: present
notes:
  - Supports check mode and diff. Needs root, C(mmdebstrap), C(mkfs.ext4) and C(qemu-img)
    (scripts/setup.sh installs them); a build takes about a minute on 2 cores.
"""

EXAMPLES = r"""
- name: The guests' base image exists
  lab_image:
    cache_dir: /var/cache/l4lb/images
  register: lab_image_result
"""

RETURN = r"""
key:
  description: The content key of the image.
  returned: state is present
  type: str
  sample: 3f2a9c0d4e5b6a71
base:
  description: Path of the qcow2 base image.
  returned: state is present
  type: str
kernel:
  description: Path of the guest kernel (direct kernel boot).
  returned: state is present
  type: str
initrd:
  description: Path of the guest initrd.
  returned: state is present
  type: str
manifest:
  description: What was built (suite, package versions, size, build seconds), when it was built now.
  returned: when built
  type: dict
removed:
  description: Image directories removed (C(absent)).
  returned: state is absent
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.lab_image import ImageError, ensure


def main():
    module = AnsibleModule(
        argument_spec=dict(
            cache_dir=dict(type="path", required=True),
            packages=dict(type="list", elements="str", default=[]),
            size_mb=dict(type="int", default=3072),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        result = ensure(p["cache_dir"], p["packages"], p["size_mb"], p["state"], check_mode=module.check_mode)
    except ImageError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
