/* SPDX-License-Identifier: GPL-2.0 */
/* bench.h: the per-packet duties bench/datapath.py's ablation rows switch off, one helper each,
 * so the per-packet functions carry no benchmark macros. They show what each step costs; a
 * build with one of them is wrong by design. Never set these in a build:
 *   LB_BENCH_NO_CT_TIME        no CT timestamp or expiry on the established path
 *   LB_BENCH_NO_BACKEND_STATS  no per-backend counter
 *   LB_BENCH_NO_CT_INSERT      a new flow's CT entry is not inserted (every packet is new)
 *   LB_BENCH_NO_MAGLEV         a new flow takes backend 1 without reading the Maglev table */
#ifndef L4LB_BENCH_H
#define L4LB_BENCH_H

#include "compat.h"
#include "ct.h"
#include "maps.h"
#include "select.h"
#include "stats.h"

/* A tracked client -> service packet stamps its entry's clock (lb_ct_stamp). */
static __always_inline void lb_bench_ct_stamp(struct ct_entry *ct, __u32 tick, __u64 now)
{
#ifndef LB_BENCH_NO_CT_TIME
	lb_ct_stamp(ct, tick, now);
#endif
}

/* Is the tracked flow over by its lifetime? Judged only when the tick moved (lifetimes are whole
 * seconds); sets *now when it read the clock. */
static __always_inline int lb_bench_ct_expired(const struct ct_entry *ct, __u8 proto, __u32 tick, __u64 *now)
{
#ifndef LB_BENCH_NO_CT_TIME
	if (ct->last_tick != tick) {
		*now = LB_NOW_NS();
		return lb_ct_expired(ct, proto, *now);
	}
#endif
	return 0;
}

/* The per-backend counter of a balanced packet. */
static __always_inline void lb_bench_count_backend(__u32 backend_id, __u64 bytes)
{
#ifndef LB_BENCH_NO_BACKEND_STATS
	lb_count_backend(backend_id, bytes);
#endif
}

/* A new flow's CT entry goes in (0, or the insert's error). */
static __always_inline long lb_bench_ct_insert(const struct ipv4_ct_tuple *tuple, const struct ct_entry *entry)
{
#ifdef LB_BENCH_NO_CT_INSERT
	LB_BARRIER_VAR(entry);
	return 0;
#else
	/* eBPF-for-Windows 0.12 declares the helper without const */
	return bpf_map_update_elem(&ct4_global, (void *)tuple, (void *)entry, BPF_ANY);
#endif
}

/* A new flow's backend. */
static __always_inline __u32 lb_bench_maglev_select(__u16 rev_nat_index, __u32 hash)
{
#ifdef LB_BENCH_NO_MAGLEV
	return 1;
#else
	return lb_maglev_select(rev_nat_index, hash);
#endif
}

#endif /* L4LB_BENCH_H */
