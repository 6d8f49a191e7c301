//! ipft-gen: from a kernel's BTF to a tracer built for exactly one probe set.
//!
//! ```text
//!  BTF (running kernel | file | dir)      btf::KernelBtf
//!     │  btf::scan: every FUNC / btf_trace_ typedef with a struct sk_buff *
//!     ▼
//!  probes + profile + -r/--module-regex  probe::{Profile, Filter, KernelSymbols}
//!     │  backend chosen per kernel
//!     ▼
//!  codegen::Plan ──► tracer.bpf.c (handlebars) + probe_set.rs (quote)
//!     │  compile: bpftool vmlinux.h, clang -target bpf, cargo
//!     ▼
//!  ipft-<profile> binary (links ipft-runtime, embeds object and table)
//! ```
#![deny(missing_docs)]

pub mod btf;
pub mod codegen;
pub mod compile;
pub mod discover;
pub mod probe;
pub mod table;

pub use probe::{Backend, Probe, ProbeKind};
