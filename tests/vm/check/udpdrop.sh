#!/usr/bin/env bash
# udpdrop: every marked datagram to the closed port is one packet: through
# the drop function with reason NO_SOCKET, ending in kfree_skbmem; no packet
# is a release on its own.
. "$(dirname "$0")/lib.sh"

tracer_ran trace
events_valid trace
fn=$(drop_function) why=$(drop_reason NO_SOCKET)
sent=$(awk '/MARK/{print $1; exit}' "$DIR/iptables-raw.txt")
[ "${sent:-0}" -ge 1 ] || fail "no UDP datagram was marked: $(excerpt "$DIR/iptables-raw.txt")"
out=$(dropped_packets trace)
total=$(grep -vc '^lonely' <<<"$out" || true)
ok=$(grep -cE "^([A-Z_]*_)?$why kfree_skbmem\$" <<<"$out" || true)
if [ "$total" -eq "$sent" ] && [ "$ok" -eq "$sent" ] && grep -qx 'lonely 0' <<<"$out"; then
    echo "$sent datagrams, each one packet through $fn ($why) ending in kfree_skbmem"
    exit 0
fi
fail "want $sent packets through '$fn $why' ending in kfree_skbmem and none alone, got: $(paste -sd';' <<<"$out")" \
     "journeys: $(journeys trace '.' | summarize)"
