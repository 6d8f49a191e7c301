//! A running kernel's discovery kept for the next start in the same boot:
//! the BTF scan, which of its functions ftrace attaches, the backend probes
//! and the runtime's [`Facts`]. Under an emulator they are most of a start
//! (the 6.12 lab, one vCPU: BTF scan 0.45 s, ftrace's filter list 0.7 s and
//! the backend probes 0.46 s, partly side by side), and none of them
//! changes until the kernel reboots or a module comes or goes. So the file
//! is keyed by the boot, the loaded modules and the very binary that wrote
//! it, and lives in /run, which a boot empties.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ipft_btf::{BtfIdentity, ScanStats};
use ipft_runtime::kernel::{Facts, Probed};
use ipft_runtime::select::Filter;
use serde::{Deserialize, Serialize};

use super::{Discovery, Found};
use crate::probe::{Probe, Profile};

/// Where snapshots are kept unless `IPFT_SNAPSHOT` says otherwise.
const DEFAULT_PATH: &str = "/run/ipft/discovery.json";

/// One discovery of the running kernel, before any selection. On disk it
/// follows its [`key`] and a NUL, so that a snapshot kept for another boot,
/// binary or module set is turned down before it is parsed.
#[derive(Serialize, Deserialize)]
pub struct Snapshot {
    identity: BtfIdentity,
    skipped: Vec<String>,
    stats: ScanStats,
    probes: Vec<Scanned>,
    probed: Probed,
    facts: Facts,
}

/// A probe as the scan found it, with the fields its listing leaves out,
/// and whether ftrace attaches it by name.
#[derive(Serialize, Deserialize)]
struct Scanned {
    probe: Probe,
    btf_id: u32,
    byval_before_skb: bool,
    attachable: bool,
}

impl Snapshot {
    /// A cold start's findings (the runtime's facts are added at save).
    pub(crate) fn new(found: &Found, all: &[(Probe, bool)], probed: &Probed) -> Snapshot {
        let probes = all
            .iter()
            .map(|(p, ok)| Scanned {
                probe: p.clone(),
                btf_id: p.btf_id,
                byval_before_skb: p.byval_before_skb,
                attachable: *ok,
            })
            .collect();
        Snapshot {
            identity: found.identity.clone(),
            skipped: found.skipped.clone(),
            stats: found.stats,
            probes,
            probed: probed.clone(),
            facts: Facts::default(),
        }
    }

    /// This boot's snapshot, if one was kept by this binary for the modules
    /// loaded now; its facts are seeded into the runtime.
    pub fn load() -> Option<Snapshot> {
        let path = path()?;
        let key = key()?;
        let bytes = read_trusted(&path)?;
        let json = bytes
            .strip_prefix(key.text.as_bytes())?
            .strip_prefix(b"\0")?;
        let s: Snapshot = serde_json::from_slice(json).ok()?;
        s.facts.clone().seed();
        Some(s)
    }

    /// Keep this discovery, with what the runtime has learnt since, for
    /// the next start. Best effort: a start never fails for want of it.
    pub fn save(mut self) {
        let (Some(path), Some(key)) = (path(), key()) else {
            return;
        };
        self.facts = Facts::learnt();
        // A module's function addresses hold while the key can tell that
        // the module was not loaded again: only where it shows addresses.
        if !key.modules_placed {
            self.facts.function_addrs.retain(|(f, _)| !f.contains(':'));
        }
        let Ok(json) = serde_json::to_vec(&self) else {
            return;
        };
        let mut bytes = key.text.into_bytes();
        bytes.push(0);
        bytes.extend(json);
        let _ = write_private(&path, &bytes);
    }

    /// The discovery this snapshot stands for, selected as a cold start
    /// would select it.
    pub(crate) fn discovery(self, profile: Option<&Profile>, filter: &Filter) -> Discovery {
        let all = self
            .probes
            .into_iter()
            .map(|s| {
                let mut p = s.probe;
                p.btf_id = s.btf_id;
                p.byval_before_skb = s.byval_before_skb;
                (p, s.attachable)
            })
            .collect();
        let found = Found {
            identity: self.identity,
            skipped: self.skipped,
            stats: self.stats,
        };
        found.select(all, Some(self.probed), profile, filter)
    }
}

/// `$IPFT_SNAPSHOT`, or the default; none when it is empty or `off`.
fn path() -> Option<PathBuf> {
    match std::env::var_os("IPFT_SNAPSHOT") {
        Some(p) if p.is_empty() || p == "off" => None,
        Some(p) => Some(PathBuf::from(p)),
        None => Some(PathBuf::from(DEFAULT_PATH)),
    }
}

/// Keep what this start learnt beyond the snapshot it was seeded from (the
/// addresses of functions it was the first to attach by name).
pub fn refresh() {
    if let Some(s) = Snapshot::load() {
        s.save();
    }
}

/// What a snapshot holds for: this boot, this binary (its size and
/// modification time) and the modules loaded now (name, size and address
/// each: module reference counts change without a module coming or going,
/// and a module loaded again lands elsewhere).
struct Key {
    text: String,
    /// Every module's address is shown (not hidden by kptr_restrict), so
    /// the key tells a module loaded again from the one before.
    modules_placed: bool,
}

