# Traffic overhead benchmark (tests/vm/run --traffic), one boot per kernel:
# the same traffic over a veth pair (a ping flood: mping, each request sent
# once the last reply is in, as ping -f does; then a TCP stream) with
#   none       no tracer,
#   floor      ipft --bench-empty: programs that return at once, on the same
#              probes with the same backend (the probe mechanism's cost),
#   unmarked   ipft with nothing marked (floor and unmarked run twice each,
#              alternating: floor2, unmarked2),
#   marked     ipft with a's requests marked (SO_MARK) and its TCP stream
#              (raw OUTPUT),
#   ipftrace2-unmarked, ipftrace2-marked   when /usr/bin/ipftrace2 is here,
# every skb function traced (--profile all; ipftrace2's default), default
# backend, text output to a file: the consumer decodes and writes on the
# same vCPU as the traffic. Each run leaves NAME.flood_ms, NAME.stream_ms,
# NAME.events, NAME.attach_ms, NAME.detach_ms and NAME.stderr.
READY_WAIT=600 STOP_WAIT=600
. /scenarios/lib.sh

COUNT=${TRAFFIC_PINGS:-10000}
BYTES=${TRAFFIC_BYTES:-16777216}

veth_pair a b 10.96.0.1 10.96.0.2
ip netns exec a ping -c 1 -W 2 10.96.0.2 >/dev/null 2>&1 # neighbours first

# traffic NAME: the flood and the stream, timed.
traffic() {
    t0=$(uptime_ms)
    ip netns exec a mping "$FLOOD_MARK" "$COUNT" 10.96.0.2 0 >"$1.ping.txt" 2>&1
    echo $(($(uptime_ms) - t0)) >"$1.flood_ms"
    ip netns exec b timeout 600 tcpstream -l 5002 >"$1.recv.txt" 2>&1 &
    sink=$!
    echo "$sink" >>/tmp/lab.pids
    t0=$(uptime_ms)
    ip netns exec a timeout 600 tcpstream 10.96.0.2 5002 "$BYTES" >"$1.send.txt" 2>&1
    wait "$sink"
    echo $(($(uptime_ms) - t0)) >"$1.stream_ms"
}

# run NAME CMD...: start a tracer writing text to NAME.stdout, wait for its
# "Trace ready", run the traffic, stop it with SIGINT; then count the
# events it wrote (lines that are neither separators nor headers) and drop
# the output (it would not fit through the serial console).
run() {
    name=$1; shift
    tracer_start "$name" "$@" || return 1
    traffic "$name"
    sleep 0.5
    tracer_stop INT
    grep -v -e '^===' -e '^Timestamp' -e '^Trace ready' -e '^$' "$name.stdout" | wc -l >"$name.events"
    rm -f "$name.stdout"
}

# mark -A|-D: mark everything a sends from here on, or stop.
mark() {
    ip netns exec a iptables -t raw "$1" OUTPUT -p tcp -j MARK --set-mark "$MARK"
    if [ "$1" = -A ]; then FLOOD_MARK=$MARK; else FLOOD_MARK=0; fi
}
FLOOD_MARK=0

traffic none
# The floor and unmarked runs twice, alternating: their ratio is the goal
# (<= 1.1), and the spread of each pair says what this boot's noise is.
run floor "$IPFT" -m "$MARK" --profile all --bench-empty
run unmarked "$IPFT" -m "$MARK" --profile all
run floor2 "$IPFT" -m "$MARK" --profile all --bench-empty
run unmarked2 "$IPFT" -m "$MARK" --profile all
mark -A
run marked "$IPFT" -m "$MARK" --profile all
mark -D
if [ -x /usr/bin/ipftrace2 ]; then
    run ipftrace2-unmarked ipftrace2 -m "$MARK"
    mark -A
    run ipftrace2-marked ipftrace2 -m "$MARK"
    mark -D
fi
traffic none2
