# Scenario signals: after SIGINT, SIGTERM, SIGHUP and SIGKILL nothing of ipft
# stays in the kernel. SIGKILL runs with -t function_graph, so kretprobe /
# fexit links are part of it. Before Linux 5.15 a kprobe is a perf event
# holding the program, not a BPF link: `bpftool perf` lists those. bpftool's view is saved while the tracer runs
# (to prove that the check can see our programs) and after it exited, and so
# is tracefs' kprobe_events: ipft never creates legacy tracefs kprobes.
. /scenarios/lib.sh

for sig in INT TERM HUP KILL; do
    graph=""
    # (Not with kprobes before 5.15: no cookies, no function_graph; fgraph
    # checks that refusal.)
    [ "$sig" = KILL ] && ! { [ "$BACKEND" = kprobe ] && uname -r | grep -q '^5\.10\.'; } && graph="-t function_graph"
    # shellcheck disable=SC2086  # $graph is two words or none
    if ipft_start "$sig" -r '^(ip_rcv|ip_output)$' $graph; then
        bpftool -j prog show >"$sig.prog-during.json" 2>&1
        bpftool -j link show >"$sig.link-during.json" 2>&1
        bpftool -j perf show >"$sig.perf-during.json" 2>&1
        tracer_stop "$sig"
    fi
    # The kernel releases a killed process's links with its fds.
    sleep 1
    bpftool -j prog show >"$sig.prog-after.json" 2>&1
    bpftool -j link show >"$sig.link-after.json" 2>&1
    bpftool -j perf show >"$sig.perf-after.json" 2>&1
    cat /sys/kernel/tracing/kprobe_events >"$sig.kprobe_events" 2>&1 || echo "unreadable" >"$sig.kprobe_events"
done
