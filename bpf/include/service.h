/* SPDX-License-Identifier: GPL-2.0 */
/* service.h: is a packet for a service, and which one. Four lookups, cheapest first:
 *   lb_vip_maybe        an ARRAY read: may the destination be a VIP at all?
 *   lb_service_live     an ARRAY read: is a tracked flow's service still live on its frontend?
 *   lb_front_hinted     two ARRAY reads: the service a new flow's frontend hints at, if live
 *   lb_lookup_service   the service hash (lb4_services_v2), for everything else. */
#ifndef L4LB_SERVICE_H
#define L4LB_SERVICE_H

#include "compat.h"
#include "consts.h"
#include "maps.h"

/* The address's bucket in lb4_vip_filter: the top bits of a multiplicative hash of the __be32 as
 * the CPU reads it (structs.vip_bucket mirrors this). */
static __always_inline __u32 lb_vip_bucket(__be32 daddr)
{
	return ((__u32)daddr * LB_VIP_FILTER_MULT) >> (32 - LB_VIP_FILTER_BITS);
}

/* 0: no service has this destination address (a false "maybe" only costs lookups). */
static __always_inline int lb_vip_maybe(__be32 daddr)
{
	__u32 bucket = lb_vip_bucket(daddr);
	__u32 *frontends = bpf_map_lookup_elem(&lb4_vip_filter, &bucket);

	return frontends && *frontends;
}

/* The tracked flow's service (its CT entry's rev_nat_index) is live on the flow's frontend: what
 * the service hash would answer for this packet is that service, with backends. */
static __always_inline int lb_service_live(__u16 rev_nat_index, const struct ipv4_ct_tuple *tuple)
{
	__u32 id = rev_nat_index;
	struct lb4_service_front *front = bpf_map_lookup_elem(&lb4_service_by_id, &id);

	return front && front->proto == tuple->nexthdr && front->address == tuple->daddr &&
	       front->dport == tuple->dport;
}

/* The frontend's bucket in lb4_front_hint: the same multiplicative hash over the VIP, port and
 * protocol as the CPU reads them (structs.front_bucket mirrors this). */
static __always_inline __u32 lb_front_bucket(const struct ipv4_ct_tuple *tuple)
{
	__u32 x = (__u32)tuple->daddr ^ ((__u32)tuple->dport << 16) ^ (__u32)tuple->nexthdr;

	return (x * LB_VIP_FILTER_MULT) >> (32 - LB_FRONT_HINT_BITS);
}

/* The service live on this packet's frontend, as its bucket's hint says and lb4_service_by_id
 * confirms: no service hash lookup. 0: no hint, or not this frontend's (then the hash decides). */
static __always_inline __u16 lb_front_hinted(const struct ipv4_ct_tuple *tuple)
{
	__u32 bucket = lb_front_bucket(tuple);
	__u32 *sid = bpf_map_lookup_elem(&lb4_front_hint, &bucket);

	if (!sid || !*sid || *sid > 0xffff || !lb_service_live((__u16)*sid, tuple))
		return 0;
	return (__u16)*sid;
}

static __always_inline struct lb4_service *lb_lookup_service(const struct ipv4_ct_tuple *tuple)
{
	struct lb4_key key = {};

	key.address = tuple->daddr;
	key.dport = tuple->dport;
	key.proto = tuple->nexthdr;
	return bpf_map_lookup_elem(&lb4_services_v2, &key);
}

#endif /* L4LB_SERVICE_H */
