# Scenario smoke: the lab itself works (no ipft needed). Writes key=value facts
# to facts; the host asserts on them (check/smoke.sh).
. /scenarios/lib.sh

fact() { echo "$1=$2" >>facts; }

fact release "$(uname -r)"
fact kprobe_pmu "$([ -d /sys/bus/event_source/devices/kprobe ] && echo yes || echo no)"
fact tracefs "$([ -f /sys/kernel/tracing/available_filter_functions ] && echo yes || echo no)"
fact btf_vmlinux "$([ -f /sys/kernel/btf/vmlinux ] && echo yes || echo no)"
fact btf_veth "$([ -f /sys/kernel/btf/veth ] && echo yes || echo no)"
bpftool prog show >bpftool-prog.txt 2>&1; fact bpftool_prog_rc $?
bpftool link show >bpftool-link.txt 2>&1; fact bpftool_link_rc $?
lsmod >lsmod.txt 2>&1
for m in $(cat /etc/lab/modules); do
    fact "mod_$m" "$(grep -q "^$m " lsmod.txt && echo loaded || echo missing)"
done

# Loopback ping marked by the raw table: the rule's packet counter must count
# the 3 echo requests and the 3 replies.
ns_lo mark
ip netns exec mark iptables -t raw -A OUTPUT -p icmp -j MARK --set-mark "$MARK" 2>>errors
ip netns exec mark ping -c 3 -i 0.2 -W 2 127.0.0.1 >ping.txt 2>&1; fact ping_rc $?
fact mark_pkts "$(ip netns exec mark iptables -t raw -L OUTPUT -v -x -n | awk '/MARK/{print $1}')"

# veth pair between two namespaces.
veth_pair a b 10.99.0.1 10.99.0.2
ip netns exec a ping -c 2 -i 0.2 -W 2 10.99.0.2 >veth-ping.txt 2>&1; fact veth_ping_rc $?

# Filter DROP: ping must fail.
ns_lo drop
ip netns exec drop iptables -A OUTPUT -p icmp -j DROP 2>>errors
ip netns exec drop ping -c 1 -W 1 127.0.0.1 >drop-ping.txt 2>&1; fact drop_ping_rc $?
fact drop_pkts "$(ip netns exec drop iptables -L OUTPUT -v -x -n | awk '/DROP/{print $1}')"
fact "done" yes
