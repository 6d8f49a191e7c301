//! BPF C from templates/bpf/tracer.bpf.c.hbs.

use std::collections::BTreeSet;

use handlebars::Handlebars;
use serde::Serialize;

use super::{event, Plan};
use crate::probe::Backend;
use crate::table::{self, ProbeEntry, TypedKind};

/// The tracer template, embedded so ipft-gen is self-contained.
pub const TRACER_TEMPLATE: &str = include_str!("../../../templates/bpf/tracer.bpf.c.hbs");
/// Minimal CO-RE header for builds without a vmlinux.h (the generic object).
pub const CORE_HEADER: &str = include_str!("../../../templates/bpf/ipft_core.h");

/// Template rendering failed (a bug in a template, reported with its cause).
#[derive(Debug, thiserror::Error)]
#[error("template error: {0}")]
pub struct TemplateError(String);

#[derive(Serialize)]
struct Kprobe {
    section: &'static str,
    multi: bool,
    prog: String,
    skb_pos: u8,
    skb_reg: u8,
    reason_pos: Option<u8>,
    reason_reg: Option<u8>,
    end: bool,
}

#[derive(Serialize)]
struct Kretprobe {
    section: &'static str,
    prog: String,
}

fn kretprobes(multi: impl IntoIterator<Item = bool>) -> Vec<Kretprobe> {
    multi
        .into_iter()
        .map(|m| Kretprobe {
            section: if m { "kretprobe.multi" } else { "kretprobe" },
            prog: table::kretprobe_program(m),
        })
        .collect()
}

#[derive(Serialize)]
struct Typed {
    comment: String,
    section: String,
    prog: String,
    skb_pos: u8,
    reason_pos: Option<u8>,
    is_return: bool,
    end: bool,
    probe: String,
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
    extension_hook: String,
    kprobes: Vec<Kprobe>,
    kretprobes: Vec<Kretprobe>,
    typed: Vec<Typed>,
}

fn kprobe(multi: bool, skb_pos: u8, reason_pos: Option<u8>, end: bool) -> Kprobe {
    Kprobe {
        section: if multi { "kprobe.multi" } else { "kprobe" },
        multi,
        end,
        prog: table::kprobe_program(multi, skb_pos, reason_pos, end),
        skb_pos,
        skb_reg: skb_pos + 1,
        reason_pos,
        reason_reg: reason_pos.map(|r| r + 1),
    }
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
    let mut hb = Handlebars::new();
    hb.register_escape_fn(handlebars::no_escape);
    hb.set_strict_mode(true);
    hb.register_template_string("tracer", TRACER_TEMPLATE)
        .map_err(|e| TemplateError(e.to_string()))?;
    hb.render("tracer", ctx)
        .map_err(|e| TemplateError(e.to_string()))
}

/// One program per typed probe, kprobe programs per position in use.
pub fn render_specialised(plan: &Plan<'_>, table: &[ProbeEntry]) -> Result<String, TemplateError> {
    let mut kprobes = BTreeSet::new();
    let mut typed = Vec::new();
    for (i, e) in table.iter().enumerate() {
        let where_ = match &e.module {
            Some(m) => format!("{}:{}", m, e.name),
            None => e.name.to_string(),
        };
        let end = table::is_end_marker(&e.name, e.kind);
        let mut push = |kind: TypedKind, prog: &str| {
            typed.push(Typed {
                comment: format!(
                    "{} {}: skb in argument {}{}",
                    kind.section(),
                    c_safe(&where_),
                    e.skb_pos,
                    e.reason_pos
                        .map(|r| format!(", drop reason in argument {r}"))
                        .unwrap_or_default()
                ),
                section: format!("{}/{}", kind.section(), c_safe(&e.name)),
                prog: prog.to_string(),
                skb_pos: e.skb_pos,
                reason_pos: e.reason_pos,
                is_return: kind == TypedKind::Return,
                end: end && kind != TypedKind::Return,
                probe: i.to_string(),
            })
        };
        match e.backend {
            Backend::TpBtf => push(TypedKind::Tracepoint, &e.program),
            Backend::Fentry => {
                push(TypedKind::Entry, &e.program);
                if let Some(r) = &e.return_program {
                    push(TypedKind::Return, r);
                }
            }
            Backend::Kprobe => {
                kprobes.insert((false, e.skb_pos, e.reason_pos, end));
            }
            Backend::KprobeMulti => {
                kprobes.insert((true, e.skb_pos, e.reason_pos, end));
            }
        }
    }
    render(&Context {
        version: env!("CARGO_PKG_VERSION"),
        btf_source: &comment_safe(&plan.identity.source),
        btf_checksum: &plan.identity.checksum,
        release: plan.identity.release.as_deref(),
        profile: &c_safe(plan.profile),
        probe_count: table.len(),
        mode: "specialised",
        core_header: "vmlinux.h",
        event_struct: event::c_struct(),
        extension_hook: String::new(),
        kretprobes: kretprobes(
            table
                .iter()
                .filter(|e| e.return_program.is_some())
                .filter_map(|e| match e.backend {
                    Backend::Kprobe => Some(false),
                    Backend::KprobeMulti => Some(true),
                    _ => None,
                })
                .collect::<BTreeSet<bool>>(),
        ),
        kprobes: kprobes
            .into_iter()
            .map(|(m, s, r, e)| kprobe(m, s, r, e))
            .collect(),
        typed,
    })
}

