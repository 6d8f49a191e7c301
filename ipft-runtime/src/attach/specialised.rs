//! Loading a generated object: one program per typed probe, kprobe programs
//! per position, every program named by its table row.

use std::collections::{BTreeMap, HashSet};

use ipft_abi::{Backend, ProbeEntry, ProgramId};

use super::{
    apply, fill_probe_ips, kprobe_rows, load_error, open, program_id, reason, take_log, LoadError,
    LoadOptions, Progress, Session,
};

/// Most programs one load may turn off before giving up on the object.
const MAX_REFUSED: usize = 64;

impl Session {
    /// Load a specialised object and attach the rows `selected` of `table`.
    pub fn specialised(
        object: &[u8],
        table: &[ProbeEntry],
        selected: &[usize],
        opts: LoadOptions,
        progress: Progress<'_>,
    ) -> Result<Session, LoadError> {
        let graph = opts.config.graph != 0;
        let kprobe_rows = kprobe_rows(table, selected.iter().copied(), graph)?;
        let mut wanted: HashSet<ProgramId> = HashSet::new();
        for &i in selected {
            wanted.insert(table[i].program);
            if let Some(r) = table[i].return_attached(graph) {
                wanted.insert(r);
            }
        }
        // A program the kernel refuses fails the whole object load: turn it
        // off and retry, charging the failure to its probes.
        let mut refused: BTreeMap<ProgramId, String> = BTreeMap::new();
        let obj = loop {
            let mut open = open(object, &opts)?;
            apply(&mut open, &opts, kprobe_rows.len(), false)?;
            for mut p in open.progs_mut() {
                let on = program_id(p.name())
                    .is_some_and(|id| wanted.contains(&id) && !refused.contains_key(&id));
                p.set_autoload(on);
            }
            take_log();
            let e = match open.load() {
                Ok(o) => break o,
                Err(e) => e,
            };
            let log = take_log();
            let names: Vec<String> = refused.keys().map(ToString::to_string).collect();
            let failed = super::failed_program(&log).and_then(|n| n.parse::<ProgramId>().ok());
            match failed {
                Some(id) if !refused.contains_key(&id) && refused.len() < MAX_REFUSED => {
                    refused.insert(id, format!("refused by the kernel: {}", reason(&e)));
                    if refused.len() == wanted.len() {
                        return Err(load_error(e, &log, &names));
                    }
                }
                _ => return Err(load_error(e, &log, &names)),
            }
        };
        if let Some(body) = &opts.pcap {
            // A typed program serves one row: its vmlinux target.
            let targets: std::collections::HashMap<String, String> = selected
                .iter()
                .map(|&i| &table[i])
                .filter(|e| e.module.is_none())
                .flat_map(|e| {
                    [Some(e.program), e.return_program]
                        .into_iter()
                        .flatten()
                        .map(|id| (id.to_string(), e.name.to_string()))
                })
                .collect();
            crate::filter::splice::reload_object(&obj, body, |name| targets.get(name).cloned())
                .map_err(LoadError::Filter)?;
        }
        fill_probe_ips(&obj, table, &kprobe_rows)?;
        let mut s = Session::default();
        s.objects.push(obj);
        // Every function program of one backend refused: that backend does
        // not work here; let the caller fall back.
        for b in Backend::FUNCTIONS {
            let of_b: Vec<&ProgramId> = wanted.iter().filter(|p| p.backend() == b).collect();
            if !of_b.is_empty() && of_b.iter().all(|p| refused.contains_key(p)) {
                return Err(LoadError::Unavailable {
                    backend: b,
                    reason: refused[of_b[0]].clone(),
                });
            }
        }
        let mut multi: BTreeMap<ProgramId, Vec<usize>> = BTreeMap::new();
        let mut done = 0;
        for &i in selected {
            let e = &table[i];
            if let Some(why) = refused.get(&e.program) {
                s.failed.push((i, why.clone()));
                continue;
            }
            if e.backend == Backend::KprobeMulti {
                multi.entry(e.program).or_default().push(i);
                continue;
            }
            let r = s.attach_one(0, e, i, graph);
            s.record(i, r);
            done += 1;
            if !progress(done) {
                return Err(LoadError::Interrupted);
            }
        }
        s.attach_multi_groups(multi, table, graph, &mut done, progress)?;
        Ok(s)
    }
}
