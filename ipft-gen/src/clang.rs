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

/// An extension's compile, as ipftrace2 does it: `$CC` (default clang)
/// `-target bpf -O2 -g`, then `$CFLAGS`, for `src` into `obj`. The
/// multiarch include dir (`gcc -print-multiarch`) lets <linux/types.h>
/// find <asm/types.h> without kernel headers.
#[allow(dead_code)]
pub fn extension_command(src: &std::path::Path, obj: &std::path::Path) -> std::process::Command {
    let cc = std::env::var("CC").unwrap_or_default();
    let mut cc = cc.split_whitespace();
    let mut cmd = std::process::Command::new(cc.next().unwrap_or("clang"));
    cmd.args(cc);
    cmd.args(["-target", "bpf", "-O2", "-g"]);
    let multiarch = std::process::Command::new("gcc")
        .arg("-print-multiarch")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("{}-linux-gnu", std::env::consts::ARCH));
    let dir = std::path::Path::new("/usr/include").join(multiarch);
    if dir.is_dir() {
        cmd.arg("-I").arg(dir);
    }
    cmd.args(std::env::var("CFLAGS").unwrap_or_default().split_whitespace());
    cmd.arg("-c").arg(src).arg("-o").arg(obj);
    cmd
}
