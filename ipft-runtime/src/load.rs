//! Stage 5, load and attach. A [`Session`] owns every object and link;
//! dropping it detaches everything (links are fd-based, so even SIGKILL
//! leaves nothing attached).

use std::collections::{BTreeMap, HashSet};
use std::os::fd::AsFd;
use std::sync::Mutex;

use libbpf_rs::{
    KprobeMultiOpts, KprobeOpts, Link, MapCore, Object, ObjectBuilder, OpenObject, PrintLevel,
};

use crate::{Backend, ProbeEntry};

/// Knobs written into the object's `const volatile struct ipft_config`.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// skb->mark & mask must equal this.
    pub mark: u32,
    /// Mask.
    pub mask: u32,
    /// Wake the reader once this many bytes are queued.
    pub wakeup_bytes: u64,
}

impl Config {
    fn bytes(&self, probe: u32) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[0..4].copy_from_slice(&self.mark.to_ne_bytes());
        b[4..8].copy_from_slice(&self.mask.to_ne_bytes());
        b[8..16].copy_from_slice(&self.wakeup_bytes.to_ne_bytes());
        b[16..20].copy_from_slice(&probe.to_ne_bytes());
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

/// Progress of attaching, reported to a callback.
pub type Progress<'a> = &'a mut dyn FnMut(usize);

/// Loaded objects and the links that keep programs attached.
#[derive(Default)]
pub struct Session {
    // Links first: dropped (detached) before the objects that own the programs.
    links: Vec<Link>,
    objects: Vec<Object>,
    /// Probe ids attached.
    pub attached: Vec<usize>,
    /// Probe ids that failed, with the reason.
    pub failed: Vec<(usize, String)>,
    /// Probes left out by the selection (profile, regexes) or unreachable.
    pub filtered: usize,
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
        self.links.clear();
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
            let r = s.attach_multi(0, &prog, table, &ids);
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
        let kprobe_progs: HashSet<&str> = table
            .iter()
            .filter(|e| matches!(e.backend, Backend::Kprobe | Backend::KprobeMulti))
            .map(|e| e.program.as_ref())
            .collect();
        let mut s = Session::default();
        let mut open_main = open(object)?;
        set_config(&mut open_main, cfg.bytes(0));
        for mut p in open_main.progs_mut() {
            let name = p.name().to_string_lossy().into_owned();
            p.set_autoload(kprobe_progs.contains(name.as_str()));
        }
        take_log();
        let main = open_main
            .load()
            .map_err(|e| load_error(&e, &take_log(), &[]))?;
        s.objects.push(main);
        let mut kprobe_multi: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut done = 0;
        let mut typed_ok = false;
        for (i, e) in table.iter().enumerate() {
            match e.backend {
                Backend::Kprobe => {
                    let r = s.attach_one(0, e, i, graph);
                    s.record(i, r);
                }
                Backend::KprobeMulti => {
                    kprobe_multi
                        .entry(e.program.to_string())
                        .or_default()
                        .push(i);
                    continue;
                }
                Backend::TpBtf | Backend::Fentry => {
                    let r = s.load_typed_copy(object, e, i, cfg, graph);
                    if let Err(err) = &r {
                        if let TypedError::Fatal(le) = err {
                            if !typed_ok {
                                // The first copy already fails to load: the
                                // backend itself is unusable here.
                                return Err(match le {
                                    LoadError::Load { error, .. }
                                        if error.contains("os error 1)")
                                            || error.contains("os error 524") =>
                                    {
                                        LoadError::Unavailable {
                                            backend: e.backend,
                                            reason: error.clone(),
                                        }
                                    }
                                    _ => clone_load_error(le),
                                });
                            }
                        }
                    } else {
                        typed_ok = true;
                    }
                    s.record(i, r.map_err(|e| e.to_string()));
                }
            }
            done += 1;
            progress(done);
        }
        for (prog, ids) in kprobe_multi {
            let n = ids.len();
            let r = s.attach_multi(0, &prog, table, &ids);
            for i in ids {
                s.record(i, r.as_ref().map(|_| ()).map_err(Clone::clone));
            }
            done += n;
            progress(done);
        }
        Ok(s)
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
        let link = match e.backend {
            Backend::Kprobe => prog.attach_kprobe_with_opts(
                false,
                e.name.as_ref(),
                KprobeOpts {
                    cookie: id as u64,
                    ..Default::default()
                },
            ),
            Backend::TpBtf | Backend::Fentry => prog.attach_trace(),
            Backend::KprobeMulti => unreachable!("grouped"),
        }
        .map_err(|err| reason(&err))?;
        let mut links = vec![link];
        if graph && e.backend == Backend::Fentry {
            if let Some(r) = &e.return_program {
                let rp = Self::prog(obj, r).ok_or_else(|| format!("program {r} missing"))?;
                links.push(rp.attach_trace().map_err(|err| reason(&err))?);
            }
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
    ) -> Result<(), String> {
        let obj = &self.objects[o];
        let p = Self::prog(obj, prog).ok_or_else(|| format!("program {prog} missing"))?;
        let opts = KprobeMultiOpts {
            symbols: ids.iter().map(|&i| table[i].name.to_string()).collect(),
            cookies: ids.iter().map(|&i| i as u64).collect(),
            retprobe: false,
            ..Default::default()
        };
        let link = p
            .attach_kprobe_multi_with_opts(opts)
            .map_err(|e| reason(&e))?;
        self.links.push(link);
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
    ) -> Result<(), TypedError> {
        let mut open = open(object).map_err(TypedError::Fatal)?;
        set_config(&mut open, cfg.bytes(id as u32));
        let ret = if graph {
            e.return_program.as_deref()
        } else {
            None
        };
        for mut p in open.progs_mut() {
            let name = p.name().to_string_lossy().into_owned();
            let on = name == e.program || Some(name.as_str()) == ret;
            p.set_autoload(on);
            if on {
                p.set_attach_target(0, Some(e.name.to_string()))
                    .map_err(|err| TypedError::Probe(reason(&err)))?;
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
                m.reuse_fd(src.as_fd())
                    .map_err(|err| TypedError::Probe(reason(&err)))?;
            }
        }
        take_log();
        let obj = match open.load() {
            Ok(o) => o,
            Err(err) => {
                let log = take_log();
                return Err(if unavailable(&err) {
                    TypedError::Fatal(load_error(&err, &log, &[]))
                } else {
                    TypedError::Probe(format!("load: {}", reason(&err)))
                });
            }
        };
        self.objects.push(obj);
        let o = self.objects.len() - 1;
        self.attach_one(o, e, id, graph).map_err(TypedError::Probe)
    }
}

#[derive(Debug)]
enum TypedError {
    Fatal(LoadError),
    Probe(String),
}

impl std::fmt::Display for TypedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TypedError::Fatal(e) => write!(f, "{e}"),
            TypedError::Probe(s) => f.write_str(s),
        }
    }
}

fn clone_load_error(e: &LoadError) -> LoadError {
    match e {
        LoadError::Open(s) => LoadError::Open(s.clone()),
        LoadError::Load {
            program,
            error,
            log,
        } => LoadError::Load {
            program: program.clone(),
            error: error.clone(),
            log: log.clone(),
        },
        LoadError::Unavailable { backend, reason } => LoadError::Unavailable {
            backend: *backend,
            reason: reason.clone(),
        },
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
