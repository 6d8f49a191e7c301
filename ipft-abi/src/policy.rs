//! Which backend attaches which probe: one pure function, called by
//! ipft-gen (what to compile in), `ipft` and generated tracers (what to
//! attach on this kernel).
//!
//! Auto prefers start/stop time: kprobe-multi attaches a whole program with
//! one syscall and detaches in about a second; single kprobes come next;
//! fentry is used only where it adds reach (a struct by value before the
//! skb, an skb beyond argument 11), because every fentry trampoline
//! is released on its own behind an RCU-tasks grace period (docs/benchmarks.md).

use std::fmt;

use crate::probe::{Backend, ProbeKind, ProbeShape};
use crate::program::KPROBE_MAX_SKB_POS;

/// What a kernel offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelOffer {
    /// kprobe PMU (CONFIG_KPROBES).
    pub kprobe: bool,
    /// kprobe-multi links (CONFIG_FPROBE).
    pub kprobe_multi: bool,
    /// fentry/fexit trampolines.
    pub fentry: bool,
    /// Arguments an fentry trampoline sees: 6 before Linux 6.6 on x86_64, 12 after.
    pub fentry_max_args: u8,
}

impl KernelOffer {
    /// A kernel of `release` with every backend it can have: what a tracer
    /// generated for another kernel may use.
    pub fn everything(release: Option<&str>) -> KernelOffer {
        KernelOffer {
            kprobe: true,
            kprobe_multi: true,
            fentry: true,
            fentry_max_args: fentry_max_args(release),
        }
    }

    /// Whether the kernel has `b` (BTF tracepoints: always).
    pub fn has(&self, b: Backend) -> bool {
        match b {
            Backend::Kprobe => self.kprobe,
            Backend::KprobeMulti => self.kprobe_multi,
            Backend::Fentry => self.fentry,
            Backend::TpBtf => true,
        }
    }

    /// The kernel without `b` (it was refused at load or attach).
    pub fn without(mut self, b: Backend) -> KernelOffer {
        match b {
            Backend::Kprobe => self.kprobe = false,
            Backend::KprobeMulti => self.kprobe_multi = false,
            Backend::Fentry => self.fentry = false,
            Backend::TpBtf => {}
        }
        self
    }

    /// The function backends it has, in auto's order.
    pub fn function_backends(&self) -> Vec<Backend> {
        AUTO_ORDER.into_iter().filter(|&b| self.has(b)).collect()
    }
}

/// 6 arguments before Linux 6.6, 12 from 6.6 on (unknown: 12).
pub fn fentry_max_args(release: Option<&str>) -> u8 {
    match release.and_then(parse_release) {
        Some(v) if v < (6, 6) => 6,
        _ => 12,
    }
}

/// `6.12.117+deb12-cloud-amd64` -> (6, 12).
pub fn parse_release(r: &str) -> Option<(u32, u32)> {
    let mut it = r.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// What the user asked for with `-b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// The cheapest backend that reaches each probe.
    Auto,
    /// This backend for functions (tracepoints always use tp_btf).
    Only(Backend),
}

/// Auto's preference for functions, best first.
pub const AUTO_ORDER: [Backend; 3] = [Backend::KprobeMulti, Backend::Kprobe, Backend::Fentry];

/// Why a probe is not attached with a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreached {
    /// The kernel cannot attach it by name (inlined, notrace, renamed clone).
    NotAttachable,
    /// The kernel lacks the backend (or refused it).
    Unavailable(Backend),
    /// The probe set has no program for it with this backend.
    NoProgram(Backend),
    /// kprobes read arguments 0..11 (registers, then the stack).
    Register(u8),
    /// A by-value struct before the skb shifts it off its register.
    ByvalBeforeSkb(Backend),
    /// fentry: `...` has no trampoline.
    Variadic,
    /// fentry: structs by value are not traced.
    Byval,
    /// fentry: more arguments than the trampoline sees.
    TooManyArgs {
        /// Arguments of the function.
        nargs: u8,
        /// What this kernel's trampoline sees.
        max: u8,
    },
    /// `-b tp_btf` traces tracepoints only.
    FunctionsNotAsked,
}

