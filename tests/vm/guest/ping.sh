# Scenario ping: loopback ping marked in the raw table, traced with
# -r '^(ip_|icmp_)'. First an unmarked ping (namespace without the rule) that
# must produce no events, then 3 marked echo requests. Also run by gen.sh with
# IPFT pointing at the generated tracer.
. /scenarios/lib.sh

ns_lo plain
ns_lo mark
ip netns exec mark iptables -t raw -A OUTPUT -p icmp -j MARK --set-mark "$MARK"

if ipft_start trace -r '^(ip_|icmp_)'; then
    ip netns exec plain ping -c 2 -i 0.2 -W 2 127.0.0.1 >ping-unmarked.txt 2>&1
    ip netns exec mark ping -c 3 -i 0.2 -W 2 127.0.0.1 >ping-marked.txt 2>&1
    tracer_stop INT
fi
