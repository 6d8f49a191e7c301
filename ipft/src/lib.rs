//! The clang-free `ipft` command: probes discovered from the running kernel
//! at start, given a backend each by the policy, mapped onto the programs of
//! the generic object by the same table builder generated tracers use.

pub mod lua;

use std::borrow::Cow;
use std::io::Write;
use std::time::Instant;

use ipft_abi::program::generic_entry;
use ipft_abi::{policy, Asked, Backend, KernelOffer, ProbeEntry, ProbeKind};
use ipft_gen::discover::{
    discover, discover_kept, refresh_snapshot, Backends, BtfInput, Discovery,
};
use ipft_gen::probe::Profile;
use ipft_gen::table::{self, Objects};
use ipft_gen::Probe;
use ipft_runtime::attach::{self, LoadError, Session};
use ipft_runtime::error::{require_root, RunError};
use ipft_runtime::flags::{self, IpftArgs, RunConfig};
use ipft_runtime::kernel;
use ipft_runtime::report::{self, Skipped};
use ipft_runtime::signals::Signals;
use ipft_runtime::tracer::{attach_with_fallback, load_options, progress_bar, raise_nofile};
use ipft_runtime::{event_loop, say};

pub mod extension;

/// The generic object, compiled from bpf/generic.bpf.c when ipft is built.
pub static GENERIC_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/generic.bpf.o"));

fn selection(msg: impl Into<String>) -> RunError {
    RunError::Selection(msg.into())
}

fn profile(name: &str) -> Result<Profile, RunError> {
    Profile::load(name).map_err(|e| selection(e.to_string()))
}

/// The running kernel's probes for `p`, backends as its BTF says (nothing
/// loaded): for `-l` and the tracepoint fallback.
fn discovered(cfg: &RunConfig, p: &Profile) -> Result<Discovery, RunError> {
    discover(
        &BtfInput::Running,
        Some(p),
        &cfg.filter,
        Backends::FromSymbols,
    )
    .map_err(|e| selection(e.to_string()))
}

