#!/usr/bin/env bash
# Fetch and unpack a Debian cloud kernel for the kernel lab.
#
#   tests/vm/kernels.sh fetch <6.1|6.12>
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

# Newest package name for a kernel series, resolved at run time because Debian
# bumps the ABI number (6.1.0-NN) and the 6.12 version with each point release.
resolve_package() {
    local ver=$1 re
    case "$ver" in
        6.1)  re='^linux-image-6\.1\.0-[0-9]+-cloud-amd64(-unsigned)?$' ;;
        6.12) re='^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64(-unsigned)?$' ;;
        *)    die "unknown kernel series '$ver' (want 6.1 or 6.12)" ;;
    esac
    local names
    names=$(apt-cache search --names-only "$re" | awk '{print $1}' | sort -V -r)
    if [ -z "$names" ]; then
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
            if [ -n "$(apt-cache madison "$cand" 2>/dev/null)" ]; then
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
    objcopy --dump-section .BTF="$out" "$elf" /dev/null 2>/dev/null \
        || objcopy -O binary --only-section=.BTF "$elf" "$out"
    [ -s "$out" ]
}

fetch() {
    local ver=$1
    local cache=${IPFT_CACHE:-$HOME/.cache/ipft}/kernels/$ver
    if [ -f "$cache/.complete" ]; then
        echo "$cache"; return 0
    fi
    for tool in apt-cache apt-get depmod dpkg-deb objcopy readelf lz4 xz zstd gzip; do
        command -v "$tool" >/dev/null || die "missing tool: $tool"
    done

    local pkg
    pkg=$(resolve_package "$ver")
    log "using $pkg ($(apt-cache policy "$pkg" | awk '/Candidate:/{print $2}'))"

    rm -rf "$cache"; mkdir -p "$cache"
    local work; work=$(mktemp -d "$cache/.work.XXXX")
    # apt-get download writes into the current directory; the _apt sandbox user
    # cannot write into root's cache, so allow the unsandboxed download.
    (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >&2) \
        || die "apt-get download $pkg failed"
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
        dump_btf "$work/$m.ko" "$cache/btf/$m" || die "module $m has no .BTF"
    done

    rm -rf "$work"
    touch "$cache/.complete"
    echo "$cache"
}

case "${1:-}" in
    fetch) [ $# -eq 2 ] || die "usage: kernels.sh fetch <6.1|6.12>"; fetch "$2" ;;
    *)     die "usage: kernels.sh fetch <6.1|6.12>" ;;
esac
