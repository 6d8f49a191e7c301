#!/usr/bin/env bash
# warm: a cold start and the warm starts after it see the same 3 requests
# and 3 replies on the exact path; with kprobe-multi, every start attaches
# its links by address, the cold one and the wider selection learning the
# addresses they lack from the kernel, the warm ones from the snapshot.
. "$(dirname "$0")/lib.sh"

# links NAME: "<kprobe-multi links> <by address> <addresses learnt>" from
# --timings.
links() {
    sed -n 's/^links: kprobe-multi \([0-9]*\), by address \([0-9]*\); addresses learnt \([0-9]*\)$/\1 \2 \3/p' "$DIR/$1.stderr"
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

read -r cold_n cold_a cold_l <<<"$(links cold)"
read -r warm_n warm_a warm_l <<<"$(links warm)"
case "$BACKEND:$KVER" in
    kprobe-multi:* | auto:6.12)
        [ -f "$DIR/wider.cmd" ] || fail "the wider selection did not run (no fprobe in /proc/kallsyms?)"
        read -r wide_n wide_a wide_l <<<"$(links wider)"
        read -r ww_n ww_a ww_l <<<"$(links wider-warm)"
        # Every link goes by address: a start learns what it does not know
        # from the kernel first, and keeps it for the next.
        for r in "cold $cold_n $cold_a" "warm $warm_n $warm_a" "wider $wide_n $wide_a" "wider-warm $ww_n $ww_a"; do
            set -- $r
            [ "$2" -gt 0 ] && [ "$3" -eq "$2" ] || fail "$1: want every kprobe-multi link by address, got $3 of $2"
        done
        [ "$cold_l" -gt 0 ] || fail "cold: learnt no address"
        [ "$warm_l" -eq 0 ] || fail "warm: learnt $warm_l addresses, want all from the snapshot"
        [ "$wide_l" -gt 0 ] || fail "wider: learnt no address for its new functions"
        [ "$ww_l" -eq 0 ] || fail "wider-warm: learnt $ww_l addresses, want all from the snapshot"
        echo "same journeys cold and warm; every kprobe-multi link by address; addresses learnt: cold $cold_l, warm 0, wider $wide_l, then 0"
        ;;
    *)
        [ "$cold_n" -eq 0 ] && [ "$warm_n" -eq 0 ] || fail "no kprobe-multi here, got links $cold_n / $warm_n"
        echo "same journeys cold and warm (no kprobe-multi on $KVER $BACKEND)"
        ;;
esac
