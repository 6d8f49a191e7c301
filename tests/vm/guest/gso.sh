# Scenario gso: a 256 KiB TCP stream over a veth pair (TSO is on by default:
# veth offers NETIF_F_GSO_SOFTWARE), traced on the transmit path with the
# shipped gso extension (compiled on the host, /usr/share/ipft/gso.bpf.o).
# TCP builds super-packets of several MSS that stay whole down to veth_xmit.
# Only the stream's data direction is marked, in the raw OUTPUT hook, so
# nothing before ip_output carries the mark (not __tcp_transmit_skb).
. /scenarios/lib.sh

EXT=/usr/share/ipft/gso.bpf.o
ls -l "$EXT" >ext.txt 2>&1
veth_pair a b 10.99.0.1 10.99.0.2
ip -d -n a link show va >link-a.txt 2>&1
ip netns exec a iptables -t raw -A OUTPUT -p tcp --dport 5001 -j MARK --set-mark "$MARK"

if ipft_start trace -e "$EXT" -r '^(ip_finish_output2|__dev_queue_xmit|dev_hard_start_xmit|veth_xmit)$'; then
    ip netns exec b timeout 90 tcpstream -l 5001 >recv.txt 2>&1 &
    sink=$!
    echo "$sink" >>/tmp/lab.pids
    ip netns exec a timeout 90 tcpstream 10.99.0.2 5001 262144 >send.txt 2>&1
    wait "$sink"
    tracer_stop INT
fi
ip netns exec a iptables -t raw -L OUTPUT -v -x -n >iptables-raw.txt 2>&1
