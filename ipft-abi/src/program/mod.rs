//! The name of every BPF program, as one type. The template is rendered with
//! `ProgramId`'s `Display`, and the loader parses the names it finds in an
//! object back with `FromStr`: names are never assembled anywhere else.
//! Where arguments and cookies lie is in `cookie`, which program runs a
//! probe in `select`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::probe::Backend;

mod cookie;
mod select;

pub use cookie::*;
pub use select::*;

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

    /// Whether this is a raw_tp program, loaded once and linked to every
    /// tracepoint it serves.
    pub fn is_raw_tracepoint(self) -> bool {
        matches!(
            self,
            ProgramId::Generic {
                kind: TypedKind::RawTracepoint,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
