//! A generated tracer from start to exit. It starts from its compiled
//! table: the running kernel is read only for which backends work, which
//! functions attach by name and the drop-reason names.

use std::time::Instant;

use ipft_abi::{Asked, Backend, Config, KernelOffer};

use crate::attach::{self, LoadError, LoadOptions, Session};
use crate::error::{exit_code, require_root, RunError};
use crate::flags::{self, IpftArgs, RunConfig};
use crate::kernel::{self, KernelSymbols, Probed};
use crate::report::{self, Listed};
use crate::signals::Signals;
use crate::{compat, event_loop, fleet, select, ProbeSetSpec};

/// Entry point of a generated tracer binary, with its probe sets (one per
/// kernel it was built for): parse flags, trace, return the exit code (0 ok,
/// 1 events lost with --strict-loss, 2 bad input or set-up failure).
pub fn tracer_main(sets: &'static [&'static ProbeSetSpec]) -> i32 {
    exit_code(run(
        sets,
        flags::parse_args(Some(fleet::version_text(sets))),
    ))
}

/// Knobs of the BPF side for a run; `ext`: an extension's payload follows
/// each event (linked in by `ipft -e`, or compiled into a tracer).
pub fn load_options(cfg: &RunConfig, ext: bool) -> LoadOptions {
    let ring = cfg.ring_buffer_bytes;
    let sections = cfg.sections(ext);
    let config = Config {
        mark: cfg.mark,
        mask: cfg.mask,
        wakeup_bytes: wakeup_bytes(ring, sections.any()),
        graph: u32::from(cfg.graph),
        track: u32::from(cfg.track),
        netns: cfg.packets.netns,
        pid: cfg.packets.pid,
        pcap: u32::from(cfg.pcap.is_some()),
        empty: u32::from(cfg.bench_empty),
        // probe: set per copy; the cookie flags: by the loader.
        ..sections.apply(Config::default())
    };
    LoadOptions {
        // Validated to fit (1 to 15 bytes) by the flags.
        config: match &cfg.packets.ifname {
            Some(n) => config.with_ifname(n.as_bytes()).unwrap_or(config),
            None => config,
        },
        ring_buffer_bytes: ring,
        btf: cfg.btf.clone(),
        pcap: cfg.pcap.as_ref().map(|f| f.ebpf.clone()),
    }
}

/// When the BPF side wakes the reader (`Config::wakeup_bytes`). The reader
/// drains every [`event_loop::DRAIN_EVERY`] anyway: a ring of at least
/// 4 MiB holding 32-byte events is never woken (at 50 ms that is 2.6
/// million events a second before it fills); a smaller ring, or records
/// with sections (up to 2 KiB), wakes it at a quarter of the ring, at most
/// every 64 KiB.
pub fn wakeup_bytes(ring: Option<u32>, sections: bool) -> u64 {
    let bytes = u64::from(ring.unwrap_or(ipft_abi::layout::DEFAULT_RING_BYTES));
    match !sections && bytes >= 4 << 20 {
        true => 0,
        false => (bytes / 4).min(1 << 16),
    }
}

/// Function backends a table has rows for.
fn compiled_backends(spec: &ProbeSetSpec) -> Vec<Backend> {
    let mut b: Vec<Backend> = spec
        .probes
        .iter()
        .map(|e| e.backend)
        .filter(|b| b.for_functions())
        .collect();
    b.sort();
    b.dedup();
    b
}