fn key() -> Option<Key> {
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let exe = fs::metadata(std::env::current_exe().ok()?).ok()?;
    let modules = fs::read_to_string("/proc/modules").unwrap_or_default();
    let binary = format!("{} {}.{}", exe.len(), exe.mtime(), exe.mtime_nsec());
    Some(key_of(boot.trim(), &binary, &modules))
}

/// The key for a boot id, a binary's identity and /proc/modules' text.
fn key_of(boot: &str, binary: &str, modules: &str) -> Key {
    let mut text = format!("{boot} {binary}\n");
    let mut modules_placed = true;
    for line in modules.lines() {
        let mut w = line.split_whitespace();
        if let (Some(name), Some(size)) = (w.next(), w.next()) {
            let addr = w.nth(3).unwrap_or("-");
            let shown = u64::from_str_radix(addr.trim_start_matches("0x"), 16);
            modules_placed &= shown.is_ok_and(|a| a != 0);
            text.push_str(&format!("{name} {size} {addr}\n"));
        }
    }
    Key {
        text,
        modules_placed,
    }
}

/// Ours alone to write: owned by this user, writable by no one else.
fn private(m: &fs::Metadata) -> bool {
    // SAFETY: geteuid has no preconditions.
    m.uid() == unsafe { libc::geteuid() } && m.mode() & 0o022 == 0
}

/// The file's bytes, if it and its directory are [`private`].
fn read_trusted(path: &Path) -> Option<Vec<u8>> {
    let dir = path.parent()?;
    if !private(&fs::symlink_metadata(dir).ok()?) {
        return None;
    }
    let f = fs::File::open(path).ok()?;
    if !private(&f.metadata().ok()?) {
        return None;
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &f, &mut bytes).ok()?;
    Some(bytes)
}

/// Write `bytes` to `path` in a private directory, whole or not at all
/// (a file of its own, renamed into place).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    if !private(&fs::symlink_metadata(dir)?) {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    let tmp = dir.join(format!(".discovery.{}", std::process::id()));
    let mut f = fs::File::create(&tmp)?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    drop(f);
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipft_abi::ProbeKind;

    #[test]
    fn the_key_knows_whether_modules_are_placed() {
        let shown = "veth 40960 0 - Live 0xffffffffc0a1b000\nnf_tables 303104 0 - Live 0xffffffffc09c0000\n";
        let k = key_of("b00t", "1 2.3", shown);
        assert!(k.modules_placed);
        assert_eq!(
            k.text,
            "b00t 1 2.3\nveth 40960 0xffffffffc0a1b000\nnf_tables 303104 0xffffffffc09c0000\n"
        );
        let hidden = "veth 40960 0 - Live 0x0000000000000000\n";
        assert!(!key_of("b00t", "1 2.3", hidden).modules_placed);
        assert!(key_of("b00t", "1 2.3", "").modules_placed);
        // A module loaded again lands elsewhere: another key.
        let again = "veth 40960 0 - Live 0xffffffffc0a2b000\nnf_tables 303104 0 - Live 0xffffffffc09c0000\n";
        assert_ne!(key_of("b00t", "1 2.3", again).text, k.text);
    }

    #[test]
    fn a_snapshot_selects_as_the_scan_did() {
        let probe = |name: &str, kind| Probe {
            name: name.into(),
            kind,
            skb_positions: vec![0],
            nargs: 1,
            btf_id: 7,
            byval_before_skb: true,
            ..Default::default()
        };
        let all = vec![
            (probe("ip_rcv", ProbeKind::Function), true),
            (probe("ip_rcv_core", ProbeKind::Function), false),
            (probe("kfree_skbmem", ProbeKind::Function), true),
            (probe("kfree_skb", ProbeKind::Tracepoint), true),
        ];
        let found = || Found {
            identity: BtfIdentity {
                source: "t".into(),
                checksum: "c".into(),
                release: Some("6.12.0".into()),
            },
            skipped: vec![],
            stats: ScanStats::default(),
        };
        let probed = Probed {
            offer: ipft_abi::KernelOffer::everything(Some("6.12.0")),
            refused: vec![],
        };
        let filter = Filter::from_flags(Some("^ip_"), None).unwrap();
        let s = Snapshot::new(&found(), &all, &probed);
        let json = serde_json::to_vec(&s).unwrap();
        let back: Snapshot = serde_json::from_slice(&json).unwrap();
        let warm = back.discovery(None, &filter);
        let cold = found().select(all, Some(probed), None, &filter);
        let names = |d: &Discovery| d.probes.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&warm), vec!["ip_rcv"]);
        assert_eq!(names(&warm), names(&cold));
        assert_eq!(warm.probes, cold.probes);
        assert_eq!(warm.untraceable, 1);
        assert_eq!(warm.end_markers, cold.end_markers);
        assert_eq!(warm.end_markers.len(), 2);
    }
}
