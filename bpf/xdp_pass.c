// SPDX-License-Identifier: GPL-2.0
/* Trivial XDP program for the switch-side veths of the embedded lab.
 *
 * A frame that a node's native XDP program sends with XDP_TX (or XDP_REDIRECT) out of its veth
 * is dropped unless the peer veth is NAPI-ready, which it becomes once it has an XDP program of
 * its own. This one only passes every frame on to the bridge.
 *
 * Built by the lab_topology module (netns provider): clang -O2 -g -target bpf -c xdp_pass.c
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
