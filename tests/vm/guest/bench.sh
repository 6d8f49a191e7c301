# Start/stop benchmark (tests/vm/run --bench), one boot per kernel so that
# the ratios are comparable: launch to ready and SIGINT to exit, for a
# 50-200 function selection and for every skb probe (profile all), with
# ipft's default (auto) and, when /usr/bin/ipftrace2 is in the image, with
# ipftrace2's default in the same boot; on kernels with kprobe-multi also
# each of ipft's function backends for profile all, elsewhere (perf kprobes)
# ipft again without expedited grace periods. ipft starts cold (its
# discovery read from the kernel) and warm (from this boot's snapshot). Each
# run leaves NAME.attach_ms and NAME.detach_ms (and NAME.stderr).
READY_WAIT=400 STOP_WAIT=300
. /scenarios/lib.sh

SELECTION='^(ip_|icmp_|tcp_)'

# ipftrace2_run NAME ARGS...: ipftrace2 measured as ipft is (ready = its
# "Trace ready!" line).
ipftrace2_run() {
    name=$1; shift
    tracer_start "$name" ipftrace2 -m "$MARK" "$@" && tracer_stop INT
}

ipft_run() { # NAME BACKEND ARGS...
    name=$1 BACKEND=$2; shift 2
    if ipft_start "$name" "$@" --timings; then
        bpftool -j link show >"$name.link-during.json" 2>&1
        tracer_stop INT
    fi
}

have2=0; [ -x /usr/bin/ipftrace2 ] && have2=1
# Cold starts read the kernel (IPFT_SNAPSHOT=off, and the first start with a
# snapshot, which saves one); warm starts read the snapshot the cold all-ipft
# run left in /run/ipft. Alternate the tools so that neither always runs on a
# warmer kernel.
[ $have2 = 1 ] && ipftrace2_run sel-ipftrace2 -r "$SELECTION"
export IPFT_SNAPSHOT=off
ipft_run sel-ipft-cold auto -r "$SELECTION"
unset IPFT_SNAPSHOT
[ $have2 = 1 ] && ipftrace2_run all-ipftrace2
rm -f /run/ipft/discovery.json
ipft_run all-ipft-cold auto --profile all
ipft_run sel-ipft auto -r "$SELECTION"
ipft_run all-ipft auto --profile all
if [ -d /sys/bus/event_source/devices/kprobe ] && grep -q fprobe /proc/kallsyms; then
    for b in kprobe-multi kprobe fentry; do ipft_run "all-$b" "$b" --profile all; done
else
    # Perf kprobes by default: the same runs without expedited grace
    # periods for their release (README: rcu_expedited).
    export IPFT_RCU_EXPEDITE=off
    ipft_run sel-ipft-plain auto -r "$SELECTION"
    ipft_run all-ipft-plain auto --profile all
    unset IPFT_RCU_EXPEDITE
fi
