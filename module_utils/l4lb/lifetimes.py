# Copyright: (c) 2026, L4LB lab toolkit contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection lifetimes: when a tracked flow is over, and when its SNAT port may go to another.

One set of values (:class:`CtTimeouts`) feeds both sides: ``build.py`` renders them as the
datapath's ``LB_CT_*_TIMEOUT`` / ``LB_SNAT_TIME_WAIT`` macros (bpf/include/consts.h), and the
control plane's garbage collector (``ct.gc``) judges entries with :func:`lifetime_ns` and
:func:`port_guard_ns`, the Python twins of ``lb_ct_lifetime_ns`` / ``lb_snat_port_free`` in
bpf/include/ct.h. tests/datapath/test_ct_lifetimes.py checks that both agree on a real program.

Defaults follow Cilium's CT timeouts where there is one; see bpf/README.md "Lifetimes" for why
each value is what it is.
"""

from __future__ import annotations

import dataclasses

from .errors import InvalidConfig
from .structs import (
    CT_F_BACKEND_FIN, CT_F_BACKEND_TW, CT_F_CLIENT_FIN, CT_F_ESTABLISHED, IPPROTO_TCP, TCP_RST,
)

NS_PER_S = 1_000_000_000
_CLOSED_BOTH = CT_F_CLIENT_FIN | CT_F_BACKEND_FIN


@dataclasses.dataclass(frozen=True)
class CtTimeouts:
    """Seconds (whole, >= 1) a flow's entry may stay quiet in each state."""

    syn: int = 5           # TCP, handshake not completed: what a SYN flood costs per SYN
    tcp: int = 21600       # TCP established (Cilium CT_CONNECTION_LIFETIME_TCP)
    fin: int = 10          # TCP, FIN seen one way only (Cilium CT_CLOSE_TIMEOUT)
    closed: int = 2        # TCP, FIN seen both ways or RST
    udp: int = 60          # UDP (Cilium CT_CONNECTION_LIFETIME_NONTCP)
    time_wait: int = 60    # SNAT port of a flow the backend closed first, for another client

    MACROS = {"syn": "LB_CT_SYN_TIMEOUT", "tcp": "LB_CT_TCP_TIMEOUT", "fin": "LB_CT_FIN_TIMEOUT",
              "closed": "LB_CT_CLOSED_TIMEOUT", "udp": "LB_CT_UDP_TIMEOUT", "time_wait": "LB_SNAT_TIME_WAIT"}

    def __post_init__(self):
        for name in self.MACROS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 7 * 24 * 3600:
                raise InvalidConfig(f"ct_timeouts.{name}: {v!r} is not a whole number of seconds in 1..604800")

    @classmethod
    def parse(cls, value) -> "CtTimeouts":
        """From a dict of seconds (unknown keys refused by name); None or {} = the defaults."""
        if isinstance(value, CtTimeouts):
            return value
        value = dict(value or {})
        unknown = sorted(set(value) - set(cls.MACROS))
        if unknown:
            raise InvalidConfig(f"ct_timeouts: unknown key(s) {', '.join(unknown)} "
                                f"(known: {', '.join(cls.MACROS)})")
        out = {}
        for k, v in value.items():
            if isinstance(v, str) and v.strip().isdigit():
                v = int(v)
            out[k] = v
        return cls(**out)

    def macros(self) -> dict[str, str]:
        return {macro: str(getattr(self, name)) for name, macro in self.MACROS.items()}

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.MACROS}


def lifetime_ns(t: CtTimeouts, proto: int, tcp_flags_seen: int, ct_flags: int) -> int:
    """How long a CT entry in this state may stay quiet (ct.h lb_ct_lifetime_ns)."""
    if proto != IPPROTO_TCP:
        return t.udp * NS_PER_S
    if tcp_flags_seen & TCP_RST or ct_flags & _CLOSED_BOTH == _CLOSED_BOTH:
        return t.closed * NS_PER_S
    if ct_flags & _CLOSED_BOTH:
        return t.fin * NS_PER_S
    if not ct_flags & CT_F_ESTABLISHED:
        return t.syn * NS_PER_S
    return t.tcp * NS_PER_S


def port_guard_ns(t: CtTimeouts, proto: int, tcp_flags_seen: int, ct_flags: int, same_client: bool) -> int:
    """How long the SNAT port of a quiet flow stays its own (ct.h lb_snat_port_free)."""
    guard = lifetime_ns(t, proto, tcp_flags_seen, ct_flags)
    if ct_flags & CT_F_BACKEND_TW and not same_client:
        guard = max(guard, t.time_wait * NS_PER_S)
    return guard


def sustainable_rate(ports_per_backend: int, backends: int, guard_s: float) -> float:
    """New SNAT flows per second the port space carries when every port is busy for guard_s
    (ports per backend / guard time x backends)."""
    return ports_per_backend * backends / guard_s
