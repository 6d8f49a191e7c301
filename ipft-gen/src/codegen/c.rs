//! BPF C from templates/bpf: the tracer skeleton plus one partial per
//! program kind (kprobe, kretprobe, typed, clone). Every expression the C
//! needs (flags, the drop-reason argument, the probe index) is computed
//! here, so the templates hold no logic beyond "is this a journey end".

use std::collections::BTreeSet;

use handlebars::Handlebars;
use ipft_abi::program::{
    generic_programs, kprobe_arg, probe_macros, KPROBE_MAX_SKB_POS, MULTI_COOKIE_SKB,
};
use ipft_abi::{event_flags, Config, Event, Layout, ProbeEntry, ProgramId, TypedKind};
use serde::Serialize;

use super::Plan;

/// The tracer template, embedded so ipft-gen is self-contained.
pub const TRACER_TEMPLATE: &str = include_str!("../../../templates/bpf/tracer.bpf.c.hbs");
const PARTIALS: &[(&str, &str)] = &[
    (
        "kprobe",
        include_str!("../../../templates/bpf/programs/kprobe.c.hbs"),
    ),
    (
        "kretprobe",
        include_str!("../../../templates/bpf/programs/kretprobe.c.hbs"),
    ),
    (
        "typed",
        include_str!("../../../templates/bpf/programs/typed.c.hbs"),
    ),
    (
        "clone",
        include_str!("../../../templates/bpf/programs/clone.c.hbs"),
    ),
];
/// Minimal CO-RE header for builds without a vmlinux.h (the generic object).
pub const CORE_HEADER: &str = include_str!("../../../templates/bpf/ipft_core.h");

/// Template rendering failed (a bug in a template, reported with its cause).
#[derive(Debug, thiserror::Error)]
#[error("template error: {0}")]
pub struct TemplateError(String);

/// One program, as its partial reads it.
#[derive(Serialize, Default)]
struct Program {
    comment: String,
    section: String,
    prog: String,
    skb_pos: u8,
    /// kprobes: the C expression reading the skb argument.
    skb_arg: String,
    /// kprobe.multi: the reason (and a rare skb position) come from the
    /// link's cookie.
    multi: bool,
    /// kprobe.multi: the skb is in argument `skb_pos` or later, where the
    /// cookie says, up to `max_pos`.
    from_cookie: bool,
    max_pos: u8,
    has_reason: bool,
    reason_pos: u8,
    end: bool,
    /// `IPFT_F_...` flags of the events it emits, or `0`.
    flags: String,
    /// The `aux` expression: the drop reason argument, or `0`.
    aux: String,
    /// The probe index expression (typed programs).
    probe: String,
    /// Clone programs: the kprobe entry keeping the skb.
    entry: bool,
    /// Clone programs: the kretprobe.
    kret: bool,
    /// Clone programs (fexit): the return value's index in ctx.
    ret_pos: u8,
}

#[derive(Serialize)]
struct Context<'a> {
    version: &'a str,
    btf_source: &'a str,
    btf_checksum: &'a str,
    release: Option<&'a str>,
    profile: &'a str,
    probe_count: usize,
    mode: &'a str,
    core_header: &'a str,
    event_struct: String,
    event_flags: String,
    probe_macros: String,
    config_struct: String,
    section_structs: String,
    ring_bytes: u32,
    ext_len: usize,
    kprobes: Vec<Program>,
    kretprobes: Vec<Program>,
    typed: Vec<Program>,
    clones: Vec<Program>,
    /// `--filter`: the expression as C, or empty.
    pcap_c: String,
}

fn flags(list: &[(bool, &str)]) -> String {
    let set: Vec<&str> = list.iter().filter(|(on, _)| *on).map(|(_, f)| *f).collect();
    match set.is_empty() {
        true => "0".into(),
        false => set.join(" | "),
    }
}

