/* SPDX-License-Identifier: GPL-2.0 */
/* bench.h: the per-packet duties bench/datapath.py's ablation rows switch off, one helper each,
 * so the per-packet functions carry no benchmark macros. Never set these in a build:
 *   LB_BENCH_NO_CT_TIME        no CT timestamp or expiry on the established path
 *   LB_BENCH_NO_BACKEND_STATS  no per-backend counter */
#ifndef L4LB_BENCH_H
#define L4LB_BENCH_H

#include "compat.h"
#include "ct.h"
#include "maps.h"
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

#endif /* L4LB_BENCH_H */
