#!/usr/bin/env bash
# pcap: with `icmp`, the 3 marked requests and 3 replies on the ping path and
# nothing of the marked TCP; with `tcp`, TCP journeys (tcp_v4_rcv) and no
# ICMP.
. "$(dirname "$0")/lib.sh"

for n in icmp tcp; do
    tracer_ran "$n"
    events_valid "$n"
done
grep -q '3 packets received' "$DIR/ping-icmp.txt" || fail "marked ping failed: $(excerpt "$DIR/ping-icmp.txt")"

three_pings icmp '^(ip_|icmp_|tcp_v4_)'

got=$(journeys tcp '^(ip_|icmp_|tcp_v4_)')
total=$(grep -c . <<<"$got" || true)
tcp=$(grep -c 'tcp_v4_rcv' <<<"$got" || true)
if [ "$total" -ge 2 ] && [ "$tcp" -ge 2 ] && ! grep -q 'icmp_' <<<"$got"; then
    echo "icmp: 3 requests + 3 replies only; tcp: $total journeys, $tcp through tcp_v4_rcv, no ICMP"
    exit 0
fi
fail "tcp: want >= 2 journeys through tcp_v4_rcv and none through icmp_" \
     "got $total journeys: $(summarize <<<"$got")"
