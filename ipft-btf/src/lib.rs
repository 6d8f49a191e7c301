//! ipft-btf, stage 1 of the pipeline, BTF input: the base (vmlinux) BTF of a kernel plus the split BTF
//! of its modules, from the running kernel, a single file or a directory.
//!
//! Parsing is delegated to btf-rs. This module only finds the bytes, checks
//! the header before handing them over (so truncated input is a clear error,
//! not a panic deep inside the parser), notes which types the scan needs
//! (`kinds`) and records where the BTF came from.

mod kinds;
pub mod payload;
mod probe;
mod scan;

pub use payload::payload_spec;
pub use probe::Probe;
pub use scan::{enum_values, scan, ScanStats};

use std::fs;
use std::path::{Path, PathBuf};

use btf_rs::Btf;

/// Where the running kernel exposes its BTF.
pub const SYS_BTF_DIR: &str = "/sys/kernel/btf";

const BTF_MAGIC: u16 = 0xeb9f;
const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

/// Errors while reading BTF input.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is neither raw BTF nor an ELF file with a .BTF section.
    #[error("{path}: not a BTF file (neither raw BTF nor ELF with a .BTF section)")]
    NotBtf {
        /// The file.
        path: PathBuf,
    },
    /// The BTF is truncated or malformed.
    #[error("{path}: corrupt BTF: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The BTF of one module, split on top of the base BTF.
pub struct ModuleBtf {
    /// Module name (file name under the BTF directory).
    pub name: String,
    /// Split BTF; type ids continue after the base ids.
    pub btf: Btf,
    /// The types the scan looks at (None: every type).
    pub(crate) candidates: Option<kinds::Candidates>,
}

/// Identity of the BTF input, carried into generated code so a tracer can
/// check it runs on the kernel it was generated for.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BtfIdentity {
    /// Human description of the source (a path).
    pub source: String,
    /// [`checksum`] of the base BTF bytes.
    pub checksum: String,
    /// Kernel release, when known (running kernel or a `release` file).
    pub release: Option<String>,
}

/// Per name asked of [`KernelBtf::for_lookups`], the ids of the
/// functions and typedefs of that name; None where the walk over the types
/// could not go (ask btf-rs by name then).
pub type Named = Option<Vec<Vec<u32>>>;

/// A kernel's BTF: vmlinux plus modules.
pub struct KernelBtf {
    /// vmlinux BTF.
    pub base: Btf,
    /// The types the scan looks at (None: every type).
    pub(crate) candidates: Option<kinds::Candidates>,
    /// Module BTFs, sorted by name.
    pub modules: Vec<ModuleBtf>,
    /// Where it came from.
    pub identity: BtfIdentity,
    /// Module BTF files skipped because they could not be read or parsed.
    pub skipped: Vec<BtfError>,
}

impl KernelBtf {
    /// The running kernel: /sys/kernel/btf/vmlinux and every module file.
    pub fn running() -> Result<Self, BtfError> {
        let mut k = Self::from_dir(Path::new(SYS_BTF_DIR))?;
        k.identity.release = running_release();
        Ok(k)
    }

