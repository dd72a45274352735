/* SPDX-License-Identifier: GPL-2.0 */
/* ipip.h: the one rule both backend decap programs (XDP and tc) apply to a frame before they
 * strip an outer IPv4 header. */
#ifndef L4LB_IPIP_H
#define L4LB_IPIP_H

#include "compat.h"
#include "consts.h"
#include "parsing.h"

enum lb_ipip_verdict {
	LB_IPIP_NOT_OURS = 0, /* not Ethernet II + IPv4 with protocol 4: pass untouched */
	LB_IPIP_MALFORMED,    /* claims to be IPIP but is not well formed: drop */
	LB_IPIP_DECAP,        /* well formed: remove *olen bytes after the MAC header */
};

/* Well formed = outer IPv4 with a valid IHL, a total length inside the frame and covering the
 * inner header, not a fragment; inner header present, IPv4, IHL >= 5, fits in the outer. */
static __always_inline int lb_ipip_check(void *data, void *data_end, __u32 *olen)
{
	struct lb_ethhdr *eth = data;
	struct lb_iphdr *outer, *inner;
	__u32 len, tot, avail;

	if ((void *)(eth + 1) > data_end)
		return LB_IPIP_NOT_OURS;
	if (eth->h_proto != lb_htons(LB_ETH_P_IP))
		return LB_IPIP_NOT_OURS;
	outer = (void *)(eth + 1);
	if ((void *)(outer + 1) > data_end)
		return LB_IPIP_NOT_OURS; /* not even an IPv4 header: not ours to judge */
	if (outer->protocol != LB_IPPROTO_IPIP)
		return LB_IPIP_NOT_OURS;

	if ((outer->ver_ihl >> 4) != 4)
		return LB_IPIP_MALFORMED;
	len = (outer->ver_ihl & 0x0f) * 4;
	if (len < LB_IP_HLEN)
		return LB_IPIP_MALFORMED;
	avail = (__u32)(data_end - (void *)outer);
	tot = lb_ntohs(outer->tot_len);
	if (tot > avail || tot < len + LB_IP_HLEN)
		return LB_IPIP_MALFORMED;
	if (outer->frag_off & lb_htons(LB_IP_MF | LB_IP_OFFMASK))
		return LB_IPIP_MALFORMED;
	inner = (void *)outer + len;
	if ((void *)(inner + 1) > data_end)
		return LB_IPIP_MALFORMED;
	if ((inner->ver_ihl >> 4) != 4 || (inner->ver_ihl & 0x0f) < 5)
		return LB_IPIP_MALFORMED;
	if (lb_ntohs(inner->tot_len) > tot - len)
		return LB_IPIP_MALFORMED;
	*olen = len;
	return LB_IPIP_DECAP;
}

#endif /* L4LB_IPIP_H */
