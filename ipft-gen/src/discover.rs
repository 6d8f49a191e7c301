//! Stages 1+2 together: read BTF, scan it, select with a profile and filter,
//! and work out which backends reach each probe.

use std::path::PathBuf;

use crate::btf::{self, BtfError, KernelBtf, ScanStats};
use crate::probe::availability::static_backends;
use crate::probe::{Availability, Filter, KernelSymbols, Probe, Profile};

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
    /// Kernel features (running kernel only).
    pub availability: Option<Availability>,
    /// Running-kernel symbols, kept for address resolution.
    pub symbols: Option<KernelSymbols>,
    /// The kernel's journey-ending probes (see `table::END_MARKERS`),
    /// whatever the selection, with their backends resolved.
    pub end_markers: Vec<Probe>,
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

/// Read, scan, select, resolve backends.
pub fn discover(
    input: &BtfInput,
    profile: Option<&Profile>,
    filter: &Filter,
) -> Result<Discovery, DiscoverError> {
    let kernel = match input {
        BtfInput::Running => KernelBtf::running()?,
        BtfInput::File(p) => KernelBtf::from_file(p)?,
        BtfInput::Dir(d) => KernelBtf::from_dir(d)?,
    };
    let (all, stats) = btf::scan(&kernel)?;
    let release = kernel.identity.release.clone();
    // A vmlinux function to aim feature probes at.
    let target = all
        .iter()
        .find(|p| {
            p.module.is_none() && p.kind == crate::probe::ProbeKind::Function && p.name == "ip_rcv"
        })
        .map(|p| (p.name.clone(), p.btf_id));
    let mut end_markers: Vec<Probe> = all
        .iter()
        .filter(|p| p.module.is_none() && crate::table::is_end_marker(&p.name, p.kind))
        .cloned()
        .collect();
    let mut probes: Vec<Probe> = all
        .into_iter()
        .filter(|p| profile.is_none_or(|pr| pr.keeps(p, release.as_deref())) && filter.keeps(p))
        .collect();
    let (untraceable, availability, symbols) = match input {
        BtfInput::Running => {
            let syms = KernelSymbols::running().map_err(DiscoverError::Kallsyms)?;
            let mut avail = syms.availability(release.as_deref());
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } == 0 {
                if let Some((name, id)) = &target {
                    syms.confirm(&mut avail, (name, *id));
                }
            }
            let dropped = syms.resolve(&mut probes, &avail);
            syms.resolve(&mut end_markers, &avail);
            (dropped, Some(avail), Some(syms))
        }
        _ => {
            for p in probes.iter_mut().chain(end_markers.iter_mut()) {
                p.backends = static_backends(p, release.as_deref());
            }
            end_markers.retain(|p| !p.backends.is_empty());
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
        availability,
        symbols,
        end_markers,
    })
}
