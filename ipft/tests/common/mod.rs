//! Helpers for host end-to-end tests: a private network namespace, a tracer
//! process synchronised on its ready file, and checks that nothing of ours
//! stays attached.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const MARK: u32 = 0xdeadbeef;

/// What a marked echo request does over loopback, seen from the skb
/// tracepoints (Linux 6.x): queued, handed to the loopback driver, re-entered
/// through netif_rx, received, consumed after the ICMP reply is built.
pub const LOOPBACK: &[&str] = &[
    "net_dev_queue",
    "net_dev_start_xmit",
    "netif_rx_entry",
    "netif_rx",
    "net_dev_xmit",
    "netif_receive_skb",
    "consume_skb",
];

/// A veth pair `dev`0 in `a` (`net`.1/24) and `dev`1 in `b` (`net`.2), up,
/// and echo requests leaving `a` marked (the mark is scrubbed when the skb
/// enters `b`).
pub fn veth_pair(a: &Netns, b: &Netns, dev: &str, net: &str) {
    must(&format!(
        "ip link add {dev}0 netns {a} type veth peer name {dev}1 netns {b} && \
         ip -n {a} addr add {net}.1/24 dev {dev}0 && ip -n {b} addr add {net}.2/24 dev {dev}1 && \
         ip -n {a} link set {dev}0 up && ip -n {b} link set {dev}1 up",
        a = a.0,
        b = b.0
    ));
    must(&format!(
        "ip netns exec {} iptables -t raw -A OUTPUT -p icmp --icmp-type echo-request -j MARK --set-mark {MARK}",
        a.0
    ));
}

/// Tests that load BPF run one at a time: a parallel test would see the
/// other's programs in `bpftool prog`.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn sh(cmd: &str) -> Output {
    Command::new("sh").arg("-c").arg(cmd).output().expect("sh")
}

pub fn must(cmd: &str) {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A network namespace removed on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("ipft-t-{tag}-{}", std::process::id());
        let _ = sh(&format!("ip netns del {name} 2>/dev/null"));
        must(&format!(
            "ip netns add {name} && ip -n {name} link set lo up"
        ));
        Netns(name)
    }

    pub fn exec(&self, cmd: &str) -> Output {
        sh(&format!("ip netns exec {} {cmd}", self.0))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = sh(&format!("ip netns del {}", self.0));
    }
}

/// A running tracer.
pub struct Tracer {
    pub child: Child,
    pub out: PathBuf,
    pub ready: PathBuf,
}

impl Tracer {
    /// Start `bin args...` with --ready-file and --output-file, wait until ready.
    pub fn start(bin: &Path, args: &[&str], tag: &str) -> Tracer {
        Self::start_env(bin, args, tag, &[])
    }

    /// [`Tracer::start`] with `env` added to the tracer's environment.
    pub fn start_env(bin: &Path, args: &[&str], tag: &str, env: &[(&str, &Path)]) -> Tracer {
        let dir = std::env::temp_dir();
        let ready = dir.join(format!("ipft-ready-{tag}-{}", std::process::id()));
        let out = dir.join(format!("ipft-out-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_file(&ready);
        let child = Command::new(bin)
            .args(args)
            .arg("--ready-file")
            .arg(&ready)
            .arg("--output-file")
            .arg(&out)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tracer");
        let mut t = Tracer { child, out, ready };
        let t0 = Instant::now();
        while !t.ready.exists() {
            if let Ok(Some(st)) = t.child.try_wait() {
                let err = t.stderr();
                panic!("tracer exited before ready ({st}): {err}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "tracer not ready after 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        t
    }

    fn stderr(&mut self) -> String {
        use std::io::Read;
        let mut s = String::new();
        if let Some(e) = self.child.stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    /// Send a signal, wait for exit; returns (exit code, output, stderr).
    pub fn stop(mut self, sig: i32) -> (i32, String, String) {
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        let st = self.child.wait().expect("wait");
        let err = self.stderr();
        let out = std::fs::read_to_string(&self.out).unwrap_or_default();
        let _ = std::fs::remove_file(&self.out);
        let _ = std::fs::remove_file(&self.ready);
        (st.code().unwrap_or(-1), out, err)
    }
}

/// Names of loaded BPF programs and links that are ours (ipft_*). A
/// bpftool that fails is a failed check, never "nothing attached".
pub fn our_bpf_objects() -> Vec<String> {
    let mut text = String::new();
    for what in ["prog", "link"] {
        let o = sh(&format!("bpftool {what} show"));
        assert!(
            o.status.success(),
            "bpftool {what} show failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        text.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    text.lines()
        .filter(|l| l.contains("name ipft_") || l.contains("prog_name ipft_"))
        .map(str::to_string)
        .collect()
}

/// Wait (up to 5 s: the kernel frees programs after an RCU grace period)
/// until nothing of ours is loaded; returns what is left.
pub fn wait_detached() -> Vec<String> {
    let mut left = our_bpf_objects();
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        left = our_bpf_objects();
    }
    left
}

/// JSON events parsed from `-o json` output.
pub fn events(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Function sequence of each packet, in packet order.
pub fn journeys(evs: &[serde_json::Value]) -> Vec<Vec<String>> {
    let mut by: std::collections::BTreeMap<u64, Vec<(u64, String)>> = Default::default();
    for e in evs {
        by.entry(e["packet_id"].as_u64().unwrap())
            .or_default()
            .push((
                e["timestamp"].as_u64().unwrap(),
                e["function"].as_str().unwrap().to_string(),
            ));
    }
    by.into_values()
        .map(|mut v| {
            v.sort_by_key(|x| x.0);
            v.into_iter().map(|x| x.1).collect()
        })
        .collect()
}

/// A golden file: equal to `actual`, or written with IPFT_BLESS=1.
pub fn check_file(path: &Path, actual: &str) {
    let path = path.to_path_buf();
    if std::env::var_os("IPFT_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with IPFT_BLESS=1)", path.display()));
    assert!(
        expected == actual,
        "{} differs from generated output (IPFT_BLESS=1 to accept)",
        path.display()
    );
}
