# Scenario track: --track-skb on function probes. A marked loopback ping:
# each packet that reaches ping's raw socket does so as a clone
# (raw_v4_input: skb_clone), whose events join the source's packet. And a
# veth crossing into a namespace that does not mark: the request is
# followed through b's receive. Once with --track-skb (tracked*.json), once
# without (plain.json).
. /scenarios/lib.sh
# trackgen.sh runs this with a generated tracer and the functions it has.
TRACK_RE=${TRACK_RE:-'^(icmp_rcv|ip_rcv|skb_copy_datagram_iovec)$'}

ns_lo mark
ip netns exec mark iptables -t raw -A OUTPUT -p icmp -j MARK --set-mark "$MARK"
veth_pair ta tb 10.98.0.1 10.98.0.2
ip netns exec ta iptables -t raw -A OUTPUT -p icmp --icmp-type echo-request -j MARK --set-mark "$MARK"
ip netns exec ta ping -c 1 -W 2 10.98.0.2 >/dev/null 2>&1

if ipft_start tracked -r "$TRACK_RE" --track-skb; then
    ip netns exec mark ping -c 3 -i 0.2 -W 2 127.0.0.1 >ping-lo.txt 2>&1
    tracer_stop INT
fi
if ipft_start plain -r "$TRACK_RE"; then
    ip netns exec mark ping -c 3 -i 0.2 -W 2 127.0.0.1 >ping-lo-plain.txt 2>&1
    tracer_stop INT
fi
if ipft_start tracked-veth -r '^(ip_output|ip_rcv|icmp_rcv)$' --track-skb; then
    ip netns exec ta ping -c 3 -i 0.2 -W 2 10.98.0.2 >ping-veth.txt 2>&1
    tracer_stop INT
fi
