//! The name of every BPF program, as one type. The template is rendered with
//! `ProgramId`'s `Display`, and the loader parses the names it finds in an
//! object back with `FromStr`: names are never assembled anywhere else.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::probe::{Backend, ProbeShape};
use crate::table::{is_end_marker, ProbeEntry};

/// Programs that read their arguments from BTF (typed context).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TypedKind {
    /// tp_btf
    Tracepoint,
    /// fentry
    Entry,
    /// fexit
    Return,
    /// raw_tp (generic object only): one program per skb position serves
    /// every tracepoint, each link carrying its probe index as cookie
    /// (Linux 6.10), so no tracepoint costs a verifier pass of its own. The
    /// skb is made a BTF pointer with bpf_rdonly_cast (Linux 6.2): its
    /// fields are plain loads, as in a tp_btf program.
    RawTracepoint,
}

impl TypedKind {
    fn letter(self) -> char {
        match self {
            TypedKind::Tracepoint => 't',
            TypedKind::Entry => 'f',
            TypedKind::Return => 'x',
            TypedKind::RawTracepoint => 'p',
        }
    }

    fn from_letter(c: char) -> Option<TypedKind> {
        [
            TypedKind::Tracepoint,
            TypedKind::Entry,
            TypedKind::Return,
            TypedKind::RawTracepoint,
        ]
        .into_iter()
        .find(|k| k.letter() == c)
    }

    /// libbpf section prefix.
    pub fn section(self) -> &'static str {
        match self {
            TypedKind::Tracepoint => "tp_btf",
            TypedKind::Entry => "fentry",
            TypedKind::Return => "fexit",
            TypedKind::RawTracepoint => "raw_tp",
        }
    }
}

/// One BPF program of a tracer object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ProgramId {
    /// kprobe (or kprobe.multi) entry for an skb (and drop-reason) position;
    /// the attach cookie is the probe index. `end`: the journey-ending
    /// variant, which also sees skbs whose mark is gone.
    Kprobe {
        /// kprobe.multi
        multi: bool,
        /// skb argument
        skb: u8,
        /// drop-reason argument
        reason: Option<u8>,
        /// journey-ending variant
        end: bool,
    },
    /// kretprobe (or kretprobe.multi): one serves every position, the skb
    /// comes from the entry's stash.
    Kretprobe {
        /// kretprobe.multi
        multi: bool,
    },
    /// A specialised typed program for table row `row` (generated tracers).
    Typed {
        /// tp_btf, fentry or fexit
        kind: TypedKind,
        /// probe index, compiled in
        row: u32,
    },
    /// A generic typed program for a position (`ipft`), aimed at its target
    /// at load time; its probe index comes from rodata or the cookie.
    Generic {
        /// tp_btf, fentry or fexit
        kind: TypedKind,
        /// skb argument
        skb: u8,
        /// drop-reason argument
        reason: Option<u8>,
        /// journey-ending variant
        end: bool,
    },
    /// --track-skb, kprobe entry of a function that clones or copies the
    /// skb in its first argument: keeps the skb for [`ProgramId::CloneReturn`].
    CloneEntry {
        /// kprobe.multi
        multi: bool,
    },
    /// --track-skb, kretprobe of a clone function: the copy is the return
    /// value, its source comes from the entry's stash.
    CloneReturn {
        /// kretprobe.multi
        multi: bool,
    },
    /// --track-skb, generic fexit of a clone function (`ipft`): the copy is
    /// the return value, after `nargs` arguments. (Generated tracers use a
    /// [`ProgramId::Typed`] fexit program of the clone row.)
    CloneExit {
        /// arguments of the function
        nargs: u8,
    },
}

