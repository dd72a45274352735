#!/usr/bin/env bash
# One-time (and quick to repeat) set-up of a Debian 12 control node / embedded-lab host.
# Installs the OS packages the lab needs and a Python virtualenv with requirements.txt.
# Safe to rerun: it installs only what is missing and changes nothing otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

OS_PACKAGES=(
  # datapath toolchain: clang for `-target bpf`, llvm-strip, bpftool, libbpf (ctypes loads libbpf.so.1)
  clang llvm bpftool libbpf1 libbpf-dev libc6-dev linux-libc-dev
  # the embedded lab: namespaces, veths, bridge, tc, offload switches
  iproute2 ethtool util-linux kmod iputils-ping
  # VM guests (issue 8): the base image is built from Debian's packages
  mmdebstrap qemu-utils e2fsprogs
  # VM guests booting an image of their own: the NoCloud seed volume (an ISO labelled cidata),
  # and a Windows guest's cloudbase-init config drive (config-2)
  xorriso
  # VM guests (issue 8): libvirtd with its qemu driver (the lab runs its own, confined, instance:
  # module_utils/lab_topology/libvirt_daemon.py; no system service is enabled or started),
  # virsh and virt-xml-validate (+ xmllint), qemu for x86 guests, iptables for the network driver's
  # rules (libvirt 9.0 has no nftables backend), nc for SSH's ProxyCommand into the lab namespace
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libxml2-utils qemu-system-x86
  iptables netcat-openbsd
  # backends and client
  nginx-light curl wrk nftables tcpdump
  # the demo report (build/report/<prefix>/report.html): Graphviz draws the topology (with the
  # DejaVu fonts), Chromium is the browser its test reads it in (headless)
  graphviz fonts-dejavu-core chromium
  # libvirt-python builds against libvirt's headers
  libvirt-dev pkg-config gcc python3-dev
  make git
)

if [[ $EUID -ne 0 ]]; then
  echo "setup: must run as root (installs OS packages; the lab needs CAP_NET_ADMIN and CAP_BPF)" >&2
  exit 1
fi

missing=()
for p in "${OS_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing OS packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # The lab runs its own nginx per backend namespace, and its own libvirtd, and never touches
  # the system services: a policy-rc.d that refuses service starts keeps a package from starting
  # one at install.
  own_policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [[ -n "$own_policy" ]]; then rm -f /usr/sbin/policy-rc.d; fi
fi

# The datapath pins programs and maps in bpffs; a fresh boot may not have it mounted.
if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf
fi

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
# Reinstall only when requirements.txt changed since the last successful install.
want=$(sha256sum requirements.txt | cut -d' ' -f1)
have=$(cat .venv/.requirements.sha256 2>/dev/null || true)
if [[ "$want" != "$have" ]]; then
  echo "setup: installing Python requirements into .venv"
  .venv/bin/pip install -q --upgrade pip wheel >/dev/null 2>&1
  .venv/bin/pip install -q -r requirements.txt 2> >(grep -v "is ignored: it is neither" >&2)
  echo "$want" > .venv/.requirements.sha256
fi
# ansible-test sanity builds a virtualenv per test and installs its pinned requirements there:
# the wheels come from PyPI now, so `make sanity` (tests/sanity/run.py) installs them offline.
want=$(sha256sum tests/sanity/requirements.txt | cut -d' ' -f1)
have=$(cat .venv/sanity/.requirements.sha256 2>/dev/null || true)
if [[ "$want" != "$have" ]]; then
  echo "setup: downloading the sanity tests' wheels into .venv/sanity/wheels"
  mkdir -p .venv/sanity
  .venv/bin/pip download -q --only-binary=:all: --no-deps -d .venv/sanity/wheels \
    -r tests/sanity/requirements.txt 2> >(grep -v "is ignored: it is neither" >&2)
  echo "$want" > .venv/sanity/.requirements.sha256
fi
# l4lbctl on PATH (.venv/bin, which `make` puts first on PATH, as activating the venv does).
ln -sfn ../../bin/l4lbctl .venv/bin/l4lbctl
echo "setup: ok"
