/* SPDX-License-Identifier: GPL-2.0 */
/* compat.h: the few differences between Linux and eBPF-for-Windows (0.12.0) that the
 * datapath sees. Everything else in bpf/ is written against the macros below.
 *
 * Linux (default):        clang -O2 -g -target bpf ...
 * eBPF-for-Windows:       clang -O2 -g -target bpf -DLB_TARGET_WINDOWS -I<ebpf-for-windows>/include
 *                         (scripts/check-efw compiles it against the 0.12.0 headers and verifies
 *                         the objects with the PREVAIL commit 0.12.0 pins; bpf/README.md)
 */
#ifndef L4LB_COMPAT_H
#define L4LB_COMPAT_H

#ifdef LB_TARGET_WINDOWS
/* eBPF-for-Windows: bpf_helpers.h brings the helper prototypes (same names as Linux for the
 * ones we use) and the BTF map-definition macros; ebpf_nethooks.h brings xdp_md_t. */
#include <stdint.h>
#include "bpf_helpers.h"
#include "ebpf_nethooks.h"

typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;
typedef int64_t __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u16 __sum16;

typedef xdp_md_t lb_xdp_ctx;
/* xdp_md_t carries real pointers. */
#define LB_CTX_DATA(ctx)     ((void *)(ctx)->data)
#define LB_CTX_DATA_END(ctx) ((void *)(ctx)->data_end)

/* Windows XDP verdicts (xdp_action_t): PASS=1, DROP=2, TX=3. */
#define LB_PASS 1
#define LB_DROP 2
#define LB_TX   3

/* LIBBPF_PIN_BY_NAME is an enum value of ebpf_structs.h (pins under /ebpf/global/).
 * Hash maps have no preallocation flag there: they allocate per entry. */
#define LB_MAP_F_NO_PREALLOC 0
#ifndef SEC
#define SEC(name) __attribute__((section(name), used))
#endif
#define LB_XDP_SEC "xdp"

/* Connection timestamps: eBPF-for-Windows offers bpf_ktime_get_ns only. */
#define LB_NOW_NS() bpf_ktime_get_ns()
#define LB_TICK() ((__u32)(bpf_ktime_get_ns() >> 22))

#else /* Linux */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

typedef struct xdp_md lb_xdp_ctx;
#define LB_CTX_DATA(ctx)     ((void *)(long)(ctx)->data)
#define LB_CTX_DATA_END(ctx) ((void *)(long)(ctx)->data_end)

#define LB_PASS XDP_PASS /* 2 */
#define LB_DROP XDP_DROP /* 1 */
#define LB_TX   XDP_TX   /* 3 */
#define LB_XDP_SEC "xdp"

/* Hash maps allocate per entry (memory grows with the services, not with max_entries). */
#define LB_MAP_F_NO_PREALLOC BPF_F_NO_PREALLOC

/* Connection timestamps only feed the IDLE state (seconds), so the coarse clock does: the same
 * CLOCK_MONOTONIC base at tick resolution, without the clocksource read bpf_ktime_get_ns costs
 * per packet (about 50 ns on the 2-vCPU VM of BENCHMARKS.md). */
#define LB_NOW_NS() bpf_ktime_get_coarse_ns()
/* The jiffies counter: the JIT inlines this helper into one load. A flow reads the clock at most
 * once per tick (last_seen_ns is at tick resolution anyway). */
#define LB_TICK() ((__u32)bpf_jiffies64())
#endif

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* Byte order without bpf_endian.h (absent on Windows). Both targets are little-endian. */
#define lb_bswap16(x) ((__u16)__builtin_bswap16((__u16)(x)))
#define lb_bswap32(x) ((__u32)__builtin_bswap32((__u32)(x)))
#define lb_htons(x) lb_bswap16(x)
#define lb_ntohs(x) lb_bswap16(x)
#define lb_htonl(x) lb_bswap32(x)
#define lb_ntohl(x) lb_bswap32(x)

/* Make the compiler forget what it knows about a variable (keeps bounds checks the verifier
 * needs). Compiler-only: no instruction is emitted. */
#define LB_BARRIER_VAR(v) asm volatile("" : "+r"(v))
/* v, as a value the compiler cannot see through: `p && !LB_OPAQUE(flag)` stays two branches,
 * the first on p alone (PREVAIL links only such a test to p != NULL). No instruction. */
#define LB_OPAQUE(v) ({ __typeof__(v) lb_opaque_v_ = (v); LB_BARRIER_VAR(lb_opaque_v_); lb_opaque_v_; })

#define LB_LIKELY(x)   __builtin_expect(!!(x), 1)
#define LB_UNLIKELY(x) __builtin_expect(!!(x), 0)

#endif /* L4LB_COMPAT_H */
