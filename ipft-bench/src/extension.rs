//! An extension's cost in `per-hit`: ipft's generic programs with the
//! shipped `len` extension (extensions/len.bpf.c, three CO-RE reads into a
//! 64-byte payload) linked in, compiled with clang as `ipft -e` does.

use std::path::Path;

use ipft_runtime::flags::{ExtensionKind, ExtensionSource};

use super::*;

/// Compile, link and load the generic object with the `len` extension, on
/// the bench's tracepoints.
pub(crate) fn load(config: Config, table: &[ProbeEntry]) -> Result<Session> {
    let src = ExtensionSource {
        path: Path::new(env!("CARGO_MANIFEST_DIR")).join("../extensions/len.bpf.c"),
        kind: ExtensionKind::C,
    };
    let ext = ipft::extension::load(&src).map_err(|e| anyhow!("{}", e.message()))?;
    let object = ipft_runtime::extension::link(ipft::GENERIC_OBJECT, &ext.object)
        .map_err(|e| anyhow!("linking {}: {e}", ext.name))?;
    let opts = load::LoadOptions {
        config: Config { ext: 1, ..config },
        ring_buffer_bytes: None,
        btf: None,
    };
    let session = Session::generic(&object, table, opts, &mut |_| true)?;
    if session.attached.len() != table.len() {
        bail!(
            "the extension's programs attached {} of {}: {:?}",
            session.attached.len(),
            table.len(),
            session.failed
        );
    }
    Ok(session)
}
