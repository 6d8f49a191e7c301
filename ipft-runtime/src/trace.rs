//! Stages 6 and 7 driven end to end: validate flags, pick probes and backend,
//! attach, read the ring buffer, aggregate, print, detach.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ipft_gen::discover::{discover, BtfInput};
use ipft_gen::probe::{Backend, Filter, ProbeKind, Profile};
use libbpf_rs::{MapCore, RingBufferBuilder};

use crate::aggregate::{AggregateConfig, Aggregator, Packet};
use crate::args::{parse_u32, IpftArgs};
use crate::load::{self, Config, LoadError, Session};
use crate::output::{json::JsonSink, text::TextSink, Names, Sink};
use crate::{generic, Event, ProbeEntry, ProbeSetSpec};

/// Where the probes come from.
pub enum Source {
    /// Discovered from the running kernel, generic object (`ipft`).
    Generic,
    /// Compiled into the binary (generated tracer).
    Compiled(&'static ProbeSetSpec),
}

/// Exit code for bad input and set-up failures, as ipftrace2.
pub const EXIT_USAGE: i32 = 2;

/// Run and map errors to one line on stderr and an exit code.
pub fn main_with(args: IpftArgs, source: Source) -> i32 {
    match run(args, source) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!("ipft: {msg}");
            EXIT_USAGE
        }
    }
}

struct Validated {
    mark: u32,
    mask: u32,
    filter: Filter,
    profile: Option<Profile>,
    backend: Option<Backend>,
    json: bool,
    graph: bool,
    out: Box<dyn Write>,
}

fn validate(a: &IpftArgs) -> Result<Validated> {
    let json = match a.output.as_str() {
        "aggregate" => false,
        "json" => true,
        o => bail!("unknown output '{o}' (aggregate, json)"),
    };
    let graph = match a.tracer.as_str() {
        "function" => false,
        "function_graph" => true,
        t => bail!("unknown tracer '{t}' (function, function_graph)"),
    };
    let backend = match a.backend.as_str() {
        "auto" => None,
        b => Some(Backend::parse(b).ok_or_else(|| {
            anyhow!("unknown backend '{b}' (auto, kprobe, kprobe-multi, fentry, tp_btf)")
        })?),
    };
    if graph && backend == Some(Backend::TpBtf) {
        bail!("-t function_graph needs function returns: use -b fentry, kprobe or kprobe-multi (or auto)");
    }
    let mark = match &a.mark {
        None if a.list => 0,
        None => bail!("-m/--mark is required (the skb->mark of the packets to trace)"),
        Some(m) => parse_u32(m).ok_or_else(|| anyhow!("invalid mark '{m}'"))?,
    };
    if mark == 0 && !a.list {
        bail!("mark 0 would match every unmarked packet: choose a non-zero mark");
    }
    let mask = parse_u32(&a.mask).ok_or_else(|| anyhow!("invalid mask '{}'", a.mask))?;
    if mask == 0 {
        bail!("mask 0 matches every packet: choose a non-zero mask");
    }
    if a.extension.is_some() {
        bail!("-e/--extension: extensions are not implemented in this version");
    }
    let filter = Filter::from_flags(a.regex.as_deref(), a.module_regex.as_deref())
        .map_err(anyhow::Error::msg)?;
    let profile = a.profile.as_deref().map(Profile::load).transpose()?;
    let out: Box<dyn Write> = match &a.output_file {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .with_context(|| format!("cannot write output file {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    Ok(Validated {
        mark,
        mask,
        filter,
        profile,
        backend,
        json,
        graph,
        out,
    })
}

fn run(a: IpftArgs, source: Source) -> Result<i32> {
    let v = validate(&a)?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("must be run as root (loading BPF programs needs CAP_BPF and CAP_PERFMON)");
    }
    if a.list {
        return list(&v).map(|_| 0);
    }
    raise_nofile();
    load::capture_libbpf_log();
    let cfg = Config {
        mark: v.mark,
        mask: v.mask,
        wakeup_bytes: 1 << 16,
        graph: v.graph,
    };
    let t0 = Instant::now();
    let (session, table, note) = match source {
        Source::Generic => attach_generic(&v, cfg)?,
        Source::Compiled(spec) => attach_compiled(spec, &v, cfg)?,
    };
    let t_attach = t0.elapsed();
    summary(&session, &table, note.as_deref());
    if a.timings {
        eprintln!(
            "timing: discover+load+attach {:.3}s",
            t_attach.as_secs_f64()
        );
    }
    let reasons = drop_reasons(&table);
    let code = trace_loop(&a, v, session, &table, &reasons)?;
    Ok(code)
}

