# Scenario fgraph: -t function_graph (fentry+fexit, kprobe+kretprobe,
# kprobe-multi entry+return) on the marked loopback ping.
. /scenarios/lib.sh

ns_lo mark
ip netns exec mark iptables -t raw -A OUTPUT -p icmp -j MARK --set-mark "$MARK"

if ipft_start trace -t function_graph -r '^(ip_|icmp_)'; then
    ip netns exec mark ping -c 3 -i 0.2 -W 2 127.0.0.1 >ping-marked.txt 2>&1
    tracer_stop INT
fi
