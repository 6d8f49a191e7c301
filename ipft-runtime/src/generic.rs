//! The clang-free `ipft` command: probes discovered from the running kernel
//! at start-up, mapped onto the programs of the generic object.

use std::borrow::Cow;

use ipft_gen::probe::{Backend, Probe, ProbeKind};
use ipft_gen::table::{self, ProbeEntry, TypedKind, GENERIC_MAX_SKB_POS, GENERIC_REASON_PAIRS};

/// Table rows for `probes`: functions through `function_backend` (left out
/// when `None` or unreachable with it), tracepoints through tp_btf. Probes
/// from index `hidden_from` on only end journeys. Returns the rows and the
/// probes left out, with the reason.
pub fn table_for(
    probes: &[Probe],
    hidden_from: usize,
    function_backend: Option<Backend>,
) -> (Vec<ProbeEntry>, Vec<(String, String)>) {
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for (i, p) in probes.iter().enumerate() {
        let backend = match p.kind {
            ProbeKind::Tracepoint => Backend::TpBtf,
            ProbeKind::Function => match function_backend {
                Some(b) if p.backends.contains(&b) => b,
                Some(b) => {
                    skipped.push((p.name.clone(), unreachable_reason(p, b)));
                    continue;
                }
                None => {
                    skipped.push((p.name.clone(), "no function backend".into()));
                    continue;
                }
            },
        };
        let skb = p.skb_pos();
        // End markers take the skb first.
        let end = table::is_end_marker(&p.name, p.kind) && skb == 0;
        // Only (skb, reason) pairs the generic object has programs for.
        let reason = p.drop_reason_pos.filter(|&r| match end {
            true => p.kind == ProbeKind::Tracepoint && r == 2,
            false => GENERIC_REASON_PAIRS.contains(&(skb, r)),
        });
        let (program, ret) = match backend {
            Backend::Kprobe | Backend::KprobeMulti => {
                let multi = backend == Backend::KprobeMulti;
                (
                    table::kprobe_program(multi, skb, reason, end),
                    (!end && i < hidden_from).then(|| table::kretprobe_program(multi)),
                )
            }
            Backend::TpBtf | Backend::Fentry if skb > GENERIC_MAX_SKB_POS => {
                skipped.push((
                    p.name.clone(),
                    format!("skb in argument {skb}: beyond the generic programs"),
                ));
                continue;
            }
            Backend::TpBtf => (
                table::generic_program(TypedKind::Tracepoint, skb, reason, end),
                None,
            ),
            Backend::Fentry => (
                table::generic_program(TypedKind::Entry, skb, reason, end),
                Some(table::generic_program(
                    TypedKind::Return,
                    skb,
                    reason,
                    false,
                )),
            ),
        };
        rows.push(ProbeEntry {
            name: Cow::Owned(p.name.clone()),
            module: p.module.clone().map(Cow::Owned),
            kind: p.kind,
            backend,
            skb_pos: skb,
            reason_pos: reason,
            btf_id: p.btf_id,
            program: Cow::Owned(program),
            return_program: ret.map(Cow::Owned),
            frees_skb: p.frees_skb(),
            hidden: i >= hidden_from,
        });
    }
    table::mark_journey_ends(&mut rows);
    (rows, skipped)
}

/// Why backend `b` cannot reach `p`.
fn unreachable_reason(p: &Probe, b: Backend) -> String {
    match b {
        Backend::Kprobe | Backend::KprobeMulti
            if p.skb_pos() >= ipft_gen::probe::KPROBE_MAX_REG_ARGS =>
        {
            format!("skb in argument {}: {b} reads registers 0..5", p.skb_pos())
        }
        Backend::Kprobe | Backend::KprobeMulti if p.byval_before_skb => {
            format!("struct passed by value before the skb: {b} cannot find it")
        }
        Backend::Fentry if p.variadic => "variadic: no fentry trampoline".into(),
        Backend::Fentry if p.byval => "struct passed by value: not traced with fentry".into(),
        Backend::Fentry => format!("{} arguments: beyond the fentry trampoline limit", p.nargs),
        _ => format!("not reachable with {b}"),
    }
}
