//! Stage 5, load and attach. A [`Session`] owns every object and link;
//! dropping it detaches everything (links are fd-based, so even SIGKILL
//! leaves nothing attached).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Mutex;

use libbpf_rs::{
    libbpf_sys, KprobeMultiOpts, KprobeOpts, Link, MapCore, Object, ObjectBuilder, OpenObject,
    PrintLevel,
};

use crate::{Backend, ProbeEntry};
use ipft_gen::probe::feature;

/// Knobs written into the object's `const volatile struct ipft_config`.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// skb->mark & mask must equal this.
    pub mark: u32,
    /// Mask.
    pub mask: u32,
    /// Wake the reader once this many bytes are queued.
    pub wakeup_bytes: u64,
    /// Trace returns (-t function_graph): kprobes stash the skb for kretprobes.
    pub graph: bool,
}

impl Config {
    /// `struct ipft_config` as laid out in templates/bpf/tracer.bpf.c.hbs.
    fn bytes(&self, probe: u32) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[0..4].copy_from_slice(&self.mark.to_ne_bytes());
        b[4..8].copy_from_slice(&self.mask.to_ne_bytes());
        b[8..16].copy_from_slice(&self.wakeup_bytes.to_ne_bytes());
        b[16..20].copy_from_slice(&probe.to_ne_bytes());
        b[20..24].copy_from_slice(&u32::from(self.graph).to_ne_bytes());
        b
    }
}

/// Setting up failed as a whole (as opposed to one probe failing).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// libbpf could not open the object.
    #[error("opening the BPF object: {0}")]
    Open(String),
    /// The verifier (or the kernel) refused a program; the log tail says why.
    #[error("loading BPF program {program}: {error}\n--- verifier log (last 30 lines) ---\n{log}")]
    Load {
        /// Program name.
        program: String,
        /// Error.
        error: String,
        /// Verifier log tail.
        log: String,
    },
    /// The backend cannot work on this kernel.
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

/// Program named in a libbpf load failure message.
fn failed_program(log: &str) -> Option<String> {
    log.lines().rev().find_map(|l| {
        let rest = l.split("prog '").nth(1)?;
        let name = rest.split('\'').next()?;
        (l.contains("failed to load")
            || l.contains("failed to find")
            || l.contains("load failed")
            || l.contains("failed"))
        .then(|| name.to_string())
    })
}

/// Errno part of an error, for grouping failures.
pub fn reason(e: &libbpf_rs::Error) -> String {
    let s = format!("{e:#}");
    s.rsplit(": ").next().unwrap_or(&s).to_string()
}

/// The errno in a libbpf error, if any.
fn errno(e: &libbpf_rs::Error) -> Option<i32> {
    let s = format!("{e:#}");
    let n = s.rsplit("os error ").next()?;
    n.trim_end_matches(')').parse().ok()
}

/// Whether an error means "this kernel/sandbox cannot do this backend"
/// (as opposed to the verifier refusing one program: EACCES/EINVAL).
fn unavailable(e: &libbpf_rs::Error) -> bool {
    matches!(
        errno(e),
        Some(libc::EPERM | libc::ENOENT | libc::EOPNOTSUPP | 524)
    )
}

/// Threads closing links at exit.
const DETACH_THREADS: usize = 64;

/// Progress of attaching, reported to a callback.
pub type Progress<'a> = &'a mut dyn FnMut(usize);

/// Loaded objects and the links that keep programs attached.
#[derive(Default)]
pub struct Session {
    // Links first: dropped (detached) before the objects that own the programs.
    links: Vec<Link>,
    /// Links and programs made with the raw API (generic fentry/fexit).
    raw_links: Vec<OwnedFd>,
    raw_progs: Vec<OwnedFd>,
    objects: Vec<Object>,
    /// Relocated instructions of generic fentry/fexit programs, by name.
    templates: HashMap<String, Vec<libbpf_sys::bpf_insn>>,
    /// Probe ids attached.
    pub attached: Vec<usize>,
    /// Probe ids that failed, with the reason.
    pub failed: Vec<(usize, String)>,
    /// Probes left out by the selection (profile, regexes) or unreachable.
    pub filtered: usize,
    /// Selected probes the backend cannot reach: (name, why).
    pub skipped: Vec<(String, String)>,
}