impl ProgramId {
    /// The libbpf section (without a target).
    pub fn section(self) -> &'static str {
        match self {
            ProgramId::Kprobe { multi: false, .. } => "kprobe",
            ProgramId::Kprobe { multi: true, .. } => "kprobe.multi",
            ProgramId::Kretprobe { multi: false } => "kretprobe",
            ProgramId::Kretprobe { multi: true } => "kretprobe.multi",
            ProgramId::Typed { kind, .. } | ProgramId::Generic { kind, .. } => kind.section(),
            ProgramId::CloneEntry { multi: false } => "kprobe",
            ProgramId::CloneEntry { multi: true } => "kprobe.multi",
            ProgramId::CloneReturn { multi: false } => "kretprobe",
            ProgramId::CloneReturn { multi: true } => "kretprobe.multi",
            ProgramId::CloneExit { .. } => "fexit",
        }
    }

    /// The backend this program attaches with.
    pub fn backend(self) -> Backend {
        match self {
            ProgramId::Kprobe { multi, .. }
            | ProgramId::Kretprobe { multi }
            | ProgramId::CloneEntry { multi }
            | ProgramId::CloneReturn { multi } => match multi {
                true => Backend::KprobeMulti,
                false => Backend::Kprobe,
            },
            ProgramId::CloneExit { .. } => Backend::Fentry,
            ProgramId::Typed { kind, .. } | ProgramId::Generic { kind, .. } => match kind {
                TypedKind::Tracepoint | TypedKind::RawTracepoint => Backend::TpBtf,
                TypedKind::Entry | TypedKind::Return => Backend::Fentry,
            },
        }
    }

    /// Whether this program sees returns (kretprobe, fexit).
    pub fn is_return(self) -> bool {
        matches!(
            self,
            ProgramId::Kretprobe { .. }
                | ProgramId::CloneReturn { .. }
                | ProgramId::CloneExit { .. }
                | ProgramId::Typed {
                    kind: TypedKind::Return,
                    ..
                }
                | ProgramId::Generic {
                    kind: TypedKind::Return,
                    ..
                }
        )
    }
}

fn suffix(f: &mut fmt::Formatter<'_>, reason: Option<u8>, end: bool) -> fmt::Result {
    if let Some(r) = reason {
        write!(f, "_r{r}")?;
    }
    if end {
        f.write_str("_e")?;
    }
    Ok(())
}

impl fmt::Display for ProgramId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = |multi: bool| if multi { 'm' } else { 'k' };
        match *self {
            ProgramId::Kprobe {
                multi,
                skb,
                reason,
                end,
            } => {
                write!(f, "ipft_{}{skb}", k(multi))?;
                suffix(f, reason, end)
            }
            ProgramId::Kretprobe { multi } => write!(f, "ipft_{}r", k(multi)),
            ProgramId::CloneEntry { multi } => write!(f, "ipft_{}c", k(multi)),
            ProgramId::CloneReturn { multi } => write!(f, "ipft_{}cr", k(multi)),
            ProgramId::CloneExit { nargs } => write!(f, "ipft_gc{nargs}"),
            ProgramId::Typed { kind, row } => write!(f, "ipft_{}{row}", kind.letter()),
            ProgramId::Generic {
                kind,
                skb,
                reason,
                end,
            } => {
                write!(f, "ipft_g{}{skb}", kind.letter())?;
                suffix(f, reason, end)
            }
        }
    }
}

/// A program name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an ipft program name")]
pub struct NotOurs(pub String);

impl FromStr for ProgramId {
    type Err = NotOurs;
    fn from_str(s: &str) -> Result<ProgramId, NotOurs> {
        parse(s).ok_or_else(|| NotOurs(s.to_string()))
    }
}

/// `<digits>[_r<digits>][_e]` -> (n, reason, end).
fn position(s: &str) -> Option<(u32, Option<u8>, bool)> {
    let (s, end) = match s.strip_suffix("_e") {
        Some(rest) => (rest, true),
        None => (s, false),
    };
    let (n, reason) = match s.split_once("_r") {
        Some((n, r)) => (n, Some(digits(r)?.try_into().ok()?)),
        None => (s, None),
    };
    Some((digits(n)?, reason, end))
}

