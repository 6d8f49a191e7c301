//! `ipft-gen`: list skb probes of a kernel, or generate and build a tracer.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use ipft_gen::codegen::{self, Plan};
use ipft_gen::compile;
use ipft_gen::discover::{discover, BtfInput, Discovery};
use ipft_gen::probe::{Backend, Filter, ProbeKind, Profile};

/// Generate a packet tracer specialised to one kernel and one probe set.
#[derive(Parser)]
#[command(name = "ipft-gen", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    gen: GenArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// List every traceable skb probe (name, module, kind, skb positions, nargs, backends).
    List(ListArgs),
    /// Measure discovery and code generation (medians of several runs) beside bpftool.
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// BTF file to measure on.
    #[arg(long, default_value = "/sys/kernel/btf/vmlinux")]
    btf: PathBuf,
    /// Runs per measurement.
    #[arg(long, default_value_t = 11)]
    runs: usize,
}

#[derive(Args, Clone)]
struct Source {
    /// Raw BTF or ELF (vmlinux, .ko) with a .BTF section [default: running kernel].
    #[arg(long, value_name = "FILE", conflicts_with = "btf_dir")]
    btf: Option<PathBuf>,
    /// Directory laid out like /sys/kernel/btf (vmlinux + one file per module).
    #[arg(long, value_name = "DIR")]
    btf_dir: Option<PathBuf>,
    /// Profile: a shipped name (ip, tcp, udp, netfilter, bridge, xmit, drop, tracepoints, all) or a TOML file.
    #[arg(long, short = 'p')]
    profile: Option<String>,
    /// Only probes whose name matches.
    #[arg(long, short = 'r')]
    regex: Option<String>,
    /// Only probes in modules matching (vmlinux for the kernel image).
    #[arg(long)]
    module_regex: Option<String>,
}

#[derive(Args)]
struct ListArgs {
    #[command(flatten)]
    src: Source,
    /// JSON array instead of lines.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct GenArgs {
    #[command(flatten)]
    src: Source,
    /// Output directory.
    #[arg(long, short = 'o', value_name = "DIR")]
    out: Option<PathBuf>,
    /// Function backend: auto, kprobe, kprobe-multi, fentry, or all (every
    /// backend in one tracer, chosen with -b at run time). Tracepoints use tp_btf.
    #[arg(long, short = 'b', default_value = "auto")]
    backend: String,
    /// Compile the BPF object and build the ipft-<profile> binary.
    #[arg(long)]
    build: bool,
    /// Where the running kernel allows no function probe, generate for its
    /// skb tracepoints (the `tracepoints` profile) instead.
    #[arg(long)]
    fallback_tracepoints: bool,
    /// Print timings of each stage on stderr.
    #[arg(long)]
    timings: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        // --help and --version print as usual.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // Usage errors: one line, not clap's usage block.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            eprintln!(
                "ipft-gen: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    let r = match cli.cmd {
        Some(Cmd::List(a)) => list(a),
        Some(Cmd::Bench(a)) => bench(a),
        None => generate(cli.gen),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipft-gen: {}", one_line(&e));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes on one line; a cause whose text the message
/// already carries (`{path}: {source}`) is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if out.contains(&c) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&c);
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn input(s: &Source) -> BtfInput {
    match (&s.btf, &s.btf_dir) {
        (Some(f), _) => BtfInput::File(f.clone()),
        (None, Some(d)) => BtfInput::Dir(d.clone()),
        (None, None) => BtfInput::Running,
    }
}

fn load(s: &Source, default_profile: Option<&str>) -> Result<(Discovery, Option<Profile>)> {
    let profile = s
        .profile
        .as_deref()
        .or(default_profile)
        .map(Profile::load)
        .transpose()?;
    let filter = Filter::from_flags(s.regex.as_deref(), s.module_regex.as_deref())
        .map_err(anyhow::Error::msg)?;
    let d = discover(&input(s), profile.as_ref(), &filter)?;
    // Once per run, even when discovery runs again for a fallback profile.
    static NOTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if let Some(note) = d.symbols.as_ref().and_then(|s| s.note.as_ref()) {
        if !NOTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            eprintln!("{note}");
        }
    }
    if d.probes.is_empty() {
        bail!(
            "no probe matches (profile {}, regex {}, module regex {}; {} dropped as untraceable)",
            profile.as_ref().map_or("none", |p| p.name.as_str()),
            s.regex.as_deref().unwrap_or("none"),
            s.module_regex.as_deref().unwrap_or("none"),
            d.untraceable
        );
    }
    Ok((d, profile))
}

