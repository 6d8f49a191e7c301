# Scenario compat: the tracer ipft-gen built on the host from the Debian 6.1
# kernel's BTF, run on this (other) kernel: it checks each compiled probe
# against the running BTF, reports it, and passes the ping scenario.
IPFT=/usr/bin/ipft-ip61
. /scenarios/ping.sh
