// SPDX-License-Identifier: GPL-2.0
/* decap_xdp.c: IPIP decapsulation at XDP for backends (the job decap_permit_packet.c does on
 * the seed's Windows backends). Portable to eBPF-for-Windows 0.12 (bpf_xdp_adjust_head).
 *
 *   Ethernet II + IPv4 with protocol 4 (IPIP), well formed  -> outer IPv4 header removed, the
 *                                                              Ethernet header moved up, PASS
 *   ... malformed outer header, an outer fragment, or an
 *       inner packet that is not a plausible IPv4 header    -> DROP
 *   anything else                                          -> PASS, untouched
 */
#include "include/compat.h"
#include "include/consts.h"
#include "include/parsing.h"

SEC(LB_XDP_SEC)
int decap_xdp(lb_xdp_ctx *ctx)
{
	void *data = LB_CTX_DATA(ctx);
	void *data_end = LB_CTX_DATA_END(ctx);
	struct lb_ethhdr *eth = data, eth_copy;
	struct lb_iphdr *outer, *inner;
	__u32 olen, tot, avail;

	if ((void *)(eth + 1) > data_end)
		return LB_PASS;
	if (eth->h_proto != lb_htons(LB_ETH_P_IP))
		return LB_PASS;
	outer = (void *)(eth + 1);
	if ((void *)(outer + 1) > data_end)
		return LB_PASS; /* not even an IPv4 header: not ours to judge */
	if (outer->protocol != LB_IPPROTO_IPIP)
		return LB_PASS;

	/* From here on it claims to be IPIP: decapsulate or drop. */
	if ((outer->ver_ihl >> 4) != 4)
		return LB_DROP;
	olen = (outer->ver_ihl & 0x0f) * 4;
	if (olen < LB_IP_HLEN)
		return LB_DROP;
	avail = (__u32)(data_end - (void *)outer);
	tot = lb_ntohs(outer->tot_len);
	if (tot > avail || tot < olen + LB_IP_HLEN)
		return LB_DROP;
	if (outer->frag_off & lb_htons(LB_IP_MF | LB_IP_OFFMASK))
		return LB_DROP;
	inner = (void *)outer + olen;
	if ((void *)(inner + 1) > data_end)
		return LB_DROP;
	if ((inner->ver_ihl >> 4) != 4 || (inner->ver_ihl & 0x0f) < 5)
		return LB_DROP;
	if (lb_ntohs(inner->tot_len) > tot - olen)
		return LB_DROP;

	__builtin_memcpy(&eth_copy, eth, sizeof(eth_copy));
	if (bpf_xdp_adjust_head(ctx, (int)olen))
		return LB_DROP;
	data = LB_CTX_DATA(ctx);
	data_end = LB_CTX_DATA_END(ctx);
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return LB_DROP;
	__builtin_memcpy(eth, &eth_copy, sizeof(*eth));
	return LB_PASS;
}

char _license[] SEC("license") = "GPL";
