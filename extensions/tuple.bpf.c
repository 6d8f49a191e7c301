// SPDX-License-Identifier: GPL-2.0-only
/*
 * tuple: the packet's L3/L4 addresses and ports, read from its headers.
 *
 *   ( proto: tcp saddr: 10.0.0.1 daddr: 10.0.0.2 sport: 40112 dport: 80 )
 *
 * Addresses are 16 bytes; IPv4 is stored v4-mapped (::ffff:a.b.c.d) and
 * shown dotted. Ports are those of TCP, UDP, UDP-Lite, SCTP and DCCP, 0
 * for other protocols and for IPv4/IPv6 fragments after the first. Where
 * the skb has no IP header located yet (a driver's receive path before
 * the stack sets the network header, ARP, other L3), every field is 0 and
 * proto is none.
 */
#include "ipft_extension.h"
#include <bpf/bpf_endian.h>

/*
 * IANA protocol numbers (IPPROTO_*, NEXTHDR_*). 255 is reserved by IANA
 * and never on the wire: it stands for "no IP header".
 */
enum {
	hopopts = 0,
	icmp = 1,
	igmp = 2,
	ipip = 4,
	tcp = 6,
	egp = 8,
	udp = 17,
	dccp = 33,
	ipv6 = 41,
	routing = 43,
	fragment = 44,
	rsvp = 46,
	gre = 47,
	esp = 50,
	ah = 51,
	icmpv6 = 58,
	nonxt = 59,
	dstopts = 60,
	ospf = 89,
	ethernet_ip = 97,
	pim = 103,
	vrrp = 112,
	l2tp = 115,
	sctp = 132,
	mh = 135,
	udplite = 136,
	mpls = 137,
	ethernet = 143,
	none = 255,
} __ipft_ref(ip_protos);

struct event {
	__u8 proto __ipft_fmt_enum(ip_protos);
	__u8 saddr[16] __ipft_fmt_ip;
	__u8 daddr[16] __ipft_fmt_ip;
	__u16 sport __ipft_fmt_be;
	__u16 dport __ipft_fmt_be;
} __ipft_event_struct;

struct sk_buff {
	unsigned char *head;
	__u16 network_header;
	__u16 mac_header;
	__be16 protocol;
} __attribute__((preserve_access_index));

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86dd
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88a8

/* IPv4 frag_off: fragment offset bits (more-fragments and DF excluded). */
#define IP_OFFSET 0x1fff
/* IPv6 fragment header: offset bits of its second 16-bit word. */
#define IP6_OFFSET 0xfff8
/* Extension headers walked to reach the L4 header of an IPv6 packet. */
#define IP6_MAX_EXT 4

struct ip4 {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__sum16 check;
	__u8 saddr[4];
	__u8 daddr[4];
};

struct ip6 {
	__be32 ver_tc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

static __always_inline int has_ports(__u8 p)
{
	return p == tcp || p == udp || p == udplite || p == sctp || p == dccp;
}

/* An IPv6 extension header this walk steps over. */
static __always_inline int ip6_ext(__u8 p)
{
	return p == hopopts || p == routing || p == fragment || p == dstopts || p == ah;
}

/*
 * Both readers fill the addresses and proto and return the L4 header's
 * offset from head: 0 for a fragment after the first (no L4 header), ~0
 * when the bytes are not an IP header (nothing written then). The offset
 * is computed from the IP header rather than taken from
 * skb->transport_header, which is unset on early receive and, for IPv6,
 * points at the first extension header until the stack has parsed them.
 */
static __always_inline __u32 read_ip4(struct event *ev, unsigned char *head, __u32 nh)
{
	struct ip4 ip;

	if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh) || (ip.ver_ihl & 0xf) < 5)
		return ~0u;
	ev->proto = ip.protocol;
	ev->saddr[10] = ev->saddr[11] = 0xff;
	ev->daddr[10] = ev->daddr[11] = 0xff;
	__builtin_memcpy(&ev->saddr[12], ip.saddr, 4);
	__builtin_memcpy(&ev->daddr[12], ip.daddr, 4);
	if (ip.frag_off & bpf_htons(IP_OFFSET))
		return 0;
	return nh + (ip.ver_ihl & 0xf) * 4;
}

static __always_inline __u32 read_ip6(struct event *ev, unsigned char *head, __u32 nh)
{
	struct ip6 ip;
	__u8 next, ext[4];
	__u32 off = nh + sizeof(ip);
	int first = 1;

	if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
		return ~0u;
	__builtin_memcpy(ev->saddr, ip.saddr, 16);
	__builtin_memcpy(ev->daddr, ip.daddr, 16);
	next = ip.nexthdr;
#pragma unroll
	for (int i = 0; i < IP6_MAX_EXT; i++) {
		if (!ip6_ext(next))
			break;
		if (bpf_probe_read_kernel(ext, sizeof(ext), head + off))
			break;
		if (next == fragment) {
			first = !(((__u16)ext[2] << 8 | ext[3]) & IP6_OFFSET);
			off += 8;
		} else if (next == ah) {
			off += (ext[1] + 2) * 4;
		} else {
			off += (ext[1] + 1) * 8;
		}
		next = ext[0];
	}
	ev->proto = next;
	return first ? off : 0;
}

__hidden int module(void *ctx, struct sk_buff *skb, __u8 data[64])
{
	struct event *ev = (struct event *)data;
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 mh = BPF_CORE_READ(skb, mac_header);
	__u16 eth = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	__u32 l4 = ~0u;
	__u8 ver = 0;
	__be16 ports[2];

	/* data arrives zeroed: only proto needs its "no header" value. */
	ev->proto = none;
	/*
	 * network_header is 0 until the stack sets it (an skb from a driver
	 * before __netif_receive_skb_core), ~0 in some builds; equal to
	 * mac_header while it still points at the link-layer header.
	 */
	if (nh == 0 || nh == (__u16)~0 || (mh != (__u16)~0 && nh == mh))
		return 0;
	if (bpf_probe_read_kernel(&ver, 1, head + nh))
		return 0;
	ver >>= 4;
	/*
	 * Trust the version nibble where skb->protocol agrees or is not set
	 * yet (the transmit path before ip_output) or is a VLAN tag.
	 */
	if (ver == 4 && (eth == ETH_P_IP || eth == 0 || eth == ETH_P_8021Q || eth == ETH_P_8021AD))
		l4 = read_ip4(ev, head, nh);
	else if (ver == 6 && (eth == ETH_P_IPV6 || eth == 0 || eth == ETH_P_8021Q || eth == ETH_P_8021AD))
		l4 = read_ip6(ev, head, nh);
	if (l4 == ~0u)
		return 0;
	if (l4 && has_ports(ev->proto) && !bpf_probe_read_kernel(ports, sizeof(ports), head + l4)) {
		ev->sport = ports[0];
		ev->dport = ports[1];
	}
	return 0;
}
