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

/* SNAT port allocation (both modes: the mode decides new flows only). A port is held by a
 * slot of lb4_snat (maps.h); the flow's CT entry keeps the port it got. */

/* The backend plane a backend's slots are in (and its lb4_snat_cursor). */
static __always_inline __u32 lb_snat_plane(__u32 backend_id)
{
	return backend_id % LB_SNAT_SLOTS;
}

/* The lb4_snat key of a port's slot for a backend; port in host order. */
static __always_inline __u32 lb_snat_key(__u32 port, __u32 backend_id)
{
	return lb_snat_plane(backend_id) * LB_SNAT_PLANE_SIZE + port;
}

static __always_inline int lb_snat_same_flow(const struct snat_entry *a, const struct snat_entry *b)
{
	return a->client_addr == b->client_addr && a->vip == b->vip && a->client_port == b->client_port &&
	       a->vport == b->vport && a->backend_id == b->backend_id && a->proto == b->proto;
}

/* The CT key of the flow a slot belongs to. */
static __always_inline void lb_snat_owner_tuple(struct ipv4_ct_tuple *t, const struct snat_entry *se)
{
	t->daddr = se->vip;
	t->saddr = se->client_addr;
	t->dport = se->vport;
	t->sport = se->client_port;
	t->nexthdr = se->proto;
	t->flags = 0;
	t->pad = 0;
}

/* May the flow `want` take this port's slot? Yes when it is free, already its own (a CT entry
 * evicted or expired before the slot; a fixed client tuple reconnecting gets its port back), or
 * held by a flow that is over (ct.h, lb_snat_port_free): that flow's CT entry then goes too, so
 * a late packet of it starts afresh instead of reusing a port that is no longer its own. */
static __always_inline int lb_snat_slot_usable(const struct snat_entry *cur, const struct snat_entry *want,
					       __be16 port, __u64 now)
{
	struct ipv4_ct_tuple owner_key = {};
	struct ct_entry *owner;

	if (!cur->client_addr || lb_snat_same_flow(cur, want))
		return 1;
	lb_snat_owner_tuple(&owner_key, cur);
	owner = bpf_map_lookup_elem(&ct4_global, &owner_key);
	if (!lb_snat_port_free(owner, cur->proto, port, cur->client_addr, want->client_addr, now))
		return 0;
	if (owner && owner->nat_port == port)
		bpf_map_delete_elem(&ct4_global, &owner_key);
	return 1;
}

/* Find a nat_port for the flow `want` (towards backend want->backend_id) and take its slot, one
 * slot read per probe. Probe 0 tries the port after the one this CPU's previous new flow to the
 * same backend plane tried (lb4_snat_cursor: consecutive flows to a plane read consecutive
 * slots, four to a cache line, and the port is free at once unless the plane's flows of a whole
 * sweep through the range are still alive; a CPU's first new flow to a plane starts that cursor
 * at the flow's hash).
 * Probe i >= 1 tries the port at jhash(hash, i) in [SNAT_PORT_MIN, SNAT_PORT_MAX]. Those are
 * independent, so with a share f of the ports busy in the backend's plane a flow is refused
 * with probability at most f^(SNAT_PROBES - 1) (counted: DROP_SNAT_PORTS). No atomics
 * (eBPF-for-Windows): two CPUs taking the same slot in the same instant would both get it; each
 * CPU walks its own cursors from its own starts, so they meet on one port only when one has
 * lapped the other. `prev` (network order, 0: none) is the port the same client tuple had, tried
 * first: a connection reopened on a closed tuple (a client's SYN retried after it reset a
 * backend's TIME_WAIT) keeps its port while its slot is still its own.
 * Returns the port (network order) or 0. */
static __always_inline __be16 lb_snat_alloc(const struct snat_entry *want, __be16 prev, __u32 hash, __u64 now)
{
	__u32 plane = lb_snat_plane(want->backend_id);
	__u32 *cursor = bpf_map_lookup_elem(&lb4_snat_cursor, &plane);
	int i;

	if (prev) {
		__u32 key = lb_snat_key(lb_ntohs(prev), want->backend_id);
		struct snat_entry *own = bpf_map_lookup_elem(&lb4_snat, &key);

		if (own && lb_snat_same_flow(own, want))
			return prev;
	}

#pragma unroll
	for (i = 0; i < SNAT_PROBES; i++) {
		__u32 port, key;
		struct snat_entry *cur;

		if (i == 0) {
			/* The cursor holds the next offset + 1. Unset (0), or past a smaller range a
			 * kept pin was built with, it starts where the flow's hash says: CPUs then
			 * walk from apart and do not race for the same slots in step. */
			__u32 off = cursor && *cursor ? *cursor - 1 : SNAT_PORT_RANGE;

			if (off >= SNAT_PORT_RANGE)
				off = hash % SNAT_PORT_RANGE;
			if (cursor)
				*cursor = off + 1 < SNAT_PORT_RANGE ? off + 2 : 1;
			port = SNAT_PORT_MIN + off;
		} else {
			port = SNAT_PORT_MIN + lb_jhash_3words(hash, i, 0, LB_SNAT_SEED) % SNAT_PORT_RANGE;
		}
		key = lb_snat_key(port, want->backend_id);
		cur = bpf_map_lookup_elem(&lb4_snat, &key);
		if (cur && lb_snat_slot_usable(cur, want, lb_htons((__u16)port), now)) {
			*cur = *want;
			return lb_htons((__u16)port);
		}
	}
	return 0;
}

/* The slot holding the flow a reply (backend -> LB_IP:port) belongs to, or NULL: the reply does
 * not name its backend id, so each plane's slot is checked against the backend it points at. */
static __always_inline struct snat_entry *lb_snat_reply_slot(__be32 backend_addr, __be16 backend_port, __u16 port,
							      __u8 proto)
{
	struct lb4_backend *be;
	struct snat_entry *cur;
	__u32 key, id;
	int j;

#pragma unroll
	for (j = 0; j < LB_SNAT_SLOTS; j++) {
		key = lb_snat_key(port, j); /* j < LB_SNAT_SLOTS: plane j */
		cur = bpf_map_lookup_elem(&lb4_snat, &key);
		if (!cur || !cur->client_addr || cur->proto != proto)
			continue;
		id = cur->backend_id;
		be = bpf_map_lookup_elem(&lb4_backends, &id);
		if (be && be->address == backend_addr && be->port == backend_port)
			return cur;
	}
	return 0;
}

#endif /* L4LB_NAT_H */
