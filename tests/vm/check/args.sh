#!/usr/bin/env bash
# args: ip_finish_output (skb = argument 2) is traced; __udp4_lib_lookup
# (skb = argument 8 of 9, on the stack) is traced by the backends that reach
# it (kprobes read stack arguments) and refused with the policy's exact reason
# by the others.
. "$(dirname "$0")/lib.sh"

tracer_ran trace
events_valid trace
got=$(journeys trace '.')
n2=$(grep -c '^ip_finish_output' <<<"$got" || true)
# ICMP request + reply, the UDP datagram and its ICMP port unreachable.
[ "$n2" -ge 4 ] || fail "want >= 4 packets through ip_finish_output, got: $(summarize <<<"$got")"
n9=$(count_lines "$got" "ip_finish_output __udp4_lib_lookup")
# skb in argument 8 of 9, on the stack: kprobes (and so auto) read it from
# there on every kernel, fentry where the trampoline sees 9 arguments (6.12);
# fentry before 6.6 refuses it with exactly that reason.
case "$BACKEND:$KVER" in
    fentry:5.10 | fentry:6.1) want="9 arguments: fentry sees 6 on this kernel" ;;
    *)           want=traced ;;
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
