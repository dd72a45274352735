// SPDX-License-Identifier: GPL-2.0
/* lb_xdp.c: XDP layer-4 load balancer for the LB node (Cilium standalone-L4LB shaped).
 *
 * Compiled on the LB node with the device's properties and the mode as macros
 * (module_utils/l4lb/build.py: LB_IP, LB_MAC, LB_IFINDEX, LB_MTU, MODE_SNAT|MODE_DSR,
 * LB_MAGLEV_LUT_SIZE, SNAT_PORT_MIN/MAX). Helpers used are those eBPF-for-Windows offers to
 * XDP: map operations, bpf_ktime_get_ns, bpf_xdp_adjust_head (DSR only).
 *
 * Per packet (bpf/README.md has the full rule table):
 *   not IPv4 / bad IPv4 header / not TCP-UDP / no ports     -> PASS, untouched
 *   (daddr, dport, proto) is a service                      -> balance: SNAT or DSR, XDP_TX
 *                                                              (or DROP: see the rules)
 *   daddr == LB_IP, dport a SNAT port held by the reply's  -> reverse SNAT, XDP_TX
 *   source (lb4_snat)
 *   anything else                                           -> PASS, untouched
 *
 * The mode (MODE_SNAT or MODE_DSR) decides the path of NEW flows only. An established flow
 * keeps the path it started on (its CT entry has a nat_port iff it is a SNAT flow), so a mode
 * switch never breaks a connection: the backend knows a SNAT flow as LB_IP:nat_port and a DSR
 * flow as client:port, and neither may change mid-connection.
 */
#include "include/compat.h"
#include "include/consts.h"
#include "include/maps.h"
#include "include/parsing.h"
#include "include/csum.h"
#include "include/select.h"
#include "include/service.h"
#include "include/stats.h"
#include "include/ct.h"
#include "include/nat.h"
#include "include/encap.h"
#include "include/bench.h"

#ifdef MODE_SNAT
#define LB_NEW_FLOWS_SNAT 1
#define LB_PROG_NAME lb_xdp_snat
#else
#define LB_NEW_FLOWS_SNAT 0
#define LB_PROG_NAME lb_xdp_dsr
#endif
/* The program's name carries the mode, so the kernel's own state (bpftool, `ip link`,
 * l4lbctl mode show) tells which mode runs. */

/* A service- or SNAT-bound packet we may rewrite and send: no options, not a fragment, full
 * L4 header, TTL > 1. Returns the drop reason or -1. */
static __always_inline int lb_unforwardable(const struct lb_pkt *p)
{
	if (p->has_options)
		return LB_R_DROP_IP_OPTIONS;
	if (p->is_fragment)
		return LB_R_DROP_FRAGMENT;
	if (!p->l4_ok)
		return LB_R_DROP_MALFORMED;
	if (p->ip->ttl <= 1)
		return LB_R_DROP_TTL;
	return -1;
}

/* A client -> service packet of a tracked flow: counters, the clock at most once per tick
 * (`now` is the clock when the caller read it this tick, else 0), and the flow's TCP life. */
static __always_inline void lb_ct_touch(struct ct_entry *ct, __u64 bytes, __u8 tcp_flags, __u32 tick, __u64 now)
{
	__u8 ct_flags;

	ct->rx_packets += 1;
	ct->rx_bytes += bytes;
	lb_bench_ct_stamp(ct, tick, now);
	ct->tcp_flags_seen |= tcp_flags;
	ct_flags = lb_ct_client_flags(ct->ct_flags, tcp_flags);
	if (ct_flags != ct->ct_flags)
		ct->ct_flags = ct_flags;
}

/* Is this CT hit a flow to continue? Not when the flow is over (quiet past its lifetime: read
 * only when the tick moved, since lifetimes are whole seconds) or when a SYN reopens a closed
 * connection's tuple. Sets *now when it read the clock. */
static __always_inline int lb_ct_continues(const struct ct_entry *ct, const struct lb_pkt *p, __u32 tick,
					   __u64 *now)
{
	if ((p->tcp_flags & (LB_TCP_SYN | LB_TCP_ACK)) == LB_TCP_SYN &&
	    (ct->tcp_flags_seen & (LB_TCP_FIN | LB_TCP_RST)))
		return 0;
	return !lb_bench_ct_expired(ct, p->proto, tick, now);
}

/* A client -> service packet: `tuple` is its flow, `ct` its CT entry (or 0), `rev_nat_index` the
 * service, `has_backends` whether the service's master counts any backend. */
