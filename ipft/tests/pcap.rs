//! pcap-filter expressions on this host with tp_btf (`ipft EXPR`: the
//! expression translated to eBPF and spliced into every program at load).
//! Root only.

mod common;
#[path = "common/mixed.rs"]
mod mixed;

use common::*;
use mixed::{mark_udp, ping_and_udp};

/// Trace `args` (tp_btf, JSON) while the mixed traffic runs: its journeys.
fn journeys_of(ns: &Netns, args: &[&str], port: u16) -> (Vec<Vec<String>>, String) {
    let mut a = vec!["-b", "tp_btf", "-o", "json"];
    a.extend_from_slice(args);
    let t = Tracer::start(env!("CARGO_BIN_EXE_ipft").as_ref(), &a, "pcap");
    ping_and_udp(ns, port);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, out, err) = t.stop(libc::SIGINT);
    assert_eq!(code, 0, "{args:?}: {err}");
    assert!(wait_detached().is_empty());
    (journeys(&events(&out)), err)
}

#[test]
fn expressions_select_icmp_or_udp_in_mixed_traffic() {
    let _g = lock();
    let ns = Netns::new("pcap");
    mark_udp(&ns);
    let port = 40123;
    // Both marked: the expression tells them apart.
    let (j, err) = journeys_of(&ns, &["-m", "0xdeadbeef", "icmp"], port);
    assert_eq!(j.len(), 2, "two echo requests: {j:?}\n{err}");
    for journey in &j {
        assert_eq!(journey, LOOPBACK, "{err}");
    }
    // The words join into one expression, as tcpdump's do.
    let (j, err) = journeys_of(
        &ns,
        &["-m", "0xdeadbeef", "udp", "and", "dst", "port", "40123"],
        port,
    );
    assert_eq!(j.len(), 2, "two datagrams: {j:?}\n{err}");
    for journey in &j {
        assert_ne!(journey, LOOPBACK, "{err}");
        assert_eq!(journey[0], "net_dev_queue", "{err}");
    }
    let (j, err) = journeys_of(&ns, &["-m", "0xdeadbeef", "udp port 40124"], port);
    assert!(j.is_empty(), "no datagram to 40124: {j:?}\n{err}");
    // No -m: the expression alone selects (this port is ours alone).
    let (j, err) = journeys_of(&ns, &["udp dst port 40123 and len > 20"], port);
    assert_eq!(j.len(), 2, "two datagrams, unmarked filter: {j:?}\n{err}");
}

#[test]
fn a_bad_expression_is_libpcaps_message_and_exit_2() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ipft"))
        .args(["-b", "tp_btf", "tcp", "port"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("pcap filter 'tcp port': ") && err.contains("syntax error"),
        "{err}"
    );
}
