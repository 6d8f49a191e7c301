//! Host end-to-end tests of --output-meta, --output-tuple, --output-stack
//! and --output-pcap (tp_btf; real packets in namespaces made here). The
//! values are checked against what the packets must carry: the sockets'
//! own addresses and ports, the devices' ifindex and the namespaces'
//! inodes; the pcapng file is read by tshark and capinfos. Root only.

mod common;
#[path = "common/mixed.rs"]
mod mixed;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn ipft() -> PathBuf {
    env!("CARGO_BIN_EXE_ipft").into()
}

/// Trace with `args` (plus `-b tp_btf -o json`) while `traffic` runs.
fn trace(tag: &str, args: &[&str], traffic: impl FnOnce()) -> (Vec<Value>, String) {
    let mut full = vec!["-b", "tp_btf", "-o", "json"];
    full.extend(args);
    let t = Tracer::start(&ipft(), &full, tag);
    traffic();
    std::thread::sleep(Duration::from_millis(1500));
    let (code, out, err) = t.stop(libc::SIGINT);
    assert_eq!(code, 0, "{args:?}: {err}");
    (events(&out), err)
}

/// Namespaces a and b joined by veth (`ipftd0` in a, `ipftd1` in b), with
/// IPv4 and IPv6 addresses.
struct Pair {
    a: Netns,
    b: Netns,
}

impl Pair {
    fn new() -> Pair {
        // The warm-up pings retry for up to 5 s (-w): a veth's queue drops
        // what is sent before link-watch activates it, so one echo sent at
        // once can be lost (fresh-clone CI failed so once).
        let (a, b) = (Netns::new("dta"), Netns::new("dtb"));
        must(&format!(
            "ip link add ipftd0 netns {a} type veth peer name ipftd1 netns {b} && \
             ip -n {a} addr add 10.197.0.1/24 dev ipftd0 && ip -n {b} addr add 10.197.0.2/24 dev ipftd1 && \
             ip -n {a} addr add fd00:197::1/64 dev ipftd0 nodad && \
             ip -n {b} addr add fd00:197::2/64 dev ipftd1 nodad && \
             ip -n {a} link set ipftd0 up && ip -n {b} link set ipftd1 up && \
             ip netns exec {a} ping -q -c 1 -w 5 10.197.0.2 >/dev/null && \
             ip netns exec {a} ping -q -c 1 -w 5 fd00:197::2 >/dev/null",
            a = a.0,
            b = b.0
        ));
        Pair { a, b }
    }
}

fn inode(ns: &Netns) -> u64 {
    std::fs::metadata(format!("/var/run/netns/{}", ns.0))
        .unwrap()
        .ino()
}

fn ifindex(ns: &Netns, dev: &str) -> u64 {
    let o = ns.exec(&format!("cat /sys/class/net/{dev}/ifindex"));
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

/// Send one datagram of 10 bytes from `from` to `to`, marked with SO_MARK,
/// from a thread that entered `ns`.
fn send_udp(ns: &Netns, from: &str, to: &str) {
    let path = format!("/var/run/netns/{}", ns.0);
    let (from, to): (SocketAddr, SocketAddr) = (from.parse().unwrap(), to.parse().unwrap());
    std::thread::spawn(move || {
        let f = std::fs::File::open(path).unwrap();
        // SAFETY: setns on this thread only, with an open namespace file.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let s = UdpSocket::bind(from).unwrap();
        let mark: u32 = MARK;
        // SAFETY: a valid socket and a u32 option value.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_MARK,
                &mark as *const u32 as *const libc::c_void,
                4,
            )
        };
        assert_eq!(r, 0, "SO_MARK");
        s.send_to(b"0123456789", to).unwrap();
    })
    .join()
    .unwrap();
}

fn at<'a>(evs: &'a [Value], function: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["function"] == function).collect()
}

