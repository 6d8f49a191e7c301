//! `ipft-bench per-hit`: in-kernel cost per tracepoint hit of ipft's
//! programs against an ipftrace2-style program and an empty one, all
//! attached at once to the same tracepoints and fed the same ping flood,
//! timed by the kernel's own bpf_stats (run_time_ns / run_cnt).

use super::host::{ping, Netns, StatsGuard};
use super::*;

mod report;
use report::report;

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
    Stamped,
    Ipft,
    Copies,
    Track,
    PcapMatch,
    PcapMiss,
    Generated,
    Extension,
    Meta,
    Capture,
    Ipft2Style,
}

impl Group {
    const ALL: [Group; 13] = [
        Group::Empty,
        Group::Floor,
        Group::Stamped,
        Group::Ipft,
        Group::Copies,
        Group::Track,
        Group::PcapMatch,
        Group::PcapMiss,
        Group::Generated,
        Group::Extension,
        Group::Meta,
        Group::Capture,
        Group::Ipft2Style,
    ];

    fn label(self) -> &'static str {
        match self {
            Group::Empty => "empty tp_btf (stats overhead)",
            Group::Floor => "floor (mark test + reserve/submit)",
            Group::Stamped => "floor + the event's timestamp",
            Group::Ipft => "ipft (generic, as ipft runs it)",
            Group::Copies => "ipft, a tp_btf copy each",
            Group::Track => "ipft --track-skb",
            Group::PcapMatch => "ipft 'icmp' (matching filter)",
            Group::PcapMiss => "ipft 'udp' (non-matching filter)",
            Group::Generated => "generated tracer (specialised)",
            Group::Extension => "ipft -e len (64-byte payload)",
            Group::Meta => "ipft --output-meta --output-tuple",
            Group::Capture => "ipft --output-stack --output-pcap",
            Group::Ipft2Style => "ipftrace2-style",
        }
    }
}

/// Events received per ring buffer group, and the perf buffer's losses.
#[derive(Default)]
struct Counts {
    rx: [AtomicU64; Group::ALL.len()],
    ipft2_lost: AtomicU64,
}

impl Counts {
    fn of(&self, g: Group) -> &AtomicU64 {
        &self.rx[g as usize]
    }
}

/// Reader threads; stopped, drained and joined on drop.
struct Consumers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<()>>>,
}

