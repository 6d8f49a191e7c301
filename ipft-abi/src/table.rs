//! The probe table: row index = the probe id carried in events. Generated
//! tracers compile it in; `ipft` builds it at start. Also the one rule of
//! where a packet's journey ends.

use std::borrow::Cow;

use serde::Serialize;

use crate::probe::{Backend, ProbeKind, ProbeShape};
use crate::program::ProgramId;

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeEntry {
    /// Function or tracepoint name.
    pub name: Cow<'static, str>,
    /// Module, `None` for vmlinux.
    pub module: Option<Cow<'static, str>>,
    /// What BTF says of its prototype.
    pub shape: ProbeShape,
    /// How this row attaches (a probe may have one row per backend).
    pub backend: Backend,
    /// BTF id in the BTF it was generated from (0 if discovered at run time).
    pub btf_id: u32,
    /// Program attached at entry.
    pub program: ProgramId,
    /// Program attached at return (-t function_graph), when there is one.
    pub return_program: Option<ProgramId>,
    /// A journey ends here (see [`mark_journey_ends`]).
    pub ends_journey: bool,
    /// Attached only to see the skb freed (ends journeys); not printed.
    pub hidden: bool,
}

impl ProbeEntry {
    /// Function or tracepoint.
    pub fn kind(&self) -> ProbeKind {
        self.shape.kind
    }

    /// A vmlinux BTF tracepoint attached with tp_btf, skb in argument
    /// `skb_pos` of `nargs`, run by `program`; journey flags unset.
    pub fn tracepoint(
        name: impl Into<Cow<'static, str>>,
        skb_pos: u8,
        nargs: u8,
        program: ProgramId,
    ) -> ProbeEntry {
        ProbeEntry {
            name: name.into(),
            module: None,
            shape: ProbeShape {
                kind: ProbeKind::Tracepoint,
                skb_pos,
                nargs,
                ..Default::default()
            },
            backend: Backend::TpBtf,
            btf_id: 0,
            program,
            return_program: None,
            ends_journey: false,
            hidden: false,
        }
    }

    /// `module:name` or `name`.
    pub fn display_name(&self) -> String {
        match &self.module {
            Some(m) => format!("{m}:{}", self.name),
            None => self.name.to_string(),
        }
    }

    /// Module name for `--module-regex` (`vmlinux` for the kernel image).
    pub fn module_or_vmlinux(&self) -> &str {
        self.module.as_deref().unwrap_or("vmlinux")
    }

    /// A hidden row that follows clones (--track-skb): attached at a
    /// function of [`CLONE_FUNCTIONS`] for its return value.
    pub fn follows_clones(&self) -> bool {
        self.hidden && self.kind() == ProbeKind::Function && is_clone_function(&self.name)
    }

    /// The return program to attach with the entry: with -t function_graph,
    /// and always for a row that follows clones (it acts at the return).
    pub fn return_attached(&self, graph: bool) -> Option<ProgramId> {
        self.return_program
            .filter(|_| graph || self.follows_clones())
    }
}

/// Functions returning a clone or copy of the skb in their first argument:
/// with --track-skb, a tracked skb's copy is tracked as part of the same
/// packet. (pskb_copy is inline in most builds; listed for those where it
/// is not.)
pub const CLONE_FUNCTIONS: &[&str] = &[
    "skb_clone",
    "skb_copy",
    "pskb_copy",
    "__pskb_copy_fclone",
    "skb_copy_expand",
];

/// Whether a function is one of [`CLONE_FUNCTIONS`].
pub fn is_clone_function(name: &str) -> bool {
    CLONE_FUNCTIONS.contains(&name)
}

/// Identity of the kernel a table was generated for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelIdentity {
    /// BTF source path.
    pub source: Cow<'static, str>,
    /// FNV-1a of the base BTF.
    pub checksum: Cow<'static, str>,
    /// Release string, if known.
    pub release: Option<Cow<'static, str>>,
}

/// Where an skb's memory is released: the probes that end a journey when
/// present. kfree_skbmem is the last step of every free; the consume_skb and
/// kfree_skb tracepoints stand in where it cannot be traced.
pub const END_MARKERS: &[(&str, ProbeKind)] = &[
    ("kfree_skbmem", ProbeKind::Function),
    ("consume_skb", ProbeKind::Tracepoint),
    ("kfree_skb", ProbeKind::Tracepoint),
];

