# Scenario pcap: a pcap-filter expression, spliced into every program of the
# backend as eBPF. Marked echo requests and replies, and marked TCP SYNs to a
# closed port (answered by marked RSTs), over loopback: `icmp` keeps exactly
# the ping scenario's journeys, `tcp` only the TCP ones.
. /scenarios/lib.sh

ns_lo mark
ip netns exec mark iptables -t raw -A OUTPUT -p icmp -j MARK --set-mark "$MARK"
ip netns exec mark iptables -t raw -A OUTPUT -p tcp -j MARK --set-mark "$MARK"

traffic() {
    ip netns exec mark ping -c 3 -i 0.2 -W 2 127.0.0.1 >"ping-$1.txt" 2>&1
    for i in 1 2; do
        ip netns exec mark nc -w 1 127.0.0.1 9 </dev/null >/dev/null 2>&1
    done
}

# TCP's functions narrowed to tcp_v4_ (16 of ~110): on 5.10, fentry gives
# every function an object of its own with the filter spliced in, and the
# wider selection took 120 s to attach there.
for expr in icmp tcp; do
    if ipft_start "$expr" -r '^(ip_|icmp_|tcp_v4_)' "$expr"; then
        traffic "$expr"
        tracer_stop INT
    fi
done