impl Session {
    /// The object holding the ring buffer and loss counters.
    pub fn main_object(&self) -> &Object {
        &self.objects[0]
    }

    /// Number of links held.
    pub fn links(&self) -> usize {
        self.links.len()
    }

    /// Detach everything now (also done on drop).
    pub fn detach(&mut self) {
        // Releasing an fentry/fexit link waits for an RCU-tasks grace period
        // (the trampoline may still be running): close links from several
        // threads so those waits overlap instead of adding up.
        let links = std::mem::take(&mut self.links);
        let raw = std::mem::take(&mut self.raw_links);
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
                sc.spawn(move || drop((l, r)));
            }
        });
        self.raw_progs.clear();
        self.objects.clear();
    }

    /// Load a specialised object (one program per typed probe) and attach
    /// the selected probes. `selected` are indexes into `table`.
    pub fn specialised(
        object: &[u8],
        table: &[ProbeEntry],
        selected: &[usize],
        cfg: Config,
        graph: bool,
        progress: Progress<'_>,
    ) -> Result<Session, LoadError> {
        let mut wanted: HashSet<String> = HashSet::new();
        for &i in selected {
            wanted.insert(table[i].program.to_string());
            if graph {
                if let Some(r) = &table[i].return_program {
                    wanted.insert(r.to_string());
                }
            }
        }
        let mut s = Session::default();
        // Programs turned off, with why.
        let mut refused: BTreeMap<String, String> = BTreeMap::new();
        let function_progs: Vec<String> = selected
            .iter()
            .filter(|&&i| table[i].backend != Backend::TpBtf)
            .flat_map(|&i| [Some(&table[i].program), table[i].return_program.as_ref()])
            .flatten()
            .map(|p| p.to_string())
            .filter(|p| wanted.contains(p))
            .collect();
        // A program the kernel refuses fails the whole object load: turn it
        // off and retry, charging the failure to its probes.
        let obj = loop {
            let mut open = open(object)?;
            set_config(&mut open, cfg.bytes(0));
            for mut p in open.progs_mut() {
                let name = p.name().to_string_lossy().into_owned();
                p.set_autoload(wanted.contains(&name) && !refused.contains_key(&name));
            }
            take_log();
            let e = match open.load() {
                Ok(o) => break o,
                Err(e) => e,
            };
            let log = take_log();
            let names: Vec<String> = refused.keys().cloned().collect();
            if errno(&e) == Some(libc::EPERM) {
                // Refused before verification (a sandbox, a missing
                // capability): no function program of this backend can load;
                // keep the tracepoints if there are any.
                let backend = selected
                    .iter()
                    .map(|&i| table[i].backend)
                    .find(|b| *b != Backend::TpBtf)
                    .unwrap_or(Backend::TpBtf);
                let fresh: Vec<&String> = function_progs
                    .iter()
                    .filter(|p| !refused.contains_key(*p))
                    .collect();
                if fresh.is_empty() || fresh.len() + refused.len() >= wanted.len() {
                    return Err(LoadError::Unavailable {
                        backend,
                        reason: format!("{e:#}"),
                    });
                }
                let why = format!("{backend} unavailable: {}", reason(&e));
                for p in fresh {
                    refused.insert(p.clone(), why.clone());
                }
                continue;
            }
            match failed_program(&log) {
                Some(p) if !refused.contains_key(&p) && refused.len() < 64 => {
                    refused.insert(p, format!("refused by the kernel: {}", reason(&e)));
                    if refused.len() == wanted.len() {
                        return Err(load_error(&e, &log, &names));
                    }
                }
                _ => return Err(load_error(&e, &log, &names)),
            }
        };
        s.objects.push(obj);
        let mut kprobe_multi: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut done = 0;
        for &i in selected {
            let e = &table[i];
            if let Some(why) = refused.get(e.program.as_ref()) {
                s.failed.push((i, why.clone()));
                continue;
            }
            match e.backend {
                Backend::KprobeMulti => {
                    kprobe_multi
                        .entry(e.program.to_string())
                        .or_default()
                        .push(i);
                    continue;
                }
                _ => {
                    let r = s.attach_one(0, e, i, graph);
                    s.record(i, r);
                }
            }
            done += 1;
            progress(done);
        }
        for (prog, ids) in kprobe_multi {
            let n = ids.len();
            let r = s.attach_multi(0, &prog, table, &ids, graph);
            for i in ids {
                s.record(i, r.as_ref().map(|_| ()).map_err(Clone::clone));
            }
            done += n;
            progress(done);
        }
        Ok(s)
    }

    /// Load the generic object: kprobe programs once, typed programs once per
    /// target (each copy learns its probe id from rodata).
    pub fn generic(
        object: &[u8],
        table: &[ProbeEntry],
        cfg: Config,
        graph: bool,
        progress: Progress<'_>,
    ) -> Result<Session, LoadError> {
        let mut autoload: HashSet<&str> = HashSet::new();
        for e in table
            .iter()
            .filter(|e| matches!(e.backend, Backend::Kprobe | Backend::KprobeMulti))
        {
            autoload.insert(e.program.as_ref());
            if let Some(r) = e.return_program.as_deref().filter(|_| graph) {
                autoload.insert(r);
            }
        }
        // Each generic fentry/fexit program is loaded once in the main object,
        // aimed at the first vmlinux function that uses it; its relocated
        // instructions are then loaded again for every other function (a
        // verifier pass each, no object reopen), the probe index travelling
        // as the link's cookie.
        let mut first_target: BTreeMap<&str, &str> = BTreeMap::new();
        for e in table
            .iter()
            .filter(|e| e.backend == Backend::Fentry && e.module.is_none())
        {
            first_target
                .entry(e.program.as_ref())
                .or_insert(e.name.as_ref());
            if let Some(r) = e.return_program.as_deref().filter(|_| graph) {
                first_target.entry(r).or_insert(e.name.as_ref());
            }
        }
        autoload.extend(first_target.keys());
        let mut s = Session::default();
        let mut open_main = open(object)?;
        set_config(&mut open_main, cfg.bytes(0));
        for mut p in open_main.progs_mut() {
            let name = p.name().to_string_lossy().into_owned();
            p.set_autoload(autoload.contains(name.as_str()));
            if let Some(t) = first_target.get(name.as_str()) {
                p.set_attach_target(0, Some(t.to_string()))
                    .map_err(|e| LoadError::Open(format!("{e:#}")))?;
            }
        }
        take_log();
        let main = match open_main.load() {
            Ok(m) => m,
            Err(e) if unavailable(&e) && !first_target.is_empty() => {
                return Err(LoadError::Unavailable {
                    backend: Backend::Fentry,
                    reason: format!("{e:#}"),
                })
            }
            Err(e) => return Err(load_error(&e, &take_log(), &[])),
        };
        for name in first_target.keys() {
            if let Some(p) = Self::prog(&main, name) {
                s.templates.insert(name.to_string(), p.insns().to_vec());
            }
        }
        s.objects.push(main);
        let mut kprobe_multi: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut done = 0;
        let mut typed_ok = false;
        for (i, e) in table.iter().enumerate() {
            let r = match e.backend {
                Backend::Kprobe => Ok(s.attach_one(0, e, i, graph)),
                Backend::KprobeMulti => {
                    kprobe_multi
                        .entry(e.program.to_string())
                        .or_default()
                        .push(i);
                    continue;
                }
                Backend::Fentry if e.module.is_none() => s.attach_fentry_raw(e, i, graph),
                Backend::TpBtf | Backend::Fentry => s.load_typed_copy(object, e, i, cfg, graph),
            };
            match r {
                Ok(r) => {
                    typed_ok |= r.is_ok();
                    s.record(i, r);
                }
                // The first typed probe already fails: the backend itself is
                // unusable here (sandbox, missing cookie support, ...).
                Err(le) if !typed_ok => {
                    return Err(match le {
                        LoadError::Load { error, .. } => LoadError::Unavailable {
                            backend: e.backend,
                            reason: error,
                        },
                        le => le,
                    })
                }
                Err(le) => s.record(i, Err(le.to_string())),
            }
            done += 1;
            progress(done);
        }
        for (prog, ids) in kprobe_multi {
            let n = ids.len();
            let r = s.attach_multi(0, &prog, table, &ids, graph);
            for i in ids {
                s.record(i, r.as_ref().map(|_| ()).map_err(Clone::clone));
            }
            done += n;
            progress(done);
        }
        Ok(s)
    }

    /// Load a generic fentry (and fexit) program's instructions for one more
    /// vmlinux function and link it with the probe index as cookie. The outer
    /// error is a whole-backend failure, the inner one this probe's.
    fn attach_fentry_raw(
        &mut self,
        e: &ProbeEntry,
        id: usize,
        graph: bool,
    ) -> Result<Result<(), String>, LoadError> {
        let mut progs = vec![(e.program.as_ref(), libbpf_sys::BPF_TRACE_FENTRY)];
        if let Some(r) = e.return_program.as_deref().filter(|_| graph) {
            progs.push((r, libbpf_sys::BPF_TRACE_FEXIT));
        }
        let mut links = Vec::new();
        for (name, attach) in progs {
            let Some(insns) = self.templates.get(name) else {
                return Ok(Err(format!("program {name} missing")));
            };
            let prog = match feature::prog_load(
                libbpf_sys::BPF_PROG_TYPE_TRACING,
                name,
                insns,
                attach,
                e.btf_id,
            ) {
                Ok(p) => p,
                Err(errno)
                    if matches!(errno, libc::EPERM | libc::EINVAL) && self.raw_links.is_empty() =>
                {
                    return Err(LoadError::Unavailable {
                        backend: Backend::Fentry,
                        reason: format!(
                            "{} (os error {errno})",
                            std::io::Error::from_raw_os_error(errno)
                        ),
                    })
                }
                Err(errno) => {
                    return Ok(Err(format!(
                        "load: {}",
                        std::io::Error::from_raw_os_error(errno)
                    )))
                }
            };
            let link = match feature::tracing_link(prog.as_raw_fd(), attach, id as u64) {
                Ok(l) => l,
                Err(errno) => return Ok(Err(std::io::Error::from_raw_os_error(errno).to_string())),
            };
            self.raw_progs.push(prog);
            links.push(link);
        }
        self.raw_links.extend(links);
        Ok(Ok(()))
    }

    fn record(&mut self, i: usize, r: Result<(), String>) {
        match r {
            Ok(()) => self.attached.push(i),
            Err(e) => self.failed.push((i, e)),
        }
    }

    fn prog<'a>(obj: &'a Object, name: &str) -> Option<libbpf_rs::ProgramMut<'a>> {
        obj.progs_mut().find(|p| p.name() == name)
    }

    /// Attach one probe whose program lives in object `o`.
    fn attach_one(
        &mut self,
        o: usize,
        e: &ProbeEntry,
        id: usize,
        graph: bool,
    ) -> Result<(), String> {
        let obj = &self.objects[o];
        let prog =
            Self::prog(obj, &e.program).ok_or_else(|| format!("program {} missing", e.program))?;
        // Entry and return attach alike: kprobe by name with the index as
        // cookie, typed programs to the target they were loaded for.
        let attach = |p: &libbpf_rs::ProgramMut<'_>, retprobe: bool| {
            match e.backend {
                Backend::Kprobe => p.attach_kprobe_with_opts(
                    retprobe,
                    e.name.as_ref(),
                    KprobeOpts {
                        cookie: id as u64,
                        ..Default::default()
                    },
                ),
                Backend::TpBtf | Backend::Fentry => p.attach_trace(),
                Backend::KprobeMulti => unreachable!("grouped"),
            }
            .map_err(|err| reason(&err))
        };
        let mut links = vec![attach(&prog, false)?];
        if let Some(r) = e.return_program.as_deref().filter(|_| graph) {
            let rp = Self::prog(obj, r).ok_or_else(|| format!("program {r} missing"))?;
            links.push(attach(&rp, true)?);
        }
        self.links.extend(links);
        Ok(())
    }

    fn attach_multi(
        &mut self,
        o: usize,
        prog: &str,
        table: &[ProbeEntry],
        ids: &[usize],
        graph: bool,
    ) -> Result<(), String> {
        let obj = &self.objects[o];
        let mut progs = vec![(prog, false)];
        // Every entry of a group shares the kretprobe.multi program.
        if let Some(r) = table[ids[0]].return_program.as_deref().filter(|_| graph) {
            progs.push((r, true));
        }
        let mut links = Vec::new();
        for (name, retprobe) in progs {
            let p = Self::prog(obj, name).ok_or_else(|| format!("program {name} missing"))?;
            let opts = KprobeMultiOpts {
                symbols: ids.iter().map(|&i| table[i].name.to_string()).collect(),
                cookies: ids.iter().map(|&i| i as u64).collect(),
                retprobe,
                ..Default::default()
            };
            links.push(
                p.attach_kprobe_multi_with_opts(opts)
                    .map_err(|e| reason(&e))?,
            );
        }
        self.links.extend(links);
        Ok(())
    }

    /// One copy of the generic object for one typed target.
    fn load_typed_copy(
        &mut self,
        object: &[u8],
        e: &ProbeEntry,
        id: usize,
        cfg: Config,
        graph: bool,
    ) -> Result<Result<(), String>, LoadError> {
        let mut open = open(object)?;
        set_config(&mut open, cfg.bytes(id as u32));
        let ret = e.return_program.as_deref().filter(|_| graph);
        for mut p in open.progs_mut() {
            let name = p.name().to_string_lossy().into_owned();
            let on = name == e.program || Some(name.as_str()) == ret;
            p.set_autoload(on);
            if on {
                if let Err(err) = p.set_attach_target(0, Some(e.name.to_string())) {
                    return Ok(Err(reason(&err)));
                }
            }
        }
        // Share the ring buffer and loss counters of the main object.
        let main = &self.objects[0];
        for mut m in open.maps_mut() {
            let name = m.name().to_string_lossy().into_owned();
            if let Some(src) = main
                .maps()
                .find(|x| x.name() == name.as_str() && !name.contains(".rodata"))
            {
                if let Err(err) = m.reuse_fd(src.as_fd()) {
                    return Ok(Err(reason(&err)));
                }
            }
        }
        take_log();
        let obj = match open.load() {
            Ok(o) => o,
            Err(err) if unavailable(&err) => return Err(load_error(&err, &take_log(), &[])),
            Err(err) => return Ok(Err(format!("load: {}", reason(&err)))),
        };
        self.objects.push(obj);
        let o = self.objects.len() - 1;
        if e.backend != Backend::Fentry {
            return Ok(self.attach_one(o, e, id, graph));
        }
        // Generic fentry/fexit read their probe index from the cookie.
        let mut progs = vec![(e.program.as_ref(), libbpf_sys::BPF_TRACE_FENTRY)];
        if let Some(r) = ret {
            progs.push((r, libbpf_sys::BPF_TRACE_FEXIT));
        }
        for (name, attach) in progs {
            let Some(p) = Self::prog(&self.objects[o], name) else {
                return Ok(Err(format!("program {name} missing")));
            };
            match feature::tracing_link(p.as_fd().as_raw_fd(), attach, id as u64) {
                Ok(l) => self.raw_links.push(l),
                Err(errno) => return Ok(Err(std::io::Error::from_raw_os_error(errno).to_string())),
            }
        }
        Ok(Ok(()))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.detach();
    }
}