/// A program's C, given its id and, for typed programs, the probe index
/// expression and a comment naming the target.
fn program(id: ProgramId, probe: String, comment: String) -> Program {
    let section = id.section().to_string();
    let prog = id.to_string();
    match id {
        ProgramId::Kprobe {
            multi,
            skb,
            reason,
            end,
        } => Program {
            section,
            prog,
            skb_pos: skb,
            skb_arg: kprobe_arg(skb),
            multi,
            from_cookie: multi && skb == MULTI_COOKIE_SKB,
            max_pos: KPROBE_MAX_SKB_POS,
            has_reason: reason.is_some(),
            reason_pos: reason.unwrap_or(0),
            end,
            flags: flags(&[(end, "IPFT_F_END"), (reason.is_some(), "IPFT_F_REASON")]),
            aux: reason.map_or("0".into(), kprobe_arg),
            ..Default::default()
        },
        ProgramId::Kretprobe { .. } => Program {
            section,
            prog,
            ..Default::default()
        },
        ProgramId::CloneEntry { .. } | ProgramId::CloneReturn { .. } => Program {
            comment: format!("{section}: --track-skb, a clone function's skb (argument 0)"),
            entry: matches!(id, ProgramId::CloneEntry { .. }),
            kret: matches!(id, ProgramId::CloneReturn { .. }),
            section,
            prog,
            ..Default::default()
        },
        ProgramId::CloneExit { nargs } => Program {
            comment: format!("generic fexit: --track-skb, a clone function of {nargs} arguments; target set at load"),
            section,
            prog,
            ret_pos: nargs,
            probe,
            ..Default::default()
        },
        ProgramId::Typed { kind, .. } | ProgramId::Generic { kind, .. } => {
            let (skb, reason, end) = match id {
                ProgramId::Generic {
                    skb, reason, end, ..
                } => (skb, reason, end),
                _ => unreachable!("typed ids are filled in by typed()"),
            };
            let ret = kind == TypedKind::Return;
            Program {
                comment,
                section,
                prog,
                skb_pos: skb,
                skb_arg: match kind {
                    // raw_tp arguments are plain numbers to the verifier.
                    TypedKind::RawTracepoint => {
                        format!("bpf_core_cast((void *)ctx[{skb}], struct sk_buff)")
                    }
                    _ => format!("ctx[{skb}]"),
                },
                has_reason: reason.is_some(),
                reason_pos: reason.unwrap_or(0),
                end,
                flags: flags(&[
                    (end, "IPFT_F_END"),
                    (ret, "IPFT_F_RETURN"),
                    (reason.is_some(), "IPFT_F_REASON"),
                ]),
                aux: reason.map_or("0".into(), |r| format!("ctx[{r}]")),
                probe,
                ..Default::default()
            }
        }
    }
}

/// A typed program for a table row: rendered like the generic program of
/// the same position, with the row's own section target and index.
fn typed(id: ProgramId, e: &ProbeEntry, row: usize) -> Program {
    let ProgramId::Typed { kind, .. } = id else {
        unreachable!("typed() takes typed ids")
    };
    if e.follows_clones() {
        let mut p = program(
            ProgramId::CloneExit {
                nargs: e.shape.nargs,
            },
            row.to_string(),
            String::new(),
        );
        p.comment = format!(
            "fexit {}: --track-skb, the copy it returns",
            c_safe(&e.name)
        );
        p.prog = id.to_string();
        p.section = format!("fexit/{}", c_safe(&e.name));
        return p;
    }
    let end = ipft_abi::table::is_end_marker(&e.name, e.kind()) && kind != TypedKind::Return;
    let as_generic = ProgramId::Generic {
        kind,
        skb: e.shape.skb_pos,
        reason: e.shape.reason_pos,
        end,
    };
    let comment = format!(
        "{} {}: skb in argument {}{}",
        kind.section(),
        c_safe(&e.display_name()),
        e.shape.skb_pos,
        e.shape
            .reason_pos
            .map(|r| format!(", drop reason in argument {r}"))
            .unwrap_or_default()
    );
    let mut p = program(as_generic, row.to_string(), comment);
    p.prog = id.to_string();
    p.section = format!("{}/{}", kind.section(), c_safe(&e.name));
    p
}

/// C string-literal safe text (BTF names are C identifiers, but be strict).
fn c_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-:".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Text safe inside a C block comment.
fn comment_safe(s: &str) -> String {
    s.replace("*/", "* /").replace(['\n', '\r'], " ")
}

fn render(ctx: &Context<'_>) -> Result<String, TemplateError> {
    let err = |e: &dyn std::fmt::Display| TemplateError(e.to_string());
    let mut hb = Handlebars::new();
    hb.register_escape_fn(handlebars::no_escape);
    hb.set_strict_mode(true);
    hb.register_template_string("tracer", TRACER_TEMPLATE)
        .map_err(|e| err(&e))?;
    for (name, text) in PARTIALS {
        hb.register_partial(name, *text).map_err(|e| err(&e))?;
    }
    hb.render("tracer", ctx).map_err(|e| err(&e))
}

