//! Expedited RCU grace periods while perf kprobes are released.
//!
//! Releasing a perf kprobe waits for two grace periods under the kernel's
//! `event_mutex` (Linux 6.1: `perf_trace_event_unreg`), so with hundreds of
//! kprobes the waits add up however many threads release them: on 6.1 they
//! are half of profile all's stop. `/sys/kernel/rcu_expedited` makes every
//! grace period expedited, which halves that stop (35.5 s -> 17.8 s). The
//! knob is global, so it is raised only for the release, only from 0, by
//! one process at a time (a lock file beside the discovery snapshot), and
//! put back on every exit that runs destructors. The lock file holds the
//! value to put back while the knob is raised, so what a holder that was
//! killed left raised is put back by the next stop.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const KNOB: &str = "/sys/kernel/rcu_expedited";
const LOCK: &str = "/run/ipft/rcu_expedited";

/// Whether releasing `kprobes` perf kprobe links is worth a global knob:
/// each costs two grace periods (~20 ms under the 6.1 lab's emulator), so
/// below 16 the whole wait is a fraction of a second.
pub fn worth_expediting(kprobes: usize) -> bool {
    kprobes >= 16
}

/// Grace periods stay expedited while this lives.
pub struct Expedited {
    knob: PathBuf,
    lock: File,
    original: String,
}

impl Expedited {
    /// Raise the knob, unless `IPFT_RCU_EXPEDITE=off`, another ipft holds it,
    /// it is already raised, or the system does not let us.
    pub fn raise() -> Option<Expedited> {
        if std::env::var_os("IPFT_RCU_EXPEDITE").is_some_and(|v| v == "off") {
            return None;
        }
        Self::raise_at(Path::new(KNOB), Path::new(LOCK))
    }

    /// Put back what a holder that was killed left raised, if one was;
    /// for stops that do not raise the knob themselves.
    pub fn repair() {
        let _ = Self::repair_at(Path::new(KNOB), Path::new(LOCK));
    }

    fn repair_at(knob: &Path, lock_path: &Path) -> Option<()> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(lock_path)
            .ok()?;
        let (lock, left) = locked(file)?;
        let left = left.trim();
        if !left.is_empty() {
            std::fs::write(knob, left).ok()?;
            lock.set_len(0).ok()?;
        }
        Some(())
    }

    fn raise_at(knob: &Path, lock_path: &Path) -> Option<Expedited> {
        if let Some(dir) = lock_path.parent() {
            let _ = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir);
        }
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(lock_path)
            .ok()?;
        let (mut lock, left) = locked(lock)?;
        // A value left behind is what a killed holder raised the knob from.
        let original = match left.trim() {
            "" => std::fs::read_to_string(knob).ok()?.trim().to_string(),
            v => v.to_string(),
        };
        if original != "0" {
            return None;
        }
        lock.set_len(0).ok()?;
        lock.rewind().ok()?;
        lock.write_all(b"0\n").ok()?;
        if std::fs::write(knob, "1").is_err() {
            let _ = lock.set_len(0);
            return None;
        }
        Some(Expedited {
            knob: knob.to_path_buf(),
            lock,
            original,
        })
    }
}

/// `file`, locked for this process alone, and the value a killed holder
/// left in it (empty if none); none while another ipft holds it (it is
/// releasing its kprobes).
fn locked(mut file: File) -> Option<(File, String)> {
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return None;
    }
    let mut left = String::new();
    file.read_to_string(&mut left).ok()?;
    Some((file, left))
}

impl Drop for Expedited {
    fn drop(&mut self) {
        if std::fs::write(&self.knob, &self.original).is_ok() {
            let _ = self.lock.set_len(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A knob and a lock file in a directory of their own, removed on drop.
    struct Files {
        dir: PathBuf,
        knob: PathBuf,
        lock: PathBuf,
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn files(knob: &str, lock: Option<&str>) -> Files {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("ipft-expedite-{}-{n}", std::process::id()));
        let f = Files {
            knob: dir.join("knob"),
            lock: dir.join("run/lock"),
            dir,
        };
        std::fs::create_dir_all(&f.dir).unwrap();
        std::fs::write(&f.knob, knob).unwrap();
        if let Some(v) = lock {
            std::fs::create_dir_all(f.lock.parent().unwrap()).unwrap();
            std::fs::write(&f.lock, v).unwrap();
        }
        f
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn raised_from_zero_and_put_back() {
        let f = files("0\n", None);
        let e = Expedited::raise_at(&f.knob, &f.lock).expect("raised");
        assert_eq!(read(&f.knob), "1");
        assert_eq!(read(&f.lock), "0\n");
        drop(e);
        assert_eq!(read(&f.knob), "0");
        assert_eq!(read(&f.lock), "");
    }

    #[test]
    fn left_raised_by_someone_else() {
        let f = files("1\n", None);
        assert!(Expedited::raise_at(&f.knob, &f.lock).is_none());
        assert_eq!(read(&f.knob), "1\n");
    }

    #[test]
    fn a_killed_holder_is_repaired() {
        let f = files("1\n", Some("0\n"));
        let e = Expedited::raise_at(&f.knob, &f.lock).expect("raised");
        drop(e);
        assert_eq!(read(&f.knob), "0");
        assert_eq!(read(&f.lock), "");
    }

    #[test]
    fn repaired_without_raising() {
        let f = files("1\n", Some("0\n"));
        Expedited::repair_at(&f.knob, &f.lock).expect("repaired");
        assert_eq!(read(&f.knob), "0");
        assert_eq!(read(&f.lock), "");
    }

    #[test]
    fn a_live_holder_is_left_alone() {
        let f = files("0\n", None);
        let held = Expedited::raise_at(&f.knob, &f.lock).expect("raised");
        assert!(Expedited::raise_at(&f.knob, &f.lock).is_none());
        assert!(Expedited::repair_at(&f.knob, &f.lock).is_none());
        assert_eq!(read(&f.knob), "1");
        drop(held);
        assert_eq!(read(&f.knob), "0");
    }

    #[test]
    fn policy() {
        assert!(!worth_expediting(0));
        assert!(!worth_expediting(15));
        assert!(worth_expediting(16));
    }
}
