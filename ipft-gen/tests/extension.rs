//! `ipft-gen --extension`: the payload type generated from an extension's
//! BTF (golden), errors that name the file, the extension linked into each
//! kernel's object, and on this host (root) a built tracer showing the
//! payload of a marked ping. The fixtures include `ipft.h`, the module
//! header, written here and found through $CFLAGS as a user would.

#[path = "../../ipft/tests/common/mod.rs"]
mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ipft_gen::extension::{render, Extension};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> String {
    format!("tests/fixtures/extensions/{name}")
}

/// A dir holding `ipft.h`; `-I` it through CFLAGS. Written once per test
/// process: rewriting it on each call truncated the file while another
/// test's clang was reading it (CI: "unknown type name '__hidden'").
fn header_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ext-include");
        std::fs::create_dir_all(&d).unwrap();
        // Into place by rename, so no reader ever sees a partial header.
        let tmp = d.join(format!("ipft.h.{}", std::process::id()));
        std::fs::write(&tmp, ipft_abi::payload::module_header()).unwrap();
        std::fs::rename(&tmp, d.join("ipft.h")).unwrap();
        d
    })
    .clone()
}

fn have_clang() -> bool {
    let ok = Command::new("clang").arg("--version").output().is_ok();
    if !ok {
        eprintln!("skipped: no clang");
    }
    ok
}

/// ipft-gen in the repository root (so sources are named as in goldens),
/// CFLAGS finding `ipft.h`.
fn ipft_gen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipft-gen"))
        .current_dir(root())
        .env("CFLAGS", format!("-I{}", header_dir().display()))
        .args(args)
        .output()
        .unwrap()
}

fn check_golden(name: &str, actual: &str) {
    check_file(&root().join("tests/golden").join(name), actual)
}

