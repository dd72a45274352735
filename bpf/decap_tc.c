// SPDX-License-Identifier: GPL-2.0
/* decap_tc.c: IPIP decapsulation at tc ingress for Linux backends (the job of Linux's
 * test_tc_tunnel.o section "decap" in the seed). Linux only (bpf_skb_adjust_room); this
 * kernel has no ipip module, so the decap has to be done in BPF.
 *
 *   tc qdisc add dev eth0 clsact
 *   tc filter add dev eth0 ingress bpf direct-action object-file decap_tc.o section tc
 *
 * Rules: as decap_xdp.c (IPIP well formed -> outer header removed, TC_ACT_OK; IPIP malformed ->
 * TC_ACT_SHOT; anything else -> TC_ACT_OK untouched).
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "include/compat.h"
#include "include/consts.h"
#include "include/parsing.h"

SEC("tc")
int decap_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct lb_ethhdr *eth = data;
	struct lb_iphdr *outer, *inner;
	__u32 olen, tot, avail;

	if ((void *)(eth + 1) > data_end)
		return TC_ACT_OK;
	if (eth->h_proto != lb_htons(LB_ETH_P_IP))
		return TC_ACT_OK;
	outer = (void *)(eth + 1);
	if ((void *)(outer + 1) > data_end)
		return TC_ACT_OK;
	if (outer->protocol != LB_IPPROTO_IPIP)
		return TC_ACT_OK;

	if ((outer->ver_ihl >> 4) != 4)
		return TC_ACT_SHOT;
	olen = (outer->ver_ihl & 0x0f) * 4;
	if (olen < LB_IP_HLEN)
		return TC_ACT_SHOT;
	avail = (__u32)(data_end - (void *)outer);
	tot = lb_ntohs(outer->tot_len);
	if (tot > avail || tot < olen + LB_IP_HLEN)
		return TC_ACT_SHOT;
	if (outer->frag_off & lb_htons(LB_IP_MF | LB_IP_OFFMASK))
		return TC_ACT_SHOT;
	inner = (void *)outer + olen;
	if ((void *)(inner + 1) > data_end)
		return TC_ACT_SHOT;
	if ((inner->ver_ihl >> 4) != 4 || (inner->ver_ihl & 0x0f) < 5)
		return TC_ACT_SHOT;
	if (lb_ntohs(inner->tot_len) > tot - olen)
		return TC_ACT_SHOT;

	/* Remove olen bytes right after the MAC header; skb->protocol stays ETH_P_IP. */
	if (bpf_skb_adjust_room(skb, -(int)olen, BPF_ADJ_ROOM_MAC, 0))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