#[test]
fn meta_and_tuple_are_the_packets_own() {
    let _g = lock();
    let p = Pair::new();
    let args = [
        "-m",
        "0xdeadbeef",
        "--track-skb",
        "--output-meta",
        "--output-tuple",
    ];
    let (evs, err) = trace("dt0", &args, || {
        send_udp(&p.a, "10.197.0.1:40001", "10.197.0.2:40002");
        send_udp(&p.a, "[fd00:197::1]:40003", "[fd00:197::2]:40004");
    });
    let (ns_a, ns_b) = (inode(&p.a), inode(&p.b));
    let (if_a, if_b) = (ifindex(&p.a, "ipftd0"), ifindex(&p.b, "ipftd1"));
    let queued = at(&evs, "net_dev_queue");
    let received = at(&evs, "netif_receive_skb");
    assert_eq!((queued.len(), received.len()), (2, 2), "{err}\n{evs:?}");
    for (v6, (q, r)) in queued.iter().zip(&received).enumerate() {
        let (v6, ip_len) = (v6 == 1, if v6 == 1 { 40 } else { 20 });
        // Leaving a: Ethernet, IP, UDP and 10 bytes; a's device and mark.
        assert_eq!(q["len"], 14 + ip_len + 8 + 10, "{q}");
        assert_eq!(q["ifname"], "ipftd0", "{q}");
        assert_eq!(
            (q["ifindex"].as_u64(), q["netns"].as_u64()),
            (Some(if_a), Some(ns_a))
        );
        assert_eq!(q["mark"], MARK, "{q}");
        assert_eq!(q["protocol"], if v6 { "IPv6" } else { "IPv4" });
        // In b (followed by --track-skb): Ethernet pulled, mark scrubbed.
        assert_eq!(r["len"], ip_len + 8 + 10, "{r}");
        assert_eq!(r["ifname"], "ipftd1", "{r}");
        assert_eq!(
            (r["ifindex"].as_u64(), r["netns"].as_u64()),
            (Some(if_b), Some(ns_b))
        );
        assert_eq!(r["mark"], 0, "{r}");
        let want = match v6 {
            false => ["10.197.0.1", "10.197.0.2", "40001", "40002"],
            true => ["fd00:197::1", "fd00:197::2", "40003", "40004"],
        };
        for e in [q, r] {
            let t = &e["tuple"];
            assert_eq!(t["proto"], "udp", "{e}");
            assert_eq!(
                (t["saddr"].as_str(), t["daddr"].as_str()),
                (Some(want[0]), Some(want[1]))
            );
            assert_eq!(t["sport"].to_string(), want[2], "{e}");
            assert_eq!(t["dport"].to_string(), want[3], "{e}");
        }
    }
    // Every event but a free (no data left there) found the headers.
    for e in &evs {
        let f = e["function"].as_str().unwrap();
        assert!(e["len"].is_number(), "{e}");
        assert!(
            e.get("tuple").is_some() || f == "kfree_skb" || f == "consume_skb",
            "{e}"
        );
    }
}

