// SPDX-License-Identifier: GPL-2.0-only
/*
 * dev: the device the skb is on, and its network namespace.
 *
 *   ( ifindex: 2 ifname: eth0 netns: 4026531840 )
 *
 * Where the skb has no device yet (a socket's transmit path before
 * routing), ifindex is skb->skb_iif (the device it arrived on, 0 for a
 * locally made packet), ifname is empty and netns is the socket's. netns
 * is the namespace's inode number, as in `ls -l /proc/PID/ns/net` and
 * `lsns -t net`. Without CONFIG_NET_NS it is 0.
 */
#include "ipft_extension.h"

#define IFNAMSIZ 16

struct event {
	__u32 ifindex;
	char ifname[IFNAMSIZ];
	__u32 netns;
} __ipft_event_struct;

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

/* The kernel's typedef; empty without CONFIG_NET_NS. */
typedef struct {
	struct net *net;
} __attribute__((preserve_access_index)) possible_net_t;

struct net_device {
	int ifindex;
	char name[IFNAMSIZ];
	possible_net_t nd_net;
} __attribute__((preserve_access_index));

struct sock_common {
	possible_net_t skc_net;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct sk_buff {
	struct net_device *dev;
	struct sock *sk;
	int skb_iif;
} __attribute__((preserve_access_index));

__hidden int module(void *ctx, struct sk_buff *skb, __u8 data[64])
{
	struct event *ev = (struct event *)data;
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	struct sock *sk;

	if (dev) {
		ev->ifindex = BPF_CORE_READ(dev, ifindex);
		bpf_core_read(ev->ifname, sizeof(ev->ifname), &dev->name);
		/* Relocated to a constant: false drops the read below. */
		if (bpf_core_field_exists(dev->nd_net.net))
			ev->netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
		return 0;
	}

	ev->ifindex = BPF_CORE_READ(skb, skb_iif);
	sk = BPF_CORE_READ(skb, sk);
	if (sk && bpf_core_field_exists(sk->__sk_common.skc_net.net))
		ev->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	return 0;
}
