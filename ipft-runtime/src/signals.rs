//! SIGINT, SIGTERM and SIGHUP, from start to exit: the first stops
//! attaching or tracing (whichever is under way); a later one while links
//! are being released says what is still being waited for.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::say;

/// Shared with the signal thread.
#[derive(Clone, Default)]
pub struct Signals {
    /// A stop was asked for.
    pub stop: Arc<AtomicBool>,
    /// Links still being released (set during detach).
    pub releasing: Arc<AtomicUsize>,
    /// An eventfd the signal thread writes on a stop, so that a wait for
    /// events ends at once rather than at its timeout.
    wake: Option<Arc<OwnedFd>>,
}

impl Signals {
    /// Install the handlers (a thread reads the signals).
    pub fn install() -> std::io::Result<Signals> {
        // SAFETY: eventfd returns a new descriptor or -1, checked here.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let s = Signals {
            wake: Some(Arc::new(unsafe { OwnedFd::from_raw_fd(fd) })),
            ..Signals::default()
        };
        let mut it = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        let t = s.clone();
        std::thread::Builder::new()
            .name("ipft-signals".into())
            .spawn(move || {
                for _ in it.forever() {
                    let again = t.stop.swap(true, Ordering::SeqCst);
                    if let Some(w) = &t.wake {
                        let one = 1u64.to_ne_bytes();
                        // SAFETY: writes 8 bytes from a live buffer to our eventfd.
                        unsafe { libc::write(w.as_raw_fd(), one.as_ptr().cast(), one.len()) };
                    }
                    if again {
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

    /// Wait until `fd` is readable, a stop is asked for, or `timeout`.
    pub fn wait_readable(&self, fd: RawFd, timeout: Duration) {
        let mut fds = [
            libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.wake.as_ref().map_or(-1, |w| w.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: two live pollfds; a negative fd is ignored by poll(2).
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    }
}