#[test]
fn stack_names_the_path_from_the_syscall() {
    let _g = lock();
    let ns = Netns::new("dts");
    let args = ["-m", "0xdeadbeef", "--output-stack"];
    let (evs, err) = trace("dt1", &args, || {
        let o = ns.exec(&format!("ping -q -c 2 -i 0.2 -W 2 -m {MARK} 127.0.0.1"));
        assert!(o.status.success());
    });
    let queued = at(&evs, "net_dev_queue");
    assert_eq!(queued.len(), 2, "{err}");
    for e in &evs {
        let stack: Vec<&str> = e["stack"]
            .as_array()
            .unwrap_or_else(|| panic!("no stack: {e}"))
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert!(!stack[0].starts_with("bpf_"), "{stack:?}");
        assert!(stack.iter().all(|f| f.contains("+0x")), "{stack:?}");
    }
    for e in queued {
        let stack: Vec<&str> = e["stack"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        // The tracepoint is in __dev_queue_xmit, reached from ping's sendto.
        assert!(stack[0].starts_with("__dev_queue_xmit+"), "{stack:?}");
        assert!(
            stack.iter().any(|f| f.starts_with("entry_SYSCALL_64")),
            "{stack:?}"
        );
    }
}

/// tshark's fields of every record: interface, cap len, len, protocol
/// numbers, source, comment.
fn tshark(file: &str) -> Vec<Vec<String>> {
    let o = sh(&format!(
        "tshark -r {file} -T fields -E separator=/t -e frame.interface_id -e frame.cap_len \
         -e frame.len -e ip.proto -e ip.src -e frame.comment"
    ));
    assert!(
        o.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

#[test]
fn pcapng_holds_each_packet_and_its_journey() {
    let _g = lock();
    let ns = Netns::new("dtp");
    mixed::mark_udp(&ns);
    let file = std::env::temp_dir().join(format!("ipft-test-{}.pcapng", std::process::id()));
    let f = file.to_str().unwrap();
    for snaplen in [None, Some(40)] {
        let mut args = vec!["-m", "0xdeadbeef", "--output-pcap", f];
        let s = snaplen.map(|n: u32| n.to_string());
        if let Some(s) = &s {
            args.extend(["--snaplen", s]);
        }
        let (evs, err) = trace("dt2", &args, || mixed::ping_and_udp(&ns, 9));
        let want = journeys(&evs);
        assert_eq!(want.len(), 4, "{err}");
        let o = sh(&format!("capinfos -c -M {f}"));
        let info = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && info.contains("Number of packets:   4"),
            "{info}"
        );
        let rows = tshark(f);
        assert_eq!(rows.len(), 4, "{rows:?}");
        for (i, (row, functions)) in rows.iter().zip(&want).enumerate() {
            // The echo requests (ICMP, 98 bytes with loopback's Ethernet
            // header), then the datagrams (UDP, 14 + 20 + 8 + 2), all from
            // the mac header.
            let (proto, len) = if i < 2 { ("1", 98) } else { ("17", 44) };
            let cap = snaplen.map_or(len, |n| n.min(len));
            assert_eq!(
                row[..5],
                ["0", &cap.to_string(), &len.to_string(), proto, "127.0.0.1"],
                "{row:?}"
            );
            // The comment: a title, then the journey's functions in order
            // (tshark shows the comment's line breaks as \n).
            let lines: Vec<&str> = row[5].split("\\n").collect();
            assert!(
                lines[0].starts_with(&format!("ipft packet {}: skb 0x", i + 1)),
                "{lines:?}"
            );
            assert!(lines[0].ends_with(&format!(
                "{} events, bytes from net_dev_queue",
                functions.len()
            )));
            let shown: Vec<&str> = lines[1..]
                .iter()
                .map(|l| l.split("us  ").nth(1).unwrap().split(' ').next().unwrap())
                .collect();
            assert_eq!(&shown, functions, "{lines:?}");
        }
    }
    let _ = std::fs::remove_file(&file);
}

#[test]
fn extension_payload_and_meta_share_a_record() {
    let _g = lock();
    let ns = Netns::new("dte");
    let len_c = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../extensions/len.bpf.c");
    let args = [
        "-m",
        "0xdeadbeef",
        "-e",
        len_c.to_str().unwrap(),
        "--output-meta",
        "--output-tuple",
    ];
    let (evs, err) = trace("dt3", &args, || {
        let o = ns.exec(&format!("ping -q -c 2 -i 0.2 -W 2 -m {MARK} 127.0.0.1"));
        assert!(o.status.success());
    });
    assert!(!evs.is_empty(), "{err}");
    for e in &evs {
        // The extension's len and --output-meta's len read the same field.
        assert_eq!(e["ext"]["len"], e["len"], "{e}");
        assert_eq!(e["mark"], MARK, "{e}");
    }
    assert!(evs.iter().any(|e| e["tuple"]["proto"] == "icmp"));
}

#[test]
fn bad_output_flags_are_one_line_and_exit_2() {
    for (args, want) in [
        (
            &[
                "-m",
                "1",
                "--output-pcap",
                "/tmp/x.pcapng",
                "--snaplen",
                "0",
            ][..],
            "--snaplen 0: want 1 to 4096",
        ),
        (
            &[
                "-m",
                "1",
                "--output-pcap",
                "/tmp/x.pcapng",
                "--snaplen",
                "5000",
            ][..],
            "--snaplen 5000",
        ),
        (&["-m", "1", "--snaplen", "100"][..], "--output-pcap"),
        (&["-m", "1", "--output-pcap", "/tmp"][..], "is a directory"),
        (
            &["-m", "1", "--output-pcap", "/nonexistent/x.pcapng"][..],
            "no such directory",
        ),
    ] {
        let o = std::process::Command::new(ipft())
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
