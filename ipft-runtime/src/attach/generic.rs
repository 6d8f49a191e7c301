//! Loading the generic object of `ipft`: kprobe programs once, typed
//! programs once per target.

use std::collections::{BTreeMap, HashSet};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use ipft_abi::program::PROBE_MARKER;
use ipft_abi::{Backend, Config, ProbeEntry, ProgramId, TypedKind};
use libbpf_rs::libbpf_sys as sys;
use libbpf_rs::MapCore;

use super::{
    apply, backend_unusable, fill_probe_ips, kprobe_rows, load_error, open, program_id, reason,
    take_log, LoadError, LoadOptions, Progress, Session,
};
use crate::filter::splice;
use crate::kernel::{self, errno_text, raw};

impl Session {
    /// Load the generic object and attach every row of `table`.
    pub fn generic(
        object: &[u8],
        table: &[ProbeEntry],
        opts: LoadOptions,
        progress: Progress<'_>,
    ) -> Result<Session, LoadError> {
        let graph = opts.config.graph != 0;
        let kprobe_rows = kprobe_rows(table, 0..table.len(), graph)?;
        // A vmlinux fentry or tp_btf row gets a copy of its program's
        // instructions with its index written in (no cookie needed: a
        // load of its own, not a whole object's); a module's row gets a
        // copy of the object that knows its index from rodata.
        let raw = |e: &ProbeEntry| {
            e.module.is_none()
                && !e.program.is_raw_tracepoint()
                && matches!(e.backend, Backend::Fentry | Backend::TpBtf)
        };
        let mut autoload: HashSet<ProgramId> = HashSet::new();
        for e in table
            .iter()
            .filter(|e| matches!(e.backend, Backend::Kprobe | Backend::KprobeMulti))
        {
            autoload.insert(e.program);
            autoload.extend(e.return_attached(graph));
        }
        // raw_tp programs are loaded once and linked to each tracepoint.
        autoload.extend(
            table
                .iter()
                .map(|e| e.program)
                .filter(|p| p.is_raw_tracepoint()),
        );
        // Each generic fentry/fexit (and tp_btf) program is loaded once in
        // the main object, aimed at the first vmlinux function (tracepoint)
        // that uses it; its relocated instructions are then loaded again for
        // every one (a verifier pass each, no object reopen), each copy with
        // its probe index written in (and as its link's cookie).
        let mut first_target: BTreeMap<ProgramId, &str> = BTreeMap::new();
        let mut first_backend = Backend::Fentry;
        for e in table.iter().filter(|e| raw(e)) {
            if first_target.is_empty() {
                first_backend = e.backend;
            }
            first_target.entry(e.program).or_insert(e.name.as_ref());
            if let Some(r) = e.return_attached(graph) {
                first_target.entry(r).or_insert(e.name.as_ref());
            }
        }
        autoload.extend(first_target.keys());
        let mut s = Session::default();
        let mut t = Instant::now();
        let mut lap = |s: &mut Session, what| {
            s.timings.push((what, t.elapsed()));
            t = Instant::now();
        };
        let mut open_main = open(object, &opts)?;
        apply(&mut open_main, &opts, kprobe_rows.len(), true)?;
        for mut p in open_main.progs_mut() {
            let Some(id) = program_id(p.name()) else {
                p.set_autoload(false);
                continue;
            };
            p.set_autoload(autoload.contains(&id));
            if let Some(t) = first_target.get(&id) {
                p.set_attach_target(0, Some(t.to_string()))
                    .map_err(|source| LoadError::Open {
                        source,
                        log: String::new(),
                    })?;
            }
        }
        take_log();
        let main = match open_main.load() {
            Ok(m) => m,
            Err(e) => {
                let log = take_log();
                if backend_unusable(&e)
                    && !first_target.is_empty()
                    && !refused_extension(&opts, &log)
                {
                    return Err(LoadError::Unavailable {
                        backend: first_backend,
                        reason: format!("{e:#}"),
                    });
                }
                return Err(load_error(e, &log, &[]));
            }
        };
        // `ipft EXPR`: every program takes the filter in place of its stub
        // (fentry templates too, so their raw copies filter as well).
        let mut spliced = match &opts.pcap {
            Some(body) => splice::reload_object(&main, body, |name| {
                let id = program_id(name.as_ref())?;
                first_target.get(&id).map(|t| t.to_string())
            })
            .map_err(LoadError::Filter)?,
            None => Default::default(),
        };
        for &id in first_target.keys() {
            if let Some(p) = Self::prog(&main, id) {
                let insns = spliced.remove(&id.to_string());
                s.templates
                    .insert(id, insns.unwrap_or_else(|| p.insns().to_vec()));
            }
        }
        fill_probe_ips(&main, table, &kprobe_rows)?;
        s.objects.push(main);
        lap(&mut s, "object load");
        let mut multi: BTreeMap<ProgramId, Vec<usize>> = BTreeMap::new();
        let mut done = 0;
        let mut typed_ok = false;
        // Time spent on perf kprobes and on typed probes, apart (--timings).
        let (mut kprobes, mut typed) = (Duration::ZERO, Duration::ZERO);
        for (i, e) in table.iter().enumerate() {
            let started = Instant::now();
            let r = match e.backend {
                Backend::Kprobe => Ok(s.attach_one(0, e, i, graph)),
                Backend::KprobeMulti => {
                    multi.entry(e.program).or_default().push(i);
                    continue;
                }
                Backend::TpBtf if e.program.is_raw_tracepoint() => {
                    Ok(s.attach_raw_tracepoint(e, i))
                }
                Backend::Fentry | Backend::TpBtf if raw(e) => s.attach_typed_raw(e, i, graph),
                Backend::TpBtf | Backend::Fentry => s.load_typed_copy(object, e, i, &opts),
            };
            match e.backend {
                Backend::Kprobe => kprobes += started.elapsed(),
                _ => typed += started.elapsed(),
            }
            match r {
                Ok(r) => {
                    typed_ok |= r.is_ok();
                    s.record(i, r);
                }
                // The first typed probe already fails: the backend itself is
                // unusable here (sandbox, missing cookie support, ...).
                Err(le) if !typed_ok => {
                    return Err(match le {
                        LoadError::Load { ref log, .. } if refused_extension(&opts, log) => le,
                        LoadError::Load { source, .. } => LoadError::Unavailable {
                            backend: e.backend,
                            reason: format!("{source:#}"),
                        },
                        le => le,
                    });
                }
                Err(le) => s.record(i, Err(le.to_string())),
            }
            done += 1;
            if !progress(done) {
                return Err(LoadError::Interrupted);
            }
        }
        s.timings.push(("kprobes", kprobes));
        s.timings.push(("typed probes", typed));
        lap(&mut s, "kprobes and typed probes");
        s.attach_multi_groups(multi, table, graph, &mut done, progress)?;
        lap(&mut s, "kprobe-multi links");
        Ok(s)
    }

