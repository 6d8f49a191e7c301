//! Stage 2, probe set: which probes to trace and with which backend.

pub mod availability;
pub mod feature;
mod profile;

pub use availability::{Availability, KernelSymbols, KPROBE_MAX_REG_ARGS};
pub use profile::{Profile, ProfileError};

use std::fmt;

use regex::Regex;
use serde::Serialize;

/// A function or a BTF tracepoint.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Backend {
    /// One kprobe per function; one program per skb position, cookie = probe index.
    #[serde(rename = "kprobe")]
    Kprobe,
    /// One kprobe-multi link per skb position, cookies = probe indexes.
    #[serde(rename = "kprobe-multi")]
    KprobeMulti,
    /// fentry (and fexit for returns): one typed program per function.
    #[serde(rename = "fentry")]
    Fentry,
    /// BTF tracepoint: one typed program per tracepoint.
    #[serde(rename = "tp_btf")]
    TpBtf,
}

impl Backend {
    /// All backends, fastest function backend first.
    pub const ALL: [Backend; 4] = [
        Backend::Fentry,
        Backend::KprobeMulti,
        Backend::Kprobe,
        Backend::TpBtf,
    ];

    /// Name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Kprobe => "kprobe",
            Backend::KprobeMulti => "kprobe-multi",
            Backend::Fentry => "fentry",
            Backend::TpBtf => "tp_btf",
        }
    }

    /// Parse a command-line name.
    pub fn parse(s: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.name() == s)
    }

    /// Whether the backend attaches functions (as opposed to tracepoints).
    pub fn for_functions(self) -> bool {
        self != Backend::TpBtf
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One traceable place in the kernel.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// Function or tracepoint name as in BTF.
    pub name: String,
    /// Module, `None` for vmlinux.
    pub module: Option<String>,
    /// Function or tracepoint.
    pub kind: ProbeKind,
    /// 0-based positions of every `struct sk_buff *` argument (tracepoints:
    /// not counting the leading `void *`).
    pub skb_positions: Vec<u8>,
    /// Number of named arguments.
    pub nargs: u8,
    /// Takes `...`.
    pub variadic: bool,
    /// Takes a struct or union by value.
    pub byval: bool,
    /// A by-value struct comes before the skb, shifting it off its register.
    #[serde(skip)]
    pub byval_before_skb: bool,
    /// Position of an `enum skb_drop_reason` argument, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop_reason_pos: Option<u8>,
    /// BTF type id of the FUNC or of the `btf_trace_` typedef.
    #[serde(skip)]
    pub btf_id: u32,
    /// Backends that can reach it on the target kernel.
    pub backends: Vec<Backend>,
}

impl Probe {
    /// The first skb argument: the one traced.
    pub fn skb_pos(&self) -> u8 {
        self.skb_positions[0]
    }

    /// `module:name` or `name`.
    pub fn display_name(&self) -> String {
        match &self.module {
            Some(m) => format!("{m}:{}", self.name),
            None => self.name.clone(),
        }
    }

    /// Whether this probe ends an skb's life (a journey ends here).
    pub fn frees_skb(&self) -> bool {
        is_free_function(&self.name)
    }
}

/// Functions and tracepoints at which an skb is released.
pub fn is_free_function(name: &str) -> bool {
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

/// Selection on top of a profile: the `-r` and `--module-regex` flags.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Probe names must match this.
    pub regex: Option<Regex>,
    /// Module names must match this (`vmlinux` for the kernel image).
    pub module_regex: Option<Regex>,
}

impl Filter {
    /// From the `-r` and `--module-regex` flags; the error names the flag.
    pub fn from_flags(regex: Option<&str>, module_regex: Option<&str>) -> Result<Filter, String> {
        Ok(Filter {
            regex: regex.map(|r| compile_regex("-r", r)).transpose()?,
            module_regex: module_regex
                .map(|r| compile_regex("--module-regex", r))
                .transpose()?,
        })
    }

    /// Whether a probe passes the filter.
    pub fn keeps(&self, p: &Probe) -> bool {
        let module = p.module.as_deref().unwrap_or("vmlinux");
        self.regex.as_ref().is_none_or(|r| r.is_match(&p.name))
            && self
                .module_regex
                .as_ref()
                .is_none_or(|r| r.is_match(module))
    }
}

/// Compile a user regex with a message naming the flag.
pub fn compile_regex(flag: &str, re: &str) -> Result<Regex, String> {
    Regex::new(re).map_err(|e| {
        let first = e.to_string();
        let last = first.lines().last().unwrap_or("").trim().to_string();
        format!("invalid regex for {flag} '{re}': {last}")
    })
}

/// The probes a tracer is built for, with their attach backend, in a fixed
/// order: the index of a probe is its id in events.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeSet {
    /// Profile name.
    pub profile: String,
    /// Function backend chosen (tracepoints always use tp_btf).
    pub function_backend: Option<Backend>,
    /// The probes, functions then tracepoints, sorted by name.
    pub probes: Vec<Probe>,
}

impl ProbeSet {
    /// Select probes from a scan: the profile, then the filter.
    pub fn select(
        all: &[Probe],
        profile: &Profile,
        filter: &Filter,
        release: Option<&str>,
    ) -> Vec<Probe> {
        all.iter()
            .filter(|p| profile.keeps(p, release) && filter.keeps(p))
            .cloned()
            .collect()
    }
}
