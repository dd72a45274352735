"""The guests' base image (module_utils/lab_image.py, library/lab_image.py), built for real from
Debian's packages with mmdebstrap: bad input fails before anything is made; check mode makes
nothing; the build gives a qcow2 with a kernel and initrd beside it and the guest prepared for a
first boot; a rerun reuses it (changed=0); absent removes only what the builder made.
kernel_cmdline, the per-node part of direct kernel boot, is checked as a function (no build), and
its SSH-key script is run on this machine against a command line of its own.

Own cache directory (L4LB_TEST_IMAGE_DIR, default /var/tmp/l4lbt-images), removed at the end.
One build (about a minute on 2 cores, network: Debian's mirror only)."""

from __future__ import annotations

import base64
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
                 "/etc/systemd/system/l4lb-ssh-hostkeys.service",
                 "/etc/systemd/system/sysinit.target.wants/systemd-network-generator.service",
                 "/lib/systemd/systemd-network-generator",
                 "/etc/systemd/system/multi-user.target.wants/l4lb-ssh-key.service"):
        assert "File not found" not in debugfs(raw, f"stat {path}"), path
    assert "ssh_host_" not in debugfs(raw, "ls /etc/ssh"), "host keys must be made on each guest"
    assert debugfs(raw, "cat /etc/fstab").strip() == "/dev/vda / ext4 errors=remount-ro 0 1"
    assert "PasswordAuthentication no" in debugfs(raw, "cat /etc/ssh/sshd_config.d/l4lb.conf")
    assert debugfs(raw, "cat /usr/local/sbin/l4lb-ssh-key") == lab_image.SSH_KEY_SCRIPT
    assert "0755" in debugfs(raw, "stat /usr/local/sbin/l4lb-ssh-key")
    assert "Before=ssh.service" in debugfs(raw, "cat /etc/systemd/system/l4lb-ssh-key.service")

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


# -- kernel_cmdline: the per-node part of direct kernel boot (no build) ----------------------------

@pytest.fixture(scope="module")
def pubkey(tmp_path_factory):
    key = tmp_path_factory.mktemp("key") / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "me@lab", "-f", str(key)], check=True)
    return (key.parent / "id.pub").read_text()


def test_kernel_cmdline_gives_the_node_its_address_mtu_name_and_key(pubkey):
    line = lab_image.kernel_cmdline("lb", "20.1.1.1/24", 1520, pubkey)
    words = line.split()
    ktype, blob = pubkey.split()[:2]
    assert words[:4] == ["root=/dev/vda", "ro", "console=ttyS0", "net.ifnames=0"]
    assert "systemd.hostname=lb" in words
    assert "ip=20.1.1.1:::24::eth0:off:1520" in words
    assert f"l4lb.ssh_key={ktype}:{blob}" in words
    assert "me@lab" not in line  # the key's comment stays out of the command line
    assert len(line) <= lab_image.CMDLINE_MAX


def test_kernel_cmdline_ip_is_what_systemd_network_generator_reads(pubkey, tmp_path):
    """The host's systemd (Debian 12: 252, as in the image) turns ip= into the networkd unit."""
    gen = "/lib/systemd/systemd-network-generator"
    if not os.path.exists(gen):
        pytest.skip(f"{gen} is not on this machine")
    line = lab_image.kernel_cmdline("backend-1", "20.1.1.7/24", 1520, pubkey)
    subprocess.run([gen, f"--root={tmp_path}"], env={**os.environ, "SYSTEMD_PROC_CMDLINE": line}, check=True)
    units = list((tmp_path / "run/systemd/network").glob("*.network"))
    assert [u.name for u in units] == ["90-eth0.network"]
    text = units[0].read_text()
    for needle in ("Name=eth0", "MTUBytes=1520", "DHCP=no", "Address=20.1.1.7/24"):
        assert needle in text, text
    assert "Gateway" not in text  # the lab's subnet is on-link


def test_kernel_cmdline_ssh_key_script_installs_the_key(pubkey, tmp_path):
    """The image's l4lb-ssh-key script, run here against a command line file of its own."""
    line = lab_image.kernel_cmdline("lb", "20.1.1.1/24", 1500, pubkey)
    (tmp_path / "cmdline").write_text("BOOT_IMAGE=/vmlinuz " + line + " quiet\n")
    script = lab_image.SSH_KEY_SCRIPT.replace("/proc/cmdline", str(tmp_path / "cmdline")) \
        .replace("/root/.ssh", str(tmp_path / "ssh"))
    (tmp_path / "s").write_text(script)
    subprocess.run(["sh", str(tmp_path / "s")], check=True, capture_output=True)
    ktype, blob = pubkey.split()[:2]
    auth = tmp_path / "ssh" / "authorized_keys"
    assert auth.read_text() == f"{ktype} {blob} l4lb-lab\n"
    assert auth.stat().st_mode & 0o777 == 0o600
    # without the parameter the file is left alone
    (tmp_path / "cmdline").write_text("root=/dev/vda ro\n")
    subprocess.run(["sh", str(tmp_path / "s")], check=True)
    assert auth.read_text() == f"{ktype} {blob} l4lb-lab\n"


