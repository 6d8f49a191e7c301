// SPDX-License-Identifier: GPL-2.0-only
/*
 * gso: the skb's length and its GSO state, read from skb_shared_info.
 *
 *   ( len: 65226 gso_size: 1448 gso_segs: 46 gso_type: tcpv4|dodgy )
 *
 * gso_size is the payload bytes per segment the packet will be cut into,
 * gso_segs how many segments, gso_type what kind of offload (SKB_GSO_*).
 * A packet that is not GSO shows 0 0 none.
 */
#include "ipft_extension.h"

/*
 * The SKB_GSO_* bits of include/linux/skbuff.h. The kernel's enum is
 * anonymous, so CO-RE cannot relocate it; its bits have only been added
 * to, except that 6.18 moved SKB_GSO_TCP_FIXEDID from bit 3 to bit 30
 * (beside the new _INNER bit 31). C enumerators must be unique, so the
 * 6.18 bit is named tcp_fixedid_outer; an skb carries one or the other.
 */
enum {
	tcpv4 = 1u << 0,
	dodgy = 1u << 1,
	tcp_ecn = 1u << 2,
	tcp_fixedid = 1u << 3,
	tcpv6 = 1u << 4,
	fcoe = 1u << 5,
	gre = 1u << 6,
	gre_csum = 1u << 7,
	ipxip4 = 1u << 8,
	ipxip6 = 1u << 9,
	udp_tunnel = 1u << 10,
	udp_tunnel_csum = 1u << 11,
	partial = 1u << 12,
	tunnel_remcsum = 1u << 13,
	sctp = 1u << 14,
	esp = 1u << 15,
	udp = 1u << 16,
	udp_l4 = 1u << 17,
	fraglist = 1u << 18,
	tcp_accecn = 1u << 19,
	tcp_fixedid_outer = 1u << 30,
	tcp_fixedid_inner = 1u << 31,
} __ipft_ref(gso_types);

struct event {
	__u32 len;
	__u16 gso_size;
	__u16 gso_segs;
	__u32 gso_type __ipft_fmt_enum_flags(gso_types);
} __ipft_event_struct;

/* Only the members read here; CO-RE finds them in the running kernel. */
struct sk_buff {
	unsigned int len;
	unsigned char *head;
	unsigned int end;
} __attribute__((preserve_access_index));

struct skb_shared_info {
	unsigned short gso_size;
	unsigned short gso_segs;
	unsigned int gso_type;
} __attribute__((preserve_access_index));

__hidden int module(void *ctx, struct sk_buff *skb, __u8 data[64])
{
	struct event *ev = (struct event *)data;
	struct skb_shared_info *shinfo;

	/*
	 * skb_shinfo(): the shared info follows the linear buffer, at
	 * head + end. end is an offset on 64-bit kernels
	 * (NET_SKBUFF_DATA_USES_OFFSET); a 32-bit kernel keeps a pointer.
	 */
	shinfo = (struct skb_shared_info *)(BPF_CORE_READ(skb, head) +
					    BPF_CORE_READ(skb, end));

	ev->len = BPF_CORE_READ(skb, len);
	ev->gso_size = BPF_CORE_READ(shinfo, gso_size);
	ev->gso_segs = BPF_CORE_READ(shinfo, gso_segs);
	ev->gso_type = BPF_CORE_READ(shinfo, gso_type);
	return 0;
}
