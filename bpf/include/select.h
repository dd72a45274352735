/* SPDX-License-Identifier: GPL-2.0 */
/* select.h: the flow hash (jhash_3words, as Cilium's hash_from_tuple_v4) and Maglev backend
 * selection (connection tracking is ct.h). module_utils/l4lb/flowhash.py mirrors lb_flow_hash(). */
#ifndef L4LB_SELECT_H
#define L4LB_SELECT_H

#include "compat.h"
#include "consts.h"
#include "maps.h"

#define LB_JHASH_INITVAL 0xdeadbeefu

static __always_inline __u32 lb_rol32(__u32 w, __u32 s)
{
	return (w << s) | (w >> (32 - s));
}

/* Bob Jenkins' lookup3 final mix, as Linux's <linux/jhash.h>. */
static __always_inline __u32 lb_jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval)
{
	initval += LB_JHASH_INITVAL + (3 << 2);
	a += initval;
	b += initval;
	c += initval;
	c ^= b; c -= lb_rol32(b, 14);
	a ^= c; a -= lb_rol32(c, 11);
	b ^= a; b -= lb_rol32(a, 25);
	c ^= b; c -= lb_rol32(b, 16);
	a ^= c; a -= lb_rol32(c, 4);
	b ^= a; b -= lb_rol32(a, 14);
	c ^= b; c -= lb_rol32(b, 24);
	return c;
}

/* The 5-tuple hash. Words are the host-order values of the header fields:
 *   a = saddr, b = daddr, c = sport << 16 | dport, initval = LB_HASH_SEED ^ proto. */
static __always_inline __u32 lb_flow_hash(__be32 saddr, __be32 daddr, __be16 sport, __be16 dport,
					  __u8 proto)
{
	return lb_jhash_3words(lb_ntohl(saddr), lb_ntohl(daddr),
			       ((__u32)lb_ntohs(sport) << 16) | lb_ntohs(dport),
			       LB_HASH_SEED ^ (__u32)proto);
}

/* Maglev: backend id at table[hash % M] of the service's inner map; 0 if none. */
static __always_inline __u32 lb_maglev_select(__u16 rev_nat_index, __u32 hash)
{
	struct lb4_maglev_lut *lut;
	__u32 zero = 0, idx;
	void *inner;

	inner = bpf_map_lookup_elem(&lb4_maglev, &rev_nat_index);
	if (!inner)
		return 0;
	lut = bpf_map_lookup_elem(inner, &zero);
	if (!lut)
		return 0;
	idx = hash % LB_MAGLEV_LUT_SIZE;
	/* clang proves idx < M and drops the test; the verifier cannot follow '%', so hide idx. */
	LB_BARRIER_VAR(idx);
	if (idx >= LB_MAGLEV_LUT_SIZE)
		return 0;
	return lut->backend_ids[idx];
}

#endif /* L4LB_SELECT_H */
