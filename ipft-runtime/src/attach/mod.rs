//! Stage 5, load and attach. A [`Session`] owns every object and link;
//! dropping it detaches everything (links are fd-based, so even SIGKILL
//! leaves nothing attached).
//!
//! `specialised` loads a generated object (one program per typed probe);
//! `generic` loads the object built into `ipft` (programs per position,
//! aimed at their targets at load time).

mod generic;
mod losses;
mod multi;
mod specialised;

pub use losses::{bpf_losses, BpfLosses};

use std::os::fd::OwnedFd;
use std::sync::Mutex;

use ipft_abi::{Backend, Config, Layout, ProbeEntry, ProgramId};

use crate::kernel;
use libbpf_rs::{
    ErrorKind, KprobeOpts, Link, MapCore, Object, ObjectBuilder, OpenObject, PrintLevel,
};

/// Setting up failed as a whole (as opposed to one probe failing).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// libbpf could not open the object.
    #[error("opening the BPF object: {source}{log}")]
    Open {
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
        /// Tail of libbpf's log, with a leading newline, or empty.
        log: String,
    },
    /// The object has no `.rodata` large enough for `struct ipft_config`:
    /// the mark filter would not apply, so it is not loaded at all.
    #[error("the BPF object's .rodata does not hold struct ipft_config ({found} of {want} bytes)")]
    NoConfig {
        /// Bytes found (0: no .rodata).
        found: usize,
        /// Bytes needed.
        want: usize,
    },
    /// The verifier (or the kernel) refused a program; the log tail says why.
    #[error(
        "loading BPF program {program}: {source}\n--- verifier log (last 30 lines) ---\n{log}"
    )]
    Load {
        /// Program name.
        program: String,
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
        /// Verifier log tail.
        log: String,
    },
    /// A signal arrived while attaching: everything attached so far was
    /// detached.
    #[error("interrupted while attaching; nothing is left attached")]
    Interrupted,
    /// The pcap-filter expression could not be put into a program.
    #[error("{0}")]
    Filter(String),
    /// The backend cannot work on this kernel: every program of it failed.
    #[error("backend {backend} is unavailable on this kernel: {reason}")]
    Unavailable {
        /// Backend.
        backend: Backend,
        /// First error seen.
        reason: String,
    },
}

static LIBBPF_LOG: Mutex<String> = Mutex::new(String::new());

/// Route libbpf's messages into a buffer so failures can show the verifier
/// log tail instead of flooding stderr.
pub fn capture_libbpf_log() {
    fn cb(_level: PrintLevel, msg: String) {
        if let Ok(mut l) = LIBBPF_LOG.lock() {
            if l.len() > 1 << 20 {
                let cut = l.len() - (1 << 19);
                l.drain(..cut);
            }
            l.push_str(&msg);
        }
    }
    libbpf_rs::set_print(Some((PrintLevel::Debug, cb)));
}

fn take_log() -> String {
    LIBBPF_LOG
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default()
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The program a libbpf load failure names (`prog 'NAME': ... failed`).
fn failed_program(log: &str) -> Option<String> {
    log.lines().rev().find_map(|l| {
        let rest = l.split("prog '").nth(1)?;
        let name = rest.split('\'').next()?;
        l.contains("fail").then(|| name.to_string())
    })
}

/// A libbpf error in a few words, for grouping per-probe failures.
pub fn reason(e: &libbpf_rs::Error) -> String {
    let what = match e.kind() {
        ErrorKind::NotFound => "not found",
        ErrorKind::PermissionDenied => "permission denied",
        ErrorKind::Unsupported => "not supported",
        ErrorKind::InvalidInput => "invalid argument",
        ErrorKind::AlreadyExists => "already attached",
        ErrorKind::TooBig => "too big",
        ErrorKind::OutOfMemory => "out of memory",
        // ENOTSUPP (524) and friends have no kind of their own.
        _ => {
            return format!("{e:#}")
                .rsplit(": ")
                .next()
                .unwrap_or("error")
                .into()
        }
    };
    what.into()
}

/// Whether an attach error says "this backend does not work here" rather
/// than "this one function cannot be attached".
fn backend_unusable(e: &libbpf_rs::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::PermissionDenied | ErrorKind::Unsupported
    )
}

