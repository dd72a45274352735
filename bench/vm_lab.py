"""The seed's lab on VMs (issue 8, inventory/libvirt): the guests' base image from nothing and
cached, the five-guest lab from nothing (image cached) to verified, its idempotent rerun, and
teardown. On this machine the guests run under qemu's TCG (no usable KVM), in the confined mode.

Own prefix (l4lbvb) and image cache (/var/tmp/l4lbvb-images), both removed at the end.
Targets on 2 cores with TCG: image cached rerun < 10 s, lab up < 8 min, rerun < 60 s,
teardown < 30 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

from bench.topology import REPO, _play

TITLE = "The seed's lab on VMs (issue 8): image, five guests to verified, rerun, teardown"
PREFIX = "l4lbvb"
CACHE = "/var/tmp/l4lbvb-images"
TARGETS = {"image_cached": 10, "up": 480, "rerun": 60, "teardown": 30}


def _lab(playbook, *args):
    return _play(playbook, "-i", os.path.join(REPO, "inventory", "libvirt"),
                 "-e", json.dumps({"lab_prefix": PREFIX, "lab_image_cache_dir": CACHE}), *args)


def _image():
    """The lab_image module alone (what the lab_topology role runs first), timed."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"))
    t0 = time.monotonic()
    subprocess.run([os.path.join(REPO, ".venv", "bin", "ansible"), "localhost", "-i", "localhost,",
                    "-c", "local", "-m", "lab_image", "-a", f"cache_dir={CACHE}",
                    # the venv's Python, as the inventories give localhost (not whatever is on PATH)
                    "-e", f"ansible_python_interpreter={os.path.join(REPO, '.venv', 'bin', 'python')}"],
                   cwd=REPO, env=env, check=True, capture_output=True, text=True)
    return time.monotonic() - t0


def _load():
    """The 1-minute load average (other work on the machine stretches TCG guests)."""
    with open("/proc/loadavg", encoding="utf-8") as f:
        return f.read().split()[0]


def run() -> str:
    shutil.rmtree(CACHE, ignore_errors=True)
    t = {"load_before": _load()}
    _lab("teardown.yml")
    try:
        t["image_build"] = _image()
        t["image_cached"] = _image()
        dt, changed = _lab("site.yml")
        assert changed > 0
        t["up"] = dt
        dt, changed = _lab("site.yml")
        assert changed == 0, "site.yml rerun on the VMs was not idempotent"
        t["rerun"] = dt
    finally:
        dt, _ = _lab("teardown.yml")
        t["teardown"] = dt
        shutil.rmtree(CACHE, ignore_errors=True)
    t["load_after"] = _load()
    rows = [("base image built from nothing (lab_image: mmdebstrap, mkfs.ext4 -d, qcow2)", "image_build"),
            ("base image cached (the same call again)", "image_cached"),
            ("five-guest lab from nothing (image cached) to verified: site.yml", "up"),
            ("idempotent rerun: site.yml, changed=0", "rerun"),
            ("teardown: teardown.yml (domains, network, daemon, namespace, lab dir)", "teardown")]
    out = ["| what | seconds | target | verdict |", "|---|---|---|---|"]
    for label, key in rows:
        target = TARGETS.get(key)
        verdict = "" if target is None else ("met" if t[key] < target else "MISSED")
        out.append(f"| {label} | {t[key]:.1f} | {'< ' + str(target) if target else ''} | {verdict} |")
    out.append("")
    out.append("Guests: 1 vCPU each, LB 1024 MiB, backends 512 MiB, qemu TCG (no VT-x/AMD-V here), "
               "the lab's own libvirtd confined to the namespace l4lbvb-host. A module run on a TCG "
               "guest costs 2-10 s (Python starting under emulation); the rerun is about 6 per guest "
               "(topology readiness is probed from the host, the compile is cached, node files go in "
               f"one module run). Load average before and after: {t['load_before']} / {t['load_after']}.")
    return "\n".join(out) + "\n"
