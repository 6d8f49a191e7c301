#!/usr/bin/env bash
# coverage: with profile tcp, no function that this backend (auto: any
# backend of the kernel) reaches is left out. Functions with more than 6
# arguments are the case in point: kprobes reach them on every kernel (the
# skb in a register or, up to argument 11, on the stack), fentry before
# Linux 6.6 does not. Their list comes
# from the kernel's BTF on the host (ipft-gen list).
. "$(dirname "$0")/lib.sh"

tracer_ran trace
root=$(cd "$(dirname "$0")/../../.." && pwd)
kdir=$("$root/tests/vm/kernels.sh" fetch "$KVER")
gen=${IPFT_GEN:-$root/target/release/ipft-gen}
[ -x "$gen" ] || fail "no ipft-gen at $gen"
# What this backend reaches beyond 6 arguments: kprobes (and auto, which
# has them) the skb in arguments 0..11 whatever the count; fentry up to what
# its trampoline sees (6 before 6.6: nothing; 12 after).
case "$BACKEND:$KVER" in
    fentry:5.10 | fentry:6.1) sel='false' ;;
    fentry:*)    sel='.nargs > 6 and .nargs <= 12' ;;
    *)           sel='.nargs > 6 and .skb_positions[0] <= 11' ;;
esac
wide=$("$gen" list --btf "$kdir/btf/vmlinux" --profile tcp --json 2>/dev/null \
    | jq -r ".[] | select(.kind == \"function\" and ($sel)) | .name" | sort -u)
[ -n "$wide" ] || [ "$sel" = false ] || fail "profile tcp has no function with more than 6 arguments on $KVER"
summary=$(grep -m1 '^Total ' "$DIR/trace.stderr" || true)
[ -n "$summary" ] || fail "no summary line: $(excerpt "$DIR/trace.stderr")"
# Every left-out or failed name, one a line (-v: the lists are complete).
out=$(grep -E '^  (left out|failed) \(' "$DIR/trace.stderr" | sed -E 's/^  [a-z ]+\(.*\): [0-9]+ //' | tr ',' '\n' | sed 's/^ *//' | sort -u || true)
grep -q '(-v for all)' "$DIR/trace.stderr" && fail "lists are truncated despite -v"
missed=$(comm -12 <(echo "$wide") <(echo "$out") | paste -sd' ' || true)
[ -z "$missed" ] || fail "reachable functions with > 6 arguments left out or failed: $missed" "$summary"
n=$(grep -c . <<<"$wide" || true)
echo "$summary; $n reachable functions with > 6 arguments, none left out"
