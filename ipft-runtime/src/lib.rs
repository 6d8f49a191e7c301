//! ipft-runtime: what every ipft tracer links. It depends on the contract
//! (ipft-abi), the BTF reader (ipft-btf) and libbpf-rs, never on the
//! generator.
//!
//! ```text
//!  flags        IpftArgs -> RunConfig (validated, nothing touched yet)
//!  filter       pcap-filter expressions: libpcap -> cBPF -> C or eBPF
//!  kernel       kallsyms, feature probes -> KernelOffer; drop-reason names
//!  compat       compiled probes held against the running kernel's BTF
//!  select       policy per probe -> rows of the table to attach
//!  attach       Session: load, rodata config, attach; drop = detach
//!  event_loop   ring buffer -> journey ends -> Aggregator -> Sink
//!  details      what follows an event header: payload, meta, tuple, stack, bytes
//!  report       summary, listing; output/ the text, JSON and pcapng sinks
//!  fleet        which object of a multi-kernel tracer fits the running kernel
//!  tracer       a generated tracer's main, from its compiled table
//! ```
#![deny(missing_docs)]

pub mod aggregate;
pub mod attach;
pub mod compat;
pub mod details;
pub mod error;
pub mod event_loop;
pub mod extension;
pub mod filter;
pub mod flags;
pub mod fleet;
pub mod journey;
pub mod kernel;
pub mod output;
pub mod report;
pub mod select;
pub mod signals;
pub mod tracer;

pub use ipft_abi::{
    Backend, Config, Event, KernelIdentity, ProbeEntry, ProbeKind, ProbeShape, ProgramId, TypedKind,
};
pub use tracer::tracer_main;

/// A probe set compiled into a tracer: the BPF object and its table.
pub struct ProbeSetSpec {
    /// The BPF object (ELF).
    pub object: &'static [u8],
    /// Probe table; index = probe id.
    pub probes: &'static [ProbeEntry],
    /// Kernel it was generated for.
    pub identity: KernelIdentity,
    /// Profile it was generated with.
    pub profile: &'static str,
    /// The pcap-filter expression compiled into its programs
    /// (`ipft-gen --filter`): it selects packets, so `-m` is optional.
    pub filter: Option<&'static str>,
    /// The decoder of the extension linked into `object` at generation time
    /// (`ipft-gen --extension`), if any.
    pub extension: Option<fn() -> Box<dyn extension::PayloadDecoder>>,
}