/// Threads closing links at exit.
const DETACH_THREADS: usize = 64;

/// Progress of attaching, reported to a callback after each probe; it
/// returns false to stop (a signal arrived).
pub type Progress<'a> = &'a mut dyn FnMut(usize) -> bool;

/// Loaded objects and the links that keep programs attached.
#[derive(Default)]
pub struct Session {
    // Links first: dropped (detached) before the objects that own the programs.
    links: Vec<Link>,
    /// Links and programs made with the raw API (generic fentry/fexit).
    raw_links: Vec<OwnedFd>,
    /// kprobe-multi links.
    multi_links: Vec<OwnedFd>,
    /// How many of them were attached by address (for --timings).
    pub multi_by_address: usize,
    /// Perf kprobe links, whose release waits for grace periods in turn.
    kprobe_links: usize,
    raw_progs: Vec<OwnedFd>,
    objects: Vec<Object>,
    /// Relocated instructions of generic fentry/fexit programs.
    templates: std::collections::HashMap<ProgramId, Vec<libbpf_rs::libbpf_sys::bpf_insn>>,
    /// Table rows attached.
    pub attached: Vec<usize>,
    /// Table rows that failed, with the reason.
    pub failed: Vec<(usize, String)>,
    /// How long each step of the load took (for --timings).
    pub timings: Vec<(&'static str, std::time::Duration)>,
}

impl Session {
    /// kprobe-multi links attached.
    pub fn multi_link_count(&self) -> usize {
        self.multi_links.len()
    }

    /// The object holding the ring buffer and loss counters.
    pub fn main_object(&self) -> &Object {
        &self.objects[0]
    }

    /// Detach everything now (also done on drop).
    pub fn detach(&mut self) {
        self.detach_counting(&std::sync::atomic::AtomicUsize::new(0));
    }

    /// Detach, keeping `releasing` at the number of links still to go;
    /// true if the release ran with expedited grace periods.
    pub fn detach_counting(&mut self, releasing: &std::sync::atomic::AtomicUsize) -> bool {
        use std::sync::atomic::Ordering;
        let links = std::mem::take(&mut self.links);
        let multi = std::mem::take(&mut self.multi_links);
        let raw = std::mem::take(&mut self.raw_links);
        // (Nothing to release: a detach already ran, the drop's.)
        let any = !(links.is_empty() && multi.is_empty() && raw.is_empty());
        let expedited = if kernel::worth_expediting(std::mem::take(&mut self.kprobe_links)) {
            kernel::Expedited::raise()
        } else {
            if any {
                kernel::Expedited::repair();
            }
            None
        };
        releasing.store(links.len() + multi.len() + raw.len(), Ordering::SeqCst);
        let release = |fd: OwnedFd| {
            drop(fd);
            releasing.fetch_sub(1, Ordering::SeqCst);
        };
        // kprobe-multi links first, one after the other: the kernel releases
        // them under ftrace's lock, each waiting for RCU-tasks grace periods,
        // so threads only contend (two threads took 0.1 s more for four).
        multi.into_iter().for_each(release);
        // Releasing an fentry/fexit link waits for an RCU-tasks grace period
        // (the trampoline may still be running): close links from several
        // threads so those waits overlap instead of adding up.
        let threads = DETACH_THREADS
            .min(links.len().max(raw.len()).div_ceil(16))
            .max(1);
        let mut link_chunks: Vec<Vec<Link>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, l) in links.into_iter().enumerate() {
            link_chunks[i % threads].push(l);
        }
        let mut raw_chunks: Vec<Vec<OwnedFd>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, l) in raw.into_iter().enumerate() {
            raw_chunks[i % threads].push(l);
        }
        std::thread::scope(|sc| {
            for (l, r) in link_chunks.into_iter().zip(raw_chunks) {
                sc.spawn(move || {
                    for link in l {
                        drop(link);
                        releasing.fetch_sub(1, Ordering::SeqCst);
                    }
                    r.into_iter().for_each(release);
                });
            }
        });
        let was_expedited = expedited.is_some();
        drop(expedited);
        self.raw_progs.clear();
        self.objects.clear();
        was_expedited
    }

    fn record(&mut self, i: usize, r: Result<(), String>) {
        match r {
            Ok(()) => self.attached.push(i),
            Err(e) => self.failed.push((i, e)),
        }
    }

    fn prog(obj: &Object, id: ProgramId) -> Option<libbpf_rs::ProgramMut<'_>> {
        obj.progs_mut().find(|p| program_id(p.name()) == Some(id))
    }

    /// Attach one probe whose program lives in object `o`.
    fn attach_one(
        &mut self,
        o: usize,
        e: &ProbeEntry,
        id: usize,
        graph: bool,
    ) -> Result<(), String> {
        // A kretprobe finds its entry's skb by the link's cookie.
        if e.backend == Backend::Kprobe && e.follows_clones() && !kernel::cookies().kprobe {
            return Err("following clones with kprobes needs BPF cookies (Linux 5.15)".into());
        }
        let obj = &self.objects[o];
        let prog =
            Self::prog(obj, e.program).ok_or_else(|| format!("program {} missing", e.program))?;
        // Entry and return attach alike: kprobe by name with the index as
        // cookie, typed programs to the target they were loaded for.
        let attach = |p: &libbpf_rs::ProgramMut<'_>, retprobe: bool| {
            match e.backend {
                Backend::Kprobe => p.attach_kprobe_with_opts(
                    retprobe,
                    e.name.as_ref(),
                    KprobeOpts {
                        // Without cookie support libbpf refuses any cookie.
                        cookie: if kernel::cookies().kprobe {
                            id as u64
                        } else {
                            0
                        },
                        ..Default::default()
                    },
                ),
                Backend::TpBtf | Backend::Fentry => p.attach_trace(),
                Backend::KprobeMulti => unreachable!("grouped"),
            }
            .map_err(|err| reason(&err))
        };
        let mut links = vec![attach(&prog, false)?];
        if let Some(r) = e.return_attached(graph) {
            let rp = Self::prog(obj, r).ok_or_else(|| format!("program {r} missing"))?;
            links.push(attach(&rp, true)?);
        }
        if e.backend == Backend::Kprobe {
            self.kprobe_links += links.len();
        }
        self.links.extend(links);
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.detach();
    }
}

