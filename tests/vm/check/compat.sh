#!/usr/bin/env bash
# compat: the 6.1-built tracer on another kernel prints its compatibility
# report (it was generated for 6.1, the running kernel differs, every probe
# it attaches matched) and passes the ping check.
. "$(dirname "$0")/lib.sh"

line=$(grep -m1 '^compat: generated for 6\.1' "$DIR/trace.stderr" || true)
[ -n "$line" ] || fail "no compatibility report for the 6.1-built tracer" "stderr: $(excerpt "$DIR/trace.stderr")"
grep -qE 'running 6\.12\.' <<<"$line" || fail "report does not name the running kernel: $line"
verdict=$("$(dirname "$0")/ping.sh" "$@") || fail "$verdict"
echo "$line | $verdict"
