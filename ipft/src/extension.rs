//! `ipft -e FILE.c|FILE.o|FILE.lua`, `-s FILE.lua`: an extension's BPF
//! object (compiled here from C with $CC or clang and $CFLAGS, as
//! ipftrace2 does, read from a file, or carried by a Lua script) and the
//! decoder of its payload (the `__ipft_event_struct` in its BTF, or the
//! script's `decode`).

use std::path::Path;

use ipft_gen::compile::extension_command;
use ipft_runtime::error::RunError;
use ipft_runtime::extension::Extension;
use ipft_runtime::flags::{ExtensionKind, ExtensionSource};

fn failed(path: &Path, msg: impl std::fmt::Display) -> RunError {
    RunError::Extension(format!("{}: {msg}", path.display()))
}

/// The extension named on the command line, ready to link.
pub fn load(src: &ExtensionSource) -> Result<Extension, RunError> {
    let path = &src.path;
    if src.kind == ExtensionKind::Lua {
        return crate::lua::load(path).map_err(RunError::Extension);
    }
    let object = match src.kind {
        ExtensionKind::C => compile(path)?,
        _ => std::fs::read(path).map_err(|e| failed(path, e))?,
    };
    if !object.starts_with(b"\x7fELF") {
        return Err(failed(path, "not an ELF object"));
    }
    let spec = ipft_btf::payload::payload_spec(&object).map_err(|e| failed(path, e))?;
    Ok(Extension {
        name: file_name(path),
        object,
        decoder: Box::new(spec),
    })
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The extension's compile (ipft-gen's, which ipftrace2's matches: $CC,
/// $CFLAGS); the compiler's own messages go to stderr as they come.
fn compile(path: &Path) -> Result<Vec<u8>, RunError> {
    let dir = std::env::temp_dir().join(format!("ipft-ext-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| failed(&dir, e))?;
    let obj = dir.join("extension.bpf.o");
    let mut cmd = extension_command(path, &obj);
    let cc = cmd.get_program().to_string_lossy().into_owned();
    let r = match cmd.status() {
        Err(e) => Err(failed(
            path,
            format!("running {cc}: {e} (set CC, or use a compiled .o)"),
        )),
        Ok(s) if !s.success() => Err(failed(
            path,
            format!("{cc} failed ({s}); its messages are above"),
        )),
        Ok(_) => std::fs::read(&obj).map_err(|e| failed(&obj, e)),
    };
    let _ = std::fs::remove_dir_all(&dir);
    r
}
