// SPDX-License-Identifier: GPL-2.0
/* newflows: the per-packet cost of new flows through an XDP program, with the run's flows
 * removed whole every EVERY calls (untimed). bench/katran_clearing.py uses it for the one way
 * of clearing the workplace's trbench cannot do: trbench deletes a run's flows by key, and a
 * SNAT flow of ours is its CT entry plus the lb4_snat slot that entry names (an ARRAY slot,
 * freed by writing it zero, as the control plane's GC frees it). Everything else is trbench's
 * method, so the rows compare: BPF_PROG_TEST_RUN with repeat=1, a fresh copy of the packet per
 * call, flow k = source address (the packet's) + k / R and source port P + k % R, checksums
 * recomputed, W untimed warm-up calls, then N timed; the kernel-reported ns.
 *
 * usage: newflows [-w W] [-c EVERY] [-o FIRST] [-P P] [-R R]
 *                 [-k MAP:IPOFF:PORTOFF]... [-s CT:SNAT:IPOFF:PORTOFF:NATOFF:BEOFF:SLOTS]
 *                 PROG PACKET N
 *   -k  a hash table whose keys hold the flow's source address and port (network order) at
 *       these offsets: the run's keys are deleted (Katran's LRU, its fallback_cache)
 *   -s  our CT (keys as -k) whose values name each flow's SNAT slot: nat_port (network order)
 *       at NATOFF and backend_id (u32) at BEOFF; the slot, key ntohs(nat_port) * SLOTS +
 *       backend_id % SLOTS of the ARRAY SNAT, is written zero, then the CT key is deleted.
 *       The offsets come from the project's declared layouts (module_utils/l4lb/structs.py).
 *   MAP, CT, SNAT and PROG: ids or pinned paths. Prints "median p10 p90 verdict" and, on a
 *   second line, how many keys were deleted and slots freed and how long a clear took.
 */
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_TABLES 4

struct flow_range {
	uint32_t addr0; /* host order */
	unsigned port0, ports;
};

struct table {
	int fd, snat_fd;                  /* snat_fd >= 0: the -s table */
	unsigned ipoff, portoff, natoff, beoff, slots;
	unsigned ksz, vsz, cap, snat_vsz;
	/* buffers for a clear, allocated once: a fresh one per clear would fault its pages in */
	unsigned char *ks, *vs, *hits, *zero;
	__u32 *free_idx;
};

static void fail(const char *what)
{
	perror(what);
	exit(2);
}

static int fd_of(const char *s, int is_map)
{
	int fd = s[0] == '/' ? bpf_obj_get(s) : is_map ? bpf_map_get_fd_by_id(atoi(s)) : bpf_prog_get_fd_by_id(atoi(s));

	if (fd < 0)
		fail(s);
	return fd;
}

static void sizes(int fd, unsigned *ksz, unsigned *vsz, unsigned *cap)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);

	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		fail("map info");
	*ksz = info.key_size;
	*vsz = info.value_size;
	*cap = info.max_entries;
}

static void *alloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);

	if (!p)
		fail("calloc");
	return p;
}

static void buffers(struct table *t)
{
	t->ks = alloc(t->cap, t->ksz);
	t->vs = alloc(t->cap, t->vsz);
	t->hits = alloc(t->cap, t->ksz);
	if (t->snat_fd < 0)
		return;
	t->free_idx = alloc(t->cap, sizeof(__u32));
	t->zero = alloc(t->cap, t->snat_vsz);
}

/* Is (addr, port), network order, one of flows [lo, hi)? */
static int in_run(const struct flow_range *f, const unsigned char *rec, unsigned ipoff, unsigned portoff,
		  long long lo, long long hi)
{
	uint32_t a;
	uint16_t p;

	memcpy(&a, rec + ipoff, 4);
	memcpy(&p, rec + portoff, 2);
	a = ntohl(a);
	p = ntohs(p);
	if (a < f->addr0 || p < f->port0 || p >= f->port0 + f->ports)
		return 0;
	long long k = (long long)(a - f->addr0) * f->ports + (p - f->port0);
	return k >= lo && k < hi;
}

