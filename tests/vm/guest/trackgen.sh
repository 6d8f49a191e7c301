# Scenario trackgen: the track scenario with the tracer that ipft-gen built
# on the host (--profile ip -b all, as gen): the clone's events are the ip
# profile's raw socket functions.
IPFT=/usr/bin/ipft-ip
TRACK_RE='^(icmp_rcv|ip_rcv|ip_output|raw_.*)$'
. /scenarios/track.sh
