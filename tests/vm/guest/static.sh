# Scenario static: booted from an initramfs that holds busybox, the static
# ipft and the static fleet tracer, and nothing else: no dynamic loader, no
# libbpf, libelf or zlib, no iptables. With nothing to mark packets, both
# trace the packets whose mark is 0 (-m 0: all of them) of a loopback ping,
# the only traffic.
. /scenarios/lib.sh

find / -xdev \( -name 'ld-linux*' -o -name 'libbpf*' -o -name 'libelf*' -o -name 'libz.*' -o -name 'libc.so*' \) >libs.txt 2>/dev/null
MARK=0
for t in ipft ipft-ip; do
    IPFT=/usr/bin/$t
    if ipft_start "$t" -r '^(ip_|icmp_)'; then
        ping -c 3 -i 0.2 -W 2 127.0.0.1 >"ping-$t.txt" 2>&1
        ipft_stop INT
    fi
done
