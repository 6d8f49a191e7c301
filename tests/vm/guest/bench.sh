# Attach benchmark (tests/vm/run --bench): attach and detach time of the
# whole `all` profile with the default (auto) and each function backend, in
# one boot so that the ratios are comparable. --timings adds ipft's own per-stage split.
READY_WAIT=400 STOP_WAIT=300
. /scenarios/lib.sh

for b in auto kprobe-multi kprobe fentry; do
    BACKEND=$b
    if ipft_start "$b" --profile all --timings; then
        bpftool -j link show >"$b.link-during.json" 2>&1
        ipft_stop INT
    fi
done
