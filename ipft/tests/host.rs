//! Host end-to-end tests: real BPF programs (tp_btf here; functions where the
//! kernel allows), real packets in namespaces these tests create, exact
//! tracepoint sequences as this kernel produces them. Root only.

mod common;

use common::*;

fn ipft() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_ipft").into()
}

fn ping(ns: &Netns, args: &str) {
    let o = ns.exec(&format!("ping -q -c 2 -i 0.2 -W 2 {args}"));
    assert!(
        o.status.success(),
        "ping {args}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn loopback_marked_ping_only() {
    let _g = lock();
    let ns = Netns::new("lo");
    let t = Tracer::start(
        &ipft(),
        &["-m", "0xdeadbeef", "-b", "tp_btf", "-o", "json"],
        "lo",
    );
    ping(&ns, &format!("-m {MARK} 127.0.0.1"));
    ping(&ns, "127.0.0.1"); // unmarked, at the same time: must give nothing
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, out, err) = t.stop(libc::SIGINT);
    assert_eq!(code, 0, "{err}");
    let j = journeys(&events(&out));
    assert_eq!(
        j.len(),
        2,
        "two marked echo requests, nothing else: {j:?}\n{err}"
    );
    for journey in &j {
        assert_eq!(journey, LOOPBACK, "{err}");
    }
    assert!(err.contains("Got 2 traces"), "{err}");
    let left = wait_detached();
    assert!(left.is_empty(), "left attached: {left:?}");
}

/// A start after a cold one in the same boot reads the cold one's
/// discovery from its snapshot (IPFT_SNAPSHOT) and attaches and traces
/// exactly what the cold one did.
#[test]
fn a_warm_start_traces_as_the_cold_one() {
    let _g = lock();
    let ns = Netns::new("warm");
    let dir = std::env::temp_dir().join(format!("ipft-snapshot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let file = dir.join("discovery.json");
    let env = [("IPFT_SNAPSHOT", file.as_path())];
    let args = [
        "-m",
        "0xdeadbeef",
        "-b",
        "tp_btf",
        "-o",
        "json",
        "--timings",
    ];
    let mut runs = Vec::new();
    for warm in [false, true] {
        let t = Tracer::start_env(&ipft(), &args, "warm", &env);
        ping(&ns, &format!("-m {MARK} 127.0.0.1"));
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let (code, out, err) = t.stop(libc::SIGINT);
        assert_eq!(code, 0, "{err}");
        assert_eq!(err.contains("timing: snapshot"), warm, "warm {warm}: {err}");
        let total = err
            .lines()
            .find(|l| l.starts_with("Total "))
            .map(str::to_string);
        runs.push((journeys(&events(&out)), total.expect("a summary line")));
        // The cold start saves on a thread of its own as it starts.
        assert!(file.exists(), "no snapshot after the cold start: {err}");
    }
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[1].0, vec![LOOPBACK.to_vec(); 2]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn aggregate_output_groups_per_packet() {
    let _g = lock();
    let ns = Netns::new("agg");
    let t = Tracer::start(
        &ipft(),
        &["-m", "0xbeef", "--mask", "0xffff", "-b", "tp_btf"],
        "agg",
    );
    ping(&ns, &format!("-m {} 127.0.0.1", 0x1234beef));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, out, err) = t.stop(libc::SIGTERM);
    assert_eq!(code, 0, "{err}");
    let blocks: Vec<&str> = out
        .split("===\n")
        .filter(|b| !b.trim().is_empty())
        .collect();
    assert_eq!(blocks.len(), 2, "{out}");
    for b in blocks {
        let funcs: Vec<&str> = b
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().nth(3).unwrap())
            .collect();
        assert_eq!(funcs, LOOPBACK, "{out}");
    }
}

#[test]
fn veth_between_namespaces() {
    let _g = lock();
    let a = Netns::new("va");
    let b = Netns::new("vb");
    veth_pair(&a, &b, "ipftv", "10.199.0");
    // The mark is scrubbed when the skb changes namespace: mark in b too.
    must(&format!(
        "ip netns exec {} iptables -t raw -A PREROUTING -p icmp --icmp-type echo-request -j MARK --set-mark {MARK}",
        b.0
    ));
    ping(&a, "10.199.0.2"); // resolve neighbours before tracing
    let t = Tracer::start(
        &ipft(),
        &["-m", "0xdeadbeef", "-b", "tp_btf", "-o", "json"],
        "veth",
    );
    ping(&a, "10.199.0.2");
    ping(&b, "10.199.0.1"); // unmarked in both namespaces
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, out, err) = t.stop(libc::SIGINT);
    assert_eq!(code, 0, "{err}");
    let j = journeys(&events(&out));
    assert_eq!(j.len(), 2, "{j:?}");
    for journey in &j {
        // TX in the first namespace; the receive tracepoints run before
        // PREROUTING marks it again; consumed after the reply is built.
        assert_eq!(
            journey,
            &["net_dev_queue", "net_dev_start_xmit", "consume_skb"]
        );
    }
}

