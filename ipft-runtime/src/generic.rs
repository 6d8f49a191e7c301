//! The clang-free `ipft` command: probes discovered from the running kernel
//! at start-up, mapped onto the programs of the generic object.

use std::borrow::Cow;

use ipft_gen::probe::{Backend, Probe, ProbeKind};
use ipft_gen::table::{self, ProbeEntry, TypedKind, GENERIC_MAX_SKB_POS, GENERIC_REASON_PAIRS};

/// Table rows for `probes`: functions through `function_backend` (skipped
/// when `None` or unreachable with it), tracepoints through tp_btf. Returns
/// the rows and the number of probes left out.
pub fn table_for(probes: &[Probe], function_backend: Option<Backend>) -> (Vec<ProbeEntry>, usize) {
    let mut rows = Vec::new();
    let mut skipped = 0;
    for p in probes {
        let backend = match p.kind {
            ProbeKind::Tracepoint => Backend::TpBtf,
            ProbeKind::Function => match function_backend {
                Some(b) if p.backends.contains(&b) => b,
                _ => {
                    skipped += 1;
                    continue;
                }
            },
        };
        let skb = p.skb_pos();
        // Only (skb, reason) pairs the generic object has programs for.
        let reason = p
            .drop_reason_pos
            .filter(|r| GENERIC_REASON_PAIRS.contains(&(skb, *r)));
        let (program, ret) = match backend {
            Backend::Kprobe => (table::kprobe_program(false, skb, reason), None),
            Backend::KprobeMulti => (table::kprobe_program(true, skb, reason), None),
            Backend::TpBtf | Backend::Fentry if skb > GENERIC_MAX_SKB_POS => {
                skipped += 1;
                continue;
            }
            Backend::TpBtf => (
                table::generic_program(TypedKind::Tracepoint, skb, reason),
                None,
            ),
            Backend::Fentry => (
                table::generic_program(TypedKind::Entry, skb, reason),
                Some(table::generic_program(TypedKind::Return, skb, reason)),
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
        });
    }
    (rows, skipped)
}