fn list(a: ListArgs) -> Result<()> {
    let (d, _) = load(&a.src, None)?;
    if a.json {
        println!("{}", serde_json::to_string(&d.probes)?);
        return Ok(());
    }
    for p in &d.probes {
        let pos: Vec<String> = p.skb_positions.iter().map(u8::to_string).collect();
        let be: Vec<&str> = p.backends.iter().map(|b| b.name()).collect();
        println!(
            "{:<48} {:<16} {:<10} skb={:<6} nargs={:<2}{}{} {}",
            p.name,
            p.module.as_deref().unwrap_or("vmlinux"),
            p.kind,
            pos.join(","),
            p.nargs,
            if p.variadic { " variadic" } else { "" },
            if p.byval { " byval" } else { "" },
            be.join(",")
        );
    }
    eprintln!(
        "{} probes ({} untraceable dropped; scanned {} types, {} functions)",
        d.probes.len(),
        d.untraceable,
        d.stats.types,
        d.stats.funcs
    );
    Ok(())
}

/// auto: on the running kernel the fastest it offers; for another kernel's
/// BTF kprobe, the backend every kernel since 5.15 attaches by name.
fn choose_backend(arg: &str, d: &Discovery) -> Result<Option<Backend>> {
    if arg == "auto" {
        return Ok(match &d.availability {
            None => Some(Backend::Kprobe),
            Some(a) => a.function_backends().first().copied(),
        });
    }
    match Backend::parse(arg) {
        Some(Backend::TpBtf) => Ok(None),
        Some(b) => Ok(Some(b)),
        None => bail!("unknown backend '{arg}' (auto, kprobe, kprobe-multi, fentry, tp_btf)"),
    }
}

fn generate(a: GenArgs) -> Result<()> {
    let Some(out) = a.out.clone() else {
        bail!("missing -o DIR (or use `ipft-gen list`)");
    };
    let t0 = Instant::now();
    let (mut d, profile) = load(&a.src, Some("ip"))?;
    let mut profile = profile.expect("default profile");
    let backends: Vec<Backend> = if a.backend == "all" {
        match &d.availability {
            None => vec![Backend::Fentry, Backend::KprobeMulti, Backend::Kprobe],
            Some(av) => av.function_backends(),
        }
    } else {
        choose_backend(&a.backend, &d)?.into_iter().collect()
    };
    let backend = backends.first().copied();
    if backend.is_none() {
        let why: Vec<String> = d
            .availability
            .iter()
            .flat_map(|a| a.refused.iter().map(|(b, r)| format!("{b}: {r}")))
            .collect();
        eprintln!(
            "ipft-gen: no function backend works on this kernel ({}): {}",
            if why.is_empty() {
                "none found".to_string()
            } else {
                why.join("; ")
            },
            if a.fallback_tracepoints {
                "using the tracepoints profile"
            } else {
                "tracing the profile's tracepoints only"
            }
        );
        if a.fallback_tracepoints {
            let src = Source {
                profile: Some("tracepoints".into()),
                ..a.src.clone()
            };
            let (d2, p2) = load(&src, None)?;
            d = d2;
            profile = p2.expect("tracepoints profile");
        }
    }
    let t_discover = t0.elapsed();
    let (mut probes, left_out): (Vec<_>, Vec<_>) =
        d.probes.iter().cloned().partition(|p| match p.kind {
            ProbeKind::Tracepoint => true,
            ProbeKind::Function => backends.iter().any(|b| p.backends.contains(b)),
        });
    if backend.is_some() && !left_out.is_empty() {
        let names: Vec<String> = left_out
            .iter()
            .take(5)
            .map(|p| format!("{} (skb arg {}, {} args)", p.name, p.skb_pos(), p.nargs))
            .collect();
        eprintln!(
            "ipft-gen: {} functions out of reach of {} left out: {}{}",
            left_out.len(),
            a.backend,
            names.join(", "),
            if left_out.len() > 5 { ", ..." } else { "" }
        );
    }
    if probes.is_empty() {
        bail!(
            "no probe of profile {} is reachable with backend {}",
            profile.name,
            a.backend
        );
    }
    // Probes that only end journeys (the skb's memory freed), not printed.
    let hidden_from = probes.len();
    let markers = ipft_gen::table::pick_end_markers(&d.end_markers, &probes, backend);
    probes.extend(markers);
    let plan = Plan {
        profile: &profile.name,
        identity: &d.kernel.identity,
        function_backends: &backends,
        probes: &probes,
        hidden_from,
        returns: backends.contains(&Backend::Fentry),
    };
    let g = codegen::generate(&plan)?;
    compile::write_sources(&out, &g)?;
    let t_gen = t0.elapsed();
    eprintln!(
        "ipft-gen: {} probes ({} functions via {}, {} tracepoints) -> {}",
        probes.len(),
        probes
            .iter()
            .filter(|p| p.kind == ProbeKind::Function)
            .count(),
        if backends.is_empty() {
            "-".to_string()
        } else {
            backends
                .iter()
                .map(|b| b.name())
                .collect::<Vec<_>>()
                .join("+")
        },
        probes
            .iter()
            .filter(|p| p.kind == ProbeKind::Tracepoint)
            .count(),
        out.display()
    );
    if a.timings {
        eprintln!(
            "timing: discover {:?}, generate+write {:?}",
            t_discover,
            t_gen - t_discover
        );
    }
    if a.build {
        let btf_file = match &a.src {
            Source { btf: Some(f), .. } => f.clone(),
            Source {
                btf_dir: Some(d), ..
            } => d.join("vmlinux"),
            _ => PathBuf::from(ipft_gen::btf::SYS_BTF_DIR).join("vmlinux"),
        };
        let t = Instant::now();
        compile::vmlinux_h(&btf_file, &d.kernel.identity.checksum, &out)?;
        compile::compile_bpf(
            &out.join("tracer.bpf.c"),
            &out.join("tracer.bpf.o"),
            &[&out],
        )
        .context("compiling the generated BPF C")?;
        let t_clang = t.elapsed();
        let bin = compile::build_tracer(&out, &profile.name)?;
        if a.timings {
            eprintln!(
                "timing: bpftool+clang {:?}, cargo {:?}",
                t_clang,
                t.elapsed() - t_clang
            );
        }
        println!("{}", bin.display());
    }
    Ok(())
}