fn run(sets: &'static [&'static ProbeSetSpec], args: IpftArgs) -> Result<i32, RunError> {
    let cfg = flags::validate_for(&args, sets.iter().any(|s| s.filter.is_some()))?;
    if let Some(g) = cfg.gen {
        print!("{}", flags::gen_text(g));
        return Ok(0);
    }
    if let Some(e) = &cfg.extension {
        return Err(RunError::Selection(format!(
            "{}: a generated tracer's extension is fixed when it is generated \
             (ipft-gen --extension FILE); run-time extensions need ipft",
            e.path.display()
        )));
    }
    let running = RunningBtf::read(&cfg);
    let (pick, why) = fleet::choose(
        sets,
        running.checksum.as_deref(),
        kernel::running_release().as_deref(),
    );
    let spec = sets
        .get(pick)
        .ok_or_else(|| RunError::Selection("this tracer holds no probe set".into()))?;
    if let Some(p) = cfg.profile.as_deref().filter(|p| *p != spec.profile) {
        return Err(RunError::Selection(format!(
            "this tracer was generated for profile '{}'; -p {p} needs `ipft-gen --profile {p}` (or ipft)",
            spec.profile
        )));
    }
    if cfg.graph && !spec.probes.iter().any(|e| e.return_program.is_some()) {
        return Err(RunError::Selection(
            "-t function_graph needs a tracer with function probes (this one has only tracepoints)"
                .into(),
        ));
    }
    require_root()?;
    // The backend probes need the BTF, not the symbols: both at once.
    let wanted = compiled_backends(spec);
    let (syms, mut probed) = std::thread::scope(|sc| {
        let probes = sc.spawn(|| kernel::probe(None, &wanted));
        let syms = KernelSymbols::running();
        (
            syms,
            probes
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    let syms = syms.map_err(RunError::Kallsyms)?;
    let attachable = |n: &str| syms.attachable(n);
    if cfg.list {
        // Addresses are kallsyms' alone.
        let addrs = KernelSymbols::kallsyms().unwrap_or_default();
        let rows: Vec<Listed<'_>> =
            select::verdicts(spec.probes, &attachable, &probed.offer, cfg.asked)
                .into_iter()
                .filter(|(e, _, _)| !e.hidden)
                .map(|(entry, _, v)| Listed {
                    entry,
                    addr: addrs.address(entry.name.as_ref()),
                    verdict: v.map_err(|why| why.to_string()),
                })
                .collect();
        report::list(&rows, &mut std::io::stdout().lock()).map_err(RunError::List)?;
        return Ok(0);
    }
    let compat = compatibility(spec, &cfg, &running)?;
    let mut notes: Vec<String> = (sets.len() > 1).then_some(why).into_iter().collect();
    notes.extend(compat.note);
    let output = event_loop::Output::prepare(&cfg)?;
    let signals = Signals::install().map_err(RunError::Signals)?;
    attach::capture_libbpf_log();
    raise_nofile();
    let t0 = Instant::now();
    let (session, sel) = attach(
        spec,
        &cfg,
        &attachable,
        &compat.rows,
        &mut probed,
        &mut notes,
        &signals,
    )?;
    if cfg.timings {
        crate::say!("timing: load+attach {:.3}s", t0.elapsed().as_secs_f64());
    }
    report::summary(
        &session,
        spec.probes,
        &sel.left_out,
        sel.filtered,
        &notes,
        cfg.verbose,
    );
    let reasons = match spec.probes.iter().any(|e| e.shape.reason_pos.is_some()) {
        true => kernel::drop_reasons(),
        false => Default::default(),
    };
    let decoder = spec.extension.map(|make| make());
    let outcome = event_loop::run(
        &cfg,
        &signals,
        output,
        session,
        spec.probes,
        &reasons,
        decoder,
    )?;
    // Released and written: the exit returns the memory; freeing the
    // symbol table entry by entry would only delay it.
    std::mem::forget(syms);
    Ok(if outcome.lost > 0 && cfg.strict_loss {
        1
    } else {
        0
    })
}

/// Select and attach; a backend the kernel refuses as a whole is taken out
/// of its offer and the policy chooses again, so its probes fall back to
/// the next backend that reaches them.
fn attach(
    spec: &ProbeSetSpec,
    cfg: &RunConfig,
    attachable: &dyn Fn(&str) -> bool,
    incompatible: &[Option<String>],
    probed: &mut Probed,
    notes: &mut Vec<String>,
    signals: &Signals,
) -> Result<(Session, select::Selection), RunError> {
    attach_with_fallback(probed, cfg.asked, notes, |offer, _| {
        let mut sel = select::select(
            spec.probes,
            &cfg.filter,
            attachable,
            offer,
            cfg.asked,
            incompatible,
        );
        // The clone functions' rows serve --track-skb only.
        sel.rows
            .retain(|&i| cfg.track || !spec.probes[i].follows_clones());
        if sel.rows.iter().all(|&i| spec.probes[i].hidden) {
            let why = match sel.left_out.first() {
                Some((n, w)) => format!(": {n}: {w}"),
                None => String::new(),
            };
            return Err(RunError::Selection(format!(
                "no probe of this tracer can be traced with this selection{why}"
            )));
        }
        let pb = progress_bar(sel.rows.len());
        let r = Session::specialised(
            spec.object,
            spec.probes,
            &sel.rows,
            load_options(cfg, spec.extension.is_some()),
            &mut |n| {
                pb.set_position(n as u64);
                !signals.stopped()
            },
        );
        pb.finish_and_clear();
        Ok((r, sel))
    })
}

/// Load and attach, falling back while a backend turns out unusable: each
/// `attempt` plans with what `probed` still offers; a function backend the
/// kernel refuses as a whole leaves the offer and the policy chooses again,
/// so its probes go to the next backend that reaches them. With `-b B`
/// alone, B refused is the error. One definition for `ipft` and tracers.
pub fn attach_with_fallback<T>(
    probed: &mut Probed,
    asked: Asked,
    notes: &mut Vec<String>,
    mut attempt: impl FnMut(
        &KernelOffer,
        &mut Vec<String>,
    ) -> Result<(Result<Session, LoadError>, T), RunError>,
) -> Result<(Session, T), RunError> {
    loop {
        let (r, planned) = attempt(&probed.offer, notes)?;
        match r {
            Ok(s) if !s.attached.is_empty() => return Ok((s, planned)),
            Ok(s) => {
                let first = s.failed.first().map(|f| f.1.clone()).unwrap_or_default();
                return Err(RunError::Selection(format!(
                    "no probe could be attached: {first}"
                )));
            }
            // tp_btf has nothing to fall back to: refusing it again would loop.
            Err(LoadError::Unavailable { backend, reason })
                if backend != Backend::TpBtf && probed.offer.has(backend) =>
            {
                if asked == Asked::Only(backend) {
                    return Err(RunError::Selection(format!(
                        "backend {backend} cannot trace the selection on this kernel: {reason}"
                    )));
                }
                notes.push(format!("{backend} refused ({reason}); falling back"));
                probed.refuse(backend, reason);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// How the compiled probes fit the running kernel.
struct Compat {
    /// Per table row, why it does not fit (empty: all fit).
    rows: Vec<Option<String>>,
    /// The report for the summary.
    note: Option<String>,
}

/// The running kernel's vmlinux BTF file (--btf or sysfs) and its checksum.
struct RunningBtf {
    path: std::path::PathBuf,
    checksum: Option<String>,
}

impl RunningBtf {
    fn read(cfg: &RunConfig) -> RunningBtf {
        let sys = std::path::Path::new(ipft_btf::SYS_BTF_DIR).join("vmlinux");
        let path = cfg.btf.clone().unwrap_or(sys);
        // The sysfs BTF is read (and checksummed) once, for this and for the
        // feature probes and drop-reason names that parse it too.
        let checksum = match (&cfg.btf, kernel::running_btf()) {
            (None, Some(k)) => Some(k.identity.checksum.clone()),
            _ => std::fs::read(&path).ok().map(|b| ipft_btf::checksum(&b)),
        };
        RunningBtf { path, checksum }
    }
}

/// Hold every compiled probe against the running kernel's BTF when it is
/// not the BTF the tracer was generated from; --strict-compat refuses any
/// mismatch.
fn compatibility(
    spec: &ProbeSetSpec,
    cfg: &RunConfig,
    btf: &RunningBtf,
) -> Result<Compat, RunError> {
    let Some(running) = btf.checksum.clone() else {
        return Ok(Compat {
            rows: Vec::new(),
            note: Some(format!(
                "warning: {} unreadable: no compatibility check (give the kernel's BTF with --btf FILE)",
                btf.path.display()
            )),
        });
    };
    let id = &spec.identity;
    if running == id.checksum {
        return Ok(Compat {
            rows: Vec::new(),
            note: None,
        });
    }
    let t0 = Instant::now();
    let k = match &cfg.btf {
        Some(f) => ipft_btf::KernelBtf::from_file(f),
        None => ipft_btf::KernelBtf::running(),
    }
    .map_err(|e| RunError::Selection(format!("reading the running kernel's BTF: {e}")))?;
    let probes = compat::RunningProbes::scan(&k)
        .map_err(|e| RunError::Selection(format!("scanning the running kernel's BTF: {e}")))?;
    let rows: Vec<Option<String>> = compat::check_table(&probes, spec.probes)
        .into_iter()
        .map(|m| m.map(|m| m.to_string()))
        .collect();
    let visible = |i: &usize| !spec.probes[*i].hidden;
    let bad: Vec<usize> = (0..rows.len())
        .filter(|i| rows[*i].is_some())
        .filter(visible)
        .collect();
    let total = (0..rows.len()).filter(visible).count();
    let note = format!(
        "compat: generated for {} (BTF {}), running {} (BTF {running}): {} of {total} probe rows match, {} refused; checked in {} ms",
        id.release.as_deref().unwrap_or(&id.source),
        id.checksum,
        kernel::running_release().unwrap_or_else(|| "?".into()),
        total - bad.len(),
        bad.len(),
        t0.elapsed().as_millis()
    );
    if cfg.strict_compat && !bad.is_empty() {
        let e = &spec.probes[bad[0]];
        return Err(RunError::Selection(format!(
            "--strict-compat: {} of {total} probes do not match the running kernel, e.g. {}: {}",
            bad.len(),
            e.display_name(),
            rows[bad[0]].as_deref().unwrap_or("")
        )));
    }
    Ok(Compat {
        rows,
        note: Some(note),
    })
}

/// The attach progress bar on stderr.
pub fn progress_bar(total: usize) -> indicatif::ProgressBar {
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

/// Every probe costs an fd or two (programs, links, perf events): lift the
/// soft open-file limit to the hard one, and the hard one as far as root may.
pub fn raise_nofile() {
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_reader_is_woken_only_where_its_timer_could_fall_behind() {
        use super::wakeup_bytes;
        assert_eq!(wakeup_bytes(None, false), 0);
        assert_eq!(wakeup_bytes(Some(4 << 20), false), 0);
        assert_eq!(wakeup_bytes(None, true), 1 << 16);
        assert_eq!(wakeup_bytes(Some(1 << 20), false), 1 << 16);
        assert_eq!(wakeup_bytes(Some(16384), false), 4096);
    }

    use super::*;

    fn probed() -> Probed {
        Probed {
            offer: KernelOffer::everything(Some("6.12.0")),
            refused: Vec::new(),
        }
    }

    fn unavailable(backend: Backend) -> Result<Session, LoadError> {
        Err(LoadError::Unavailable {
            backend,
            reason: "refused".into(),
        })
    }

    #[test]
    fn a_refused_tracepoint_backend_is_one_error_not_a_loop() {
        let mut p = probed();
        let mut tries = 0;
        let r = attach_with_fallback(&mut p, Asked::Auto, &mut Vec::new(), |_, _| {
            tries += 1;
            assert!(tries < 3, "retried a backend with nothing to fall back to");
            Ok((unavailable(Backend::TpBtf), ()))
        });
        assert!(r.is_err());
        assert_eq!(tries, 1);
    }

    #[test]
    fn a_refused_function_backend_leaves_the_offer_and_the_policy_chooses_again() {
        let mut p = probed();
        let mut seen = Vec::new();
        let mut notes = Vec::new();
        let r = attach_with_fallback(&mut p, Asked::Auto, &mut notes, |offer, _| {
            seen.push(*offer);
            // Every function backend refused in turn, then tp_btf too.
            let b = match offer.function_backends().first() {
                Some(&b) => b,
                None => Backend::TpBtf,
            };
            Ok((unavailable(b), ()))
        });
        assert!(r.is_err());
        assert_eq!(seen.len(), 4);
        assert!(seen[3].function_backends().is_empty());
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert_eq!(p.refused.len(), 3);
    }

    #[test]
    fn the_only_backend_asked_for_refused_is_the_error() {
        let mut p = probed();
        let r = attach_with_fallback(
            &mut p,
            Asked::Only(Backend::Kprobe),
            &mut Vec::new(),
            |_, _| Ok((unavailable(Backend::Kprobe), ())),
        );
        match r {
            Err(RunError::Selection(m)) => {
                assert!(m.contains("backend kprobe cannot trace"), "{m}")
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("attached"),
        }
    }
}
