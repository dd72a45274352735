/* SPDX-License-Identifier: GPL-2.0 */
/* consts.h: compile-time configuration (macros rendered by module_utils/l4lb/build.py from the
 * LB node's device) and fixed constants. Defaults let the file compile stand-alone. */
#ifndef L4LB_CONSTS_H
#define L4LB_CONSTS_H

/* Mode: exactly one of MODE_SNAT / MODE_DSR (default SNAT). */
#if defined(MODE_SNAT) && defined(MODE_DSR)
#error "define only one of MODE_SNAT and MODE_DSR"
#endif
#if !defined(MODE_SNAT) && !defined(MODE_DSR)
#define MODE_SNAT 1
#endif

/* LB_IP: the LB device's IPv4 address as the value a little-endian CPU reads from the __be32
 * (20.1.1.1 -> 0x01010114). */
#ifndef LB_IP
#define LB_IP 0x01010114
#endif
/* LB_MAC: the LB device's MAC as a brace initializer. */
#ifndef LB_MAC
#define LB_MAC {0x02, 0x00, 0x14, 0x01, 0x01, 0x01}
#endif
#ifndef LB_IFINDEX
#define LB_IFINDEX 1
#endif
/* MTU of the LB device: a DSR packet that would exceed it once encapsulated is passed. */
#ifndef LB_MTU
#define LB_MTU 1500
#endif
/* Maglev lookup-table size M (prime). Every inner map of lb4_maglev holds M backend ids. */
#ifndef LB_MAGLEV_LUT_SIZE
#define LB_MAGLEV_LUT_SIZE 2039
#endif
/* SNAT source ports on LB_IP. Kept below the node's ephemeral ports (Linux's
 * net.ipv4.ip_local_port_range is 32768..60999 by default, Windows' dynamic range 49152..65535),
 * so the node's own connections never meet a SNAT flow's tuple. Every port serves up to
 * LB_SNAT_SLOTS backends at once: capacity is LB_SNAT_SLOTS x the range in all, the range per
 * backend (lb4_snat in maps.h). */
#ifndef SNAT_PORT_MIN
#define SNAT_PORT_MIN 1024
#endif
#ifndef SNAT_PORT_MAX
#define SNAT_PORT_MAX 32767
#endif
#if SNAT_PORT_MIN < 1 || SNAT_PORT_MAX > 65535 || SNAT_PORT_MIN > SNAT_PORT_MAX
#error "bad SNAT port range"
#endif
#define SNAT_PORT_RANGE (SNAT_PORT_MAX - SNAT_PORT_MIN + 1)
/* Probes of the SNAT port space per new flow before giving up (drop). Each probe's port is an
 * independent hash of the flow, so with a share f of the ports held a new flow is refused with
 * probability f^SNAT_PROBES (no clustering as with linear probing). */
#ifndef SNAT_PROBES
#define SNAT_PROBES 8
#endif
/* Connection-tracking lifetimes in seconds (bpf/README.md "Lifetimes"; Cilium's CT_* values
 * where one exists). A flow whose CT entry has been quiet for its lifetime is over: its next
 * packet starts a new flow, the control plane's GC may delete it, and its SNAT port may be
 * taken by another flow.
 *   LB_CT_SYN_TIMEOUT     TCP, handshake not completed (client never ACKed): a SYN flood holds
 *                         ports only this long (Cilium CT_SYN_TIMEOUT is 60)
 *   LB_CT_TCP_TIMEOUT     TCP established, idle (Cilium CT_CONNECTION_LIFETIME_TCP)
 *   LB_CT_FIN_TIMEOUT     TCP with a FIN seen one way only (half-closed; in DSR the LB sees
 *                         only the client's side) (Cilium CT_CLOSE_TIMEOUT)
 *   LB_CT_CLOSED_TIMEOUT  TCP closed: FIN seen both ways, or RST
 *   LB_CT_UDP_TIMEOUT     UDP (Cilium CT_CONNECTION_LIFETIME_NONTCP)
 *   LB_SNAT_TIME_WAIT     a closed SNAT flow whose backend closed first leaves the backend in
 *                         TIME_WAIT on (LB_IP, nat_port): another client gets that port only
 *                         after this (Linux TCP_TIMEWAIT_LEN); the same client may reuse it
 *                         after LB_CT_CLOSED_TIMEOUT (its SYN carries a newer timestamp, which
 *                         a TIME_WAIT socket accepts, RFC 6191). */
#ifndef LB_CT_SYN_TIMEOUT
#define LB_CT_SYN_TIMEOUT 5
#endif
#ifndef LB_CT_TCP_TIMEOUT
#define LB_CT_TCP_TIMEOUT 21600
#endif
#ifndef LB_CT_FIN_TIMEOUT
#define LB_CT_FIN_TIMEOUT 10
#endif
#ifndef LB_CT_CLOSED_TIMEOUT
#define LB_CT_CLOSED_TIMEOUT 2
#endif
#ifndef LB_CT_UDP_TIMEOUT
#define LB_CT_UDP_TIMEOUT 60
#endif
#ifndef LB_SNAT_TIME_WAIT
#define LB_SNAT_TIME_WAIT 60
#endif
#define LB_NS_PER_S 1000000000ull

#ifndef __NR_CPUS__
#define __NR_CPUS__ 1
#endif

