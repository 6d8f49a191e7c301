//! Stage 4, build: vmlinux.h with bpftool, the BPF object with clang, and the
//! tracer binary with cargo (a small crate that links ipft-runtime).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::codegen::Generated;

/// A build step failed; the message names the tool, the file and the error.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A tool is missing.
    #[error("{tool} not found ({source}); run scripts/setup")]
    Missing {
        /// Tool name.
        tool: String,
        /// Spawn error.
        #[source]
        source: std::io::Error,
    },
    /// A tool ran and failed.
    #[error("{tool} failed on {file}:\n{log}")]
    Failed {
        /// Tool name.
        tool: String,
        /// Input file.
        file: PathBuf,
        /// Last lines of its output.
        log: String,
    },
    /// Writing an output failed.
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
}

/// Last `n` lines of a tool's output.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn run(tool: &str, cmd: &mut Command, file: &Path) -> Result<Vec<u8>, BuildError> {
    run_both(tool, cmd, file).map(|(out, _)| out)
}

/// Run a tool; on success its stdout and stderr.
fn run_both(tool: &str, cmd: &mut Command, file: &Path) -> Result<(Vec<u8>, String), BuildError> {
    let out = cmd.output().map_err(|source| BuildError::Missing {
        tool: tool.into(),
        source,
    })?;
    if !out.status.success() {
        let mut log = String::from_utf8_lossy(&out.stderr).into_owned();
        log.push_str(&String::from_utf8_lossy(&out.stdout));
        return Err(BuildError::Failed {
            tool: tool.into(),
            file: file.to_path_buf(),
            log: tail(&log, 30),
        });
    }
    Ok((
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn write(path: &Path, data: &[u8]) -> Result<(), BuildError> {
    fs::write(path, data).map_err(|e| BuildError::Io(path.to_path_buf(), e))
}

/// Write C, Rust and the JSON table into `out`.
pub fn write_sources(out: &Path, g: &Generated) -> Result<(), BuildError> {
    fs::create_dir_all(out).map_err(|e| BuildError::Io(out.to_path_buf(), e))?;
    write(&out.join("tracer.bpf.c"), g.c.as_bytes())?;
    write(&out.join("probe_set.rs"), g.rust.as_bytes())?;
    let json = serde_json::to_string_pretty(&g.table).expect("table serialises");
    write(&out.join("probes.json"), json.as_bytes())
}

/// `bpftool btf dump file BTF format c > out/vmlinux.h` (unless present and
/// generated from the same checksum).
pub fn vmlinux_h(btf_file: &Path, checksum: &str, out: &Path) -> Result<PathBuf, BuildError> {
    let header = out.join("vmlinux.h");
    let stamp = out.join("vmlinux.h.checksum");
    if header.exists() && fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == checksum) {
        return Ok(header);
    }
    let bpftool = find_tool("bpftool");
    let c = run(
        "bpftool",
        Command::new(&bpftool)
            .args(["btf", "dump", "file"])
            .arg(btf_file)
            .args(["format", "c"]),
        btf_file,
    )?;
    write(&header, &c)?;
    write(&stamp, checksum.as_bytes())?;
    Ok(header)
}

/// Debian keeps bpftool in /usr/sbin, often not on a user's PATH.
pub fn find_tool(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/sbin", "/usr/local/sbin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(name)
}

include!("clang.rs");

/// clang -O2 -g -target bpf. `include` dirs are searched for headers.
/// Returns clang's warnings (empty when there are none).
pub fn compile_bpf(src: &Path, obj: &Path, include: &[&Path]) -> Result<String, BuildError> {
    run_both("clang", &mut clang_command(src, obj, include), src).map(|(_, warnings)| warnings)
}

/// Compile an extension (`$CC`, `$CFLAGS`; see [`extension_command`]).
/// Returns the compiler's warnings.
pub fn compile_extension(src: &Path, obj: &Path) -> Result<String, BuildError> {
    let mut cmd = extension_command(src, obj);
    let tool = cmd.get_program().to_string_lossy().into_owned();
    run_both(&tool, &mut cmd, src).map(|(_, warnings)| warnings)
}

/// Where the ipft-runtime crate lives (for the generated crate's path
/// dependency): $IPFT_RUNTIME_DIR or the workspace this ipft-gen was built in.
pub fn runtime_dir() -> PathBuf {
    std::env::var_os("IPFT_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../ipft-runtime"))
}

/// Write the tracer crate into `out/crate` and build it with cargo; the
/// binary is copied to `out/ipft-<profile>`. `sets` are the probe-set
/// directories, one per kernel. The workspace target dir is shared so
/// dependencies are compiled once.
pub fn build_tracer(out: &Path, profile: &str, sets: &[PathBuf]) -> Result<PathBuf, BuildError> {
    let krate = out.join("crate");
    let src = krate.join("src");
    fs::create_dir_all(&src).map_err(|e| BuildError::Io(src.clone(), e))?;
    let runtime = runtime_dir();
    let runtime = runtime.canonicalize().unwrap_or(runtime);
    let macros = runtime.join("../ipft-macros");
    let bin = format!("ipft-{}", sanitize(profile));
    // Tracers share one target dir, and cargo identifies a path package by
    // its name and its path relative to its workspace, which is the same for
    // every generated crate: name the package after what it embeds, so a
    // tracer with other probe sets is never taken for an up-to-date one.
    let mut content = Vec::new();
    for d in sets {
        for f in ["probe_set.rs", "tracer.bpf.o"] {
            let p = d.join(f);
            content.extend(fs::read(&p).map_err(|e| BuildError::Io(p.clone(), e))?);
        }
        // The payload type of an extension, which include_probe_sets! takes in.
        content.extend(fs::read(d.join("extension.rs")).unwrap_or_default());
    }
    let package = format!("{bin}-{}", &crate::fleet::sha256_bytes(&content)[..16]);
    let manifest = format!(
        "[package]\nname = \"{package}\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
         [[bin]]\nname = \"{bin}\"\npath = \"src/main.rs\"\n\n\
         [dependencies]\nipft-runtime = {{ path = \"{}\" }}\nipft-macros = {{ path = \"{}\" }}\n\n\
         [profile.release]\nopt-level = 3\n\n[workspace]\n",
        runtime.display(),
        macros.display()
    );
    write(&krate.join("Cargo.toml"), manifest.as_bytes())?;
    // Probe-set directories relative to the crate, as the macro reads them.
    let rel: Vec<String> = sets
        .iter()
        .map(|d| match d.strip_prefix(out) {
            Ok(p) if p.as_os_str().is_empty() => "..".to_string(),
            Ok(p) => format!("../{}", p.display()),
            Err(_) => d.display().to_string(),
        })
        .map(|p| format!("{p:?}"))
        .collect();
    let main = format!(
        "// Generated by ipft-gen: a tracer for exactly these probe sets, one per kernel.\n\
         ipft_macros::include_probe_sets!({});\n\n\
         fn main() {{\n    std::process::exit(ipft_runtime::tracer_main(PROBE_SETS));\n}}\n",
        rel.join(", ")
    );
    write(&src.join("main.rs"), main.as_bytes())?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| runtime.join("../target"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // One static executable: glibc statically (crt-static, which needs an
    // explicit --target so build scripts and proc macros stay dynamic), and
    // libbpf, libelf and zlib through libbpf-sys's static features.
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let flags_var = format!(
        "CARGO_TARGET_{}_RUSTFLAGS",
        triple.to_uppercase().replace('-', "_")
    );
    run(
        "cargo",
        Command::new(cargo)
            .args([
                "build",
                "--release",
                "--quiet",
                "--target",
                &triple,
                "--manifest-path",
            ])
            .arg(krate.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target)
            .env(flags_var, "-C target-feature=+crt-static")
            // Where Debian keeps libelf.a and libz.a (see .cargo/config.toml).
            .env(
                "LIBBPF_SYS_LIBRARY_PATH",
                format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH),
            ),
        &krate.join("Cargo.toml"),
    )?;
    let built = target.join(&triple).join("release").join(&bin);
    let dest = out.join(&bin);
    fs::copy(&built, &dest).map_err(|e| BuildError::Io(built.clone(), e))?;
    Ok(dest)
}

fn sanitize(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if s.is_empty() {
        "custom".into()
    } else {
        s
    }
}
