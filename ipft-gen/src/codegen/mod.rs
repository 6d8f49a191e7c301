//! Stage 3, code generation: a probe set becomes BPF C (handlebars templates
//! from templates/bpf) and Rust bindings (quote + prettyplease).
//!
//! Output is deterministic: same BTF, profile and options give byte-identical
//! files. Names from BTF never become C or Rust identifiers; programs are
//! named by [`ipft_abi::ProgramId`] and BTF names only appear inside string
//! literals.

pub mod c;
pub mod rust;

use ipft_abi::{Backend, ProbeEntry, ProbeKind};
use ipft_btf::BtfIdentity;

use crate::table::{self, Objects};
use crate::Probe;

/// What to generate.
pub struct Plan<'a> {
    /// Profile name, for headers.
    pub profile: &'a str,
    /// Where the BTF came from.
    pub identity: &'a BtfIdentity,
    /// Probes, in table order, one row per backend in each probe's
    /// `backends` (the tracer picks one at run time; tracepoints always use
    /// tp_btf). Those from `hidden_from` on only end journeys.
    pub probes: &'a [Probe],
    /// Index of the first hidden probe (`probes.len()` for none).
    pub hidden_from: usize,
    /// Also generate fexit programs (function_graph) with fentry.
    pub returns: bool,
    /// `--filter`: a pcap-filter expression compiled into every program.
    pub pcap: Option<&'a ipft_runtime::filter::PcapFilter>,
}

impl Plan<'_> {
    /// The probe table for this plan (specialised programs).
    pub fn table(&self) -> Vec<ProbeEntry> {
        let backends = |p: &Probe| match p.kind {
            ProbeKind::Tracepoint => vec![Backend::TpBtf],
            ProbeKind::Function => p.backends.clone(),
        };
        let objects = Objects::Specialised {
            returns: self.returns,
        };
        table::build(self.probes, self.hidden_from, backends, objects).0
    }
}

/// Everything generated for one plan.
pub struct Generated {
    /// BPF C source.
    pub c: String,
    /// Rust bindings (probe table, identity).
    pub rust: String,
    /// The table, also written as JSON for tools.
    pub table: Vec<ProbeEntry>,
}

/// Generate C and Rust for a plan.
pub fn generate(plan: &Plan<'_>) -> Result<Generated, c::TemplateError> {
    let table = plan.table();
    let c = c::render_specialised(plan, &table)?;
    let filter = plan.pcap.map(|f| f.expr.as_str());
    let rust = rust::render(plan.identity, plan.profile, filter, &table);
    Ok(Generated { c, rust, table })
}
