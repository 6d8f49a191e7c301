#!/usr/bin/env bash
# track: with --track-skb every event of a clone (ping's raw socket gets a
# clone of each packet) is in the packet of the skb it was cloned from: a
# "clone" event on the source names it, the clone's own events carry
# "clone_of"; without the flag no event has either key. Over veth, each tracked request shows
# b's ip_rcv and icmp_rcv after a's ip_output though b never marks it.
. "$(dirname "$0")/lib.sh"
# The function the clone's events show (trackgen: a generated tracer of
# profile ip sees the clone in the raw socket's functions).
CLONE_RE=${CLONE_RE:-'^skb_copy_datagram_iovec$'}

for n in tracked plain tracked-veth; do
    tracer_ran "$n"
    events_valid "$n"
done
grep -q '3 packets received' "$DIR/ping-lo.txt" || fail "loopback ping failed: $(excerpt "$DIR/ping-lo.txt")"
grep -q '3 packets received' "$DIR/ping-veth.txt" || fail "veth ping failed: $(excerpt "$DIR/ping-veth.txt")"

t=$DIR/tracked.json
clones=$(jq -s '[.[] | select(.clone)] | length' "$t")
if [ "$KVER" = 5.10 ] && [ "$BACKEND" != fentry ]; then
    # No kprobe cookies: the clone kretprobes cannot find their entries.
    grep -q 'following clones with kprobes needs BPF cookies' "$DIR/tracked.stderr" \
        || fail "5.10 $BACKEND: want the clone probes refused for lack of cookies: $(excerpt "$DIR/tracked.stderr")"
    [ "$clones" -eq 0 ] || fail "5.10 $BACKEND: $clones clone events without clone probes"
    clones=skip
fi
if [ "$clones" != skip ]; then
[ "$clones" -ge 3 ] || fail "want >= 3 events naming a clone (one per echo reply at least), got $clones"
# Every clone event's address shows up in the same packet, as clone_of the source.
bad=$(jq -s -c --arg re "$CLONE_RE" '
    . as $all
    | [.[] | select(.clone) | . as $c
       | select([$all[] | select(.packet_id == $c.packet_id and .skb == $c.clone
                                  and .clone_of == $c.skb and (.function | test($re)))] | length == 0)
       | {packet_id, skb, clone}]' "$t")
[ "$bad" = "[]" ] || fail "clones without events matching $CLONE_RE in their source's packet: $bad"
strays=$(jq -s --arg re "$CLONE_RE" '[.[] | select((.function | test($re)) and (.clone_of | not))] | length' "$t")
[ "$strays" -eq 0 ] || fail "$strays events matching $CLONE_RE outside their source's packet"
fi

p=$DIR/plain.json
keys=$(jq -s '[.[] | select(.clone or .clone_of)] | length' "$p")
[ "$keys" -eq 0 ] || fail "without --track-skb, $keys events name clones"
alone=$(jq -r -s --arg re "$CLONE_RE" 'group_by(.packet_id)[] | map(.function) | select(any(.[]; test($re)) and all(.[]; test("^(ip_rcv|icmp_rcv)$") | not)) | join(" ")' "$p" | grep -c . || true)
[ "$alone" -ge 3 ] || fail "without --track-skb want the clones ($CLONE_RE) in packets of their own, got $alone"

got=$(journeys tracked-veth '^(ip_output|ip_rcv|icmp_rcv)$')
n=$(count_lines "$got" "ip_output ip_rcv icmp_rcv")
[ "$n" -ge 3 ] || fail "want 3 x [ip_output ip_rcv icmp_rcv] across the veth, got $(summarize <<<"$got")"
echo "clones joined to their source's packet: $clones; 3 requests followed into b"