/// The id of an object's program, if it is one of ours.
fn program_id(name: &std::ffi::OsStr) -> Option<ProgramId> {
    name.to_str()?.parse().ok()
}

fn load_error(e: libbpf_rs::Error, log: &str, refused: &[String]) -> LoadError {
    LoadError::Load {
        program: failed_program(log)
            .or_else(|| refused.first().cloned())
            .unwrap_or_else(|| "?".into()),
        source: e,
        log: tail(log, 30),
    }
}

/// What a load is given: the rodata config and the ring buffer's size.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Written into `.rodata`.
    pub config: Config,
    /// `ipft_events` size in bytes (None: the object's own).
    pub ring_buffer_bytes: Option<u32>,
    /// The running kernel's BTF for CO-RE, where /sys/kernel/btf is missing.
    pub btf: Option<std::path::PathBuf>,
    /// A pcap-filter expression as eBPF, spliced into every program in
    /// place of its stub (`config.pcap` is set with it).
    pub pcap: Option<Vec<libbpf_rs::libbpf_sys::bpf_insn>>,
}

/// Apply [`LoadOptions`] to an opened object before load: the config (with
/// what the kernel's links carry and kprobes may cast, and whether the
/// object's typed programs are `templates` for copies with their index
/// written in), the ring buffer's size, and room in `ipft_probe_ips` for
/// `kprobes` rows where kprobe links carry no cookie.
fn apply(
    open: &mut OpenObject,
    opts: &LoadOptions,
    kprobes: usize,
    templates: bool,
) -> Result<(), LoadError> {
    let cookies = kernel::cookies();
    set_config(
        open,
        &Config {
            kprobe_cookies: u32::from(cookies.kprobe),
            tracing_patched: u32::from(templates),
            tp_patched: u32::from(templates),
            kprobe_cast: u32::from(kernel::rdonly_cast()),
            ..opts.config
        },
    )?;
    let wrap = |source| LoadError::Open {
        source,
        log: String::new(),
    };
    for mut m in open.maps_mut() {
        match (m.name().to_str(), opts.ring_buffer_bytes) {
            (Some("ipft_events"), Some(bytes)) => m.set_max_entries(bytes).map_err(wrap)?,
            (Some("ipft_probe_ips"), _) if !cookies.kprobe && kprobes > 0 => {
                m.set_max_entries(kprobes as u32).map_err(wrap)?
            }
            _ => {}
        }
    }
    Ok(())
}