    /// Link tracepoint row `id` to the main object's raw_tp program for its
    /// skb position, the probe index as cookie: no load of its own.
    fn attach_raw_tracepoint(&mut self, e: &ProbeEntry, id: usize) -> Result<(), String> {
        let Some(p) = Self::prog(&self.objects[0], e.program) else {
            return Err(format!("program {} missing", e.program));
        };
        let link = raw::raw_tracepoint_link(p.as_fd().as_raw_fd(), &e.name, id as u64)
            .map_err(errno_text)?;
        self.raw_links.push(link);
        Ok(())
    }

    /// Load a generic fentry (and fexit) or tp_btf program's instructions
    /// for one more vmlinux function or tracepoint and link it with the probe
    /// index as cookie. The outer error is a whole-backend failure, the inner
    /// one this probe's.
    fn attach_typed_raw(
        &mut self,
        e: &ProbeEntry,
        id: usize,
        graph: bool,
    ) -> Result<Result<(), String>, LoadError> {
        let mut progs = vec![(e.program, tracing_attach_type(e.program))];
        if let Some(r) = e.return_attached(graph) {
            progs.push((r, sys::BPF_TRACE_FEXIT));
        }
        let mut links = Vec::new();
        for (prog_id, attach) in progs {
            let Some(template) = self.templates.get(&prog_id) else {
                return Ok(Err(format!("program {prog_id} missing")));
            };
            let Some(insns) = raw::with_imm64(template, PROBE_MARKER, id as u64) else {
                return Ok(Err(format!("program {prog_id} has no probe marker")));
            };
            let name = prog_id.to_string();
            let prog =
                match raw::prog_load(sys::BPF_PROG_TYPE_TRACING, &name, &insns, attach, e.btf_id) {
                    Ok(p) => p,
                    Err(errno)
                        if matches!(errno, libc::EPERM | libc::EINVAL)
                            && self.raw_links.is_empty() =>
                    {
                        return Err(LoadError::Unavailable {
                            backend: e.backend,
                            reason: errno_text(errno),
                        })
                    }
                    Err(errno) => return Ok(Err(format!("load: {}", errno_text(errno)))),
                };
            // The cookie is for bpftool's eyes; kernels that take none for
            // this kind link the target the program was loaded for.
            let cookies = kernel::cookies();
            let linked = if (attach == sys::BPF_TRACE_RAW_TP && cookies.raw_tp)
                || (attach != sys::BPF_TRACE_RAW_TP && cookies.tracing)
            {
                raw::tracing_link(prog.as_raw_fd(), attach, id as u64)
            } else {
                raw::tracing_open(prog.as_raw_fd())
            };
            let link = match linked {
                Ok(l) => l,
                Err(errno) => return Ok(Err(errno_text(errno))),
            };
            self.raw_progs.push(prog);
            links.push(link);
        }
        self.raw_links.extend(links);
        Ok(Ok(()))
    }

