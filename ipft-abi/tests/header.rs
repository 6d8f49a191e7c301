//! extensions/ipft_extension.h is generated: it must equal
//! `ipft_abi::payload::module_header()`, so the shipped extensions compile
//! against exactly the macros ipft parses.
//!
//! Regenerate with `IPFT_BLESS=1 cargo test --release -p ipft-abi --test header`
//! (or `ipft --gen bpf-module-header > extensions/ipft_extension.h`).

use std::path::{Path, PathBuf};

fn header_path() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = crate_dir.parent().unwrap_or(crate_dir);
    root.join("extensions/ipft_extension.h")
}

#[test]
fn checked_in_header_is_module_header() {
    let path = header_path();
    let generated = ipft_abi::payload::module_header();
    if std::env::var_os("IPFT_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (regenerate: IPFT_BLESS=1 cargo test --release -p ipft-abi --test header)",
            path.display()
        )
    });
    assert!(
        on_disk == generated,
        "{} differs from ipft_abi::payload::module_header(); regenerate with \
         `IPFT_BLESS=1 cargo test --release -p ipft-abi --test header` \
         or `ipft --gen bpf-module-header > extensions/ipft_extension.h`",
        path.display()
    );
}