    /// A single file: raw BTF or an ELF (vmlinux) carrying a `.BTF` section.
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        Self::read_file(path, &[], true).map(|(k, _)| k)
    }

    /// A single file read for name lookups: per name in `names` the ids of
    /// the functions and typedefs of that name, found in the walk over the
    /// types (None where the walk could not go: ask `base` by name). The
    /// scan's candidates are not looked for: a scan of it resolves every
    /// type.
    pub fn for_lookups(path: &Path, names: &[&str]) -> Result<(Self, Named), BtfError> {
        Self::read_file(path, names, false)
    }

    fn read_file(path: &Path, names: &[&str], scan: bool) -> Result<(Self, Named), BtfError> {
        let bytes = read_btf_bytes(path)?;
        let raw_file = bytes.len() >= 2
            && u16::from_le_bytes([bytes[0], bytes[1]]) == BTF_MAGIC
            && fs::metadata(path).is_ok_and(|m| m.len() == bytes.len() as u64);
        let base = if raw_file {
            // A raw file: mmap it and let btf-rs parse lazily (5x faster
            // start-up than caching every type up front).
            check_header(&bytes).map_err(|reason| BtfError::Corrupt {
                path: path.to_path_buf(),
                reason,
            })?;
            // sysfs files cannot be mmapped on older kernels (ENODEV on 6.1
            // and 6.12): map a copy of the bytes already read instead.
            match guard(path, || {
                Btf::from_file_with_backend(path, btf_rs::Backend::Mmap)
            }) {
                Ok(b) => b,
                Err(_) => match mmap_copy(&bytes) {
                    Some(b) => b,
                    None => parse(path, &bytes, None)?,
                },
            }
        } else {
            parse(path, &bytes, None)?
        };
        let walk = kinds::walk(&bytes, 1, names);
        let candidates = walk.as_ref().filter(|_| scan).map(|w| w.candidates());
        let named = walk.map(|w| w.named);
        let k = KernelBtf {
            candidates,
            base,
            modules: Vec::new(),
            identity: BtfIdentity {
                source: path.display().to_string(),
                checksum: checksum(&bytes),
                release: None,
            },
            skipped: Vec::new(),
        };
        Ok((k, named))
    }

    /// A directory laid out like /sys/kernel/btf: `vmlinux` plus one split
    /// BTF file (raw or `.ko`) per module. An optional `release` file names
    /// the kernel release.
    pub fn from_dir(dir: &Path) -> Result<Self, BtfError> {
        let mut k = Self::from_file(&dir.join("vmlinux"))?;
        k.identity.source = dir.display().to_string();
        let entries = fs::read_dir(dir).map_err(|source| BtfError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter(|p| {
                let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                n != "vmlinux" && n != "release" && !n.starts_with('.')
            })
            .collect();
        paths.sort();
        // One unreadable or corrupt module must not hide the rest of the
        // kernel: it is skipped, and the caller says so once.
        for path in paths {
            match k.add(&path) {
                Ok(m) => k.modules.push(m),
                Err(e) => k.skipped.push(e),
            }
        }
        if let Ok(r) = fs::read_to_string(dir.join("release")) {
            k.identity.release = Some(r.trim().to_string());
        }
        Ok(k)
    }

    /// Add one module's split BTF (raw or `.ko`).
    pub fn add_module(&mut self, path: &Path) -> Result<(), BtfError> {
        let m = self.add(path)?;
        self.modules.push(m);
        self.modules.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(())
    }

    /// One module's split BTF on top of this base.
    fn add(&self, path: &Path) -> Result<ModuleBtf, BtfError> {
        let bytes = read_btf_bytes(path)?;
        let btf = parse(path, &bytes, Some(&self.base))?;
        let first = btf.split().map_or(0, |s| s.type_id_range().0);
        Ok(ModuleBtf {
            name: module_name(path),
            candidates: kinds::candidates(&bytes, first),
            btf,
        })
    }
}

/// Lazy (mmap) parsing of bytes whose file cannot be mmapped: put them in a
/// memfd and map that. Parsing everything up front instead costs ~5x more,
/// seconds under emulation.
fn mmap_copy(bytes: &[u8]) -> Option<Btf> {
    let (f, proc_path) = memfd(bytes)?;
    let btf = guard(&proc_path, || {
        Btf::from_file_with_backend(&proc_path, btf_rs::Backend::Mmap)
    })
    .ok();
    drop(f); // the mapping outlives the descriptor
    btf
}

