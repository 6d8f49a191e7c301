//! Stages 1+2 together: read BTF, scan it, select with a profile and filter,
//! and work out which backends reach each probe.

use std::path::PathBuf;

use ipft_abi::{policy, table, KernelOffer, ProbeKind};
use ipft_btf::{self as btf, BtfError, KernelBtf, ScanStats};
use ipft_runtime::kernel::{self, KernelSymbols, Probed};
use ipft_runtime::select::Filter;

use crate::probe::{Probe, Profile};

/// Where the BTF comes from.
#[derive(Debug, Clone)]
pub enum BtfInput {
    /// /sys/kernel/btf of the running kernel (backends from its symbols).
    Running,
    /// One raw BTF or ELF file.
    File(PathBuf),
    /// A directory like /sys/kernel/btf.
    Dir(PathBuf),
}

/// Result of a discovery.
pub struct Discovery {
    /// The BTF read.
    pub kernel: KernelBtf,
    /// Selected, reachable probes, sorted.
    pub probes: Vec<Probe>,
    /// Scan counters.
    pub stats: ScanStats,
    /// Selected probes dropped as unreachable (inlined, notrace, ...).
    pub untraceable: usize,
    /// What the running kernel offers (running kernel only).
    pub probed: Option<Probed>,
    /// Running-kernel symbols, kept for address resolution.
    pub symbols: Option<KernelSymbols>,
    /// The kernel's journey-ending probes (see `table::END_MARKERS`),
    /// whatever the selection, with their backends resolved.
    pub end_markers: Vec<Probe>,
    /// The kernel's clone functions (`table::CLONE_FUNCTIONS`, for
    /// --track-skb), whatever the selection, with their backends resolved.
    pub clone_functions: Vec<Probe>,
    /// How long each stage took: BTF read and scanned, kallsyms read, the
    /// backends probed (for --timings).
    pub timings: Vec<(&'static str, std::time::Duration)>,
}

/// Discovery failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// BTF unreadable or corrupt.
    #[error(transparent)]
    Btf(#[from] BtfError),
    /// /proc/kallsyms unreadable.
    #[error("/proc/kallsyms: {0}")]
    Kallsyms(#[source] std::io::Error),
}

/// What to find out about the running kernel's backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backends {
    /// Confirm each with a real load + attach (needs root).
    Probe,
    /// Only what the symbols say: nothing is loaded.
    FromSymbols,
}

/// Read, scan, select, resolve backends.
pub fn discover(
    input: &BtfInput,
    profile: Option<&Profile>,
    filter: &Filter,
    backends: Backends,
) -> Result<Discovery, DiscoverError> {
    let mut timings = Vec::new();
    let mut t = std::time::Instant::now();
    let mut lap = |what: &'static str| {
        timings.push((what, t.elapsed()));
        t = std::time::Instant::now();
    };
    // The running kernel's symbols and backend probes need none of the
    // BTF scan, nor each other: on threads of their own, all three overlap
    // (the probes wait on the kernel's grace periods, the symbols on
    // ftrace's filter list).
    let running = matches!(input, BtfInput::Running).then(|| {
        let syms = std::thread::spawn(|| {
            let t = std::time::Instant::now();
            KernelSymbols::running().map(|s| (s, t.elapsed()))
        });
        let backend_probes = std::thread::spawn(move || {
            let t = std::time::Instant::now();
            // Real load + attach probes need root; without it the BTF says.
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            let wanted: &[ipft_abi::Backend] = match root && backends == Backends::Probe {
                true => &ipft_abi::Backend::FUNCTIONS,
                false => &[],
            };
            (kernel::probe(None, wanted), t.elapsed())
        });
        (syms, backend_probes)
    });
    let kernel = match input {
        BtfInput::Running => KernelBtf::running()?,
        BtfInput::File(p) => {
            let mut k = KernelBtf::from_file(p)?;
            k.identity.release = btf::release_of(p);
            k
        }
        BtfInput::Dir(d) => KernelBtf::from_dir(d)?,
    };
    let (all, stats) = btf::scan(&kernel)?;
    lap("btf");
    let release = kernel.identity.release.clone();
    let mut end_markers: Vec<Probe> = all
        .iter()
        .filter(|p| p.module.is_none() && table::is_end_marker(&p.name, p.kind))
        .cloned()
        .collect();
    let mut clone_functions: Vec<Probe> = all
        .iter()
        .filter(|p| {
            p.module.is_none()
                && p.kind == ProbeKind::Function
                && table::is_clone_function(&p.name)
                && p.skb_pos() == 0
        })
        .cloned()
        .collect();
    let mut probes: Vec<Probe> = all
        .into_iter()
        .filter(|p| {
            profile.is_none_or(|pr| pr.keeps(p, release.as_deref()))
                && filter.keeps(&p.name, p.module.as_deref())
        })
        .collect();
    let (untraceable, probed, symbols) = match input {
        BtfInput::Running => {
            let (syms, backend_probes) = running.expect("spawned for the running kernel");
            let panicked =
                |_| DiscoverError::Kallsyms(std::io::Error::other("a probe thread panicked"));
            let (syms, t_syms) = syms
                .join()
                .map_err(panicked)?
                .map_err(DiscoverError::Kallsyms)?;
            let (probed, t_probes) = backend_probes.join().map_err(panicked)?;
            lap("wait for symbols and backend probes");
            timings.push(("symbols (beside btf)", t_syms));
            timings.push(("backend probes (beside btf)", t_probes));
            let before = probes.len();
            for list in [&mut probes, &mut end_markers, &mut clone_functions] {
                list.retain(|p| p.kind == ProbeKind::Tracepoint || syms.attachable(&p.name));
                resolve(list, &probed.offer);
            }
            (before - probes.len(), Some(probed), Some(syms))
        }
        _ => {
            let offer = KernelOffer::everything(release.as_deref());
            for list in [&mut probes, &mut end_markers, &mut clone_functions] {
                resolve(list, &offer);
            }
            end_markers.retain(|p| !p.backends.is_empty());
            clone_functions.retain(|p| !p.backends.is_empty());
            let before = probes.len();
            probes.retain(|p| !p.backends.is_empty());
            (before - probes.len(), None, None)
        }
    };
    Ok(Discovery {
        kernel,
        probes,
        stats,
        untraceable,
        probed,
        symbols,
        end_markers,
        clone_functions,
        timings,
    })
}

/// Fill each probe's backends: those that reach it on `offer`. Functions
/// that no backend of a running kernel reaches stay, with an empty list, so
/// listings show them.
fn resolve(probes: &mut [Probe], offer: &KernelOffer) {
    for p in probes {
        p.backends = policy::reaching(&p.shape(), true, offer);
    }
}
