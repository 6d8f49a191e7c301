// libpcap is linked statically into every binary that links ipft-runtime
// (ipft, ipft-gen, generated tracers, tests): only its filter compiler is
// used, and a static tracer must not need libpcap.so where it runs. Debian's
// libpcap-dev ships libpcap.a (scripts/setup installs it); LIBPCAP_LIBDIR
// points elsewhere. Its D-Bus capture source is replaced by stubs
// (src/filter/libpcap.rs): Debian ships no static libsystemd for libdbus-1.a.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBPCAP_LIBDIR");
    let dir = std::env::var_os("LIBPCAP_LIBDIR")
        .map(PathBuf::from)
        .or_else(|| {
            let out = std::process::Command::new("pkg-config")
                .args(["--variable=libdir", "libpcap"])
                .output()
                .ok()?;
            let s = String::from_utf8(out.stdout).ok()?;
            (out.status.success() && !s.trim().is_empty()).then(|| PathBuf::from(s.trim()))
        })
        .unwrap_or_else(|| {
            let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
            PathBuf::from(format!("/usr/lib/{arch}-linux-gnu"))
        });
    if !dir.join("libpcap.a").is_file() {
        panic!(
            "{}/libpcap.a not found: install libpcap-dev (scripts/setup) or set LIBPCAP_LIBDIR",
            dir.display()
        );
    }
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=static=pcap");
}