fn load_error(e: &libbpf_rs::Error, log: &str, refused: &[String]) -> LoadError {
    LoadError::Load {
        program: failed_program(log)
            .or_else(|| refused.iter().next().cloned())
            .unwrap_or_else(|| "?".into()),
        error: format!("{e:#}"),
        log: tail(log, 30),
    }
}

fn open(object: &[u8]) -> Result<OpenObject, LoadError> {
    let mut b = ObjectBuilder::default();
    b.name("ipft")
        .map_err(|e| LoadError::Open(format!("{e:#}")))?;
    take_log();
    b.open_memory(object)
        .map_err(|e| LoadError::Open(format!("{e:#}\n{}", tail(&take_log(), 10))))
}

fn set_config(open: &mut OpenObject, bytes: [u8; 24]) {
    for mut m in open.maps_mut() {
        if m.name().to_string_lossy().ends_with(".rodata") {
            if let Some(v) = m.initial_value_mut() {
                if v.len() >= bytes.len() {
                    v[..bytes.len()].copy_from_slice(&bytes);
                }
            }
        }
    }
}

/// Sum of the per-CPU reserve-failure counters.
pub fn lost_events(obj: &Object) -> u64 {
    let Some(map) = obj.maps().find(|m| m.name() == "ipft_lost") else {
        return 0;
    };
    let key = 0u32.to_ne_bytes();
    match map.lookup_percpu(&key, libbpf_rs::MapFlags::ANY) {
        Ok(Some(vals)) => vals
            .iter()
            .map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap_or([0; 8])))
            .sum(),
        _ => 0,
    }
}