fn digits(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0')))
        .then(|| s.parse().ok())
        .flatten()
}

fn parse(s: &str) -> Option<ProgramId> {
    let rest = s.strip_prefix("ipft_")?;
    let mut chars = rest.chars();
    let first = chars.next()?;
    let tail = chars.as_str();
    match first {
        'k' | 'm' => {
            let multi = first == 'm';
            match tail {
                "r" => return Some(ProgramId::Kretprobe { multi }),
                "c" => return Some(ProgramId::CloneEntry { multi }),
                "cr" => return Some(ProgramId::CloneReturn { multi }),
                _ => {}
            }
            let (skb, reason, end) = position(tail)?;
            Some(ProgramId::Kprobe {
                multi,
                skb: skb.try_into().ok()?,
                reason,
                end,
            })
        }
        'g' if tail.starts_with('c') => Some(ProgramId::CloneExit {
            nargs: digits(&tail[1..])?.try_into().ok()?,
        }),
        'g' => {
            let mut c = tail.chars();
            let kind = TypedKind::from_letter(c.next()?)?;
            let (skb, reason, end) = position(c.as_str())?;
            Some(ProgramId::Generic {
                kind,
                skb: skb.try_into().ok()?,
                reason,
                end,
            })
        }
        c => {
            let kind = TypedKind::from_letter(c)?;
            Some(ProgramId::Typed {
                kind,
                row: digits(tail)?,
            })
        }
    }
}

/// x86_64 passes the first six integer arguments in rdi, rsi, rdx, rcx, r8,
/// r9 and the rest on the stack, where a kprobe at the function's entry
/// reads them (the template's `ipft_kprobe_arg`).
pub const KPROBE_REG_ARGS: u8 = 6;
/// Highest skb position the kprobe programs cover (registers, then stack).
pub const KPROBE_MAX_SKB_POS: u8 = 11;

/// C expression for argument `pos` (0-based) in a kprobe program. Where an
/// argument lives is the template's one rule; with `pos` a constant the
/// compiler keeps only the register or stack read it names.
pub fn kprobe_arg(pos: u8) -> String {
    format!("ipft_kprobe_arg(ctx, {pos})")
}
/// Highest skb position the generic typed programs cover.
pub const GENERIC_MAX_SKB_POS: u8 = 11;
/// (skb, reason) pairs the generic object has programs for: the drop
/// functions and tracepoints of Linux 5.17+ (kfree_skb_reason,
/// sk_skb_reason_drop, trace_kfree_skb).
pub const GENERIC_REASON_PAIRS: &[(u8, u8)] = &[(0, 1), (1, 2), (0, 2)];

/// The kprobe.multi program for an skb in argument 3..=[`KPROBE_MAX_SKB_POS`]
/// reads its position from the cookie (a helper call per hit): each program
/// is a link, ~0.11 s to attach and to release under the lab's emulator, so
/// only the first three registers (~95 % of skb functions, all hot ones)
/// get one each (docs/benchmarks.md). The journey-ending probe
/// (kfree_skbmem) runs this program too, told by [`COOKIE_END_SHIFT`]: one
/// link fewer, for a cookie lookup once per freed skb.
pub const MULTI_COOKIE_SKB: u8 = 3;

/// Where a kprobe.multi link's cookie carries a probe's shape, above the
/// probe index in its low 32 bits: the drop reason's position + 1 (0: none)
/// and the skb's position + 1: the reason (read on a match only) and a rare
/// skb position ([`MULTI_COOKIE_SKB`]) need no program (no link) of their own.
pub const COOKIE_REASON_SHIFT: u32 = 32;
/// See [`COOKIE_REASON_SHIFT`].
pub const COOKIE_SKB_SHIFT: u32 = 40;
/// The cookie bit of a journey-ending probe on the [`MULTI_COOKIE_SKB`]
/// program: it sees skbs whose mark is gone and frees their live entry.
pub const COOKIE_END_SHIFT: u32 = 48;