/// Compile a fixture to an object with clang directly: the .o input path.
/// One file per test thread, as tests compile the same fixture at once.
fn object(name: &str) -> PathBuf {
    let test = std::thread::current().name().unwrap_or("main").to_string();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.{test}.o"));
    let o = Command::new("clang")
        .args(["-target", "bpf", "-O2", "-g", "-I"])
        .arg(header_dir())
        .arg(format!(
            "-I/usr/include/{}-linux-gnu",
            std::env::consts::ARCH
        ))
        .arg("-c")
        .arg(root().join(fixture(name)))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

#[test]
fn payload_rust_is_golden() {
    if !have_clang() {
        return;
    }
    for (name, golden) in [("gso.bpf.c", "ext-gso.rs"), ("kinds.bpf.c", "ext-kinds.rs")] {
        let ext = Extension::load(&object(name)).unwrap();
        check_golden(golden, &render(&ext.spec, &fixture(name)).unwrap());
    }
}

// The goldens, compiled: the derive's spec of each generated type must be
// the spec read from the extension's BTF, field for field.
mod gso {
    include!("../../tests/golden/ext-gso.rs");
}
mod kinds {
    include!("../../tests/golden/ext-kinds.rs");
}

#[test]
fn generated_types_show_exactly_like_the_btf() {
    use ipft_runtime::extension::ExtensionPayload;
    if !have_clang() {
        return;
    }
    for (name, derived) in [
        ("gso.bpf.c", gso::Payload::spec()),
        ("kinds.bpf.c", kinds::Payload::spec()),
    ] {
        let btf = ipft_gen::btf::payload_spec(&std::fs::read(object(name)).unwrap()).unwrap();
        assert_eq!(derived.fields, btf.fields, "{name}");
    }
    assert_eq!(kinds::Payload::SIZE, 64);
}

#[test]
fn bad_extensions_name_the_file() {
    if !have_clang() {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ext-bad");
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.bpf.c");
    std::fs::write(&broken, "int module( {\n").unwrap();
    let none = dir.join("none.bpf.c");
    std::fs::write(&none, "#include \"ipft.h\"\nint x;\n").unwrap();
    for (file, want) in [
        (&broken, "failed on"),
        (&none, "no payload struct"),
        (&dir.join("missing.c"), "missing.c"),
    ] {
        let o = ipft_gen(&[
            "--profile",
            "tracepoints",
            "--extension",
            file.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(want) && err.contains(file.file_name().unwrap().to_str().unwrap()),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
}

/// `module` as a strong symbol of `obj` (not the template's weak stub).
fn module_is_linked(obj: &Path) -> bool {
    let o = Command::new("llvm-readelf")
        .args(["-s", "--wide"])
        .arg(obj)
        .output()
        .unwrap();
    let syms = String::from_utf8_lossy(&o.stdout);
    syms.lines().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.last() == Some(&"module") && w.contains(&"FUNC") && w.contains(&"GLOBAL")
    })
}

#[test]
fn each_kernel_object_gets_the_extension() {
    if !have_clang() {
        return;
    }
    let _g = lock();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ext-fleet");
    let _ = std::fs::remove_dir_all(&out);
    let vmlinux = "/sys/kernel/btf/vmlinux";
    let o = ipft_gen(&[
        "--btf",
        vmlinux,
        "--btf",
        vmlinux,
        "--profile",
        "tracepoints",
        "--extension",
        &fixture("gso.bpf.c"),
        "--object",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let golden = std::fs::read_to_string(root().join("tests/golden/ext-gso.rs")).unwrap();
    let want = ipft_gen::btf::payload_spec(&std::fs::read(object("gso.bpf.c")).unwrap()).unwrap();
    for k in ["k0", "k1"] {
        let dir = out.join(k);
        assert_eq!(
            std::fs::read_to_string(dir.join("extension.rs")).unwrap(),
            golden
        );
        let obj = dir.join("tracer.bpf.o");
        assert!(module_is_linked(&obj), "{k}: module() not linked");
        // The linked object still describes the payload.
        let linked = std::fs::read(&obj).unwrap();
        assert_eq!(ipft_gen::btf::payload_spec(&linked).unwrap(), want);
    }
    // Generated again without it: no stale payload type is left behind.
    let o = ipft_gen(&[
        "--btf",
        vmlinux,
        "--profile",
        "tracepoints",
        "-o",
        out.join("k0").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.join("k0/extension.rs").exists());
}

#[test]
fn a_built_tracer_shows_the_payload_of_each_event() {
    if !have_clang() {
        return;
    }
    let _g = lock();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ext-gso");
    let o = ipft_gen(&[
        "--btf",
        "/sys/kernel/btf/vmlinux",
        "--profile",
        "tracepoints",
        "--extension",
        &fixture("gso.bpf.c"),
        "--build",
        "-o",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "ipft-gen --build failed: {err}");
    let bin = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    let ns = Netns::new("ext");
    let t = Tracer::start(&bin, &["-m", "0xdeadbeef", "-o", "json"], "ext");
    let p = ns.exec(&format!("ping -q -c 1 -s 200 -m {MARK} 127.0.0.1"));
    assert!(p.status.success());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, out, err) = t.stop(libc::SIGINT);
    assert_eq!(code, 0, "{err}");
    let evs = events(&out);
    assert!(!evs.is_empty(), "no events: {err}");
    for e in &evs {
        let ext = e["ext"]
            .as_object()
            .unwrap_or_else(|| panic!("no ext: {e}"));
        let mut keys: Vec<&str> = ext.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["gso_segs", "gso_size", "gso_type", "len"], "{e}");
        // An ICMP echo with 200 bytes of data: never less on any probe;
        // never offloaded.
        assert!(ext["len"].as_u64().unwrap() >= 200, "{e}");
        assert_eq!(ext["gso_type"], "none", "{e}");
    }
    // Fields in the struct's order; queued with its Ethernet, IP and ICMP
    // headers.
    let first = out.lines().next().unwrap();
    assert!(
        first.contains(r#""ext":{"len":242,"gso_size":0,"gso_segs":0,"gso_type":"none"}"#),
        "{first}"
    );
    assert!(wait_detached().is_empty());
}
