# Scenario gen: the ping scenario with the tracer that ipft-gen built on the
# host from this kernel's vmlinux (--profile ip -b all), run with -b BACKEND.
IPFT=/usr/bin/ipft-ip
. /scenarios/ping.sh
