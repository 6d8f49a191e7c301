# Scenario static: booted from an initramfs that holds busybox, the static
# ipft, the static fleet tracer and a static pinger, and nothing else: no
# dynamic loader, no libbpf, libelf or zlib, no iptables. mping marks its
# echo requests with SO_MARK, and fwmark_reflect gives the replies the same
# mark; both tracers trace a loopback ping that way.
. /scenarios/lib.sh

find / -xdev \( -name 'ld-linux*' -o -name 'libbpf*' -o -name 'libelf*' -o -name 'libz.*' -o -name 'libc.so*' \) >libs.txt 2>/dev/null
echo 1 >/proc/sys/net/ipv4/fwmark_reflect
for t in ipft ipft-ip; do
    IPFT=/usr/bin/$t
    if ipft_start "$t" -r '^(ip_|icmp_)'; then
        mping "$MARK" 3 127.0.0.1 >"ping-$t.txt" 2>&1
        tracer_stop INT
    fi
done
