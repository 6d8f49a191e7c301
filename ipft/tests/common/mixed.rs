//! Mixed marked traffic for the pcap-filter tests: echo requests and UDP
//! datagrams, both carrying MARK, over a namespace's loopback.

use crate::common::{must, Netns, MARK};

/// Mark every UDP datagram `ns` sends (ping marks its own with -m).
pub fn mark_udp(ns: &Netns) {
    must(&format!(
        "ip netns exec {} iptables -t raw -A OUTPUT -p udp -j MARK --set-mark {MARK}",
        ns.0
    ));
}

/// Two marked echo requests, then two marked datagrams to `port` (closed:
/// the kernel answers with an unmarked ICMP port unreachable).
pub fn ping_and_udp(ns: &Netns, port: u16) {
    let o = ns.exec(&format!("ping -q -c 2 -i 0.2 -W 2 -m {MARK} 127.0.0.1"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = ns.exec(&format!(
        "bash -c 'for i in 1 2; do echo x > /dev/udp/127.0.0.1/{port}; sleep 0.2; done'"
    ));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
