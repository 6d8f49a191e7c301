# Scenario veth: a module function (veth_xmit, split BTF of veth.ko) on a veth
# pair between two namespaces. Only the requests leaving namespace a are
# marked; the mark is scrubbed when the packet changes namespace.
. /scenarios/lib.sh

veth_pair a b 10.99.0.1 10.99.0.2
ip netns exec a iptables -t raw -A OUTPUT -p icmp -j MARK --set-mark "$MARK"

if ipft_start trace -r '^veth_xmit$'; then
    ip netns exec a ping -c 3 -i 0.2 -W 2 10.99.0.2 >ping-marked.txt 2>&1
    tracer_stop INT
fi
