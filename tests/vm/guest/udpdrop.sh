# Scenario udpdrop: marked UDP datagrams to a port nobody listens on
# (nslookup to 127.0.0.1:53) are dropped in __udp4_lib_rcv with reason
# NO_SOCKET; the drop, the kfree_skb tracepoint and the release of the skb's
# memory are one packet per datagram.
. /scenarios/lib.sh

ns_lo udp
ip netns exec udp iptables -t raw -A OUTPUT -p udp -j MARK --set-mark "$MARK"

if ipft_start trace -r '^(ip_|udp_|__udp4_lib_rcv$|kfree_skb_reason$|sk_skb_reason_drop$|kfree_skbmem$|kfree_skb$)'; then
    ip netns exec udp timeout 10 nslookup ipft.test 127.0.0.1 >nslookup.txt 2>&1
    tracer_stop INT
fi
ip netns exec udp iptables -t raw -L OUTPUT -v -x -n >iptables-raw.txt 2>&1