/// Every probe costs an fd or two (programs, links, perf events): lift the
/// soft open-file limit to the hard one, and the hard one as far as root may.
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let want = lim.rlim_max.max(1 << 20);
    let up = libc::rlimit {
        rlim_cur: want,
        rlim_max: want,
    };
    // SAFETY: as above; failure (no CAP_SYS_RESOURCE) falls back below.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &up) } != 0 {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

fn list(v: &Validated) -> Result<()> {
    let d = discover(&BtfInput::Running, v.profile.as_ref(), &v.filter)?;
    let syms = d.symbols.as_ref();
    let mut out = std::io::stdout().lock();
    let r: std::io::Result<()> = (|| {
        writeln!(
            out,
            "{:<48} {:<16} {:<18} SKB_POSITION",
            "NAME", "MODULE", "ADDR"
        )?;
        for p in &d.probes {
            let addr = match p.kind {
                ProbeKind::Function => syms.and_then(|s| s.text.get(&p.name)).map_or(0, |e| e.0),
                ProbeKind::Tracepoint => 0,
            };
            let name = match p.kind {
                ProbeKind::Function => p.name.clone(),
                ProbeKind::Tracepoint => format!("tp_btf:{}", p.name),
            };
            writeln!(
                out,
                "{:<48} {:<16} 0x{:016x} {}",
                name,
                p.module.as_deref().unwrap_or("vmlinux"),
                addr,
                p.skb_pos() + 1
            )?;
        }
        Ok(())
    })();
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn progress_bar(total: usize) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::with_draw_target(
        Some(total as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    pb.set_style(
        indicatif::ProgressStyle::with_template("Attaching {bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb
}

fn attach_generic(
    v: &Validated,
    cfg: Config,
) -> Result<(Session, Vec<ProbeEntry>, Option<String>)> {
    let all_profile;
    let profile = match &v.profile {
        Some(p) => p,
        None => {
            all_profile = Profile::load("all")?;
            &all_profile
        }
    };
    let d = discover(&BtfInput::Running, Some(profile), &v.filter)?;
    if d.probes.is_empty() {
        bail!(
            "no function or tracepoint matches the selection ({} dropped as untraceable)",
            d.untraceable
        );
    }
    let avail = d.availability.clone().unwrap_or_default();
    let refused = |b: Backend| {
        avail
            .refused
            .iter()
            .find(|(x, _)| *x == b)
            .map(|(_, r)| r.clone())
    };
    if let Some(b) = v.backend.filter(|b| b.for_functions()) {
        if let Some(r) = refused(b) {
            bail!("backend {b} is unsupported by this kernel: {r}");
        }
    }
    let candidates: Vec<Backend> = match v.backend {
        Some(Backend::TpBtf) => vec![],
        Some(b) => vec![b],
        None => avail.function_backends(),
    };
    let has_functions = d.probes.iter().any(|p| p.kind == ProbeKind::Function);
    let mut why_not: Vec<String> = avail
        .refused
        .iter()
        .map(|(b, r)| format!("{b}: {r}"))
        .collect();
    if has_functions {
        for b in &candidates {
            let (table, skipped) = with_end_markers(&d.probes, &d.end_markers, Some(*b));
            if !table.iter().any(|e| e.backend == *b) {
                why_not.push(format!("{b}: no selected function reachable"));
                continue;
            }
            let pb = progress_bar(table.len());
            let r = Session::generic(crate::GENERIC_OBJECT, &table, cfg, v.graph, &mut |n| {
                pb.set_position(n as u64)
            });
            pb.finish_and_clear();
            match r {
                Ok(s) if s.attached.iter().any(|&i| table[i].backend == *b) => {
                    let mut s = s;
                    s.filtered = discovered(&d).saturating_sub(table.len() + skipped.len());
                    s.skipped = skipped;
                    return Ok((s, table, None));
                }
                Ok(s) => {
                    let first = s.failed.first().map(|f| f.1.clone()).unwrap_or_default();
                    why_not.push(format!("{b}: {first}"));
                }
                Err(LoadError::Unavailable { backend, reason }) => {
                    why_not.push(format!("{backend}: {reason}"))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    if let Some(b) = v.backend.filter(|b| b.for_functions()) {
        bail!(
            "backend {b} cannot trace the selection on this kernel: {}",
            if why_not.is_empty() {
                "no selected function is reachable with it".to_string()
            } else {
                why_not.join("; ")
            }
        );
    }
    // No function backend: BTF tracepoints (of the profile, else all of them).
    let mut probes: Vec<_> = d
        .probes
        .iter()
        .filter(|p| p.kind == ProbeKind::Tracepoint)
        .cloned()
        .collect();
    let mut note = None;
    if v.backend.is_none() && (has_functions || d.untraceable > 0) {
        let reason = if why_not.is_empty() {
            "no kprobe, kprobe-multi or fentry support found".to_string()
        } else {
            why_not.join("; ")
        };
        if probes.is_empty() {
            let tp = Profile::load("tracepoints")?;
            let d2 = discover(&BtfInput::Running, Some(&tp), &v.filter)?;
            probes = d2.probes;
        }
        note = Some(format!(
            "function probes unavailable ({reason}); tracing {} skb tracepoints with tp_btf",
            probes.len()
        ));
    }
    if v.graph {
        bail!("-t function_graph needs function probes (fexit or kretprobe), which this kernel refuses");
    }
    if probes.is_empty() {
        bail!("no function backend works here and no tracepoint matches the selection");
    }
    let (table, _) = with_end_markers(&probes, &d.end_markers, None);
    let pb = progress_bar(table.len());
    let s = Session::generic(crate::GENERIC_OBJECT, &table, cfg, false, &mut |n| {
        pb.set_position(n as u64)
    })?;
    pb.finish_and_clear();
    let mut s = s;
    s.filtered = discovered(&d).saturating_sub(table.len());
    Ok((s, table, note))
}

/// The table for `probes` plus the hidden probes that end journeys where
/// the skb's memory is released, so reused skb addresses start new packets
/// even when the selection has no free function.
fn with_end_markers(
    probes: &[ipft_gen::Probe],
    markers: &[ipft_gen::Probe],
    backend: Option<Backend>,
) -> (Vec<ProbeEntry>, Vec<(String, String)>) {
    let mut all = probes.to_vec();
    all.extend(ipft_gen::table::pick_end_markers(markers, probes, backend));
    generic::table_for(&all, probes.len(), backend)
}

/// The function backend a generated tracer uses: `-b` if the tracer has it,
/// else (auto) the first of fentry, kprobe-multi, kprobe that it has and the
/// running kernel accepts (a real load + attach); `None` for tracepoints only.
fn choose_compiled_backend(
    spec: &ProbeSetSpec,
    wanted: Option<Backend>,
    note: &mut Option<String>,
) -> Result<Option<Backend>> {
    let mut compiled: Vec<Backend> = spec
        .probes
        .iter()
        .map(|e| e.backend)
        .filter(|b| b.for_functions())
        .collect();
    compiled.sort();
    compiled.dedup();
    let names = || {
        compiled
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match wanted {
        Some(Backend::TpBtf) => return Ok(None),
        Some(b) if compiled.contains(&b) => return Ok(Some(b)),
        Some(b) => bail!(
            "this tracer was generated for backend(s) {}; regenerate with ipft-gen -b {b} (or -b all)",
            if compiled.is_empty() { "tp_btf".to_string() } else { names() }
        ),
        None => {}
    }
    if compiled.len() <= 1 {
        return Ok(compiled.first().copied());
    }
    let syms = ipft_gen::probe::KernelSymbols::running().context("reading /proc/kallsyms")?;
    let mut avail = syms.availability(ipft_gen::btf::running_release().as_deref());
    // fentry is probed on ip_rcv by its id in the running kernel's BTF.
    let k = ipft_gen::btf::KernelBtf::running()?;
    if let Some(id) = k
        .base
        .resolve_ids_by_name("ip_rcv")
        .ok()
        .and_then(|v| v.first().copied())
    {
        syms.confirm(&mut avail, ("ip_rcv", id));
    }
    if let Some(b) = avail
        .function_backends()
        .into_iter()
        .find(|b| compiled.contains(b))
    {
        return Ok(Some(b));
    }
    let why: Vec<String> = avail
        .refused
        .iter()
        .map(|(b, r)| format!("{b}: {r}"))
        .collect();
    let msg = format!(
        "function probes unavailable ({}); tracing tracepoints only",
        why.join("; ")
    );
    *note = Some(match note.take() {
        Some(n) => format!("{n}\n{msg}"),
        None => msg,
    });
    Ok(None)
}

/// Every skb probe the kernel's BTF has.
fn discovered(d: &ipft_gen::discover::Discovery) -> usize {
    (d.stats.skb_funcs + d.stats.skb_tracepoints) as usize
}

fn attach_compiled(
    spec: &'static ProbeSetSpec,
    v: &Validated,
    cfg: Config,
) -> Result<(Session, Vec<ProbeEntry>, Option<String>)> {
    let mut note = None;
    if let Ok(bytes) = std::fs::read("/sys/kernel/btf/vmlinux") {
        let running = ipft_gen::btf::checksum(&bytes);
        if running != spec.identity.checksum {
            note = Some(format!(
                "warning: generated for BTF {} ({}), running kernel BTF is {running}; relying on CO-RE",
                spec.identity.checksum,
                spec.identity.release.as_deref().unwrap_or(&spec.identity.source)
            ));
        }
    }
    let chosen = choose_compiled_backend(spec, v.backend, &mut note)?;
    let selected: Vec<usize> = spec
        .probes
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            if e.hidden {
                // Ends journeys whatever the selection.
                return e.backend == Backend::TpBtf || Some(e.backend) == chosen;
            }
            let module = e.module.as_deref().unwrap_or("vmlinux");
            v.filter.regex.as_ref().is_none_or(|r| r.is_match(&e.name))
                && v.filter
                    .module_regex
                    .as_ref()
                    .is_none_or(|r| r.is_match(module))
                && (e.backend == Backend::TpBtf || Some(e.backend) == chosen)
        })
        .map(|(i, _)| i)
        .collect();
    if selected.iter().all(|&i| spec.probes[i].hidden) {
        bail!("no probe of this tracer matches the selection");
    }
    if v.graph && !spec.probes.iter().any(|e| e.return_program.is_some()) {
        bail!(
            "-t function_graph needs a tracer with function probes (this one has only tracepoints)"
        );
    }
    let pb = progress_bar(selected.len());
    let s = Session::specialised(
        spec.object,
        spec.probes,
        &selected,
        cfg,
        v.graph,
        &mut |n| pb.set_position(n as u64),
    )?;
    pb.finish_and_clear();
    if s.attached.is_empty() {
        let first = s.failed.first().map(|f| f.1.clone()).unwrap_or_default();
        bail!("no probe could be attached: {first}");
    }
    let mut s = s;
    // Rows of the chosen backend (and tracepoints) left out by -r/--module-regex.
    s.filtered = spec
        .probes
        .iter()
        .enumerate()
        .filter(|(i, e)| {
            (e.backend == Backend::TpBtf || Some(e.backend) == chosen)
                && selected.binary_search(i).is_err()
        })
        .count();
    Ok((s, spec.probes.to_vec(), note))
}

fn summary(s: &Session, table: &[ProbeEntry], note: Option<&str>) {
    if let Some(n) = note {
        eprintln!("{n}");
    }
    let mut groups: HashMap<&str, Vec<&str>> = HashMap::new();
    for (i, why) in &s.failed {
        groups
            .entry(why.as_str())
            .or_default()
            .push(&table[*i].name);
    }
    let backends: Vec<&str> = {
        let mut b: Vec<&str> = s
            .attached
            .iter()
            .map(|&i| table[i].backend.name())
            .collect();
        b.sort();
        b.dedup();
        b
    };
    let hidden = s.attached.iter().filter(|&&i| table[i].hidden).count();
    eprintln!(
        "Total {} probes, attached {} ({}), failed {}, filtered {}{}",
        s.attached.len() + s.failed.len() - hidden,
        s.attached.len() - hidden,
        backends.join("+"),
        s.failed.len(),
        s.filtered + s.skipped.len(),
        if hidden > 0 {
            format!(" (+{hidden} hidden probes ending journeys)")
        } else {
            String::new()
        }
    );
    for (why, names) in group(s.skipped.iter().map(|(n, w)| (w.as_str(), n.as_str()))) {
        eprintln!("  left out ({why}): {}", names);
    }
    for (why, names) in group(
        s.failed
            .iter()
            .map(|(i, w)| (w.as_str(), table[*i].name.as_ref())),
    ) {
        eprintln!("  failed ({why}): {names}");
    }
    eprintln!("Trace ready!");
}

/// Group (reason, name) pairs: "N a, b, c, d, e, ..." per reason, sorted.
fn group<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<(&'a str, String)> {
    let mut groups: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (why, name) in pairs {
        groups.entry(why).or_default().push(name);
    }
    groups
        .into_iter()
        .map(|(why, names)| {
            let shown: Vec<&str> = names.iter().take(5).copied().collect();
            let more = if names.len() > 5 { ", ..." } else { "" };
            (why, format!("{} {}{more}", names.len(), shown.join(", ")))
        })
        .collect()
}

/// Drop reason names from the running kernel's `enum skb_drop_reason`,
/// read only when some probe carries a reason.
fn drop_reasons(table: &[ProbeEntry]) -> HashMap<u64, String> {
    if !table.iter().any(|e| e.reason_pos.is_some()) {
        return HashMap::new();
    }
    let Ok(k) =
        ipft_gen::btf::KernelBtf::from_file(std::path::Path::new("/sys/kernel/btf/vmlinux"))
    else {
        return HashMap::new();
    };
    ipft_gen::btf::enum_values(&k, "skb_drop_reason")
        .into_iter()
        .map(|(v, n)| (v, n.trim_start_matches("SKB_DROP_REASON_").to_string()))
        .collect()
}

/// Decides which event completes a journey. Without returns: a probe where
/// the skb is freed. With -t function_graph the free happens deep inside
/// calls whose returns are still to come, so the journey ends once the skb
/// has been freed and every traced call on it has returned.
struct JourneyEnds {
    frees: Vec<bool>,
    has_return: Vec<bool>,
    /// graph mode: skb -> (open calls, freed).
    open: Option<HashMap<u64, (i32, bool)>>,
}

impl JourneyEnds {
    fn new(table: &[ProbeEntry], graph: bool) -> Self {
        JourneyEnds {
            frees: table.iter().map(|e| e.frees_skb).collect(),
            has_return: table
                .iter()
                .map(|e| graph && e.return_program.is_some())
                .collect(),
            open: graph.then(HashMap::new),
        }
    }

    fn check(&mut self, e: &Event) -> bool {
        let p = e.probe as usize;
        let frees = self.frees.get(p).copied().unwrap_or(false);
        let Some(open) = &mut self.open else {
            return frees;
        };
        if open.len() > 1 << 20 {
            open.clear(); // skbs whose free we never saw: do not grow forever
        }
        let st = open.entry(e.skb).or_default();
        if e.is_return() {
            st.0 -= 1;
        } else if self.has_return.get(p).copied().unwrap_or(false) {
            st.0 += 1;
        }
        st.1 |= frees;
        let done = st.1 && st.0 <= 0;
        if done {
            open.remove(&e.skb);
        }
        done
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn trace_loop(
    a: &IpftArgs,
    mut v: Validated,
    mut session: Session,
    table: &[ProbeEntry],
    reasons: &HashMap<u64, String>,
) -> Result<i32> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    if let Some(f) = &a.ready_file {
        std::fs::write(f, b"ready\n")
            .with_context(|| format!("writing ready file {}", f.display()))?;
    }
    let names = Names {
        probes: table,
        drop_reasons: reasons,
        graph: v.graph,
    };
    let mut sink: Box<dyn Sink> = if v.json {
        Box::new(JsonSink::new(std::mem::replace(
            &mut v.out,
            Box::new(std::io::sink()),
        )))
    } else {
        Box::new(TextSink::new(std::mem::replace(
            &mut v.out,
            Box::new(std::io::sink()),
        )))
    };
    let mut ends = JourneyEnds::new(table, v.graph);
    let pending: RefCell<Vec<Event>> = RefCell::new(Vec::with_capacity(4096));
    let mut agg = Aggregator::new(AggregateConfig {
        idle: Duration::from_millis(a.idle_ms),
        max_events_per_packet: a.max_events,
        max_packets: a.max_packets,
    });
    let mut packets = 0u64;
    let mut bad_records = 0u64;
    let mut io_err: Option<std::io::Error> = None;
    let deadline = a
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut lost_reported = 0u64;
    let mut last_loss_check = Instant::now();
    {
        let events_map = session
            .main_object()
            .maps()
            .find(|m| m.name() == "ipft_events")
            .ok_or_else(|| anyhow!("ring buffer map missing from the object"))?;
        let mut rb = RingBufferBuilder::new();
        rb.add(&events_map, |data: &[u8]| {
            match Event::decode(data) {
                Some(e) => pending.borrow_mut().push(e),
                None => bad_records += 1,
            }
            0
        })?;
        let rb = rb.build()?;
        let hidden: Vec<bool> = table.iter().map(|e| e.hidden).collect();
        let emit = |mut p: Packet,
                    sink: &mut Box<dyn Sink>,
                    packets: &mut u64,
                    io_err: &mut Option<std::io::Error>| {
            p.events
                .retain(|e| !hidden.get(e.probe as usize).copied().unwrap_or(false));
            if p.events.is_empty() {
                return;
            }
            if io_err.is_none() {
                if let Err(e) = sink.packet(&p, &names) {
                    *io_err = Some(e);
                }
            }
            *packets += 1;
        };
        loop {
            let done = stop.load(Ordering::Relaxed)
                || deadline.is_some_and(|d| Instant::now() >= d)
                || a.count.is_some_and(|c| packets >= c)
                || io_err.is_some()
                || sink.is_closed();
            if done {
                break;
            }
            let _ = rb.poll(Duration::from_millis(100));
            let batch = std::mem::take(&mut *pending.borrow_mut());
            for e in batch {
                let f = ends.check(&e);
                agg.push(e, f, &mut |p| emit(p, &mut sink, &mut packets, &mut io_err));
            }
            agg.flush_idle(monotonic_ns(), &mut |p| {
                emit(p, &mut sink, &mut packets, &mut io_err)
            });
            if last_loss_check.elapsed() >= Duration::from_secs(1) {
                last_loss_check = Instant::now();
                let lost = load::lost_events(session.main_object());
                if lost > lost_reported {
                    eprintln!(
                        "ipft: lost {} events (ring buffer full), {lost} in total",
                        lost - lost_reported
                    );
                    let _ = sink.lost(lost - lost_reported);
                    lost_reported = lost;
                }
            }
        }
        // Drain what is queued, then stop tracing before printing the rest.
        let _ = rb.consume();
        for e in std::mem::take(&mut *pending.borrow_mut()) {
            let f = ends.check(&e);
            agg.push(e, f, &mut |p| emit(p, &mut sink, &mut packets, &mut io_err));
        }
        let lost = load::lost_events(session.main_object());
        lost_reported = lost_reported.max(lost);
        let t_detach = Instant::now();
        session.detach();
        if a.timings {
            eprintln!("timing: detach {:.3}s", t_detach.elapsed().as_secs_f64());
        }
        agg.finish(&mut |p| emit(p, &mut sink, &mut packets, &mut io_err));
    }
    let _ = sink.finish();
    if let Some(e) = io_err {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            bail!("writing output: {e}");
        }
    }
    eprintln!("Got {packets} traces");
    if lost_reported > 0 || bad_records > 0 {
        eprintln!(
            "Lost {lost_reported} events (ring buffer full), {bad_records} malformed records"
        );
        if a.strict_loss {
            return Ok(1);
        }
    }
    Ok(0)
}
