//! Build script: renders the event mirror and the generic BPF object from the
//! same definitions ipft-gen uses, and generates the man page and shell
//! completions of `ipft`.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

include!("src/args_def.rs");

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for f in [
        "templates/bpf/tracer.bpf.c.hbs",
        "templates/bpf/ipft_core.h",
        "templates/bpf/bench_ipftrace2_style.bpf.c",
        "ipft-gen/src/codegen",
        "src/args_def.rs",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    println!("cargo:rerun-if-changed=src/args_def.rs");
    println!("cargo:rerun-if-env-changed=CLANG");

    // Event mirror.
    let event = ipft_gen::codegen::event::rust_struct("Event");
    let file: syn_file::File = syn_file::parse2(event).expect("event parses");
    std::fs::write(out.join("event.rs"), prettyplease_file::unparse(&file)).unwrap();

    // Generic object, compiled now so `ipft` needs no clang at run time.
    let c = ipft_gen::codegen::c::render_generic().expect("generic template renders");
    std::fs::write(out.join("generic.bpf.c"), c).unwrap();
    std::fs::write(out.join("ipft_core.h"), ipft_gen::codegen::c::CORE_HEADER).unwrap();
    compile_bpf(&out, &out.join("generic.bpf.c"), &out.join("generic.bpf.o"));
    // Reference programs of `ipft-bench per-hit`.
    compile_bpf(
        &out,
        &root.join("templates/bpf/bench_ipftrace2_style.bpf.c"),
        &out.join("bench_ipftrace2_style.bpf.o"),
    );

    // Man page and completions for `ipft`.
    let mut cmd = IpftArgs::command();
    let man_dir = out.join("man");
    std::fs::create_dir_all(&man_dir).unwrap();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf).unwrap();
    std::fs::write(man_dir.join("ipft.1"), buf).unwrap();
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd, "ipft", &man_dir).unwrap();
    }
}

/// Compile one BPF C file; `include` holds the generated headers.
/// The same clang invocation ipft-gen uses for generated tracers (honours
/// $CLANG); a failure stops the build with clang's output.
fn compile_bpf(include: &Path, src: &Path, obj: &Path) {
    if let Err(e) = ipft_gen::compile::compile_bpf(src, obj, &[include]) {
        panic!("{e}");
    }
}
