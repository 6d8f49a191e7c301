//! Bad input to `ipft-gen`: every case must end with exit code 2 and exactly
//! one clear line on stderr (`ipft-gen: ...`), never a panic, a usage block
//! or a hang. BTF always comes from files here (`--btf`), so the running
//! kernel's notes (available_filter_functions) never show up.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ipft-gen");
/// Generous: the slowest case (an ELF vmlinux) takes well under a second.
const TIMEOUT: Duration = Duration::from_secs(20);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn mini() -> PathBuf {
    root().join("tests/fixtures/btf/mini.btf")
}

fn mini_bytes() -> Vec<u8> {
    std::fs::read(mini()).unwrap()
}

/// A scratch file unique to this test process and case.
fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ipft-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Run ipft-gen, killing it (and failing) after TIMEOUT.
fn run(args: &[&str]) -> Run {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ipft-gen");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ipft-gen {args:?} still running after {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        code: status.code(),
        stdout: o.join().unwrap(),
        stderr: e.join().unwrap(),
    }
}

/// Exit 2, nothing on stdout, one `ipft-gen: ` line on stderr containing
/// every one of `needles`. Returns that line.
fn fails(args: &[&str], needles: &[&str]) -> String {
    let r = run(args);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(
        r.code == Some(2) && lines.len() == 1 && r.stdout.is_empty(),
        "ipft-gen {args:?}: want exit 2 and one line on stderr, got exit {:?}, \
         {} stderr lines:\n{}\nstdout: {:.200}",
        r.code,
        lines.len(),
        r.stderr,
        r.stdout
    );
    let line = lines[0];
    assert!(line.starts_with("ipft-gen: "), "{args:?}: {line}");
    for bad in ["panicked", "RUST_BACKTRACE", "Usage:"] {
        assert!(!line.contains(bad), "{args:?}: {line}");
    }
    for n in needles {
        assert!(line.contains(n), "{args:?}: {line:?} lacks {n:?}");
    }
    line.to_string()
}

/// `list --btf FILE` of possibly corrupt BTF: either a clean success (JSON,
/// nothing on stderr) or a clean failure naming the file.
fn ok_or_clean_error(file: &Path, what: &str) -> bool {
    let f = file.to_str().unwrap();
    let args = ["list", "--btf", f, "--profile", "all", "--json"];
    let r = run(&args);
    match r.code {
        Some(0) => {
            assert!(
                r.stderr.is_empty(),
                "{what}: success with stderr {}",
                r.stderr
            );
            serde_json::from_str::<serde_json::Value>(&r.stdout)
                .unwrap_or_else(|e| panic!("{what}: bad JSON on success: {e}"));
            true
        }
        _ => {
            // Names the file, or the BTF parsed and nothing matched.
            let l = fails(&args, &[]);
            assert!(
                l.contains(f) || l.contains("no probe matches"),
                "{what}: {l}"
            );
            false
        }
    }
}

#[test]
fn missing_and_wrong_kind_of_file() {
    fails(
        &["list", "--btf", "/nonexistent/vmlinux"],
        &["/nonexistent/vmlinux", "No such file"],
    );
    let l = fails(&["list", "--btf", "/tmp"], &["/tmp", "directory"]);
    // The I/O error is not repeated by the cause chain.
    assert_eq!(l.matches("os error").count(), 1, "{l}");
    fails(
        &["list", "--btf", "/dev/zero"],
        &["/dev/zero", "not a regular file"],
    );
    fails(
        &["list", "--btf-dir", "/nonexistent"],
        &["/nonexistent/vmlinux"],
    );
    fails(&["list", "--btf-dir", "/etc"], &["/etc/vmlinux"]);
    // Generation takes the same path.
    fails(
        &["--btf", "/nonexistent/vmlinux", "-o", "/nonexistent/out"],
        &["/nonexistent/vmlinux"],
    );
}

