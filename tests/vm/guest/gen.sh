# Scenario gen: the ping scenario with the one tracer that ipft-gen built on
# the host from both the 6.1 and the 6.12 kernels' BTF (--profile ip -b all),
# run with -b BACKEND: it picks the object whose BTF is this kernel's.
IPFT=/usr/bin/ipft-ip
. /scenarios/ping.sh