/// Whether a probe is one of the [`END_MARKERS`].
pub fn is_end_marker(name: &str, kind: ProbeKind) -> bool {
    END_MARKERS.iter().any(|(n, k)| *n == name && *k == kind)
}

/// Functions and tracepoints at which an skb is released (or its last
/// reference dropped).
pub fn releases_skb(name: &str) -> bool {
    matches!(
        name,
        "kfree_skb"
            | "kfree_skb_reason"
            | "sk_skb_reason_drop"
            | "__kfree_skb"
            | "kfree_skbmem"
            | "consume_skb"
            | "__consume_stateless_skb"
            | "napi_consume_skb"
            | "kfree_skb_list_reason"
            | "__dev_kfree_skb_any"
            | "__dev_kfree_skb_irq"
            | "dev_kfree_skb_any_reason"
            | "dev_kfree_skb_irq_reason"
            | "skb_free_head"
    )
}

/// Which rows end a journey, among those `present`: one packet runs from
/// its first event to the release of its skb's memory.
///
/// - kfree_skbmem, where it is present: every free ends there, so drops and
///   consumes before it (kfree_skb_reason, sk_skb_reason_drop, the
///   consume_skb and kfree_skb tracepoints) stay inside the journey;
/// - else the consume_skb and kfree_skb tracepoints, which fire as the last
///   reference goes, just before the release;
/// - else every function or tracepoint where an skb is released.
pub fn journey_ends(rows: &[ProbeEntry], present: impl Fn(usize) -> bool) -> Vec<bool> {
    let is_skbmem = |r: &ProbeEntry| r.kind() == ProbeKind::Function && r.name == END_MARKERS[0].0;
    let is_tp =
        |r: &ProbeEntry| r.kind() == ProbeKind::Tracepoint && is_end_marker(&r.name, r.kind());
    let there =
        |f: &dyn Fn(&ProbeEntry) -> bool| rows.iter().enumerate().any(|(i, r)| present(i) && f(r));
    let rule: &dyn Fn(&ProbeEntry) -> bool = if there(&is_skbmem) {
        &is_skbmem
    } else if there(&is_tp) {
        &is_tp
    } else {
        &|r: &ProbeEntry| releases_skb(&r.name)
    };
    rows.iter()
        .enumerate()
        .map(|(i, r)| present(i) && rule(r))
        .collect()
}

/// Set `ends_journey` of every row by [`journey_ends`] over the whole table.
pub fn mark_journey_ends(rows: &mut [ProbeEntry]) {
    let ends = journey_ends(rows, |_| true);
    for (r, e) in rows.iter_mut().zip(ends) {
        r.ends_journey = e;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::TypedKind;

    fn row(name: &'static str, kind: ProbeKind) -> ProbeEntry {
        ProbeEntry {
            name: Cow::Borrowed(name),
            module: None,
            shape: ProbeShape {
                kind,
                ..Default::default()
            },
            backend: Backend::TpBtf,
            btf_id: 0,
            program: ProgramId::Typed {
                kind: TypedKind::Tracepoint,
                row: 0,
            },
            return_program: None,
            ends_journey: false,
            hidden: false,
        }
    }

    fn ends(rows: &[ProbeEntry], present: impl Fn(usize) -> bool) -> Vec<bool> {
        journey_ends(rows, present)
    }

    #[test]
    fn the_release_ends_a_journey_not_the_drop() {
        let rows = vec![
            row("kfree_skb_reason", ProbeKind::Function),
            row("kfree_skb", ProbeKind::Tracepoint),
            row("consume_skb", ProbeKind::Tracepoint),
            row("kfree_skbmem", ProbeKind::Function),
            row("ip_rcv", ProbeKind::Function),
        ];
        assert_eq!(ends(&rows, |_| true), [false, false, false, true, false]);
        // kfree_skbmem not attached: the tracepoints stand in.
        assert_eq!(ends(&rows, |i| i != 3), [false, true, true, false, false]);
        // Rows not attached never end anything.
        // Neither: the drop function itself.
        assert_eq!(
            ends(&rows, |i| i == 0 || i == 4),
            [true, false, false, false, false]
        );
    }

    #[test]
    fn mark_sets_the_field() {
        let mut rows = vec![
            row("kfree_skb_reason", ProbeKind::Function),
            row("kfree_skbmem", ProbeKind::Function),
        ];
        mark_journey_ends(&mut rows);
        assert!(!rows[0].ends_journey && rows[1].ends_journey);
    }
}