/* Remove flows [lo, hi) from t; counts into *keys and *slots. By batch, a few syscalls per clear
 * whatever the table, Katran's and ours alike: the pause before the next calls costs a program
 * (katran_clearing.py), so both clears stay short (about 0.6 ms for Katran's, 1.1 ms for ours). */
static void clear(const struct table *t, const struct flow_range *f, long long lo, long long hi, long *keys,
		  long *slots)
{
	__u32 cap = t->cap, count, nhits = 0, nslots = 0, cursor[16], next[16];
	unsigned char *ks = t->ks, *vs = t->vs, *hits = t->hits;
	int more = 1, started = 0;

	if (t->ksz > sizeof(cursor))
		fail("key size");
	while (more) { /* the whole table, keys and values (a hash: the cursor is a bucket) */
		count = cap;
		if (bpf_map_lookup_batch(t->fd, started ? cursor : NULL, next, ks, vs, &count, NULL)) {
			if (errno != ENOENT)
				fail("reading a flow table");
			more = 0;
		}
		started = 1;
		memcpy(cursor, next, sizeof(cursor));
		for (__u32 i = 0; i < count && nhits < cap; i++) {
			const unsigned char *k = ks + (size_t)i * t->ksz, *v = vs + (size_t)i * t->vsz;
			uint16_t port;
			uint32_t backend;

			if (!in_run(f, k, t->ipoff, t->portoff, lo, hi))
				continue;
			memcpy(hits + (size_t)nhits++ * t->ksz, k, t->ksz);
			if (t->snat_fd < 0)
				continue;
			memcpy(&port, v + t->natoff, 2);
			memcpy(&backend, v + t->beoff, 4);
			if (!port) /* a DSR flow holds no slot */
				continue;
			/* the flow's own slot: its CT entry is alive and younger than any lifetime
			 * (a run lasts seconds), and the datapath gives a slot away only when its
			 * owner's entry is gone or over (nat.h, lb_snat_slot_usable) */
			t->free_idx[nslots++] = ntohs(port) * t->slots + backend % t->slots;
		}
	}
	if (nslots) {
		count = nslots;
		if (bpf_map_update_batch(t->snat_fd, t->free_idx, t->zero, &count, NULL))
			fail("freeing SNAT slots");
		*slots += count;
	}
	count = nhits;
	if (nhits && bpf_map_delete_batch(t->fd, hits, &count, NULL))
		fail("deleting flows");
	*keys += count;
}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint32_t sum16(uint32_t s, const unsigned char *b, size_t n)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)b[i] << 8 | b[i + 1];
	if (n & 1)
		s += (uint32_t)b[n - 1] << 8;
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static void put16(unsigned char *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

/* Flow k into the packet (Ethernet, IPv4 without options, TCP): source address and port, and
 * both checksums recomputed. */
static void set_flow(unsigned char *pkt, size_t len, const struct flow_range *f, long long k)
{
	unsigned char *ip = pkt + 14, *tcp = ip + 20;
	uint32_t addr = htonl(f->addr0 + (uint32_t)(k / f->ports));
	size_t seg = ((size_t)ip[2] << 8 | ip[3]) - 20;

	if (34 + seg > len)
		seg = len - 34;

	memcpy(ip + 12, &addr, 4);
	put16(tcp, f->port0 + k % f->ports);
	put16(ip + 10, 0);
	put16(ip + 10, fold(sum16(0, ip, 20)));
	put16(tcp + 16, 0);
	put16(tcp + 16, fold(sum16(sum16(0, ip + 12, 8) + 6 + seg, tcp, seg)));
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static void usage(const char *me)
{
	fprintf(stderr, "usage: %s [-w W] [-c EVERY] [-o FIRST] [-P P] [-R R] [-k MAP:IPOFF:PORTOFF]... "
			"[-s CT:SNAT:IPOFF:PORTOFF:NATOFF:BEOFF:SLOTS] PROG PACKET N\n", me);
	exit(2);
}

int main(int argc, char **argv)
{
	struct flow_range f = {.port0 = 10000, .ports = 20000};
	struct table tabs[MAX_TABLES];
	long long warm = 0, every = 0, first = 0;
	int ntabs = 0, opt;
	char a[64], b[64];

	while ((opt = getopt(argc, argv, "w:c:o:P:R:k:s:")) != -1) {
		struct table *t = &tabs[ntabs];

		switch (opt) {
		case 'w': warm = atoll(optarg); break;
		case 'c': every = atoll(optarg); break;
		case 'o': first = atoll(optarg); break;
		case 'P': f.port0 = atoi(optarg); break;
		case 'R': f.ports = atoi(optarg); break;
		case 'k':
		case 's':
			if (ntabs == MAX_TABLES)
				usage(argv[0]);
			memset(t, 0, sizeof(*t));
			t->snat_fd = -1;
			if (opt == 'k' && sscanf(optarg, "%63[^:]:%u:%u", a, &t->ipoff, &t->portoff) != 3)
				usage(argv[0]);
			if (opt == 's' && (sscanf(optarg, "%63[^:]:%63[^:]:%u:%u:%u:%u:%u", a, b, &t->ipoff, &t->portoff,
						  &t->natoff, &t->beoff, &t->slots) != 7 || !t->slots))
				usage(argv[0]);
			t->fd = fd_of(a, 1);
			sizes(t->fd, &t->ksz, &t->vsz, &t->cap);
			if (opt == 's') {
				unsigned ksz, cap;

				t->snat_fd = fd_of(b, 1);
				sizes(t->snat_fd, &ksz, &t->snat_vsz, &cap);
				if (ksz != 4 || t->natoff + 2 > t->vsz || t->beoff + 4 > t->vsz)
					usage(argv[0]);
			}
			if (t->ipoff + 4 > t->ksz || t->portoff + 2 > t->ksz)
				usage(argv[0]);
			buffers(t);
			ntabs++;
			break;
		default: usage(argv[0]);
		}
	}
	if (argc - optind != 3 || !f.ports || f.port0 + f.ports > 65536 || warm < 0 || every < 0)
		usage(argv[0]);

	int prog = fd_of(argv[optind], 0), n = atoi(argv[optind + 2]);
	unsigned char pkt[2048], in[2048], out[2048];
	FILE *fp = fopen(argv[optind + 1], "rb");
	size_t len;

	if (!fp)
		fail(argv[optind + 1]);
	len = fread(pkt, 1, sizeof(pkt), fp);
	fclose(fp);
	if (n <= 0 || len < 54 || pkt[12] != 0x08 || pkt[13] != 0 || pkt[14] != 0x45 || pkt[23] != 6)
		usage(argv[0]); /* Ethernet + IPv4 without options + TCP */
	uint32_t addr0;
	memcpy(&addr0, pkt + 26, 4);
	f.addr0 = ntohl(addr0);

	uint32_t *ns = calloc(n, sizeof(*ns)), verdict = 0;
	long long k = first, cleared_to = first;
	long keys = 0, slots = 0, clears = 0;
	long long clear_ns = 0;
	int rc = 0;

	for (long long i = -warm; i < n; i++, k++) {
		if (every && i > -warm && (i + warm) % every == 0) {
			long long t0 = now_ns();

			for (int t = 0; t < ntabs; t++)
				clear(&tabs[t], &f, cleared_to, k, &keys, &slots);
			cleared_to = k;
			clear_ns += now_ns() - t0;
			clears++;
		}
		memcpy(in, pkt, len);
		set_flow(in, len, &f, k);
		LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = in, .data_size_in = len, .data_out = out,
			    .data_size_out = sizeof(out), .repeat = 1);
		if (bpf_prog_test_run_opts(prog, &opts)) {
			perror("test run");
			rc = 2;
			k++; /* the failed call may have made its flow */
			break;
		}
		if (i >= 0) {
			ns[i] = opts.duration;
			verdict = opts.retval;
		}
	}
	for (int t = 0; t < ntabs; t++)
		clear(&tabs[t], &f, cleared_to, k, &keys, &slots);
	if (rc)
		return rc;
	qsort(ns, n, sizeof(*ns), cmp_u32);
	printf("%u %u %u %u\ndeleted=%ld freed=%ld clear_us=%lld\n", ns[n / 2], ns[n / 10], ns[n * 9 / 10], verdict, keys,
	       slots, clears ? clear_ns / clears / 1000 : 0);
	return 0;
}
