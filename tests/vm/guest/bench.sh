# Attach benchmark (tests/vm/run --bench): attach and detach time of the
# whole `all` profile with each function backend, in one boot so the ratios
# are comparable. Uses the generated tracer /usr/bin/ipft-all when the host
# built one, else ipft without a function filter.
. /scenarios/lib.sh

[ -x /usr/bin/ipft-all ] && IPFT=/usr/bin/ipft-all
echo "$IPFT" >tracer
for b in kprobe kprobe-multi fentry; do
    BACKEND=$b
    if ipft_start "$b"; then
        bpftool -j link show >"$b.link-during.json" 2>&1
        ipft_stop INT
    fi
done