/// Run `ipft` with parsed flags; the exit code or why not.
pub fn run(args: IpftArgs) -> Result<i32, RunError> {
    let t_run = Instant::now();
    let cfg = flags::validate(&args)?;
    if let Some(g) = cfg.gen {
        print!("{}", flags::gen_text(g));
        return Ok(0);
    }
    let prof = profile(cfg.profile.as_deref().unwrap_or("all"))?;
    require_root()?;
    if cfg.list {
        return list(&discovered(&cfg, &prof)?);
    }
    // The extension first: a compiler error is reported before anything is
    // attached.
    let ext = cfg.extension.as_ref().map(extension::load).transpose()?;
    let object: Cow<'static, [u8]> = match &ext {
        Some(x) => Cow::Owned(
            ipft_runtime::extension::link(GENERIC_OBJECT, &x.object)
                .map_err(|e| RunError::Extension(format!("{}: linking: {e}", x.name)))?,
        ),
        None => Cow::Borrowed(GENERIC_OBJECT),
    };
    let options = load_options(&cfg, ext.is_some());
    let output = event_loop::Output::prepare(&cfg)?;
    let signals = Signals::install().map_err(RunError::Signals)?;
    attach::capture_libbpf_log();
    raise_nofile();
    let t0 = Instant::now();
    let mut d = discover_kept(Some(&prof), &cfg.filter).map_err(|e| selection(e.to_string()))?;
    if cfg.timings {
        say!("timing: set-up {:.3}s", (t0 - t_run).as_secs_f64());
        for (what, t) in &d.timings {
            say!("timing: {what} {:.3}s", t.as_secs_f64());
        }
        say!("timing: discovery {:.3}s", t0.elapsed().as_secs_f64());
    }
    let t_load = Instant::now();
    for e in &d.skipped {
        say!("ipft: warning: module BTF skipped: {e}");
    }
    if d.probes.is_empty() {
        return Err(selection(format!(
            "no function or tracepoint matches the selection ({} dropped as untraceable)",
            d.untraceable
        )));
    }
    let mut probed = d
        .probed
        .clone()
        .expect("running-kernel discovery probes backends");
    if let Asked::Only(b) = cfg.asked {
        if let Some(why) = probed.refusal(b).filter(|_| b.for_functions()) {
            return Err(selection(format!(
                "backend {b} is unavailable on this kernel: {why}"
            )));
        }
    }
    let mut notes = Vec::new();
    let (session, Plan { table, left_out }) =
        attach_with_fallback(&mut probed, cfg.asked, &mut notes, |offer, notes| {
            let plan = plan(&cfg, &d, offer, notes)?;
            let pb = progress_bar(plan.table.len());
            let r = Session::generic(&object, &plan.table, options.clone(), &mut |n| {
                pb.set_position(n as u64);
                !signals.stopped()
            });
            pb.finish_and_clear();
            Ok((r, plan))
        })
        .map_err(|e| match (&ext, e) {
            // A verifier rejection with an extension linked in names it.
            (Some(x), RunError::Load(l @ LoadError::Load { .. })) => {
                RunError::Extension(format!("{}: {l}", x.name))
            }
            (_, e) => e,
        })?;
    if cfg.timings {
        for (what, t) in &session.timings {
            say!("timing: {what} {:.3}s", t.as_secs_f64());
        }
        say!("timing: load+attach {:.3}s", t_load.elapsed().as_secs_f64());
        say!(
            "links: kprobe-multi {}, by address {}; addresses learnt {}",
            session.multi_link_count(),
            session.multi_by_address,
            kernel::learnt_new_addrs()
        );
        say!(
            "timing: discover+load+attach {:.3}s",
            t0.elapsed().as_secs_f64()
        );
    }
    let filtered = (d.stats.skb_funcs + d.stats.skb_tracepoints) as usize;
    let filtered = filtered.saturating_sub(d.probes.len());
    report::summary(&session, &table, &left_out, filtered, &notes, cfg.verbose);
    let reasons = match table.iter().any(|e| e.shape.reason_pos.is_some()) {
        true => kernel::drop_reasons(),
        false => Default::default(),
    };
    // A cold start keeps what it found for the next one in this boot, off
    // the way to "Trace ready!"; a warm one what it learnt beyond that.
    if let Some(s) = d.snapshot.take() {
        std::thread::spawn(move || s.save());
    } else if kernel::learnt_new_addrs() > 0 {
        std::thread::spawn(refresh_snapshot);
    }
    let decoder = ext.map(|x| x.decoder);
    let outcome = event_loop::run(&cfg, &signals, output, session, &table, &reasons, decoder)?;
    // Every link is released and the output written: the process exits
    // next, and its memory goes back with it. Freeing the parsed BTF one
    // allocation at a time would only hold the exit up (~30 ms here, several
    // times that under an emulator).
    std::mem::forget(d);
    Ok(if outcome.lost > 0 && cfg.strict_loss {
        1
    } else {
        0
    })
}

/// The table to load, and the probes left out of it.
struct Plan {
    table: Vec<ProbeEntry>,
    left_out: Skipped,
}

/// Backends the generic object has a program for, for this probe.
fn generic_offer(p: &Probe) -> Vec<Backend> {
    Backend::ALL
        .into_iter()
        .filter(|&b| b.is_for(p.kind) && generic_entry(&p.shape(), b, false).is_some())
        .collect()
}

