//! Host end-to-end tests of --track-skb and the packet filters (tp_btf, real
//! pings in namespaces these tests create). Root only.

mod common;

use std::process::{Child, Command};
use std::time::Duration;

use common::*;

fn ipft() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_ipft").into()
}

/// Trace with `args` (plus `-b tp_btf -o json`) while `traffic` runs;
/// returns each packet's functions.
fn trace(tag: &str, args: &[&str], traffic: impl FnOnce()) -> Vec<Vec<String>> {
    let mut full = vec!["-m", "0xdeadbeef", "-b", "tp_btf", "-o", "json"];
    full.extend(args);
    let t = Tracer::start(&ipft(), &full, tag);
    traffic();
    std::thread::sleep(Duration::from_millis(1500));
    let (code, out, err) = t.stop(libc::SIGINT);
    assert_eq!(code, 0, "{args:?}: {err}");
    journeys(&events(&out))
}

fn ping(ns: &Netns, args: &str) {
    let o = ns.exec(&format!("ping -q -c 2 -i 0.2 -W 2 {args}"));
    assert!(
        o.status.success(),
        "ping {args}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Namespaces a and b joined by a veth pair (`ipftk0` in a, `ipftk1` in b);
/// a marks its echo requests on output, b marks nothing.
struct Pair {
    a: Netns,
    b: Netns,
}

impl Pair {
    fn new() -> Pair {
        let a = Netns::new("tka");
        let b = Netns::new("tkb");
        veth_pair(&a, &b, "ipftk", "10.198.0");
        ping(&a, "10.198.0.2"); // resolve neighbours before tracing
        Pair { a, b }
    }

    fn path_a(&self) -> String {
        format!("/var/run/netns/{}", self.a.0)
    }
}

/// What b does with a request that crossed the veth (it lost a's mark).
const IN_B: &[&str] = &["netif_receive_skb"];

fn has(j: &[String], f: &str) -> bool {
    j.iter().any(|x| x == f)
}

#[test]
fn tracking_follows_a_packet_across_a_netns_crossing() {
    let _g = lock();
    let p = Pair::new();
    // Without tracking: the mark is scrubbed on the crossing, b's receive
    // is not seen; the journey still ends at its consume (the live set).
    let plain = trace("tk0", &[], || ping(&p.a, "10.198.0.2"));
    assert_eq!(plain.len(), 2, "{plain:?}");
    for j in &plain {
        assert_eq!(j, &["net_dev_queue", "net_dev_start_xmit", "consume_skb"]);
    }
    // With tracking: the same packets, now followed through b until freed.
    let tracked = trace("tk1", &["--track-skb"], || ping(&p.a, "10.198.0.2"));
    assert_eq!(tracked.len(), 2, "{tracked:?}");
    for j in &tracked {
        assert_eq!(
            j.first().map(String::as_str),
            Some("net_dev_queue"),
            "{j:?}"
        );
        assert_eq!(j.last().map(String::as_str), Some("consume_skb"), "{j:?}");
        for f in IN_B {
            assert!(has(j, f), "{f} (in b, after the crossing) missing: {j:?}");
        }
        let rx = j.iter().position(|f| f == "netif_receive_skb").unwrap();
        let tx = j.iter().position(|f| f == "net_dev_start_xmit").unwrap();
        assert!(tx < rx, "{j:?}");
    }
    // The netns filter picks the first event (in a); tracking goes on in b.
    let from_a = trace(
        "tk2",
        &["--track-skb", "--filter-netns", &p.path_a()],
        || ping(&p.a, "10.198.0.2"),
    );
    assert_eq!(
        from_a,
        tracked.iter().map(|j| j.to_vec()).collect::<Vec<_>>()
    );
    // Selecting b's namespace instead: the marked requests never had a
    // device there while marked, so nothing starts.
    let b = format!("/var/run/netns/{}", p.b.0);
    let none = trace("tk3", &["--track-skb", "--filter-netns", &b], || {
        ping(&p.a, "10.198.0.2")
    });
    assert!(none.is_empty(), "{none:?}");
}

/// Two namespaces pinging their loopback, marked, at the same time: a
/// sends `na` requests, b `nb`.
fn two_loopbacks(a: &Netns, b: &Netns, na: u32, nb: u32) {
    let spawn = |ns: &Netns, n: u32| {
        Command::new("ip")
            .args(["netns", "exec", &ns.0, "ping", "-q", "-i", "0.2", "-W", "2"])
            .args(["-c", &n.to_string(), "-m", &MARK.to_string(), "127.0.0.1"])
            .output()
    };
    std::thread::scope(|s| {
        let x = s.spawn(|| spawn(a, na));
        let y = s.spawn(|| spawn(b, nb));
        for r in [x.join().unwrap(), y.join().unwrap()] {
            let o = r.expect("ping");
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
    });
}

const LOOPBACK_FIRST: &str = "net_dev_queue";

#[test]
fn filter_netns_selects_one_namespace() {
    let _g = lock();
    let a = Netns::new("nsa");
    let b = Netns::new("nsb");
    for (ns, want) in [(&a, 2), (&b, 3)] {
        let path = format!("/var/run/netns/{}", ns.0);
        let j = trace("ns", &["--filter-netns", &path], || {
            two_loopbacks(&a, &b, 2, 3)
        });
        assert_eq!(j.len(), want, "{}: {j:?}", ns.0);
        assert!(j.iter().all(|j| j[0] == LOOPBACK_FIRST), "{j:?}");
    }
    // By inode, as `ls -i` or `stat` print it.
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(format!("/var/run/netns/{}", b.0))
        .unwrap()
        .ino();
    let j = trace("ns", &["--filter-netns", &ino.to_string()], || {
        two_loopbacks(&a, &b, 2, 3)
    });
    assert_eq!(j.len(), 3, "{j:?}");
}

#[test]
fn filter_ifname_selects_one_device() {
    let _g = lock();
    let p = Pair::new();
    let traffic = || {
        ping(&p.a, "10.198.0.2");
        ping(&p.a, &format!("-m {MARK} 127.0.0.1"));
    };
    let veth = trace("if0", &["--filter-ifname", "ipftk0"], traffic);
    assert_eq!(veth.len(), 2, "{veth:?}");
    for j in &veth {
        assert_eq!(j, &["net_dev_queue", "net_dev_start_xmit", "consume_skb"]);
    }
    let lo = trace("if1", &["--filter-ifname", "lo"], traffic);
    assert_eq!(lo.len(), 2, "{lo:?}");
    for j in &lo {
        assert!(has(j, "netif_rx") && has(j, "netif_receive_skb"), "{j:?}");
    }
    // A prefix of a name is not the name.
    let none = trace("if2", &["--filter-ifname", "ipftk"], traffic);
    assert!(none.is_empty(), "{none:?}");
}

/// A pinger that waits for `go` to exist, then becomes ping (same pid).
fn pinger(ns: &Netns, n: u32, go: &std::path::Path) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &ns.0, "sh", "-c"])
        .arg(format!(
            "while [ ! -e {} ]; do sleep 0.05; done; exec ping -q -c {n} -i 0.2 -W 2 -m {MARK} 127.0.0.1 >/dev/null",
            go.display()
        ))
        .spawn()
        .expect("spawn pinger")
}

