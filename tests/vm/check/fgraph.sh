#!/usr/bin/env bash
# fgraph: with -t function_graph every return closes the innermost open entry
# of its packet (a return with nothing open is a failure too), the entries
# still follow the ping paths, and a leaf (ip_rcv_core) is seen entering and
# returning.
. "$(dirname "$0")/lib.sh"

# Before Linux 5.15 kprobe links carry no cookie, and a kretprobe cannot
# tell which entry it returns from: -b kprobe refuses function_graph there
# with the reason, in one line, exit 2 (auto takes fentry/fexit instead).
if [ "$BACKEND:$KVER" = kprobe:5.10 ]; then
    want="needs BPF cookies (Linux 5.15)"
    [ "$(cat "$DIR/trace.rc" 2>/dev/null)" = 2 ] && grep -qF "$want" "$DIR/trace.stderr" \
        || fail "want exit 2 with '$want'" "rc $(cat "$DIR/trace.rc" 2>/dev/null), stderr: $(excerpt "$DIR/trace.stderr")"
    echo "refused as it should be: $(grep -m1 -F "$want" "$DIR/trace.stderr")"
    exit 0
fi
tracer_ran trace
events_valid trace

nesting=$(jq -r -s 'group_by(.packet_id)[] | sort_by(.timestamp)
    | reduce .[] as $e ({stack: [], pairs: 0, err: null, id: .[0].packet_id};
        if .err != null then .
        elif ($e.is_return | not) then .stack += [$e.function]
        elif (.stack | length) == 0 then .err = "return of \($e.function) with no entry open"
        elif .stack[-1] == $e.function then .stack |= .[:-1] | .pairs += 1
        else .err = "return of \($e.function) while \(.stack[-1]) is the innermost open entry" end)
    | "\(.id) \(.pairs) \(.err // "ok")"' "$DIR/trace.json")
bad=$(awk '$3 != "ok"' <<<"$nesting")
[ -z "$bad" ] || fail "nesting broken in packets: $(head -3 <<<"$bad" | paste -sd';')"
nreturns=$(jq -s 'map(select(.is_return)) | length' "$DIR/trace.json")
[ "$nreturns" -gt 0 ] || fail "no return events at all"
leaf=$(jq -r -s 'group_by(.packet_id)[] | sort_by(.timestamp)
    | map(select(.function | test("^(ip_|icmp_)")) | "\(if .is_return then "<" else ">" end)\(.function)")
    | join(" ")' "$DIR/trace.json" | grep -c '>ip_rcv_core <ip_rcv_core' || true)
[ "$leaf" -eq 6 ] || fail "want ip_rcv_core entry+return in all 6 packets, got $leaf" \
    "packets: $(jq -r -s 'group_by(.packet_id)[] | sort_by(.timestamp) | map("\(if .is_return then "<" else ">" end)\(.function)") | join(" ")' "$DIR/trace.json" | head -2 | paste -sd'|')"

got=$(journeys trace '^(ip_|icmp_)')
req=$(count_lines "$got" "$ECHO_REQUEST")
rep=$(count_lines "$got" "$ECHO_REPLY")
[ "$req" -eq 3 ] && [ "$rep" -eq 3 ] || fail "entries: want 3 requests + 3 replies, got $(summarize <<<"$got")"
echo "6 packets nest correctly, $nreturns returns"