/// The generic object of the `ipft` command: kprobe programs for every
/// register position and typed programs for every position, with the probe
/// index taken from rodata (typed) or the attach cookie (kprobe).
pub fn render_generic() -> Result<String, TemplateError> {
    let mut kprobes = Vec::new();
    for multi in [false, true] {
        for pos in 0..crate::probe::KPROBE_MAX_REG_ARGS {
            kprobes.push(kprobe(multi, pos, None, false));
        }
        for &(s, r) in table::GENERIC_REASON_PAIRS {
            kprobes.push(kprobe(multi, s, Some(r), false));
        }
        // Journey ends: every end marker takes the skb first.
        kprobes.push(kprobe(multi, 0, None, true));
    }
    let mut typed = Vec::new();
    for kind in [TypedKind::Tracepoint, TypedKind::Entry, TypedKind::Return] {
        let mut pairs: Vec<(u8, Option<u8>)> = (0..=table::GENERIC_MAX_SKB_POS)
            .map(|p| (p, None))
            .collect();
        pairs.extend(
            table::GENERIC_REASON_PAIRS
                .iter()
                .map(|&(s, r)| (s, Some(r))),
        );
        let mut variants: Vec<(u8, Option<u8>, bool)> =
            pairs.into_iter().map(|(s, r)| (s, r, false)).collect();
        if kind != TypedKind::Return {
            variants.push((0, None, true));
        }
        if kind == TypedKind::Tracepoint {
            // trace_kfree_skb(skb, location, reason): a visible end marker.
            variants.push((0, Some(2), true));
        }
        for (skb_pos, reason_pos, end) in variants {
            typed.push(Typed {
                comment: format!(
                    "generic {}: skb in argument {skb_pos}; target set at load",
                    kind.section()
                ),
                section: kind.section().to_string(),
                prog: table::generic_program(kind, skb_pos, reason_pos, end),
                skb_pos,
                reason_pos,
                is_return: kind == TypedKind::Return,
                end,
                // tp_btf copies learn their index from rodata (one object
                // per tracepoint); fentry/fexit programs are loaded once and
                // attached many times, each link carrying its index as cookie.
                probe: match kind {
                    TypedKind::Tracepoint => "CONFIG.probe".into(),
                    _ => "(__u32)bpf_get_attach_cookie(ctx)".into(),
                },
            });
        }
    }
    render(&Context {
        version: env!("CARGO_PKG_VERSION"),
        btf_source: "none (CO-RE, ipft_core.h)",
        btf_checksum: "-",
        release: None,
        profile: "generic",
        probe_count: 0,
        mode: "generic",
        core_header: "ipft_core.h",
        kretprobes: kretprobes([false, true]),
        event_struct: event::c_struct(),
        extension_hook: String::new(),
        kprobes,
        typed,
    })
}