/// The cookie of table row `index` on its kprobe.multi link (a
/// journey-ending probe reports no reason).
pub fn kprobe_multi_cookie(index: usize, row: &ProbeEntry) -> u64 {
    let end = is_end_marker(&row.name, row.kind());
    let reason = match (end, row.shape.reason_pos) {
        (false, Some(r)) => u64::from(r) + 1,
        _ => 0,
    };
    (index as u64 & 0xffff_ffff)
        | reason << COOKIE_REASON_SHIFT
        | (u64::from(row.shape.skb_pos) + 1) << COOKIE_SKB_SHIFT
        | u64::from(end) << COOKIE_END_SHIFT
}

/// The immediate a generic typed program loads as its probe index
/// (`"ipftprob"`): the loader writes each copy's index over it, so a hit
/// reads a constant instead of its link's cookie, a helper call.
pub const PROBE_MARKER: u64 = 0x626f_7270_7466_7069;

/// The immediate the pcap-filter stub loads first (`"ipftpcap"`): the
/// loader finds the stub by it and puts the compiled expression in its place.
pub const PCAP_MARKER: u64 = 0x7061_6370_7466_7069;

/// The C macros for how a program learns its probe (reading
/// [`kprobe_multi_cookie`] back, and [`PROBE_MARKER`]) and the
/// [`PCAP_MARKER`].
pub fn probe_macros() -> String {
    format!(
        "#define IPFT_COOKIE_REASON(c) (((c) >> {COOKIE_REASON_SHIFT}) & 0xff)\n\
         #define IPFT_COOKIE_SKB(c) (((c) >> {COOKIE_SKB_SHIFT}) & 0xff)\n\
         #define IPFT_COOKIE_END(c) (((c) >> {COOKIE_END_SHIFT}) & 1)\n\
         #define IPFT_PROBE_MARKER \"{PROBE_MARKER:#x}\"\n\
         #define IPFT_PCAP_MARKER \"{PCAP_MARKER:#x}\""
    )
}

/// The kprobe (or kprobe.multi) entry program for a probe of this shape;
/// `reason`: the drop reason's position a single kprobe program reads.
/// kprobe.multi has no journey-ending variant: the cookie program ends
/// journeys where its cookie says ([`COOKIE_END_SHIFT`]).
pub fn kprobe_program(shape: &ProbeShape, multi: bool, end: bool, reason: Option<u8>) -> ProgramId {
    match multi {
        true => ProgramId::Kprobe {
            multi,
            skb: match end {
                true => MULTI_COOKIE_SKB,
                false => shape.skb_pos.min(MULTI_COOKIE_SKB),
            },
            reason: None,
            end: false,
        },
        false => ProgramId::Kprobe {
            multi,
            skb: shape.skb_pos,
            reason: reason.filter(|_| !end),
            end,
        },
    }
}

