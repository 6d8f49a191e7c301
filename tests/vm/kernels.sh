#!/usr/bin/env bash
# Fetch and unpack a Debian cloud kernel for the kernel lab.
#
#   tests/vm/kernels.sh fetch <5.10|6.1|6.12>
#
# Produces, in ${IPFT_CACHE:-$HOME/.cache/ipft}/kernels/<ver>/:
#   vmlinuz              bootable bzImage
#   vmlinux              ELF image decompressed from the bzImage (carries .BTF)
#   btf/vmlinux          raw BTF, same format as /sys/kernel/btf/vmlinux
#   btf/<module>         raw split BTF of the modules the scenarios load
#   lib/modules/<rel>/   the package's module tree, modules.dep generated
#   release              the kernel release string (uname -r in the guest)
#   package              the Debian package name and version that was used
# and prints that directory on stdout. A complete cache is reused as is.
set -euo pipefail

# Modules whose split BTF we keep next to vmlinux: the ones the scenarios load.
BTF_MODULES=(veth x_tables ip_tables iptable_raw iptable_filter xt_mark)

die() { echo "kernels.sh: $*" >&2; exit 2; }
log() { echo "kernels.sh: $*" >&2; }

# apt_ VER cache|get ARGS...: apt-cache / apt-get for kernel series VER.
# 5.10 comes from bullseye-security, which a bookworm machine does not list:
# it gets an apt configuration of its own under the cache (sources, lists,
# state), pointed at the security archive the machine already uses, so the
# machine's own apt sources and lists are never touched.
apt_() {
    local ver=$1 tool=apt-$2; shift 2
    if [ "$ver" != 5.10 ]; then "$tool" "$@"; return; fi
    local dir=${IPFT_CACHE:-$HOME/.cache/ipft}/apt-bullseye
    "$tool" -o Dir::Etc::sourcelist="$dir/sources.list" -o Dir::Etc::sourceparts=/nonexistent \
        -o Dir::State::Lists="$dir/lists" -o Dir::State::status=/dev/null \
        -o Dir::Cache="$dir/cache" "$@"
}

# The private apt lists of bullseye-security, made (or refreshed when a day
# old) under a lock of their own: two kernel fetches may share them.
bullseye_lists() {
    local dir=${IPFT_CACHE:-$HOME/.cache/ipft}/apt-bullseye uri
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    (
        flock -w 600 8 || die "timed out waiting for the bullseye apt lists"
        if [ -n "$(find "$dir/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null)" ]; then
            exit 0
        fi
        # The security archive's address, as the machine's apt knows it.
        uri=$(apt-cache policy 2>/dev/null | awk '$3 ~ /-security\// {print $2; exit}')
        [ -n "$uri" ] || die "no Debian security archive in the machine's apt sources (needed for 5.10)"
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-bullseye-security-automatic.gpg] $uri bullseye-security main" \
            >"$dir/sources.list"
        log "apt-get update of bullseye-security (private lists in $dir)"
        apt_ 5.10 get update -qq >/dev/null || die "apt-get update of bullseye-security failed"
    ) 8>"$dir/.lock"
}

