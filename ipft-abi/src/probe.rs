//! What a probe is, as BTF describes it, and how it can be attached.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A function or a BTF tracepoint.
#[derive(
    Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// A kernel function (FUNC in BTF).
    #[default]
    Function,
    /// A BTF tracepoint (`btf_trace_<name>` typedef).
    Tracepoint,
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeKind::Function => "function",
            ProbeKind::Tracepoint => "tracepoint",
        })
    }
}

/// How a probe is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Backend {
    /// One kprobe per function; one program per skb position, cookie = probe index.
    #[serde(rename = "kprobe")]
    Kprobe,
    /// One kprobe-multi link per program, cookies = probe indexes.
    #[serde(rename = "kprobe-multi")]
    KprobeMulti,
    /// fentry (and fexit for returns): one trampoline per function.
    #[serde(rename = "fentry")]
    Fentry,
    /// BTF tracepoint.
    #[serde(rename = "tp_btf")]
    TpBtf,
}

impl Backend {
    /// Every backend.
    pub const ALL: [Backend; 4] = [
        Backend::KprobeMulti,
        Backend::Kprobe,
        Backend::Fentry,
        Backend::TpBtf,
    ];
    /// The function backends.
    pub const FUNCTIONS: [Backend; 3] = [Backend::KprobeMulti, Backend::Kprobe, Backend::Fentry];

    /// Name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Kprobe => "kprobe",
            Backend::KprobeMulti => "kprobe-multi",
            Backend::Fentry => "fentry",
            Backend::TpBtf => "tp_btf",
        }
    }

    /// Whether the backend attaches functions (as opposed to tracepoints).
    pub fn for_functions(self) -> bool {
        self != Backend::TpBtf
    }

    /// The backend for a probe kind's only choice (tracepoints: tp_btf).
    pub fn is_for(self, kind: ProbeKind) -> bool {
        self.for_functions() == (kind == ProbeKind::Function)
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend '{0}' (kprobe, kprobe-multi, fentry, tp_btf)")]
pub struct UnknownBackend(pub String);

impl FromStr for Backend {
    type Err = UnknownBackend;
    fn from_str(s: &str) -> Result<Backend, UnknownBackend> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| UnknownBackend(s.to_string()))
    }
}

/// What the prototype of a probe says about how it can be reached.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProbeShape {
    /// Function or tracepoint.
    pub kind: ProbeKind,
    /// 0-based position of the traced skb argument (tracepoints: not
    /// counting the leading `void *`).
    pub skb_pos: u8,
    /// Position of an `enum skb_drop_reason` argument.
    pub reason_pos: Option<u8>,
    /// Number of named arguments.
    pub nargs: u8,
    /// Takes `...`.
    pub variadic: bool,
    /// Takes a struct or union by value.
    pub byval: bool,
    /// A by-value struct comes before the skb, shifting it off its register.
    pub byval_before_skb: bool,
}
