//! Stage 3, code generation: a probe set becomes BPF C (handlebars templates
//! from templates/bpf) and Rust bindings (quote + prettyplease).
//!
//! Output is deterministic: same BTF, profile and options give byte-identical
//! files. Names from BTF never become C or Rust identifiers; programs are
//! named by index and BTF names only appear inside string literals.

pub mod c;
pub mod event;
pub mod rust;

use crate::btf::BtfIdentity;
use crate::probe::{Backend, Probe, ProbeKind};
use crate::table::{self, ObjectMode, ProbeEntry, TypedKind};
use std::borrow::Cow;

/// What to generate.
pub struct Plan<'a> {
    /// Profile name, for headers.
    pub profile: &'a str,
    /// Where the BTF came from.
    pub identity: &'a BtfIdentity,
    /// Backends for function probes, one table row per (probe, backend)
    /// that reaches it; the tracer picks one at run time. Tracepoints
    /// always use tp_btf.
    pub function_backends: &'a [Backend],
    /// Probes, in table order; those from `hidden_from` on only end
    /// journeys and are not printed.
    pub probes: &'a [Probe],
    /// Index of the first hidden probe (`probes.len()` for none).
    pub hidden_from: usize,
    /// Also generate fexit programs (function_graph) with fentry.
    pub returns: bool,
}

impl Plan<'_> {
    /// The probe table for this plan (specialised programs).
    pub fn table(&self) -> Vec<ProbeEntry> {
        // (probe index, backend) in table order.
        let pairs: Vec<(usize, Backend)> = self
            .probes
            .iter()
            .enumerate()
            .flat_map(|(i, p)| match p.kind {
                ProbeKind::Tracepoint => vec![(i, Backend::TpBtf)],
                ProbeKind::Function => self
                    .function_backends
                    .iter()
                    .filter(|b| p.backends.contains(b))
                    .map(|&b| (i, b))
                    .collect(),
            })
            .collect();
        let mut rows: Vec<ProbeEntry> = pairs
            .into_iter()
            .enumerate()
            .map(|(i, (pi, backend))| {
                let p = &self.probes[pi];
                let reason_pos = p.drop_reason_pos;
                let end = table::is_end_marker(&p.name, p.kind);
                let (program, return_program) = match backend {
                    Backend::TpBtf => (table::typed_program(TypedKind::Tracepoint, i), None),
                    Backend::Fentry => (
                        table::typed_program(TypedKind::Entry, i),
                        (self.returns && !end).then(|| table::typed_program(TypedKind::Return, i)),
                    ),
                    Backend::Kprobe | Backend::KprobeMulti => {
                        let multi = backend == Backend::KprobeMulti;
                        (
                            table::kprobe_program(multi, p.skb_pos(), reason_pos, end),
                            (!end).then(|| table::kretprobe_program(multi)),
                        )
                    }
                };
                ProbeEntry {
                    name: Cow::Owned(p.name.clone()),
                    module: p.module.clone().map(Cow::Owned),
                    kind: p.kind,
                    backend,
                    skb_pos: p.skb_pos(),
                    reason_pos,
                    btf_id: p.btf_id,
                    program: Cow::Owned(program),
                    return_program: return_program.map(Cow::Owned),
                    frees_skb: p.frees_skb(),
                    hidden: pi >= self.hidden_from,
                }
            })
            .collect();
        table::mark_journey_ends(&mut rows);
        rows
    }
}

/// Everything generated for one plan.
pub struct Generated {
    /// BPF C source.
    pub c: String,
    /// Rust bindings (event mirror, table, identity).
    pub rust: String,
    /// The table, also written as JSON for tools.
    pub table: Vec<ProbeEntry>,
}

/// Generate C and Rust for a plan.
pub fn generate(plan: &Plan<'_>) -> Result<Generated, c::TemplateError> {
    let table = plan.table();
    let c = c::render_specialised(plan, &table)?;
    let rust = rust::render(plan.identity, &table, ObjectMode::Specialised);
    Ok(Generated { c, rust, table })
}
