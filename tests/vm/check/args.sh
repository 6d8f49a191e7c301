#!/usr/bin/env bash
# args: ip_finish_output (skb = argument 2) is traced; __udp4_lib_lookup
# (skb = argument 9) is traced for the marked UDP datagram, or refused with a
# reason that names it.
. "$(dirname "$0")/lib.sh"

tracer_ran trace
events_valid trace
got=$(journeys trace '.')
n2=$(grep -c '^ip_finish_output' <<<"$got" || true)
# ICMP request + reply, the UDP datagram and its ICMP port unreachable.
[ "$n2" -ge 4 ] || fail "want >= 4 packets through ip_finish_output, got: $(summarize <<<"$got")"
n9=$(count_lines "$got" "ip_finish_output __udp4_lib_lookup")
if [ "$n9" -ge 1 ]; then
    echo "arg 2 traced ($n2 packets), arg 9 traced ($n9 UDP datagrams)"
    exit 0
fi
if grep -q '__udp4_lib_lookup' "$DIR/trace.stderr" && ! grep -q __udp4_lib_lookup <<<"$got"; then
    echo "arg 2 traced ($n2 packets), arg 9 refused: $(grep -m1 __udp4_lib_lookup "$DIR/trace.stderr")"
    exit 0
fi
fail "__udp4_lib_lookup (skb arg 9) neither traced nor refused" \
     "journeys: $(summarize <<<"$got")" "stderr: $(excerpt "$DIR/trace.stderr")" \
     "nslookup: $(excerpt "$DIR/nslookup.txt")"
