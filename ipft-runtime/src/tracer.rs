//! A generated tracer from start to exit. It starts from its compiled
//! table: the running kernel is read only for which backends work, which
//! functions attach by name and the drop-reason names.

use std::time::Instant;

use ipft_abi::{Backend, Config};

use crate::attach::{self, LoadError, Session};
use crate::error::{exit_code, require_root, RunError};
use crate::flags::{self, IpftArgs, RunConfig};
use crate::kernel::{self, KernelSymbols, Probed};
use crate::report::{self, Listed};
use crate::{event_loop, select, ProbeSetSpec};

/// Entry point of a generated tracer binary: parse flags, trace, return the
/// exit code (0 ok, 1 events lost with --strict-loss, 2 bad input or
/// set-up failure).
pub fn tracer_main(spec: &'static ProbeSetSpec) -> i32 {
    exit_code(run(spec, flags::parse_args()))
}

/// Knobs of the BPF side for a run.
pub fn bpf_config(cfg: &RunConfig) -> Config {
    Config {
        mark: cfg.mark,
        mask: cfg.mask,
        wakeup_bytes: 1 << 16,
        probe: 0,
        graph: u32::from(cfg.graph),
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

fn run(spec: &'static ProbeSetSpec, args: IpftArgs) -> Result<i32, RunError> {
    let cfg = flags::validate(&args)?;
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
    let syms = KernelSymbols::running().map_err(RunError::Kallsyms)?;
    let mut probed = kernel::probe(&syms, &compiled_backends(spec));
    let attachable = |n: &str| syms.attachable(n);
    if cfg.list {
        let rows: Vec<Listed<'_>> =
            select::verdicts(spec.probes, &attachable, &probed.offer, cfg.asked)
                .into_iter()
                .filter(|(e, _, _)| !e.hidden)
                .map(|(entry, _, v)| Listed {
                    entry,
                    addr: syms.text.get(entry.name.as_ref()).map_or(0, |t| t.0),
                    verdict: v.map_err(|why| why.to_string()),
                })
                .collect();
        report::list(&rows, &mut std::io::stdout().lock()).map_err(RunError::List)?;
        return Ok(0);
    }
    let mut notes: Vec<String> = identity_note(spec).into_iter().collect();
    let output = event_loop::Output::prepare(&cfg)?;
    attach::capture_libbpf_log();
    raise_nofile();
    let t0 = Instant::now();
    let (session, sel) = attach(spec, &cfg, &attachable, &mut probed, &mut notes)?;
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
    let outcome = event_loop::run(&cfg, output, session, spec.probes, &reasons)?;
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
    probed: &mut Probed,
    notes: &mut Vec<String>,
) -> Result<(Session, select::Selection), RunError> {
    loop {
        let sel = select::select(
            spec.probes,
            &cfg.filter,
            attachable,
            &probed.offer,
            cfg.asked,
        );
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
            bpf_config(cfg),
            &mut |n| pb.set_position(n as u64),
        );
        pb.finish_and_clear();
        match r {
            Ok(s) if !s.attached.is_empty() => return Ok((s, sel)),
            Ok(s) => {
                let first = s.failed.first().map(|f| f.1.clone()).unwrap_or_default();
                return Err(RunError::Selection(format!(
                    "no probe could be attached: {first}"
                )));
            }
            Err(LoadError::Unavailable { backend, reason }) if probed.offer.has(backend) => {
                notes.push(format!("{backend} refused ({reason}); falling back"));
                probed.refuse(backend, reason);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A warning when the running kernel's BTF is not the one the tracer was
/// generated from.
fn identity_note(spec: &ProbeSetSpec) -> Option<String> {
    let bytes = std::fs::read("/sys/kernel/btf/vmlinux").ok()?;
    let running = ipft_btf::checksum(&bytes);
    (running != spec.identity.checksum).then(|| {
        format!(
            "warning: generated for BTF {} ({}), running kernel BTF is {running}; relying on CO-RE",
            spec.identity.checksum,
            spec.identity
                .release
                .as_deref()
                .unwrap_or(&spec.identity.source)
        )
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
