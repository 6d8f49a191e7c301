#!/usr/bin/env bash
# Build the kernel lab's initramfs for one kernel.
#
#   tests/vm/mkinitramfs.sh --kernel-dir DIR --out FILE [--static] [--bin PATH[:NAME]]...
#                           [--share PATH]...
#
# DIR is a directory made by kernels.sh (lib/modules/<release>, release).
# Contents: busybox-static (applets installed as symlinks), the host's bpftool,
# iproute2 `ip` (busybox's ip has no netns support), iptables-legacy with its
# extension libraries, every --bin (installed as /usr/bin/NAME), all shared
# libraries those need (ldd, paths kept, loader included), every --share file
# as /usr/share/ipft/<basename> (compiled extensions), a static TCP sender and
# sink (tools/tcpstream.c), the marking pinger (tools/mping.c), the kernel modules the scenarios use
# (decompressed, listed in load order in /etc/lab/modules), tests/vm/guest/*
# as /scenarios/*, and tests/vm/guest/init as /init.
# --static: busybox, the --bin files (which must be static), a static
# marking pinger (tools/mping.c) and the scripts, nothing else: no loader,
# no shared library, no module.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# Modules the scenarios need; their dependencies are added from modules.dep.
MODULES=(veth iptable_raw iptable_filter xt_mark xt_tcpudp)

die() { echo "mkinitramfs.sh: $*" >&2; exit 2; }

kdir="" out="" bins=() shares=() static=0
while [ $# -gt 0 ]; do
    case "$1" in
        --kernel-dir) kdir=$2; shift 2 ;;
        --out)        out=$2; shift 2 ;;
        --bin)        bins+=("$2"); shift 2 ;;
        --share)      shares+=("$2"); shift 2 ;;
        --static)     static=1; shift ;;
        *) die "unknown argument '$1'" ;;
    esac
done
[ -n "$kdir" ] && [ -n "$out" ] || die "usage: mkinitramfs.sh --kernel-dir DIR --out FILE [--bin PATH[:NAME]]..."
rel=$(cat "$kdir/release")
moddir="$kdir/lib/modules/$rel"
[ -f "$moddir/modules.dep" ] || die "$moddir/modules.dep missing (run kernels.sh fetch)"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,run,tmp,etc/lab,lib/modules,results,scenarios,var}
ln -s /run "$root/var/run"
cp /bin/busybox "$root/bin/busybox"
# Symlinks for every applet, so the guest has a full shell userland.
for applet in $(/bin/busybox --list-full); do
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done

