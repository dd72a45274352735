# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Seed volumes: how a libvirt guest that boots an image of its own learns who it is.

A seed is a small ISO 9660 volume attached to the guest as a second disk, read on first boot:
``cidata`` for cloud-init's NoCloud data source (Linux cloud images; the files come from
``lab_image.nocloud_seed``) and ``config-2`` for a cloudbase-init config drive (Windows images;
:func:`cloudbase_seed`). Written with xorriso, read back the same way to judge whether the seed
on disk is the one wanted. The image lab_image builds needs none: its kernel command line
carries the same settings (``lab_image.kernel_cmdline``).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import shutil
import tempfile
import uuid

from .provider import run

# Each seed volume kind: its label, and the file holding the instance id that names it.
SEED_VOLUMES = {"nocloud": ("cidata", "meta-data", "instance-id"),
                "configdrive": ("config-2", "openstack/latest/meta_data.json", "uuid")}


def write_seed(path, files, label="cidata", mode=0o644):
    """A seed volume at ``path``: an ISO 9660 image labelled ``label`` (``cidata``: a NoCloud
    seed, as cloud-localds makes it; ``config-2``: a cloudbase-init config drive) holding
    ``files`` ({path in the volume: text}); written whole with ``mode``, then renamed."""
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    d = tempfile.mkdtemp(prefix=".seed.", dir=os.path.dirname(path))
    try:
        root = os.path.join(d, "root")
        for name, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(root, name)), mode=0o700, exist_ok=True)
            with open(os.path.join(root, name), "w") as f:
                f.write(text)
        tmp = path + ".tmp"
        run(["xorriso", "-as", "mkisofs", "-quiet", "-output", tmp, "-volid", label, "-joliet", "-rock", root])
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def read_seed(path):
    """The files of the seed volume at ``path`` ({name: text}), None when there is none or it
    cannot be read (it is then written again)."""
    if not os.path.isfile(path):
        return None
    d = tempfile.mkdtemp(prefix=".seed-read.", dir=os.path.dirname(path))
    try:
        p = run(["xorriso", "-osirrox", "on", "-indev", path, "-extract", "/", d], check=False)
        if p.returncode != 0:
            return None
        out = {}
        for top, dirs, names in os.walk(d):
            for sub in dirs:
                os.chmod(os.path.join(top, sub), 0o700)  # extracted read-only, like the ISO
            for name in names:
                with open(os.path.join(top, name)) as f:
                    out[os.path.relpath(os.path.join(top, name), d)] = f.read()
        return out
    finally:
        os.chmod(d, 0o700)  # xorriso gives the directory the ISO root's read-only mode
        shutil.rmtree(d, ignore_errors=True)


def _ps_quote(text):
    """``text`` as a single-quoted PowerShell string."""
    return "'" + str(text).replace("'", "''") + "'"


def _winrm_script(pfx, passphrase, subnet):
    """The first-boot script (cloudbase-init user data, run as SYSTEM by PowerShell): import the
    WinRM certificate the lab made for this node and listen on HTTPS with it, reachable from the
    lab's subnet only."""
    return "\n".join([
        "#ps1_sysnative",
        "# L4LB lab: WinRM over HTTPS with the certificate the lab made for this node (its CA is the lab's).",
        "$ErrorActionPreference = 'Stop'",
        "$path = Join-Path -Path $env:TEMP -ChildPath 'l4lb-winrm.pfx'",
        f"[IO.File]::WriteAllBytes($path, [Convert]::FromBase64String('{base64.b64encode(pfx).decode()}'))",
        f"$secret = ConvertTo-SecureString -String {_ps_quote(passphrase)} -AsPlainText -Force",
        "$cert = Import-PfxCertificate -FilePath $path -CertStoreLocation Cert:\\LocalMachine\\My -Password $secret",
        "Remove-Item -LiteralPath $path",
        "Get-ChildItem -Path WSMan:\\localhost\\Listener | Where-Object { $_.Keys -contains 'Transport=HTTPS' } | "
        "Remove-Item -Recurse -Force",
        "New-Item -Path WSMan:\\localhost\\Listener -Transport HTTPS -Address * "
        "-CertificateThumbPrint $cert.Thumbprint -Force | Out-Null",
        "if (-not (Get-NetFirewallRule -Name 'l4lb-winrm-https' -ErrorAction SilentlyContinue)) {",
        "    New-NetFirewallRule -Name 'l4lb-winrm-https' -DisplayName 'L4LB lab: WinRM over HTTPS' -Direction Inbound "
        f"-Protocol TCP -LocalPort 5986 -RemoteAddress '{subnet}' -Action Allow | Out-Null",
        "}",
        ""])


def cloudbase_seed(name, ip_cidr, mtu, mac, admin_password, pfx, pfx_passphrase=""):
    """The cloudbase-init config drive of a Windows guest ({path: text}).

    ``openstack/latest/meta_data.json`` names the host and carries the administrator password
    (cloudbase-init's SetUserPasswordPlugin sets it for the user its configuration names);
    ``network_data.json`` gives the NIC with ``mac`` its static address and MTU (no gateway, no
    DNS: the lab's switch is isolated); ``user_data`` is :func:`_winrm_script`. The instance's
    uuid is a digest of everything else, so a changed seed is a new instance to cloudbase-init,
    which applies it again."""
    iface = ipaddress.IPv4Interface(ip_cidr)
    network = {"links": [{"id": "lab0", "type": "phy", "ethernet_mac_address": mac, "mtu": mtu}],
               "networks": [{"id": "lab", "type": "ipv4", "link": "lab0", "ip_address": str(iface.ip),
                             "netmask": str(iface.network.netmask), "routes": [], "network_id": "lab"}],
               "services": []}
    files = {"openstack/latest/network_data.json": json.dumps(network, indent=2, sort_keys=True) + "\n",
             "openstack/latest/user_data": _winrm_script(pfx, pfx_passphrase, iface.network)}
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path}\0{files[path]}\0".encode())
    digest.update(f"{name}\0{admin_password}".encode())
    meta = {"uuid": str(uuid.UUID(hex=digest.hexdigest()[:32])), "name": name, "hostname": name,
            "launch_index": 0, "availability_zone": "l4lb", "admin_pass": admin_password}
    files["openstack/latest/meta_data.json"] = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    return files
