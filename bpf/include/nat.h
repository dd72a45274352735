/* SPDX-License-Identifier: GPL-2.0 */
/* nat.h: L2/L3/L4 rewrites (SNAT forward and reply) with incremental checksums, and SNAT
 * source-port allocation. */
#ifndef L4LB_NAT_H
#define L4LB_NAT_H

#include "compat.h"
#include "consts.h"
#include "maps.h"
#include "parsing.h"
#include "csum.h"
#include "ct.h"
#include "select.h"

static __always_inline void lb_set_macs(struct lb_ethhdr *eth, const __u8 *dst)
{
	const __u8 src[6] = LB_MAC;

	__builtin_memcpy(eth->h_dest, dst, 6);
	/* Byte by byte from a constant: immediate stores, no .rodata map. */
	eth->h_source[0] = src[0];
	eth->h_source[1] = src[1];
	eth->h_source[2] = src[2];
	eth->h_source[3] = src[3];
	eth->h_source[4] = src[4];
	eth->h_source[5] = src[5];
}

/* A next hop's MAC as the control plane wrote it: all zero until it is known. */
static __always_inline int lb_mac_known(const __u8 *mac)
{
	return (mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]) != 0;
}

/* Rewrite addresses and ports of a parsed IPv4 TCP/UDP packet (no options, full L4 header:
 * the caller checked p->l4_ok), decrement the TTL, and fix both checksums incrementally. */
static __always_inline void lb_rewrite4(struct lb_pkt *p, void *data_end, __be32 saddr, __be32 daddr,
					__be16 sport, __be16 dport)
{
	struct lb_iphdr *ip = p->ip;
	__u16 *ttl_word = (__u16 *)&ip->ttl;
	__u16 old_ttl_word = *ttl_word, new_ttl_word;
	__u64 addr_diff = 0, ip_diff, l4_diff;

	addr_diff = lb_csum_add32(addr_diff, ip->saddr, saddr);
	addr_diff = lb_csum_add32(addr_diff, ip->daddr, daddr);
	ip->saddr = saddr;
	ip->daddr = daddr;
	ip->ttl -= 1;
	new_ttl_word = *ttl_word;
	ip_diff = lb_csum_add16(addr_diff, old_ttl_word, new_ttl_word);
	ip->check = lb_csum_apply(ip->check, ip_diff);

	if (p->proto == LB_IPPROTO_TCP) {
		struct lb_tcphdr *th = p->l4;

		if ((void *)(th + 1) > data_end)
			return;
		l4_diff = lb_csum_add16(addr_diff, th->source, sport);
		l4_diff = lb_csum_add16(l4_diff, th->dest, dport);
		th->source = sport;
		th->dest = dport;
		th->check = lb_csum_apply(th->check, l4_diff);
	} else {
		struct lb_udphdr *uh = p->l4;

		if ((void *)(uh + 1) > data_end)
			return;
		l4_diff = lb_csum_add16(addr_diff, uh->source, sport);
		l4_diff = lb_csum_add16(l4_diff, uh->dest, dport);
		uh->source = sport;
		uh->dest = dport;
		uh->check = lb_csum_apply_udp(uh->check, l4_diff);
	}
}

/* SNAT port allocation (both modes: the mode decides new flows only). */
static __always_inline int lb_snat_same_flow(const struct snat_entry *a, const struct snat_entry *b)
{
	return a->client_addr == b->client_addr && a->vip == b->vip &&
	       a->client_port == b->client_port && a->vport == b->vport;
}

/* The CT key of the flow a SNAT entry belongs to. */
static __always_inline void lb_snat_owner_tuple(struct ipv4_ct_tuple *t, const struct snat_entry *se, __u8 proto)
{
	t->daddr = se->vip;
	t->saddr = se->client_addr;
	t->dport = se->vport;
	t->sport = se->client_port;
	t->nexthdr = proto;
	t->flags = 0;
	t->pad = 0;
}

/* The port's entry `cur` belongs to another flow: take it if that flow is over (ct.h,
 * lb_snat_port_free). The old flow's CT entry goes too, so a late packet of it starts afresh
 * instead of reusing a port that is no longer its own. No atomics (eBPF-for-Windows): two CPUs
 * taking the same stale port in the same instant would both get it; the allocation's hash makes
 * that a collision of two fresh flows on one port among thousands in one instant. */
static __always_inline int lb_snat_take_stale(struct snat_entry *cur, const struct snat_entry *se, __u8 proto,
					      __be16 port, __u64 now)
{
	struct ipv4_ct_tuple owner_key = {};
	struct ct_entry *owner;

	lb_snat_owner_tuple(&owner_key, cur, proto);
	owner = bpf_map_lookup_elem(&ct4_global, &owner_key);
	if (!lb_snat_port_free(owner, proto, port, cur->client_addr, se->client_addr, now))
		return 0;
	if (owner && owner->nat_port == port)
		bpf_map_delete_elem(&ct4_global, &owner_key);
	cur->client_addr = se->client_addr;
	cur->vip = se->vip;
	cur->client_port = se->client_port;
	cur->vport = se->vport;
	cur->rev_nat_index = se->rev_nat_index;
	return 1;
}

/* Find a nat_port for (backend, proto) and insert the reply-path entry. Probe i tries the port
 * at jhash(hash, i) in [SNAT_PORT_MIN, SNAT_PORT_MAX]: independent probes, so with a share f of
 * the ports held a flow is refused with probability f^SNAT_PROBES. A port is usable when free,
 * when it already belongs to this client flow (a CT entry evicted or expired before its SNAT
 * entry; a fixed client tuple reconnecting), or when its flow is over. Returns the port
 * (network order) or 0. */
static __always_inline __be16 lb_snat_alloc(struct snat_key *sk, struct snat_entry *se, __u32 hash,
					    __u64 now)
{
	int i;

#pragma unroll
	for (i = 0; i < SNAT_PROBES; i++) {
		struct snat_entry *cur;
		__u32 off = lb_jhash_3words(hash, i, 0, LB_SNAT_SEED) % SNAT_PORT_RANGE;
		__be16 port = lb_htons((__u16)(SNAT_PORT_MIN + off));

		sk->nat_port = port;
		if (bpf_map_update_elem(&lb4_snat, sk, se, BPF_NOEXIST) == 0)
			return port;
		cur = bpf_map_lookup_elem(&lb4_snat, sk);
		if (!cur)
			continue;
		if (lb_snat_same_flow(cur, se)) {
			cur->rev_nat_index = se->rev_nat_index;
			return port;
		}
		if (lb_snat_take_stale(cur, se, sk->proto, port, now))
			return port;
	}
	return 0;
}

#endif /* L4LB_NAT_H */
