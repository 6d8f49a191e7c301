#!/usr/bin/env bash
# warm: a cold start and the warm starts after it see the same 3 requests
# and 3 replies on the exact path; with kprobe-multi, the warm start of the
# same selection attaches every link by address, the wider selection at
# least one by name, and its warm start again all by address.
. "$(dirname "$0")/lib.sh"

# links NAME: "<kprobe-multi links> <by address>" from --timings.
links() {
    sed -n 's/^links: kprobe-multi \([0-9]*\), by address \([0-9]*\)$/\1 \2/p' "$DIR/$1.stderr"
}

runs="cold warm"
[ -f "$DIR/wider.cmd" ] && runs="$runs wider wider-warm"
for n in $runs; do
    tracer_ran "$n"
    events_valid "$n"
    grep -q '3 packets received' "$DIR/$n.ping" || fail "$n: marked ping failed: $(excerpt "$DIR/$n.ping")"
    three_pings "$n"
    [ -n "$(links "$n")" ] || fail "$n: no 'links:' line in its --timings: $(excerpt "$DIR/$n.stderr")"
done
grep -q 'snapshot of this boot' "$DIR/cold.stderr" && fail "cold: started from a snapshot"
grep -q 'snapshot of this boot' "$DIR/warm.stderr" || fail "warm: did not start from the snapshot: $(excerpt "$DIR/warm.stderr")"

read -r cold_n cold_a <<<"$(links cold)"
read -r warm_n warm_a <<<"$(links warm)"
case "$BACKEND:$KVER" in
    kprobe-multi:* | auto:6.12)
        [ -f "$DIR/wider.cmd" ] || fail "the wider selection did not run (no fprobe in /proc/kallsyms?)"
        read -r wide_n wide_a <<<"$(links wider)"
        read -r ww_n ww_a <<<"$(links wider-warm)"
        [ "$cold_n" -gt 0 ] && [ "$cold_a" -eq 0 ] || fail "cold: want kprobe-multi links by name only, got $cold_n, $cold_a by address"
        [ "$warm_n" -eq "$cold_n" ] && [ "$warm_a" -eq "$warm_n" ] || fail "warm: want all $cold_n links by address, got $warm_n, $warm_a by address"
        [ "$wide_a" -lt "$wide_n" ] || fail "wider: want a link by name (new functions), got $wide_n, all by address"
        [ "$ww_n" -eq "$wide_n" ] && [ "$ww_a" -eq "$ww_n" ] || fail "wider-warm: want all $wide_n links by address, got $ww_n, $ww_a by address"
        echo "same journeys cold and warm; kprobe-multi links by address: cold 0/$cold_n, warm $warm_a/$warm_n, wider $wide_a/$wide_n, then $ww_a/$ww_n"
        ;;
    *)
        [ "$cold_n" -eq 0 ] && [ "$warm_n" -eq 0 ] || fail "no kprobe-multi here, got links $cold_n / $warm_n"
        echo "same journeys cold and warm (no kprobe-multi on $KVER $BACKEND)"
        ;;
esac
