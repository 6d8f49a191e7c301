//! Why a run failed. Every variant is bad input or a set-up failure: one
//! line on stderr and exit 2, after everything attached was detached.

use crate::attach::LoadError;
use crate::event_loop::LoopError;
use crate::flags::FlagError;

/// Exit code for bad input and set-up failures, as ipftrace2.
pub const EXIT_USAGE: i32 = 2;

/// A run that could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The flags are wrong.
    #[error(transparent)]
    Flags(#[from] FlagError),
    /// Not root.
    #[error("must be run as root (loading BPF programs needs CAP_BPF and CAP_PERFMON)")]
    NotRoot,
    /// Nothing to trace, or a flag this tracer cannot honour.
    #[error("{0}")]
    Selection(String),
    /// /proc/kallsyms unreadable.
    #[error("/proc/kallsyms: {0}")]
    Kallsyms(#[source] std::io::Error),
    /// Loading or attaching failed as a whole.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The trace loop failed.
    #[error(transparent)]
    Loop(#[from] LoopError),
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// An extension could not be compiled, read or loaded.
    #[error("extension {0}")]
    Extension(String),
    /// Writing a listing failed.
    #[error("writing the listing: {0}")]
    List(#[source] std::io::Error),
}

impl RunError {
    /// The message, its causes folded in, on one line (a verifier log tail
    /// keeps its lines).
    pub fn message(&self) -> String {
        let mut out = self.to_string();
        let mut cur = std::error::Error::source(self);
        while let Some(c) = cur {
            let t = c.to_string();
            if !out.contains(&t) {
                out.push_str(": ");
                out.push_str(&t);
            }
            cur = c.source();
        }
        out
    }
}

/// Map a run's result to its exit code, printing a failure.
pub fn exit_code(r: Result<i32, RunError>) -> i32 {
    match r {
        Ok(code) => code,
        Err(RunError::List(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        // Asked to stop while attaching: a clean end.
        Err(e @ RunError::Load(LoadError::Interrupted)) => {
            crate::say!("ipft: {e}");
            0
        }
        Err(e) => {
            crate::say!("ipft: {}", e.message());
            EXIT_USAGE
        }
    }
}

/// Refuse to go on unless root.
pub fn require_root() -> Result<(), RunError> {
    // SAFETY: geteuid has no preconditions.
    match unsafe { libc::geteuid() } {
        0 => Ok(()),
        _ => Err(RunError::NotRoot),
    }
}
