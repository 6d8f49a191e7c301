#!/usr/bin/env bash
# drop: each of the 2 dropped pings is one packet: it goes through the
# kernel's drop function with reason NETFILTER_DROP and ends where its
# memory is released (kfree_skbmem); no packet is a release on its own.
. "$(dirname "$0")/lib.sh"

tracer_ran trace
events_valid trace
fn=$(drop_function) why=$(drop_reason NETFILTER_DROP)
grep -qE '^[1-9]' <(awk '/DROP/{print $1}' "$DIR/iptables-filter.txt") || fail "the DROP rule matched nothing"
out=$(dropped_packets trace)
ok=$(grep -cE "^([A-Z_]*_)?$why kfree_skbmem\$" <<<"$out" || true)
total=$(grep -vc '^lonely' <<<"$out" || true)
if [ "$total" -eq 2 ] && [ "$ok" -eq 2 ] && grep -qx 'lonely 0' <<<"$out"; then
    echo "2 packets through $fn ($why), each ending in kfree_skbmem"
    exit 0
fi
fail "want 2 packets through '$fn $why' ending in kfree_skbmem and none alone, got: $(paste -sd';' <<<"$out")" \
     "journeys: $(journeys trace '.' | summarize)"
