//! Stages 1+2 together: read BTF, scan it, select with a profile and filter,
//! and work out which backends reach each probe.

use std::path::PathBuf;

use ipft_abi::{policy, table, KernelOffer, ProbeKind};
use ipft_btf::{self as btf, BtfError, BtfIdentity, KernelBtf, ScanStats};
use ipft_runtime::kernel::{self, KernelSymbols, Probed};
use ipft_runtime::select::Filter;

use crate::probe::{Probe, Profile};

mod snapshot;
pub use snapshot::{refresh as refresh_snapshot, Snapshot};

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
    /// Where the BTF came from (and its checksum and release).
    pub identity: BtfIdentity,
    /// Module BTF files skipped because they could not be read or parsed.
    pub skipped: Vec<String>,
    /// The BTF read (None from a snapshot): kept so that it is freed with
    /// the process, not at the end of discovery.
    pub btf: Option<KernelBtf>,
    /// Selected, reachable probes, sorted.
    pub probes: Vec<Probe>,
    /// Scan counters.
    pub stats: ScanStats,
    /// Selected probes dropped as unreachable (inlined, notrace, ...).
    pub untraceable: usize,
    /// What the running kernel offers (running kernel only).
    pub probed: Option<Probed>,
    /// Running-kernel symbols, kept for address resolution (None from a
    /// snapshot).
    pub symbols: Option<KernelSymbols>,
    /// The kernel's journey-ending probes (see `table::END_MARKERS`),
    /// whatever the selection, with their backends resolved.
    pub end_markers: Vec<Probe>,
    /// The kernel's clone functions (`table::CLONE_FUNCTIONS`, for
    /// --track-skb), whatever the selection, with their backends resolved.
    pub clone_functions: Vec<Probe>,
    /// A running kernel's discovery to keep for the next start in this
    /// boot: [`Snapshot::save`] it once the start has learnt the rest.
    pub snapshot: Option<Snapshot>,
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
    scan_and_select(input, profile, filter, backends, false)
}

/// The running kernel's discovery, with backend probes, from this boot's
/// [`Snapshot`] where there is one; else read from the kernel, with the
/// snapshot to [`Snapshot::save`] in [`Discovery::snapshot`].
pub fn discover_kept(
    profile: Option<&Profile>,
    filter: &Filter,
) -> Result<Discovery, DiscoverError> {
    let t = std::time::Instant::now();
    match Snapshot::load() {
        Some(s) => {
            let mut d = s.discovery(profile, filter);
            d.timings
                .push(("snapshot of this boot's discovery", t.elapsed()));
            Ok(d)
        }
        None => scan_and_select(&BtfInput::Running, profile, filter, Backends::Probe, true),
    }
}

/// [`discover`], and with `kept` the snapshot of a running kernel's scan.
fn scan_and_select(
    input: &BtfInput,
    profile: Option<&Profile>,
    filter: &Filter,
    backends: Backends,
    kept: bool,
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
    let identity = kernel.identity.clone();
    let skipped = kernel.skipped.iter().map(|e| e.to_string()).collect();
    let found = Found {
        identity,
        skipped,
        stats,
    };
    let mut d = match running {
        Some((syms, backend_probes)) => {
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
            let all: Vec<(Probe, bool)> = all
                .into_iter()
                .map(|p| {
                    let ok = p.kind == ProbeKind::Tracepoint || syms.attachable(&p.name);
                    (p, ok)
                })
                .collect();
            let snapshot = kept.then(|| Snapshot::new(&found, &all, &probed));
            let mut d = found.select(all, Some(probed), profile, filter);
            d.symbols = Some(syms);
            d.snapshot = snapshot;
            d
        }
        None => found.select(
            all.into_iter().map(|p| (p, true)).collect(),
            None,
            profile,
            filter,
        ),
    };
    d.btf = Some(kernel);
    d.timings = timings;
    Ok(d)
}

/// What a scan found, before a selection is made of it.
pub(crate) struct Found {
    pub(crate) identity: BtfIdentity,
    pub(crate) skipped: Vec<String>,
    pub(crate) stats: ScanStats,
}

impl Found {
    /// Select from `all` (each with whether ftrace can attach it): the
    /// profile's and filter's probes, the end markers and clone functions,
    /// each with the backends that reach it on `probed`'s offer (or on any
    /// kernel of this release, without a running kernel).
    pub(crate) fn select(
        self,
        all: Vec<(Probe, bool)>,
        probed: Option<Probed>,
        profile: Option<&Profile>,
        filter: &Filter,
    ) -> Discovery {
        let release = self.identity.release.clone();
        let pick = |keep: &dyn Fn(&Probe) -> bool| -> (Vec<Probe>, usize) {
            let listed: Vec<&(Probe, bool)> = all.iter().filter(|(p, _)| keep(p)).collect();
            let n = listed.len();
            let ok = listed
                .into_iter()
                .filter(|(_, ok)| *ok)
                .map(|(p, _)| p.clone())
                .collect();
            (ok, n)
        };
        let (mut end_markers, _) =
            pick(&|p| p.module.is_none() && table::is_end_marker(&p.name, p.kind));
        let (mut clone_functions, _) = pick(&|p| {
            p.module.is_none()
                && p.kind == ProbeKind::Function
                && table::is_clone_function(&p.name)
                && p.skb_pos() == 0
        });
        let (mut probes, listed) = pick(&|p| {
            profile.is_none_or(|pr| pr.keeps(p, release.as_deref()))
                && filter.keeps(&p.name, p.module.as_deref())
        });
        let offer = match &probed {
            Some(probed) => probed.offer,
            None => KernelOffer::everything(release.as_deref()),
        };
        for list in [&mut probes, &mut end_markers, &mut clone_functions] {
            resolve(list, &offer);
            // Without a running kernel, what no backend reaches is left out.
            if probed.is_none() {
                list.retain(|p| !p.backends.is_empty());
            }
        }
        let untraceable = listed - probes.len();
        Discovery {
            identity: self.identity,
            skipped: self.skipped,
            btf: None,
            probes,
            stats: self.stats,
            untraceable,
            probed,
            symbols: None,
            end_markers,
            clone_functions,
            snapshot: None,
            timings: Vec::new(),
        }
    }
}

/// Fill each probe's backends: those that reach it on `offer`. Functions
/// that no backend of a running kernel reaches stay, with an empty list, so
/// listings show them.
fn resolve(probes: &mut [Probe], offer: &KernelOffer) {
    for p in probes {
        p.backends = policy::reaching(&p.shape(), true, offer);
    }
}
