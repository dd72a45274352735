// SPDX-License-Identifier: GPL-2.0
/* xdp_macswap.c: the benchmark floor. Swaps the Ethernet addresses and returns XDP_TX: the
 * least an XDP program that forwards a packet can do. Measured like lb_xdp.o by bench/datapath.py. */
#include "../include/compat.h"
#include "../include/parsing.h"

SEC(LB_XDP_SEC)
int xdp_macswap(lb_xdp_ctx *ctx)
{
	void *data = LB_CTX_DATA(ctx);
	void *data_end = LB_CTX_DATA_END(ctx);
	struct lb_ethhdr *eth = data;
	__u8 tmp[6];

	if ((void *)(eth + 1) > data_end)
		return LB_DROP;
	__builtin_memcpy(tmp, eth->h_dest, 6);
	__builtin_memcpy(eth->h_dest, eth->h_source, 6);
	__builtin_memcpy(eth->h_source, tmp, 6);
	return LB_TX;
}

char _license[] SEC("license") = "GPL";