# The scripts, the release and /init; then the image itself. Uncompressed
# cpio: the guest unpacks it faster than it could gunzip under TCG.
finish_image() {
    echo "$rel" >"$root/etc/lab/release"
    cp "$HERE"/guest/*.sh "$root/scenarios/"
    install -m 0755 "$HERE/guest/init" "$root/init"
    (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) >"$out.tmp"
    mv "$out.tmp" "$out"
}

# Copy a dynamically linked file's libraries (and the loader), keeping paths.
copy_libs() {
    local lib
    for lib in $(ldd "$1" 2>/dev/null | grep -oE '/[^ ]+' | sort -u); do
        [ -e "$root$lib" ] && continue
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}

# install_bin SRC DEST: copy an executable into the image (replacing a busybox
# symlink of the same name) together with its libraries.
install_bin() {
    local src=$1 dest=$2
    [ -x "$src" ] || die "binary $src not found"
    local d
    # Drop busybox applets of the same name (busybox ip has no netns) so
    # that PATH order cannot pick the wrong one.
    for d in bin sbin usr/bin usr/sbin; do
        [ -L "$root/$d/$(basename "$dest")" ] && rm -f "$root/$d/$(basename "$dest")"
    done
    rm -f "$root$dest"; mkdir -p "$root$(dirname "$dest")"
    cp -L "$src" "$root$dest"
    copy_libs "$src"
}

if [ "$static" = 1 ]; then
    for b in ${bins[@]+"${bins[@]}"}; do
        src=${b%%:*}; name=${b#*:}; [ "$name" = "$b" ] && name=$(basename "$src")
        file -L "$src" | grep -q 'static' || die "--static: $src is not a static executable"
        cp -L "$src" "$root/usr/bin/$name"
    done
    # The marking pinger (tools/mping.c).
    cc -static -O2 -Wall -o "$root/usr/bin/mping" "$HERE/tools/mping.c" || die "building mping failed"
    : >"$root/etc/lab/modules"
    finish_image
    exit 0
fi

install_bin /usr/sbin/bpftool /usr/sbin/bpftool
install_bin /usr/sbin/ip /usr/sbin/ip
# iptables-legacy: the xtables multi-binary dispatches on argv[0]; its match and
# target extensions are dlopen()ed from the xtables directory (ldd misses them).
install_bin /usr/sbin/xtables-legacy-multi /usr/sbin/xtables-legacy-multi
for n in iptables iptables-save iptables-restore; do
    rm -f "$root/usr/sbin/$n" "$root/sbin/$n"
    ln -s xtables-legacy-multi "$root/usr/sbin/$n"
done
# (resolved through the merged-/usr symlink: libxtables looks in /usr/lib/...)
xtdir=$(readlink -f "$(dirname "$(ldd /usr/sbin/xtables-legacy-multi | grep -oE '/[^ ]+/libxtables\.so[^ ]*')")/xtables")
mkdir -p "$root$xtdir"
cp "$xtdir"/*.so "$root$xtdir/"
for so in "$root$xtdir"/*.so; do copy_libs "$so"; done

for b in ${bins[@]+"${bins[@]}"}; do
    src=${b%%:*}; name=${b#*:}; [ "$name" = "$b" ] && name=$(basename "$src")
    install_bin "$src" "/usr/bin/$name"
done
mkdir -p "$root/usr/share/ipft"
for f in ${shares[@]+"${shares[@]}"}; do
    [ -f "$f" ] || die "--share $f not found"
    cp -L "$f" "$root/usr/share/ipft/"
done
# A TCP stream made of large writes, for GSO (busybox nc writes 1 KiB).
cc -static -O2 -Wall -o "$root/usr/bin/tcpstream" "$HERE/tools/tcpstream.c" || die "building tcpstream failed"
# The marking pinger, here the traffic benchmark's ping-pong flood.
cc -static -O2 -Wall -o "$root/usr/bin/mping" "$HERE/tools/mping.c" || die "building mping failed"

# Modules in load order: dependencies first (modules.dep lists a module's
# dependencies with the deepest last, so walk them in reverse), no duplicates.
declare -A seen=()
order=()
add_module() {
    local path=$1 deps d
    [ -n "${seen[$path]:-}" ] && return 0
    seen[$path]=1
    deps=$(grep -E "^$path:" "$moddir/modules.dep" | cut -d: -f2)
    for d in $(tr ' ' '\n' <<<"$deps" | tac); do add_module "$d"; done
    order+=("$path")
}
for m in "${MODULES[@]}"; do
    path=$(grep -oE "^[^:]*/$m\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | tr -d :) \
        || die "module $m not in modules.dep"
    add_module "$path"
done
for path in "${order[@]}"; do
    name=$(basename "$path"); name=${name%%.ko*}
    # busybox insmod reads the file as is: store modules uncompressed.
    case "$path" in
        *.xz)  xz -dc "$moddir/$path" ;;
        *.zst) zstd -dcq "$moddir/$path" ;;
        *.gz)  gzip -dc "$moddir/$path" ;;
        *)     cat "$moddir/$path" ;;
    esac >"$root/lib/modules/$name.ko"
    echo "$name" >>"$root/etc/lab/modules"
done
finish_image
