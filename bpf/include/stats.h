/* SPDX-License-Identifier: GPL-2.0 */
/* stats.h: per-CPU counters. Plain increments: each CPU owns its slot, so no atomics (which
 * eBPF-for-Windows' XDP port did without). */
#ifndef L4LB_STATS_H
#define L4LB_STATS_H

#include "compat.h"
#include "maps.h"

static __always_inline void lb_stats_add(struct lb_stats *s, __u64 bytes)
{
	if (s) {
		s->packets += 1;
		s->bytes += bytes;
	}
}

static __always_inline void lb_count_service(__u32 rev_nat_index, __u64 bytes)
{
	lb_stats_add(bpf_map_lookup_elem(&lb4_stats_service, &rev_nat_index), bytes);
}

static __always_inline void lb_count_backend(__u32 backend_id, __u64 bytes)
{
	lb_stats_add(bpf_map_lookup_elem(&lb4_stats_backend, &backend_id), bytes);
}

/* Count the verdict's reason and return the verdict. */
static __always_inline int lb_verdict(int verdict, __u32 reason, __u64 bytes)
{
	lb_stats_add(bpf_map_lookup_elem(&lb4_stats_reason, &reason), bytes);
	return verdict;
}

#endif /* L4LB_STATS_H */
