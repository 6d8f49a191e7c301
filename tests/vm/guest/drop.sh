# Scenario drop: iptables DROP in the filter OUTPUT chain. The raw table marks
# the packet first (raw runs before filter on the same hook), then netfilter
# frees it with reason NETFILTER_DROP (kfree_skb_reason on 6.1,
# sk_skb_reason_drop on 6.12). kfree_skbmem and the kfree_skb tracepoint are
# traced too: the drop, the tracepoint and the release are one packet.
. /scenarios/lib.sh

ns_lo drop
ip netns exec drop iptables -t raw -A OUTPUT -p icmp -j MARK --set-mark "$MARK"
ip netns exec drop iptables -A OUTPUT -p icmp -j DROP

if ipft_start trace -r '^(ip_|icmp_|kfree_skb_reason$|sk_skb_reason_drop$|kfree_skbmem$|kfree_skb$)'; then
    # Two separate pings: busybox ping gives up on the first failed send.
    ip netns exec drop ping -c 1 -W 1 127.0.0.1 >ping-1.txt 2>&1
    ip netns exec drop ping -c 1 -W 1 127.0.0.1 >ping-2.txt 2>&1
    tracer_stop INT
fi
ip netns exec drop iptables -L OUTPUT -v -x -n >iptables-filter.txt 2>&1