/* Flow hash seed; module_utils/l4lb/flowhash.py mirrors it (LB_HASH_SEED). */
#define LB_HASH_SEED 0x4c344c42u
/* Second seed: where a new flow's SNAT port search starts. */
#define LB_SNAT_SEED 0x534e4154u

/* TTL of the outer IPv4 header in DSR mode. */
#define LB_DSR_TTL 64

/* Map sizes (ARCHITECTURE.md). */
#define LB_SERVICE_MAP_MAX  65536
#define LB_BACKEND_MAP_MAX  65536
#define LB_REVNAT_MAP_MAX   65536
#define LB_MAGLEV_MAP_MAX   65536
#define LB_NEIGH_MAP_MAX    1024
/* CT holds every tracked flow: at least the SNAT capacity (LB_SNAT_SLOTS x 31,744 ports by
 * default). An LRU: when full the least recently used flows go first. */
#ifndef LB_CT_MAP_MAX
#define LB_CT_MAP_MAX       131072
#endif
/* lb4_snat: a plane per backend (backend_id % LB_SNAT_SLOTS) with a slot for every port number
 * (not only the range), so its layout does not depend on the configured range. */
#define LB_SNAT_SLOTS       4
#define LB_SNAT_PLANE_SIZE  65536
#define LB_SNAT_MAP_MAX     (LB_SNAT_PLANE_SIZE * LB_SNAT_SLOTS)
#define LB_STATS_MAP_MAX    65536
/* lb4_vip_filter: 2^LB_VIP_FILTER_BITS buckets of VIP addresses, by a multiplicative hash of the
 * address (lb_vip_bucket in service.h; module_utils/l4lb/structs.py mirrors it). */
#define LB_VIP_FILTER_BITS  12
#define LB_VIP_FILTER_SIZE  (1 << LB_VIP_FILTER_BITS)
#define LB_VIP_FILTER_MULT  0x9e3779b1u
/* lb4_front_hint: 2^LB_FRONT_HINT_BITS buckets of service frontends (VIP, port, protocol), by the
 * same multiplicative hash (lb_front_bucket in service.h; structs.py mirrors it). */
#define LB_FRONT_HINT_BITS  12
#define LB_FRONT_HINT_SIZE  (1 << LB_FRONT_HINT_BITS)

/* lb4_stats_reason: why packets left the program (index -> lb_stats). Mirrored by name in
 * bpf/README.md; the control plane may print them. */
enum lb_reason {
	LB_R_PASS_NOT_IPV4 = 0,    /* pass: not an IPv4 frame (ARP, IPv6, VLAN, short frame) */
	LB_R_PASS_BAD_IPV4 = 1,    /* pass: IPv4 header unusable (kernel's ip_rcv drops it) */
	LB_R_PASS_NOT_SERVICE = 2, /* pass: IPv4 not matching a service or a SNAT entry */
	LB_R_TX_SNAT_FWD = 3,      /* tx: client -> backend, SNAT */
	LB_R_TX_SNAT_REPLY = 4,    /* tx: backend -> client, reverse SNAT */
	LB_R_TX_DSR = 5,           /* tx: client -> backend, IPIP */
	LB_R_DROP_MALFORMED = 6,   /* drop: service/SNAT packet with bad L4 header */
	LB_R_DROP_IP_OPTIONS = 7,  /* drop: service/SNAT packet with IPv4 options */
	LB_R_DROP_FRAGMENT = 8,    /* drop: service/SNAT packet that is a fragment */
	LB_R_DROP_TTL = 9,         /* drop: service/SNAT packet with TTL <= 1 */
	LB_R_DROP_NO_BACKEND = 10, /* drop: service has no (usable) backend */
	LB_R_DROP_NO_NEIGH = 11,   /* drop: next-hop MAC not known (backend's copy, client's neighbour) */
	LB_R_DROP_SNAT_PORTS = 12, /* drop: no free SNAT port for the backend after SNAT_PROBES probes */
	LB_R_DROP_MAP_UPDATE = 13, /* drop: a map update failed (CT full, ...) */
	LB_R_PASS_MTU = 14,        /* pass: DSR packet too big to encapsulate */
	LB_R_DROP_ENCAP = 15,      /* drop: bpf_xdp_adjust_head failed */
	LB_R_MAX = 16,
};

/* IPv4 / L4 numbers. */
#define LB_ETH_P_IP   0x0800
#define LB_IPPROTO_ICMP 1
#define LB_IPPROTO_IPIP 4
#define LB_IPPROTO_TCP  6
#define LB_IPPROTO_UDP  17
#define LB_IP_MF      0x2000
#define LB_IP_OFFMASK 0x1fff
#define LB_IP_DF      0x4000

#define LB_TCP_FIN 0x01
#define LB_TCP_SYN 0x02
#define LB_TCP_RST 0x04
#define LB_TCP_ACK 0x10

/* ct_entry.ct_flags: what the LB saw of a TCP connection's life, per direction. */
#define LB_CT_F_ESTABLISHED  0x01 /* the client sent a packet with ACK and without SYN */
#define LB_CT_F_CLIENT_FIN   0x02 /* the client sent a FIN */
#define LB_CT_F_BACKEND_FIN  0x04 /* the backend sent a FIN (seen in SNAT only) */
#define LB_CT_F_BACKEND_TW   0x08 /* the backend's FIN came first: it holds TIME_WAIT */

#endif /* L4LB_CONSTS_H */
