//! `--filter-netns`, `--filter-ifname`, `--filter-pid`: which packets give a
//! first event, besides the mark. Checked here, applied in BPF (rodata).

use std::path::Path;

use super::{bad, FlagError};

/// The filters beside the mark; zero / `None` is "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketFilters {
    /// Inode of the network namespace of skb->dev.
    pub netns: u32,
    /// skb->dev->name.
    pub ifname: Option<String>,
    /// Thread group id of the current task.
    pub pid: u32,
}

/// `NS_GET_NSTYPE` (linux/nsfs.h): `_IO(0xb7, 0x3)`.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

impl PacketFilters {
    /// From the flags; a bad value is one line naming the flag.
    pub fn from_flags(
        netns: Option<&str>,
        ifname: Option<&str>,
        pid: Option<&str>,
    ) -> Result<PacketFilters, FlagError> {
        Ok(PacketFilters {
            netns: netns.map(netns_inode).transpose()?.unwrap_or(0),
            ifname: ifname.map(ifname_ok).transpose()?,
            pid: pid.map(pid_ok).transpose()?.unwrap_or(0),
        })
    }
}

/// A network namespace: an inode number, or a path whose inode it is (the
/// file must be a network namespace: asked with NS_GET_NSTYPE).
fn netns_inode(v: &str) -> Result<u32, FlagError> {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return match v.parse::<u32>() {
            Ok(0) | Err(_) => Err(bad(format!(
                "--filter-netns {v}: want a namespace inode from 1 to 4294967295, or a path"
            ))),
            Ok(n) => Ok(n),
        };
    }
    use std::os::unix::fs::MetadataExt;
    let path = Path::new(v);
    let file = std::fs::File::open(path)
        .map_err(|e| bad(format!("--filter-netns {v}: {}", io_text(&e))))?;
    // SAFETY: ioctl on a file we own, no argument.
    let t = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&file), NS_GET_NSTYPE) };
    if t < 0 {
        return Err(bad(format!(
            "--filter-netns {v}: not a namespace file (want /var/run/netns/NAME or /proc/PID/ns/net)"
        )));
    }
    if t != libc::CLONE_NEWNET {
        return Err(bad(format!("--filter-netns {v}: not a network namespace")));
    }
    let ino = file
        .metadata()
        .map_err(|e| bad(format!("--filter-netns {v}: {}", io_text(&e))))?
        .ino();
    u32::try_from(ino).map_err(|_| bad(format!("--filter-netns {v}: inode {ino} out of range")))
}

/// What Linux accepts as a device name (dev_valid_name): 1 to 15 bytes,
/// not `.` or `..`, no `/`, `:` or white space.
fn ifname_ok(v: &str) -> Result<String, FlagError> {
    if v.is_empty() || v.len() > 15 {
        return Err(bad(format!(
            "--filter-ifname '{v}': want a device name of 1 to 15 bytes"
        )));
    }
    if v == "." || v == ".." || v.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Err(bad(format!(
            "--filter-ifname '{v}': not a valid device name"
        )));
    }
    Ok(v.to_string())
}

fn pid_ok(v: &str) -> Result<u32, FlagError> {
    let pid = match v.parse::<u32>() {
        Ok(p) if p > 0 && p <= i32::MAX as u32 => p,
        _ => return Err(bad(format!("--filter-pid {v}: want a process id > 0"))),
    };
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(bad(format!("--filter-pid {pid}: no such process")));
    }
    Ok(pid)
}

/// An I/O error without Rust's "(os error N)".
fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(
        netns: Option<&str>,
        ifname: Option<&str>,
        pid: Option<&str>,
    ) -> Result<PacketFilters, String> {
        PacketFilters::from_flags(netns, ifname, pid).map_err(|e| e.0)
    }

    #[test]
    fn netns_by_inode_or_path() {
        assert_eq!(f(Some("4026531840"), None, None).unwrap().netns, 4026531840);
        for bad in ["0", "4294967296"] {
            assert!(
                f(Some(bad), None, None)
                    .unwrap_err()
                    .contains("want a namespace inode"),
                "{bad}"
            );
        }
        let e = f(Some("/nonexistent/ns"), None, None).unwrap_err();
        assert!(e.contains("no such file"), "{e}");
        let e = f(Some("/etc/hostname"), None, None).unwrap_err();
        assert!(e.contains("not a namespace file"), "{e}");
        // Our own namespaces: the net one is taken, another kind refused.
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata("/proc/self/ns/net") {
            assert_eq!(
                f(Some("/proc/self/ns/net"), None, None).unwrap().netns as u64,
                m.ino()
            );
            let e = f(Some("/proc/self/ns/uts"), None, None).unwrap_err();
            assert!(e.contains("not a network namespace"), "{e}");
        }
    }

    #[test]
    fn ifnames() {
        assert_eq!(
            f(None, Some("veth0"), None).unwrap().ifname.as_deref(),
            Some("veth0")
        );
        assert!(f(None, Some("abcdefghijklmno"), None).is_ok());
        for bad in ["", "abcdefghijklmnop"] {
            assert!(
                f(None, Some(bad), None)
                    .unwrap_err()
                    .contains("1 to 15 bytes"),
                "{bad:?}"
            );
        }
        for bad in [".", "..", "a/b", "a:b", "a b"] {
            assert!(
                f(None, Some(bad), None)
                    .unwrap_err()
                    .contains("not a valid device name"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn pids() {
        let me = std::process::id();
        assert_eq!(f(None, None, Some(&me.to_string())).unwrap().pid, me);
        for bad in ["0", "-1", "x", "4294967296", "2147483648"] {
            assert!(
                f(None, None, Some(bad))
                    .unwrap_err()
                    .contains("want a process id"),
                "{bad}"
            );
        }
        // pid_max is at most 2^22: this one cannot exist.
        assert!(f(None, None, Some("2147483647"))
            .unwrap_err()
            .contains("no such process"));
        assert_eq!(f(None, None, None).unwrap(), PacketFilters::default());
    }
}
