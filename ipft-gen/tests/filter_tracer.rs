//! `ipft-gen --filter EXPR --build` on this host: the expression compiled
//! into the tracer as C selects ICMP and not UDP in mixed marked traffic;
//! an expression given to the tracer at run time (spliced in as eBPF)
//! must match as well. Root only.

#[path = "../../ipft/tests/common/mod.rs"]
mod common;
#[path = "../../ipft/tests/common/mixed.rs"]
mod mixed;

use common::*;
use mixed::{mark_udp, ping_and_udp};
use std::path::PathBuf;
use std::process::Command;

fn journeys_of(bin: &std::path::Path, ns: &Netns, args: &[&str]) -> (Vec<Vec<String>>, String) {
    let mut a = vec!["-m", "0xdeadbeef", "-o", "json"];
    a.extend_from_slice(args);
    let t = Tracer::start(bin, &a, "genpcap");
    ping_and_udp(ns, 40125);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, out, err) = t.stop(libc::SIGINT);
    assert_eq!(code, 0, "{args:?}: {err}");
    assert!(wait_detached().is_empty());
    (journeys(&events(&out)), err)
}

#[test]
fn generated_tracer_with_filter_selects_icmp_not_udp() {
    let _g = lock();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gen-filter-icmp");
    let o = Command::new(env!("CARGO_BIN_EXE_ipft-gen"))
        .args([
            "--btf",
            "/sys/kernel/btf/vmlinux",
            "--profile",
            "tracepoints",
        ])
        .args(["--filter", "icmp", "--build", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c = std::fs::read_to_string(out.join("tracer.bpf.c")).unwrap();
    assert!(
        c.contains("pcap-filter \"icmp\"") && c.contains("ipft_pcap_l3("),
        "the filter's C is in the tracer"
    );
    let bin = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());

    let ns = Netns::new("genpcap");
    mark_udp(&ns);
    let (j, err) = journeys_of(&bin, &ns, &[]);
    assert_eq!(j.len(), 2, "two echo requests, no datagram: {j:?}\n{err}");
    for journey in &j {
        assert_eq!(
            journey.first().map(String::as_str),
            Some("net_dev_queue"),
            "{err}"
        );
        assert_eq!(
            journey.last().map(String::as_str),
            Some("consume_skb"),
            "{err}"
        );
    }
    // Built in and given at run time: both must match.
    let (j, err) = journeys_of(&bin, &ns, &["icmp[icmptype] = icmp-echo"]);
    assert_eq!(j.len(), 2, "{j:?}\n{err}");
    let (j, err) = journeys_of(&bin, &ns, &["udp"]);
    assert!(j.is_empty(), "icmp and udp: {j:?}\n{err}");
    // The built-in filter alone selects: no -m needed. The datagrams'
    // ICMP port unreachable replies (unmarked) are ICMP too.
    let t = Tracer::start(&bin, &["-o", "json"], "gennomark");
    ping_and_udp(&ns, 40125);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, trace, err) = t.stop(libc::SIGINT);
    assert_eq!(code, 0, "{err}");
    let j = journeys(&events(&trace));
    assert!(
        j.len() >= 4,
        "echo requests, replies, unreachables: {j:?}\n{err}"
    );

    // --output-meta and --output-tuple: the tracer's object carries them too.
    let args = [
        "-m",
        "0xdeadbeef",
        "-o",
        "json",
        "--output-meta",
        "--output-tuple",
    ];
    let t = Tracer::start(&bin, &args, "gendetails");
    ping_and_udp(&ns, 40125);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, trace, err) = t.stop(libc::SIGINT);
    assert_eq!(code, 0, "{err}");
    let evs = events(&trace);
    assert!(
        evs.iter()
            .filter(|e| e["function"] == "net_dev_queue")
            .count()
            == 2,
        "{err}"
    );
    for e in &evs {
        assert_eq!(
            (e["mark"].as_u64(), e["ifname"].as_str()),
            (Some(u64::from(MARK)), Some("lo")),
            "{e}"
        );
        if e["function"] != "consume_skb" {
            assert_eq!(e["tuple"]["proto"], "icmp", "{e}");
            assert_eq!(e["tuple"]["daddr"], "127.0.0.1", "{e}");
        }
    }

    // A bad expression: libpcap's message, exit 2, before anything is built.
    let o = Command::new(env!("CARGO_BIN_EXE_ipft-gen"))
        .args([
            "--btf",
            "/sys/kernel/btf/vmlinux",
            "--profile",
            "tracepoints",
        ])
        .args(["--filter", "icmp and", "-o"])
        .arg(out.with_file_name("gen-filter-bad"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("pcap filter 'icmp and': ") && err.contains("syntax error"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
