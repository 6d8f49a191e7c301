//! The one table builder, for generated objects and for the generic object
//! of `ipft`: probes and their backends become rows, each naming the
//! programs that attach it.

use std::borrow::Cow;

use ipft_abi::program::{as_raw_tracepoint, generic_entry, kprobe_program, CLONE_MAX_NARGS};
use ipft_abi::table::{is_clone_function, is_end_marker, mark_journey_ends};
use ipft_abi::{Backend, ProbeEntry, ProbeKind, ProgramId, TypedKind, Unreached};

use crate::Probe;

/// Which object the rows are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objects {
    /// A generated object: one typed program per row, index compiled in.
    /// `returns`: also fexit programs (function_graph).
    Specialised {
        /// Generate fexit programs too.
        returns: bool,
    },
    /// The generic object built into `ipft`: programs per position.
    Generic {
        /// Tracepoints run the raw_tp programs (one load each, a cookie per
        /// link) instead of a verified tp_btf copy per tracepoint; for
        /// kernels with raw_tp cookies and bpf_rdonly_cast.
        raw_tracepoints: bool,
    },
}

/// A probe left out of the table, with the reason.
pub type LeftOut = (String, Unreached);

/// Rows for `probes` in order, one per (probe, backend) from `backends`;
/// probes from `hidden_from` on only end journeys or follow clones (the
/// functions of `CLONE_FUNCTIONS`). Returns the rows and the probes that
/// got none.
pub fn build(
    probes: &[Probe],
    hidden_from: usize,
    backends: impl Fn(&Probe) -> Vec<Backend>,
    objects: Objects,
) -> (Vec<ProbeEntry>, Vec<LeftOut>) {
    let mut rows = Vec::new();
    let mut left_out = Vec::new();
    for (i, p) in probes.iter().enumerate() {
        let hidden = i >= hidden_from;
        let chosen = backends(p);
        let mut first_miss = None;
        let before = rows.len();
        for b in chosen {
            match programs(p, b, rows.len() as u32, hidden, objects) {
                Some((program, return_program)) => rows.push(ProbeEntry {
                    name: Cow::Owned(p.name.clone()),
                    module: p.module.clone().map(Cow::Owned),
                    shape: p.shape(),
                    backend: b,
                    btf_id: p.btf_id,
                    program,
                    return_program,
                    ends_journey: false,
                    hidden,
                }),
                None => {
                    first_miss.get_or_insert(Unreached::NoProgram(b));
                }
            }
        }
        if rows.len() == before {
            let why = first_miss.unwrap_or(Unreached::Unavailable(Backend::KprobeMulti));
            left_out.push((p.display_name(), why));
        }
    }
    mark_journey_ends(&mut rows);
    (rows, left_out)
}

/// Entry and return programs of row `row` for `p` through `b`; `None` when
/// the object has no program for it.
fn programs(
    p: &Probe,
    b: Backend,
    row: u32,
    hidden: bool,
    objects: Objects,
) -> Option<(ProgramId, Option<ProgramId>)> {
    let end = is_end_marker(&p.name, p.kind);
    // Journey-ending probes are never part of a call graph.
    let graph = !end && !hidden;
    let shape = p.shape();
    if !b.is_for(p.kind) {
        return None;
    }
    if hidden && p.kind == ProbeKind::Function && is_clone_function(&p.name) {
        return clone_programs(&shape, b, row, objects);
    }
    match (objects, b) {
        (_, Backend::Kprobe | Backend::KprobeMulti) => {
            let multi = b == Backend::KprobeMulti;
            let entry = match objects {
                // Generic end markers take the skb first.
                Objects::Generic { .. } => generic_entry(&shape, b, end && shape.skb_pos == 0)?,
                Objects::Specialised { .. } => kprobe_program(&shape, multi, end, shape.reason_pos),
            };
            Some((entry, graph.then_some(ProgramId::Kretprobe { multi })))
        }
        (Objects::Specialised { returns }, Backend::Fentry | Backend::TpBtf) => {
            let typed = |kind| ProgramId::Typed { kind, row };
            Some(match b {
                Backend::TpBtf => (typed(TypedKind::Tracepoint), None),
                _ => (
                    typed(TypedKind::Entry),
                    (returns && graph).then(|| typed(TypedKind::Return)),
                ),
            })
        }
        (Objects::Generic { raw_tracepoints }, Backend::Fentry | Backend::TpBtf) => {
            let entry = generic_entry(&shape, b, end && shape.skb_pos == 0)?;
            let entry = match raw_tracepoints {
                true => as_raw_tracepoint(entry),
                false => entry,
            };
            let ret = match (b, entry) {
                (Backend::Fentry, ProgramId::Generic { skb, reason, .. }) if graph => {
                    Some(ProgramId::Generic {
                        kind: TypedKind::Return,
                        skb,
                        reason,
                        end: false,
                    })
                }
                _ => None,
            };
            Some((entry, ret))
        }
    }
}

