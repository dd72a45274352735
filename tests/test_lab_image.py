"""The guests' base image (module_utils/lab_image.py, library/lab_image.py), built for real from
Debian's packages with mmdebstrap: bad input fails before anything is made; check mode makes
nothing; the build gives a qcow2 with a kernel and initrd beside it and the guest prepared for a
first boot; a rerun reuses it (changed=0); absent removes only what the builder made.

Own cache directory (L4LB_TEST_IMAGE_DIR, default /var/tmp/l4lbt-images), removed at the end.
One build (about a minute on 2 cores, network: Debian's mirror only)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from labtest import MODULE_UTILS, REPO, ansible_env

sys.path.insert(0, MODULE_UTILS)
import lab_image  # noqa: E402

CACHE = os.environ.get("L4LB_TEST_IMAGE_DIR", "/var/tmp/l4lbt-images")
PYTHON = os.path.join(REPO, ".venv", "bin", "python")


def module(args, check=False):
    """lab_image on localhost through real Ansible (ansible-playbook, json callback); its result."""
    play = [{"name": "t", "hosts": "localhost", "gather_facts": False, "connection": "local",
             "vars": {"ansible_python_interpreter": PYTHON},
             "tasks": [{"name": "m", "lab_image": args, "register": "r", "ignore_errors": True}]}]
    path = os.path.join("/tmp", f"l4lbt-image-play-{os.getpid()}.yml")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(play, f)
    argv = [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), path] + (["--check"] if check else [])
    env = ansible_env({"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
                       "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.json"})
    try:
        p = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    finally:
        os.unlink(path)
    try:
        return json.loads(p.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError):
        raise AssertionError(f"no result from ansible-playbook:\n{p.stdout}\n{p.stderr}") from None


def debugfs(image_raw, cmd):
    return subprocess.run(["debugfs", "-R", cmd, image_raw], capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def cache():
    shutil.rmtree(CACHE, ignore_errors=True)
    yield CACHE
    shutil.rmtree(CACHE, ignore_errors=True)


@pytest.mark.parametrize("args,needle", [
    ({"packages": ["no such package"]}, "lab_image_packages: 'no such package'"),
    ({"packages": ["l4lb-no-such-package"]}, "no Debian package l4lb-no-such-package"),
    ({"size_mb": 100}, "lab_image_size_mb: 100"),
    ({"cache_dir": "/var"}, "lab_image_cache_dir"),
])
def test_bad_input_fails_before_anything_is_made(cache, args, needle):
    r = module({"cache_dir": cache, **args})
    assert r.get("failed") and needle in r["msg"], r
    assert not os.path.exists(cache)


def test_build_reuse_remove(cache, tmp_path):
    r = module({"cache_dir": cache}, check=True)
    assert r["changed"] is True and not r.get("failed"), r
    assert not os.path.exists(cache), "check mode must build nothing"

    r = module({"cache_dir": cache})
    assert r["changed"] is True and not r.get("failed"), r
    assert r["base"].startswith(cache) and os.path.isfile(r["kernel"]) and os.path.isfile(r["initrd"])
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", r["base"]], capture_output=True,
                                     text=True, check=True).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == 3072 * 1024 * 1024
    versions = r["manifest"]["packages"]
    assert set(lab_image.BASE_PACKAGES) <= set(versions)

    # What a guest needs at its first boot, read from the file system itself.
    raw = str(tmp_path / "root.img")
    subprocess.run(["qemu-img", "convert", "-O", "raw", r["base"], raw], check=True)
    for path in ("/usr/sbin/sshd", "/usr/bin/python3", "/usr/bin/clang", "/usr/sbin/bpftool",
                 "/usr/sbin/nginx", "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
                 "/etc/systemd/system/l4lb-ssh-hostkeys.service"):
        assert "File not found" not in debugfs(raw, f"stat {path}"), path
    assert "ssh_host_" not in debugfs(raw, "ls /etc/ssh"), "host keys must be made on each guest"
    assert debugfs(raw, "cat /etc/fstab").strip() == "/dev/vda / ext4 errors=remount-ro 0 1"
    assert "PasswordAuthentication no" in debugfs(raw, "cat /etc/ssh/sshd_config.d/l4lb.conf")

    again = module({"cache_dir": cache})
    assert again["changed"] is False and again["key"] == r["key"], again

    # A damaged image is not taken for a good one.
    with open(r["base"], "r+b") as f:
        f.write(b"\0" * 512)
    assert lab_image.present(cache, r["key"]) is False

    foreign = os.path.join(cache, "not-ours")
    os.makedirs(foreign)
    gone = module({"cache_dir": cache, "state": "absent"})
    assert gone["changed"] is True and gone["removed"] == [f"debian12-{r['key']}"], gone
    assert os.listdir(cache) == ["not-ours"]
    assert module({"cache_dir": cache, "state": "absent"})["changed"] is False
