#!/usr/bin/env bash
# veth: veth_xmit (module veth, split BTF) sees the 3 marked requests.
. "$(dirname "$0")/lib.sh"

tracer_ran trace
events_valid trace
grep -q '3 packets received' "$DIR/ping-marked.txt" || fail "veth ping failed: $(excerpt "$DIR/ping-marked.txt")"
got=$(journeys trace '.')
n=$(count_lines "$got" "veth_xmit")
total=$(grep -c . <<<"$got" || true)
[ "$n" -eq 3 ] && [ "$total" -eq 3 ] || fail "want 3 x [veth_xmit], got $(summarize <<<"$got")"
mods=$(jq -r -s 'map(select(.function == "veth_xmit") | .module) | unique | map(tostring) | join(",")' "$DIR/trace.json")
[ "$mods" = veth ] || fail "veth_xmit events have module '$mods', want 'veth'"
echo "3 x veth_xmit, module veth"
