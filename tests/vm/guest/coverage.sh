# Scenario coverage: profile tcp, every left-out and failed probe listed
# (-v). The host check holds the lists against the kernel's BTF: nothing a
# backend of this kernel reaches may be left out.
. /scenarios/lib.sh

if ipft_start trace -p tcp -v; then
    tracer_stop INT
fi
