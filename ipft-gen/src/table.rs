//! The probe table shared by generated tracers and the generic `ipft`
//! command: index -> what to attach and how to print it.

use std::borrow::Cow;

use crate::probe::{Backend, ProbeKind};

/// One row of the table; its index is the probe id carried in events.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProbeEntry {
    /// Function or tracepoint name.
    pub name: Cow<'static, str>,
    /// Module, `None` for vmlinux.
    pub module: Option<Cow<'static, str>>,
    /// Function or tracepoint.
    pub kind: ProbeKind,
    /// How it is attached.
    pub backend: Backend,
    /// Position of the traced skb argument.
    pub skb_pos: u8,
    /// Position of an `enum skb_drop_reason` argument.
    pub reason_pos: Option<u8>,
    /// BTF id in the BTF it was generated from (0 if discovered at run time).
    pub btf_id: u32,
    /// BPF program attached at entry.
    pub program: Cow<'static, str>,
    /// BPF program attached at return (fexit), when generated.
    pub return_program: Option<Cow<'static, str>>,
    /// Whether the skb is freed here (ends a journey).
    pub frees_skb: bool,
    /// Attached only to see the skb freed (ends journeys); not printed.
    pub hidden: bool,
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

/// Pick the journey-ending probes to add (hidden) for a function backend:
/// kfree_skbmem when that backend reaches it, else the two tracepoints.
/// `markers` are the end-marker probes the kernel has; those already
/// `selected` are left out.
pub fn pick_end_markers(
    markers: &[crate::Probe],
    selected: &[crate::Probe],
    function_backend: Option<Backend>,
) -> Vec<crate::Probe> {
    let have = |p: &crate::Probe| {
        selected
            .iter()
            .any(|s| s.name == p.name && s.kind == p.kind)
    };
    let skbmem = markers.iter().find(|p| {
        p.kind == ProbeKind::Function && function_backend.is_some_and(|b| p.backends.contains(&b))
    });
    let chosen: Vec<&crate::Probe> = match skbmem {
        Some(m) => vec![m],
        None => markers
            .iter()
            .filter(|p| p.kind == ProbeKind::Tracepoint)
            .collect(),
    };
    chosen.into_iter().filter(|p| !have(p)).cloned().collect()
}

/// Decide which rows end a journey: the end markers if the table has any,
/// else every function that frees an skb.
pub fn mark_journey_ends(rows: &mut [ProbeEntry]) {
    if rows.iter().any(|r| is_end_marker(&r.name, r.kind)) {
        for r in rows.iter_mut() {
            r.frees_skb = is_end_marker(&r.name, r.kind);
        }
    }
}

/// Identity of the kernel a table was generated for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KernelIdentity {
    /// BTF source path.
    pub source: Cow<'static, str>,
    /// FNV-1a of the base BTF.
    pub checksum: Cow<'static, str>,
    /// Release string, if known.
    pub release: Option<Cow<'static, str>>,
}

/// How typed programs learn their probe index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ObjectMode {
    /// One program per probe with its index compiled in (ipft-gen tracers).
    Specialised,
    /// Programs per skb position; typed ones are instantiated per target with
    /// the index in rodata (the clang-free `ipft` command).
    Generic,
}

/// Name of the kprobe / kprobe-multi program for an skb (and reason)
/// position; `end` for the journey-ending variant.
pub fn kprobe_program(multi: bool, skb_pos: u8, reason_pos: Option<u8>, end: bool) -> String {
    let k = if multi { 'm' } else { 'k' };
    let r = reason_pos.map(|r| format!("_r{r}")).unwrap_or_default();
    let e = if end { "_e" } else { "" };
    format!("ipft_{k}{skb_pos}{r}{e}")
}

/// Name of the kretprobe (or kretprobe.multi) program: one serves every
/// position, the skb comes from the entry's stash.
pub fn kretprobe_program(multi: bool) -> String {
    format!("ipft_{}r", if multi { 'm' } else { 'k' })
}

/// Typed program kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypedKind {
    /// tp_btf
    Tracepoint,
    /// fentry
    Entry,
    /// fexit
    Return,
}

impl TypedKind {
    fn letter(self) -> char {
        match self {
            TypedKind::Tracepoint => 't',
            TypedKind::Entry => 'f',
            TypedKind::Return => 'x',
        }
    }

    /// libbpf section prefix.
    pub fn section(self) -> &'static str {
        match self {
            TypedKind::Tracepoint => "tp_btf",
            TypedKind::Entry => "fentry",
            TypedKind::Return => "fexit",
        }
    }
}

/// Name of a specialised typed program for probe `index`.
pub fn typed_program(kind: TypedKind, index: usize) -> String {
    format!("ipft_{}{index}", kind.letter())
}

/// Name of a generic typed program for an skb (and reason) position;
/// `end` for the journey-ending variant.
pub fn generic_program(kind: TypedKind, skb_pos: u8, reason_pos: Option<u8>, end: bool) -> String {
    let r = reason_pos.map(|r| format!("_r{r}")).unwrap_or_default();
    let e = if end { "_e" } else { "" };
    format!("ipft_g{}{skb_pos}{r}{e}", kind.letter())
}

/// Positions covered by the generic object; probes outside them need a
/// generated tracer.
pub const GENERIC_MAX_SKB_POS: u8 = 11;
/// (skb, reason) pairs covered by the generic object: the drop functions and
/// tracepoints of Linux 5.17+ (kfree_skb_reason, sk_skb_reason_drop,
/// trace_kfree_skb).
pub const GENERIC_REASON_PAIRS: &[(u8, u8)] = &[(0, 1), (1, 2), (0, 2)];
