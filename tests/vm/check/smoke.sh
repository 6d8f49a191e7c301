#!/usr/bin/env bash
# smoke: the lab itself: kprobe PMU, BTF (vmlinux and veth), bpftool, the
# modules, iptables marking, netns + veth, ping, and filter DROP.
. "$(dirname "$0")/lib.sh"

f=$DIR/facts
[ -f "$f" ] || fail "no facts; scenario.log: $(excerpt "$DIR/scenario.log")"
want=(kprobe_pmu=yes btf_vmlinux=yes bpftool_prog_rc=0 bpftool_link_rc=0
      ping_rc=0 mark_pkts=6 veth_ping_rc=0 drop_pkts=1 done=yes)
# Module BTF (/sys/kernel/btf/<module>) exists from Linux 5.11.
case "$KVER" in 5.10) want+=(btf_veth=no) ;; *) want+=(btf_veth=yes) ;; esac
while read -r m; do want+=("mod_$m=loaded"); done < <(sed -n 's/^mod_\(.*\)=.*/\1/p' "$f")
missing=()
for w in "${want[@]}"; do grep -qxF "$w" "$f" || missing+=("$w (have: $(grep "^${w%%=*}=" "$f" || echo none))"); done
[ ${#missing[@]} -eq 0 ] || fail "not as expected: ${missing[*]}" "errors: $(excerpt "$DIR/errors")"
echo "$(sed -n 's/^release=//p' "$f"): kprobe PMU, BTF, bpftool, modules, mark, veth, drop ok"