# Newest package name for a kernel series, resolved at run time because Debian
# bumps the ABI number (6.1.0-NN) and the 6.12 version with each point release.
resolve_package() {
    local ver=$1 re
    case "$ver" in
        5.10) re='^linux-image-5\.10\.0-[0-9]+-cloud-amd64(-unsigned)?$'; bullseye_lists || exit 2 ;;
        6.1)  re='^linux-image-6\.1\.0-[0-9]+-cloud-amd64(-unsigned)?$' ;;
        6.12) re='^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64(-unsigned)?$' ;;
        *)    die "unknown kernel series '$ver' (want 5.10, 6.1 or 6.12)" ;;
    esac
    local names
    names=$(apt_ "$ver" cache search --names-only "$re" | awk '{print $1}' | sort -V -r)
    if [ -z "$names" ] && [ "$ver" != 5.10 ]; then
        log "no package for $ver in the apt lists; running apt-get update"
        apt-get update -qq >/dev/null || die "apt-get update failed"
        names=$(apt-cache search --names-only "$re" | awk '{print $1}' | sort -V -r)
    fi
    # Old ABIs stay listed (dbg packages keep them alive) without a candidate:
    # take the newest name that apt can actually download. Prefer -unsigned (it
    # has the same image and module tree without the signature wrapping).
    local n base=""
    for n in $names; do
        base=${n%-unsigned}
        for cand in "$base-unsigned" "$base"; do
            # (capture first: grep -q closing the pipe early trips pipefail)
            if [ -n "$(apt_ "$ver" cache madison "$cand" 2>/dev/null)" ]; then
                echo "$cand"; return 0
            fi
        done
    done
    die "no downloadable linux-image package for $ver"
}

