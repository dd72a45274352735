# -*- coding: utf-8 -*-
# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading the lab's captures (classic pcap, what ``tcpdump -w`` writes), defined once:
``lab_capture`` counts the frames of lab_verify's capture with it, and the demo report
(``lab_report``) counts and lists them again from the copy saved beside the report.

Standard library only. Imported as ``ansible.module_utils.lab_pcap`` by the modules and as
``lab_pcap`` by tests.
"""

from __future__ import annotations

import ipaddress
import struct

LINKTYPE_ETHERNET = 1
_MAGIC = {0xA1B2C3D4: ("<", 1e-6), 0xA1B23C4D: ("<", 1e-9),
          0xD4C3B2A1: (">", 1e-6), 0x4D3CB2A1: (">", 1e-9)}
TCP_FLAGS = ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "."), (0x20, "U"))


def _header(f):
    """(endian, time unit, linktype) of an open pcap file, or None when it has no full header."""
    head = f.read(24)
    if len(head) < 24:
        return None
    endian, unit = _MAGIC.get(struct.unpack("<I", head[:4])[0], ("<", 1e-6))
    return endian, unit, struct.unpack(endian + "I", head[20:24])[0] & 0xFFFF


def frames(path, limit=None):
    """(seconds, captured bytes, original length) of each record, at most ``limit``; a truncated
    last record (a capture stopped mid-write) ends the list."""
    out = []
    with open(path, "rb") as f:
        hdr = _header(f)
        if hdr is None:
            return out
        endian, unit, _link = hdr
        while limit is None or len(out) < limit:
            rec = f.read(16)
            if len(rec) < 16:
                break
            sec, frac, incl, orig = struct.unpack(endian + "IIII", rec)
            data = f.read(incl)
            if len(data) < incl:
                break
            out.append((sec + frac * unit, data, orig))
    return out


def count_frames(path):
    """Records in a classic pcap file (tcpdump -w); tolerates a truncated last record."""
    with open(path, "rb") as f:
        hdr = _header(f)
        if hdr is None:
            return 0
        endian = hdr[0]
        n = 0
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return n
            incl = struct.unpack(endian + "IIII", rec)[2]
            if len(f.read(incl)) < incl:
                return n
            n += 1


def linktype(path):
    with open(path, "rb") as f:
        hdr = _header(f)
    return hdr[2] if hdr else None


def describe(data):
    """One Ethernet frame as {src, dst, proto, sport, dport, flags, length}: what a capture line
    of Wireshark shows in its first columns. Fields it cannot read stay None."""
    out = {"src": None, "dst": None, "proto": None, "sport": None, "dport": None, "flags": None}
    off, ethertype = 12, None
    while len(data) >= off + 2:
        ethertype = struct.unpack("!H", data[off:off + 2])[0]
        if ethertype in (0x8100, 0x88A8):  # VLAN tags
            off += 4
            continue
        off += 2
        break
    if ethertype != 0x0800 or len(data) < off + 20:
        out["proto"] = f"ethertype 0x{ethertype:04x}" if ethertype is not None else None
        return out
    ihl = (data[off] & 0x0F) * 4
    proto = data[off + 9]
    out["src"] = str(ipaddress.IPv4Address(data[off + 12:off + 16]))
    out["dst"] = str(ipaddress.IPv4Address(data[off + 16:off + 20]))
    out["proto"] = {6: "tcp", 17: "udp", 4: "ipip", 1: "icmp"}.get(proto, str(proto))
    l4 = off + ihl
    if proto in (6, 17) and len(data) >= l4 + 4:
        out["sport"], out["dport"] = struct.unpack("!HH", data[l4:l4 + 4])
    if proto == 6 and len(data) >= l4 + 14:
        bits = data[l4 + 13]
        out["flags"] = "".join(c for b, c in TCP_FLAGS if bits & b) or "none"
    return out