#[test]
fn not_btf() {
    fails(
        &["list", "--btf", "/etc/passwd"],
        &["/etc/passwd", "not a BTF file"],
    );
    let elf = ["/bin/true", "/usr/bin/true"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("/bin/true");
    fails(&["list", "--btf", elf], &[elf, "not a BTF file"]);
    fails(&["list", "--btf", "/dev/null"], &["/dev/null"]);
    let empty = scratch("empty", b"");
    fails(
        &["list", "--btf", empty.to_str().unwrap()],
        &["not a BTF file"],
    );
    // An ELF cut short: section headers beyond the end.
    let t = std::fs::read(elf).unwrap();
    let cut = scratch("elf-cut", &t[..t.len().min(4096)]);
    fails(&["list", "--btf", cut.to_str().unwrap()], &["elf-cut"]);
    // A module directory whose module is not BTF.
    let dir = std::env::temp_dir().join(format!("ipft-bad-input-{}/dir", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(mini(), dir.join("vmlinux")).unwrap();
    std::fs::write(dir.join("veth"), b"not btf at all\n").unwrap();
    // One bad module is skipped with one warning naming it; the rest of
    // the kernel is still listed.
    let r = run(&["list", "--btf-dir", dir.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let warnings: Vec<&str> = r.stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{}", r.stderr);
    assert!(warnings[0].contains("veth") && warnings[0].contains("not a BTF file"));
    assert!(r.stdout.contains("ip_finish_output"), "{}", r.stdout);
}

#[test]
fn truncated_btf() {
    let m = mini_bytes();
    for n in [
        1,
        2,
        3,
        8,
        23,
        24,
        25,
        32,
        100,
        500,
        1000,
        m.len() / 2,
        m.len() - 1,
    ] {
        let f = scratch(&format!("trunc-{n}"), &m[..n]);
        let f = f.to_str().unwrap();
        let l = fails(&["list", "--btf", f], &[f]);
        assert!(
            l.contains("corrupt BTF") || l.contains("not a BTF file"),
            "{n}: {l}"
        );
        if n >= 24 {
            assert!(l.contains("truncated"), "{n}: {l}");
        }
    }
}

/// Header fields, one at a time, set to values that cannot be right.
#[test]
fn corrupt_header() {
    let m = mini_bytes();
    let set = |off: usize, v: &[u8], name: &str, needle: &str| {
        let mut b = m.clone();
        b[off..off + v.len()].copy_from_slice(v);
        let f = scratch(name, &b);
        let f = f.to_str().unwrap();
        fails(&["list", "--btf", f], &[f, needle]);
    };
    set(0, &[0xeb, 0x9f], "be-magic", "not a BTF file");
    set(2, &[2], "version", "unsupported BTF version 2");
    set(4, &0xffff_fff0u32.to_le_bytes(), "hdr-len", "header length");
    set(4, &4u32.to_le_bytes(), "hdr-len-short", "header length");
    set(8, &0x7fff_ffffu32.to_le_bytes(), "type-off", "truncated");
    set(12, &0xffff_fff0u32.to_le_bytes(), "type-len", "truncated");
    set(16, &0x7fff_ffffu32.to_le_bytes(), "str-off", "truncated");
    set(20, &0xffff_fff0u32.to_le_bytes(), "str-len", "truncated");
    let type_len = u32::from_le_bytes(m[12..16].try_into().unwrap());
    set(
        12,
        &(type_len - 1).to_le_bytes(),
        "type-unaligned",
        "aligned",
    );
}

/// Every bit of the header and bytes across the type and string sections,
/// flipped one at a time: a clean success or a clean error, never a panic.
#[test]
fn bit_flips() {
    let m = mini_bytes();
    let hdr_len = u32::from_le_bytes(m[4..8].try_into().unwrap()) as usize;
    let mut offsets: Vec<(usize, u8)> = Vec::new();
    for i in 0..hdr_len {
        for bit in 0..8 {
            offsets.push((i, 1 << bit));
        }
    }
    // Type and string sections: every 7th byte, low, high and all bits.
    for i in (hdr_len..m.len()).step_by(7) {
        for x in [0x01, 0x80, 0xff] {
            offsets.push((i, x));
        }
    }
    let (mut ok, mut err) = (0, 0);
    for (i, x) in offsets {
        let mut b = m.clone();
        b[i] ^= x;
        let f = scratch("flip", &b);
        if ok_or_clean_error(&f, &format!("byte {i} ^ {x:#04x}")) {
            ok += 1;
        } else {
            err += 1;
        }
    }
    eprintln!("bit flips: {ok} still parse, {err} clean errors");
    assert!(err > 0);
}

#[test]
fn bad_regexes() {
    let m = mini();
    let m = m.to_str().unwrap();
    fails(
        &["list", "--btf", m, "-r", "("],
        &["-r", "'('", "unclosed group"],
    );
    fails(
        &["list", "--btf", m, "--module-regex", "[a-"],
        &["--module-regex", "'[a-'"],
    );
    fails(
        &["list", "--btf", m, "-r", "^no_such_probe$"],
        &["no probe matches", "^no_such_probe$"],
    );
    fails(
        &["list", "--btf", m, "--module-regex", "^veth$"],
        &["no probe matches"],
    );
    fails(
        &["--btf", m, "-o", "/nonexistent/out", "-r", "*"],
        &["-r", "'*'"],
    );
}

#[test]
fn bad_profiles() {
    let m = mini();
    let m = m.to_str().unwrap();
    let prof = |name: &str, text: &str| scratch(name, text.as_bytes());
    // Syntax errors: file:line.
    let p = prof(
        "syntax.toml",
        "name = \"x\"\ndescription = \"d\"\nfunctions = [\n",
    );
    let ps = p.to_str().unwrap();
    fails(
        &["list", "--btf", m, "--profile", ps],
        &[&format!("{ps}:3:")],
    );
    let p = prof("syntax2.toml", "name = \"x\"\ndescription = = \"d\"\n");
    let ps = p.to_str().unwrap();
    fails(
        &["list", "--btf", m, "--profile", ps],
        &[&format!("{ps}:2:")],
    );
    let p = prof(
        "unknown-key.toml",
        "name = \"x\"\ndescription = \"d\"\nfunctions = [\"a\"]\nfunctoins = [\"b\"]\n",
    );
    let ps = p.to_str().unwrap();
    fails(
        &["list", "--btf", m, "--profile", ps],
        &[&format!("{ps}:4:")],
    );
    // Invalid regexes, in functions and in modules.
    let p = prof(
        "regex.toml",
        "name = \"x\"\ndescription = \"d\"\nfunctions = [\"^ip_(\"]\n",
    );
    let ps = p.to_str().unwrap();
    fails(
        &["list", "--btf", m, "--profile", ps],
        &[&format!("{ps}:3:"), "invalid regex '^ip_('"],
    );
    let p = prof(
        "modregex.toml",
        "name = \"x\"\ndescription = \"d\"\nfunctions = [\"a\"]\nmodules = \"[\"\n",
    );
    let ps = p.to_str().unwrap();
    fails(
        &["list", "--btf", m, "--profile", ps],
        &[&format!("{ps}:4:"), "invalid regex"],
    );
    // Unknown names and missing files.
    fails(
        &["list", "--btf", m, "--profile", "nope"],
        &["unknown profile 'nope'", "ip"],
    );
    fails(
        &["--btf", m, "-o", "/nonexistent/out", "--profile", "nope"],
        &["unknown profile 'nope'"],
    );
    fails(
        &["list", "--btf", m, "--profile", "/nonexistent/p.toml"],
        &["/nonexistent/p.toml", "No such file"],
    );
    // A profile matching nothing on this BTF.
    let p = prof(
        "nothing.toml",
        "name = \"x\"\ndescription = \"d\"\nfunctions = [\"^zzz$\"]\n",
    );
    fails(
        &["list", "--btf", m, "--profile", p.to_str().unwrap()],
        &["no probe matches", "profile x"],
    );
}

#[test]
fn bad_generation_arguments() {
    let m = mini();
    let m = m.to_str().unwrap();
    fails(
        &["--btf", m, "--backend", "bogus", "-o", "/nonexistent/out"],
        &["invalid value 'bogus'"],
    );
    fails(&["bench", "--runs", "0"], &["--runs"]);
    // Usage errors from the argument parser: one line too.
    fails(&["list", "--bogus"], &["--bogus"]);
    fails(
        &["list", "--btf", m, "--btf-dir", "/tmp"],
        &["list reads one kernel"],
    );
    fails(&["--btf"], &["--btf"]);
}

/// `ipft-gen --btf FILE --profile P` with no -o picks a directory named for
/// the profile and the kernel, and says where it wrote.
#[test]
fn default_output_directory() {
    let cwd = std::env::temp_dir().join(format!("ipft-default-out-{}", std::process::id()));
    std::fs::create_dir_all(&cwd).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ipft-gen"))
        .args(["--btf", mini().to_str().unwrap(), "--profile", "all"])
        .current_dir(&cwd)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let dirs: Vec<String> = std::fs::read_dir(&cwd)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert!(dirs[0].starts_with("ipft-all-"), "{dirs:?}");
    assert!(cwd.join(&dirs[0]).join("tracer.bpf.c").is_file());
    assert!(err.contains(&format!("wrote {}", dirs[0])), "{err}");
    std::fs::remove_dir_all(&cwd).unwrap();
}

/// `ipft-gen list | head -1`: a reader that goes away is a normal end.
#[test]
fn closed_stdout_is_a_normal_end() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(BIN)
        .args(["list", "--btf", mini().to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The pipe is closed here, before ipft-gen has written everything.
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!first.is_empty());
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
}