/// Every program of the generic object, in the order the template renders
/// them: kprobe per argument position (kprobe.multi per register and one for
/// the rest, which also ends journeys), typed programs per position, the
/// drop-reason variants and the journey-ending variants.
pub fn generic_programs() -> Vec<ProgramId> {
    let mut out = Vec::new();
    for multi in [false, true] {
        let last = match multi {
            true => MULTI_COOKIE_SKB,
            false => KPROBE_MAX_SKB_POS,
        };
        for skb in 0..=last {
            out.push(ProgramId::Kprobe {
                multi,
                skb,
                reason: None,
                end: false,
            });
        }
        if !multi {
            for &(skb, r) in GENERIC_REASON_PAIRS {
                out.push(ProgramId::Kprobe {
                    multi,
                    skb,
                    reason: Some(r),
                    end: false,
                });
            }
        }
        // Every journey-ending probe takes the skb first.
        if !multi {
            out.push(ProgramId::Kprobe {
                multi,
                skb: 0,
                reason: None,
                end: true,
            });
        }
        out.push(ProgramId::Kretprobe { multi });
    }
    let kinds = [
        TypedKind::Tracepoint,
        TypedKind::Entry,
        TypedKind::Return,
        TypedKind::RawTracepoint,
    ];
    for kind in kinds {
        let generic = |skb, reason, end| ProgramId::Generic {
            kind,
            skb,
            reason,
            end,
        };
        out.extend((0..=GENERIC_MAX_SKB_POS).map(|p| generic(p, None, false)));
        out.extend(
            GENERIC_REASON_PAIRS
                .iter()
                .map(|&(s, r)| generic(s, Some(r), false)),
        );
        if kind != TypedKind::Return {
            out.push(generic(0, None, true));
        }
        if matches!(kind, TypedKind::Tracepoint | TypedKind::RawTracepoint) {
            // trace_kfree_skb(skb, location, reason) ends journeys visibly.
            out.push(generic(0, Some(2), true));
        }
    }
    for multi in [false, true] {
        out.push(ProgramId::CloneEntry { multi });
        out.push(ProgramId::CloneReturn { multi });
    }
    out.extend((1..=CLONE_MAX_NARGS).map(|nargs| ProgramId::CloneExit { nargs }));
    out
}

/// Most arguments of a clone function the generic fexit programs cover
/// (skb_clone and skb_copy take 2, __pskb_copy_fclone and skb_copy_expand 4).
pub const CLONE_MAX_NARGS: u8 = 6;

/// The entry program of the generic object for a probe through `backend`,
/// if the object has one. `end` asks for the journey-ending variant.
pub fn generic_entry(shape: &ProbeShape, backend: Backend, end: bool) -> Option<ProgramId> {
    // A drop reason is passed only where the object has that pair.
    let reason = shape.reason_pos.filter(|&r| match end {
        true => backend == Backend::TpBtf && r == 2,
        false => GENERIC_REASON_PAIRS.contains(&(shape.skb_pos, r)),
    });
    let id = match backend {
        Backend::Kprobe | Backend::KprobeMulti if shape.skb_pos > KPROBE_MAX_SKB_POS => {
            return None
        }
        Backend::Kprobe | Backend::KprobeMulti => {
            kprobe_program(shape, backend == Backend::KprobeMulti, end, reason)
        }
        Backend::TpBtf | Backend::Fentry => ProgramId::Generic {
            kind: match backend {
                Backend::TpBtf => TypedKind::Tracepoint,
                _ => TypedKind::Entry,
            },
            skb: shape.skb_pos,
            reason,
            end,
        },
    };
    generic_programs().contains(&id).then_some(id)
}

