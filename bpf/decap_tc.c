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
#include "include/ipip.h"

SEC("tc")
int decap_tc(struct __sk_buff *skb)
{
	void *data, *data_end;
	__u32 olen = 0;

	/* A driver may leave most of a large frame in page fragments (virtio-net does; veth and
	 * XDP buffers are linear): the checks read the IP lengths against the linear data, so a
	 * full-size IPIP packet would be judged malformed and dropped. Make it all linear first. */
	if (skb->data_end - skb->data < skb->len && bpf_skb_pull_data(skb, skb->len))
		return TC_ACT_SHOT;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;

	switch (lb_ipip_check(data, data_end, &olen)) {
	case LB_IPIP_NOT_OURS:
		return TC_ACT_OK;
	case LB_IPIP_MALFORMED:
		return TC_ACT_SHOT;
	}

	/* Remove olen bytes right after the MAC header; skb->protocol stays ETH_P_IP. */
	if (bpf_skb_adjust_room(skb, -(int)olen, BPF_ADJ_ROOM_MAC, 0))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
