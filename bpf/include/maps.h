/* SPDX-License-Identifier: GPL-2.0 */
/* maps.h: the LB map schema (Cilium 1.10 shaped). This file and docs/ARCHITECTURE.md are the
 * contract with module_utils/l4lb/structs.py; tests/datapath/test_btf_layout.py checks that the
 * compiled object's BTF matches structs.py. Byte order: fields named __be* are network order.
 *
 * Every map is pinned by name (LIBBPF_PIN_BY_NAME): reloading the program with the same pin root
 * (a mode switch, a recompile) reuses services, backends, CT and SNAT state. */
#ifndef L4LB_MAPS_H
#define L4LB_MAPS_H

#include "compat.h"
#include "consts.h"

/* --- services ------------------------------------------------------------------------- */
struct lb4_key {
	__be32 address;     /* VIP */
	__be16 dport;       /* service port */
	__u16 backend_slot; /* 0 = master entry, 1..count = backend slots */
	__u8 proto;         /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 scope;         /* 0 (external) */
	__u8 pad[2];
};

struct lb4_service {
	__u32 backend_id;     /* slot > 0: the backend; master: 0 */
	__u16 count;          /* master: number of backends (0 = drop) */
	__u16 rev_nat_index;  /* service id, 1..65535 */
	__u8 flags;
	__u8 flags2;
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb4_key);
	__type(value, struct lb4_service);
	__uint(max_entries, LB_SERVICE_MAP_MAX);
	__uint(map_flags, LB_MAP_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_services_v2 SEC(".maps");

/* --- backends ------------------------------------------------------------------------- */
/* An ARRAY indexed by backend id (ids are dealt out lowest-free from 1): its lookup is inlined,
 * where a hash's costs a hashed key compare. An entry with address 0 is no backend. The
 * next hop's MAC is kept beside the address (the control plane copies it from nodeport_neigh4
 * in the same reconcile that changes either), so a balanced packet needs no neighbour lookup;
 * all-zero means not known yet (LB_R_DROP_NO_NEIGH). */
struct lb4_backend {
	__be32 address;
	__be16 port;
	__u8 proto;
	__u8 flags;
	__u8 mac[6];        /* next hop (the backend on the switch) */
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32); /* backend_id */
	__type(value, struct lb4_backend);
	__uint(max_entries, LB_BACKEND_MAP_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_backends SEC(".maps");

/* --- reverse NAT ---------------------------------------------------------------------- */
struct lb4_reverse_nat {
	__be32 address; /* VIP */
	__be16 port;    /* service port */
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u16); /* rev_nat_index */
	__type(value, struct lb4_reverse_nat);
	__uint(max_entries, LB_REVNAT_MAP_MAX);
	__uint(map_flags, LB_MAP_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_reverse_nat SEC(".maps");

/* --- the tracked-flow fast path ------------------------------------------------------ */
/* A client packet of a tracked flow skips the service hash: its CT entry names the service
 * (rev_nat_index), and this ARRAY, indexed by service id, says whether that service is live on
 * the packet's frontend (its master entry is in lb4_services_v2 with count > 0). An all-zero
 * entry is not live: the packet then takes the service lookup, which decides as before. The
 * control plane clears an entry before it changes or deletes the service's master and writes it
 * after, so the fast path never runs for a frontend the service hash would not give. */
struct lb4_service_front {
	__be32 address;     /* VIP */
	__be16 dport;       /* service port */
	__u8 proto;         /* IPPROTO_TCP / IPPROTO_UDP; 0: not live */
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32); /* rev_nat_index (service id) */
	__type(value, struct lb4_service_front);
	__uint(max_entries, LB_REVNAT_MAP_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_service_by_id SEC(".maps");

/* Which destination addresses may be a VIP: the number of service frontends (masters) whose VIP
 * falls in each bucket (lb_vip_bucket). A packet whose bucket holds none is no service packet
 * and skips both the CT and the service lookup; a shared bucket only costs those lookups. The
 * control plane raises a bucket before it adds a master and lowers it after it deletes one. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);   /* lb_vip_bucket(VIP) */
	__type(value, __u32); /* frontends in the bucket */
	__uint(max_entries, LB_VIP_FILTER_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_vip_filter SEC(".maps");

/* Which service a new flow's frontend may be: the id of a service live on a frontend that falls
 * in the bucket (lb_front_bucket; 0: none, or let the hash decide). A hint is only a guess: the
 * datapath takes it only when lb4_service_by_id confirms that service is live on the packet's
 * very frontend, so a stale or colliding hint costs the service hash lookup, never a wrong
 * answer, and the hint needs no write order of its own. Where frontends share a bucket, the
 * control plane hints the lowest service id; the others take the hash. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);   /* lb_front_bucket(VIP, port, protocol) */
	__type(value, __u32); /* service id (rev_nat_index); 0: none */
	__uint(max_entries, LB_FRONT_HINT_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_front_hint SEC(".maps");

/* --- Maglev --------------------------------------------------------------------------- */
/* Value of the inner map's only element: the service's lookup table,
 * __u32 backend_ids[LB_MAGLEV_LUT_SIZE] (value_size = 4 * M). */
struct lb4_maglev_lut {
	__u32 backend_ids[LB_MAGLEV_LUT_SIZE];
};

/* Inner map prototype (the control plane creates one per service with these sizes). The value
 * is declared as the bare array: BTF would only carry a forward declaration of the struct.
 * It is also a .maps variable of its own: eBPF-for-Windows' loader and verifier (libbtf,
 * PREVAIL) resolve __array(values, ...) only to a map defined in .maps with that BTF type, and
 * fail with "map_fd not found" otherwise. libbpf creates it as one more unpinned array that no
 * program uses; the control plane ignores it (structs.MAGLEV_TEMPLATE). */
struct lb4_maglev_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32[LB_MAGLEV_LUT_SIZE]);
	__uint(max_entries, 1);
} lb4_maglev_tmpl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__type(key, __u16); /* rev_nat_index */
	__uint(max_entries, LB_MAGLEV_MAP_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct lb4_maglev_inner);
} lb4_maglev SEC(".maps");

/* --- neighbours (next-hop MACs; no fib_lookup on eBPF-for-Windows) --------------------- */
/* Read per packet only for SNAT replies (the client's MAC); backends carry their own copy. */
struct neigh_mac {
	__u8 addr[6];
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __be32); /* next-hop IPv4 */
	__type(value, struct neigh_mac);
	__uint(max_entries, LB_NEIGH_MAP_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nodeport_neigh4 SEC(".maps");

/* --- connection tracking -------------------------------------------------------------- */
/* Key: the client's flow as it arrives (saddr = client, daddr = VIP). */
struct ipv4_ct_tuple {
	__be32 daddr;
	__be32 saddr;
	__be16 dport;
	__be16 sport;
	__u8 nexthdr;
	__u8 flags;
	__u16 pad;
};

struct ct_entry {
	__u64 rx_packets; /* client -> service */
	__u64 rx_bytes;
	__u64 tx_packets; /* service -> client (SNAT mode only) */
	__u64 tx_bytes;
	__u64 last_seen_ns;
	__u32 backend_id;
	__u16 rev_nat_index;
	__be16 nat_port;       /* SNAT source port on LB_IP (0 in DSR) */
	__u8 tcp_flags_seen;   /* OR of TCP flags seen in both directions */
	__u8 ct_flags;         /* LB_CT_F_* (consts.h): handshake and close, per direction */
	__u8 pad[2];
	__u32 last_tick;       /* LB_TICK() when last_seen_ns was last read (datapath-private) */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ipv4_ct_tuple);
	__type(value, struct ct_entry);
	__uint(max_entries, LB_CT_MAP_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ct4_global SEC(".maps");

/* --- SNAT: who holds each source port ------------------------------------------------ */
/* A SNAT flow's own state is in its CT entry (backend_id, nat_port). This ARRAY answers the
 * other questions: is LB_IP:port free towards a backend, and whose flow does a reply to it
 * belong to? Every port has LB_SNAT_SLOTS slots, one per backend plane (backend_id %
 * LB_SNAT_SLOTS; ids are dealt out lowest-free, so the first LB_SNAT_SLOTS backends have a
 * plane each): key = plane * LB_SNAT_PLANE_SIZE + port, for every port number, so the layout
 * does not depend on the configured range. A plane's consecutive ports share cache lines (four
 * 16-byte slots to a line): a plane's cursor (lb4_snat_cursor) walks them in turn, so four new
 * flows to a backend cost one line, where a port-major layout cost a line per new flow (about
 * 60 ns each in BENCHMARKS.md's session 18 row). A slot with
 * client_addr 0 is free. Taking a port is one slot written in place: a new SNAT flow costs one
 * map insert (its CT entry), where a hash of SNAT entries cost a second. The loader reuses a
 * kept pin whose definition matches, and the key's meaning is not part of it: a change to that
 * meaning must come with a change to some map's definition, so older pins are refused (the
 * plane-major key came with lb4_snat_cursor's new size). */
struct snat_entry {
	__be32 client_addr;
	__be32 vip;
	__be16 client_port;
	__be16 vport;
	__u16 backend_id;   /* lb4_backends index (< LB_BACKEND_MAP_MAX) */
	__u8 proto;
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32); /* (backend_id % LB_SNAT_SLOTS) * LB_SNAT_PLANE_SIZE + port (host order) */
	__type(value, struct snat_entry);
	__uint(max_entries, LB_SNAT_MAP_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_snat SEC(".maps");

/* Where each CPU's next new SNAT flow to a backend plane tries first: the port after the one
 * its last new flow to that plane tried. Consecutive flows to a plane then read consecutive
 * slots of lb4_snat, four to a cache line, which the caches and prefetcher serve, where a port
 * at random costs a cache miss in a multi-megabyte array. One cursor per plane: a plane's
 * cursor comes back to a port only after a whole range of new flows to that plane, so the slot
 * it finds is the plane's oldest and most likely free (a shared cursor came back after a range
 * of flows to any plane, four times as soon). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);   /* backend plane: backend_id % LB_SNAT_SLOTS */
	__type(value, __u32); /* next offset in the SNAT range + 1; 0: not started */
	__uint(max_entries, LB_SNAT_SLOTS);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_snat_cursor SEC(".maps");

/* --- statistics (per CPU: plain increments, no atomics) -------------------------------- */
struct lb_stats {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32); /* rev_nat_index */
	__type(value, struct lb_stats);
	__uint(max_entries, LB_STATS_MAP_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_stats_service SEC(".maps");

/* An array indexed by backend id (ids are allocated lowest-free from 1, so they stay below
 * the backend map's size): its lookup is inlined, which a hash's is not; this counter is on
 * every forwarded packet's path. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32); /* backend_id */
	__type(value, struct lb_stats);
	__uint(max_entries, LB_STATS_MAP_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_stats_backend SEC(".maps");

/* Verdict/drop reasons (enum lb_reason in consts.h) -> packets/bytes. Additive to the
 * ARCHITECTURE.md schema; same value struct. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32); /* enum lb_reason */
	__type(value, struct lb_stats);
	__uint(max_entries, LB_R_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb4_stats_reason SEC(".maps");

#endif /* L4LB_MAPS_H */