impl fmt::Display for Unreached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unreached::NotAttachable => f.write_str("not attachable by name (inlined or notrace)"),
            Unreached::Unavailable(b) => write!(f, "{b} unavailable on this kernel"),
            Unreached::NoProgram(b) => write!(f, "no {b} program for it in this tracer"),
            Unreached::Register(p) => write!(
                f,
                "skb in argument {p}: kprobes read arguments 0..{KPROBE_MAX_SKB_POS}"
            ),
            Unreached::ByvalBeforeSkb(b) => {
                write!(
                    f,
                    "struct passed by value before the skb: {b} cannot find it"
                )
            }
            Unreached::Variadic => f.write_str("variadic: no fentry trampoline"),
            Unreached::Byval => f.write_str("struct passed by value: not traced with fentry"),
            Unreached::TooManyArgs { nargs, max } => {
                write!(f, "{nargs} arguments: fentry sees {max} on this kernel")
            }
            Unreached::FunctionsNotAsked => f.write_str("-b tp_btf traces tracepoints only"),
        }
    }
}

/// Whether `b` can reach a probe of this shape on this kernel, leaving aside
/// whether the probe set has a program for it.
pub fn reach(shape: &ProbeShape, b: Backend, kernel: &KernelOffer) -> Result<(), Unreached> {
    if !b.is_for(shape.kind) {
        return Err(Unreached::NoProgram(b));
    }
    if !kernel.has(b) {
        return Err(Unreached::Unavailable(b));
    }
    match b {
        Backend::TpBtf => Ok(()),
        Backend::Kprobe | Backend::KprobeMulti => {
            if shape.skb_pos > KPROBE_MAX_SKB_POS {
                Err(Unreached::Register(shape.skb_pos))
            } else if shape.byval_before_skb {
                Err(Unreached::ByvalBeforeSkb(b))
            } else {
                Ok(())
            }
        }
        Backend::Fentry => {
            if shape.variadic {
                Err(Unreached::Variadic)
            } else if shape.byval {
                Err(Unreached::Byval)
            } else if shape.nargs > kernel.fentry_max_args {
                Err(Unreached::TooManyArgs {
                    nargs: shape.nargs,
                    max: kernel.fentry_max_args,
                })
            } else {
                Ok(())
            }
        }
    }
}

/// Every backend that reaches a probe on this kernel, in auto's order.
pub fn reaching(shape: &ProbeShape, attachable: bool, kernel: &KernelOffer) -> Vec<Backend> {
    match shape.kind {
        ProbeKind::Tracepoint => vec![Backend::TpBtf],
        ProbeKind::Function if !attachable => vec![],
        ProbeKind::Function => AUTO_ORDER
            .into_iter()
            .filter(|&b| reach(shape, b, kernel).is_ok())
            .collect(),
    }
}