/// `bytes` in an anonymous file, and a path that opens it, for btf-rs
/// calls that take only paths. The path is valid while the file lives.
pub(crate) fn memfd(bytes: &[u8]) -> Option<(fs::File, PathBuf)> {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    // SAFETY: a valid NUL-terminated name; the fd is owned by the File below.
    let fd = unsafe { libc::memfd_create(c"ipft-btf".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fresh fd, owned from here on.
    let mut f = unsafe { fs::File::from_raw_fd(fd) };
    f.write_all(bytes).ok()?;
    Some((f, PathBuf::from(format!("/proc/self/fd/{fd}"))))
}

/// `veth.ko.xz` -> `veth`; `nf_tables` -> `nf_tables`.
fn module_name(path: &Path) -> String {
    let n = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
    n.split(".ko").next().unwrap_or(n).replace('-', "_")
}

/// The kernel release a BTF file belongs to: the running kernel's for
/// /sys/kernel/btf/vmlinux, else a `release` file beside it, else the
/// `Linux version <release>` banner of an ELF vmlinux.
pub fn release_of(path: &Path) -> Option<String> {
    if path == Path::new(SYS_BTF_DIR).join("vmlinux") {
        return running_release();
    }
    if let Some(r) = path
        .parent()
        .and_then(|d| fs::read_to_string(d.join("release")).ok())
    {
        return Some(r.trim().to_string()).filter(|r| !r.is_empty());
    }
    let bytes = fs::read(path).ok()?;
    if bytes.get(..4) != Some(ELF_MAGIC) {
        return None;
    }
    let banner = b"Linux version ";
    let at = bytes.windows(banner.len()).position(|w| w == banner)? + banner.len();
    let rest = &bytes[at..bytes.len().min(at + 128)];
    let end = rest.iter().position(|&b| b == b' ' || b == 0)?;
    std::str::from_utf8(&rest[..end]).ok().map(str::to_string)
}

/// Release of the running kernel (uname -r).
pub fn running_release() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Raw BTF bytes from a raw BTF file or from the `.BTF` section of an ELF
/// file (possibly compressed, like `.ko.xz`).
pub fn read_btf_bytes(path: &Path) -> Result<Vec<u8>, BtfError> {
    let io = |source| BtfError::Io {
        path: path.to_path_buf(),
        source,
    };
    // A device (/dev/zero, /dev/urandom) would be read until memory runs
    // out; pipes (`--btf <(zcat x)`) and regular files are fine.
    {
        use std::os::unix::fs::FileTypeExt;
        let ft = fs::metadata(path).map_err(io)?.file_type();
        if ft.is_char_device() || ft.is_block_device() || ft.is_socket() {
            return Err(io(std::io::Error::other("not a regular file")));
        }
    }
    let bytes = fs::read(path).map_err(io)?;
    if bytes.len() >= 2 && u16::from_le_bytes([bytes[0], bytes[1]]) == BTF_MAGIC {
        return Ok(bytes);
    }
    let is_elf = bytes.len() >= 4 && &bytes[..4] == ELF_MAGIC;
    let maybe_compressed = path
        .extension()
        .is_some_and(|e| e == "xz" || e == "zst" || e == "gz");
    if !is_elf && !maybe_compressed {
        return Err(BtfError::NotBtf {
            path: path.to_path_buf(),
        });
    }
    guard(path, || btf_rs::utils::elf::extract_btf_from_file(path)).map_err(|e| match e {
        BtfError::Corrupt { path, reason } if reason.contains("No BTF section") => {
            BtfError::NotBtf { path }
        }
        e => e,
    })
}

/// Check the BTF header against the buffer, then parse with btf-rs.
fn parse(path: &Path, bytes: &[u8], base: Option<&Btf>) -> Result<Btf, BtfError> {
    check_header(bytes).map_err(|reason| BtfError::Corrupt {
        path: path.to_path_buf(),
        reason,
    })?;
    match base {
        None => guard(path, || Btf::from_bytes(bytes)),
        Some(b) => guard(path, || Btf::from_split_bytes(bytes, b)),
    }
}

/// The fixed BTF header (struct btf_header): every section must lie inside
/// the buffer.
fn check_header(b: &[u8]) -> Result<(), String> {
    kinds::Header::read(b).map(|_| ())
}

/// Run a btf-rs call, turning both its errors and any panic on malformed
/// input into [`BtfError::Corrupt`].
pub(crate) fn guard<T>(path: &Path, f: impl FnOnce() -> btf_rs::Result<T>) -> Result<T, BtfError> {
    let corrupt = |reason: String| BtfError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    match quiet_catch_unwind(f) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(corrupt(e.to_string())),
        Err(msg) => Err(corrupt(format!("parser failed: {msg}"))),
    }
}

thread_local! {
    /// Set while this thread runs inside [`quiet_catch_unwind`].
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Make the panics that [`guard`] turns into errors silent: a hook that
/// stays quiet for a thread inside the BTF parser and otherwise defers to
/// the hook it replaced. A library must not own the process's panic hook,
/// so binaries call this once at start; without it a caught parser panic is
/// still an error, with the default hook's message on stderr.
pub fn install_quiet_panic_hook() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.try_with(|q| q.get()).unwrap_or(false) {
                prev(info)
            }
        }));
    });
}

