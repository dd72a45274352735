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

/* A client -> service packet's flow as lb_service works it out: the tracked flow continued, or
 * a new one (first packet, a flow that is over, or one whose service or backend changed). */
struct lb_flow {
	__be32 be_addr;         /* its backend's address, port and next hop's MAC, read once */
	__be16 be_port;         /* (be_addr never 0; be_mac all zero while the next hop is unknown) */
	__u8 be_mac[6];
	__u64 now;              /* the clock, once read this tick (0: not yet) */
	__u32 tick;
	__u32 backend_id;
	__u32 hash;             /* the flow hash (new flows only) */
	__be16 nat_port;        /* its SNAT port: 0 for a DSR flow, and for a new one until allocated */
	__be16 prev_nat_port;   /* the SNAT port of the closed flow this tuple had (0: none) */
	__u8 is_new;            /* no tracked flow to continue: a backend is selected */
	__u8 replaces_ct;       /* ct is a flow that is over: a fresh entry replaces it */
};

/* The flow goes to this backend entry if it has an address (0: the backend was deleted). The
 * entry is read once, so the address and MAC checked are the ones the packet is sent to, even
 * if the control plane rewrites the entry meanwhile. */
static __always_inline int lb_flow_take_backend(struct lb_flow *f, const struct lb4_backend *be, __u32 backend_id)
{
	__be32 addr = be->address;

	if (!addr)
		return 0;
	f->be_addr = addr;
	f->be_port = be->port;
	__builtin_memcpy(f->be_mac, be->mac, sizeof(f->be_mac));
	f->backend_id = backend_id;
	return 1;
}

/* Continue the tracked flow `ct` when it is live, of this service, and its backend still has an
 * address (a deleted backend's flows move to another). Returns 1 when it does. */
static __always_inline int lb_flow_continue(struct lb_flow *f, struct ct_entry *ct, const struct lb_pkt *p,
					    __u16 rev_nat_index)
{
	struct lb4_backend *be;
	__u32 backend_id;

	if (!ct)
		return 0;
	if (!lb_ct_continues(ct, p, f->tick, &f->now)) {
		/* Over (expired, or a new connection on a closed tuple): a new flow, which gets
		 * its old SNAT port back if its slot is still its own. */
		f->replaces_ct = 1;
		f->prev_nat_port = ct->nat_port;
		return 0;
	}
	if (ct->rev_nat_index != rev_nat_index)
		return 0;
	backend_id = ct->backend_id;
	be = bpf_map_lookup_elem(&lb4_backends, &backend_id);
	if (!be || !lb_flow_take_backend(f, be, backend_id))
		return 0;
	f->nat_port = ct->nat_port;
	return 1;
}

/* A new flow's backend, by Maglev over its flow hash. Returns a drop reason or -1. */
static __always_inline int lb_flow_select(struct lb_flow *f, const struct ipv4_ct_tuple *tuple,
					  __u16 rev_nat_index)
{
	struct lb4_backend *be;
	__u32 backend_id;

	f->is_new = 1;
	f->hash = lb_flow_hash(tuple->saddr, tuple->daddr, tuple->sport, tuple->dport, tuple->nexthdr);
	backend_id = lb_bench_maglev_select(rev_nat_index, f->hash);
	if (!backend_id)
		return LB_R_DROP_NO_BACKEND;
	be = bpf_map_lookup_elem(&lb4_backends, &backend_id);
	if (!be || !lb_flow_take_backend(f, be, backend_id))
		return LB_R_DROP_NO_BACKEND;
	return -1;
}

/* A new SNAT flow's port (lb_snat_alloc), tried first the one its tuple had. 0: none free. */
static __always_inline __be16 lb_flow_snat_port(const struct lb_flow *f, const struct ipv4_ct_tuple *tuple)
{
	struct snat_entry want = {
		.client_addr = tuple->saddr,
		.vip = tuple->daddr,
		.client_port = tuple->sport,
		.vport = tuple->dport,
		.backend_id = (__u16)f->backend_id,
		.proto = tuple->nexthdr,
	};

	return lb_snat_alloc(&want, f->prev_nat_port, f->hash, f->now);
}

/* The flow into CT: the tracked entry updated in place, or a fresh entry (a new tuple, or one
 * replacing a flow that is over). Returns a drop reason or -1. */
