#!/usr/bin/env bash
# static: in an image without a dynamic loader or any library, ipft and the
# fleet tracer start, and each sees the ping's 3 requests and 3 replies on
# the exact path, nothing else.
. "$(dirname "$0")/lib.sh"

[ -f "$DIR/libs.txt" ] || fail "no library listing; scenario.log: $(excerpt "$DIR/scenario.log")"
[ ! -s "$DIR/libs.txt" ] || fail "the image is not library-free: $(paste -sd' ' "$DIR/libs.txt")"
seen=()
for t in ipft ipft-ip; do
    tracer_ran "$t"
    events_valid "$t"
    grep -q '3 packets received' "$DIR/ping-$t.txt" || fail "$t: ping failed: $(excerpt "$DIR/ping-$t.txt")"
    three_pings "$t"
    seen+=("$t $(cat "$DIR/$t.attach_ms") ms")
done
echo "no loader or libraries in the image; 3 requests + 3 replies traced by ${seen[*]}"