/// The raw_tp program of the generic object that serves a tp_btf
/// program's tracepoints (same skb, reason and end); other programs as they
/// are.
pub fn as_raw_tracepoint(id: ProgramId) -> ProgramId {
    match id {
        ProgramId::Generic {
            kind: TypedKind::Tracepoint,
            skb,
            reason,
            end,
        } => ProgramId::Generic {
            kind: TypedKind::RawTracepoint,
            skb,
            reason,
            end,
        },
        id => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(skb_pos: u8, nargs: u8) -> ProbeShape {
        ProbeShape {
            skb_pos,
            nargs,
            ..Default::default()
        }
    }

    #[test]
    fn names_round_trip() {
        let mut all = generic_programs();
        all.extend((0..30).flat_map(|row| {
            [TypedKind::Tracepoint, TypedKind::Entry, TypedKind::Return]
                .map(|kind| ProgramId::Typed { kind, row })
        }));
        for id in all {
            let name = id.to_string();
            assert_eq!(name.parse::<ProgramId>(), Ok(id), "{name}");
            // libbpf keeps 15 characters of a program name in the kernel.
            assert!(
                name.len() <= 15 || matches!(id, ProgramId::Typed { .. }),
                "{name}"
            );
        }
    }

    #[test]
    fn known_names() {
        let k = ProgramId::Kprobe {
            multi: false,
            skb: 0,
            reason: Some(1),
            end: true,
        };
        assert_eq!(k.to_string(), "ipft_k0_r1_e");
        assert_eq!(ProgramId::Kretprobe { multi: true }.to_string(), "ipft_mr");
        assert_eq!(
            ProgramId::CloneReturn { multi: true }.to_string(),
            "ipft_mcr"
        );
        assert_eq!(ProgramId::CloneExit { nargs: 4 }.to_string(), "ipft_gc4");
        assert_eq!(ProgramId::CloneExit { nargs: 4 }.section(), "fexit");
        let t = ProgramId::Typed {
            kind: TypedKind::Return,
            row: 12,
        };
        assert_eq!(t.to_string(), "ipft_x12");
        assert_eq!(t.section(), "fexit");
        assert!(t.is_return());
        for bad in [
            "ipft_",
            "ipft_k",
            "ipft_k01",
            "ipft_q1",
            "other",
            "ipft_gt_e",
            "ipft_k1_r",
            "ipft_gc",
            "ipft_gc01",
            "ipft_kcx",
        ] {
            assert!(bad.parse::<ProgramId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn generic_entries() {
        let drop = ProbeShape {
            skb_pos: 1,
            reason_pos: Some(2),
            nargs: 3,
            ..Default::default()
        };
        let id = generic_entry(&drop, Backend::Kprobe, false).unwrap();
        assert_eq!(id.to_string(), "ipft_k1_r2");
        // kprobe.multi: the reason travels in the cookie, skbs from the
        // fourth argument on (registers or stack) share one program.
        let id = generic_entry(&drop, Backend::KprobeMulti, false).unwrap();
        assert_eq!(id.to_string(), "ipft_m1");
        let stack = shape(8, 9);
        let id = generic_entry(&stack, Backend::KprobeMulti, false).unwrap();
        assert_eq!(id.to_string(), "ipft_m3");
        let fourth = ProbeShape {
            skb_pos: 3,
            ..stack
        };
        assert_eq!(
            generic_entry(&fourth, Backend::KprobeMulti, false),
            Some(id)
        );
        assert_eq!(
            generic_entry(&stack, Backend::Kprobe, false).map(|p| p.to_string()),
            Some("ipft_k8".into())
        );
        let row = |program| ProbeEntry {
            shape: drop,
            ..ProbeEntry::tracepoint("f", 1, 3, program)
        };
        let c = kprobe_multi_cookie(
            7,
            &row(ProgramId::Kprobe {
                multi: true,
                skb: 1,
                reason: None,
                end: false,
            }),
        );
        // (index, reason + 1, skb + 1, end)
        let fields = |c: u64| {
            (
                c as u32,
                (c >> COOKIE_REASON_SHIFT) & 0xff,
                (c >> COOKIE_SKB_SHIFT) & 0xff,
                (c >> COOKIE_END_SHIFT) & 1,
            )
        };
        assert_eq!(fields(c), (7, 3, 2, 0));
        // kfree_skbmem runs the cookie program, which the cookie tells
        // that the skb is freed here (no reason, skb first).
        let free = shape(0, 1);
        let program = generic_entry(&free, Backend::KprobeMulti, true).unwrap();
        assert_eq!(program.to_string(), "ipft_m3");
        let end = ProbeEntry {
            name: "kfree_skbmem".into(),
            shape: free,
            ..row(program)
        };
        assert_eq!(fields(kprobe_multi_cookie(7, &end)), (7, 0, 1, 1));
        let far = shape(12, 13);
        assert_eq!(generic_entry(&far, Backend::Fentry, false), None);
        assert_eq!(generic_entry(&far, Backend::Kprobe, false), None);
    }
}
