#!/usr/bin/env bash
# ping: 3 marked echo requests and their 3 replies, each with the exact
# ip_/icmp_ path, and nothing else (the unmarked ping must not show up).
. "$(dirname "$0")/lib.sh"
name=${SCENARIO_TRACER:-trace}

tracer_ran "$name"
events_valid "$name"
grep -q '3 packets received' "$DIR/ping-marked.txt" || fail "marked ping failed: $(excerpt "$DIR/ping-marked.txt")"
grep -q '2 packets received' "$DIR/ping-unmarked.txt" || fail "unmarked ping failed: $(excerpt "$DIR/ping-unmarked.txt")"

three_pings "$name"
echo "3 requests + 3 replies on the exact path, unmarked ping silent (attach $(cat "$DIR/$name.attach_ms") ms)"
