//! A tracer on a kernel it was not generated for: each compiled probe is
//! held against the running kernel's BTF before anything attaches. CO-RE
//! relocations take care of struct layouts; what they cannot fix is a
//! function that is gone or takes its skb elsewhere, and such a probe is
//! never attached.

use std::collections::HashMap;
use std::fmt;

use ipft_abi::{ProbeEntry, ProbeKind};
use ipft_btf::{KernelBtf, Probe};

/// Why a compiled probe does not fit the running kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// No such function or tracepoint taking an skb.
    Missing,
    /// The skb is another argument now.
    SkbMoved {
        /// Where the tracer reads it.
        compiled: u8,
        /// Where the kernel passes it.
        running: u8,
    },
    /// The number of arguments changed.
    Nargs {
        /// Compiled.
        compiled: u8,
        /// Running.
        running: u8,
    },
    /// The drop-reason argument moved or went.
    Reason {
        /// Compiled.
        compiled: Option<u8>,
        /// Running.
        running: Option<u8>,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Missing => f.write_str("not in the running kernel's BTF"),
            Mismatch::SkbMoved { compiled, running } => write!(
                f,
                "skb moved from argument {compiled} to {running} in the running kernel"
            ),
            Mismatch::Nargs { compiled, running } => write!(
                f,
                "{running} arguments in the running kernel, {compiled} when generated"
            ),
            Mismatch::Reason { compiled, running } => write!(
                f,
                "drop reason in argument {running:?} in the running kernel, {compiled:?} when generated"
            ),
        }
    }
}

/// The running kernel's skb probes by (module, kind, name).
pub struct RunningProbes(HashMap<(Option<String>, ProbeKind, String), Probe>);

impl RunningProbes {
    /// Scan a kernel's BTF (vmlinux and modules).
    pub fn scan(k: &KernelBtf) -> Result<RunningProbes, ipft_btf::BtfError> {
        let (probes, _) = ipft_btf::scan(k)?;
        Ok(RunningProbes(
            probes
                .into_iter()
                .map(|p| ((p.module.clone(), p.kind, p.name.clone()), p))
                .collect(),
        ))
    }

    /// How a compiled row fits; `None` when it does.
    pub fn check(&self, e: &ProbeEntry) -> Option<Mismatch> {
        let key = (
            e.module.as_deref().map(str::to_string),
            e.kind(),
            e.name.to_string(),
        );
        let Some(p) = self.0.get(&key) else {
            return Some(Mismatch::Missing);
        };
        let s = &e.shape;
        if p.skb_pos() != s.skb_pos {
            Some(Mismatch::SkbMoved {
                compiled: s.skb_pos,
                running: p.skb_pos(),
            })
        } else if p.nargs != s.nargs {
            Some(Mismatch::Nargs {
                compiled: s.nargs,
                running: p.nargs,
            })
        } else if p.drop_reason_pos != s.reason_pos {
            Some(Mismatch::Reason {
                compiled: s.reason_pos,
                running: p.drop_reason_pos,
            })
        } else {
            None
        }
    }
}

/// Every row's verdict, for a table.
pub fn check_table(running: &RunningProbes, table: &[ProbeEntry]) -> Vec<Option<Mismatch>> {
    table.iter().map(|e| running.check(e)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipft_abi::{Backend, ProbeShape, ProgramId, TypedKind};
    use std::borrow::Cow;
    use std::path::Path;

    fn mini() -> RunningProbes {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/btf/mini.btf");
        RunningProbes::scan(&KernelBtf::from_file(&path).unwrap()).unwrap()
    }

    fn row(name: &'static str, skb_pos: u8, nargs: u8) -> ProbeEntry {
        ProbeEntry {
            name: Cow::Borrowed(name),
            module: None,
            shape: ProbeShape {
                kind: ProbeKind::Function,
                skb_pos,
                nargs,
                ..Default::default()
            },
            backend: Backend::Kprobe,
            btf_id: 0,
            program: ProgramId::Typed {
                kind: TypedKind::Entry,
                row: 0,
            },
            return_program: None,
            ends_journey: false,
            hidden: false,
        }
    }

    #[test]
    fn a_moved_skb_is_refused() {
        let k = mini();
        // ip_finish_output(net, sk, skb) in the fixture.
        assert_eq!(k.check(&row("ip_finish_output", 2, 3)), None);
        assert_eq!(
            k.check(&row("ip_finish_output", 0, 3)),
            Some(Mismatch::SkbMoved {
                compiled: 0,
                running: 2
            })
        );
        assert_eq!(
            k.check(&row("ip_finish_output", 2, 4)),
            Some(Mismatch::Nargs {
                compiled: 4,
                running: 3
            })
        );
        assert_eq!(
            k.check(&row("gone_in_this_kernel", 0, 1)),
            Some(Mismatch::Missing)
        );
        let msg = Mismatch::SkbMoved {
            compiled: 0,
            running: 2,
        }
        .to_string();
        assert!(msg.contains("skb moved from argument 0 to 2"));
    }
}
