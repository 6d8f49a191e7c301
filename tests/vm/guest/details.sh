# Scenario details: --output-meta, --output-tuple, --output-stack and
# --output-pcap on marked echo requests from namespace a to b over veth,
# followed into b by --track-skb. What the host checks them against is
# recorded here: the namespaces' inodes and b's device's ifindex.
. /scenarios/lib.sh

veth_pair a b 10.97.0.1 10.97.0.2
ip netns exec a iptables -t raw -A OUTPUT -p icmp -j MARK --set-mark "$MARK"
ls -iL /var/run/netns/a | awk '{print $1}' >netns-a.txt
ls -iL /var/run/netns/b | awk '{print $1}' >netns-b.txt
ip -n b -o link show vb | cut -d: -f1 >ifindex-b.txt
ip netns exec a ping -c 1 -W 2 10.97.0.2 >/dev/null 2>&1 # neighbours first

if ipft_start trace -r '^(ip_output|ip_rcv|icmp_rcv)$' --track-skb \
    --output-meta --output-tuple --output-stack --output-pcap details.pcapng; then
    ip netns exec a ping -c 3 -i 0.2 -W 2 10.97.0.2 >ping-marked.txt 2>&1
    tracer_stop INT
fi
