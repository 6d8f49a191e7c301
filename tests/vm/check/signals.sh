#!/usr/bin/env bash
# signals: while the tracer runs bpftool shows ipft_* programs and links to
# them; after SIGINT, SIGTERM, SIGHUP (exit 0) and SIGKILL (exit 137, with
# function_graph) none of them is left, and tracefs has no kprobe events.
. "$(dirname "$0")/lib.sh"

msg=()
for sig in INT TERM HUP KILL; do
    tracer_ran "$sig" "$sig"
    for f in prog-during link-during perf-during prog-after link-after perf-after; do json_file "$DIR/$sig.$f.json"; done
    ids=$(jq -r '.[] | select((.name // "") | startswith("ipft_")) | .id' "$DIR/$sig.prog-during.json" | paste -sd, || true)
    [ -n "$ids" ] || fail "SIG$sig: no ipft_* program visible while tracing: $(excerpt "$DIR/$sig.prog-during.json")"
    left=$(jq -r '.[] | select((.name // "") | startswith("ipft_")) | "\(.id):\(.name)"' "$DIR/$sig.prog-after.json" | paste -sd, || true)
    [ -z "$left" ] || fail "SIG$sig: programs left after exit: $left"
    # BPF links and perf-event attachments (kprobes before 5.15) alike.
    links=$(jq -r -s --arg ids "$ids" '($ids | split(",") | map(tonumber)) as $ours
        | add | .[] | select(.prog_id as $p | $ours | index($p)) | "\(.id // .fd):\(.type // .prog_type // "perf")"' \
        "$DIR/$sig.link-after.json" "$DIR/$sig.perf-after.json" | paste -sd, || true)
    [ -z "$links" ] || fail "SIG$sig: links left after exit: $links"
    nlinks=$(jq -r -s --arg ids "$ids" '($ids | split(",") | map(tonumber)) as $ours
        | add | [.[] | select(.prog_id as $p | $ours | index($p))] | length' \
        "$DIR/$sig.link-during.json" "$DIR/$sig.perf-during.json")
    [ "$nlinks" -gt 0 ] || fail "SIG$sig: no link to our programs while tracing"
    [ ! -s "$DIR/$sig.kprobe_events" ] || fail "SIG$sig: tracefs kprobe_events not empty: $(excerpt "$DIR/$sig.kprobe_events")"
    msg+=("SIG$sig: $(tr ',' '\n' <<<"$ids" | wc -l) progs/$nlinks links gone, exit $(cat "$DIR/$sig.rc")")
done
echo "${msg[*]}"