/// Programs of a hidden row following clones (--track-skb): they act at the
/// return, where the copy is known. The source skb must come first.
fn clone_programs(
    shape: &ipft_abi::ProbeShape,
    b: Backend,
    row: u32,
    objects: Objects,
) -> Option<(ProgramId, Option<ProgramId>)> {
    if shape.skb_pos != 0 {
        return None;
    }
    let multi = b == Backend::KprobeMulti;
    match (b, objects) {
        (Backend::Kprobe | Backend::KprobeMulti, _) => Some((
            ProgramId::CloneEntry { multi },
            Some(ProgramId::CloneReturn { multi }),
        )),
        (Backend::Fentry, Objects::Specialised { .. }) => Some((
            ProgramId::Typed {
                kind: TypedKind::Return,
                row,
            },
            None,
        )),
        (Backend::Fentry, Objects::Generic { .. }) => (1..=CLONE_MAX_NARGS)
            .contains(&shape.nargs)
            .then_some((ProgramId::CloneExit { nargs: shape.nargs }, None)),
        (Backend::TpBtf, _) => None,
    }
}

/// The clone functions to add (hidden) for --track-skb, with the backends
/// among `function_backends` (those the selection uses) that reach each:
/// copies are followed where the probe set traces functions.
pub fn pick_clone_functions(clones: &[Probe], function_backends: &[Backend]) -> Vec<Probe> {
    clones
        .iter()
        .filter_map(|p| {
            let mut p = p.clone();
            p.backends
                .retain(|b| b.for_functions() && function_backends.contains(b));
            (!p.backends.is_empty()).then_some(p)
        })
        .collect()
}

