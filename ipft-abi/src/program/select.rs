//! Which program of an object runs a probe: the generic object's set, and
//! the entry program for a probe's shape and backend.

use super::{ProgramId, TypedKind, KPROBE_MAX_SKB_POS, MULTI_COOKIE_SKB};
use crate::probe::{Backend, ProbeShape};

/// Highest skb position the generic typed programs cover.
pub const GENERIC_MAX_SKB_POS: u8 = 11;
/// (skb, reason) pairs the generic object has programs for: the drop
/// functions and tracepoints of Linux 5.17+ (kfree_skb_reason,
/// sk_skb_reason_drop, trace_kfree_skb).
pub const GENERIC_REASON_PAIRS: &[(u8, u8)] = &[(0, 1), (1, 2), (0, 2)];

/// The kprobe (or kprobe.multi) entry program for a probe of this shape;
/// `reason`: the drop reason's position a single kprobe program reads.
/// kprobe.multi has no journey-ending variant: the cookie program ends
/// journeys where its cookie says ([`COOKIE_END_SHIFT`](super::COOKIE_END_SHIFT)).
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
    use crate::program::cookie::{
        kprobe_multi_cookie, kprobe_multi_cookie_row, COOKIE_END_SHIFT, COOKIE_REASON_SHIFT,
        COOKIE_SKB_SHIFT,
    };
    use crate::table::ProbeEntry;

    fn shape(skb_pos: u8, nargs: u8) -> ProbeShape {
        ProbeShape {
            skb_pos,
            nargs,
            ..Default::default()
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
        assert_eq!(kprobe_multi_cookie_row(c), 7);
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
