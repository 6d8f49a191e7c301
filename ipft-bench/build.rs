//! Build script: the reference programs of `ipft-bench per-hit` (an empty
//! program and an ipftrace2-style one), with the project's one clang call.

use std::path::{Path, PathBuf};

include!("../ipft-gen/src/clang.rs");

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = here.join("bpf/ipftrace2_style.bpf.c");
    println!("cargo:rerun-if-changed={}", src.display());
    println!(
        "cargo:rerun-if-changed={}",
        here.join("../ipft-gen/src/clang.rs").display()
    );
    println!("cargo:rerun-if-env-changed=CLANG");
    build_script_compile(
        &src,
        &out.join("ipftrace2_style.bpf.o"),
        &[&here.join("../templates/bpf")],
    );
}
