# Helpers sourced by the guest scenarios (busybox sh, run by /init in
# /results/<scenario>). Scenarios do not use `set -e`: they record what
# happened (files in the current directory) and the host judges; a failing
# step must not skip the teardown or the evidence of the steps after it.
set -u

# Debian's busybox sh runs its own applets before searching PATH
# (FEATURE_SH_STANDALONE): call the real iproute2 and iptables explicitly.
ip() { /usr/sbin/ip "$@"; }
iptables() { /usr/sbin/iptables "$@"; }

IPFT=${IPFT:-/usr/bin/ipft}
BACKEND=${BACKEND:-kprobe}
MARK=0xdeadbeef
# Seconds to wait for the ready file, and for the exit after a signal. TCG
# runs 10-50x slower than hardware; the bench attaches ~1600 functions.
READY_WAIT=${READY_WAIT:-120}
STOP_WAIT=${STOP_WAIT:-45}

uptime_ms() { awk '{printf "%d\n", $1 * 1000}' /proc/uptime; }

# ns_lo NAME: a fresh namespace with only loopback, up.
ns_lo() {
    ip netns add "$1"
    ip -n "$1" link set lo up
}

# veth_pair NS1 NS2 ADDR1 ADDR2: two namespaces joined by a veth pair.
veth_pair() {
    ns_lo "$1"; ns_lo "$2"
    ip link add "v$1" netns "$1" type veth peer name "v$2" netns "$2"
    ip -n "$1" addr add "$3/24" dev "v$1"
    ip -n "$2" addr add "$4/24" dev "v$2"
    ip -n "$1" link set "v$1" up
    ip -n "$2" link set "v$2" up
}

# tracer_start NAME CMD...: start a tracer (ipft or ipftrace2) in the
# background, stdout and stderr to NAME.stdout and NAME.stderr, and wait
# until it is ready: the file $READY_FILE where that is set, else its
# "Trace ready" line (polled every 0.05 s, as is the exit in tracer_stop:
# 0.2 s steps blurred stops of 0.6 s). Records the command (NAME.cmd)
# and the attach time in ms (NAME.attach_ms); tracer_stop stops it. Returns
# 1 if it exits or is not ready in time (then it is killed).
tracer_start() {
    TRACER_NAME=$1; shift
    echo "$*" >"$TRACER_NAME.cmd"
    t0=$(uptime_ms)
    "$@" >"$TRACER_NAME.stdout" 2>"$TRACER_NAME.stderr" &
    TRACER_PID=$!
    echo "$TRACER_PID" >>/tmp/lab.pids
    n=0
    until tracer_ready; do
        if ! kill -0 "$TRACER_PID" 2>/dev/null; then
            wait "$TRACER_PID"; echo $? >"$TRACER_NAME.rc"
            echo "exited before ready" >"$TRACER_NAME.notready"
            return 1
        fi
        n=$((n + 1))
        if [ $n -ge $((READY_WAIT * 20)) ]; then
            echo "not ready after $READY_WAIT s" >"$TRACER_NAME.notready"
            kill -9 "$TRACER_PID"
            return 1
        fi
        sleep 0.05
    done
    echo $(($(uptime_ms) - t0)) >"$TRACER_NAME.attach_ms"
}

tracer_ready() {
    if [ -n "$READY_FILE" ]; then
        [ -e "$READY_FILE" ]
    else
        grep -q 'Trace ready' "$TRACER_NAME.stdout" "$TRACER_NAME.stderr" 2>/dev/null
    fi
}
READY_FILE=

# ipft_start NAME ARGS...: tracer_start for ipft with JSON output to
# NAME.json, ready when it creates its ready file.
ipft_start() {
    TRACER_NAME=$1; shift
    READY_FILE=/tmp/ready.$TRACER_NAME
    rm -f "$READY_FILE"
    rc=0
    tracer_start "$TRACER_NAME" "$IPFT" -m "$MARK" -b "$BACKEND" -o json \
        --output-file "$TRACER_NAME.json" --ready-file "$READY_FILE" "$@" || rc=1
    READY_FILE=
    return $rc
}

# tracer_stop [SIGNAL]: stop the tracer started last (default SIGINT), wait for
# it and record its exit code (NAME.rc) and the detach time (NAME.detach_ms).
tracer_stop() {
    # Give the consumer a moment to drain the ring buffer of the last events.
    sleep 0.5
    t0=$(uptime_ms)
    kill -"${1:-INT}" "$TRACER_PID" 2>/dev/null
    n=0
    while kill -0 "$TRACER_PID" 2>/dev/null && [ $n -lt $((STOP_WAIT * 20)) ]; do sleep 0.05; n=$((n + 1)); done
    echo $(($(uptime_ms) - t0)) >"$TRACER_NAME.detach_ms"
    if kill -0 "$TRACER_PID" 2>/dev/null; then
        echo "still running $STOP_WAIT s after SIG${1:-INT}" >"$TRACER_NAME.hung"
        kill -9 "$TRACER_PID"
    fi
    wait "$TRACER_PID"; echo $? >"$TRACER_NAME.rc"
}
