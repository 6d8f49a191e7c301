#!/usr/bin/env bash
# drop: each of the 2 dropped pings ends in the kernel's drop function, whose
# event names the reason NETFILTER_DROP.
. "$(dirname "$0")/lib.sh"

tracer_ran trace
events_valid trace
fn=$(drop_function)
grep -qE '^[1-9]' <(awk '/DROP/{print $1}' "$DIR/iptables-filter.txt") || fail "the DROP rule matched nothing"
last=$(jq -r -s 'group_by(.packet_id)[] | sort_by(.timestamp) | map(select(.is_return | not)) | last
    | "\(.function) \(.drop_reason // "-")"' "$DIR/trace.json")
total=$(grep -c . <<<"$last" || true)
ok=$(grep -cE "^$fn [A-Z_]*NETFILTER_DROP\$" <<<"$last" || true)
if [ "$total" -eq 2 ] && [ "$ok" -eq 2 ]; then
    echo "2 packets end in $fn, drop_reason $(awk 'NR==1{print $2}' <<<"$last")"
    exit 0
fi
fail "want 2 packets ending in '$fn NETFILTER_DROP', got last events: $(summarize <<<"$last")" \
     "journeys: $(journeys trace '.' | summarize)"
