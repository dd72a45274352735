"""Helpers for the tests in tests/lab (backends, client, verify) on real namespaces.

Not a conftest: several test directories have one, so shared helpers live in modules of their own names.
"""

from __future__ import annotations

import json
import os
import re
import subprocess


from labtest import REPO, run_playbook

BACKENDS = {"win1": ("20.1.1.10", "xdp"), "win2": ("20.1.1.20", "xdp"),
            "linux1": ("20.1.1.30", "tc"), "linux2": ("20.1.1.40", "tc")}
CLIENT_IP = "20.1.1.100"
LB_IP = "20.1.1.1"
VIP = "40.1.1.1"
PYTHON = os.path.join(REPO, ".venv", "bin", "python")
BACKENDS_PLAYBOOK = os.path.join(REPO, "tests", "lab", "playbooks", "backends.yml")
IPIP_SYN = os.path.join(REPO, "tests", "lab", "ipip_syn.py")
_ROW = re.compile(r'^\s*"(?P<check>[A-Za-z][^"]*?)\s{2,}(?P<result>PASS|FAIL|SKIP|WARN)\s+(?P<detail>.*?)",?$')
_DIST = re.compile(r'^\s*"\s+(?P<name>\S+)\s+(?P<n>\d+)\s+[\d.]+%')


def ns_path(prefix, node):
    return f"/run/netns/{prefix}-{node}"


def ns_argv(prefix, node, *argv):
    """argv run in the lab node's network namespace (for nsrun, or a Popen of one's own)."""
    return ["nsenter", f"--net={ns_path(prefix, node)}", "--", *argv]


def nsrun(prefix, node, *argv, check=True, timeout=30):
    return subprocess.run(ns_argv(prefix, node, *argv), capture_output=True, text=True, check=check,
                          timeout=timeout)


def ipj(prefix, node, *args):
    return json.loads(nsrun(prefix, node, "ip", "-j", *args).stdout or "[]")


def mac(prefix, node, dev="eth0"):
    return ipj(prefix, node, "link", "show", dev)[0]["address"]


def curl(prefix, url, *extra):
    """curl from the client namespace: (headers dict lower-cased, body, write-out lines)."""
    p = nsrun(prefix, "client", "curl", "-s", "-m", "5", "-D", "-", *extra, url)
    # text mode turns CRLF into LF
    head, _, body = p.stdout.replace("\r\n", "\n").partition("\n\n")
    headers = {}
    for line in head.split("\n")[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return head.split("\n")[0], headers, body


def ipip_syn(prefix, backend, sport, plain=False, timeout=2.0):
    ip = BACKENDS[backend][0]
    argv = [PYTHON, IPIP_SYN, "--dst-mac", mac(prefix, backend), "--backend", ip, "--vip", VIP,
            "--src", CLIENT_IP, "--sport", str(sport), "--timeout", str(timeout)]
    if plain:
        argv.append("--plain")
    p = nsrun(prefix, "client", *argv, timeout=timeout + 20)
    return json.loads(p.stdout.strip().splitlines()[-1])


def teardown(prefix):
    r = run_playbook("teardown.yml", {"lab_prefix": prefix})
    assert r.rc == 0, r.output
    return r


def topology(prefix):
    r = run_playbook("site.yml", {"lab_prefix": prefix}, args=["--tags", "lab_topology"])
    assert r.rc == 0, r.output
    return r


def backends(prefix, extra=None, args=()):
    ev = {"lab_prefix": prefix}
    ev.update(extra or {})
    return run_playbook(BACKENDS_PLAYBOOK, ev, args=list(args))


def report(output):
    """The lab_verify report: ({check: (result, detail)}, {backend: count})."""
    checks, dist = {}, {}
    for line in output.splitlines():
        m = _ROW.match(line)
        if m and m.group("check") != "CHECK":
            checks[m.group("check").strip()] = (m.group("result"), m.group("detail"))
            continue
        m = _DIST.match(line)
        if m:
            dist[m.group("name")] = int(m.group("n"))
    return checks, dist


def nginx_master(prefix, backend):
    pid_file = f"/run/{prefix}/{backend}/nginx/nginx.pid"
    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return pid if os.path.exists(f"/proc/{pid}") else None


def sysctl(prefix, node, key):
    return nsrun(prefix, node, "sysctl", "-n", key).stdout.strip()




def module(prefix, host, name, args, check=False):
    """Run one module on one lab host (ad hoc, JSON callback); returns the host's result dict."""
    from labtest import ANSIBLE, ansible_env
    argv = [ANSIBLE, host, "-e", json.dumps({"lab_prefix": prefix}), "-m", name, "-a", json.dumps(args)]
    if check:
        argv.append("--check")
    env = ansible_env({"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"})
    p = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    start = p.stdout.find("{\n")  # profile_tasks (ansible.cfg) prints a timing line first
    assert start >= 0, p.stdout + p.stderr
    out, _ = json.JSONDecoder().raw_decode(p.stdout[start:])
    return out["plays"][0]["tasks"][0]["hosts"][host]