fn median_ms(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

/// Numbers for issues 3 and 4: discovery vs `bpftool btf dump -j`, and
/// discovery + generation of profile `all` up to C and Rust on disk.
fn bench(a: BenchArgs) -> Result<()> {
    let src = Source {
        btf: Some(a.btf.clone()),
        btf_dir: None,
        profile: None,
        regex: None,
        module_regex: None,
    };
    let mut n = 0;
    let discovery = median_ms(a.runs, || {
        let d = discover(&input(&src), None, &Filter::default())?;
        n = d.probes.len();
        Ok(())
    })?;
    let bpftool = compile::find_tool("bpftool");
    let dump = median_ms(a.runs, || {
        let o = std::process::Command::new(&bpftool)
            .args(["btf", "dump", "file"])
            .arg(&a.btf)
            .arg("-j")
            .output()
            .context("running bpftool")?;
        if !o.status.success() {
            bail!("bpftool failed");
        }
        Ok(())
    })?;
    let out = std::env::temp_dir().join(format!("ipft-gen-bench-{}", std::process::id()));
    let all = Profile::load("all")?;
    let mut generated = 0;
    let codegen = median_ms(a.runs, || {
        let d = discover(&input(&src), Some(&all), &Filter::default())?;
        let probes: Vec<_> = d
            .probes
            .iter()
            .filter(|p| p.kind == ProbeKind::Tracepoint || p.backends.contains(&Backend::Fentry))
            .cloned()
            .collect();
        generated = probes.len();
        let plan = Plan {
            profile: "all",
            identity: &d.kernel.identity,
            function_backends: &[Backend::Fentry],
            probes: &probes,
            hidden_from: probes.len(),
            returns: true,
        };
        compile::write_sources(&out, &codegen::generate(&plan)?)?;
        Ok(())
    })?;
    let _ = std::fs::remove_dir_all(&out);
    println!(
        "discovery ({n} probes) from {}: {discovery:.1} ms (median of {})",
        a.btf.display(),
        a.runs
    );
    println!(
        "bpftool btf dump -j, same file:      {dump:.1} ms  (ratio ipft/bpftool {:.2})",
        discovery / dump
    );
    println!(
        "ipft-gen profile all ({generated} probes, fentry) to C + Rust on disk: {codegen:.1} ms"
    );
    Ok(())
}
