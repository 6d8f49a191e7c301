// SPDX-License-Identifier: GPL-2.0
/*
 * Reference programs for `ipft-bench per-hit`, attached beside ipft's own
 * generic tp_btf program to the same tracepoints:
 *
 *   bench_empty_*  do nothing: their bpf_stats cost is the stats overhead
 *                  itself, subtracted from every other program.
 *   bench_floor_*  the floor of ipft's matching path: the mark test by a
 *                  direct typed load, then the same 32-byte event reserved
 *                  and submitted on a ring buffer, nothing else.
 *   bench_stamped_* the floor, with the event's fields filled as ipft fills
 *                  them: the timestamp (bpf_ktime_get_ns) and the CPU.
 *   ipft2_style_*  what ipftrace2 does per hit: mark/mask from an ARRAY
 *                  config map, skb->mark through bpf_probe_read_kernel
 *                  (BPF_CORE_READ), a 128-byte event through a perf buffer
 *                  (one consumer wake-up per event, as libbpf's perf_buffer
 *                  sets wakeup_events = 1).
 *
 * Self-contained types (no vmlinux.h) so it builds with clang 14 and the
 * libbpf 1.1 headers of Debian bookworm; CO-RE fixes the sk_buff offset.
 */
typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

enum bpf_map_type {
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERF_EVENT_ARRAY = 4,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_RB_NO_WAKEUP = 1,
};

#define BPF_F_CURRENT_CPU 0xffffffffULL

struct sk_buff {
	__u32 mark;
} __attribute__((preserve_access_index));

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

/* Written by user space before attaching; read on every hit, as ipftrace2. */
struct ipft2_config {
	__u32 mark;
	__u32 mask;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ipft2_config);
} ipft2_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} ipft2_events SEC(".maps");

/* 128 bytes, like ipftrace2's event with its extension area. */
struct ipft2_event {
	__u64 packet_id;
	__u64 tstamp;
	__u64 faddr;
	__u32 processor_id;
	__u8 is_return;
	__u8 _pad[3];
	__u8 data[96];
};

_Static_assert(sizeof(struct ipft2_event) == 128, "event is 128 bytes");

static __always_inline int ipft2_trace(void *ctx, struct sk_buff *skb, __u64 probe)
{
	struct ipft2_config *cfg;
	struct ipft2_event e;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&ipft2_config, &zero);
	if (!cfg)
		return 0;
	if ((BPF_CORE_READ(skb, mark) & cfg->mask) != cfg->mark)
		return 0;
	__builtin_memset(&e, 0, sizeof(e));
	e.packet_id = (__u64)(unsigned long)skb;
	e.tstamp = bpf_ktime_get_ns();
	e.faddr = probe;
	e.processor_id = bpf_get_smp_processor_id();
	bpf_perf_event_output(ctx, &ipft2_events, BPF_F_CURRENT_CPU, &e, sizeof(e));
	return 0;
}

/* A tp_btf program has one target, so one copy per tracepoint. */
SEC("tp_btf/netif_receive_skb")
int ipft2_style_rx(__u64 *ctx)
{
	return ipft2_trace(ctx, (struct sk_buff *)ctx[0], 0);
}

SEC("tp_btf/net_dev_queue")
int ipft2_style_tx(__u64 *ctx)
{
	return ipft2_trace(ctx, (struct sk_buff *)ctx[0], 1);
}

SEC("tp_btf/netif_receive_skb")
int bench_empty_rx(__u64 *ctx)
{
	return 0;
}

SEC("tp_btf/net_dev_queue")
int bench_empty_tx(__u64 *ctx)
{
	return 0;
}

/* The floor: ipft's event and ring buffer, without anything else. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} floor_events SEC(".maps");

struct floor_event {
	__u64 skb;
	__u64 tstamp;
	__u64 aux;
	__u32 probe;
	__u16 cpu;
	__u8 flags;
	__u8 ext_len;
};

_Static_assert(sizeof(struct floor_event) == 32, "the size of ipft's event");

/* `stamped`: the fields every ipft event carries, filled as ipft fills them. */
static __always_inline int floor_trace(void *ring, struct sk_buff *skb, bool stamped, __u32 probe)
{
	struct floor_event *e;

	if (skb->mark != 0xdeadbeef)
		return 0;
	e = bpf_ringbuf_reserve(ring, sizeof(*e), 0);
	if (!e)
		return 0;
	e->skb = (__u64)(unsigned long)skb;
	if (stamped) {
		e->tstamp = bpf_ktime_get_ns();
		e->probe = probe;
		e->cpu = bpf_get_smp_processor_id();
	}
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
}

SEC("tp_btf/netif_receive_skb")
int bench_floor_rx(__u64 *ctx)
{
	return floor_trace(&floor_events, (struct sk_buff *)ctx[0], false, 0);
}

SEC("tp_btf/net_dev_queue")
int bench_floor_tx(__u64 *ctx)
{
	return floor_trace(&floor_events, (struct sk_buff *)ctx[0], false, 1);
}

/* The floor with the event's timestamp and CPU: its own ring, as every group. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} stamped_events SEC(".maps");

SEC("tp_btf/netif_receive_skb")
int bench_stamped_rx(__u64 *ctx)
{
	return floor_trace(&stamped_events, (struct sk_buff *)ctx[0], true, 0);
}

SEC("tp_btf/net_dev_queue")
int bench_stamped_tx(__u64 *ctx)
{
	return floor_trace(&stamped_events, (struct sk_buff *)ctx[0], true, 1);
}