# Extract the ELF vmlinux from a bzImage: scan for each compressor's magic and
# try to decompress from there (what scripts/extract-vmlinux does in the kernel).
extract_vmlinux() {
    local img=$1 out=$2 tmp off
    tmp=$(mktemp -d)
    # magic (grep -P pattern, no NUL: grep cannot match it) and decompressor.
    # Debian's 6.1 and 6.12 cloud kernels are LZ4 (legacy frame format).
    local -a formats=(
        '\x02\x21\x4c\x18|lz4 -dcq'
        '\xfd7zXZ|xz -dc'
        '\x28\xb5\x2f\xfd|zstd -dcq'
        '\x1f\x8b\x08|gzip -dc'
    )
    local f magic cmd
    for f in "${formats[@]}"; do
        magic=${f%%|*}; cmd=${f#*|}
        for off in $(LC_ALL=C grep -obUaP "$magic" "$img" | cut -d: -f1); do
            tail -c +"$((off + 1))" "$img" | $cmd >"$tmp/v" 2>/dev/null || true
            if [ -s "$tmp/v" ] && [ "$(head -c 4 "$tmp/v" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
                mv "$tmp/v" "$out"; rm -rf "$tmp"; return 0
            fi
        done
    done
    rm -rf "$tmp"
    return 1
}

# Raw BTF of an ELF file's .BTF section (split BTF for a module).
dump_btf() {
    local elf=$1 out=$2
    if objcopy --dump-section .BTF="$out" "$elf" /dev/null 2>/dev/null \
        || objcopy -O binary --only-section=.BTF "$elf" "$out" 2>/dev/null; then
        [ -s "$out" ] && return 0
    fi
    rm -f "$out"
    return 1
}

# Build the cache entry for $ver in a private staging directory, then rename
# it into place: readers only ever see a complete entry, and concurrent
# fetches of one kernel (two cargo tests, the lab) serialise on a lock and
# the later ones reuse what the first one built.
fetch() {
    local ver=$1
    local base=${IPFT_CACHE:-$HOME/.cache/ipft}/kernels
    local cache=$base/$ver
    if [ -f "$cache/.complete" ]; then
        echo "$cache"; return 0
    fi
    for tool in apt-cache apt-get depmod dpkg-deb objcopy readelf lz4 xz zstd gzip flock; do
        command -v "$tool" >/dev/null || die "missing tool: $tool"
    done
    mkdir -p "$base" || die "cannot create $base"
    exec 9>"$base/.$ver.lock" || die "cannot open lock $base/.$ver.lock"
    flock -w "${IPFT_FETCH_LOCK_TIMEOUT:-1800}" 9 || die "timed out waiting for another fetch of $ver"
    if [ -f "$cache/.complete" ]; then
        echo "$cache"; return 0
    fi
    local stage
    stage=$(mktemp -d "$base/.$ver.stage.XXXXXX") || die "cannot create a staging directory in $base"
    # shellcheck disable=SC2064  # expand now: the trap must remove this stage
    trap "rm -rf '$stage'" EXIT
    build_entry "$ver" "$stage"
    touch "$stage/.complete"
    # An incomplete entry left by an older layout or a killed run goes first;
    # rename(2) of a directory onto a free name is atomic.
    rm -rf "$cache"
    mv -T "$stage" "$cache" || die "cannot move $stage to $cache"
    trap - EXIT
    echo "$cache"
}

build_entry() {
    local ver=$1 cache=$2
    local pkg
    pkg=$(resolve_package "$ver")
    log "using $pkg ($(apt_ "$ver" cache policy "$pkg" | awk '/Candidate:/{print $2}'))"

    local work=$cache/.work
    mkdir -p "$work"
    # apt-get download writes into the current directory; the _apt sandbox user
    # cannot write into root's cache, so allow the unsandboxed download.
    # The archive can list a package whose file it no longer serves (seen for
    # 5.10's -unsigned): fall back to the signed twin, same image and modules.
    local p got=""
    for p in "$pkg" "${pkg%-unsigned}"; do
        if (cd "$work" && apt_ "$ver" get download -qq -o APT::Sandbox::User=root "$p" >&2); then
            got=$p; break
        fi
        log "apt-get download $p failed"
    done
    [ -n "$got" ] || die "could not download $pkg"
    pkg=$got
    dpkg-deb -x "$work"/*.deb "$work/root"

    local img rel
    img=$(ls "$work"/root/boot/vmlinuz-* | head -1)
    rel=${img##*/vmlinuz-}
    [ -d "$work/root/lib/modules/$rel" ] || die "package has no lib/modules/$rel"

    mv "$img" "$cache/vmlinuz"
    cp "$work/root/boot/config-$rel" "$cache/config" 2>/dev/null || true
    mkdir -p "$cache/lib/modules"
    mv "$work/root/lib/modules/$rel" "$cache/lib/modules/$rel"
    echo "$rel" >"$cache/release"
    # The package leaves modules.dep to its postinst: generate it here so the
    # initramfs builder can load modules in dependency order.
    depmod -b "$cache" "$rel" || die "depmod failed"
    echo "$pkg $(dpkg-deb -f "$work"/*.deb Version)" >"$cache/package"

    extract_vmlinux "$cache/vmlinuz" "$cache/vmlinux" || die "no ELF payload found in vmlinuz"
    # (no `| grep -q`: it closes the pipe early and pipefail reports readelf's SIGPIPE)
    [[ $(readelf -S "$cache/vmlinux") == *" .BTF "* ]] || die "vmlinux has no .BTF section"
    mkdir -p "$cache/btf"
    dump_btf "$cache/vmlinux" "$cache/btf/vmlinux" || die "could not dump vmlinux BTF"
    echo "$rel" >"$cache/btf/release"

    local m ko
    for m in "${BTF_MODULES[@]}"; do
        ko=$(find "$cache/lib/modules/$rel" -name "$m.ko*" | head -1)
        if [ -z "$ko" ]; then log "module $m not found (built in?), no split BTF"; continue; fi
        case "$ko" in
            *.ko.xz)  xz -dc "$ko" >"$work/$m.ko" ;;
            *.ko.zst) zstd -dcq "$ko" >"$work/$m.ko" ;;
            *.ko.gz)  gzip -dc "$ko" >"$work/$m.ko" ;;
            *)        cp "$ko" "$work/$m.ko" ;;
        esac
        # Module BTF came with 5.11: older kernels have none.
        dump_btf "$work/$m.ko" "$cache/btf/$m" || log "module $m has no .BTF (kernel without module BTF)"
    done
    rm -rf "$work"
}

case "${1:-}" in
    fetch) [ $# -eq 2 ] || die "usage: kernels.sh fetch <5.10|6.1|6.12>"; fetch "$2" ;;
    *)     die "usage: kernels.sh fetch <5.10|6.1|6.12>" ;;
esac
