#!/usr/bin/env bash
# The release artifacts: scripts/package builds a .deb and a tarball; each
# holds ipft, ipft-gen and the static ip tracer, with man pages and
# completions, and the tracer runs from the unpacked tree.
set -euo pipefail
cd "$(dirname "$0")/.."
pass=0 fail=0
check() { # name command...
    local name=$1; shift
    if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "package: FAIL $name" >&2; fi
}
out=$(scripts/package)
deb=$(grep '\.deb$' <<<"$out") tar=$(grep '\.tar\.gz$' <<<"$out")
x=$(mktemp -d)
trap 'rm -rf "$x"' EXIT
dpkg-deb -x "$deb" "$x/deb"
mkdir "$x/tar" && tar -C "$x/tar" -xzf "$tar"
for t in deb tar; do
    r=$x/$t/usr
    check "$t: ipft runs" "$r/bin/ipft" --version
    check "$t: ipft is static" sh -c "file '$r/bin/ipft' | grep -q static"
    check "$t: ipft-gen runs" "$r/bin/ipft-gen" --version
    check "$t: the ip tracer names its kernels" sh -c "'$r/bin/ipft-ip' --version | grep -q 'kernel 6.12'"
    check "$t: the ip tracer is static" sh -c "file '$r/bin/ipft-ip' | grep -q static"
    check "$t: man pages" test -s "$r/share/man/man1/ipft.1.gz" -a -s "$r/share/man/man1/ipft-gen.1.gz"
    check "$t: bash completions" test -s "$r/share/bash-completion/completions/ipft" -a -s "$r/share/bash-completion/completions/ipft-gen"
    check "$t: manifest" jq -e '.kernels | length == 2' "$r/share/doc/ipft/manifest-ip.json"
done
check "deb: control" sh -c "dpkg-deb -f '$deb' Package | grep -qx ipft"
echo "package: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
