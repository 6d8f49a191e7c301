#!/usr/bin/env bash
# gen: the fleet tracer (one binary for 6.1 and 6.12) took the object for
# this kernel by its BTF, did not need the compatibility check, and passes
# the ping check.
. "$(dirname "$0")/lib.sh"

line=$(grep -m1 '^object for ' "$DIR/trace.stderr" || true)
case "$line" in
    "object for $KVER"[.-]*": its BTF is the running kernel's") ;;
    *) fail "the fleet tracer did not pick this kernel's object: ${line:-no object line}" "stderr: $(excerpt "$DIR/trace.stderr")" ;;
esac
grep -q '^compat: ' "$DIR/trace.stderr" && fail "compatibility check ran although the BTF matched"
verdict=$("$(dirname "$0")/ping.sh" "$@") || fail "$verdict"
echo "$line | $verdict"