static __always_inline int lb_flow_record(const struct lb_flow *f, struct ct_entry *ct,
					  const struct ipv4_ct_tuple *tuple, const struct lb_pkt *p,
					  __u16 rev_nat_index, __u64 len)
{
	int replaces_ct = f->replaces_ct;

	/* ct is tested on its own: clang would fold `ct && !replaces_ct` into one combined test,
	 * which PREVAIL (eBPF-for-Windows' verifier) cannot link back to ct != NULL. */
	if (ct && !LB_OPAQUE(replaces_ct)) {
		ct->backend_id = f->backend_id;
		ct->rev_nat_index = rev_nat_index;
		ct->nat_port = f->nat_port;
		lb_ct_touch(ct, len, p->tcp_flags, f->tick, f->now);
		return -1;
	}

	struct ct_entry entry = {
		.rx_packets = 1,
		.rx_bytes = len,
		.last_seen_ns = f->now,
		.last_tick = f->tick,
		.backend_id = f->backend_id,
		.rev_nat_index = rev_nat_index,
		.nat_port = f->nat_port,
		.tcp_flags_seen = p->tcp_flags,
		.ct_flags = lb_ct_client_flags(0, p->tcp_flags),
	};

	if (lb_bench_ct_insert(tuple, &entry))
		return LB_R_DROP_MAP_UPDATE;
	return -1;
}

/* The packet to its backend: SNAT's rewrite, or DSR's IPIP encapsulation. */
static __always_inline int lb_flow_send(lb_xdp_ctx *ctx, struct lb_pkt *p, const struct lb_flow *f, int snat,
					__u64 len)
{
	void *data_end = LB_CTX_DATA_END(ctx);

	if (snat) {
		lb_rewrite4(p, data_end, LB_IP, f->be_addr, f->nat_port, f->be_port);
		lb_set_macs(p->eth, f->be_mac);
		return lb_verdict(LB_TX, LB_R_TX_SNAT_FWD, len);
	}
	if (lb_dsr_encap(ctx, f->be_addr, f->be_mac))
		return lb_verdict(LB_DROP, LB_R_DROP_ENCAP, len);
	return lb_verdict(LB_TX, LB_R_TX_DSR, len);
}

/* A client -> service packet: `tuple` is its flow, `ct` its CT entry (or 0), `rev_nat_index` the
 * service, `has_backends` whether the service's master counts any backend. */
static __always_inline int lb_service(lb_xdp_ctx *ctx, struct lb_pkt *p, const struct ipv4_ct_tuple *tuple,
				      struct ct_entry *ct, __u16 rev_nat_index, int has_backends, __u64 len)
{
	struct lb_flow f = {};
	int reason, snat;

	reason = lb_unforwardable(p);
	if (reason >= 0)
		return lb_verdict(LB_DROP, reason, len);
	if (!has_backends)
		return lb_verdict(LB_DROP, LB_R_DROP_NO_BACKEND, len);

	f.tick = LB_TICK();
	if (!lb_flow_continue(&f, ct, p, rev_nat_index)) {
		reason = lb_flow_select(&f, tuple, rev_nat_index);
		if (reason >= 0)
			return lb_verdict(LB_DROP, reason, len);
	}
	/* The mode decides new flows only: a tracked flow keeps its path (a nat_port: SNAT). */
	snat = f.is_new ? LB_NEW_FLOWS_SNAT : f.nat_port != 0;
	if (!snat && (__u32)p->tot_len + LB_IP_HLEN > LB_MTU)
		return lb_verdict(LB_PASS, LB_R_PASS_MTU, len);
	if (!lb_mac_known(f.be_mac))
		return lb_verdict(LB_DROP, LB_R_DROP_NO_NEIGH, len);

	if (f.is_new && !f.now)
		f.now = LB_NOW_NS();
	if (snat && !f.nat_port) {
		f.nat_port = lb_flow_snat_port(&f, tuple);
		if (!f.nat_port)
			return lb_verdict(LB_DROP, LB_R_DROP_SNAT_PORTS, len);
	}
	reason = lb_flow_record(&f, ct, tuple, p, rev_nat_index, len);
	if (reason >= 0)
		return lb_verdict(LB_DROP, reason, len);

	lb_count_service(rev_nat_index, len);
	lb_bench_count_backend(f.backend_id, len);
	return lb_flow_send(ctx, p, &f, snat, len);
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
