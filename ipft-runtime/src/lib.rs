//! ipft-runtime: what every ipft tracer links.
//!
//! ```text
//!  ProbeSetSpec (object bytes + probe table)   compiled in by ipft-macros,
//!     │                                        or discovered by `ipft`
//!     ▼
//!  load::Session::open   rodata config, autoload off for unused programs
//!     │  attach          tp_btf / fentry / fexit / kprobe / kprobe-multi
//!     ▼
//!  trace::run            ring buffer -> Event::decode -> Aggregator -> Sink
//!     │                  (text or JSON), loss counters once a second
//!     ▼
//!  drop(Session)         every link detached, fds closed
//! ```
#![deny(missing_docs)]

pub mod aggregate;
pub mod args;
pub mod bench;
pub mod event;
pub mod extension;
pub mod generic;
pub mod load;
pub mod output;
pub mod trace;

pub use event::Event;
pub use ipft_gen::probe::{Backend, ProbeKind};
pub use ipft_gen::table::{KernelIdentity, ObjectMode, ProbeEntry};

/// A probe set compiled into a tracer: the BPF object and its table.
pub struct ProbeSetSpec {
    /// The BPF object (ELF).
    pub object: &'static [u8],
    /// Probe table; index = probe id.
    pub probes: &'static [ProbeEntry],
    /// Kernel it was generated for.
    pub identity: KernelIdentity,
    /// How typed programs find their probe id.
    pub mode: ObjectMode,
}

/// The generic object built into `ipft` (see build.rs).
pub static GENERIC_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/generic.bpf.o"));

/// Entry point of a generated tracer binary: parse flags, trace, return the
/// exit code (0 ok, 1 events lost with --strict-loss, 2 bad input or setup failure).
pub fn tracer_main(spec: &'static ProbeSetSpec) -> i32 {
    use clap::Parser;
    let args = args::IpftArgs::parse();
    trace::main_with(args, trace::Source::Compiled(spec))
}
