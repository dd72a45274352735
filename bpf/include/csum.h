/* SPDX-License-Identifier: GPL-2.0 */
/* csum.h: Internet checksum arithmetic without helpers (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')).
 * One's-complement sums are byte-order independent, so raw (network-order) words are summed
 * as they sit in memory. bpf_csum_diff exists on both systems but costs a helper call; for a
 * handful of words plain arithmetic is cheaper. */
#ifndef L4LB_CSUM_H
#define L4LB_CSUM_H

#include "compat.h"

static __always_inline __u16 lb_csum_fold(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* Accumulate the change of a 32-bit / 16-bit field into a diff. */
static __always_inline __u64 lb_csum_add32(__u64 diff, __u32 from, __u32 to)
{
	__u32 nf = ~from;

	return diff + (nf & 0xffff) + (nf >> 16) + (to & 0xffff) + (to >> 16);
}

static __always_inline __u64 lb_csum_add16(__u64 diff, __u16 from, __u16 to)
{
	return diff + (__u16)~from + to;
}

/* Apply an accumulated diff to a checksum field. */
static __always_inline __u16 lb_csum_apply(__u16 check, __u64 diff)
{
	return (__u16)~lb_csum_fold((__u16)~check + diff);
}

/* UDP over IPv4: checksum 0 means "none" and stays 0; a computed 0 is sent as 0xffff. */
static __always_inline __u16 lb_csum_apply_udp(__u16 check, __u64 diff)
{
	__u16 c;

	if (check == 0)
		return 0;
	c = lb_csum_apply(check, diff);
	return c ? c : 0xffff;
}

/* Full checksum of an option-less IPv4 header (check field must be 0 or is skipped). */
static __always_inline __u16 lb_ip_csum20(const __u16 *w)
{
	__u64 s = 0;

	s += w[0]; s += w[1]; s += w[2]; s += w[3]; s += w[4];
	/* w[5] is the checksum field */
	s += w[6]; s += w[7]; s += w[8]; s += w[9];
	return (__u16)~lb_csum_fold(s);
}

#endif /* L4LB_CSUM_H */
