//! `ipft-bench per-hit`: in-kernel cost per tracepoint hit of ipft's
//! programs against an ipftrace2-style program and an empty one, all
//! attached at once to the same tracepoints and fed the same ping flood,
//! timed by the kernel's own bpf_stats (run_time_ns / run_cnt).

use super::*;

pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

/// Programs compared; `Empty` is the stats overhead subtracted from the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Group {
    Empty,
    Floor,
    Ipft,
    Ipft2Style,
}

impl Group {
    const ALL: [Group; 4] = [Group::Empty, Group::Floor, Group::Ipft, Group::Ipft2Style];

    fn label(self) -> &'static str {
        match self {
            Group::Empty => "empty tp_btf (stats overhead)",
            Group::Floor => "floor (mark test + reserve/submit)",
            Group::Ipft => "ipft (generic ipft_gt0)",
            Group::Ipft2Style => "ipftrace2-style",
        }
    }
}

/// Keeps the kernel's run-time stats on while held; the kernel turns them
/// off again when the fd closes, even if this process is killed, so the
/// sysctl is never left changed.
struct StatsGuard {
    _fd: OwnedFd,
}

impl StatsGuard {
    fn enable() -> Result<Self> {
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
struct Netns(String);

impl Netns {
    fn create() -> Result<Self> {
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

/// Counters the consumer threads fill.
#[derive(Default)]
struct Counts {
    floor: AtomicU64,
    ipft: AtomicU64,
    ipft2: AtomicU64,
    ipft2_lost: AtomicU64,
}

/// Reader threads; stopped, drained and joined on drop.
struct Consumers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<()>>>,
}

impl Consumers {
    /// Start both readers and wait until their buffers are mapped, so no
    /// event of the first phase is produced before someone listens.
    fn start(
        ringbuf: MapHandle,
        floor: MapHandle,
        perf: MapHandle,
        counts: Arc<Counts>,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<Result<()>>();
        let mut c = Consumers {
            stop: Arc::clone(&stop),
            threads: Vec::new(),
        };
        {
            // ipft's reader, as trace.rs: the programs wake it once 64 KiB are
            // queued, otherwise it polls every 100 ms.
            let (stop, counts, tx) = (Arc::clone(&stop), Arc::clone(&counts), tx.clone());
            c.threads.push(std::thread::spawn(move || {
                let mut b = RingBufferBuilder::new();
                let c2 = Arc::clone(&counts);
                let built = b
                    .add(&ringbuf, |_: &[u8]| {
                        counts.ipft.fetch_add(1, Ordering::Relaxed);
                        0
                    })
                    .and_then(|b| {
                        b.add(&floor, move |_: &[u8]| {
                            c2.floor.fetch_add(1, Ordering::Relaxed);
                            0
                        })
                    })
                    .map(|_| ())
                    .and_then(|_| b.build());
                let rb = match built {
                    Ok(rb) => {
                        let _ = tx.send(Ok(()));
                        rb
                    }
                    Err(e) => {
                        let _ = tx.send(Err(anyhow!("ring buffer: {e}")));
                        return Ok(());
                    }
                };
                while !stop.load(Ordering::Relaxed) {
                    rb.poll(Duration::from_millis(100))?;
                }
                rb.consume()?;
                Ok(())
            }));
        }
        {
            // ipftrace2's reader: a perf buffer, 8 pages per CPU, woken per event.
            let (stop, tx) = (Arc::clone(&stop), tx);
            c.threads.push(std::thread::spawn(move || {
                let (c1, c2) = (Arc::clone(&counts), Arc::clone(&counts));
                let built = PerfBufferBuilder::new(&perf)
                    .pages(8)
                    .sample_cb(move |_cpu, _data: &[u8]| {
                        c1.ipft2.fetch_add(1, Ordering::Relaxed);
                    })
                    .lost_cb(move |_cpu, n| {
                        c2.ipft2_lost.fetch_add(n, Ordering::Relaxed);
                    })
                    .build();
                let pb = match built {
                    Ok(pb) => {
                        let _ = tx.send(Ok(()));
                        pb
                    }
                    Err(e) => {
                        let _ = tx.send(Err(anyhow!("perf buffer: {e}")));
                        return Ok(());
                    }
                };
                while !stop.load(Ordering::Relaxed) {
                    pb.poll(Duration::from_millis(100))?;
                }
                pb.consume()?;
                Ok(())
            }));
        }
        for _ in 0..2 {
            rx.recv().context("consumer thread died")??;
        }
        Ok(c)
    }

    fn finish(&mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join()
                .map_err(|_| anyhow!("consumer thread panicked"))?
                .context("consumer")?;
        }
        Ok(())
    }
}

impl Drop for Consumers {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Cumulative (run_time_ns, run_cnt) per group.
type Snapshot = HashMap<Group, (u64, u64)>;

fn snapshot(ids: &HashMap<u32, Group>) -> Snapshot {
    let mut s: Snapshot = Group::ALL.iter().map(|&g| (g, (0, 0))).collect();
    for info in ProgInfoIter::default() {
        if let Some(g) = ids.get(&info.id) {
            let e = s.entry(*g).or_default();
            e.0 += info.run_time_ns;
            e.1 += info.run_cnt;
        }
    }
    s
}

/// One phase's (ns per hit gross, hits) per group.
type Phase = HashMap<Group, (f64, u64)>;

fn delta(before: &Snapshot, after: &Snapshot) -> Phase {
    Group::ALL
        .iter()
        .map(|&g| {
            let (t0, c0) = before[&g];
            let (t1, c1) = after[&g];
            let cnt = c1.saturating_sub(c0);
            let ns = t1.saturating_sub(t0) as f64 / cnt.max(1) as f64;
            (g, (ns, cnt))
        })
        .collect()
}

/// Flood-ping loopback inside `ns`, marked or not; returns when ping exits.
fn ping(ns: &str, count: u32, seconds: u32, mark: Option<u32>, stop: &AtomicBool) -> Result<()> {
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

fn open_bench_object() -> Result<Object> {
    let mut b = ObjectBuilder::default();
    let open = b
        .open_memory(BENCH_OBJECT)
        .context("opening the reference object")?;
    let obj = open.load().context("loading the reference programs")?;
    let cfg = obj
        .maps()
        .find(|m| m.name() == "ipft2_config")
        .ok_or_else(|| anyhow!("ipft2_config map missing"))?;
    let mut v = [0u8; 8];
    v[..4].copy_from_slice(&MARK.to_ne_bytes());
    v[4..].copy_from_slice(&u32::MAX.to_ne_bytes());
    cfg.update(&0u32.to_ne_bytes(), &v, MapFlags::ANY)
        .context("writing the ipftrace2-style config")?;
    Ok(obj)
}

/// Rows for ipft's generic object: tp_btf, skb is the first argument, so
/// both map to `ipft_gt0` (one loaded copy per tracepoint).
fn ipft_table() -> Vec<ProbeEntry> {
    TRACEPOINTS
        .iter()
        .map(|tp| ProbeEntry {
            name: (*tp).into(),
            module: None,
            shape: ProbeShape {
                kind: ProbeKind::Tracepoint,
                nargs: 1,
                ..Default::default()
            },
            backend: Backend::TpBtf,
            btf_id: 0,
            program: ProgramId::Generic {
                kind: TypedKind::Tracepoint,
                skb: 0,
                reason: None,
                end: false,
            },
            return_program: None,
            ends_journey: false,
            hidden: false,
        })
        .collect()
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(crate) fn per_hit(seconds: u32, count: u32, rounds: usize) -> Result<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("per-hit must run as root (BPF, network namespaces)");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    load::capture_libbpf_log();

    // Declaration order is teardown order reversed: readers stop, programs
    // detach, the namespace goes, stats switch off.
    let _stats = StatsGuard::enable()?;
    let ns = Netns::create()?;

    let bench = open_bench_object()?;
    let mut ids: HashMap<u32, Group> = HashMap::new();
    let mut links: Vec<Link> = Vec::new();
    for p in bench.progs_mut() {
        let name = p.name().to_string_lossy().into_owned();
        let g = if name.starts_with("bench_empty") {
            Group::Empty
        } else if name.starts_with("bench_floor") {
            Group::Floor
        } else {
            Group::Ipft2Style
        };
        ids.insert(Program::id_from_fd(p.as_fd())?, g);
        links.push(
            p.attach_trace()
                .with_context(|| format!("attaching {name}"))?,
        );
    }

    let table = ipft_table();
    let cfg = Config {
        mark: MARK,
        mask: u32::MAX,
        wakeup_bytes: 1 << 16,
        probe: 0,
        graph: 0,
    };
    let session = Session::generic(
        ipft::GENERIC_OBJECT,
        &table,
        load::LoadOptions {
            config: cfg,
            ring_buffer_bytes: None,
            btf: None,
        },
        &mut |_| true,
    )?;
    if session.attached.len() != table.len() {
        bail!(
            "ipft attached {} of {}: {:?}",
            session.attached.len(),
            table.len(),
            session.failed
        );
    }
    let ring = session
        .main_object()
        .maps()
        .find(|m| m.name() == "ipft_events")
        .ok_or_else(|| anyhow!("ipft_events missing"))?;
    // ipft's per-tracepoint copies live inside the Session: find them as the
    // ipft_gt0 programs using this session's ring buffer.
    let ring_id = ring.info()?.info.id;
    let before = ids.len();
    for info in ProgInfoIter::with_query_opts(ProgInfoQueryOptions::default().include_map_ids(true))
    {
        if info.name.to_string_lossy() == "ipft_gt0" && info.map_ids.contains(&ring_id) {
            ids.insert(info.id, Group::Ipft);
        }
    }
    if ids.len() - before != TRACEPOINTS.len() {
        bail!(
            "found {} ipft programs, expected {}",
            ids.len() - before,
            TRACEPOINTS.len()
        );
    }
    let perf = bench
        .maps()
        .find(|m| m.name() == "ipft2_events")
        .ok_or_else(|| anyhow!("ipft2_events missing"))?;
    let floor = bench
        .maps()
        .find(|m| m.name() == "floor_events")
        .ok_or_else(|| anyhow!("floor_events missing"))?;
    let counts = Arc::new(Counts::default());
    let mut consumers = Consumers::start(
        MapHandle::try_from(&ring)?,
        MapHandle::try_from(&floor)?,
        MapHandle::try_from(&perf)?,
        Arc::clone(&counts),
    )?;

    eprintln!(
        "attached empty, ipft and ipftrace2-style to tp_btf {}; {rounds} round(s) of {count} flood pings, unmarked then -m {MARK}",
        TRACEPOINTS.join(", ")
    );
    let mut phases: [Vec<Phase>; 2] = [Vec::new(), Vec::new()];
    let t0 = Instant::now();
    for _ in 0..rounds {
        for (i, mark) in [None, Some(MARK)].into_iter().enumerate() {
            let s0 = snapshot(&ids);
            ping(&ns.0, count, seconds, mark, &stop)?;
            let s1 = snapshot(&ids);
            phases[i].push(delta(&s0, &s1));
        }
    }
    let elapsed = t0.elapsed();
    consumers.finish()?;
    let ipft_lost = load::bpf_losses(session.main_object()).ring_buffer;
    drop(consumers);
    drop(session);
    drop(links);

    Ok(report(&phases, &counts, ipft_lost, elapsed))
}

fn report(phases: &[Vec<Phase>; 2], counts: &Counts, ipft_lost: u64, elapsed: Duration) -> String {
    let mut out = String::new();
    // Per round: gross, and net of the empty program of the same round.
    let gross = |p: usize, g: Group| median(phases[p].iter().map(|r| r[&g].0).collect());
    let net = |p: usize, g: Group| {
        median(
            phases[p]
                .iter()
                .map(|r| r[&g].0 - r[&Group::Empty].0)
                .collect(),
        )
    };
    let hits = |p: usize| -> u64 { phases[p].iter().map(|r| r[&Group::Empty].1).sum() };
    outln!(
        out,
        "hits per program: non-matching {}, matching {} ({} rounds, {:.1}s)",
        hits(0),
        hits(1),
        phases[0].len(),
        elapsed.as_secs_f64()
    );
    outln!(out);
    outln!(
        out,
        "{:<32} {:>22} {:>22} {:>16} {:>12}",
        "program",
        "non-matching ns/hit",
        "matching ns/hit",
        "events received",
        "events lost"
    );
    for g in [Group::Floor, Group::Ipft, Group::Ipft2Style] {
        let (rx, lost) = match g {
            Group::Floor => (counts.floor.load(Ordering::Relaxed), 0),
            Group::Ipft => (counts.ipft.load(Ordering::Relaxed), ipft_lost),
            _ => (
                counts.ipft2.load(Ordering::Relaxed),
                counts.ipft2_lost.load(Ordering::Relaxed),
            ),
        };
        outln!(
            out,
            "{:<32} {:>22.1} {:>22.1} {:>16} {:>12}",
            g.label(),
            net(0, g),
            net(1, g),
            rx,
            lost
        );
    }
    outln!(
        out,
        "(net of the empty program in the same run; medians over rounds)"
    );
    outln!(out);
    outln!(out, "gross (bpf_stats as read):");
    for g in Group::ALL {
        outln!(
            out,
            "{:<32} {:>22.1} {:>22.1}",
            g.label(),
            gross(0, g),
            gross(1, g)
        );
    }
    outln!(out);
    let ratio = |p: usize| {
        let d = net(p, Group::Ipft2Style);
        if d > 0.0 {
            format!("{:.3}", net(p, Group::Ipft) / d)
        } else {
            "n/a (ipftrace2-style net <= 0)".into()
        }
    };
    outln!(
        out,
        "ipft / ipftrace2-style (net): non-matching {}, matching {}",
        ratio(0),
        ratio(1)
    );
    let m = net(1, Group::Ipft) / net(1, Group::Ipft2Style);
    outln!(
        out,
        "goals: matching <= 0.5x ipftrace2-style {}; non-matching <= 30 ns/hit {}",
        verdict(m.is_finite() && m <= 0.5),
        verdict(net(0, Group::Ipft) <= 30.0)
    );
    let (n, m, f) = (
        net(0, Group::Ipft),
        net(1, Group::Ipft),
        net(1, Group::Floor),
    );
    outln!(
        out,
        "goals (issue): matching <= 1.3x floor {}; non-matching <= 5 ns {}; 0 lost {}",
        verdict(f > 0.0 && m / f <= 1.3),
        verdict(n <= 5.0),
        verdict(ipft_lost == 0)
    );
    outln!(
        out,
        "per-hit: ipft non-matching {n:.1} ns, matching {m:.1} ns, floor {f:.1} ns (M/F = {:.2})",
        m / f
    );
    out
}
