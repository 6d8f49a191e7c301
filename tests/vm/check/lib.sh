# Sourced by the host-side checks: check/<scenario>.sh DIR KERNEL BACKEND.
# DIR holds what the guest scenario left in /results/<scenario>. A check
# prints a one-line verdict (more lines on failure: the evidence) and exits
# 0 for PASS, non-zero for FAIL.
set -euo pipefail

DIR=$1 KVER=$2 BACKEND=$3

fail() { printf '%s\n' "$@"; exit 1; }

# Up to 600 bytes of a file, on one line, for failure messages.
excerpt() { [ -f "$1" ] && head -c 600 "$1" | tr '\n' ' ' || echo "(no $(basename "$1"))"; }

# tracer_ran NAME [SIG]: the tracer NAME became ready, and exited by itself
# after SIG (default INT) with 0: ipft handles INT, TERM and HUP and exits 0
# (a 130 or 143 would mean it died of the signal). KILL: 137.
tracer_ran() {
    local n=$1 sig=${2:-INT} rc
    [ -f "$DIR/$n.cmd" ] || fail "tracer $n never started; scenario.log: $(excerpt "$DIR/scenario.log")"
    if [ -f "$DIR/$n.notready" ]; then
        fail "tracer $(cat "$DIR/$n.notready") (exit code $(cat "$DIR/$n.rc" 2>/dev/null || echo ?))" \
             "command: $(cat "$DIR/$n.cmd")" "stderr: $(excerpt "$DIR/$n.stderr")"
    fi
    [ -f "$DIR/$n.rc" ] || fail "tracer $n did not finish (scenario killed by the guest timeout?)"
    [ -f "$DIR/$n.hung" ] && fail "tracer $(cat "$DIR/$n.hung")" "stderr: $(excerpt "$DIR/$n.stderr")"
    rc=$(cat "$DIR/$n.rc")
    case "$sig:$rc" in
        INT:0 | TERM:0 | HUP:0 | KILL:137) ;;
        *) fail "tracer exit code $rc after SIG$sig" "stderr: $(excerpt "$DIR/$n.stderr")" ;;
    esac
}

# json_file FILE: FILE exists and is JSON (bpftool's output, say); a failed
# bpftool is a failed check, never "nothing attached".
json_file() {
    [ -s "$1" ] && jq -e . "$1" >/dev/null 2>&1 || fail "$(basename "$1") is not JSON: $(excerpt "$1")"
}

# events_valid NAME: NAME.json is JSON lines with the contract's fields.
events_valid() {
    local f=$DIR/$1.json
    [ -f "$f" ] || fail "no output file $1.json; stderr: $(excerpt "$DIR/$1.stderr")"
    jq -s . "$f" >/dev/null 2>&1 || fail "$1.json is not JSON lines: $(excerpt "$f")"
    jq -e -s 'all(.[]; type == "object"
        and (.packet_id | type) == "number"
        and (.skb | type) == "string" and (.skb | startswith("0x"))
        and (.timestamp | type) == "number" and (.cpu | type) == "number"
        and (.function | type) == "string" and (.is_return | type) == "boolean"
        and (.module == null or (.module | type) == "string"))' "$f" >/dev/null \
        || fail "events miss contract fields, e.g.: $(jq -c -s 'map(select((.packet_id|type)!="number" or (.function|type)!="string" or (.is_return|type)!="boolean" or (.skb|type)!="string"))[0]' "$f")"
}

# journeys NAME REGEX: one line per packet (events grouped by packet_id, in
# timestamp order): its entry events' functions matching REGEX, space
# separated. Packets with no matching entry are left out.
journeys() {
    jq -r -s --arg re "$2" 'group_by(.packet_id)[] | sort_by(.timestamp)
        | [.[] | select(.is_return | not) | .function | select(test($re))]
        | select(length > 0) | join(" ")' "$DIR/$1.json"
}

# summarize: "N x <journey>" for each distinct input line, "; "-joined.
summarize() {
    local s
    s=$(sort | uniq -c | sed -E 's/^ *([0-9]+) /\1 x [/; s/$/]/' | paste -sd ';' | sed 's/;/; /g')
    echo "${s:-no journeys}"
}

# count_lines TEXT LINE: how many lines of TEXT are exactly LINE.
count_lines() { grep -cxF -- "$2" <<<"$1" || true; }

# The kernel's drop function for this kernel series.
drop_function() {
    case "$KVER" in
        5.10) echo kfree_skb ;;       # drop reasons arrived in 5.17
        6.1)  echo kfree_skb_reason ;;
        *)    echo sk_skb_reason_drop ;;
    esac
}

# drop_reason NAME: the reason the drop function shows for NAME ("-" where
# the kernel has no drop reasons).
drop_reason() {
    case "$KVER" in 5.10) echo - ;; *) echo "$1" ;; esac
}

# Entry path of a marked loopback echo request up to ICMP delivery (see
# /work/shared/anchor-facts.md: nothing before ip_output, the mark is set in
# the raw OUTPUT hook, after ip_local_out).
ICMP_PATH="ip_output ip_finish_output ip_finish_output2 ip_rcv ip_rcv_core ip_local_deliver ip_local_deliver_finish ip_protocol_deliver_rcu icmp_rcv"
# Debian's 5.10 build inlines icmp_reply into icmp_echo (no BTF, no symbol).
case "${KVER:-}" in
    5.10) ECHO_REQUEST="$ICMP_PATH icmp_echo" ;;
    *)    ECHO_REQUEST="$ICMP_PATH icmp_echo icmp_reply" ;;
esac
ECHO_REPLY="$ICMP_PATH"

# three_pings NAME [REGEX]: NAME's journeys through functions matching REGEX
# (default ip_/icmp_) are exactly 3 echo requests and their 3 replies on the
# exact path, nothing else.
three_pings() {
    local got req rep total
    got=$(journeys "$1" "${2:-^(ip_|icmp_)}")
    req=$(count_lines "$got" "$ECHO_REQUEST")
    rep=$(count_lines "$got" "$ECHO_REPLY")
    total=$(grep -c . <<<"$got" || true)
    [ "$req" -eq 3 ] && [ "$rep" -eq 3 ] && [ "$total" -eq 6 ] \
        || fail "$1: want 3 x [$ECHO_REQUEST] + 3 x [$ECHO_REPLY], nothing else" \
                "got $total journeys: $(summarize <<<"$got")"
}

# dropped_packets NAME: for every packet that went through the drop
# function, "<drop reason> <last entry>"; and one line "lonely N" with the
# number of packets made of nothing but a release or a tracepoint (each is a
# journey cut in two; where kfree_skb is itself the drop function, a packet
# dropped before any other traced function is only that, and whole).
dropped_packets() {
    local fn
    fn=$(drop_function)
    jq -r -s --arg fn "$fn" 'group_by(.packet_id)[] | sort_by(.timestamp)
        | map(select(.is_return | not))
        | select(any(.function == $fn))
        | "\(map(select(.function == $fn))[0].drop_reason // "-") \(last.function)"' "$DIR/$1.json"
    jq -r -s --arg fn "$fn" '[group_by(.packet_id)[] | map(.function) | unique
        | select(all(. == "kfree_skbmem" or (. == "kfree_skb" and $fn != "kfree_skb")))]
        | "lonely \(length)"' "$DIR/$1.json"
}
