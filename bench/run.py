"""Benchmark registry: run bench modules and write their sections of BENCHMARKS.md.

    python -m bench.run [--out BENCHMARKS.md] [NAME ...]

Each bench module in BENCHES provides ``TITLE`` (section heading) and ``run() -> str`` (the
section's Markdown body). A section lives between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->`` markers, so re-running one bench replaces only its own section.
To add a bench: write ``bench/<name>.py`` and add it to BENCHES. A bench that cannot run here
raises ``Skipped`` with the reason; its section is then left as it is.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import re
import subprocess
import time

from bench import Skipped

BENCHES = {
    "topology": "bench.topology",
    "datapath": "bench.datapath",
    "reconcile": "bench.reconcile",
    "lab": "bench.lab",
    "upload": "bench.upload",
    "snat": "bench.snat",
    "vm_lab": "bench.vm_lab",
    "services_playbook": "bench.services_playbook",
    "katran": "bench.katran",
}


HEADER = ("# Benchmarks\n\nMeasured with `make bench` (`python -m bench.run`); each section says "
          "when and on what it was measured. These are records, not timed tests.\n")


def machine() -> str:
    """One line describing the machine."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = int(f.readline().split()[1])
            mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    distro = ""
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            distro = dict(l.rstrip().split("=", 1) for l in f if "=" in l).get(
                "PRETTY_NAME", "").strip('"')
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores{mem}; {distro}; kernel {platform.release()}; "
            f"Python {platform.python_version()}")


def write_section(path: str, name: str, title: str, body: str) -> None:
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else HEADER
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    section = f"{start}\n## {title}\n\n{body.rstrip()}\n{end}"
    pat = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pat.sub(lambda _: section, text) if pat.search(text) else text.rstrip() + "\n\n" + section + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text if text.endswith("\n") else text + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="BENCHMARKS.md")
    ap.add_argument("names", nargs="*", help=f"benches to run (default: all of {', '.join(BENCHES)})")
    args = ap.parse_args(argv)
    names = args.names or list(BENCHES)
    for name in names:
        mod = importlib.import_module(BENCHES[name])
        t0 = time.monotonic()
        try:
            body = mod.run()
        except Skipped as exc:
            print(f"bench {name}: skipped, section left as it is: {exc}")
            continue
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip() or "?"
        body = f"Machine: {machine()}. Measured {stamp} at commit {rev}.\n\n{body}"
        write_section(args.out, name, mod.TITLE, body)
        print(f"bench {name}: done in {time.monotonic() - t0:.1f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