static __always_inline int lb_service(lb_xdp_ctx *ctx, struct lb_pkt *p, const struct ipv4_ct_tuple *tuple,
				      struct ct_entry *ct, __u16 rev_nat_index, int has_backends, __u64 len)
{
	void *data_end = LB_CTX_DATA_END(ctx);
	struct lb4_backend *be = 0;
	__u32 backend_id = 0, hash = 0;
	__be32 be_addr;
	__be16 be_port;
	__be16 nat_port = 0, prev_nat_port = 0;
	__u32 tick = LB_TICK();
	__u64 now = 0;
	int reason, reselect = 1, reset = 0, snat;

	reason = lb_unforwardable(p);
	if (reason >= 0)
		return lb_verdict(LB_DROP, reason, len);
	if (!has_backends)
		return lb_verdict(LB_DROP, LB_R_DROP_NO_BACKEND, len);

	if (ct) {
		if (!lb_ct_continues(ct, p, tick, &now)) {
			/* Over (expired, or a new connection on a closed tuple): a new flow, which
			 * gets its old SNAT port back if its slot is still its own. */
			reset = 1;
			prev_nat_port = ct->nat_port;
		} else if (ct->rev_nat_index == rev_nat_index) {
			backend_id = ct->backend_id;
			be = bpf_map_lookup_elem(&lb4_backends, &backend_id);
			if (be && be->address) {
				reselect = 0;
				nat_port = ct->nat_port;
			}
		}
	}
	if (reselect) {
		hash = lb_flow_hash(tuple->saddr, tuple->daddr, tuple->sport, tuple->dport, tuple->nexthdr);
		backend_id = lb_bench_maglev_select(rev_nat_index, hash);
		if (!backend_id)
			return lb_verdict(LB_DROP, LB_R_DROP_NO_BACKEND, len);
		be = bpf_map_lookup_elem(&lb4_backends, &backend_id);
		if (!be)
			return lb_verdict(LB_DROP, LB_R_DROP_NO_BACKEND, len);
	}
	if (!be || !be->address)
		return lb_verdict(LB_DROP, LB_R_DROP_NO_BACKEND, len);
	be_addr = be->address;
	be_port = be->port;

	snat = reselect ? LB_NEW_FLOWS_SNAT : nat_port != 0;
	if (!snat && (__u32)p->tot_len + LB_IP_HLEN > LB_MTU)
		return lb_verdict(LB_PASS, LB_R_PASS_MTU, len);

	if (!lb_mac_known(be->mac))
		return lb_verdict(LB_DROP, LB_R_DROP_NO_NEIGH, len);

	if (reselect && !now)
		now = LB_NOW_NS();
	if (snat && nat_port == 0) {
		struct snat_entry want = {
			.client_addr = tuple->saddr,
			.vip = tuple->daddr,
			.client_port = tuple->sport,
			.vport = tuple->dport,
			.backend_id = (__u16)backend_id,
			.proto = p->proto,
		};

		nat_port = lb_snat_alloc(&want, prev_nat_port, hash, now);
		if (!nat_port)
			return lb_verdict(LB_DROP, LB_R_DROP_SNAT_PORTS, len);
	}
	if (!snat)
		nat_port = 0;

	/* ct is tested on its own: clang would fold `ct && !reset` into one combined test, which
	 * PREVAIL (eBPF-for-Windows' verifier) cannot link back to ct != NULL. */
	if (ct && !LB_OPAQUE(reset)) {
		ct->backend_id = backend_id;
		ct->rev_nat_index = rev_nat_index;
		ct->nat_port = nat_port;
		lb_ct_touch(ct, len, p->tcp_flags, tick, now);
	} else {
		struct ct_entry entry = {
			.rx_packets = 1,
			.rx_bytes = len,
			.last_seen_ns = now,
			.last_tick = tick,
			.backend_id = backend_id,
			.rev_nat_index = rev_nat_index,
			.nat_port = nat_port,
			.tcp_flags_seen = p->tcp_flags,
			.ct_flags = lb_ct_client_flags(0, p->tcp_flags),
		};

		if (lb_bench_ct_insert(tuple, &entry))
			return lb_verdict(LB_DROP, LB_R_DROP_MAP_UPDATE, len);
	}

	lb_count_service(rev_nat_index, len);
	lb_bench_count_backend(backend_id, len);

	if (snat) {
		lb_rewrite4(p, data_end, LB_IP, be_addr, nat_port, be_port);
		lb_set_macs(p->eth, be->mac);
		return lb_verdict(LB_TX, LB_R_TX_SNAT_FWD, len);
	}
	if (lb_dsr_encap(ctx, be_addr, be->mac))
		return lb_verdict(LB_DROP, LB_R_DROP_ENCAP, len);
	return lb_verdict(LB_TX, LB_R_TX_DSR, len);
}