/// The backend for one probe. `offered`: the backends the probe set has a
/// program for this probe with; `attachable`: the kernel can attach the
/// function by name (ignored for tracepoints).
pub fn choose(
    shape: &ProbeShape,
    attachable: bool,
    offered: &[Backend],
    kernel: &KernelOffer,
    asked: Asked,
) -> Result<Backend, Unreached> {
    let try_one = |b: Backend| {
        reach(shape, b, kernel)?;
        match offered.contains(&b) {
            true => Ok(b),
            false => Err(Unreached::NoProgram(b)),
        }
    };
    if shape.kind == ProbeKind::Tracepoint {
        return try_one(Backend::TpBtf);
    }
    if !attachable {
        return Err(Unreached::NotAttachable);
    }
    match asked {
        Asked::Only(Backend::TpBtf) => Err(Unreached::FunctionsNotAsked),
        Asked::Only(b) => try_one(b),
        Asked::Auto => {
            let mut first_err = None;
            for b in AUTO_ORDER {
                match try_one(b) {
                    Ok(b) => return Ok(b),
                    // The first reason from a backend the kernel has says most.
                    Err(e) if kernel.has(b) => {
                        first_err.get_or_insert(e);
                    }
                    Err(_) => {}
                }
            }
            Err(first_err.unwrap_or(Unreached::Unavailable(AUTO_ORDER[0])))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Backend] = &Backend::ALL;

    fn func(skb_pos: u8, nargs: u8) -> ProbeShape {
        ProbeShape {
            kind: ProbeKind::Function,
            skb_pos,
            nargs,
            ..Default::default()
        }
    }

    /// Debian 6.1: kprobe and fentry (6 arguments), no kprobe-multi.
    const K61: KernelOffer = KernelOffer {
        kprobe: true,
        kprobe_multi: false,
        fentry: true,
        fentry_max_args: 6,
    };
    /// Debian 6.12: kprobe-multi too, fentry with 12 arguments.
    const K612: KernelOffer = KernelOffer {
        kprobe: true,
        kprobe_multi: true,
        fentry: true,
        fentry_max_args: 12,
    };
    /// A sandbox: tp_btf only.
    const SANDBOX: KernelOffer = KernelOffer {
        kprobe: false,
        kprobe_multi: false,
        fentry: false,
        fentry_max_args: 12,
    };

    #[test]
    fn auto_on_6_1() {
        let c = |s| choose(&s, true, ALL, &K61, Asked::Auto);
        assert_eq!(c(func(0, 3)), Ok(Backend::Kprobe));
        // More than 6 arguments: kprobe still reads register 0..5.
        assert_eq!(c(func(1, 8)), Ok(Backend::Kprobe));
        // skb beyond the registers: kprobe reads its stack slot, where
        // fentry sees only 6 arguments.
        assert_eq!(c(func(7, 8)), Ok(Backend::Kprobe));
        assert_eq!(
            c(func(12, 13)),
            Err(Unreached::Register(12)),
            "the first backend the kernel has names the reason"
        );
        let mut byval = func(2, 4);
        byval.byval_before_skb = true;
        assert_eq!(c(byval), Ok(Backend::Fentry));
    }

    #[test]
    fn auto_on_6_12() {
        let c = |s| choose(&s, true, ALL, &K612, Asked::Auto);
        assert_eq!(c(func(0, 3)), Ok(Backend::KprobeMulti));
        // skb on the stack: kprobe-multi reads it, no fentry trampoline.
        assert_eq!(c(func(8, 10)), Ok(Backend::KprobeMulti));
        assert_eq!(
            choose(&func(8, 10), true, &[Backend::Kprobe], &K612, Asked::Auto),
            Ok(Backend::Kprobe)
        );
        let mut byval = func(2, 4);
        byval.byval_before_skb = true;
        assert_eq!(c(byval), Ok(Backend::Fentry), "fentry only for reach");
        assert_eq!(
            choose(&func(0, 2), false, ALL, &K612, Asked::Auto),
            Err(Unreached::NotAttachable)
        );
    }

    #[test]
    fn sandbox_keeps_tracepoints() {
        let tp = ProbeShape {
            kind: ProbeKind::Tracepoint,
            ..Default::default()
        };
        assert_eq!(
            choose(&tp, false, ALL, &SANDBOX, Asked::Auto),
            Ok(Backend::TpBtf)
        );
        assert_eq!(
            choose(&func(0, 1), true, ALL, &SANDBOX, Asked::Auto),
            Err(Unreached::Unavailable(Backend::KprobeMulti))
        );
        assert_eq!(
            choose(
                &func(0, 1),
                true,
                ALL,
                &SANDBOX,
                Asked::Only(Backend::Fentry)
            ),
            Err(Unreached::Unavailable(Backend::Fentry))
        );
    }

    #[test]
    fn asked_backend_is_the_only_one() {
        let s = func(0, 3);
        assert_eq!(
            choose(&s, true, ALL, &K612, Asked::Only(Backend::Fentry)),
            Ok(Backend::Fentry)
        );
        assert_eq!(
            choose(
                &s,
                true,
                &[Backend::Kprobe],
                &K612,
                Asked::Only(Backend::Fentry)
            ),
            Err(Unreached::NoProgram(Backend::Fentry))
        );
        assert_eq!(
            choose(&s, true, ALL, &K612, Asked::Only(Backend::TpBtf)),
            Err(Unreached::FunctionsNotAsked)
        );
        assert_eq!(
            choose(&func(1, 13), true, ALL, &K612, Asked::Only(Backend::Fentry)),
            Err(Unreached::TooManyArgs { nargs: 13, max: 12 })
        );
    }

    #[test]
    fn releases() {
        assert_eq!(parse_release("6.12.117+deb12-cloud-amd64"), Some((6, 12)));
        assert_eq!(fentry_max_args(Some("6.1.0-57-cloud-amd64")), 6);
        assert_eq!(fentry_max_args(Some("6.6.1")), 12);
        assert_eq!(fentry_max_args(None), 12);
    }

    #[test]
    fn reaching_lists_auto_order() {
        assert_eq!(
            reaching(&func(0, 3), true, &K612),
            vec![Backend::KprobeMulti, Backend::Kprobe, Backend::Fentry]
        );
        assert!(reaching(&func(0, 3), false, &K612).is_empty());
    }
}
