//! Stage 2, probe set: which probes to trace and with which backend.

pub mod compiled;
mod profile;

pub use ipft_abi::{Backend, ProbeKind};
pub use ipft_btf::Probe;
pub use profile::{Profile, ProfileError};

pub use ipft_runtime::select::Filter;
