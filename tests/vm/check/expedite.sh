#!/usr/bin/env bash
# expedite: with 16 or more perf kprobes (kprobe rows, and auto where auto
# picks kprobes) the release ran expedited; on every row the knob is 0
# again after SIGINT and SIGTERM, and a lock file left by a killed holder
# is repaired (knob 0, file empty) by the next run, expedited or not; a
# knob raised by someone else stays 1, and IPFT_RCU_EXPEDITE=off is never
# expedited.
. "$(dirname "$0")/lib.sh"

[ "$(cat "$DIR/before.knob")" = 0 ] || fail "the knob was not 0 before the runs: $(excerpt "$DIR/before.knob")"
for n in int term repaired others off; do
    case $n in term) sig=TERM ;; *) sig=INT ;; esac
    tracer_ran "$n" "$sig"
    grep -q '^timing: detach' "$DIR/$n.stderr" || fail "$n: no detach timing: $(excerpt "$DIR/$n.stderr")"
done
# Perf kprobes attached, from the summary's "attached N (kprobe K, ...)".
kprobes=$(grep -o 'attached [0-9]* ([^)]*)' "$DIR/int.stderr" | grep -o 'kprobe [0-9]*' | awk '{print $2}' || true)
kprobes=${kprobes:-0}
case "$BACKEND:$KVER" in
    kprobe:* | auto:6.1 | auto:5.10)
        [ "$kprobes" -ge 16 ] || fail "only $kprobes perf kprobes attached: the row does not exercise the release"
        expect=yes ;;
    *) expect=no ;;
esac
for n in int term repaired; do
    knob=$(cat "$DIR/$n.knob")
    [ "$knob" = 0 ] || fail "$n: rcu_expedited is $knob after the exit"
    if grep -q 'RCU grace periods expedited' "$DIR/$n.stderr"; then got=yes; else got=no; fi
    [ "$got" = "$expect" ] || fail "$n: expedited=$got, expected $expect with $kprobes perf kprobes"
    case "$n:$expect" in
        repaired:* | *:yes) [ ! -s "$DIR/$n.lock" ] || fail "$n: lock file still holds $(excerpt "$DIR/$n.lock")" ;;
    esac
done
[ "$(cat "$DIR/others.knob")" = 1 ] || fail "others: a knob raised by someone else was changed to $(cat "$DIR/others.knob")"
for n in others off; do
    ! grep -q 'RCU grace periods expedited' "$DIR/$n.stderr" || fail "$n: expedited"
done
[ "$(cat "$DIR/off.knob")" = 0 ] || fail "off: knob $(cat "$DIR/off.knob")"
echo "$kprobes perf kprobes; expedited: $expect; knob 0 after INT, TERM and a killed holder's lock file"
