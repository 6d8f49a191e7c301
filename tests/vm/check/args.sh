#!/usr/bin/env bash
# args: ip_finish_output (skb = argument 2) is traced; __udp4_lib_lookup
# (skb = argument 8 of 9) is traced by the backends that reach it and refused
# with the policy's exact reason by the others.
. "$(dirname "$0")/lib.sh"

tracer_ran trace
events_valid trace
got=$(journeys trace '.')
n2=$(grep -c '^ip_finish_output' <<<"$got" || true)
# ICMP request + reply, the UDP datagram and its ICMP port unreachable.
[ "$n2" -ge 4 ] || fail "want >= 4 packets through ip_finish_output, got: $(summarize <<<"$got")"
n9=$(count_lines "$got" "ip_finish_output __udp4_lib_lookup")
# skb in argument 8 of 9: fentry reaches it where the trampoline sees 9
# arguments (6.12, where auto picks it for this function); kprobes never
# (registers 0..5), fentry on 6.1 neither (6 arguments). Each refusal names
# the function with exactly that reason.
case "$BACKEND:$KVER" in
    fentry:6.12 | auto:6.12) want=traced ;;
    fentry:*)    want="9 arguments: fentry sees 6 on this kernel" ;;
    *)           want="skb in argument 8: kprobes read registers 0..5" ;;
esac
if [ "$want" = traced ]; then
    [ "$n9" -ge 1 ] || fail "__udp4_lib_lookup (skb arg 8) not traced with $BACKEND on $KVER" \
        "journeys: $(summarize <<<"$got")" "stderr: $(excerpt "$DIR/trace.stderr")"
    echo "arg 2 traced ($n2 packets), arg 8 traced ($n9 UDP datagrams)"
    exit 0
fi
[ "$n9" -eq 0 ] || fail "__udp4_lib_lookup traced with $BACKEND on $KVER, which cannot reach it"
line=$(grep -F "left out ($want): " "$DIR/trace.stderr" || true)
grep -qw __udp4_lib_lookup <<<"$line" || fail "__udp4_lib_lookup not left out with '$want'" \
    "stderr: $(excerpt "$DIR/trace.stderr")"
echo "arg 2 traced ($n2 packets), arg 8 refused: $want"
