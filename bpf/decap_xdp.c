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
#include "include/ipip.h"

SEC(LB_XDP_SEC)
int decap_xdp(lb_xdp_ctx *ctx)
{
	void *data = LB_CTX_DATA(ctx);
	void *data_end = LB_CTX_DATA_END(ctx);
	struct lb_ethhdr *eth = data, eth_copy;
	__u32 olen = 0;

	switch (lb_ipip_check(data, data_end, &olen)) {
	case LB_IPIP_NOT_OURS:
		return LB_PASS;
	case LB_IPIP_MALFORMED:
		return LB_DROP;
	}

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