/* backend:port -> LB_IP:nat_port becomes VIP:vport -> client:cport. */
static __always_inline int lb_snat_reply(lb_xdp_ctx *ctx, struct lb_pkt *p, const struct snat_entry *se,
					 __u64 len)
{
	void *data_end = LB_CTX_DATA_END(ctx);
	struct ipv4_ct_tuple tuple = {};
	struct neigh_mac *neigh;
	struct ct_entry *ct;
	int reason;

	reason = lb_unforwardable(p);
	if (reason >= 0)
		return lb_verdict(LB_DROP, reason, len);

	tuple.daddr = se->vip;
	tuple.saddr = se->client_addr;
	tuple.dport = se->vport;
	tuple.sport = se->client_port;
	tuple.nexthdr = p->proto;

	neigh = bpf_map_lookup_elem(&nodeport_neigh4, &tuple.saddr);
	if (!neigh)
		return lb_verdict(LB_DROP, LB_R_DROP_NO_NEIGH, len);

	ct = bpf_map_lookup_elem(&ct4_global, &tuple);
	if (ct) {
		__u32 tick = LB_TICK();
		__u8 ct_flags;

		ct->tx_packets += 1;
		ct->tx_bytes += len;
		lb_ct_stamp(ct, tick, 0);
		ct->tcp_flags_seen |= p->tcp_flags;
		ct_flags = lb_ct_backend_flags(ct->ct_flags, p->tcp_flags);
		if (ct_flags != ct->ct_flags)
			ct->ct_flags = ct_flags;
	}

	lb_rewrite4(p, data_end, tuple.daddr, tuple.saddr, tuple.dport, tuple.sport);
	lb_set_macs(p->eth, neigh->addr);
	return lb_verdict(LB_TX, LB_R_TX_SNAT_REPLY, len);
}

SEC(LB_XDP_SEC)
int LB_PROG_NAME(lb_xdp_ctx *ctx)
{
	void *data = LB_CTX_DATA(ctx);
	void *data_end = LB_CTX_DATA_END(ctx);
	__u64 len = (__u64)(data_end - data);
	struct lb_pkt p = {};
	struct ipv4_ct_tuple tuple = {};
	struct lb4_service *svc;
	struct ct_entry *ct;
	__u16 sid;
	int kind;

	kind = lb_parse(data, data_end, &p);
	if (kind == LB_P_NOT_IPV4)
		return lb_verdict(LB_PASS, LB_R_PASS_NOT_IPV4, len);
	if (kind == LB_P_BAD_IPV4)
		return lb_verdict(LB_PASS, LB_R_PASS_BAD_IPV4, len);
	if (kind != LB_P_PORTS)
		return lb_verdict(LB_PASS, LB_R_PASS_NOT_SERVICE, len);

	if (lb_vip_maybe(p.ip->daddr)) {
		tuple.daddr = p.ip->daddr;
		tuple.saddr = p.ip->saddr;
		tuple.dport = p.dport;
		tuple.sport = p.sport;
		tuple.nexthdr = p.proto;
		/* A tracked flow of a live service needs no service lookup (maps.h, lb4_service_by_id). */
		ct = bpf_map_lookup_elem(&ct4_global, &tuple);
		if (ct && lb_service_live(ct->rev_nat_index, &tuple))
			return lb_service(ctx, &p, &tuple, ct, ct->rev_nat_index, 1, len);
		/* A new flow (or one whose service changed) to a frontend its hint names. */
		sid = lb_front_hinted(&tuple);
		if (sid)
			return lb_service(ctx, &p, &tuple, ct, sid, 1, len);
		svc = lb_lookup_service(&tuple);
		if (svc)
			return lb_service(ctx, &p, &tuple, ct, svc->rev_nat_index, svc->count != 0, len);
	}

	/* Only a port SNAT hands out can be a reply: the LB node's own traffic skips the lookup. */
	if (p.ip->daddr == LB_IP && lb_ntohs(p.dport) >= SNAT_PORT_MIN && lb_ntohs(p.dport) <= SNAT_PORT_MAX) {
		struct snat_entry *se = lb_snat_reply_slot(p.ip->saddr, p.sport, lb_ntohs(p.dport), p.proto);

		if (se)
			return lb_snat_reply(ctx, &p, se, len);
	}
	return lb_verdict(LB_PASS, LB_R_PASS_NOT_SERVICE, len);
}

char _license[] SEC("license") = "GPL";
