/* SPDX-License-Identifier: GPL-2.0 */
/* parsing.h: packet headers (own definitions: no Linux uapi, so Windows builds share them)
 * and the bounds-checked parser. See bpf/README.md "Malformed packets" for the rules. */
#ifndef L4LB_PARSING_H
#define L4LB_PARSING_H

#include "compat.h"
#include "consts.h"

struct lb_ethhdr {
	__u8 h_dest[6];
	__u8 h_source[6];
	__be16 h_proto;
} __attribute__((packed));

struct lb_iphdr {
	__u8 ver_ihl;    /* version << 4 | ihl */
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__be32 saddr;
	__be32 daddr;
};

struct lb_tcphdr {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u8 doff_res;   /* data offset << 4 */
	__u8 flags;      /* CWR ECE URG ACK PSH RST SYN FIN */
	__be16 window;
	__u16 check;
	__be16 urg_ptr;
};

struct lb_udphdr {
	__be16 source;
	__be16 dest;
	__be16 len;
	__u16 check;
};

#define LB_ETH_HLEN 14
#define LB_IP_HLEN  20

/* Classification of the IPv4 part of a frame. */
enum lb_parse {
	LB_P_NOT_IPV4 = 0, /* not Ethernet II + IPv4 (or frame shorter than an Ethernet header) */
	LB_P_BAD_IPV4,     /* IPv4 header unusable: truncated, version != 4, IHL < 5, total length
	                    * shorter than the header or longer than the frame */
	LB_P_OTHER,        /* usable IPv4 but nothing to balance on: not TCP/UDP, a non-first
	                    * fragment, or fewer than 4 bytes of L4 header (no ports) */
	LB_P_PORTS,        /* TCP/UDP with ports readable: a candidate for lookup */
};

struct lb_pkt {
	struct lb_ethhdr *eth;
	struct lb_iphdr *ip;
	void *l4;          /* at ip + ihl*4 */
	__be16 sport;
	__be16 dport;
	__u16 ihl_len;     /* ihl * 4 */
	__u16 tot_len;     /* host order */
	__u8 proto;
	__u8 l4_ok;        /* full L4 header present and sane (TCP doff >= 5 inside the packet,
	                    * UDP length within 8..payload) */
	__u8 tcp_flags;
	__u8 has_options;  /* IHL > 5 */
	__u8 is_fragment;  /* MF set (first fragment; later ones never reach LB_P_PORTS) */
};

static __always_inline int lb_parse(void *data, void *data_end, struct lb_pkt *p)
{
	struct lb_ethhdr *eth = data;
	struct lb_iphdr *ip;
	__u32 avail, ihl_len, tot_len, l4_len;
	void *l4;

	if ((void *)(eth + 1) > data_end)
		return LB_P_NOT_IPV4;
	if (eth->h_proto != lb_htons(LB_ETH_P_IP))
		return LB_P_NOT_IPV4;
	p->eth = eth;

	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return LB_P_BAD_IPV4;
	if ((ip->ver_ihl >> 4) != 4)
		return LB_P_BAD_IPV4;
	ihl_len = (ip->ver_ihl & 0x0f) * 4;
	if (ihl_len < LB_IP_HLEN)
		return LB_P_BAD_IPV4;
	avail = (__u32)(data_end - (void *)ip);
	tot_len = lb_ntohs(ip->tot_len);
	if (tot_len < ihl_len || tot_len > avail)
		return LB_P_BAD_IPV4;
	p->ip = ip;
	p->ihl_len = ihl_len;
	p->tot_len = tot_len;
	p->proto = ip->protocol;
	p->has_options = ihl_len > LB_IP_HLEN;

	if (ip->protocol != LB_IPPROTO_TCP && ip->protocol != LB_IPPROTO_UDP)
		return LB_P_OTHER;
	if (ip->frag_off & lb_htons(LB_IP_OFFMASK))
		return LB_P_OTHER;
	p->is_fragment = (ip->frag_off & lb_htons(LB_IP_MF)) != 0;

	l4_len = tot_len - ihl_len;
	if (l4_len < 4)
		return LB_P_OTHER;
	l4 = (void *)ip + ihl_len;
	if (l4 + 4 > data_end)
		return LB_P_OTHER; /* unreachable: tot_len <= avail; keeps the verifier content */
	p->l4 = l4;
	p->sport = ((__be16 *)l4)[0];
	p->dport = ((__be16 *)l4)[1];

	p->l4_ok = 0;
	p->tcp_flags = 0;
	if (ip->protocol == LB_IPPROTO_TCP) {
		struct lb_tcphdr *th = l4;
		__u32 doff;

		if ((void *)(th + 1) > data_end || l4_len < sizeof(*th))
			return LB_P_PORTS;
		doff = (th->doff_res >> 4) * 4;
		if (doff < sizeof(*th) || doff > l4_len)
			return LB_P_PORTS;
		p->tcp_flags = th->flags;
	} else {
		struct lb_udphdr *uh = l4;
		__u32 ulen;

		if ((void *)(uh + 1) > data_end || l4_len < sizeof(*uh))
			return LB_P_PORTS;
		ulen = lb_ntohs(uh->len);
		if (ulen < sizeof(*uh) || ulen > l4_len)
			return LB_P_PORTS;
	}
	p->l4_ok = 1;
	return LB_P_PORTS;
}

#endif /* L4LB_PARSING_H */