#[test]
fn signals_and_kill_leave_nothing_attached() {
    let _g = lock();
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGKILL] {
        let t = Tracer::start(&ipft(), &["-m", "0xdeadbeef", "-b", "tp_btf"], "sig");
        assert!(
            !our_bpf_objects().is_empty(),
            "programs should be attached while tracing"
        );
        let (code, _, err) = t.stop(sig);
        if sig != libc::SIGKILL {
            assert_eq!(code, 0, "{err}");
            assert!(err.contains("Got 0 traces"), "{err}");
        }
        // fd-based links: the kernel releases them once the process is gone.
        let left = wait_detached();
        assert!(left.is_empty(), "after signal {sig}: {left:?}");
    }
}

/// Run ipft with bad input: exit 2, one line on stderr, nothing attached.
fn bad(args: &[&str], expect: &str) {
    let o = std::process::Command::new(ipft())
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(
        err.lines().count(),
        1,
        "{args:?}: one line expected, got {err}"
    );
    assert!(err.contains(expect), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(wait_detached().is_empty());
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let _g = lock();
    bad(&["-m", "0xdeadbeef", "-r", "("], "invalid regex for -r");
    bad(
        &["-m", "0xdeadbeef", "--module-regex", "[z-a]"],
        "invalid regex for --module-regex",
    );
    bad(
        &["-m", "0xdeadbeef", "-r", "^no_such_function_anywhere$"],
        "no function or tracepoint matches",
    );
    bad(&["-m", "0"], "mark 0");
    bad(&["-m", "0xdeadbeef", "--mask", "0"], "mask 0");
    bad(&["-m", "banana"], "invalid mark");
    bad(&[], "-m/--mark is required");
    bad(&["-m", "1", "-b", "uprobe"], "invalid value 'uprobe'");
    bad(&["-m", "1", "-o", "xml"], "invalid value 'xml'");
    bad(&["-m", "1", "--duration", "nan"], "--duration");
    bad(&["-m", "1", "--duration", "-1"], "--duration");
    bad(&["-m", "1", "--duration", "1e12"], "--duration");
    bad(&["-m", "0x10000", "--mask", "0xffff"], "outside mask");
    bad(&["-m", "1", "--count", "0"], "--count");
    bad(&["-m", "1", "--profile", "nope"], "unknown profile");
    bad(
        &["-m", "1", "--output-file", "/proc/nonexistent/x"],
        "--output-file /proc/nonexistent/x",
    );
    bad(
        &["-m", "1", "-t", "function_graph", "-b", "tp_btf"],
        "function_graph",
    );
    // A start that fails leaves an existing output file as it was.
    let keep = std::env::temp_dir().join(format!("ipft-keep-{}", std::process::id()));
    std::fs::write(&keep, "precious\n").unwrap();
    let k = keep.to_str().unwrap();
    bad(
        &["-m", "1", "-r", "^nope$", "--output-file", k],
        "no function",
    );
    bad(&["-m", "0", "--output-file", k], "mark 0");
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "precious\n");
    std::fs::remove_file(&keep).unwrap();
    // This host has no kprobes and refuses fentry: each is refused with
    // the kernel's reason, one line, exit 2.
    for b in ["fentry", "kprobe", "kprobe-multi"] {
        bad(
            &["-m", "1", "-b", b, "--duration", "0.1"],
            &format!("backend {b}"),
        );
    }
    // Not root.
    let o = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(ipft())
        .args(["-m", "1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("must be run as root"));
}

#[test]
fn list_is_ipftrace2_style() {
    let o = std::process::Command::new(ipft())
        .args(["-l"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["NAME", "MODULE", "ADDR", "SKB_POSITION"]
    );
    let ip_rcv = out
        .lines()
        .find(|l| l.starts_with("ip_rcv "))
        .expect("ip_rcv listed");
    let cols: Vec<&str> = ip_rcv.split_whitespace().collect();
    assert_eq!((cols[1], cols[3]), ("vmlinux", "1"));
    assert!(cols[2].starts_with("0x") && cols[2] != "0x0000000000000000");
}

/// SIGINT while probes are being attached stops attaching, detaches what
/// was attached and exits 0. The signal is sent when `--timings` prints
/// discovery's last lap, which comes right before the object load: the
/// load and the copies for every skb tracepoint take far longer than the
/// signal takes to land, so a sleep's guess at the start time is not needed.
#[test]
fn signal_during_attach_detaches_and_exits_cleanly() {
    use std::io::{BufRead, Read};
    let _g = lock();
    let mut interrupted = 0;
    for round in 0..3 {
        let mut child = std::process::Command::new(ipft())
            .args(["-m", "0xdeadbeef", "-b", "tp_btf", "--duration", "30"])
            .arg("--timings")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut err = String::new();
        while !err.contains("timing: discovery ") {
            if stderr.read_line(&mut err).unwrap() == 0 {
                panic!("round {round}: no discovery timings: {err}");
            }
        }
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        stderr.read_to_string(&mut err).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "round {round}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        if err.contains("interrupted while attaching") {
            interrupted += 1;
        } else {
            assert!(err.contains("Got 0 traces"), "round {round}: {err}");
        }
        let left = wait_detached();
        assert!(left.is_empty(), "round {round}: left attached: {left:?}");
    }
    assert!(interrupted > 0, "no signal landed during attach");
}

/// Two tracers with different marks at once: each sees only its own packets.
#[test]
fn two_tracers_each_see_their_own_packets() {
    let _g = lock();
    let ns = Netns::new("two");
    let args = |m: &'static str| ["-m", m, "-b", "tp_btf", "-o", "json"];
    let a = Tracer::start(&ipft(), &args("0x1111"), "two-a");
    let b = Tracer::start(&ipft(), &args("0x2222"), "two-b");
    ns.exec("ping -c 2 -i 0.2 -m 4369 127.0.0.1");
    ns.exec("ping -c 3 -i 0.2 -m 8738 127.0.0.1");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let packets = |out: &str| {
        let mut ids: Vec<u64> = out
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter_map(|v| v["packet_id"].as_u64())
            .collect();
        ids.dedup();
        ids.len()
    };
    let (ca, oa, ea) = a.stop(libc::SIGINT);
    let (cb, ob, eb) = b.stop(libc::SIGINT);
    assert_eq!((ca, cb), (0, 0), "{ea}\n{eb}");
    // SO_MARK marks the echo requests (the replies are not marked).
    assert_eq!(packets(&oa), 2, "tracer a:\n{oa}");
    assert_eq!(packets(&ob), 3, "tracer b:\n{ob}");
    assert!(wait_detached().is_empty());
}

/// Events written into one trace, and losses it reports about itself.
fn written_and_lost(out: &str) -> (u64, u64) {
    let (mut written, mut lost) = (0, 0);
    for l in out.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        match v["lost_events"].as_u64() {
            Some(n) => lost += n,
            None => written += 1,
        }
    }
    (written, lost)
}

/// A ring buffer too small for a marked ping flood (its reader stopped
/// meanwhile) loses events, and the trace says how many: what it wrote plus
/// what it reports lost is every hit, as counted by the same flood traced
/// with a buffer large enough.
#[test]
fn forced_losses_are_all_reported() {
    let _g = lock();
    let ns = Netns::new("loss");
    let flood = "ping -f -c 300 -m 3735928559 127.0.0.1";
    let mut runs = Vec::new();
    for size in ["16777216", "4096"] {
        let args = [
            "-m",
            "0xdeadbeef",
            "-b",
            "tp_btf",
            "-o",
            "json",
            "--ring-buffer-size",
            size,
        ];
        let t = Tracer::start(&ipft(), &args, "loss");
        // The reader is stopped during the flood: only the buffer holds events.
        let pid = t.child.id() as i32;
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let o = ns.exec(flood);
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let (code, out, err) = t.stop(libc::SIGINT);
        assert_eq!(code, 0, "{err}");
        runs.push((written_and_lost(&out), err));
    }
    let ((hits, lost_big), _) = &runs[0];
    let ((written, lost), err) = &runs[1];
    assert_eq!(*lost_big, 0, "the large buffer lost events");
    assert!(*hits >= 300, "too few events for 300 pings: {hits}");
    assert!(*lost > 0, "a 4 KiB buffer lost nothing: {written} written");
    assert_eq!(
        written + lost,
        *hits,
        "written {written} + lost {lost} != hits {hits}"
    );
    assert!(err.contains("events lost"), "{err}");
    assert!(wait_detached().is_empty());
}

/// A write error (a full disk) is one line, a non-zero exit and a clean
/// detach; --count stops after exactly N packets are written.
#[test]
fn output_errors_and_count() {
    let _g = lock();
    let ns = Netns::new("full");
    let ready = std::env::temp_dir().join(format!("ipft-full-ready-{}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let child = std::process::Command::new(ipft())
        .args([
            "-m",
            "0xdeadbeef",
            "-b",
            "tp_btf",
            "--output-file",
            "/dev/full",
            "--ready-file",
        ])
        .arg(&ready)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..300 {
        if ready.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Enough packets to fill the 64 KiB output buffer.
    let p = ns.exec("ping -f -c 400 -m 3735928559 127.0.0.1");
    assert!(p.status.success());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.lines().any(|l| l.starts_with("ipft: writing output: ")),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(wait_detached().is_empty());
    let _ = std::fs::remove_file(&ready);

    let t = Tracer::start(
        &ipft(),
        &[
            "-m",
            "0xdeadbeef",
            "-b",
            "tp_btf",
            "-o",
            "json",
            "--count",
            "1",
        ],
        "count",
    );
    ns.exec("ping -c 3 -i 0.2 -m 3735928559 127.0.0.1");
    let (code, out, err) = t.stop(libc::SIGINT);
    assert_eq!(code, 0, "{err}");
    let mut ids: Vec<u64> = events(&out)
        .iter()
        .filter_map(|e| e["packet_id"].as_u64())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 1, "--count 1 wrote {} packets", ids.len());
    assert!(wait_detached().is_empty());
}
