//! The host side of `per-hit`: kernel run-time stats, a network namespace,
//! and the ping flood that feeds every program the same hits.

use super::*;

/// Keeps the kernel's run-time stats on while held; the kernel turns them
/// off again when the fd closes, even if this process is killed, so the
/// sysctl is never left changed.
pub(crate) struct StatsGuard {
    _fd: OwnedFd,
}

impl StatsGuard {
    pub(crate) fn enable() -> Result<Self> {
        // SAFETY: plain syscall wrapper, no pointers.
        let fd = unsafe {
            libbpf_rs::libbpf_sys::bpf_enable_stats(libbpf_rs::libbpf_sys::BPF_STATS_RUN_TIME)
        };
        if fd < 0 {
            bail!(
                "BPF_ENABLE_STATS failed: {}",
                std::io::Error::from_raw_os_error(-fd)
            );
        }
        // SAFETY: fd was just returned to us and is owned by nobody else.
        Ok(StatsGuard {
            _fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }
}

/// A network namespace with loopback up, deleted on drop.
pub(crate) struct Netns(pub(crate) String);

impl Netns {
    pub(crate) fn create() -> Result<Self> {
        let name = format!("ipft-bench-{}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        let ns = Netns(name);
        run("ip", &["-n", &ns.0, "link", "set", "lo", "up"])?;
        // Echo replies carry the request's mark, so in the matching phase
        // every hit in the namespace matches (not only the requests).
        run(
            "ip",
            &[
                "netns",
                "exec",
                &ns.0,
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv4/fwmark_reflect",
            ],
        )?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = run("ip", &["netns", "del", &self.0]) {
            eprintln!("ipft-bench: {e:#}");
        }
    }
}

fn run(cmd: &str, args: &[&str]) -> Result<()> {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !o.status.success() {
        bail!(
            "{cmd} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

/// Flood-ping loopback inside `ns`, marked or not; returns when ping exits.
pub(crate) fn ping(
    ns: &str,
    count: u32,
    seconds: u32,
    mark: Option<u32>,
    stop: &AtomicBool,
) -> Result<()> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "ping", "-q", "-f"]).args([
        "-c",
        &count.to_string(),
        "-w",
        &seconds.to_string(),
    ]);
    if let Some(m) = mark {
        cmd.args(["-m", &m.to_string()]);
    }
    let mut child = cmd
        .arg("127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running ping")?;
    loop {
        if stop.load(Ordering::Relaxed) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("interrupted");
        }
        if let Some(st) = child.try_wait()? {
            if !st.success() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                bail!(
                    "ping {st} (fewer than {count} replies within {seconds}s?) {}",
                    err.trim()
                );
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