impl Consumers {
    /// Start both readers and wait until their buffers are mapped, so no
    /// event of the first phase is produced before someone listens.
    fn start(rings: Vec<(MapHandle, Group)>, perf: MapHandle, counts: Arc<Counts>) -> Result<Self> {
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
                let mut added = Ok(());
                for (map, g) in &rings {
                    let counts = Arc::clone(&counts);
                    added = added.and_then(|()| {
                        b.add(map, move |_: &[u8]| {
                            counts.of(*g).fetch_add(1, Ordering::Relaxed);
                            0
                        })
                        .map(|_| ())
                    });
                }
                let built = added.and_then(|()| b.build());
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
                    rb.poll(Duration::from_millis(50))?;
                    rb.consume()?;
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
                        c1.of(Group::Ipft2Style).fetch_add(1, Ordering::Relaxed);
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
        } else if name.starts_with("bench_stamped") {
            Group::Stamped
        } else {
            Group::Ipft2Style
        };
        ids.insert(Program::id_from_fd(p.as_fd())?, g);
        links.push(
            p.attach_trace()
                .with_context(|| format!("attaching {name}"))?,
        );
    }

    let table = sessions::ipft_table(false);
    let copies = sessions::ipft_table(true);
    // ipft_gp0 (raw_tp, every tracepoint) on Linux 6.10+, else ipft_gt0.
    let prog = table[0].program.to_string();
    let prog = Some(prog.as_str());
    let cfg = Config {
        mark: MARK,
        mask: u32::MAX,
        // As ipft sets it for its default ring.
        wakeup_bytes: ipft_runtime::tracer::wakeup_bytes(None, false),
        ..Config::default()
    };
    // ipft's per-tracepoint copies live inside each Session: they are the
    // ipft_gt0 programs using its ring buffer. With --track-skb a miss also
    // looks the skb up in the live set, which the release tracepoints keep
    // clean (as in ipft on tp_btf). The filters are ANDed with the mark: the
    // flood is ICMP, so 'icmp' matches and 'udp' never does.
    let tracking = Config { track: 1, ..cfg };
    let meta = Config {
        meta: 1,
        tuple: 1,
        ..cfg
    };
    let capture = Config {
        stack: 1,
        snaplen: 1514,
        ..cfg
    };
    let sessions: Vec<(Group, Option<&str>, Session)> = vec![
        (Group::Ipft, prog, sessions::generic(&table, cfg, None)?),
        (
            Group::Copies,
            Some("ipft_gt0"),
            sessions::generic(&copies, cfg, None)?,
        ),
        (
            Group::Track,
            prog,
            sessions::generic(&sessions::with_releases(&table), tracking, None)?,
        ),
        (
            Group::PcapMatch,
            prog,
            sessions::generic(&table, cfg, Some("icmp"))?,
        ),
        (
            Group::PcapMiss,
            prog,
            sessions::generic(&table, cfg, Some("udp"))?,
        ),
        (Group::Generated, None, generated::load(cfg)?),
        (
            Group::Extension,
            None,
            sessions::with_extension(cfg, &table)?,
        ),
        (Group::Meta, prog, sessions::generic(&table, meta, None)?),
        (
            Group::Capture,
            prog,
            sessions::generic(&table, capture, None)?,
        ),
    ];
    let mut rings = Vec::new();
    let raw = table[0].program.is_raw_tracepoint();
    for (g, name, s) in &sessions {
        let raw = raw && !matches!(g, Group::Copies | Group::Generated);
        rings.push((claim(s, *g, *name, raw, &mut ids)?, *g));
    }
    let perf = bench
        .maps()
        .find(|m| m.name() == "ipft2_events")
        .ok_or_else(|| anyhow!("ipft2_events missing"))?;
    let floor = bench
        .maps()
        .find(|m| m.name() == "floor_events")
        .ok_or_else(|| anyhow!("floor_events missing"))?;
    let stamped = bench
        .maps()
        .find(|m| m.name() == "stamped_events")
        .ok_or_else(|| anyhow!("stamped_events missing"))?;
    let counts = Arc::new(Counts::default());
    rings.push((floor, Group::Floor));
    rings.push((stamped, Group::Stamped));
    let handles = rings
        .iter()
        .map(|(m, g)| Ok((MapHandle::try_from(m)?, *g)))
        .collect::<Result<Vec<_>>>()?;
    let mut consumers =
        Consumers::start(handles, MapHandle::try_from(&perf)?, Arc::clone(&counts))?;

    eprintln!(
        "attached empty, floor, ipft, ipft --track-skb, filters, a generated tracer, ipft with an extension, with details and ipftrace2-style to tp_btf {}; {rounds} round(s) of {count} flood pings, unmarked then -m {MARK}",
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
    let lost: HashMap<Group, u64> = sessions
        .iter()
        .map(|(g, _, s)| (*g, load::bpf_losses(s.main_object()).ring_buffer))
        .collect();
    drop(consumers);
    drop(rings);
    drop(sessions);
    drop(links);

    Ok(report(&phases, &counts, &lost, elapsed))
}

/// The ring buffer of `s`, and its programs (named `name`, if given) for
/// `group`: one per bench tracepoint and, for ipft's generic object on a
/// kernel with tp_btf link cookies, the template the copies are loaded
/// from (attached nowhere: it adds no runs); with `raw`, the one raw_tp
/// program linked to every tracepoint.
fn claim<'s>(
    s: &'s Session,
    group: Group,
    name: Option<&str>,
    raw: bool,
    ids: &mut HashMap<u32, Group>,
) -> Result<libbpf_rs::Map<'s>> {
    let ring = s
        .main_object()
        .maps()
        .find(|m| m.name() == "ipft_events")
        .ok_or_else(|| anyhow!("{}: no ipft_events", group.label()))?;
    let ring_id = ring.info()?.info.id;
    let before = ids.len();
    for info in ProgInfoIter::with_query_opts(ProgInfoQueryOptions::default().include_map_ids(true))
    {
        if info.map_ids.contains(&ring_id) && name.is_none_or(|n| info.name.to_string_lossy() == n)
        {
            ids.insert(info.id, group);
        }
    }
    let template = group != Group::Generated && ipft_runtime::kernel::cookies().raw_tp;
    // One raw_tp program serves every tracepoint.
    let want = match raw {
        true => 1,
        false => TRACEPOINTS.len() + usize::from(template),
    };
    if ids.len() - before != want {
        bail!(
            "{}: found {} programs, expected {want}",
            group.label(),
            ids.len() - before,
        );
    }
    Ok(ring)
}
