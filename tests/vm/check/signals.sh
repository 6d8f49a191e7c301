#!/usr/bin/env bash
# signals: while the tracer runs bpftool shows ipft_* programs and links to
# them; after SIGINT / SIGTERM none of them is left.
. "$(dirname "$0")/lib.sh"

msg=()
for sig in INT TERM; do
    tracer_ran "$sig" "$sig"
    ids=$(jq -r '.[] | select((.name // "") | startswith("ipft_")) | .id' "$DIR/$sig.prog-during.json" 2>/dev/null | paste -sd, || true)
    [ -n "$ids" ] || fail "SIG$sig: no ipft_* program visible while tracing: $(excerpt "$DIR/$sig.prog-during.json")"
    left=$(jq -r '.[] | select((.name // "") | startswith("ipft_")) | "\(.id):\(.name)"' "$DIR/$sig.prog-after.json" | paste -sd, || true)
    [ -z "$left" ] || fail "SIG$sig: programs left after exit: $left"
    links=$(jq -r --arg ids "$ids" '($ids | split(",") | map(tonumber)) as $ours
        | .[] | select(.prog_id as $p | $ours | index($p)) | "\(.id):\(.type)"' "$DIR/$sig.link-after.json" | paste -sd, || true)
    [ -z "$links" ] || fail "SIG$sig: links left after exit: $links"
    nlinks=$(jq -r --arg ids "$ids" '($ids | split(",") | map(tonumber)) as $ours
        | [.[] | select(.prog_id as $p | $ours | index($p))] | length' "$DIR/$sig.link-during.json")
    msg+=("SIG$sig: $(tr ',' '\n' <<<"$ids" | wc -l) progs/$nlinks links gone, exit $(cat "$DIR/$sig.rc")")
done
echo "${msg[0]}; ${msg[1]}"
