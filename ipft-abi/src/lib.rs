//! ipft-abi: what a generated BPF object and the runtime that loads it agree
//! on. ipft-gen renders C and Rust from these definitions; ipft-runtime reads
//! tables and events with them. Nothing here touches BPF or templates.
//!
//! ```text
//!  probe      ProbeKind, Backend, ProbeShape (what BTF says of a probe)
//!  policy     which backend reaches a probe, and which one to use
//!  program    ProgramId: the one name of every BPF program
//!  layout     struct ipft_event / struct ipft_config, C rendered from Rust
//!  payload    extension payload formats (BTF decl tags) and their rendering
//!  sections   what may follow an event header: payload, meta, tuple, stack, packet bytes
//!  table      ProbeEntry rows, KernelIdentity, where a journey ends
//! ```
#![deny(missing_docs)]

pub mod layout;
pub mod payload;
pub mod policy;
pub mod probe;
pub mod program;
pub mod sections;
pub mod table;

pub use layout::{event_flags, Config, Event, Layout};
pub use policy::{Asked, KernelOffer, Unreached};
pub use probe::{Backend, ProbeKind, ProbeShape};
pub use program::{ProgramId, TypedKind};
pub use sections::Sections;
pub use table::{KernelIdentity, ProbeEntry};
