//! Fleet artifacts: one tracer for several kernels, described by
//! OUT/manifest.json (per kernel: release, BTF checksum, probe count; for
//! the tracer: its sha256, the profile and the ipft version).

use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::compile::BuildError;

/// One kernel the tracer holds an object for.
#[derive(Debug, Clone, Serialize)]
pub struct Kernel {
    /// Release (`uname -r`), when known.
    pub release: Option<String>,
    /// FNV-1a of its vmlinux BTF, as the tracer compares at start.
    pub btf_checksum: String,
    /// Where its BTF came from.
    pub source: String,
    /// Probes traced (journey-end probes not counted).
    pub probes: usize,
}

#[derive(Serialize)]
struct Manifest<'a> {
    ipft_version: &'a str,
    profile: &'a str,
    tracer: Tracer<'a>,
    kernels: &'a [Kernel],
}

#[derive(Serialize)]
struct Tracer<'a> {
    file: &'a str,
    sha256: String,
    bytes: u64,
}

/// sha256 of a file, hex.
pub fn sha256(path: &Path) -> Result<String, BuildError> {
    let bytes = std::fs::read(path).map_err(|e| BuildError::Io(path.to_path_buf(), e))?;
    Ok(sha256_bytes(&bytes))
}

/// sha256 of bytes, hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Write `out/manifest.json` for the tracer `bin`.
pub fn write_manifest(
    out: &Path,
    bin: &Path,
    profile: &str,
    kernels: &[Kernel],
) -> Result<(), BuildError> {
    let bytes = std::fs::metadata(bin)
        .map_err(|e| BuildError::Io(bin.to_path_buf(), e))?
        .len();
    let m = Manifest {
        ipft_version: env!("CARGO_PKG_VERSION"),
        profile,
        tracer: Tracer {
            file: bin.file_name().and_then(|n| n.to_str()).unwrap_or("tracer"),
            sha256: sha256(bin)?,
            bytes,
        },
        kernels,
    };
    let path = out.join("manifest.json");
    let json = serde_json::to_string_pretty(&m).expect("manifest serialises");
    std::fs::write(&path, json + "\n").map_err(|e| BuildError::Io(path, e))
}
