#!/usr/bin/env bash
# gso: with the gso extension every event carries ext {len, gso_size,
# gso_segs, gso_type}; the marked TCP stream shows GSO super-packets
# (gso_segs > 1) at each traced transmit function, with an MSS-sized
# gso_size that fits len, gso_segs segments filling len, and tcpv4 set.
. "$(dirname "$0")/lib.sh"

tracer_ran trace
events_valid trace
f=$DIR/trace.json
grep -qx 'sent 262144 bytes' "$DIR/send.txt" 2>/dev/null || fail "TCP sender failed: $(excerpt "$DIR/send.txt")"
grep -qx 'received 262144 bytes' "$DIR/recv.txt" 2>/dev/null || fail "TCP sink failed: $(excerpt "$DIR/recv.txt")"

marked=$(awk '/MARK/{print $1; exit}' "$DIR/iptables-raw.txt" 2>/dev/null)
[ "${marked:-0}" -ge 1 ] || fail "no TCP segment was marked: $(excerpt "$DIR/scenario.log") $(excerpt "$DIR/iptables-raw.txt")"
total=$(jq -s length "$f")
[ "$total" -gt 0 ] || fail "no events for the marked stream ($marked packets marked)" "stderr: $(excerpt "$DIR/trace.stderr")"
noext=$(jq -c -s 'map(select((.ext | type) != "object"
        or (.ext.len | type) != "number" or (.ext.gso_size | type) != "number"
        or (.ext.gso_segs | type) != "number" or (.ext.gso_type | type) != "string"))' "$f")
[ "$(jq length <<<"$noext")" -eq 0 ] || fail "$(jq length <<<"$noext") of $total events lack ext {len, gso_size, gso_segs, gso_type (flags)}, e.g. $(jq -c '.[0]' <<<"$noext")"

gso=$(jq -c -s 'map(select(.ext.gso_segs > 1))' "$f")
n=$(jq length <<<"$gso")
[ "$n" -gt 0 ] || fail "no event with gso_segs > 1 among $total: $(jq -r -s 'map("\(.function) len \(.ext.len) segs \(.ext.gso_segs)") | unique | .[:8] | join("; ")' "$f")"

# An MSS for MTU 1500 (at most 1460); the segments fill len less the headers
# (40 to 134 bytes: IPv4 + TCP with options, plus Ethernet from the device on).
bad=$(jq -c 'map(select(.ext as $e | ($e.gso_size > 0 and $e.gso_size <= 1460 and $e.gso_size < $e.len
        and ($e.gso_segs - 1) * $e.gso_size < $e.len - 40 and $e.gso_segs * $e.gso_size >= $e.len - 134
        and ($e.gso_type | split("|") | index("tcpv4") != null)) | not))' <<<"$gso")
[ "$(jq length <<<"$bad")" -eq 0 ] || fail "$(jq length <<<"$bad") of $n GSO events are implausible (gso_size an MSS < len, segments fill len, tcpv4), e.g. $(jq -c '.[0] | {function, ext}' <<<"$bad")"

want="ip_finish_output2 __dev_queue_xmit dev_hard_start_xmit"
[ "$KVER" = 5.10 ] || want="$want veth_xmit"  # veth.ko has BTF from 5.11 on
missing=""
for fn in $want; do
    jq -e --arg fn "$fn" 'any(.[]; .function == $fn)' <<<"$gso" >/dev/null || missing="$missing $fn"
done
[ -z "$missing" ] || fail "no GSO event at:$missing; GSO events by function: $(jq -r 'group_by(.function) | map("\(.[0].function) \(length)") | join(", ")' <<<"$gso")"

jq -r --argjson total "$total" '"\(length) GSO events of \($total) at \(map(.function) | unique | join(" ")):"
    + " gso_size \(map(.ext.gso_size) | unique | map(tostring) | join(","))"
    + ", gso_segs \(map(.ext.gso_segs) | min)-\(map(.ext.gso_segs) | max)"
    + ", gso_type \(map(.ext.gso_type) | unique | join(","))"' <<<"$gso"
