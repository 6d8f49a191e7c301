//! A traceable place in the kernel, as the BTF scan finds it.

use ipft_abi::{Backend, ProbeKind, ProbeShape};
use serde::{Deserialize, Serialize};

/// One traceable place in the kernel.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

    /// What the contract needs of its prototype.
    pub fn shape(&self) -> ProbeShape {
        ProbeShape {
            kind: self.kind,
            skb_pos: self.skb_pos(),
            reason_pos: self.drop_reason_pos,
            nargs: self.nargs,
            variadic: self.variadic,
            byval: self.byval,
            byval_before_skb: self.byval_before_skb,
        }
    }
}
