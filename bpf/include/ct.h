/* SPDX-License-Identifier: GPL-2.0 */
/* ct.h: a flow's life as the LB sees it, and when it is over.
 *
 * The CT entry records the handshake and the close per direction (ct_flags, LB_CT_F_* in
 * consts.h). A flow is over when its entry has been quiet for the lifetime of its state
 * (LB_CT_*_TIMEOUT): its next packet then starts a new flow, the control plane's GC may delete
 * the entry, and its SNAT port may go to another flow (lb_snat_port_free). No timers: expiry is
 * judged when a packet or an allocation meets the entry (eBPF-for-Windows has no bpf_timer).
 * module_utils/l4lb/ct.py applies the same rules for the GC; tests/datapath/test_ct_lifetimes.py
 * checks that both agree. */
#ifndef L4LB_CT_H
#define L4LB_CT_H

#include "compat.h"
#include "consts.h"
#include "maps.h"

#define LB_CT_F_CLOSED_BOTH (LB_CT_F_CLIENT_FIN | LB_CT_F_BACKEND_FIN)

/* How long the entry may stay quiet before the flow is over. */
static __always_inline __u64 lb_ct_lifetime_ns(const struct ct_entry *ct, __u8 proto)
{
	if (proto != LB_IPPROTO_TCP)
		return LB_CT_UDP_TIMEOUT * LB_NS_PER_S;
	if ((ct->tcp_flags_seen & LB_TCP_RST) || (ct->ct_flags & LB_CT_F_CLOSED_BOTH) == LB_CT_F_CLOSED_BOTH)
		return LB_CT_CLOSED_TIMEOUT * LB_NS_PER_S;
	if (ct->ct_flags & LB_CT_F_CLOSED_BOTH)
		return LB_CT_FIN_TIMEOUT * LB_NS_PER_S;
	if (!(ct->ct_flags & LB_CT_F_ESTABLISHED))
		return LB_CT_SYN_TIMEOUT * LB_NS_PER_S;
	return LB_CT_TCP_TIMEOUT * LB_NS_PER_S;
}

/* Quiet for longer than `lifetime`. Signed: another CPU may have stamped the entry after this
 * CPU read `now`, and that must read as "just seen", not as an age of 2^64 ns. */
static __always_inline int lb_ct_quiet_for(const struct ct_entry *ct, __u64 now, __u64 lifetime)
{
	return (__s64)(now - ct->last_seen_ns) > (__s64)lifetime;
}

static __always_inline int lb_ct_expired(const struct ct_entry *ct, __u8 proto, __u64 now)
{
	return lb_ct_quiet_for(ct, now, lb_ct_lifetime_ns(ct, proto));
}

/* The entry's clock, stamped at most once per tick (last_seen_ns is at tick resolution anyway):
 * `now` is the clock when the caller read it this tick, else 0 (then it is read here). */
static __always_inline void lb_ct_stamp(struct ct_entry *ct, __u32 tick, __u64 now)
{
	if (ct->last_tick != tick) {
		ct->last_tick = tick;
		ct->last_seen_ns = now ? now : LB_NOW_NS();
	}
}

/* ct_flags after a client -> service packet with these TCP flags (0 for UDP). */
static __always_inline __u8 lb_ct_client_flags(__u8 ct_flags, __u8 tcp_flags)
{
	if ((tcp_flags & (LB_TCP_SYN | LB_TCP_ACK)) == LB_TCP_ACK)
		ct_flags |= LB_CT_F_ESTABLISHED;
	if (tcp_flags & LB_TCP_FIN)
		ct_flags |= LB_CT_F_CLIENT_FIN;
	return ct_flags;
}

/* ct_flags after a backend -> client packet (SNAT replies: the only ones the LB sees). The
 * side that sends the first FIN ends in TIME_WAIT; when that is the backend, the (LB_IP,
 * nat_port) tuple stays busy there for its TIME_WAIT. */
static __always_inline __u8 lb_ct_backend_flags(__u8 ct_flags, __u8 tcp_flags)
{
	if (tcp_flags & LB_TCP_FIN) {
		if (!(ct_flags & LB_CT_F_CLIENT_FIN))
			ct_flags |= LB_CT_F_BACKEND_TW;
		ct_flags |= LB_CT_F_BACKEND_FIN;
	}
	return ct_flags;
}

/* May a new flow from new_client take the SNAT port that `owner` (the CT entry the port's SNAT
 * entry points at, NULL if gone) holds? Yes when the owner is gone, has moved to another port,
 * or is over; a port whose backend sits in TIME_WAIT waits LB_SNAT_TIME_WAIT for any other
 * client. */
static __always_inline int lb_snat_port_free(const struct ct_entry *owner, __u8 proto, __be16 port,
					     __be32 owner_client, __be32 new_client, __u64 now)
{
	__u64 guard;

	if (!owner)
		return 1;
	if (owner->nat_port != port)
		return 1;
	guard = lb_ct_lifetime_ns(owner, proto);
	if ((owner->ct_flags & LB_CT_F_BACKEND_TW) && owner_client != new_client &&
	    guard < LB_SNAT_TIME_WAIT * LB_NS_PER_S)
		guard = LB_SNAT_TIME_WAIT * LB_NS_PER_S;
	return lb_ct_quiet_for(owner, now, guard);
}

#endif /* L4LB_CT_H */
