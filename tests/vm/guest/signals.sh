# Scenario signals: after SIGINT and after SIGTERM nothing of ipft stays in the
# kernel. bpftool's view is saved while the tracer runs (to prove that the
# check can see our programs) and after it exited.
. /scenarios/lib.sh

for sig in INT TERM; do
    if ipft_start "$sig" -r '^(ip_rcv|ip_output)$'; then
        bpftool -j prog show >"$sig.prog-during.json" 2>&1
        bpftool -j link show >"$sig.link-during.json" 2>&1
        ipft_stop "$sig"
    fi
    bpftool -j prog show >"$sig.prog-after.json" 2>&1
    bpftool -j link show >"$sig.link-after.json" 2>&1
done
