#!/usr/bin/env bash
# details: the 3 marked requests, each through ip_output in a (no device
# yet: the socket's namespace, a's; the mark, 84 bytes) and ip_rcv,
# icmp_rcv in b (device vb, b's namespace, the mark scrubbed); the tuple
# icmp 10.97.0.1 > 10.97.0.2 on every event; a symbolized stack per event
# with the probed function (or, for fentry, its caller) on top; and a pcapng
# file that capinfos and tshark read: 3 Ethernet-less IP records whose
# comments list each journey.
. "$(dirname "$0")/lib.sh"

tracer_ran trace
events_valid trace
f=$DIR/trace.json
grep -q '3 packets received' "$DIR/ping-marked.txt" || fail "ping failed: $(excerpt "$DIR/ping-marked.txt")"
got=$(journeys trace '.')
n=$(count_lines "$got" "ip_output ip_rcv icmp_rcv")
[ "$n" -eq 3 ] && [ "$(grep -c . <<<"$got")" -eq 3 ] \
    || fail "want 3 x [ip_output ip_rcv icmp_rcv], got $(summarize <<<"$got")"

ns_a=$(cat "$DIR/netns-a.txt") ns_b=$(cat "$DIR/netns-b.txt") if_b=$(cat "$DIR/ifindex-b.txt")
bad=$(jq -c -s --argjson ns "$ns_a" 'map(select(.function == "ip_output"
        and (.ifname != null or .ifindex != 0 or .netns != $ns or .mark != 3735928559
             or .len != 84 or .protocol != "IPv4")))[0] // empty' "$f")
[ -z "$bad" ] || fail "ip_output meta wrong (want no device, netns $ns_a, the mark, 84 bytes): $bad"
bad=$(jq -c -s --argjson ns "$ns_b" --argjson ifb "$if_b" 'map(select(.function != "ip_output"
        and (.ifname != "vb" or .ifindex != $ifb or .netns != $ns or .mark != 0
             or .len != (if .function == "icmp_rcv" then 64 else 84 end)
             or .protocol != "IPv4")))[0] // empty' "$f")
[ -z "$bad" ] || fail "b's meta wrong (want vb, ifindex $if_b, netns $ns_b, mark 0; 84 bytes, 64 past the IP header): $bad"
bad=$(jq -c -s 'map(select(.tuple != {"proto":"icmp","saddr":"10.97.0.1","daddr":"10.97.0.2","sport":0,"dport":0}))[0] // empty' "$f")
[ -z "$bad" ] || fail "tuple wrong: $bad"
bad=$(jq -c -s 'map(select((.stack | length) < 3 or (.stack[0] | startswith("bpf_"))
        or (.stack | all(contains("+0x")) | not)))[0] // empty' "$f")
[ -z "$bad" ] || fail "stack missing or not symbolized: $bad"
# The probed function on top (kprobes), or within the first two frames
# (fentry: its trampoline returns into it).
bad=$(jq -c -s 'map(select(.function as $fn | .stack[:2] | any(startswith($fn + "+")) | not))[0] // empty' "$f")
[ -z "$bad" ] || fail "stack does not start at the probed function: $bad"

p=$DIR/details.pcapng
[ -s "$p" ] || fail "no details.pcapng"
info=$(capinfos -c "$p" 2>&1) || fail "capinfos: $info"
grep -q 'Number of packets: *3$' <<<"$info" || fail "capinfos: want 3 packets: $info"
rows=$(tshark -r "$p" -T fields -E separator=/t -e frame.interface_id -e frame.len \
    -e ip.src -e ip.dst -e icmp.type -e frame.comment 2>"$DIR/tshark.err") \
    || fail "tshark failed: $(excerpt "$DIR/tshark.err")"
want=$(printf '1\t84\t10.97.0.1\t10.97.0.2\t8\n%.0s' 1 2 3)
[ "$(cut -f1-5 <<<"$rows")" = "$want" ] || fail "pcapng records: want 3 x raw IP 84 bytes 10.97.0.1 > 10.97.0.2 echo request" "got: $rows"
comments=$(cut -f6 <<<"$rows" | sed 's/\\n/\n/g' | awk '/^ipft packet/ {if (j) print j; j=""; next} {j = j (j ? " " : "") $2} END {print j}')
[ "$comments" = "$(printf 'ip_output ip_rcv icmp_rcv\n%.0s' 1 2 3)" ] \
    || fail "pcapng comments: want 3 x [ip_output ip_rcv icmp_rcv], got: $comments"
echo "3 x [ip_output ip_rcv icmp_rcv]: meta (a: netns $ns_a; b: vb/$if_b, netns $ns_b), tuple, stacks; pcapng: 3 raw-IP records with journeys"
