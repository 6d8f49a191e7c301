# Scenario expedite: a stop that releases 16 or more perf kprobes raises
# /sys/kernel/rcu_expedited for the release and puts it back, on SIGINT and
# on SIGTERM; a lock file left by a holder that was killed makes the next
# run put back the value it holds; a knob someone else raised is left
# alone; IPFT_RCU_EXPEDITE=off leaves it alone. The knob and the lock file
# are saved after each run; --timings says whether the release was
# expedited.
. /scenarios/lib.sh

KNOB=/sys/kernel/rcu_expedited
LOCK=/run/ipft/rcu_expedited
SELECTION='^(icmp_|ip_rcv|ip_local)'

cat "$KNOB" >before.knob 2>&1
# run NAME SIGNAL
run() {
    if ipft_start "$1" -r "$SELECTION" --timings; then
        tracer_stop "$2"
    fi
    cat "$KNOB" >"$1.knob" 2>&1
    cat "$LOCK" >"$1.lock" 2>&1 || echo missing >"$1.lock"
}

run int INT
run term TERM
# A holder killed while the knob was up left the value to put back.
mkdir -p /run/ipft
echo 1 >"$KNOB"
echo 0 >"$LOCK"
run repaired INT
# Raised by someone else (no value in the lock file): not ours to lower.
echo 1 >"$KNOB"
: >"$LOCK"
run others INT
echo 0 >"$KNOB"
export IPFT_RCU_EXPEDITE=off
run off INT
unset IPFT_RCU_EXPEDITE