    /// One copy of the generic object for one module function or
    /// tracepoint (vmlinux targets get instruction copies instead).
    fn load_typed_copy(
        &mut self,
        object: &[u8],
        e: &ProbeEntry,
        id: usize,
        opts: &LoadOptions,
    ) -> Result<Result<(), String>, LoadError> {
        let graph = opts.config.graph != 0;
        let mut open = open(object, opts)?;
        // Each copy learns its probe index from its own rodata.
        let config = Config {
            probe: id as u32,
            ..opts.config
        };
        apply(
            &mut open,
            &LoadOptions {
                config,
                ..opts.clone()
            },
            0,
            false,
        )?;
        let ret = e.return_attached(graph);
        for mut p in open.progs_mut() {
            let pid = program_id(p.name());
            let on = pid == Some(e.program) || (pid.is_some() && pid == ret);
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
            Err(err) if backend_unusable(&err) => return Err(load_error(err, &take_log(), &[])),
            Err(err) => return Ok(Err(format!("load: {}", reason(&err)))),
        };
        // A module's target is found from the loaded program itself.
        if let Some(body) = &opts.pcap {
            if let Err(why) = splice::reload_object(&obj, body, |_| None) {
                return Ok(Err(why));
            }
        }
        self.objects.push(obj);
        // The copy reads its index from its rodata: linked as loaded.
        Ok(self.attach_one(self.objects.len() - 1, e, id, graph))
    }
}

/// With an extension linked in, a program the verifier read and refused
/// (its log counts the instructions it processed) is the extension's doing,
/// since the object loads without it: keep the log, no backend fallback.
fn refused_extension(opts: &LoadOptions, log: &str) -> bool {
    opts.config.ext != 0 && log.contains("processed ")
}

/// A tracepoint's program attaches as a raw tracepoint; fexit for the
/// programs that run at a return (a clone function's); else fentry.
fn tracing_attach_type(id: ProgramId) -> sys::bpf_attach_type {
    match id {
        ProgramId::Generic {
            kind: TypedKind::Tracepoint,
            ..
        } => sys::BPF_TRACE_RAW_TP,
        _ if id.is_return() => sys::BPF_TRACE_FEXIT,
        _ => sys::BPF_TRACE_FENTRY,
    }
}