/// Where kprobe links carry no cookie, tell the programs which function is
/// which probe: kallsyms address -> row index, for the kprobe `rows`.
fn fill_probe_ips(obj: &Object, table: &[ProbeEntry], rows: &[usize]) -> Result<(), LoadError> {
    if kernel::cookies().kprobe || rows.is_empty() {
        return Ok(());
    }
    let syms = kernel::KernelSymbols::kallsyms().map_err(|e| LoadError::Unavailable {
        backend: Backend::Kprobe,
        reason: format!("kprobes without cookies need /proc/kallsyms: {e}"),
    })?;
    let map = obj
        .maps()
        .find(|m| m.name() == "ipft_probe_ips")
        .ok_or(LoadError::Unavailable {
            backend: Backend::Kprobe,
            reason: "the object has no ipft_probe_ips map (built before Linux 5.10 support)".into(),
        })?;
    for &i in rows {
        let Some(&addr) = syms.text.get(table[i].name.as_ref()) else {
            continue; // the attach fails on its own and says so
        };
        let value = i as u32;
        map.update(
            &addr.to_ne_bytes(),
            &value.to_ne_bytes(),
            libbpf_rs::MapFlags::ANY,
        )
        .map_err(|source| LoadError::Open {
            source,
            log: "filling ipft_probe_ips".into(),
        })?;
    }
    Ok(())
}

/// The kprobe rows among `rows`. -t function_graph keys each kretprobe's
/// stash by the link's cookie: on a kernel without kprobe cookies, kprobes
/// cannot serve it.
fn kprobe_rows(
    table: &[ProbeEntry],
    rows: impl Iterator<Item = usize>,
    graph: bool,
) -> Result<Vec<usize>, LoadError> {
    let kprobes: Vec<usize> = rows
        .filter(|&i| table[i].backend == Backend::Kprobe)
        .collect();
    if graph && !kprobes.is_empty() && !kernel::cookies().kprobe {
        return Err(LoadError::Unavailable {
            backend: Backend::Kprobe,
            reason: "-t function_graph with kprobes needs BPF cookies (Linux 5.15)".into(),
        });
    }
    Ok(kprobes)
}

fn open(object: &[u8], opts: &LoadOptions) -> Result<OpenObject, LoadError> {
    let mut b = ObjectBuilder::default();
    let wrap = |source| LoadError::Open {
        source,
        log: String::new(),
    };
    b.name("ipft").map_err(wrap)?;
    if let Some(btf) = &opts.btf {
        b.btf_custom_path(btf).map_err(wrap)?;
    }
    take_log();
    b.open_memory(object).map_err(|source| LoadError::Open {
        source,
        log: format!("\n{}", tail(&take_log(), 10)),
    })
}

/// Write the config into the object's rodata. An object without room for it
/// is refused: loading it would trace without the mark filter.
fn set_config(open: &mut OpenObject, cfg: &Config) -> Result<(), LoadError> {
    let bytes = cfg.to_bytes();
    let mut found = 0;
    for mut m in open.maps_mut() {
        if m.name().to_string_lossy().ends_with(".rodata") {
            if let Some(v) = m.initial_value_mut() {
                found = v.len();
                if v.len() >= bytes.len() {
                    v[..bytes.len()].copy_from_slice(&bytes);
                    return Ok(());
                }
            }
        }
    }
    Err(LoadError::NoConfig {
        found,
        want: std::mem::size_of::<Config>(),
    })
}

/// Tell every program to stop emitting (the first step of a stop: the
/// ring buffer is drained and the counters read after it, links go last).
pub fn stop_emitting(obj: &Object) -> Result<(), libbpf_rs::Error> {
    let map = obj
        .maps()
        .find(|m| m.name() == "ipft_stopped")
        .ok_or_else(|| libbpf_rs::Error::from_raw_os_error(libc::ENOENT))?;
    map.update(
        &0u32.to_ne_bytes(),
        &1u32.to_ne_bytes(),
        libbpf_rs::MapFlags::ANY,
    )
}