@pytest.mark.parametrize("args,needles", [
    (("LB", "20.1.1.1/24", 1520), ["hostname: 'LB'"]),
    (("-lb", "20.1.1.1/24", 1520), ["hostname: '-lb'"]),
    (("a" * 64, "20.1.1.1/24", 1520), ["hostname: 'aaaa"]),
    (("lb", "20.1.1.1", 1520), ["ip_cidr: '20.1.1.1'"]),
    (("lb", "20.1.1.0/24", 1520), ["ip_cidr: '20.1.1.0/24'"]),
    (("lb", "20.1.1.255/24", 1520), ["ip_cidr: '20.1.1.255/24'"]),
    (("lb", "127.0.0.2/8", 1520), ["ip_cidr: '127.0.0.2/8'"]),
    (("lb", "fe80::1/64", 1520), ["ip_cidr: 'fe80::1/64'"]),
    (("lb", "20.1.1.1/24", 70000), ["mtu: 70000"]),
    (("lb", "20.1.1.1/24", "1520"), ["mtu: '1520'"]),
    (("lb", "20.1.1.1/24", True), ["mtu: True"]),
    # every bad argument is named at once
    (("L B", "x", 0), ["hostname: 'L B'", "ip_cidr: 'x'", "mtu: 0"]),
])
def test_kernel_cmdline_refuses_bad_input_naming_it(pubkey, args, needles):
    with pytest.raises(lab_image.ImageError) as e:
        lab_image.kernel_cmdline(*args, pubkey)
    for needle in needles:
        assert needle in str(e.value)


@pytest.mark.parametrize("key,needle", [
    ("", "ssh_pubkey: ''"),
    (None, "ssh_pubkey: None"),
    ("AAAAC3NzaC1lZDI1NTE5AAAAIG", "expected '<type> <base64> [comment]'"),
    ("ssh-dss AAAAB3NzaC1kc3MAAACBAP me", "key type 'ssh-dss'"),
    ("ssh-ed25519 not*base64 me", "not base64"),
    ("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIG/tLm7yt2jRpCC/6XfhFANiJZVpZlEumZr7ec27fyXE me",
     "not a ssh-rsa key"),
])
def test_kernel_cmdline_refuses_what_is_not_a_public_key(key, needle):
    with pytest.raises(lab_image.ImageError) as e:
        lab_image.kernel_cmdline("lb", "20.1.1.1/24", 1500, key)
    assert needle in str(e.value)


def test_kernel_cmdline_too_long_for_x86():
    # an ssh-rsa key as long as a 16384-bit one (made up: ssh-keygen would take a minute)
    blob = len(b"ssh-rsa").to_bytes(4, "big") + b"ssh-rsa" + os.urandom(2060)
    with pytest.raises(lab_image.ImageError, match="more than x86's 2047"):
        lab_image.kernel_cmdline("lb", "20.1.1.1/24", 1500, f"ssh-rsa {base64.b64encode(blob).decode()} me")


# -- nocloud_seed: first-boot settings for an image of the user's own (cloud-init) -------------

def test_nocloud_seed_gives_the_node_its_address_mtu_name_and_key(pubkey):
    import json
    files = lab_image.nocloud_seed("win1", "20.1.1.10/24", 1520, pubkey, "02:4C:14:01:01:0A")
    assert sorted(files) == ["meta-data", "network-config", "user-data"]
    net = json.loads(files["network-config"])["ethernets"]["eth0"]
    assert net == {"match": {"macaddress": "02:4c:14:01:01:0a"}, "set-name": "eth0", "dhcp4": False,
                   "addresses": ["20.1.1.10/24"], "mtu": 1520}
    assert files["user-data"].startswith("#cloud-config\n")
    user = json.loads(files["user-data"].split("\n", 1)[1])
    assert user["disable_root"] is False and user["ssh_pwauth"] is False
    assert user["ssh_authorized_keys"] == [" ".join(pubkey.split()[:2]) + " l4lb-lab"]
    meta = json.loads(files["meta-data"])
    assert meta["local-hostname"] == "win1" and meta["instance-id"].startswith("win1-")
    other = lab_image.nocloud_seed("win1", "20.1.1.11/24", 1520, pubkey, "02:4c:14:01:01:0a")
    assert json.loads(other["meta-data"])["instance-id"] != meta["instance-id"], \
        "a changed seed must be a new instance, or cloud-init would not apply it"


def test_nocloud_seed_refuses_bad_input_naming_it(pubkey):
    with pytest.raises(lab_image.ImageError) as e:
        lab_image.nocloud_seed("Bad_Name", "20.1.1.0/24", 60000, pubkey, "02:4c:14:01:01:0a")
    assert all(w in str(e.value) for w in ("hostname", "ip_cidr", "mtu"))
    with pytest.raises(lab_image.ImageError, match="mac: 'zz' is not a MAC address"):
        lab_image.nocloud_seed("win1", "20.1.1.10/24", 1500, pubkey, "zz")
