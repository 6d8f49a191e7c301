# Scenario args: the skb is not always the first argument.
#  - ip_finish_output(net, sk, skb): skb is argument 2 (marked ICMP ping)
#  - __udp4_lib_lookup(net, saddr, sport, daddr, dport, dif, sdif, udptable,
#    skb): skb is argument 9, past the 6 argument registers; called for every
#    UDP datagram received (a DNS query from nslookup to 127.0.0.1:53, nobody
#    listening). The tracer must either trace it or refuse it with a reason.
. /scenarios/lib.sh

ns_lo mark
ip netns exec mark iptables -t raw -A OUTPUT -p icmp -j MARK --set-mark "$MARK"
ip netns exec mark iptables -t raw -A OUTPUT -p udp -j MARK --set-mark "$MARK"

if ipft_start trace -r '^(ip_finish_output|__udp4_lib_lookup)$'; then
    ip netns exec mark ping -c 1 -W 2 127.0.0.1 >ping-marked.txt 2>&1
    ip netns exec mark timeout 10 nslookup ipft.test 127.0.0.1 >nslookup.txt 2>&1
    tracer_stop INT
fi
ip netns exec mark iptables -t raw -L OUTPUT -v -x -n >iptables-raw.txt 2>&1
