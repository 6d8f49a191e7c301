// SPDX-License-Identifier: GPL-2.0-only
/*
 * len: how big the skb is, and how much memory it holds.
 *
 *   ( len: 98 data_len: 0 truesize: 768 )
 *
 * len is the packet's bytes from skb->data on (linear part plus pages),
 * data_len the part of len in page fragments and the frag list (0 for a
 * linear skb), truesize the memory charged for the skb (struct, buffer
 * and fragments) to socket buffers.
 */
#include "ipft_extension.h"

struct event {
	__u32 len;
	__u32 data_len;
	__u32 truesize;
} __ipft_event_struct;

struct sk_buff {
	unsigned int len;
	unsigned int data_len;
	unsigned int truesize;
} __attribute__((preserve_access_index));

__hidden int module(void *ctx, struct sk_buff *skb, __u8 data[64])
{
	struct event *ev = (struct event *)data;

	ev->len = BPF_CORE_READ(skb, len);
	ev->data_len = BPF_CORE_READ(skb, data_len);
	ev->truesize = BPF_CORE_READ(skb, truesize);
	return 0;
}