/// The journey-ending probes to add (hidden) for a set of function
/// backends: kfree_skbmem when one of them reaches it, else the consume_skb
/// and kfree_skb tracepoints. `markers` are the kernel's end-marker probes;
/// those already `selected` are left out.
pub fn pick_end_markers(
    markers: &[Probe],
    selected: &[Probe],
    function_backends: &[Backend],
) -> Vec<Probe> {
    let have = |p: &Probe| {
        selected
            .iter()
            .any(|s| s.name == p.name && s.kind == p.kind)
    };
    let skbmem = markers.iter().find(|p| {
        p.kind == ProbeKind::Function && function_backends.iter().any(|b| p.backends.contains(b))
    });
    let chosen: Vec<&Probe> = match skbmem {
        Some(m) => vec![m],
        None => markers
            .iter()
            .filter(|p| p.kind == ProbeKind::Tracepoint)
            .collect(),
    };
    chosen.into_iter().filter(|p| !have(p)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use ipft_abi::program::generic_programs;

    const GENERIC: Objects = Objects::Generic {
        raw_tracepoints: false,
    };

    fn probe(name: &str, kind: ProbeKind, skb: u8) -> Probe {
        Probe {
            name: name.into(),
            kind,
            skb_positions: vec![skb],
            nargs: skb + 1,
            ..Default::default()
        }
    }

    #[test]
    fn one_builder_two_objects() {
        let probes = [
            probe("ip_rcv", ProbeKind::Function, 0),
            probe("net_dev_queue", ProbeKind::Tracepoint, 0),
            probe("far", ProbeKind::Function, 12),
            probe("kfree_skbmem", ProbeKind::Function, 0),
        ];
        let all = |p: &Probe| match p.kind {
            ProbeKind::Tracepoint => vec![Backend::TpBtf],
            ProbeKind::Function => vec![Backend::KprobeMulti, Backend::Fentry],
        };
        let (rows, left) = build(&probes, 3, all, Objects::Specialised { returns: true });
        let names: Vec<String> = rows.iter().map(|r| r.program.to_string()).collect();
        assert_eq!(
            names,
            [
                "ipft_m0", "ipft_f1", "ipft_t2", "ipft_m3", "ipft_f4",
                // kprobe.multi ends journeys in the cookie program.
                "ipft_m3", "ipft_f6"
            ]
        );
        assert!(left.is_empty());
        // The hidden end marker has no return program and ends journeys.
        let end = &rows[6];
        assert!(end.hidden && end.ends_journey && end.return_program.is_none());
        assert_eq!(rows[1].return_program.unwrap().to_string(), "ipft_x1");

        // The generic object has no program for an skb in argument 12.
        let (rows, left) = build(&probes, 3, all, GENERIC);
        let names: Vec<String> = rows.iter().map(|r| r.program.to_string()).collect();
        assert_eq!(
            names,
            ["ipft_m0", "ipft_gf0", "ipft_gt0", "ipft_m3", "ipft_gf0_e"]
        );
        assert_eq!(
            left,
            [(
                "far".to_string(),
                Unreached::NoProgram(Backend::KprobeMulti)
            )]
        );
        // Kernels with raw_tp cookies: tracepoints share raw_tp programs.
        let raw = Objects::Generic {
            raw_tracepoints: true,
        };
        let (rows, _) = build(&probes, 3, all, raw);
        let names: Vec<String> = rows.iter().map(|r| r.program.to_string()).collect();
        assert_eq!(
            names,
            ["ipft_m0", "ipft_gf0", "ipft_gp0", "ipft_m3", "ipft_gf0_e"]
        );
        assert!(generic_programs().contains(&rows[2].program));
    }

    #[test]
    fn clone_rows_act_at_the_return() {
        let mut clone = probe("skb_clone", ProbeKind::Function, 0);
        clone.nargs = 2;
        // Visible, skb_clone is an ordinary probe; hidden, it follows clones.
        let probes = [clone.clone(), clone];
        let all = |_: &Probe| vec![Backend::Kprobe, Backend::KprobeMulti, Backend::Fentry];
        let names = |rows: &[ProbeEntry]| -> Vec<(String, Option<String>)> {
            rows.iter()
                .map(|r| {
                    (
                        r.program.to_string(),
                        r.return_program.map(|p| p.to_string()),
                    )
                })
                .collect()
        };
        let (rows, _) = build(&probes, 1, all, Objects::Specialised { returns: false });
        let n = |a: &str, b: Option<&str>| (a.to_string(), b.map(str::to_string));
        assert_eq!(
            names(&rows[3..]),
            [
                n("ipft_kc", Some("ipft_kcr")),
                n("ipft_mc", Some("ipft_mcr")),
                n("ipft_x5", None)
            ]
        );
        assert!(rows[3..].iter().all(|r| r.follows_clones()));
        assert!(!rows[0].follows_clones());
        // Attached at the return with or without function_graph.
        assert_eq!(rows[3].return_attached(false), rows[3].return_program);
        assert_eq!(rows[0].return_attached(false), None);
        let (rows, _) = build(&probes, 1, all, GENERIC);
        assert_eq!(names(&rows[3..])[2], n("ipft_gc2", None));
        // The copy's source must be the first argument.
        let far = [probe("skb_copy", ProbeKind::Function, 1)];
        let (rows, left) = build(&far, 0, all, GENERIC);
        assert!(rows.is_empty() && left.len() == 1);
    }
}