fn plan(
    cfg: &RunConfig,
    d: &Discovery,
    offer: &KernelOffer,
    notes: &mut Vec<String>,
) -> Result<Plan, RunError> {
    let has_functions = d.probes.iter().any(|p| p.kind == ProbeKind::Function);
    let mut probes = d.probes.clone();
    let mut left_out: Skipped = Vec::new();
    let no_functions = offer.function_backends().is_empty();
    if no_functions && has_functions && cfg.asked == Asked::Auto {
        // No function backend at all: BTF tracepoints (of the selection,
        // else every skb tracepoint) and say why.
        probes.retain(|p| p.kind == ProbeKind::Tracepoint);
        if probes.is_empty() {
            probes = discovered(cfg, &profile("tracepoints")?)?.probes;
        }
        notes.push(format!(
            "function probes unavailable ({}); tracing {} skb tracepoints with tp_btf",
            d.probed
                .iter()
                .flat_map(|p| p.refused.iter().map(|(b, r)| format!("{b}: {r}")))
                .collect::<Vec<_>>()
                .join("; "),
            probes.len()
        ));
    }
    if cfg.graph && no_functions {
        return Err(selection(
            "-t function_graph needs function probes (fexit or kretprobe), which this kernel refuses",
        ));
    }
    // One choice per probe, kept in its `backends` for the table builder
    // (as ipft-gen's plan does).
    let choose = |p: &Probe| policy::choose(&p.shape(), true, &generic_offer(p), offer, cfg.asked);
    let chosen = |list: Vec<Probe>| {
        let (mut kept, mut out) = (Vec::new(), Skipped::new());
        for mut p in list {
            match choose(&p) {
                Ok(b) => {
                    p.backends = vec![b];
                    kept.push(p);
                }
                Err(why) => out.push((p.display_name(), why.to_string())),
            }
        }
        (kept, out)
    };
    let (mut probes, unreachable) = chosen(probes);
    left_out.extend(unreachable);
    if probes.is_empty() {
        let why = left_out
            .first()
            .map(|(n, w)| format!(": {n}: {w}"))
            .unwrap_or_default();
        return Err(selection(format!(
            "no selected probe can be traced on this kernel{why}"
        )));
    }
    let hidden_from = probes.len();
    // End markers no backend reaches are simply not added.
    let (markers, _) = chosen(d.end_markers.clone());
    let in_use: Vec<Backend> = probes.iter().map(|p| p.backends[0]).collect();
    probes.extend(table::pick_end_markers(&markers, &probes, &in_use));
    if cfg.track {
        // Hidden rows at the clone functions: a tracked skb's copies are
        // followed as part of its packet, through the function backends in
        // use (returns: kretprobe or fexit).
        let (clones, _) = chosen(d.clone_functions.clone());
        probes.extend(table::pick_clone_functions(&clones, &in_use));
    }
    let (table, missing) = table::build(
        &probes,
        hidden_from,
        |p| p.backends.clone(),
        Objects::Generic {
            raw_tracepoints: ipft_runtime::kernel::raw_tracepoints(),
        },
    );
    left_out.extend(missing.into_iter().map(|(n, w)| (n, w.to_string())));
    Ok(Plan { table, left_out })
}

/// ipftrace2's `-l`: NAME MODULE ADDR SKB_POSITION.
fn list(d: &Discovery) -> Result<i32, RunError> {
    // Addresses are kallsyms' alone (discovery reads the filter list).
    let syms = d
        .symbols
        .as_ref()
        .and_then(|_| ipft_runtime::kernel::KernelSymbols::kallsyms().ok());
    let syms = syms.as_ref();
    let mut out = std::io::stdout().lock();
    let r: std::io::Result<()> = (|| {
        writeln!(
            out,
            "{:<48} {:<16} {:<18} SKB_POSITION",
            "NAME", "MODULE", "ADDR"
        )?;
        for p in &d.probes {
            let (name, addr) = match p.kind {
                ProbeKind::Function => (p.name.clone(), syms.map_or(0, |s| s.address(&p.name))),
                ProbeKind::Tracepoint => (format!("tp_btf:{}", p.name), 0),
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
        out.flush()
    })();
    r.map_err(RunError::List)?;
    Ok(0)
}
