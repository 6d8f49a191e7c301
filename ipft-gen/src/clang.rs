// The one clang invocation for BPF objects, kept free of crate paths: the
// build scripts of `ipft` and `ipft-bench` include this file too.

/// `clang -O2 -g -target bpf ...` for `src` into `obj`, searching `include`.
pub fn clang_command(src: &std::path::Path, obj: &std::path::Path, include: &[&std::path::Path]) -> std::process::Command {
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let mut cmd = std::process::Command::new(clang);
    cmd.args([
        "-O2",
        "-g",
        "-target",
        "bpf",
        "-D__TARGET_ARCH_x86",
        "-Wall",
        "-Wno-unused-function",
    ]);
    for dir in include {
        cmd.arg("-I").arg(dir);
    }
    cmd.arg("-c").arg(src).arg("-o").arg(obj);
    cmd
}

/// For build scripts: compile, pass clang's warnings on as cargo warnings,
/// and stop the build with clang's output on failure.
#[allow(dead_code)]
pub fn build_script_compile(src: &std::path::Path, obj: &std::path::Path, include: &[&std::path::Path]) {
    let out = clang_command(src, obj, include)
        .output()
        .unwrap_or_else(|e| panic!("running clang (run scripts/setup): {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        panic!("clang failed on {}:\n{stderr}", src.display());
    }
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        println!("cargo:warning={line}");
    }
}