#[test]
fn filter_pid_selects_one_sender() {
    let _g = lock();
    let ns = Netns::new("pid");
    let go = std::env::temp_dir().join(format!("ipft-go-{}", std::process::id()));
    let _ = std::fs::remove_file(&go);
    let mut two = pinger(&ns, 2, &go);
    let mut three = pinger(&ns, 3, &go);
    let pid = two.id().to_string();
    let j = trace("pid", &["--filter-pid", &pid], || {
        std::fs::write(&go, b"").unwrap();
        assert!(two.wait().unwrap().success());
        assert!(three.wait().unwrap().success());
    });
    let _ = std::fs::remove_file(&go);
    // Only the first pinger's two requests, sent from its own context.
    assert_eq!(j.len(), 2, "{j:?}");
    assert!(j.iter().all(|j| j[0] == LOOPBACK_FIRST), "{j:?}");
}

/// Bad filter values: exit 2, one line naming the flag, nothing attached.
#[test]
fn bad_filter_values_are_one_line_and_exit_2() {
    let _g = lock();
    for (args, expect) in [
        (
            &["--filter-netns", "/var/run/netns/ipft-no-such-ns"][..],
            "--filter-netns",
        ),
        (&["--filter-netns", "/etc/hostname"], "not a namespace file"),
        (
            &["--filter-netns", "/proc/self/ns/uts"],
            "not a network namespace",
        ),
        (&["--filter-netns", "0"], "want a namespace inode"),
        (&["--filter-ifname", "a-name-of-16-byt"], "1 to 15 bytes"),
        (&["--filter-ifname", "a/b"], "not a valid device name"),
        (&["--filter-pid", "0"], "want a process id"),
        (&["--filter-pid", "2147483647"], "no such process"),
    ] {
        let o = Command::new(ipft())
            .args(["-m", "1"])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    assert!(wait_detached().is_empty());
}

/// The clone programs of the generic object (kprobe entry and kretprobe)
/// pass the verifier with tracking on. This host attaches no kprobes, so
/// the load is what is checked here; the kernel lab runs them.
#[test]
fn clone_programs_pass_the_verifier() {
    use ipft_runtime::attach::{capture_libbpf_log, LoadError, LoadOptions, Session};
    use ipft_runtime::{Backend, Config, ProbeEntry, ProbeKind, ProbeShape, ProgramId};
    let _g = lock();
    let row = ProbeEntry {
        shape: ProbeShape {
            kind: ProbeKind::Function,
            skb_pos: 0,
            nargs: 2,
            ..Default::default()
        },
        backend: Backend::Kprobe,
        program: ProgramId::CloneEntry { multi: false },
        return_program: Some(ProgramId::CloneReturn { multi: false }),
        hidden: true,
        ..ProbeEntry::tracepoint("skb_clone", 0, 2, ProgramId::CloneEntry { multi: false })
    };
    assert!(row.follows_clones());
    capture_libbpf_log();
    let opts = LoadOptions {
        config: Config {
            mark: MARK,
            mask: !0,
            wakeup_bytes: 1,
            track: 1,
            ..Config::default()
        },
        ..Default::default()
    };
    match Session::generic(ipft::GENERIC_OBJECT, &[row], opts, &mut |_| true) {
        // Loaded; attaching is refused here (no kprobe PMU) or works.
        Ok(s) => {
            assert_eq!(s.attached.len() + s.failed.len(), 1);
            let loaded = our_bpf_objects();
            for name in ["name ipft_kc ", "name ipft_kcr "] {
                assert!(
                    loaded.iter().any(|l| l.contains(name)),
                    "{name} not loaded: {loaded:?}"
                );
            }
        }
        Err(e @ LoadError::Load { .. }) => panic!("the verifier refused a clone program: {e}"),
        Err(e) => panic!("{e}"),
    }
    assert!(wait_detached().is_empty());
}
