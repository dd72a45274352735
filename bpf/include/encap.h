/* SPDX-License-Identifier: GPL-2.0 */
/* encap.h: DSR IPIP encapsulation with bpf_xdp_adjust_head (offered by eBPF-for-Windows 0.12). */
#ifndef L4LB_ENCAP_H
#define L4LB_ENCAP_H

#include "compat.h"
#include "consts.h"
#include "parsing.h"
#include "csum.h"
#include "nat.h"

/* Prepend an outer IPv4 header (src LB_IP, dst backend, proto 4, TTL LB_DSR_TTL, TOS, id and DF
 * copied from the inner header) in front of the unchanged inner packet; set the MACs.
 * Returns 0, or -1 if the head could not be moved / the frame is unreadable afterwards. */
static __always_inline int lb_dsr_encap(lb_xdp_ctx *ctx, __be32 backend, const __u8 *dmac)
{
	void *data = LB_CTX_DATA(ctx), *data_end = LB_CTX_DATA_END(ctx);
	struct lb_iphdr *inner = data + LB_ETH_HLEN;
	struct lb_ethhdr *eth;
	struct lb_iphdr *outer;
	__u8 mac[6];
	__u8 tos;
	__be16 id, frag, tot;

	if ((void *)(inner + 1) > data_end)
		return -1;
	tos = inner->tos;
	id = inner->id;
	frag = inner->frag_off & lb_htons(LB_IP_DF);
	tot = lb_htons(lb_ntohs(inner->tot_len) + LB_IP_HLEN);
	__builtin_memcpy(mac, dmac, 6);

	if (bpf_xdp_adjust_head(ctx, -(int)LB_IP_HLEN))
		return -1;
	data = LB_CTX_DATA(ctx);
	data_end = LB_CTX_DATA_END(ctx);
	eth = data;
	outer = data + LB_ETH_HLEN;
	if ((void *)(outer + 1) > data_end)
		return -1;

	eth->h_proto = lb_htons(LB_ETH_P_IP);
	lb_set_macs(eth, mac);

	outer->ver_ihl = 0x45;
	outer->tos = tos;
	outer->tot_len = tot;
	outer->id = id;
	outer->frag_off = frag;
	outer->ttl = LB_DSR_TTL;
	outer->protocol = LB_IPPROTO_IPIP;
	outer->check = 0;
	outer->saddr = LB_IP;
	outer->daddr = backend;
	outer->check = lb_ip_csum20((const __u16 *)outer);
	return 0;
}

#endif /* L4LB_ENCAP_H */
