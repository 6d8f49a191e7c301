# Scenario warm: the discovery snapshot across starts in one boot. A cold
# start (fresh snapshot file) traces a marked ping with -r '^(ip_|icmp_)',
# learning its kprobe-multi functions' addresses from the kernel; a warm
# start with the same selection traces it again with the addresses the
# snapshot kept; a wider selection learns those of its new functions, and
# its next start finds them all in the snapshot.
. /scenarios/lib.sh

export IPFT_SNAPSHOT=/tmp/warm-snapshot.json
rm -f "$IPFT_SNAPSHOT"
ns_lo mark
ip netns exec mark iptables -t raw -A OUTPUT -p icmp -j MARK --set-mark "$MARK"

# run NAME REGEX: one start, 3 marked pings, stop.
run() {
    if ipft_start "$1" -r "$2" --timings; then
        ip netns exec mark ping -c 3 -i 0.2 -W 2 127.0.0.1 >"$1.ping" 2>&1
        tracer_stop INT
    fi
    # The snapshot is written off the way to "Trace ready!": let it land.
    sleep 1
    ls -l "$IPFT_SNAPSHOT" >"$1.snapshot" 2>&1
}
run cold '^(ip_|icmp_)'
run warm '^(ip_|icmp_)'
# Only kprobe-multi attaches by address: elsewhere the wider selection
# would only cost time (fentry before 6.0 loads an object per function).
case "$BACKEND" in
    kprobe-multi | auto)
        if grep -q fprobe /proc/kallsyms; then
            run wider '^(ip_|icmp_|udp_|raw_)'
            run wider-warm '^(ip_|icmp_|udp_|raw_)'
        fi
        ;;
esac