/// catch_unwind, marking this thread as inside the parser for the hook of
/// [`install_quiet_panic_hook`].
pub(crate) fn quiet_catch_unwind<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let was = QUIET.with(|q| q.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    r.map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

/// A stable, dependency-free fingerprint of the BTF bytes: FNV-1a's steps
/// over 8-byte words, then the tail's bytes. Each step is a bijection, so
/// any one changed word changes the result. A byte at a time it was a third
/// of discovery (16 of 49 ms on a 6.18 host, ~10x that under emulation).
pub fn checksum(bytes: &[u8]) -> String {
    const PRIME: u64 = 0x100000001b3;
    let mut h: u64 = 0xcbf29ce484222325 ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let w: [u8; 8] = w.try_into().expect("chunks of 8");
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(PRIME);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(PRIME);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks() {
        assert!(check_header(&[]).is_err());
        let mut h = vec![0u8; 24];
        h[0] = 0x9f;
        h[1] = 0xeb;
        h[2] = 1;
        h[4] = 24;
        assert!(check_header(&h).is_ok());
        h[12] = 8; // type_len 8 but no data
        assert!(check_header(&h).unwrap_err().contains("truncated"));
    }

    #[test]
    fn memfd_copy_parses_lazily() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/btf/mini.btf");
        let bytes = fs::read(path).unwrap();
        let btf = mmap_copy(&bytes).expect("memfd + mmap");
        assert!(!btf.resolve_ids_by_name("sk_buff").unwrap().is_empty());
    }

    /// The raw walk's candidates change nothing the scan finds: the
    /// fixture, and the running kernel with its modules where it has BTF.
    #[test]
    fn candidates_find_what_a_full_scan_finds() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/btf/mini.btf");
        let mut kernels = vec![KernelBtf::from_file(&fixture).unwrap()];
        kernels.extend(KernelBtf::running().ok());
        for mut k in kernels {
            assert!(k.candidates.is_some());
            assert!(k.modules.iter().all(|m| m.candidates.is_some()));
            let (walked, w) = scan(&k).unwrap();
            k.candidates = None;
            for m in &mut k.modules {
                m.candidates = None;
            }
            let (all, a) = scan(&k).unwrap();
            assert!(!all.is_empty());
            assert_eq!(walked, all);
            let counts = |s: ScanStats| (s.types, s.funcs, s.skb_funcs, s.skb_tracepoints);
            assert_eq!(counts(w), counts(a));
        }
    }

    /// Names found in the walk are btf-rs's functions and typedefs of
    /// that name, on the fixture and on the running kernel.
    #[test]
    fn names_found_in_the_walk_are_btf_rs_lookups() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/btf/mini.btf");
        let running = Path::new(SYS_BTF_DIR).join("vmlinux");
        let names = [
            "ip_rcv",
            "kfree_skb_reason",
            "btf_trace_kfree_skb",
            "sk_buff",
            "no_such",
        ];
        let mut matched = 0;
        for path in [fixture.as_path(), running.as_path()] {
            let Ok((k, found)) = KernelBtf::for_lookups(path, &names) else {
                continue;
            };
            for (name, ids) in names.iter().zip(found.unwrap()) {
                matched += ids.len();
                let want: Vec<u32> = k
                    .base
                    .resolve_ids_by_name(name)
                    .unwrap()
                    .into_iter()
                    .filter(|&id| {
                        matches!(
                            k.base.resolve_type_by_id(id),
                            Ok(btf_rs::Type::Func(_) | btf_rs::Type::Typedef(_))
                        )
                    })
                    .collect();
                assert_eq!(ids, want, "{name} in {}", path.display());
            }
        }
        assert!(matched > 0);
    }

    #[test]
    fn module_names() {
        assert_eq!(module_name(Path::new("/x/veth.ko.xz")), "veth");
        assert_eq!(module_name(Path::new("/x/nf-tables")), "nf_tables");
    }
}
