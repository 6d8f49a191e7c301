//! SIGINT, SIGTERM and SIGHUP, from start to exit: the first stops
//! attaching or tracing (whichever is under way); a later one while links
//! are being released says what is still being waited for.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::say;

/// Shared with the signal thread.
#[derive(Clone, Default)]
pub struct Signals {
    /// A stop was asked for.
    pub stop: Arc<AtomicBool>,
    /// Links still being released (set during detach).
    pub releasing: Arc<AtomicUsize>,
}

impl Signals {
    /// Install the handlers (a thread reads the signals).
    pub fn install() -> std::io::Result<Signals> {
        let s = Signals::default();
        let mut it = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        let t = s.clone();
        std::thread::Builder::new()
            .name("ipft-signals".into())
            .spawn(move || {
                for _ in it.forever() {
                    if t.stop.swap(true, Ordering::SeqCst) {
                        let n = t.releasing.load(Ordering::SeqCst);
                        if n > 0 {
                            say!(
                                "ipft: still releasing {n} links (each fentry trampoline waits for an \
                                 RCU-tasks grace period); SIGKILL would leave nothing attached either"
                            );
                        }
                    }
                }
            })?;
        Ok(s)
    }

    /// Whether a stop was asked for.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}