/// Programs of a set of ids, split by partial (kprobe, kretprobe, typed,
/// clone), in the ids' order.
fn split(programs: impl IntoIterator<Item = (ProgramId, Program)>) -> [Vec<Program>; 4] {
    let mut out: [Vec<Program>; 4] = Default::default();
    for (id, p) in programs {
        let slot = match id {
            ProgramId::CloneEntry { .. }
            | ProgramId::CloneReturn { .. }
            | ProgramId::CloneExit { .. } => 3,
            _ => match p.section.as_str() {
                "kprobe" | "kprobe.multi" => 0,
                "kretprobe" | "kretprobe.multi" => 1,
                _ => 2,
            },
        };
        out[slot].push(p);
    }
    out
}

/// One typed program per typed row, kprobe programs per position in use.
pub fn render_specialised(plan: &Plan<'_>, table: &[ProbeEntry]) -> Result<String, TemplateError> {
    let mut shared: BTreeSet<ProgramId> = BTreeSet::new();
    let mut typed_progs = Vec::new();
    let mut clone_progs = Vec::new();
    for (row, e) in table.iter().enumerate() {
        for id in [Some(e.program), e.return_program].into_iter().flatten() {
            match id {
                ProgramId::Typed { .. } if e.follows_clones() => {
                    clone_progs.push(typed(id, e, row))
                }
                ProgramId::Typed { .. } => typed_progs.push(typed(id, e, row)),
                id => {
                    shared.insert(id);
                }
            }
        }
    }
    let [kprobes, kretprobes, _, mut clones] = split(
        shared
            .into_iter()
            .map(|id| (id, program(id, String::new(), String::new()))),
    );
    clones.extend(clone_progs);
    render(&Context {
        version: env!("CARGO_PKG_VERSION"),
        btf_source: &comment_safe(&plan.identity.source),
        btf_checksum: &plan.identity.checksum,
        release: plan.identity.release.as_deref(),
        profile: &c_safe(plan.profile),
        probe_count: table.len(),
        mode: "specialised",
        core_header: "vmlinux.h",
        event_struct: Event::c_struct(),
        event_flags: event_flags::c_defines(),
        probe_macros: probe_macros(),
        config_struct: Config::c_struct(),
        section_structs: ipft_abi::Sections::c_structs(),
        ring_bytes: ipft_abi::layout::DEFAULT_RING_BYTES,
        ext_len: ipft_abi::payload::PAYLOAD_LEN,
        kprobes,
        kretprobes,
        typed: typed_progs,
        clones,
        pcap_c: plan.pcap.map(|f| f.to_c()).unwrap_or_default(),
    })
}

/// The generic object of the `ipft` command: every program of
/// [`generic_programs`]. A typed (tp_btf, fentry/fexit) program is loaded
/// once per target: as copies of its instructions with the probe index
/// written in where the kernel's links carry cookies, else as an object of
/// its own reading the index from rodata.
pub fn render_generic() -> Result<String, TemplateError> {
    let programs = generic_programs().into_iter().map(|id| {
        let (probe, comment) = match id {
            ProgramId::CloneExit { .. } => ("ipft_tracing_probe()".to_string(), String::new()),
            ProgramId::Generic {
                kind: TypedKind::RawTracepoint,
                skb,
                ..
            } => (
                "bpf_get_attach_cookie(ctx)".to_string(),
                format!("generic raw_tp: skb in argument {skb}; one link per tracepoint, the probe index as cookie"),
            ),
            ProgramId::Generic { kind, skb, .. } => (
                match kind {
                    TypedKind::Tracepoint => "ipft_tp_probe()".to_string(),
                    _ => "ipft_tracing_probe()".to_string(),
                },
                format!(
                    "generic {}: skb in argument {skb}; target set at load",
                    kind.section()
                ),
            ),
            _ => (String::new(), String::new()),
        };
        (id, program(id, probe, comment))
    });
    let [kprobes, kretprobes, typed, clones] = split(programs);
    render(&Context {
        version: env!("CARGO_PKG_VERSION"),
        btf_source: "none (CO-RE, ipft_core.h)",
        btf_checksum: "-",
        release: None,
        profile: "generic",
        probe_count: 0,
        mode: "generic",
        core_header: "ipft_core.h",
        event_struct: Event::c_struct(),
        event_flags: event_flags::c_defines(),
        probe_macros: probe_macros(),
        config_struct: Config::c_struct(),
        section_structs: ipft_abi::Sections::c_structs(),
        ring_bytes: ipft_abi::layout::DEFAULT_RING_BYTES,
        ext_len: ipft_abi::payload::PAYLOAD_LEN,
        kprobes,
        kretprobes,
        typed,
        clones,
        pcap_c: String::new(),
    })
}
