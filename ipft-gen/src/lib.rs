//! ipft-gen: from a kernel's BTF to a tracer built for exactly one probe set.
//!
//! ```text
//!  BTF (running kernel | file | dir)      ipft_btf::KernelBtf
//!     │  btf::scan: every FUNC / btf_trace_ typedef with a struct sk_buff *
//!     ▼
//!  probes + profile + -r/--module-regex  probe::{Profile, Filter}
//!     │  backends per probe: ipft_abi::policy
//!     ▼
//!  codegen::Plan ──► table::build ──► tracer.bpf.c (handlebars) + probe_set.rs (quote)
//!     │  compile: bpftool vmlinux.h, clang -target bpf, cargo
//!     ▼
//!  ipft-<profile> binary (links ipft-runtime, embeds object and table)
//! ```
#![deny(missing_docs)]

pub mod bench;
pub mod codegen;
pub mod compile;
pub mod discover;
pub mod extension;
pub mod fleet;
pub mod probe;
pub mod table;

pub use ipft_btf as btf;
pub use ipft_btf::Probe;
pub use probe::{Backend, ProbeKind};
